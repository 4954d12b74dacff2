package sock

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// A peer that never reads is cut off once the queue would pass spillLimit;
// until then no write holds the writer for much more than spillAfter.
func TestSpillLimitCutsOffPeer(t *testing.T) {
	sc, peer := spillPair(t)
	chunk := make([]byte, 64<<10)
	written, slowest := 0, time.Duration(0)
	var err error
	for written < 64<<20 {
		start := time.Now()
		_, err = sc.Write(chunk)
		slowest = max(slowest, time.Since(start))
		if err != nil {
			break
		}
		written += len(chunk)
	}
	t.Logf("cut off after %d KiB; slowest write %v", written>>10, slowest)
	if !errors.Is(err, errPeerNotReading) {
		t.Fatalf("writing %d KiB to a peer that does not read: %v, want errPeerNotReading", written>>10, err)
	}
	if written < spillLimit {
		t.Fatalf("cut off after %d KiB, before the queue could hold spillLimit", written>>10)
	}
	if slowest > 20*spillAfter {
		t.Fatalf("a write took %v", slowest)
	}
	if _, err := sc.Write(chunk); err == nil {
		t.Fatal("a write after the cut-off succeeded")
	}
	expectClosed(t, peer)
}

// A queue that the peer takes nothing of for stuckTimeout is given up: the
// connection is closed and later writes fail.
func TestSpillStuckWriteTimeout(t *testing.T) {
	sc, peer := spillPair(t)
	sc.stuckTimeout = 200 * time.Millisecond
	chunk := make([]byte, 64<<10)
	// Queue enough that the socket's buffers are surely full.
	for sc.Queued() < 1<<20 {
		if _, err := sc.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for sc.spilling.Load() {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the stuck queue was not given up")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("queue given up after %v", time.Since(start))
	if d := time.Since(start); d > time.Second {
		t.Fatalf("queue given up after %v, want about 200ms", d)
	}
	sc.mu.Lock()
	err := sc.err
	sc.mu.Unlock()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("queue ended with %v, want a write timeout", err)
	}
	if _, err := sc.Write(chunk); err == nil {
		t.Fatal("a write after the queue was given up succeeded")
	}
	expectClosed(t, peer)
}

// spillPair returns a Spill over a real TCP connection, as the proxy
// makes them, and the connection's other end, which reads nothing unless
// told to. Small socket buffers keep the tests short.
func spillPair(t *testing.T) (*Spill, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		peer.Close()
	})
	_ = c.(*net.TCPConn).SetWriteBuffer(64 << 10)
	_ = peer.(*net.TCPConn).SetReadBuffer(64 << 10)
	return NewSpill(Raw(c)), peer
}

// expectClosed reads what the peer was sent and expects the end of the
// stream: the Spill's socket was closed.
func expectClosed(t *testing.T, peer net.Conn) {
	t.Helper()
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, peer); err != nil {
		t.Fatalf("the connection was not closed: %v after %d bytes", err, n)
	}
}

// Writes while corked reach the peer only at Uncork, whole and in order, in
// one write; a TLS connection above the Spill works as before.
func TestCorkSendsHeldWritesTogether(t *testing.T) {
	sc, peer := spillPair(t)
	sc.Cork()
	for _, part := range []string{"one ", "two ", "three"} {
		if _, err := sc.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	_ = peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := peer.Read(make([]byte, 16)); n != 0 || !os.IsTimeout(err) {
		t.Fatalf("the peer read %d bytes (%v) before Uncork", n, err)
	}
	if err := sc.Uncork(); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len("one two three"))
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != "one two three" {
		t.Fatalf("the peer read %q, %v", got, err)
	}
	if _, err := sc.Write([]byte("!")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(peer, got[:1]); err != nil || got[0] != '!' {
		t.Fatalf("a write after Uncork: %q, %v", got[:1], err)
	}
}
