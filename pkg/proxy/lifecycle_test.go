package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/balancer"
)

func TestWeightsOverOneConnection(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: []ServerConfig{{Addr: b1.Addr, Weight: 100}, {Addr: b2.Addr, Weight: 50}}}))
	client := dial(t, addr) // one connection: balancing must be per call
	ctx := ctxTimeout(t, 60*time.Second)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 375; i++ {
				if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	n1, n2 := b1.Calls.Load(), b2.Calls.Load()
	if n1 < 950 || n1 > 1050 || n2 < 450 || n2 > 550 {
		t.Fatalf("calls %d/%d, want 1000/500 ±5%%", n1, n2)
	}
}

func TestLeastOutstandingAndSourceHash(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	t.Run("wlc", func(t *testing.T) {
		_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Scheduler: "wlc", Servers: servers(100, b1, b2)}))
		client := dial(t, addr)
		// Hold a slow call on one backend; quick calls must then go to the other.
		slowCtx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "x-sleep", "1s")
		done := make(chan *testpb.SimpleResponse, 1)
		go func() {
			res, _ := client.UnaryCall(slowCtx, &testpb.SimpleRequest{})
			done <- res
		}()
		for b1.Calls.Load()+b2.Calls.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		busy := b1
		if b2.Calls.Load() == 1 {
			busy = b2
		}
		for i := 0; i < 10; i++ {
			res, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{})
			if err != nil || res.ServerId == busy.Name {
				t.Fatalf("quick call %d went to the busy backend: %v %v", i, res, err)
			}
		}
		<-done
	})
	t.Run("sch", func(t *testing.T) {
		_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Scheduler: "sch", Servers: servers(100, b1, b2)}))
		client := dial(t, addr)
		first := ""
		for i := 0; i < 20; i++ {
			res, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if first == "" {
				first = res.ServerId
			} else if res.ServerId != first {
				t.Fatalf("one client IP reached %s and %s", first, res.ServerId)
			}
		}
	})
}

func TestUnhealthySkippedAndFailOpen(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	p, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b1, b2)}))
	client := dial(t, addr)
	p.Backend("sgp-test", b1.Addr).SetHealth(balancer.HealthUnhealthy)
	for i := 0; i < 6; i++ {
		if res, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil || res.ServerId != "b2" {
			t.Fatalf("%v %v", res, err)
		}
	}
	p.Backend("sgp-test", b2.Addr).SetHealth(balancer.HealthUnhealthy)
	for i := 0; i < 4; i++ {
		if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
			t.Fatalf("fail open: %v", err)
		}
	}
	if b1.Calls.Load() == 0 {
		t.Fatal("fail open did not use every backend")
	}
}

func TestBackendResetReachesClient(t *testing.T) {
	// A raw h2c backend that resets every stream after its headers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // RST_STREAM
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: []ServerConfig{{Addr: ln.Addr().String(), Weight: 100}}}))
	_, err = dial(t, addr).UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{})
	wantCode(t, err, codes.Internal, "RST_STREAM")
}

func TestSlowReaderBoundsMemory(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))
	client := dial(t, addr)
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "x-forever", "1"))
	defer cancel()
	stream, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 256 << 10}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	// The client stops reading. The backend must soon be held back by flow
	// control through the proxy, instead of the proxy buffering everything.
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	time.Sleep(1500 * time.Millisecond)
	sent1 := b.Sent.Load()
	time.Sleep(500 * time.Millisecond)
	sent2 := b.Sent.Load()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if sent2 != sent1 {
		t.Fatalf("backend still sending (%d then %d bytes): no back-pressure", sent1, sent2)
	}
	if sent2 > 64<<20 {
		t.Fatalf("backend sent %d MiB to a client that does not read", sent2>>20)
	}
	if grow := int64(after.HeapInuse) - int64(before.HeapInuse); grow > 48<<20 {
		t.Fatalf("heap grew by %d MiB", grow>>20)
	}
	t.Logf("backend sent %d KiB before back-pressure stopped it", sent2>>10)
}

