package route

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/albctl/albctl/pkg/balancer"
	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/proxy/sock"
)

// Env is what the upstreams of every group share.
type Env struct {
	Recorder    *obs.Recorder
	DialTimeout time.Duration
	// OnConnectFailure, if set, is told when a real call could not connect
	// to a server: a passive health signal. It must not block.
	OnConnectFailure func(groupID, addr string, err error)
}

// Pool is an engine's connections to one server.
type Pool interface {
	// Close waits for the pool's goroutines; the server's connections are
	// closed by then.
	Close()
}

// PoolKind names an engine's pool on an Upstream.
type PoolKind int

// The pools a server may have.
const (
	PoolH2   PoolKind = iota // HTTP/2 connections of the gRPC engine (h2)
	PoolHTTP                 // HTTP/1.1 connections of the reverse proxy
	numPools
)

// Upstream is one server of a group: its health and weight in the picker,
// and the connections the engines keep to it.
type Upstream struct {
	GroupID string
	Addr    string
	Backend *balancer.Backend

	env    *Env
	dialer net.Dialer
	pools  [numPools]atomic.Pointer[Pool]

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newUpstream(env *Env, groupID, addr string, weight int) *Upstream {
	return &Upstream{
		GroupID: groupID,
		Addr:    addr,
		Backend: balancer.NewBackend(addr, weight),
		env:     env,
		dialer:  net.Dialer{Timeout: env.DialTimeout, KeepAlive: 30 * time.Second},
		conns:   map[net.Conn]struct{}{},
	}
}

// Pool returns the server's pool of kind k, made with create on first use.
func (u *Upstream) Pool(k PoolKind, create func(*Upstream) Pool) Pool {
	if p := u.pools[k].Load(); p != nil {
		return *p
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if p := u.pools[k].Load(); p != nil {
		return *p
	}
	p := create(u)
	u.pools[k].Store(&p)
	return p
}

// ConnectError marks an attempt that never reached the server, so it is
// safe to retry elsewhere.
type ConnectError struct {
	Addr string
	Err  error
}

func (e *ConnectError) Error() string {
	if errors.Is(e.Err, syscall.ECONNREFUSED) {
		return "connection refused to " + e.Addr
	}
	var ne net.Error
	if errors.As(e.Err, &ne) && ne.Timeout() && !errors.Is(e.Err, context.DeadlineExceeded) {
		return "connection timed out to " + e.Addr
	}
	return fmt.Sprintf("cannot connect to %s: %v", e.Addr, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// ErrRemoved is the cause of a ConnectError to a server that left its
// group.
var ErrRemoved = errors.New("server removed from its group")

// Dial connects to the server and registers the connection, so that it is
// counted and closed with the upstream. Errors are *ConnectError.
func (u *Upstream) Dial(ctx context.Context) (net.Conn, error) {
	c, err := u.dialer.DialContext(ctx, "tcp", u.Addr)
	if err != nil {
		return nil, &ConnectError{Addr: u.Addr, Err: err}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		c.Close()
		return nil, &ConnectError{Addr: u.Addr, Err: ErrRemoved}
	}
	tc := &trackedConn{Conn: sock.Raw(c), u: u}
	u.conns[tc] = struct{}{}
	return tc, nil
}

// WhileOpen runs f unless Close was called, and reports whether it did;
// Close waits for it. An engine counts the goroutines its Pool.Close waits
// for in f.
func (u *Upstream) WhileOpen(f func()) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return false
	}
	f()
	return true
}

// ConnectFailed reports an attempt that could not connect: the server's
// passive health, the metrics and OnConnectFailure.
func (u *Upstream) ConnectFailed(err error) {
	u.Backend.RecordConnectFailure()
	u.env.Recorder.ConnectFailed()
	if u.env.OnConnectFailure != nil {
		u.env.OnConnectFailure(u.GroupID, u.Addr, err)
	}
}

// ConnCount returns the open connections to the server.
func (u *Upstream) ConnCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

// Close closes every connection to the server, cutting calls still running,
// and waits for the pools' goroutines.
func (u *Upstream) Close() {
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
	for i := range u.pools {
		if p := u.pools[i].Load(); p != nil {
			(*p).Close()
		}
	}
}

type trackedConn struct {
	net.Conn
	u    *Upstream
	once sync.Once
}

// NetConn returns the connection below.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.u.mu.Lock()
		delete(c.u.conns, c)
		c.u.mu.Unlock()
	})
	return c.Conn.Close()
}
