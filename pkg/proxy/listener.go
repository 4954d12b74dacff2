//lint:file-ignore SA1019 x/net/http2's Server.ServeConn and Transport are used on purpose: they serve one accepted TLS conn and a per-backend h2c pool, which net/http does not expose.

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// maxHeaderBytes is the largest request header block accepted (32 KiB, as
// the listener model documents).
const maxHeaderBytes = 32 << 10

// listener accepts TLS connections and serves HTTP/2 on each of them.
type listener struct {
	p    *Proxy
	id   string
	addr string
	ln   net.Listener

	tlsConfig *tls.Config
	state     atomic.Pointer[listenerState]

	mu      sync.Mutex
	servers []*h2Server // every server generation, for GOAWAY at close
	webs    []*webFront // every HTTP server generation, likewise
	conns   map[net.Conn]struct{}
	fconns  map[*frontConn]struct{} // the frames engine's connections
	closing bool
	wg      sync.WaitGroup
}

// listenerState is what Apply can change on a running listener.
type listenerState struct {
	cfg   ListenerConfig
	certs *certSet
	group *group
	h2    *h2Server
	port  []string // x-forwarded-port value

	// For an HTTP group: the HTTP server, and its TLS configuration unless
	// the listener is plaintext.
	web    *webFront
	webTLS *tls.Config
}

// h2Server is an HTTP/2 server with its settings. It changes only when the
// idle timeout does; connections keep the server they started with.
type h2Server struct {
	h2          *http2.Server
	hs          *http.Server // carries MaxHeaderBytes and the GOAWAY hook
	idleTimeout time.Duration
}

func (p *Proxy) listen(lc ListenerConfig) (*listener, error) {
	ln, err := net.Listen("tcp", lc.Addr)
	if err != nil {
		return nil, err
	}
	l := &listener{p: p, id: lc.ID, addr: lc.Addr, ln: ln, conns: map[net.Conn]struct{}{}, fconns: map[*frontConn]struct{}{}}
	l.tlsConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Only h2: a client that cannot speak HTTP/2 cannot make gRPC calls.
		NextProtos: []string{"h2"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return l.state.Load().certs.get(hello.ServerName), nil
		},
	}
	return l, nil
}

// Addr returns the bound address.
func (l *listener) Addr() string { return l.ln.Addr().String() }

func (l *listener) update(lc ListenerConfig, certs *certSet, g *group) {
	idle := lc.IdleTimeout
	if idle <= 0 {
		idle = 15 * time.Second
	}
	st := &listenerState{cfg: lc, certs: certs, group: g}
	if _, port, err := net.SplitHostPort(l.Addr()); err == nil {
		st.port = []string{port}
	}
	old := l.state.Load()
	if old != nil && old.h2.idleTimeout == idle {
		st.h2 = old.h2
	} else {
		srv := &h2Server{
			h2: &http2.Server{
				MaxConcurrentStreams: l.p.opts.MaxConcurrentStreams,
				IdleTimeout:          idle,
				// Detect clients that vanished while holding a stream.
				ReadIdleTimeout: clientReadIdle,
				PingTimeout:     clientPingTimeout,
			},
			hs:          &http.Server{MaxHeaderBytes: maxHeaderBytes},
			idleTimeout: idle,
		}
		// ConfigureServer registers the HTTP/2 server's graceful shutdown
		// (GOAWAY to every connection) as hs's shutdown hook. hs itself
		// never serves.
		if err := http2.ConfigureServer(srv.hs, srv.h2); err != nil {
			panic(err) // only fails for bad TLS cipher settings, which we do not set
		}
		l.mu.Lock()
		l.servers = append(l.servers, srv)
		l.mu.Unlock()
		st.h2 = srv
	}
	if g.state.Load().protocol != GroupGRPC {
		if old != nil && old.web != nil && old.web.idle == idle {
			st.web = old.web
		} else {
			st.web = l.newWebFront(idle)
			l.mu.Lock()
			l.webs = append(l.webs, st.web)
			l.mu.Unlock()
		}
		if len(lc.Certificates) > 0 {
			st.webTLS = l.webTLSConfig(lc.HTTP2)
		}
	}
	l.state.Store(st)
	if old != nil && old.web != nil && old.web != st.web {
		l.retire(old.web)
	}
}

// retire stops a web server generation from taking connections; the ones
// it has end when their requests are done.
func (l *listener) retire(w *webFront) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		_ = w.srv.Shutdown(context.Background())
	}()
}

