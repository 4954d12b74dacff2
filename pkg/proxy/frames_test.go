package proxy

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/albctl/albctl/internal/testutil"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// These tests pin down what a frame-forwarding core has to get right on its
// own (HPACK state per hop, backend stream limits, flow control on both
// hops).

// Header blocks that churn both hops' dynamic tables, span CONTINUATION
// frames, and repeat across calls must arrive intact every time.
func TestHeaderEncodingAcrossCalls(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))
	client := dial(t, addr)
	for i := 0; i < 40; i++ {
		kv := []string{"x-echo-same", "constant value"}
		// Values that differ per call evict older table entries.
		for j := 0; j < 8; j++ {
			kv = append(kv, fmt.Sprintf("x-echo-k%d", j), strings.Repeat(fmt.Sprintf("%c", 'a'+(i+j)%26), 300+i))
		}
		if i%10 == 9 {
			// Above one 16 KiB frame: HEADERS plus CONTINUATION, both ways.
			kv = append(kv, "x-echo-big", strings.Repeat("z", 20<<10))
		}
		ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 5*time.Second), kv...)
		var header, trailer metadata.MD
		if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		for k := 0; k < len(kv); k += 2 {
			for _, md := range []metadata.MD{header, trailer} {
				if got := md.Get(kv[k]); len(got) != 1 || got[0] != kv[k+1] {
					t.Fatalf("call %d: %s came back as %.40q", i, kv[k], got)
				}
			}
		}
	}
}

// Request headers over the listener's 32 KiB limit are refused and never
// reach a backend.
func TestHeaderListLimit(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))
	client := dial(t, addr)
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 5*time.Second), "x-big", strings.Repeat("v", 40<<10))
	if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); err == nil {
		t.Fatal("a 40 KiB header list was accepted")
	}
	if n := b.Calls.Load(); n != 0 {
		t.Fatalf("the backend got %d calls", n)
	}
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("a normal call after the refusal: %v", err)
	}
}

// A backend that allows one stream per connection gets its calls spread
// over several connections, never two at once on one.
func TestBackendMaxConcurrentStreamsOne(t *testing.T) {
	b := testutil.StartInterop(t, "b1", grpc.MaxConcurrentStreams(1))
	p, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))
	client := dial(t, addr)
	var wg sync.WaitGroup
	var maxConns atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if st := p.Status(); len(st.Groups) == 1 && len(st.Groups[0].Servers) == 1 {
				if n := int64(st.Groups[0].Servers[0].Connections); n > maxConns.Load() {
					maxConns.Store(n)
				}
			}
		}
	}()
	start := time.Now()
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "x-sleep", "300ms")
			if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
				t.Errorf("call: %v", err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("8 concurrent 300ms calls took %v: they were serialised on one connection", d)
	}
	if maxConns.Load() < 2 {
		t.Fatalf("at most %d backend connection(s) seen", maxConns.Load())
	}
}

// A client stream far larger than any window, to a backend that waits
// before reading: both hops' windows run dry, and the call completes.
func TestRequestWindowExhaustion(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))
	client := dial(t, addr)
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 30*time.Second), "x-sleep", "500ms")
	stream, err := client.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := &testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 64<<10)}}
	const n = 384 // 24 MiB
	for i := 0; i < n; i++ {
		if err := stream.Send(msg); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	res, err := stream.CloseAndRecv()
	if err != nil || res.AggregatedPayloadSize != n*64<<10 {
		t.Fatalf("%v %v", res, err)
	}
}

// Many calls on one connection under a request timeout: the slow ones time
// out on time, the quick ones and those that began answering are left alone.
func TestRequestTimeoutManyCalls(t *testing.T) {
	b := startBackend(t, "b1")
	cfg := testConfig(t, GroupConfig{Servers: servers(100, b)})
	cfg.Listeners[0].RequestTimeout = 300 * time.Millisecond
	_, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := ctxTimeout(t, 10*time.Second)
			if i%2 == 0 {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-sleep", "10s")
				_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
				wantCode(t, err, codes.DeadlineExceeded, "request timeout of 300ms expired")
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("call %d timed out after %v", i, d)
				}
				return
			}
			for j := 0; j < 5; j++ {
				if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
					t.Errorf("quick call %d/%d: %v", i, j, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			// A stream whose headers came in time outlives the timeout.
			so, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
				ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 1, IntervalUs: 500e3}}})
			if err != nil {
				t.Error(err)
				return
			}
			for k := 0; k < 2; k++ {
				if _, err := so.Recv(); err != nil {
					t.Errorf("stream message %d: %v", k, err)
				}
			}
		}()
	}
	wg.Wait()
}

// A client connection without calls for the listener's idle timeout is
// closed; the client reconnects for its next call.
func TestIdleTimeoutClosesClientConnections(t *testing.T) {
	b := startBackend(t, "b1")
	cfg := testConfig(t, GroupConfig{Servers: servers(100, b)})
	cfg.Listeners[0].IdleTimeout = 300 * time.Millisecond
	p, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle client connection to close", func() bool {
		return p.Status().Listeners[0].Connections == 0
	})
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("call after the idle close: %v", err)
	}
}
