package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/albctl/albctl/internal/testutil"
)

func TestCallKinds(t *testing.T) {
	b := startBackend(t, "b1")
	var logBuf testutil.SyncBuffer
	p, addr := startProxy(t, Options{AccessLog: jsonAccessLog(t, &logBuf)},
		testConfig(t, GroupConfig{Servers: servers(100, b)}))
	client := dial(t, addr)
	ctx := ctxTimeout(t, 20*time.Second)

	res, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello")}})
	if err != nil || string(res.Payload.Body) != "hello" || res.ServerId != "b1" {
		t.Fatalf("unary: %v %v", res, err)
	}

	so, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 20}, {Size: 30}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{10, 20, 30} {
		m, err := so.Recv()
		if err != nil || len(m.Payload.Body) != want {
			t.Fatalf("server stream message %d: %v", i, err)
		}
	}
	if _, err := so.Recv(); err != io.EOF {
		t.Fatalf("server stream end: %v", err)
	}

	si, err := client.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := si.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 1000)}}); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := si.CloseAndRecv()
	if err != nil || sum.AggregatedPayloadSize != 5000 {
		t.Fatalf("client stream: %v %v", sum, err)
	}

	// Bidi ping-pong: each answer must come back before the next request,
	// which fails if either direction is buffered until the stream ends.
	bidi, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if err := bidi.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i)}}}); err != nil {
			t.Fatal(err)
		}
		m, err := bidi.Recv()
		if err != nil || len(m.Payload.Body) != i {
			t.Fatalf("bidi %d: %v", i, err)
		}
	}
	bidi.CloseSend()
	if _, err := bidi.Recv(); err != io.EOF {
		t.Fatalf("bidi end: %v", err)
	}

	// One access-log record per call, as JSON lines.
	waitFor(t, "4 access log lines", func() bool { return strings.Count(logBuf.String(), "\n") >= 4 })
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("access log has %d lines, want 4:\n%s", len(lines), logBuf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["method"] != "/grpc.testing.TestService/UnaryCall" || rec["server"] != b.Addr || rec["grpc_status"] != 0.0 || rec["listener"] != "lsn-test" {
		t.Fatalf("access record: %v", rec)
	}
	var metrics bytes.Buffer
	p.WriteMetrics(&metrics)
	want := `albctl_proxy_calls_total{listener="lsn-test",method="/grpc.testing.TestService/UnaryCall",server="` + b.Addr + `",rule="-",protocol="grpc",grpc_status="0"} 1`
	if !strings.Contains(metrics.String(), want) {
		t.Fatalf("metrics lack %s:\n%s", want, metrics.String())
	}
}

func TestLargeMessage(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))
	client := dial(t, addr)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	res, err := client.UnaryCall(ctxTimeout(t, 30*time.Second), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Payload.Body, body) {
		t.Fatal("16 MiB payload corrupted")
	}
}

func TestMetadataAndTrailers(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))
	client := dial(t, addr)
	bin := string([]byte{0, 1, 2, 0xfe, 0xff})
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second),
		"x-echo-text", "hello", "x-echo-bin", bin, "x-forwarded-for", "192.0.2.7")

	var header, trailer metadata.MD
	if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	for _, md := range []metadata.MD{header, trailer} {
		if got := md.Get("x-echo-text"); len(got) != 1 || got[0] != "hello" {
			t.Fatalf("text metadata: %v", md)
		}
		if got := md.Get("x-echo-bin"); len(got) != 1 || got[0] != bin {
			t.Fatalf("binary metadata: %v", md)
		}
	}
	seen, _ := b.Seen()
	if got := seen.Get("x-forwarded-for"); len(got) != 1 || got[0] != "192.0.2.7, 127.0.0.1" {
		t.Fatalf("x-forwarded-for = %v", got)
	}
	if got := seen.Get("x-forwarded-proto"); len(got) != 1 || got[0] != "https" {
		t.Fatalf("x-forwarded-proto = %v", got)
	}
	if got := seen.Get("x-forwarded-port"); len(got) != 1 || !strings.HasSuffix(addr, ":"+got[0]) {
		t.Fatalf("x-forwarded-port = %v", got)
	}
	if got := seen.Get("x-echo-bin"); len(got) != 1 || got[0] != bin {
		t.Fatalf("backend got binary metadata %q", got)
	}

	// Trailers-only error: status, message and metadata survive.
	header, trailer = nil, nil
	_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing: 100% gone\n"}},
		grpc.Header(&header), grpc.Trailer(&trailer))
	wantCode(t, err, codes.NotFound, "no such thing: 100% gone\n")
	if got := trailer.Get("x-echo-bin"); len(got) != 1 || got[0] != bin {
		t.Fatalf("trailers-only metadata lost: header %v trailer %v", header, trailer)
	}
}

