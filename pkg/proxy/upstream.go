//lint:file-ignore SA1019 x/net/http2's Server.ServeConn and Transport are used on purpose: they serve one accepted TLS conn and a per-backend h2c pool, which net/http does not expose.

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/albctl/albctl/pkg/balancer"
)

// group is a server group. Its state is swapped as a whole by Apply; calls
// load it once and never lock.
type group struct {
	id    string
	state atomic.Pointer[groupState]

	// Owned by Apply (Proxy.mu).
	byAddr       map[string]*upstream
	drainTimeout time.Duration
	scheduler    string
}

// groupState is an immutable view of a group: upstreams[i] belongs to the
// picker's backend i.
type groupState struct {
	picker    balancer.Picker
	upstreams []*upstream
	protocol  string // GroupGRPC, GroupHTTP or GroupHTTPS
}

var emptyPicker, _ = balancer.New(balancer.SchedulerWRR, nil)

func (p *Proxy) updateGroup(g *group, gc GroupConfig) {
	next := make(map[string]*upstream, len(gc.Servers))
	ups := make([]*upstream, 0, len(gc.Servers))
	backends := make([]*balancer.Backend, 0, len(gc.Servers))
	// The servers of a new group start together; only one that joins a
	// group already taking calls warms up.
	running := g.state.Load() != nil
	for _, s := range gc.Servers {
		u := g.byAddr[s.Addr]
		if u == nil {
			u = p.newUpstream(g.id, s.Addr, s.Weight)
			if running && gc.SlowStart > 0 {
				u.backend.StartWarming()
			}
		}
		u.backend.SetWeight(s.Weight)
		next[s.Addr] = u
		ups = append(ups, u)
		backends = append(backends, u.backend)
	}
	picker, err := balancer.New(gc.Scheduler, backends, balancer.WithSlowStart(gc.SlowStart))
	if err != nil {
		panic(err) // validate checked the scheduler
	}
	g.state.Store(&groupState{picker: picker, upstreams: ups, protocol: gc.protocol()})
	g.drainTimeout = gc.DrainTimeout
	// Only once no new call can pick them do removed servers start draining.
	for addr, u := range g.byAddr {
		if next[addr] == nil {
			p.drain(u, g.drainTimeout)
		}
	}
	g.byAddr = next
	g.scheduler = gc.Scheduler
	if g.scheduler == "" {
		g.scheduler = balancer.SchedulerWRR
	}
}

// upstream is one backend server with its own HTTP/2 transport. The
// transport keeps multiplexed connections to the server and dials another
// when every connection has reached the server's MAX_CONCURRENT_STREAMS.
// web is its HTTP/1.1 transport, for servers of HTTP and HTTPS groups.
type upstream struct {
	groupID   string
	addr      string
	backend   *balancer.Backend
	transport *http2.Transport
	web       *http.Transport
	dialer    net.Dialer

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	// The frames engine's connections and their reader goroutines.
	pool    backPool
	readers sync.WaitGroup
}

func (p *Proxy) newUpstream(groupID, addr string, weight int) *upstream {
	u := &upstream{
		groupID: groupID,
		addr:    addr,
		backend: balancer.NewBackend(addr, weight),
		dialer:  net.Dialer{Timeout: p.opts.DialTimeout, KeepAlive: 30 * time.Second},
		conns:   map[net.Conn]struct{}{},
	}
	u.transport = &http2.Transport{
		AllowHTTP: true,
		// The proxy forwards bytes as they are; the transport must not ask
		// for gzip and inflate the answer.
		DisableCompression: true,
		DialTLSContext:     u.dial,
		// Detect a dead backend connection that carries long streams, as
		// rarely as grpc-go servers allow (see keepalive.go).
		ReadIdleTimeout: backendReadIdle,
		PingTimeout:     backendPingTimeout,
		IdleConnTimeout: 5 * time.Minute,
	}
	u.web = &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return u.dialTracked(ctx, network, u.addr, false)
		},
		// Backends behind a load balancer mostly have self-signed or
		// internal certificates; the cloud does not verify them either.
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		DisableCompression:  true,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	return u
}

// connectError marks an attempt that never reached the backend, so it is
// safe to retry elsewhere.
type connectError struct {
	addr string
	err  error
}

func (e *connectError) Error() string {
	if errors.Is(e.err, syscall.ECONNREFUSED) {
		return "connection refused to " + e.addr
	}
	if errors.Is(e.err, context.DeadlineExceeded) || errors.Is(e.err, errUpstreamClosed) {
		return fmt.Sprintf("cannot connect to %s: %v", e.addr, e.err)
	}
	var ne net.Error
	if errors.As(e.err, &ne) && ne.Timeout() {
		return "connection timed out to " + e.addr
	}
	return fmt.Sprintf("cannot connect to %s: %v", e.addr, e.err)
}

func (e *connectError) Unwrap() error { return e.err }

var errUpstreamClosed = errors.New("server removed from its group")

func (u *upstream) dial(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
	return u.dialTracked(ctx, network, addr, true)
}

// dialTracked connects to the server and registers the connection, so that
// it is counted and closed with the upstream. batch wraps it in a batchConn
// (the x/net engine's writes need one; the frames engine batches itself).
func (u *upstream) dialTracked(ctx context.Context, network, addr string, batch bool) (net.Conn, error) {
	c, err := u.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &connectError{addr: u.addr, err: err}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		c.Close()
		return nil, &connectError{addr: u.addr, err: errUpstreamClosed}
	}
	if batch {
		c = newBatchConn(c)
	}
	tc := &trackedConn{Conn: newSockConn(c), u: u}
	u.conns[tc] = struct{}{}
	return tc, nil
}

func (u *upstream) connCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

// close closes every connection to the server, cutting calls still running.
func (u *upstream) close() {
	u.mu.Lock()
	u.closed = true
	conns := make([]net.Conn, 0, len(u.conns))
	for c := range u.conns {
		conns = append(conns, c)
	}
	u.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	u.transport.CloseIdleConnections()
	u.web.CloseIdleConnections()
	u.readers.Wait()
}

type trackedConn struct {
	net.Conn
	u    *upstream
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.u.mu.Lock()
		delete(c.u.conns, c)
		c.u.mu.Unlock()
	})
	return c.Conn.Close()
}

// drain stops new calls to u, waits for its calls in flight (up to timeout,
// if set) and closes its connections.
func (p *Proxy) drain(u *upstream, timeout time.Duration) {
	u.backend.SetDraining(true)
	p.draining[u] = struct{}{} // Apply holds p.mu
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		defer func() {
			u.close()
			p.mu.Lock()
			delete(p.draining, u)
			p.mu.Unlock()
		}()
		var deadline <-chan time.Time
		if timeout > 0 {
			t := time.NewTimer(timeout)
			defer t.Stop()
			deadline = t.C
		}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for u.backend.Outstanding() > 0 {
			select {
			case <-deadline:
				p.log.Info("drain timeout: closing connections", "group", u.groupID, "server", u.addr, "calls", u.backend.Outstanding())
				return
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
}

// drainedConns counts the open connections of servers being drained.
func (p *Proxy) drainedConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for u := range p.draining {
		n += u.connCount()
	}
	return n
}
