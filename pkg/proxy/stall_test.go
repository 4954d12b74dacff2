package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
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
		if n := b.Sent.Load(); n == last {
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
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost", NextProtos: []string{"h2"}})
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

// TestStuckBackendDoesNotStallOthers is TestStuckClientDoesNotStallOthers
// the other way round: a backend takes a call with a large request stream
// and stops reading its socket. The client connection that carries that
// call must go on serving the client's other calls, which the group then
// sends to a normal backend.
func TestStuckBackendDoesNotStallOthers(t *testing.T) {
	stuck := startStuckBackend(t)
	good := startBackend(t, "good")
	cfg := testConfig(t, GroupConfig{Servers: []ServerConfig{{Addr: stuck.addr, Weight: 100}}})
	p, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		req := &testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 64<<10)}}
		for stream.Send(req) == nil {
			sent.Add(64 << 10)
		}
	}()
	defer func() {
		cancel()
		stuck.closeConns()
		<-sendDone
	}()
	select {
	case <-stuck.gotCall:
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not reach the stuck backend")
	}

	// Wait until the request stream stops making progress: the backend's
	// socket and the proxy's buffers for it are full.
	last, still := int64(-1), 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && still < 3; {
		time.Sleep(100 * time.Millisecond)
		if n := sent.Load(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	if still < 3 {
		t.Fatal("the request stream to the stuck backend never stopped")
	}
	t.Logf("the client sent %d bytes to the stuck backend", last)

	// From now on the group sends new calls to the normal backend only;
	// the stuck call stays where it is.
	g := cfg.Groups["sgp-test"]
	g.Servers = []ServerConfig{{Addr: stuck.addr, Weight: 0}, {Addr: good.Addr, Weight: 100}}
	cfg.Groups = map[string]GroupConfig{"sgp-test": g}
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		start := time.Now()
		_, err := client.UnaryCall(ctxTimeout(t, 2*time.Second), &testpb.SimpleRequest{ResponseSize: 1024})
		if err != nil {
			t.Fatalf("call %d, %v after the backend got stuck: %v", i, time.Since(start), err)
		}
	}
	if n := good.Calls.Load(); n != 20 {
		t.Fatalf("the normal backend saw %d calls, want 20", n)
	}
	if n := sent.Load(); n != last {
		t.Fatalf("the stuck call moved on (%d bytes sent, was %d): the backend was not stuck", n, last)
	}
}

// stuckBackend is a raw h2c server that grants the largest windows there
// are, reads each connection up to the first request's headers and then
// reads nothing more.
type stuckBackend struct {
	addr    string
	gotCall chan struct{}

	mu    sync.Mutex
	conns []net.Conn
}

func startStuckBackend(t *testing.T) *stuckBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sb := &stuckBackend{addr: ln.Addr().String(), gotCall: make(chan struct{}, 1)}
	t.Cleanup(func() {
		ln.Close()
		sb.closeConns()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sb.mu.Lock()
			sb.conns = append(sb.conns, c)
			sb.mu.Unlock()
			go sb.serve(c)
		}
	}()
	return sb
}

func (sb *stuckBackend) serve(c net.Conn) {
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c, preface[:]); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	if fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}) != nil ||
		fr.WriteWindowUpdate(0, 1<<31-1-65535) != nil {
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if _, ok := f.(*http2.HeadersFrame); ok {
			select {
			case sb.gotCall <- struct{}{}:
			default:
			}
			return // and never read again
		}
	}
}

func (sb *stuckBackend) closeConns() {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	for _, c := range sb.conns {
		c.Close()
	}
}