func TestLiveApply(t *testing.T) {
	b1, b2, b3 := startBackend(t, "b1"), startBackend(t, "b2"), startBackend(t, "b3")
	cfg := testConfig(t, GroupConfig{Servers: servers(100, b1, b2)})
	p, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)

	// Long calls in flight on both servers across every change.
	var inflight sync.WaitGroup
	var failures atomic.Int64
	for i := 0; i < 4; i++ {
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 20*time.Second), "x-sleep", "800ms")
			if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
				t.Errorf("in-flight call: %v", err)
				failures.Add(1)
			}
		}()
	}
	for b1.Calls.Load()+b2.Calls.Load() < 4 {
		time.Sleep(5 * time.Millisecond)
	}

	// Remove b1, add b3, reweight b2, add a listener.
	cfg.Groups["sgp-test"] = GroupConfig{ID: "sgp-test", Servers: []ServerConfig{{Addr: b2.Addr, Weight: 30}, {Addr: b3.Addr, Weight: 60}}, DrainTimeout: 10 * time.Second}
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{ID: "lsn-2", Addr: "127.0.0.1:0", HTTP2: true, GroupID: "sgp-test",
		Certificates: cfg.Listeners[0].Certificates})
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if p.drainedConns() == 0 {
		t.Fatal("removed server's connections closed before its calls ended")
	}
	if b := p.Backend("sgp-test", b1.Addr); b != nil {
		t.Fatal("removed server still listed")
	}
	before1 := b1.Calls.Load()
	for i := 0; i < 9; i++ {
		if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if b1.Calls.Load() != before1 {
		t.Fatal("removed server got new calls")
	}
	if n3 := b3.Calls.Load(); n3 != 6 {
		t.Fatalf("b3 got %d of 9 calls, want 6 (weights 30/60)", n3)
	}
	if _, err := dial(t, p.ListenerAddr("lsn-2")).UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("new listener: %v", err)
	}
	inflight.Wait()
	if failures.Load() > 0 {
		t.Fatal("calls in flight failed during Apply")
	}

	// The drained server's connections close once its calls are done.
	waitFor(t, "drained server's connections to close", func() bool {
		return p.drainedConns() == 0
	})

	// Removing the listener again.
	cfg.Listeners = cfg.Listeners[:1]
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if p.ListenerAddr("lsn-2") != "" {
		t.Fatal("listener not removed")
	}
	// A bad config changes nothing.
	bad := cfg
	bad.Listeners = []ListenerConfig{{ID: "x", Addr: "127.0.0.1:0", HTTP2: true, GroupID: "nope", Certificates: cfg.Listeners[0].Certificates}}
	if err := p.Apply(bad); err == nil {
		t.Fatal("unknown group accepted")
	}
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, what, cond)
}

// drainedConns counts the open connections of servers being drained.
func (p *Proxy) drainedConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for u := range p.draining {
		n += u.ConnCount()
	}
	return n
}

func TestDrainTimeoutClosesConnections(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	cfg := testConfig(t, GroupConfig{Servers: servers(100, b1)})
	p, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)
	errc := make(chan error, 1)
	go func() {
		ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 20*time.Second), "x-sleep", "10s")
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
		errc <- err
	}()
	for b1.Calls.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cfg.Groups["sgp-test"] = GroupConfig{ID: "sgp-test", Servers: servers(100, b2), DrainTimeout: 300 * time.Millisecond}
	start := time.Now()
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("call on a removed server survived its drain timeout: %v after %v", err, time.Since(start))
	}
	wantCode(t, err, codes.Unavailable, "")
}

func TestBackendGracefulStop(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b1, b2)}))
	client := dial(t, addr)
	ctx := ctxTimeout(t, 30*time.Second)
	l := startLoad(4, func() error {
		_, err := client.UnaryCall(metadata.AppendToOutgoingContext(ctx, "x-sleep", "20ms"), &testpb.SimpleRequest{})
		return err
	})
	time.Sleep(200 * time.Millisecond)
	b1.Srv.GracefulStop() // GOAWAY, then its port refuses connections
	n2 := b2.Calls.Load()
	time.Sleep(300 * time.Millisecond)
	l.stop()
	if l.failed.Load() > 0 {
		t.Fatalf("%d calls failed across the backend's GOAWAY; first: %v", l.failed.Load(), l.firstErr.Load())
	}
	if b2.Calls.Load() == n2 {
		t.Fatal("no calls after the GOAWAY")
	}
}

