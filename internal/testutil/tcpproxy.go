package testutil

import (
	"io"
	"net"
	"sync"
	"testing"
)

// TCPProxy forwards connections on a 127.0.0.1 port to a target. Cut closes every connection
// and the port, as a lost network would, until Restore opens the port again.
type TCPProxy struct {
	Addr     string
	target   string
	mu       sync.Mutex
	listener net.Listener
	conns    []net.Conn
}

// StartTCPProxy forwards a port the kernel picks to target until the test ends.
func StartTCPProxy(t testing.TB, target string) *TCPProxy {
	t.Helper()
	l := listen(t)
	p := &TCPProxy{Addr: l.Addr().String(), target: target}
	p.serve(l)
	t.Cleanup(p.Cut)
	return p
}

func (p *TCPProxy) serve(l net.Listener) {
	p.mu.Lock()
	p.listener = l
	p.mu.Unlock()
	go func() {
		for {
			down, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				down.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, down, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, down); up.Close() }()
			go func() { _, _ = io.Copy(down, up); down.Close() }()
		}
	}()
}

// Cut closes the port and every connection through it.
func (p *TCPProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.listener.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Restore opens the port again after Cut.
func (p *TCPProxy) Restore(t testing.TB) {
	t.Helper()
	l, err := net.Listen("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(l)
}
