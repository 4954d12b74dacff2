package proxy

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// These tests pin down what a frame-forwarding core has to get right on its
// own (HPACK state per hop, backend stream limits, flow control on both
// hops); they run against whichever engine ALBCTL_PROXY_ENGINE selects.

// startBackendWith is startBackend with extra grpc-go server options.
func startBackendWith(t testing.TB, name string, opts ...grpc.ServerOption) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: ln.Addr().String(), cancelled: make(chan struct{}, 16)}
	b.srv = grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(64 << 20), grpc.MaxSendMsgSize(64 << 20)}, opts...)...)
	testpb.RegisterTestServiceServer(b.srv, b)
	go b.srv.Serve(ln)
	t.Cleanup(b.srv.Stop)
	return b
}

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
	if n := b.calls.Load(); n != 0 {
		t.Fatalf("the backend got %d calls", n)
	}
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("a normal call after the refusal: %v", err)
	}
}

// A backend that allows one stream per connection gets its calls spread
// over several connections, never two at once on one.
func TestBackendMaxConcurrentStreamsOne(t *testing.T) {
	b := startBackendWith(t, "b1", grpc.MaxConcurrentStreams(1))
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
	if p.opts.Engine == EngineXNet {
		// x/net's transport puts every call on the first connection before
		// the backend's SETTINGS arrive and retries the refused ones: the
		// calls succeed, one after another.
		t.Logf("x/net engine: %v for the calls, at most %d connection(s)", time.Since(start), maxConns.Load())
		return
	}
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

// The header reader decodes a block however it is cut into CONTINUATION
// fragments, keeps HPACK state across blocks, and flags blocks that are too
// large or not valid HTTP/2.
func TestHeaderReader(t *testing.T) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	encode := func(fields ...hpack.HeaderField) []byte {
		buf.Reset()
		for _, f := range fields {
			enc.WriteField(f)
		}
		return append([]byte(nil), buf.Bytes()...)
	}
	request := []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"}, {Name: ":path", Value: "/s/M"},
		{Name: ":authority", Value: "localhost"}, {Name: "content-type", Value: "application/grpc"},
		{Name: "x-bin", Value: "AAEC/v8"}, {Name: "secret", Value: "s3cr3t", Sensitive: true},
	}
	hr := newHeaderReader(maxHeaderBytes, requestPseudo)
	decode := func(block []byte, cut int) *headerBlock {
		t.Helper()
		hf := headersFrame(t, 1, block[:cut], cut == len(block))
		hb, err := hr.start(hf)
		if err != nil {
			t.Fatal(err)
		}
		if cut < len(block) {
			if hb, err = hr.add(block[cut:], true); err != nil {
				t.Fatal(err)
			}
		}
		return hb
	}
	// The same fields twice: the second block is mostly table references.
	for round := 0; round < 2; round++ {
		block := encode(request...)
		for cut := 1; cut <= len(block); cut++ {
			if round == 1 && cut > 1 {
				break // a second encoding exists only once: the table moved on
			}
			hb := decode(block, cut)
			if hb.invalid || hb.truncated || len(hb.fields) != len(request) {
				t.Fatalf("round %d cut %d: %+v", round, cut, hb)
			}
			for i, f := range hb.fields {
				if f.Name != request[i].Name || f.Value != request[i].Value {
					t.Fatalf("round %d cut %d: field %d = %v", round, cut, i, f)
				}
			}
			if hb.pseudo(":path") != "/s/M" || len(hb.regular()) != 3 {
				t.Fatalf("pseudo/regular split wrong: %+v", hb.fields)
			}
			if cut < len(block) {
				// Decode the same bytes again from a fresh reader next time.
				hr = newHeaderReader(maxHeaderBytes, requestPseudo)
				enc = hpack.NewEncoder(&buf)
				block = encode(request...)
			}
		}
	}

	bad := map[string][]hpack.HeaderField{
		"upper-case name":        {{Name: ":method", Value: "POST"}, {Name: "X-Up", Value: "v"}},
		"pseudo after regular":   {{Name: "a", Value: "b"}, {Name: ":path", Value: "/"}},
		"unknown pseudo":         {{Name: ":status", Value: "200"}},
		"repeated pseudo":        {{Name: ":path", Value: "/"}, {Name: ":path", Value: "/x"}},
		"control char in value":  {{Name: "a", Value: "b\r\nc: d"}},
		"empty name after colon": {{Name: ":", Value: "x"}},
	}
	for name, fields := range bad {
		hr := newHeaderReader(maxHeaderBytes, requestPseudo)
		enc := hpack.NewEncoder(&buf)
		buf.Reset()
		for _, f := range fields {
			enc.WriteField(f)
		}
		hb, err := hr.start(headersFrame(t, 1, buf.Bytes(), true))
		if err != nil || !hb.invalid {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}

	// Over the limit: truncated, and the HPACK state still follows, so the
	// next block decodes.
	hr = newHeaderReader(maxHeaderBytes, requestPseudo)
	enc = hpack.NewEncoder(&buf)
	big := encode(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("v", 20<<10)}, hpack.HeaderField{Name: "x-big2", Value: strings.Repeat("w", 20<<10)})
	hb, err := hr.start(headersFrame(t, 1, big, true))
	if err != nil || !hb.truncated {
		t.Fatalf("40 KiB block: truncated=%v err=%v", hb != nil && hb.truncated, err)
	}
	hb, err = hr.start(headersFrame(t, 3, encode(request...), true))
	if err != nil || hb.truncated || hb.invalid || hb.pseudo(":method") != "POST" {
		t.Fatalf("block after a truncated one: %+v %v", hb, err)
	}
}

// headersFrame builds a HEADERS frame as the Framer would return it.
func headersFrame(t *testing.T, id uint32, frag []byte, endHeaders bool) *http2.HeadersFrame {
	t.Helper()
	var wire bytes.Buffer
	w := http2.NewFramer(&wire, nil)
	if err := w.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndHeaders: endHeaders}); err != nil {
		t.Fatal(err)
	}
	f, err := http2.NewFramer(nil, &wire).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	return f.(*http2.HeadersFrame)
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