func TestGRPCTimeoutForwarded(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))
	client := dial(t, addr)
	if _, err := client.UnaryCall(ctxTimeout(t, 3*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	_, left := b.Seen()
	if left <= 2*time.Second || left > 3*time.Second {
		t.Fatalf("backend saw %v left of a 3s deadline", left)
	}
	// The client's deadline ends the call at the backend too.
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 200*time.Millisecond), "x-sleep", "10s")
	_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
	wantCode(t, err, codes.DeadlineExceeded, "")
	select {
	case <-b.Cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("backend call outlived the client's deadline")
	}
}

func TestRequestTimeout(t *testing.T) {
	b := startBackend(t, "b1")
	cfg := testConfig(t, GroupConfig{Servers: servers(100, b)})
	cfg.Listeners[0].RequestTimeout = 300 * time.Millisecond
	_, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)

	// A server that does not answer within the request timeout: DEADLINE_EXCEEDED, and the
	// call is cancelled at the server. The timeout is the proxy's, not a deadline for the
	// server: it is not forwarded. The client sets no deadline of its own.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-sleep", "10s")
	start := time.Now()
	_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
	wantCode(t, err, codes.DeadlineExceeded, "request timeout of 300ms expired waiting for server "+b.Addr)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("request timeout took %v", d)
	}
	if _, left := b.Seen(); left != 0 {
		t.Fatalf("backend saw a deadline %v away; the request timeout must not be forwarded", left)
	}
	select {
	case <-b.Cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the timed-out call was not cancelled at the backend")
	}

	// A stream that has started outlives the request timeout: long streams are the client's
	// to end.
	so, err := client.StreamingOutputCall(ctxTimeout(t, 10*time.Second), &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 1, IntervalUs: 800e3}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := so.Recv(); err != nil {
			t.Fatalf("message %d of a stream past the request timeout: %v", i, err)
		}
	}
	if _, err := so.Recv(); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
}

func TestClientCancelReachesBackend(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))
	client := dial(t, addr)
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "x-sleep", "30s"))
	done := make(chan error, 1)
	go func() {
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
		done <- err
	}()
	for b.Calls.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-b.Cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("cancellation did not reach the backend")
	}
	wantCode(t, <-done, codes.Canceled, "")
}

func TestErrorsAreGRPC(t *testing.T) {
	// A port that refuses connections.
	dead := startBackend(t, "dead")
	dead.Srv.Stop()

	t.Run("refused", func(t *testing.T) {
		var mu testutil.SyncBuffer
		_, addr := startProxy(t, Options{OnConnectFailure: func(g, a string, err error) {
			mu.Write([]byte(g + " " + a))
		}}, testConfig(t, GroupConfig{Servers: servers(100, dead)}))
		_, err := dial(t, addr).UnaryCall(ctxTimeout(t, 10*time.Second), &testpb.SimpleRequest{})
		wantCode(t, err, codes.Unavailable, "connection refused to "+dead.Addr)
		if !strings.Contains(mu.String(), "sgp-test "+dead.Addr) {
			t.Fatalf("passive health hook not called: %q", mu.String())
		}
	})
	t.Run("no servers", func(t *testing.T) {
		_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{}))
		_, err := dial(t, addr).UnaryCall(ctxTimeout(t, 10*time.Second), &testpb.SimpleRequest{})
		wantCode(t, err, codes.Unavailable, "no healthy servers in group sgp-test")
	})
	t.Run("retry once elsewhere", func(t *testing.T) {
		good := startBackend(t, "good")
		p, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: []ServerConfig{{Addr: dead.Addr, Weight: 100}, {Addr: good.Addr, Weight: 100}}}))
		client := dial(t, addr)
		for i := 0; i < 10; i++ {
			res, err := client.UnaryCall(ctxTimeout(t, 10*time.Second), &testpb.SimpleRequest{})
			if err != nil || res.ServerId != "good" {
				t.Fatalf("call %d: %v %v", i, res, err)
			}
		}
		if st := p.Backend("sgp-test", dead.Addr).Stats(); st.ConnectFailures != 5 {
			t.Fatalf("dead server: %+v, want 5 connect failures", st)
		}
	})
}
