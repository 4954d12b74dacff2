package sock

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// sockPair returns a rawConn and the plain TCP connection at its other end.
func sockPair(t *testing.T) (*rawConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	sc, ok := Raw(c).(*rawConn)
	if !ok {
		t.Fatalf("Raw(%T) did not wrap the TCP connection", c)
	}
	t.Cleanup(func() { sc.Close(); peer.Close() })
	return sc, peer.(*net.TCPConn)
}

func TestSockConnCarriesBytesBothWaysUnderBackPressure(t *testing.T) {
	sc, peer := sockPair(t)
	// Far more than the socket buffers hold, so writes meet a full socket
	// and wait for the reader.
	want := make([]byte, 8<<20)
	rand.Read(want)

	done := make(chan error, 1)
	go func() {
		_, err := sc.Write(want)
		done <- err
	}()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 7000)
	for len(got) < len(want) {
		time.Sleep(50 * time.Microsecond) // a slow reader
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatalf("peer read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes written differ from bytes read")
	}

	go func() {
		peer.Write(want)
		peer.CloseWrite()
	}()
	back, err := io.ReadAll(sc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(back, want) {
		t.Fatalf("read %d bytes, want the %d written", len(back), len(want))
	}
	if n, err := sc.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed = %d, %v; want 0, EOF", n, err)
	}
}

func TestSockConnDeadlines(t *testing.T) {
	sc, _ := sockPair(t)
	sc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := sc.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}

	// The peer reads nothing, so the write fills the socket and then times
	// out, reporting how much went through (nothing, on a machine so busy
	// that the deadline passed before the first attempt).
	sc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := sc.Write(make([]byte, 64<<20))
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write past its deadline: %v, want a timeout", err)
	}
	if n < 0 || n >= 64<<20 {
		t.Fatalf("write reported %d bytes written, want fewer than all", n)
	}
}

func TestSockConnErrors(t *testing.T) {
	sc, peer := sockPair(t)
	// A reset peer: the next writes fail with the system's error.
	peer.SetLinger(0)
	peer.Close()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = sc.Write([]byte("hello"))
		time.Sleep(time.Millisecond)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("write to a reset peer: %v, want a write OpError", err)
	}

	sc2, _ := sockPair(t)
	readErr := make(chan error, 1)
	go func() {
		_, err := sc2.Read(make([]byte, 10))
		readErr <- err
	}()
	time.Sleep(20 * time.Millisecond)
	sc2.Close()
	select {
	case err := <-readErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed connection: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read waiting on a connection closed under it did not return")
	}
}
