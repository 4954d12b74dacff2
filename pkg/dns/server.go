package dns

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/albctl/albctl/pkg/state"
	"github.com/miekg/dns"
)

// Server answers authoritatively for albctl's zones. Update swaps in a new state snapshot;
// queries in flight finish with the zones they started with.
type Server struct {
	zones atomic.Pointer[Zones]

	mu      sync.Mutex
	serial  uint32
	state   *state.State
	lbAddrs map[string][]string
}

// NewServer returns a server for a state snapshot, which must not change afterwards.
func NewServer(s *state.State) *Server {
	srv := &Server{}
	srv.Update(s)
	return srv
}

// Update makes the server answer from a new state snapshot. Each update raises the zones' SOA
// serial, so secondaries and caches can tell the data changed.
func (srv *Server) Update(s *state.State) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.state = s
	srv.rebuild()
}

// SetLBAddresses makes load balancers' names answer the addresses given by load balancer ID
// (those of an etcd state's live replicas); one not in lbAddrs answers its own address.
func (srv *Server) SetLBAddresses(lbAddrs map[string][]string) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if maps.EqualFunc(srv.lbAddrs, lbAddrs, slices.Equal) {
		return
	}
	srv.lbAddrs = lbAddrs
	srv.rebuild()
}

func (srv *Server) rebuild() {
	srv.serial = max(srv.serial+1, uint32(time.Now().Unix()))
	srv.zones.Store(newZones(srv.state, srv.serial, srv.lbAddrs))
}

// Zones returns the zones the server answers from now.
func (srv *Server) Zones() *Zones { return srv.zones.Load() }

// Largest answer the server sends over UDP, whatever the client offers: above it fragments
// get lost (the DNS flag day 2020 value).
const maxUDPSize = 1232

// ServeDNS answers one query; it implements dns.Handler.
func (srv *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = false
	switch {
	case r.Opcode != dns.OpcodeQuery:
		m.SetRcode(r, dns.RcodeNotImplemented)
	case len(r.Question) != 1:
		m.SetRcode(r, dns.RcodeFormatError)
	case r.Question[0].Qclass != dns.ClassINET && r.Question[0].Qclass != dns.ClassANY:
		m.SetRcode(r, dns.RcodeRefused)
	default:
		q := r.Question[0]
		res := srv.Zones().Resolve(q.Name, q.Qtype)
		m.Rcode, m.Answer, m.Ns = res.Rcode, res.Answer, res.Ns
		m.Authoritative = res.Rcode != dns.RcodeRefused && res.Rcode != dns.RcodeServerFailure
	}
	size := dns.MinMsgSize
	if opt := r.IsEdns0(); opt != nil {
		size = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
		m.SetEdns0(maxUDPSize, false)
	}
	if _, isTCP := w.RemoteAddr().(*net.TCPAddr); isTCP {
		size = dns.MaxMsgSize
	}
	m.Truncate(size)
	_ = w.WriteMsg(m) // a client that went away needs no answer
}

// Listener is a UDP socket and a TCP listener on the same address, as DNS needs.
type Listener struct {
	UDP net.PacketConn
	TCP net.Listener
}

// Listen binds UDP and TCP on addr. Port 0 picks a port free for both.
func Listen(addr string) (*Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	for attempt := 0; ; attempt++ {
		udp, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s/udp: %w", addr, err)
		}
		_, bound, _ := net.SplitHostPort(udp.LocalAddr().String())
		tcp, err := net.Listen("tcp", net.JoinHostPort(host, bound))
		if err == nil {
			return &Listener{UDP: udp, TCP: tcp}, nil
		}
		udp.Close()
		// With a port of the kernel's choosing, the TCP side may be taken: try another.
		if port != "0" || attempt == 10 {
			return nil, fmt.Errorf("listen on %s/tcp: %w", net.JoinHostPort(host, bound), err)
		}
	}
}

// Addr returns the address both sockets are bound to, such as 127.0.0.1:5353.
func (l *Listener) Addr() string { return l.TCP.Addr().String() }

// Close closes both sockets.
func (l *Listener) Close() error { return errors.Join(l.UDP.Close(), l.TCP.Close()) }

// Serve answers queries on l until ctx is done, then closes l.
func (srv *Server) Serve(ctx context.Context, l *Listener) error {
	servers := []*dns.Server{
		{PacketConn: l.UDP, Handler: srv},
		{Listener: l.TCP, Handler: srv},
	}
	started := make(chan struct{}, len(servers))
	stopped := make(chan error, len(servers))
	for _, s := range servers {
		s.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() { stopped <- s.ActivateAndServe() }()
	}
	for range servers {
		select {
		case <-started:
		case err := <-stopped:
			l.Close()
			return fmt.Errorf("DNS server on %s: %w", l.Addr(), err)
		}
	}
	var err error
	running := len(servers)
	select {
	case <-ctx.Done():
	case err = <-stopped:
		running--
		err = fmt.Errorf("DNS server on %s stopped: %w", l.Addr(), err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.ShutdownContext(shutdownCtx) // "not started" for the one that already stopped
	}
	for ; running > 0; running-- {
		<-stopped
	}
	l.Close()
	return err
}

// ListenAndServe binds addr over UDP and TCP and answers queries until ctx is done.
func (srv *Server) ListenAndServe(ctx context.Context, addr string) error {
	l, err := Listen(addr)
	if err != nil {
		return err
	}
	return srv.Serve(ctx, l)
}
