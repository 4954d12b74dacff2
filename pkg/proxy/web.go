package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"
)

// A listener whose server group speaks HTTP or HTTPS (rather than gRPC) is
// served by net/http: HTTP/1.1, plus HTTP/2 over TLS when the listener has
// it on, with httputil.ReverseProxy forwarding each request to a server
// picked for that request alone. Backends are spoken to in HTTP/1.1, over
// TLS for an HTTPS group; like the cloud's, the proxy does not verify a
// backend's certificate. Errors the proxy makes are 502 (the server could
// not be reached or broke off), 503 (no server to send to) and 504 (the
// listener's request timeout expired before the response headers).

// webFront is one generation of a listener's HTTP server. The listener
// accepts connections itself and hands them over through queue; a change
// of idle timeout starts a new generation, and the old one finishes the
// connections it has.
type webFront struct {
	srv   *http.Server
	queue *connQueue
	idle  time.Duration
}

// webCall is what one request records for the access log and the metrics.
type webCall struct {
	st     *listenerState
	client string
	server string
	status int // set by the proxy when it, not a server, ended the request
}

type webCallKey struct{}

var (
	errNoServers      = errors.New("no healthy servers")
	errRequestTimeout = errors.New("request timeout expired")
)

// statusClientClosed is logged for requests the client abandoned before an
// answer, as nginx logs them.
const statusClientClosed = 499

func (l *listener) newWebFront(idle time.Duration) *webFront {
	w := &webFront{idle: idle, queue: newConnQueue(l.ln.Addr())}
	quiet := log.New(io.Discard, "", 0)
	rp := &httputil.ReverseProxy{
		Rewrite:      l.rewriteWeb,
		Transport:    webTransport{l},
		ErrorHandler: l.webError,
		ErrorLog:     quiet,
	}
	w.srv = &http.Server{
		Handler:           l.webHandler(rp),
		ReadHeaderTimeout: l.p.opts.HandshakeTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: int(l.p.opts.MaxConcurrentStreams)},
		ErrorLog:          quiet,
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		_ = w.srv.Serve(w.queue)
	}()
	return w
}

// webTLSConfig is the TLS configuration of a listener in front of an HTTP
// group: HTTP/1.1, and HTTP/2 if the listener has it on.
func (l *listener) webTLSConfig(http2 bool) *tls.Config {
	cfg := l.tlsConfig.Clone() // the same certificates, by SNI
	cfg.NextProtos = []string{"http/1.1"}
	if http2 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	return cfg
}

// serveWeb hands an accepted connection to the listener's HTTP server and
// returns once the server has closed it.
func (l *listener) serveWeb(c net.Conn, st *listenerState) {
	wc := &watchedConn{Conn: c, closed: make(chan struct{})}
	var conn net.Conn = wc
	if st.webTLS != nil {
		conn = tls.Server(wc, st.webTLS)
	}
	if st.web.queue.push(conn) {
		<-wc.closed
	}
}

// webHandler accounts for each request around the reverse proxy.
func (l *listener) webHandler(rp http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		call := &webCall{st: l.state.Load(), client: r.RemoteAddr}
		rec := &webRecorder{ResponseWriter: w}
		var in *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			in = &countingBody{ReadCloser: r.Body}
			r.Body = in
		}
		l.p.metrics.active.Add(1)
		defer func() {
			status := rec.status
			if call.status != 0 {
				status = call.status
			}
			l.p.recordAs(true, call.st.cfg.ID, call.client, r.Method+" "+r.URL.Path, call.server, status, start, in.count(), rec.bytes)
		}()
		rp.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), webCallKey{}, call)))
	})
}

func (l *listener) rewriteWeb(pr *httputil.ProxyRequest) {
	call := pr.In.Context().Value(webCallKey{}).(*webCall)
	// Append to what the client sent, as the cloud does.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	pr.SetXForwarded()
	if call.st.port != nil {
		pr.Out.Header["X-Forwarded-Port"] = call.st.port
	}
	pr.Out.Host = pr.In.Host
	// The transport picks the server; this only makes the URL absolute.
	pr.Out.URL.Scheme, pr.Out.URL.Host = "http", pr.In.Host
}

