// Package web is the data plane's HTTP engine. A listener whose server
// group speaks HTTP or HTTPS (rather than gRPC) is served by net/http:
// HTTP/1.1, plus HTTP/2 over TLS when the listener has it on, with
// httputil.ReverseProxy forwarding each request to a server picked for that
// request alone. Backends are spoken to in HTTP/1.1, over TLS for an HTTPS
// group; like the cloud's, the proxy does not verify a backend's
// certificate. Errors the proxy makes are 502 (the server could not be
// reached or broke off), 503 (no server to send to) and 504 (the listener's
// request timeout expired before the response headers).
package web

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
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/albctl/albctl/pkg/balancer"
	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/proxy/route"
)

// Options are the engine's fixed settings.
type Options struct {
	// Recorder takes every request's record.
	Recorder *obs.Recorder
	// HandshakeTimeout bounds the wait for a request's headers.
	HandshakeTimeout time.Duration
	// MaxConcurrentStreams per HTTP/2 client connection.
	MaxConcurrentStreams uint32
}

// Front is one generation of a listener's HTTP server. The listener
// accepts connections itself and hands them over with ServeConn; a change
// of idle timeout starts a new generation, and the old one finishes the
// connections it has.
type Front struct {
	// Idle is the idle timeout this generation was made with.
	Idle time.Duration

	opts  Options
	route func() *route.Route
	srv   *http.Server
	queue *connQueue
	wg    sync.WaitGroup // Serve and Retire's Shutdown
}

// webCall is what one request records for the access log and the metrics.
type webCall struct {
	rt     *route.Route
	client string
	server string
	status int // set by the proxy when it, not a server, ended the request
	// rule is the rule the request met, or nil; gs is the state of the
	// group it goes to, and pickKey what that group's picker hashes.
	rule    *route.Rule
	group   *route.Group
	gs      *route.GroupState
	pickKey string
	source  netip.Addr
}

// httpHeader gives a request's header to route's matching.
type httpHeader http.Header

func (h httpHeader) Value(name string, i int) (string, bool) {
	if vs := http.Header(h).Values(name); i < len(vs) {
		return vs[i], true
	}
	return "", false
}

// choose finds the rule the request meets, if any, and where it goes.
func (call *webCall) choose(r *http.Request) {
	source := route.HostOf(call.client)
	call.source, _ = netip.ParseAddr(source)
	req := route.Request{Path: r.URL.RequestURI(), Host: r.Host, Method: r.Method, Source: call.source, Header: httpHeader(r.Header)}
	g := call.rt.Group
	if call.rule = call.rt.Rules.Match(&req); call.rule != nil && call.rule.Fixed == nil {
		g = call.rule.Group()
	}
	call.group, call.gs = g, g.State()
	call.pickKey = call.gs.PickKey(&req, source)
}

// answerAtProxy answers a request its rule stops: over the traffic limit,
// or with a fixed response. It reports whether it did.
func (call *webCall) answerAtProxy(w http.ResponseWriter) bool {
	r := call.rule
	switch {
	case r == nil:
		return false
	case r.Limit != nil && !r.Limit.Allow(call.source):
		call.status = http.StatusServiceUnavailable
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(call.status)
		fmt.Fprintf(w, "rule %s: over its traffic limit of %d requests per second\n", r.Label, r.Limit.QPS)
		return true
	case r.Fixed != nil:
		call.status = r.Fixed.HTTPCode
		w.Header().Set("Content-Type", r.Fixed.ContentType)
		w.WriteHeader(call.status)
		_, _ = io.WriteString(w, r.Fixed.Body)
		return true
	}
	return false
}

type webCallKey struct{}

var (
	errNoServers      = errors.New("no healthy servers")
	errRequestTimeout = errors.New("request timeout expired")
)

// statusClientClosed is logged for requests the client abandoned before an
// answer, as nginx logs them.
const statusClientClosed = 499

// NewFront starts a server generation for the listener at addr, whose
// current route is current().
func NewFront(opts Options, addr net.Addr, idle time.Duration, current func() *route.Route) *Front {
	f := &Front{Idle: idle, opts: opts, route: current, queue: newConnQueue(addr)}
	quiet := log.New(io.Discard, "", 0)
	rp := &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    transport{f},
		ErrorHandler: answerError,
		ErrorLog:     quiet,
	}
	f.srv = &http.Server{
		Handler:           f.handler(rp),
		ReadHeaderTimeout: opts.HandshakeTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    route.MaxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: int(opts.MaxConcurrentStreams)},
		ErrorLog:          quiet,
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_ = f.srv.Serve(f.queue)
	}()
	return f
}

// TLSConfig is the TLS configuration of a listener in front of an HTTP
// group: base's certificates, HTTP/1.1, and HTTP/2 if http2 is set.
func TLSConfig(base *tls.Config, http2 bool) *tls.Config {
	cfg := base.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	if http2 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	return cfg
}

// ServeConn hands an accepted connection to the server, with TLS if
// tlsConfig is set, and returns once the server has closed it.
func (f *Front) ServeConn(c net.Conn, tlsConfig *tls.Config) {
	wc := &watchedConn{Conn: c, closed: make(chan struct{})}
	var conn net.Conn = wc
	if tlsConfig != nil {
		conn = tls.Server(wc, tlsConfig)
	}
	if f.queue.push(conn) {
		<-wc.closed
	} else {
		c.Close()
	}
}

// Retire stops the generation from taking connections; the ones it has end
// when their requests are done.
func (f *Front) Retire() {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_ = f.srv.Shutdown(context.Background())
	}()
}

// Close cuts every connection of the generation.
func (f *Front) Close() { _ = f.srv.Close() }

// Wait waits for the generation's goroutines, once it was retired or
// closed.
func (f *Front) Wait() { f.wg.Wait() }

