package web

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/albctl/albctl/pkg/proxy/grpcweb"
	"github.com/albctl/albctl/pkg/proxy/route"
	"github.com/albctl/albctl/pkg/proxy/sock"
)

// Bridge takes gRPC-Web calls and CORS preflights that come over HTTP/1.1
// to a listener in front of a gRPC group. It passes each connection's
// requests, as they came, over an in-memory HTTP/2 connection to the
// engine that serves the listener's HTTP/2 clients, so that one engine
// translates and forwards every gRPC-Web call. Native gRPC still needs
// HTTP/2 and is refused.
type Bridge struct {
	// Idle is the idle timeout this bridge was made with.
	Idle time.Duration

	srv   *http.Server
	queue *connQueue
	serve func(net.Conn, *sock.Spill)
	wg    sync.WaitGroup
}

// NewBridge starts the HTTP/1.1 server of a listener at addr; serve runs
// the HTTP/2 engine on a connection until it ends.
func NewBridge(opts Options, addr net.Addr, idle time.Duration, serve func(net.Conn, *sock.Spill)) *Bridge {
	b := &Bridge{Idle: idle, queue: newConnQueue(addr), serve: serve}
	b.srv = &http.Server{
		Handler:           http.HandlerFunc(b.handle),
		ReadHeaderTimeout: opts.HandshakeTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    route.MaxHeaderBytes,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			bt := c.(*bridgedTLS)
			bt.bc = &bridgeConn{b: b, client: bt.Conn}
			return context.WithValue(ctx, bridgeKey{}, bt.bc)
		},
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		_ = b.srv.Serve(b.queue)
	}()
	return b
}

// ServeConn serves a TLS connection that negotiated HTTP/1.1 and returns
// once it is closed.
func (b *Bridge) ServeConn(tc *tls.Conn) {
	wc := &watchedConn{Conn: tc, closed: make(chan struct{})}
	if !b.queue.push(&bridgedTLS{Conn: tc, watched: wc}) {
		return
	}
	<-wc.closed
}

// Retire stops taking connections; the ones it has end after their
// requests.
func (b *Bridge) Retire() {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		_ = b.srv.Shutdown(context.Background())
	}()
}

// Close cuts every connection.
func (b *Bridge) Close() { _ = b.srv.Close() }

// Wait waits for the server's goroutines once it was retired or closed.
func (b *Bridge) Wait() { b.wg.Wait() }

// bridgedTLS is a client's TLS connection as the HTTP server holds it:
// closing it tells ServeConn, and ends the in-memory connection.
type bridgedTLS struct {
	*tls.Conn
	watched *watchedConn
	bc      *bridgeConn
}

func (c *bridgedTLS) Close() error {
	err := c.Conn.Close()
	c.watched.Close()
	if c.bc != nil {
		c.bc.close()
	}
	return err
}

type bridgeKey struct{}

// bridgeConn is one client connection's in-memory HTTP/2 connection to
// the engine, made at its first request.
type bridgeConn struct {
	b      *Bridge
	client *tls.Conn

	mu   sync.Mutex
	cc   *http.ClientConn
	done chan struct{} // closed when the engine is done with the connection
}

// engineConn is the engine's end of the in-memory connection: the client's
// address and TLS state, so that source conditions, ACL records and client
// certificate headers are the client's.
type engineConn struct {
	net.Conn
	remote net.Addr
	state  tls.ConnectionState
}

func (c *engineConn) RemoteAddr() net.Addr                 { return c.remote }
func (c *engineConn) ConnectionState() tls.ConnectionState { return c.state }

func (bc *bridgeConn) clientConn() (*http.ClientConn, error) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.cc != nil && bc.cc.Err() == nil && bc.cc.Available() > 0 {
		return bc.cc, nil
	}
	bc.closeLocked()
	ours, theirs := net.Pipe()
	done := make(chan struct{})
	bc.done = done
	sc := sock.NewSpill(theirs)
	go func() {
		defer close(done)
		defer theirs.Close()
		bc.b.serve(&engineConn{Conn: sc, remote: bc.client.RemoteAddr(), state: bc.client.ConnectionState()}, sc)
	}()
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	t := &http.Transport{Protocols: &h2c, DialContext: func(context.Context, string, string) (net.Conn, error) { return ours, nil }}
	cc, err := t.NewClientConn(context.Background(), "http", "engine:0")
	if err != nil {
		ours.Close()
		<-done
		return nil, err
	}
	bc.cc = cc
	return cc, nil
}

// discard ends cc if it is still the connection's, so that the next request makes a new one.
func (bc *bridgeConn) discard(cc *http.ClientConn) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.cc == cc {
		bc.closeLocked()
	}
}

// readCount is a request body that counts what was read of it: by the HTTP/2 client's own
// goroutine, while the handler may ask.
type readCount struct {
	io.ReadCloser
	n atomic.Int64
}

func (r *readCount) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// Close leaves the body to the HTTP/1.1 server, which closes it after the handler: a failed
// round trip closes its request's body, which a second try still needs.
func (r *readCount) Close() error { return nil }

func (bc *bridgeConn) close() {
	bc.mu.Lock()
	bc.closeLocked()
	bc.mu.Unlock()
}

// closeLocked ends the in-memory connection and waits for the engine to
// let go of it.
func (bc *bridgeConn) closeLocked() {
	if bc.cc != nil {
		bc.cc.Close()
		<-bc.done
		bc.cc = nil
	}
}

// hopByHop are the HTTP/1.1 fields that HTTP/2 forbids.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te"}

const http1Refusal = "This listener takes gRPC over HTTP/2 only; over HTTP/1.1 it takes gRPC-Web and Connect calls (application/grpc-web, application/grpc-web-text, application/proto, application/connect+proto) and their CORS preflights.\n"

func (b *Bridge) handle(w http.ResponseWriter, r *http.Request) {
	if !grpcweb.IsWeb(r.Header.Get("Content-Type")) && r.Method != http.MethodOptions {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusHTTPVersionNotSupported)
		_, _ = io.WriteString(w, http1Refusal)
		return
	}
	bc := r.Context().Value(bridgeKey{}).(*bridgeConn)
	body := &readCount{ReadCloser: r.Body}
	out := &http.Request{
		Method: r.Method, URL: r.URL, Host: r.Host, Header: r.Header.Clone(),
		Body: body, ContentLength: r.ContentLength, Proto: "HTTP/2.0", ProtoMajor: 2,
	}
	out.URL.Scheme, out.URL.Host = "http", r.Host
	if r.Body == http.NoBody {
		out.Body = nil
	}
	for _, h := range hopByHop {
		out.Header.Del(h)
	}
	out = out.WithContext(r.Context())
	_ = http.NewResponseController(w).EnableFullDuplex()
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		cc, err := bc.clientConn()
		if err == nil {
			if resp, err = cc.RoundTrip(out); err == nil {
				break
			}
			// The engine's connection may have gone idle and away just then: once, and only
			// if nothing of the body was taken, try a new one.
			bc.discard(cc)
		}
		if attempt > 0 || body.n.Load() > 0 || r.Context().Err() != nil {
			http.Error(w, "the listener could not take the call: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	defer resp.Body.Close()
	// The engine may answer before the request's end (a refusal, say). What is left of the
	// body must not be read as the connection's next request.
	defer func() { _, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 256<<10)) }()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			// Each piece as it comes: a stream's messages reach the page
			// one by one.
			_ = rc.Flush()
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			// The engine reset the stream: the client must not take a
			// cut body for a whole one.
			panic(http.ErrAbortHandler)
		}
	}
}
