// Package testutil holds the test helpers that several of albctl's packages share: real gRPC
// servers on 127.0.0.1 ports the kernel picks, addresses where nothing listens, and a buffer
// that a running server may write while the test reads it. Only tests use it; every helper
// stops what it starts with t.Cleanup.
package testutil

import (
	"bytes"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/albctl/albctl/pkg/echo"
)

// StartEcho runs an echo server on a 127.0.0.1 port the kernel picks until the test ends, and
// returns it and its address.
func StartEcho(t testing.TB, opts echo.Options) (*echo.Server, string) {
	t.Helper()
	lis := listen(t)
	return ServeEcho(t, lis, opts), lis.Addr().String()
}

// ServeEcho runs an echo server on lis until the test ends. Tests use it to bring a stopped
// server back on the same address.
func ServeEcho(t testing.TB, lis net.Listener, opts echo.Options) *echo.Server {
	t.Helper()
	srv := echo.NewServer(opts)
	serve(t, srv, lis)
	return srv
}

// StartGRPC runs srv, with its services registered, on a 127.0.0.1 port the kernel picks until
// the test ends, and returns the address.
func StartGRPC(t testing.TB, srv *grpc.Server) string {
	t.Helper()
	lis := listen(t)
	serve(t, srv, lis)
	return lis.Addr().String()
}

// ClosedAddr returns a 127.0.0.1 address on which nothing listens, so that dialing it is
// refused at once.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	return unusedAddr(t).String()
}

// FreePort returns a 127.0.0.1 port that was free a moment ago, for a listener that must be
// given its port in advance (another process may take it in between, which is rare).
func FreePort(t testing.TB) int {
	t.Helper()
	return unusedAddr(t).Port
}

// SyncBuffer is a bytes.Buffer that is safe to write and read at once, such as the log of a
// server under test.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is what StartEcho and StartGRPC run: an *echo.Server or a *grpc.Server.
type server interface {
	Serve(net.Listener) error
	Stop()
}

// serve runs srv on lis; at cleanup it stops srv and waits for Serve to return, so that no
// server goroutine outlives the test.
func serve(t testing.TB, srv server, lis net.Listener) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// unusedAddr listens on a port the kernel picks and closes it again.
func unusedAddr(t testing.TB) *net.TCPAddr {
	t.Helper()
	lis := listen(t)
	defer lis.Close()
	return lis.Addr().(*net.TCPAddr)
}
