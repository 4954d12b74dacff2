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
	g := route.NewGroup("sgp-test")
	servers := make([]route.Server, len(addrs))
	for i, a := range addrs {
		servers[i] = route.Server{Addr: a, Weight: 100}
	}
	g.Update(&route.Env{Recorder: rec, DialTimeout: 5 * time.Second}, route.ProtocolGRPC, balancer.SchedulerWRR, 0, servers)
	rt := &route.Route{ListenerID: "lsn-test", Group: g, IdleTimeout: 15 * time.Second}
	srv := e.NewServer(func() *route.Route { return rt })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{testutil.TestCA(t).Cert(t, "localhost")}, NextProtos: []string{"h2"}}
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
				defer c.Close()
				sc := sock.NewSpill(sock.Raw(c))
				tc := tls.Server(sc, cfg)
				if tc.Handshake() == nil {
					srv.ServeConn(tc, sc)
				}
			}()
		}
	}()
	t.Cleanup(func() {
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
	return &testFront{addr: ln.Addr().String(), srv: srv, group: g}
}

// backendConns returns the engine's connections to the server at addr.
func (tf *testFront) backendConns(addr string) []*backConn {
	bp := tf.srv.e.poolOf(tf.group.Upstream(addr))
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