// TestReplacingEveryServerFailsNoCall swaps a group's only server for another, again and again,
// under load: a call that took the group as it was before a swap goes to the new server.
func TestReplacingEveryServerFailsNoCall(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	p, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b1)}))
	client := dial(t, addr)
	l := startLoad(8, func() error {
		_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
		return err
	})
	for i := range 300 {
		cfg := testConfig(t, GroupConfig{Servers: servers(100, [2]*backend{b2, b1}[i%2])})
		cfg.Listeners[0].Addr = addr
		if err := p.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	l.stop()
	if l.failed.Load() > 0 || b1.Calls.Load() == 0 || b2.Calls.Load() == 0 {
		t.Fatalf("%d of %d calls failed (first: %v); b1 %d, b2 %d", l.failed.Load(), l.calls.Load(), l.firstErr.Load(), b1.Calls.Load(), b2.Calls.Load())
	}
}

func TestShutdownDrains(t *testing.T) {
	b := startBackend(t, "b1")
	p := New(Options{})
	if err := p.Apply(testConfig(t, GroupConfig{Servers: servers(100, b)})); err != nil {
		t.Fatal(err)
	}
	client := dial(t, p.ListenerAddr("lsn-test"))
	errc := make(chan error, 1)
	go func() {
		ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "x-sleep", "500ms")
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
		errc <- err
	}()
	for b.Calls.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	ctx := ctxTimeout(t, 5*time.Second)
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("call in flight failed during Shutdown: %v", err)
	}
	if err := p.Apply(Config{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Shutdown: %v", err)
	}
	// Shutdown with a call that outlives its context.
	p2 := New(Options{})
	if err := p2.Apply(testConfig(t, GroupConfig{Servers: servers(100, b)})); err != nil {
		t.Fatal(err)
	}
	client2 := dial(t, p2.ListenerAddr("lsn-test"))
	go func() {
		ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "x-sleep", "10s")
		_, err := client2.UnaryCall(ctx, &testpb.SimpleRequest{})
		errc <- err
	}()
	for b.Calls.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p2.Shutdown(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-errc; err == nil {
		t.Fatal("cut call succeeded")
	}
}

func TestNonH2ClientsRefused(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))

	t.Run("plaintext", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.0 400") {
			t.Fatalf("got %q, %v", line, err)
		}
	})
	t.Run("https without h2", func(t *testing.T) {
		hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost"},
		}}
		res, err := hc.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusHTTPVersionNotSupported {
			t.Fatalf("status %d", res.StatusCode)
		}
	})
	t.Run("ALPN without h2", func(t *testing.T) {
		start := time.Now()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr,
			&tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost", NextProtos: []string{"spdy/3"}})
		if err == nil {
			c.Close()
			t.Fatal("handshake succeeded")
		}
		if !strings.Contains(err.Error(), "no application protocol") || time.Since(start) > 2*time.Second {
			t.Fatalf("got %v after %v", err, time.Since(start))
		}
	})
}

func TestCertificateBySNI(t *testing.T) {
	b := startBackend(t, "b1")
	cfg := testConfig(t, GroupConfig{Servers: servers(100, b)})
	cfg.Listeners[0].Certificates = append(cfg.Listeners[0].Certificates, testCA(t).Cert(t, "grpc.example.com"))
	_, addr := startProxy(t, Options{}, cfg)
	for name, want := range map[string]string{"grpc.example.com": "grpc.example.com", "other.test": "localhost", "": "localhost"} {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: name, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		got := c.ConnectionState().PeerCertificates[0].Subject.CommonName
		c.Close()
		if got != want {
			t.Fatalf("SNI %q got certificate %q, want %q", name, got, want)
		}
	}
}
