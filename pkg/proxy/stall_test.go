package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
)

// TestStuckClientDoesNotStallOthers starts an endless server stream for a
// client that grants huge windows and then stops reading its socket, and
// checks that another client's calls to the same backend, over the same
// backend connection, still succeed promptly.
func TestStuckClientDoesNotStallOthers(t *testing.T) {
	if os.Getenv("ALBCTL_PROXY_ENGINE") == EngineXNet {
		t.Skip("the x/net engine buffers per call and has its own flow control")
	}
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))
	good := dial(t, addr)
	// Open the backend connection with a normal call first, so that the
	// stuck client's stream shares it.
	if _, err := good.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}

	stuck := startStuckStream(t, addr)
	defer stuck.Close()

	// Wait until the backend's stream stops making progress: the client's
	// socket and the proxy's buffers for it are full.
	last, still := int64(-1), 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && still < 3; {
		time.Sleep(100 * time.Millisecond)
		if n := b.sent.Load(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	if last < 1<<20 {
		t.Fatalf("the backend sent only %d bytes to the stuck client", last)
	}
	t.Logf("backend sent %d bytes to the stuck client", last)

	for i := 0; i < 20; i++ {
		start := time.Now()
		_, err := good.UnaryCall(ctxTimeout(t, 2*time.Second), &testpb.SimpleRequest{ResponseSize: 1024})
		if err != nil {
			t.Fatalf("call %d, %v after the client got stuck: %v", i, time.Since(start), err)
		}
	}
}

// startStuckStream opens a raw HTTP/2 connection through the proxy that
// grants the largest windows there are, starts a StreamingOutputCall that
// sends until cancelled, and never reads what comes back.
func startStuckStream(t *testing.T, addr string) net.Conn {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: testCA(t).pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(tc, tc)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}))
	must(fr.WriteWindowUpdate(0, 1<<31-1-65535))

	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "https"},
		{Name: ":path", Value: "/grpc.testing.TestService/StreamingOutputCall"},
		{Name: ":authority", Value: "localhost"},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
		{Name: "x-forever", Value: "1"},
	} {
		must(enc.WriteField(f))
	}
	must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hbuf.Bytes(), EndHeaders: true}))
	req, err := proto.Marshal(&testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 32 << 10}},
	})
	must(err)
	msg := make([]byte, 5+len(req))
	binary.BigEndian.PutUint32(msg[1:5], uint32(len(req)))
	copy(msg[5:], req)
	must(fr.WriteData(1, true, msg))
	return tc
}
