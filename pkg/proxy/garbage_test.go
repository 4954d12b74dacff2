package proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"math/rand"
	"testing"
	"time"

	"golang.org/x/net/http2"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// TestGarbageFromClients sends what a broken or hostile client might after the TLS handshake.
// Each connection must be closed promptly, and the listener must go on serving real calls.
func TestGarbageFromClients(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))

	noise := make([]byte, 64<<10)
	rand.New(rand.NewSource(1)).Read(noise)
	badHeaders := func() []byte {
		var buf bytes.Buffer
		fr := http2.NewFramer(&buf, nil)
		_ = fr.WriteSettings()
		// 0xff starts an indexed field far past any table: a decoding error.
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, EndHeaders: true})
		return append([]byte(http2.ClientPreface), buf.Bytes()...)
	}()
	cases := map[string][]byte{
		"random bytes":               noise,
		"preface, then noise":        append([]byte(http2.ClientPreface), noise...),
		"headers that do not decode": badHeaders,
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost", NextProtos: []string{"h2"}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = conn.Write(payload) // the proxy may hang up before it has read everything
			if _, err := io.Copy(io.Discard, conn); err != nil && isTimeoutErr(err) {
				t.Fatal("the proxy kept a connection open that sent garbage")
			}
		})
	}
	if _, err := dial(t, addr).UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("a real call after the garbage: %v", err)
	}
}

func isTimeoutErr(err error) bool {
	te, ok := err.(interface{ Timeout() bool })
	return ok && te.Timeout()
}
