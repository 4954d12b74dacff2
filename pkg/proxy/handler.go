//lint:file-ignore SA1019 x/net/http2's Server.ServeConn and Transport are used on purpose: they serve one accepted TLS conn and a per-backend h2c pool, which net/http does not expose.

package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// copyBuffers are reused between calls: streaming a body must not allocate
// per frame.
var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

var xForwardedProto = []string{"https"}

// headerFlushDelay is how long response headers may wait for the first
// message before they are sent on their own.
const headerFlushDelay = time.Millisecond

// headerFlush sends response headers from a timer unless the handler's
// first read returns first. The mutex orders the timer's Flush before the
// handler's next use of the ResponseWriter.
type headerFlush struct {
	mu      sync.Mutex
	flusher http.Flusher
	timer   *time.Timer
	stopped bool
}

func flushHeadersAfter(f http.Flusher, d time.Duration) *headerFlush {
	hf := &headerFlush{flusher: f}
	hf.mu.Lock()
	hf.timer = time.AfterFunc(d, hf.fire)
	hf.mu.Unlock()
	return hf
}

func (hf *headerFlush) fire() {
	hf.mu.Lock()
	defer hf.mu.Unlock()
	if !hf.stopped {
		hf.flusher.Flush()
	}
}

// stop returns once the timer can no longer touch the ResponseWriter.
func (hf *headerFlush) stop() {
	hf.mu.Lock()
	hf.stopped = true
	hf.timer.Stop()
	hf.mu.Unlock()
}

// call is what one call records for the access log and the metrics.
type call struct {
	start    time.Time
	server   string
	code     int
	body     *replayBody
	bytesOut int64
}

// ServeHTTP forwards one gRPC call (one HTTP/2 stream) to a backend chosen
// for this call alone.
func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := l.p
	st := l.state.Load()
	c := call{start: time.Now(), code: codeOK}
	p.metrics.active.Add(1)
	defer p.finish(st, r, &c)
	l.forward(st, w, r, &c)
}

func (p *Proxy) finish(st *listenerState, r *http.Request, c *call) {
	var in int64
	if c.body != nil {
		in = c.body.bytesRead()
	}
	p.record(st.cfg.ID, r.RemoteAddr, r.URL.Path, c.server, c.code, c.start, in, c.bytesOut)
}

// record ends a gRPC call's accounting: the active gauge, the metrics and
// the access log. Both engines report through it.
func (p *Proxy) record(listenerID, client, method, server string, code int, start time.Time, in, out int64) {
	p.recordAs(false, listenerID, client, method, server, code, start, in, out)
}

// recordAs is record for a gRPC call (code is its grpc-status) or, with
// web set, for an HTTP request (method is "GET /path", code is its HTTP
// status).
func (p *Proxy) recordAs(web bool, listenerID, client, method, server string, code int, start time.Time, in, out int64) {
	p.metrics.active.Add(-1)
	d := time.Since(start)
	label := server
	if label == "" {
		label = "-"
	}
	metricMethod := method
	if web {
		// "GET /path": paths are unbounded, so the metrics keep only the HTTP method.
		metricMethod, _, _ = strings.Cut(method, " ")
	}
	p.metrics.record(callKey{web: web, listener: listenerID, method: metricMethod, server: label, code: code}, d, in, out)
	if p.accessLog != nil {
		r := &AccessRecord{
			Time: start, Client: client, Listener: listenerID, Method: method,
			Server: server, Duration: d, BytesIn: in, BytesOut: out,
		}
		if web {
			r.HTTPStatus = code
		} else {
			status := code
			r.GRPCStatus = &status
		}
		p.accessLog.write(r)
	}
}

// connectFailed counts an attempt that could not connect to u and tells the
// health checker: a passive health signal.
func (p *Proxy) connectFailed(groupID string, u *upstream, err error) {
	u.backend.RecordConnectFailure()
	p.metrics.connFails.Add(1)
	if p.opts.OnConnectFailure != nil {
		p.opts.OnConnectFailure(groupID, u.addr, err)
	}
}