// webError answers a request that got no response from a server.
func (l *listener) webError(w http.ResponseWriter, r *http.Request, err error) {
	call := r.Context().Value(webCallKey{}).(*webCall)
	var status int
	var msg string
	var ce *connectError
	switch {
	case r.Context().Err() != nil:
		call.status = statusClientClosed
		return
	case errors.Is(err, errNoServers):
		status, msg = http.StatusServiceUnavailable, "no healthy servers in group "+call.st.group.id
	case errors.Is(err, errRequestTimeout):
		status, msg = http.StatusGatewayTimeout, fmt.Sprintf("request timeout of %v expired waiting for server %s", call.st.cfg.RequestTimeout, call.server)
	case errors.As(err, &ce):
		status, msg = http.StatusBadGateway, ce.Error()
	default:
		status, msg = http.StatusBadGateway, fmt.Sprintf("server %s: %v", call.server, err)
	}
	call.status = status
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// webTransport sends a request to a server of the listener's group, and
// once more to another server if the first could not be connected to.
type webTransport struct{ l *listener }

func (t webTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := t.l.p
	call := req.Context().Value(webCallKey{}).(*webCall)
	g := call.st.group
	gs := g.state.Load()
	source := hostOf(call.client)
	pick, err := gs.picker.Pick(source, nil)
	if err != nil {
		return nil, errNoServers
	}

	// The request timeout bounds the wait for the response headers only; the
	// context lives on until the response body is closed.
	ctx, cancel := context.WithCancelCause(req.Context())
	var timer *time.Timer
	if rt := call.st.cfg.RequestTimeout; rt > 0 {
		timer = time.AfterFunc(rt, func() { cancel(errRequestTimeout) })
	}
	fail := func(err error) (*http.Response, error) {
		if timer != nil {
			timer.Stop()
		}
		if context.Cause(ctx) == errRequestTimeout {
			err = errRequestTimeout
		}
		cancel(nil)
		return nil, err
	}

	var body *replayBody
	if req.Body != nil && req.Body != http.NoBody {
		body = newReplayBody(req.Body)
	}
	scheme := "http"
	if gs.protocol == GroupHTTPS {
		scheme = "https"
	}
	for attempt := 0; ; attempt++ {
		u := gs.upstreams[pick.Index]
		call.server = u.addr
		if pick.FailOpen {
			p.metrics.failOpen.Add(1)
		}
		out := req.WithContext(ctx)
		target := *req.URL
		target.Scheme, target.Host = scheme, u.addr
		out.URL = &target
		if body != nil {
			if out.Body, err = body.reader(); err != nil {
				return fail(err)
			}
		}
		u.backend.Begin()
		res, err := u.web.RoundTrip(out)
		if err == nil {
			if timer != nil && !timer.Stop() {
				// The timeout won the race: the answer is dropped.
				res.Body.Close()
				u.backend.End()
				return fail(errRequestTimeout)
			}
			end := func() { u.backend.End(); cancel(nil) }
			if rw, ok := res.Body.(io.ReadWriteCloser); ok {
				// A protocol upgrade (WebSocket): the proxy writes to it too.
				res.Body = &endingConn{endingBody: endingBody{ReadCloser: rw, end: end}, w: rw}
			} else {
				res.Body = &endingBody{ReadCloser: res.Body, end: end}
			}
			return res, nil
		}
		u.backend.End()
		var ce *connectError
		if attempt > 0 || !errors.As(err, &ce) || ctx.Err() != nil {
			return fail(err)
		}
		p.connectFailed(g.id, u, err)
		next, perr := gs.picker.Pick(source, u.backend)
		if perr != nil {
			return fail(err)
		}
		pick = next
	}
}

// webRecorder notes the status and size of a response. Unwrap lets the
// reverse proxy reach the connection's Flusher and Hijacker.
type webRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *webRecorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *webRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *webRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the bytes read from a request body. The transport
// may still be reading it when the response has ended, hence the atomic.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) count() int64 {
	if b == nil {
		return 0
	}
	return b.n.Load()
}

// endingBody runs end once, when the response body is closed.
type endingBody struct {
	io.ReadCloser
	once sync.Once
	end  func()
}

func (b *endingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.end)
	return err
}

// endingConn is an endingBody that can be written to.
type endingConn struct {
	endingBody
	w io.Writer
}

func (b *endingConn) Write(p []byte) (int, error) { return b.w.Write(p) }

// watchedConn reports when the HTTP server has closed a connection.
type watchedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *watchedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// connQueue is a net.Listener fed with connections the listener accepted.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to the server; it reports false if the server has stopped.
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
