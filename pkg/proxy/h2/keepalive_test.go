package h2

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	grpckeepalive "google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"github.com/albctl/albctl/internal/testutil"
)

// A backend connection whose peer goes silent mid-call is closed after an
// unanswered PING: the call fails with UNAVAILABLE within about read-idle
// plus ping timeout, and the next call gets a new connection.
func TestKeepaliveDeadBackend(t *testing.T) {
	b := testutil.StartInterop(t, "b1", allowPings)
	r := startRelay(t, b.Addr)
	tf := startFront(t, r.addr)
	addr := tf.addr
	client := dial(t, addr)
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	bcs := tf.backendConns(r.addr)
	if len(bcs) != 1 {
		t.Fatalf("%d backend connections, want 1", len(bcs))
	}
	bcs[0].setKeepalive(200*time.Millisecond, 200*time.Millisecond)

	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "x-sleep", "8s")
	errc := make(chan error, 1)
	go func() {
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
		errc <- err
	}()
	testutil.WaitFor(t, "the call to reach the backend", func() bool { return b.Calls.Load() == 2 })
	r.freeze()
	start := time.Now()
	select {
	case err := <-errc:
		wantCode(t, err, codes.Unavailable, "no answer to a PING within 200ms")
		t.Logf("the call failed %v after the backend went silent: %v", time.Since(start), err)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("the call failed only after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call on the dead connection did not end")
	}

	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := r.accepted.Load(); n != 2 {
		t.Fatalf("the backend saw %d connections, want 2", n)
	}
}

// A call that is quiet for several read-idle intervals keeps its backend
// connection: the backend answers the PINGs.
func TestKeepaliveQuietCallStaysOpen(t *testing.T) {
	b := testutil.StartInterop(t, "b1", allowPings)
	tf := startFront(t, b.Addr)
	addr := tf.addr
	client := dial(t, addr)
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	bc := tf.backendConns(b.Addr)[0]
	bc.setKeepalive(200*time.Millisecond, 500*time.Millisecond)
	lastRead := bc.keepalive.lastRead.Load()
	// The backend sends nothing for 1.2 s, then one message.
	stream, err := client.StreamingOutputCall(ctxTimeout(t, 5*time.Second), &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 10, IntervalUs: 1_200_000}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("the quiet call failed: %v", err)
	}
	if bc.keepalive.lastRead.Load() == lastRead {
		t.Fatal("nothing came from the backend before the answer: no PING was answered")
	}
	if bcs := tf.backendConns(b.Addr); len(bcs) != 1 || bcs[0] != bc {
		t.Fatal("the backend connection was replaced")
	}
}

// A backend connection without calls is not pinged: a grpc-go backend on its
// default policy would answer PINGs on an idle connection with GOAWAY
// "too_many_pings" and close it.
func TestKeepaliveIdleBackendNotPinged(t *testing.T) {
	b := testutil.StartInterop(t, "b1")
	tf := startFront(t, b.Addr)
	addr := tf.addr
	client := dial(t, addr)
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	bc := tf.backendConns(b.Addr)[0]
	bc.setKeepalive(50*time.Millisecond, 50*time.Millisecond)
	time.Sleep(time.Second)
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if bcs := tf.backendConns(b.Addr); len(bcs) != 1 || bcs[0] != bc {
		t.Fatal("the idle backend connection was replaced: it was pinged")
	}
}

// A client connection whose peer goes silent is closed after an unanswered
// PING, and its calls are cancelled at their backends.
func TestKeepaliveDeadClient(t *testing.T) {
	b := testutil.StartInterop(t, "b1")
	tf := startFront(t, b.Addr)
	addr := tf.addr
	r := startRelay(t, addr)
	client := dial(t, r.addr)
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	fcs := tf.clientConns()
	if len(fcs) != 1 {
		t.Fatalf("%d client connections, want 1", len(fcs))
	}
	fcs[0].setKeepalive(200*time.Millisecond, 200*time.Millisecond)

	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "x-sleep", "8s")
	go client.UnaryCall(ctx, &testpb.SimpleRequest{})
	testutil.WaitFor(t, "the call to reach the backend", func() bool { return b.Calls.Load() == 2 })
	r.freeze()
	start := time.Now()
	select {
	case <-b.Cancelled:
		t.Logf("the backend call was cancelled %v after the client went silent", time.Since(start))
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("the backend call was cancelled only after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the silent client's call was not cancelled at the backend")
	}
	testutil.WaitFor(t, "the client connection to close", func() bool { return len(tf.clientConns()) == 0 })
}

// The proxy answers a client's PING with the same payload.
func TestClientPingAnswered(t *testing.T) {
	b := testutil.StartInterop(t, "b1")
	tf := startFront(t, b.Addr)
	addr := tf.addr
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: testutil.TestCA(t).Pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(tc, tc)
	data := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	if err := fr.WritePing(false, data); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() {
			if pf.Data != data {
				t.Fatalf("PING answered with %v, want %v", pf.Data, data)
			}
			return
		}
	}
}

// allowPings lets a grpc-go backend take PINGs as often as the tests send
// them; by default it answers a client that pings more often than every
// 5 minutes with GOAWAY "too_many_pings".
var allowPings = grpc.KeepaliveEnforcementPolicy(grpckeepalive.EnforcementPolicy{MinTime: time.Nanosecond, PermitWithoutStream: true})

// setKeepalive changes a live connection's keepalive intervals.
func (c *h2conn) setKeepalive(readIdle, pingTimeout time.Duration) {
	k := &c.keepalive
	k.mu.Lock()
	defer k.mu.Unlock()
	k.readIdle, k.pingTimeout = readIdle, pingTimeout
	k.timer.Reset(readIdle)
}

// relay forwards TCP connections to a target. freeze makes the connections
// it has stop forwarding in both directions without closing, as when the
// peer's host vanishes; connections accepted later work normally.
type relay struct {
	addr     string
	accepted atomic.Int32

	mu     sync.Mutex
	frozen chan struct{} // closed by freeze, for the connections so far
	conns  []net.Conn
	closed bool
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{addr: ln.Addr().String(), frozen: make(chan struct{})}
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.closed = true
		for _, c := range r.conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			if r.closed {
				r.mu.Unlock()
				c.Close()
				d.Close()
				return
			}
			r.conns = append(r.conns, c, d)
			frozen := r.frozen
			r.mu.Unlock()
			r.accepted.Add(1)
			go r.pump(d, c, frozen)
			go r.pump(c, d, frozen)
		}
	}()
	return r
}

func (r *relay) freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.frozen)
	r.frozen = make(chan struct{})
}

func (r *relay) pump(dst, src net.Conn, frozen chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-frozen:
			return // drop what was read, and read no more
		default:
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}