func (l *listener) forward(st *listenerState, w http.ResponseWriter, r *http.Request, c *call) {
	p := l.p
	g := st.group
	gs := g.state.Load()
	source := hostOf(r.RemoteAddr)
	pick, err := gs.picker.Pick(source, nil)
	if err != nil {
		c.code = codeUnavailable
		writeGRPCError(w, false, codeUnavailable, "no healthy servers in group "+g.id)
		return
	}

	// The client's grpc-timeout bounds the whole call and is forwarded, less
	// the time spent. The listener's request timeout bounds only the wait for
	// the server's response, as the cloud's does: a stream that has started
	// may run as long as its client wants.
	var deadline time.Time
	if v := r.Header.Get("Grpc-Timeout"); v != "" {
		if d, ok := parseTimeout(v); ok {
			deadline = c.start.Add(d)
		}
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if deadline.IsZero() {
		ctx, cancel = context.WithCancel(r.Context())
	} else {
		ctx, cancel = context.WithDeadline(r.Context(), deadline)
	}
	defer cancel()
	var waitTimer *time.Timer
	var waitExpired atomic.Bool
	if rt := st.cfg.RequestTimeout; rt > 0 && (deadline.IsZero() || c.start.Add(rt).Before(deadline)) {
		waitTimer = time.AfterFunc(rt-time.Since(c.start), func() {
			waitExpired.Store(true)
			cancel()
		})
		defer waitTimer.Stop()
	}

	c.body = newReplayBody(r.Body)
	// A shallow copy: the outgoing request shares the client's header map,
	// which the proxy edits in place instead of cloning every header per
	// call. Nothing else reads r.Header once the call is forwarded.
	out := r.WithContext(ctx)
	target := *r.URL
	target.Scheme = "http"
	out.URL = &target
	out.RequestURI = ""
	out.GetBody = c.body.reader
	h := out.Header
	if prior := h["X-Forwarded-For"]; len(prior) > 0 {
		h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + source}
	} else {
		h["X-Forwarded-For"] = []string{source}
	}
	h["X-Forwarded-Proto"] = xForwardedProto
	if st.port != nil {
		h["X-Forwarded-Port"] = st.port
	}

	var res *http.Response
	var u *upstream
	for attempt := 0; ; attempt++ {
		u = gs.upstreams[pick.Index]
		c.server = u.addr
		if pick.FailOpen {
			p.metrics.failOpen.Add(1)
		}
		out.URL.Host = u.addr
		if out.Body, err = c.body.reader(); err != nil {
			break
		}
		if !deadline.IsZero() {
			// Forward the time left, not the time the client asked for.
			h["Grpc-Timeout"] = []string{encodeTimeout(time.Until(deadline))}
		}
		u.backend.Begin()
		res, err = u.transport.RoundTrip(out)
		if err == nil {
			defer u.backend.End()
			break
		}
		u.backend.End()
		var ce *connectError
		if !errors.As(err, &ce) || ctx.Err() != nil {
			break
		}
		// Nothing reached the server: try once more on another server.
		p.connectFailed(g.id, u, err)
		if attempt > 0 {
			break
		}
		next, perr := gs.picker.Pick(source, u.backend)
		if perr != nil {
			break
		}
		pick = next
	}
	// A response that raced the request timeout and lost is dropped: the
	// call has been cancelled at the server.
	if waitTimer != nil && !waitTimer.Stop() && err == nil {
		res.Body.Close()
		err = context.DeadlineExceeded
	}
	if err != nil && waitExpired.Load() {
		c.code = codeDeadlineExceeded
		writeGRPCError(w, false, codeDeadlineExceeded, fmt.Sprintf("request timeout of %v expired waiting for server %s", st.cfg.RequestTimeout, u.addr))
		return
	}
	if err != nil {
		c.code = roundTripFailure(w, r, ctx, u, err, deadline)
		return
	}
	c.body.stopReplay()
	defer func() {
		// Cancel first: closing the body of a stream whose request is still
		// open would otherwise wait for the request body to end.
		cancel()
		res.Body.Close()
	}()

	hdr := w.Header()
	for k, vv := range res.Header {
		hdr[k] = vv
	}
	if _, ok := hdr["Date"]; !ok {
		// The HTTP/2 server would format a Date for every response; gRPC
		// has no use for it. A present but empty key stops it and sends
		// nothing.
		hdr["Date"] = nil
	}
	if res.ContentLength == 0 {
		// Trailers-only response (or a body-less error from a non-gRPC
		// server): one HEADERS frame that ends the stream, as received.
		// The h2 transport marks it with a zero length; its empty body is
		// not http.NoBody.
		c.code = parseStatus(firstValue(res.Header["Grpc-Status"]))
		w.WriteHeader(res.StatusCode)
		return
	}
	w.WriteHeader(res.StatusCode)
	flusher, _ := w.(http.Flusher)

	bufp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bufp)
	buf := *bufp
	// The headers leave with the first message, in the same write; a
	// backend that sends headers and then waits (a stream that is quiet
	// at first) gets them flushed alone after headerFlushDelay.
	var early *headerFlush
	if flusher != nil {
		early = flushHeadersAfter(flusher, headerFlushDelay)
	}
	for {
		n, rerr := res.Body.Read(buf)
		if early != nil {
			early.stop()
			early = nil
		}
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				c.code = codeCanceled // the client went away
				return
			}
			c.bytesOut += int64(n)
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			c.code = streamFailure(w, r, ctx, u, rerr, deadline)
			return
		}
	}
	for k, vv := range res.Trailer {
		hdr[trailerKey(k)] = vv
	}
	if v := res.Trailer["Grpc-Status"]; len(v) > 0 {
		c.code = parseStatus(v[0])
	} else {
		c.code = parseStatus(firstValue(res.Header["Grpc-Status"]))
	}
}