func (l *listener) start() {
	l.wg.Add(1)
	go l.acceptLoop()
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, do not spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.p.log.Warn("accept failed", "listener", l.id, "err", err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		l.mu.Lock()
		if l.closing {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serveConn(c)
	}
}

const (
	plaintextRefusal = "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" +
		"This port expects TLS with HTTP/2 (gRPC); the client sent plaintext.\n"
	http1RefusalBody = "This listener speaks HTTP/2 only (ALPN h2), as gRPC needs.\n"
)

var http1Refusal = fmt.Sprintf("HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
	len(http1RefusalBody), http1RefusalBody)

func (l *listener) serveConn(c net.Conn) {
	defer l.wg.Done()
	defer func() {
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
		c.Close()
	}()

	sock := newSockConn(c)
	st := l.state.Load()
	if st.web != nil {
		l.serveWeb(sock, st)
		return
	}
	_ = c.SetDeadline(time.Now().Add(l.p.opts.HandshakeTimeout))
	var sc *spillConn
	var under net.Conn = c
	if l.p.opts.Engine == EngineFrames {
		sc = newSpillConn(sock)
		under = sc
	}
	tc := tls.Server(under, l.tlsConfig)
	if err := tc.Handshake(); err != nil {
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && rhe.Conn != nil {
			// Plaintext on the TLS port, most likely HTTP/1 or h2c: say so.
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, plaintextRefusal)
		}
		l.p.log.Debug("TLS handshake failed", "listener", l.id, "client", c.RemoteAddr().String(), "err", err)
		return
	}
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		// A TLS client without ALPN: presumably HTTP/1.1. Read its request
		// head so that the answer is not lost to a TCP reset, then refuse.
		_ = c.SetDeadline(time.Now().Add(time.Second))
		br := bufio.NewReaderSize(tc, 4096)
		for i := 0; i < 100; i++ {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" || line == "\n" {
				break
			}
		}
		io.WriteString(tc, http1Refusal)
		return
	}
	_ = c.SetDeadline(time.Time{})

	st = l.state.Load()
	if l.p.opts.Engine == EngineFrames {
		l.serveFrames(tc, sc, st)
		return
	}
	st.h2.h2.ServeConn(newBatchConn(tc), &http2.ServeConnOpts{
		Context:    context.Background(),
		BaseConfig: st.h2.hs,
		Handler:    l,
	})
}

func (l *listener) connCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// close stops accepting and sends GOAWAY to every client connection. Calls
// in flight continue; each connection closes when its calls are done.
func (l *listener) close() {
	l.mu.Lock()
	l.closing = true
	servers, webs := l.servers, l.webs
	fconns := make([]*frontConn, 0, len(l.fconns))
	for fc := range l.fconns {
		fconns = append(fconns, fc)
	}
	l.mu.Unlock()
	l.ln.Close()
	for _, fc := range fconns {
		fc.goAway()
	}
	for _, s := range servers {
		// With no connections of its own, hs.Shutdown only runs the GOAWAY
		// hook and returns.
		_ = s.hs.Shutdown(context.Background())
	}
	for _, w := range webs {
		l.retire(w)
	}
}

// closeConns cuts every client connection.
func (l *listener) closeConns() {
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	webs := l.webs
	l.mu.Unlock()
	for _, w := range webs {
		_ = w.srv.Close()
	}
}

// certSet selects a certificate by SNI.
type certSet struct {
	def    *tls.Certificate
	byName map[string]*tls.Certificate // exact names and "*.example.com"
}

func newCertSet(certs []tls.Certificate) (*certSet, error) {
	cs := &certSet{byName: map[string]*tls.Certificate{}}
	for i := range certs {
		c := &certs[i]
		if len(c.Certificate) == 0 {
			return nil, fmt.Errorf("certificate %d is empty", i)
		}
		leaf := c.Leaf
		if leaf == nil {
			var err error
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, fmt.Errorf("certificate %d: %w", i, err)
			}
		}
		if i == 0 {
			cs.def = c
		}
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if _, dup := cs.byName[n]; !dup {
				cs.byName[n] = c
			}
		}
		for _, ip := range leaf.IPAddresses {
			if _, dup := cs.byName[ip.String()]; !dup {
				cs.byName[ip.String()] = c
			}
		}
	}
	return cs, nil
}

func (cs *certSet) get(serverName string) *tls.Certificate {
	if serverName == "" {
		return cs.def
	}
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	if c := cs.byName[name]; c != nil {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := cs.byName["*"+name[i:]]; c != nil {
			return c
		}
	}
	return cs.def
}
