package h2

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/balancer"
	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/proxy/route"
	"github.com/albctl/albctl/pkg/proxy/sock"
)

// testFront is the engine serving one TLS listener on 127.0.0.1 in front
// of one group, as the proxy's listeners run it.
type testFront struct {
	addr  string
	srv   *Server
	group *route.Group
}

// startFront serves a listener in front of a group of the servers at
// addrs, each of weight 100, until the test ends.
func startFront(t testing.TB, addrs ...string) *testFront {
	t.Helper()
	rec := obs.NewRecorder(nil)
	e := New(Options{Recorder: rec, MaxConcurrentStreams: 1000, HandshakeTimeout: 5 * time.Second, DialTimeout: 5 * time.Second})
	g := testGroup("sgp-test", rec, addrs...)
	rt := &route.Route{ListenerID: "lsn-test", Group: g, IdleTimeout: 15 * time.Second}
	srv := e.NewServer(func() *route.Route { return rt })
	cfg := &tls.Config{Certificates: []tls.Certificate{testutil.TestCA(t).Cert(t, "localhost")}, NextProtos: []string{"h2"}}
	return &testFront{addr: serveListener(t, srv, g, cfg), srv: srv, group: g}
}

// testGroup is a group of the servers at addrs, each of weight 100.
func testGroup(id string, rec *obs.Recorder, addrs ...string) *route.Group {
	g := route.NewGroup(id)
	servers := make([]route.Server, len(addrs))
	for i, a := range addrs {
		servers[i] = route.Server{Addr: a, Weight: 100}
	}
	g.Update(&route.Env{Recorder: rec, DialTimeout: 5 * time.Second}, route.Settings{Protocol: route.ProtocolGRPC, Scheduler: balancer.SchedulerWRR}, servers)
	return g
}

// serveListener serves srv on a new listener on 127.0.0.1, through TLS if
// cfg is set, as the proxy's listeners do, until the test ends, and
// returns its address. Then the listener and its connections close, and
// so do g's servers.
func serveListener(tb testing.TB, srv *Server, g *route.Group, cfg *tls.Config) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				sc := sock.NewSpill(sock.Raw(c))
				if cfg == nil {
					srv.ServeConn(sc, sc)
					return
				}
				tc := tls.Server(sc, cfg)
				if tc.Handshake() == nil {
					srv.ServeConn(tc, sc)
				}
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		srv.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		for _, u := range g.Remove() {
			u.Close()
		}
		wg.Wait()
		srv.Wait()
	})
	return ln.Addr().String()
}

// backendConns returns the engine's connections to the server at addr.
func (tf *testFront) backendConns(addr string) []*backConn {
	return poolConns(tf.srv, tf.group.Upstream(addr))
}

// poolConns returns srv's engine's connections to u.
func poolConns(srv *Server, u *route.Upstream) []*backConn {
	bp := srv.e.poolOf(u)
	bp.mu.Lock()
	defer bp.mu.Unlock()
	return append([]*backConn(nil), bp.conns...)
}

// clientConns returns the listener's client connections.
func (tf *testFront) clientConns() []*frontConn {
	tf.srv.mu.Lock()
	defer tf.srv.mu.Unlock()
	var out []*frontConn
	for fc := range tf.srv.conns {
		out = append(out, fc)
	}
	return out
}

func dial(t testing.TB, addr string) testpb.TestServiceClient { return testutil.DialInterop(t, addr) }

func ctxTimeout(t testing.TB, d time.Duration) context.Context { return testutil.CtxTimeout(t, d) }

func wantCode(t testing.TB, err error, code codes.Code, msgPart string) {
	t.Helper()
	testutil.WantCode(t, err, code, msgPart)
}

func isTimeoutErr(err error) bool {
	te, ok := err.(interface{ Timeout() bool })
	return ok && te.Timeout()
}
