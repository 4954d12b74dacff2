package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/albctl/albctl/pkg/proxy/h2"
	"github.com/albctl/albctl/pkg/proxy/route"
	"github.com/albctl/albctl/pkg/proxy/sock"
	"github.com/albctl/albctl/pkg/proxy/web"
)

// listener accepts connections and hands each to an engine: TLS with
// HTTP/2 to the h2 engine in front of a gRPC group, or the connection as it
// came to the web engine in front of an HTTP group.
type listener struct {
	p    *Proxy
	id   string
	addr string
	ln   net.Listener

	tlsConfig *tls.Config
	state     atomic.Pointer[listenerState]
	h2        *h2.Server
	denials   aclDenials

	mu sync.Mutex
	// webs are every HTTP server generation, and the HTTP/1.1 bridge of a
	// listener that takes gRPC-Web, for close.
	webs    []httpServer
	bridge  *web.Bridge
	conns   map[net.Conn]struct{}
	closing bool
	wg      sync.WaitGroup
}

// httpServer is a net/http server the listener hands connections to.
type httpServer interface {
	Retire()
	Close()
	Wait()
}

// listenerState is what Apply can change on a running listener.
type listenerState struct {
	cfg   ListenerConfig
	route *route.Route
	tls   *tls.Config // nil for a plaintext listener
	acl   *aclCheck   // nil admits every client

	// For an HTTP group: the HTTP server.
	web *web.Front
}

func (p *Proxy) listen(lc ListenerConfig) (*listener, error) {
	ln, err := net.Listen("tcp", lc.Addr)
	if err != nil {
		return nil, err
	}
	l := &listener{p: p, id: lc.ID, addr: lc.Addr, ln: ln, conns: map[net.Conn]struct{}{}}
	l.h2 = p.h2.NewServer(l.route)
	// Each handshake takes the configuration Apply last set, so a new policy,
	// CA or certificate applies to the next connection.
	l.tlsConfig = &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return l.state.Load().tls, nil },
	}
	return l, nil
}

// tlsConfig is the TLS configuration of a listener's handshakes: its
// certificates by SNI, its TLS policy and, for mutual TLS, the client CAs.
// ALPN offers only h2 in front of a gRPC group (a client that cannot speak
// HTTP/2 cannot make gRPC calls) unless the listener takes gRPC-Web,
// HTTP/1.1 too in front of an HTTP one.
func tlsConfig(lc ListenerConfig, certs *certSet, grpc bool) *tls.Config {
	cfg := &tls.Config{
		NextProtos: []string{"h2"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return certs.get(hello.ServerName), nil
		},
	}
	lc.TLS.apply(cfg)
	switch {
	case !grpc:
		cfg = web.TLSConfig(cfg, lc.HTTP2)
	case lc.Web != nil:
		// Browsers may come over HTTP/1.1 for gRPC-Web.
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	if lc.ClientCAs != nil {
		cfg.ClientCAs = lc.ClientCAs
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if lc.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg
}

// Addr returns the bound address.
func (l *listener) Addr() string { return l.ln.Addr().String() }

// route returns where the listener's calls go now.
func (l *listener) route() *route.Route { return l.state.Load().route }

func (l *listener) update(lc ListenerConfig, certs *certSet, g *group, rules []*route.Rule) {
	idle := lc.IdleTimeout
	if idle <= 0 {
		idle = 15 * time.Second
	}
	rt := &route.Route{ListenerID: lc.ID, Group: g.Group, RequestTimeout: lc.RequestTimeout, IdleTimeout: idle, ClientCert: lc.ClientCertHeaders, Web: lc.Web}
	if len(rules) > 0 {
		rt.Rules = route.NewRules(rules)
	}
	if _, port, err := net.SplitHostPort(l.Addr()); err == nil {
		rt.ForwardedPort = []string{port}
	}
	grpc := g.State().Protocol == GroupGRPC
	st := &listenerState{cfg: lc, route: rt}
	st.acl = lc.ACL.compile()
	if len(lc.Certificates) > 0 {
		st.tls = tlsConfig(lc, certs, grpc)
	}
	old := l.state.Load()
	if !grpc {
		if old != nil && old.web != nil && old.web.Idle == idle {
			st.web = old.web
		} else {
			st.web = web.NewFront(l.p.web, l.ln.Addr(), idle, l.route)
			l.mu.Lock()
			l.webs = append(l.webs, st.web)
			l.mu.Unlock()
		}
	}
	l.state.Store(st)
	if old != nil && old.web != nil && old.web != st.web {
		old.web.Retire()
	}
	l.mu.Lock()
	if b := l.bridge; b != nil && (b.Idle != idle || lc.Web == nil) {
		// The next HTTP/1.1 client gets a bridge with the new idle timeout; this one finishes
		// the connections it has.
		b.Retire()
		l.bridge = nil
	}
	l.mu.Unlock()
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
		if !l.admit(c) {
			continue
		}
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

	raw := sock.Raw(c)
	st := l.state.Load()
	if st.web != nil {
		if st.tls == nil {
			st.web.ServeConn(raw, nil)
		} else {
			st.web.ServeConn(raw, l.tlsConfig)
		}
		return
	}
	_ = c.SetDeadline(time.Now().Add(l.p.opts.HandshakeTimeout))
	sc := sock.NewSpill(raw)
	tc := tls.Server(sc, l.tlsConfig)
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
	if tc.ConnectionState().NegotiatedProtocol != "h2" && st.route.Web != nil {
		// HTTP/1.1, or a client without ALPN, which means the same.
		_ = c.SetDeadline(time.Time{})
		l.http1Bridge().ServeConn(tc)
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
	l.h2.ServeConn(tc, sc)
}

// http1Bridge returns the listener's HTTP/1.1 server for gRPC-Web, made
// for its first HTTP/1.1 client.
func (l *listener) http1Bridge() *web.Bridge {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bridge == nil {
		// Under mu, as update retires the bridge: the idle timeout is the one Apply set last.
		l.bridge = web.NewBridge(l.p.web, l.ln.Addr(), l.state.Load().route.IdleTimeout, l.h2.ServeConn)
		l.webs = append(l.webs, l.bridge)
	}
	return l.bridge
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
	webs := l.webs
	l.mu.Unlock()
	l.ln.Close()
	l.h2.Close()
	for _, w := range webs {
		w.Retire()
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
		w.Close()
	}
}

// wait waits for the listener's goroutines once it is closed and its
// connections are cut.
func (l *listener) wait() {
	l.wg.Wait()
	l.h2.Wait()
	l.mu.Lock()
	webs := l.webs
	l.mu.Unlock()
	for _, w := range webs {
		w.Wait()
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