// roundTripFailure answers a call that got no response headers and returns
// the gRPC code it was given.
func roundTripFailure(w http.ResponseWriter, r *http.Request, ctx context.Context, u *upstream, err error, deadline time.Time) int {
	var se http2.StreamError
	var ce *connectError
	switch {
	case r.Context().Err() != nil:
		return codeCanceled // the client cancelled; nobody to answer
	case ctx.Err() == context.DeadlineExceeded || expiredAtBackend(err, deadline):
		writeGRPCError(w, false, codeDeadlineExceeded, "deadline exceeded waiting for server "+u.addr)
		return codeDeadlineExceeded
	case errors.As(err, &ce):
		writeGRPCError(w, false, codeUnavailable, ce.Error())
		return codeUnavailable
	case errors.As(err, &se) && se.Code != http2.ErrCodeRefusedStream:
		// The server reset the stream: reset the client's stream too.
		panic(http.ErrAbortHandler)
	}
	writeGRPCError(w, false, codeUnavailable, fmt.Sprintf("server %s: %v", u.addr, err))
	return codeUnavailable
}

// streamFailure ends a call whose response body broke off and returns the
// gRPC code it was given. Headers were sent, so any status goes into the
// trailers.
func streamFailure(w http.ResponseWriter, r *http.Request, ctx context.Context, u *upstream, err error, deadline time.Time) int {
	var se http2.StreamError
	switch {
	case r.Context().Err() != nil:
		return codeCanceled
	case ctx.Err() == context.DeadlineExceeded || expiredAtBackend(err, deadline):
		writeGRPCError(w, true, codeDeadlineExceeded, "deadline exceeded")
		return codeDeadlineExceeded
	case errors.As(err, &se):
		panic(http.ErrAbortHandler)
	}
	writeGRPCError(w, true, codeUnavailable, fmt.Sprintf("connection to server %s lost: %v", u.addr, err))
	return codeUnavailable
}

// expiredAtBackend reports whether err is the backend cancelling the stream
// because the grpc-timeout we forwarded ran out: it was sent a little less
// time than we have, so its timer fires just before ours.
func expiredAtBackend(err error, deadline time.Time) bool {
	var se http2.StreamError
	return !deadline.IsZero() && errors.As(err, &se) && se.Code == http2.ErrCodeCancel &&
		time.Until(deadline) < 100*time.Millisecond
}

// trailerKey names a trailer that was not announced before the body; the
// common gRPC names are constants so that they cost no allocation.
func trailerKey(k string) string {
	switch k {
	case "Grpc-Status":
		return http.TrailerPrefix + "Grpc-Status"
	case "Grpc-Message":
		return http.TrailerPrefix + "Grpc-Message"
	case "Grpc-Status-Details-Bin":
		return http.TrailerPrefix + "Grpc-Status-Details-Bin"
	}
	return http.TrailerPrefix + k
}

func firstValue(vv []string) string {
	if len(vv) == 0 {
		return ""
	}
	return vv[0]
}

// hostOf returns the IP of "ip:port" or "[ip]:port" without allocating.
func hostOf(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr
	}
	host := addr[:i]
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}
