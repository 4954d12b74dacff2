package h2

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/albctl/albctl/internal/testutil"
)

// TestRapidResetIsCutOff opens streams and resets them at once, as fast as
// it can, on a raw connection. The proxy must answer with GOAWAY
// ENHANCE_YOUR_CALM and close the connection after a bounded number of
// calls reached the backend, while another client's calls go on.
func TestRapidResetIsCutOff(t *testing.T) {
	t.Run("RST_STREAM", func(t *testing.T) {
		testRapidReset(t, func(wf *http2.Framer, id uint32) error { return wf.WriteRSTStream(id, http2.ErrCodeCancel) })
	})
	// A stream the client breaks is reset by the proxy instead, with the
	// same cost: it counts the same.
	t.Run("broken streams", func(t *testing.T) {
		testRapidReset(t, func(wf *http2.Framer, id uint32) error {
			return wf.WritePriority(id, http2.PriorityParam{StreamDep: id})
		})
	})
}

// testRapidReset opens streams and ends each at once with end.
func testRapidReset(t *testing.T, end func(wf *http2.Framer, id uint32) error) {
	b := testutil.StartInterop(t, "b1")
	addr := startFront(t, b.Addr).addr
	good := dial(t, addr)
	if _, err := good.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}

	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: testutil.TestCA(t).Pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(20 * time.Second))

	// The reader takes everything the proxy sends, so the proxy never waits
	// for this client, and reports the GOAWAY code and the end of the
	// connection.
	type result struct {
		goAway  bool
		code    http2.ErrCode
		timeout bool
	}
	done := make(chan result, 1)
	go func() {
		var res result
		rf := http2.NewFramer(nil, tc)
		for {
			f, err := rf.ReadFrame()
			if err != nil {
				res.timeout = isTimeoutErr(err)
				done <- res
				return
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				res.goAway, res.code = true, ga.ErrCode
			}
		}
	}()

	if _, err := tc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	wf := http2.NewFramer(tc, nil)
	if err := wf.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	const maxStreams = 50000
	sent := 0
	for id := uint32(1); sent < maxStreams; id += 2 {
		hbuf.Reset()
		for _, f := range []hpack.HeaderField{
			{Name: ":method", Value: "POST"},
			{Name: ":scheme", Value: "https"},
			{Name: ":path", Value: "/grpc.testing.TestService/FullDuplexCall"},
			{Name: ":authority", Value: "localhost"},
			{Name: "content-type", Value: "application/grpc"},
			{Name: "te", Value: "trailers"},
		} {
			_ = enc.WriteField(f)
		}
		if wf.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true}) != nil {
			break
		}
		if end(wf, id) != nil {
			break
		}
		sent++
	}

	res := <-done
	t.Logf("sent %d streams; the backend saw %d calls", sent, b.Calls.Load())
	if res.timeout {
		t.Fatal("the proxy did not close the connection")
	}
	if !res.goAway || res.code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("got GOAWAY %v with code %v, want ENHANCE_YOUR_CALM", res.goAway, res.code)
	}
	if sent >= maxStreams {
		t.Fatalf("the proxy took all %d resets", sent)
	}
	// Streams in flight when the limit hit may still arrive; far fewer
	// than the client sent must have reached the backend.
	if n := b.Calls.Load(); n > 3*resetBurst {
		t.Fatalf("the backend saw %d calls, want at most %d", n, 3*resetBurst)
	}

	for i := 0; i < 20; i++ {
		if _, err := good.UnaryCall(ctxTimeout(t, 2*time.Second), &testpb.SimpleRequest{}); err != nil {
			t.Fatalf("call %d on another connection: %v", i, err)
		}
	}
}

// TestCancellingClientIsNotCutOff cancels 200 calls that are under way on
// one gRPC connection, then checks that the connection still serves calls:
// grpc-go would dial again if the proxy had closed it.
func TestCancellingClientIsNotCutOff(t *testing.T) {
	b := testutil.StartInterop(t, "b1")
	addr := startFront(t, b.Addr).addr
	var dials atomic.Int32
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	creds := credentials.NewTLS(&tls.Config{RootCAs: testutil.TestCA(t).Pool, ServerName: "localhost"})
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds), grpc.WithContextDialer(dialer))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := testpb.NewTestServiceClient(cc)
	for i := 0; i < 200; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		stream, err := client.FullDuplexCall(ctx)
		if err == nil {
			err = stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}}})
		}
		if err == nil {
			// A response means the call reached the backend: the cancel
			// resets a call the proxy is carrying.
			_, err = stream.Recv()
		}
		cancel()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("a call after 200 cancelled ones: %v", err)
	}
	if n := b.Calls.Load(); n != 201 {
		t.Fatalf("the backend saw %d calls, want 201", n)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("the client dialed %d times, want once", n)
	}
}