// webHandler accounts for each request around the reverse proxy.
func (f *Front) handler(rp http.Handler) http.Handler {
	rec := f.opts.Recorder
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		call := &webCall{rt: f.route(), client: r.RemoteAddr}
		call.choose(r)
		out := &webRecorder{ResponseWriter: w}
		var in *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			in = &countingBody{ReadCloser: r.Body}
			r.Body = in
		}
		rec.Started()
		defer func() {
			status := out.status
			if call.status != 0 {
				status = call.status
			}
			rule := ""
			if call.rule != nil {
				rule = call.rule.Label
			}
			rec.Finished(&obs.Call{
				Web: true, Listener: call.rt.ListenerID, Client: call.client, Method: r.Method + " " + r.URL.Path,
				Server: call.server, Rule: rule, Code: status, Start: start, BytesIn: in.count(), BytesOut: out.bytes,
			})
		}()
		if call.answerAtProxy(out) {
			return
		}
		rp.ServeHTTP(out, r.WithContext(context.WithValue(r.Context(), webCallKey{}, call)))
	})
}

func rewrite(pr *httputil.ProxyRequest) {
	call := pr.In.Context().Value(webCallKey{}).(*webCall)
	// Append to what the client sent, as the cloud does.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	pr.SetXForwarded()
	if call.rt.ForwardedPort != nil {
		pr.Out.Header["X-Forwarded-Port"] = call.rt.ForwardedPort
	}
	if cc := call.rt.ClientCert; cc != nil {
		for _, name := range []string{cc.Subject, cc.Issuer, cc.Fingerprint, cc.Verify} {
			pr.Out.Header.Del(name)
		}
		if pr.In.TLS != nil {
			for _, f := range cc.Fields(pr.In.TLS) {
				pr.Out.Header.Set(f.Name, f.Value)
			}
		}
	}
	if call.rule != nil {
		for _, name := range call.rule.Remove {
			pr.Out.Header.Del(name)
		}
		for _, f := range call.rule.Insert {
			pr.Out.Header.Set(f.Name, f.Value)
		}
	}
	pr.Out.Host = pr.In.Host
	// The transport picks the server; this only makes the URL absolute.
	pr.Out.URL.Scheme, pr.Out.URL.Host = "http", pr.In.Host
}

// answerError answers a request that got no response from a server.
func answerError(w http.ResponseWriter, r *http.Request, err error) {
	call := r.Context().Value(webCallKey{}).(*webCall)
	var status int
	var msg string
	var ce *route.ConnectError
	switch {
	case r.Context().Err() != nil:
		call.status = statusClientClosed
		return
	case errors.Is(err, errNoServers):
		status, msg = http.StatusServiceUnavailable, "no healthy servers in group "+call.group.ID
	case errors.Is(err, errRequestTimeout):
		status, msg = http.StatusGatewayTimeout, fmt.Sprintf("request timeout of %v expired waiting for server %s", call.rt.RequestTimeout, call.server)
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

// transport sends a request to a server of the listener's group, and
// once more to another server if the first could not be connected to.
type transport struct{ f *Front }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := t.f.opts.Recorder
	call := req.Context().Value(webCallKey{}).(*webCall)
	pick, gs, err := call.group.Pick(call.gs, call.pickKey, nil)
	if err != nil {
		return nil, errNoServers
	}

	// The request timeout bounds the wait for the response headers only; the
	// context lives on until the response body is closed.
	ctx, cancel := context.WithCancelCause(req.Context())
	var timer *time.Timer
	if rt := call.rt.RequestTimeout; rt > 0 {
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
	if gs.Protocol == route.ProtocolHTTPS {
		scheme = "https"
	}
	for attempt := 0; ; attempt++ {
		u := gs.Upstreams[pick.Index]
		call.server = u.Addr
		if pick.FailOpen {
			rec.FailOpen()
		}
		out := req.WithContext(ctx)
		target := *req.URL
		target.Scheme, target.Host = scheme, u.Addr
		out.URL = &target
		if body != nil {
			if out.Body, err = body.reader(); err != nil {
				return fail(err)
			}
		}
		u.Backend.Begin()
		res, err := transportOf(u).RoundTrip(out)
		if err == nil {
			if timer != nil && !timer.Stop() {
				// The timeout won the race: the answer is dropped.
				res.Body.Close()
				u.Backend.End()
				return fail(errRequestTimeout)
			}
			end := func() { u.Backend.End(); cancel(nil) }
			if rw, ok := res.Body.(io.ReadWriteCloser); ok {
				// A protocol upgrade (WebSocket): the proxy writes to it too.
				res.Body = &endingConn{endingBody: endingBody{ReadCloser: rw, end: end}, w: rw}
			} else {
				res.Body = &endingBody{ReadCloser: res.Body, end: end}
			}
			return res, nil
		}
		u.Backend.End()
		var ce *route.ConnectError
		if attempt > 0 || !errors.As(err, &ce) || ctx.Err() != nil {
			return fail(err)
		}
		u.ConnectFailed(err)
		var next balancer.Result
		var perr error
		next, gs, perr = call.group.Pick(gs, call.pickKey, u.Backend)
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

// pool is a server's HTTP/1.1 connections.
type pool struct{ *http.Transport }

func (p pool) Close() { p.CloseIdleConnections() }

// transportOf returns the transport that keeps u's connections.
func transportOf(u *route.Upstream) *http.Transport {
	return u.Pool(route.PoolHTTP, func(u *route.Upstream) route.Pool {
		return pool{&http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return u.Dial(ctx) },
			// Backends behind a load balancer mostly have self-signed or
			// internal certificates; the cloud does not verify them either.
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
			DisableCompression:  true,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}}
	}).(pool).Transport
}
