// Package h2 is the data plane's gRPC engine: it serves clients' HTTP/2
// connections (TLS is done by the caller) and forwards each call, one
// stream, to a server of the call's group over h2c, as HTTP/2 frames,
// without decoding gRPC messages. Each stream's state and every rule of
// RFC 9113 the proxy enforces live here, for what clients send and for
// what servers send back.
package h2

import (
	"log/slog"
	"sync"
	"time"

	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/proxy/route"
)

// Options are the engine's fixed settings.
type Options struct {
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// Recorder takes every call's record.
	Recorder *obs.Recorder
	// MaxConcurrentStreams per client connection.
	MaxConcurrentStreams uint32
	// HandshakeTimeout bounds the wait for a client's connection preface.
	HandshakeTimeout time.Duration
	// DialTimeout bounds connecting to a server, its SETTINGS included.
	DialTimeout time.Duration
}

// Engine holds what the servers of every listener share, such as the
// connections to backends.
type Engine struct {
	opts Options
	log  *slog.Logger
	rec  *obs.Recorder
}

// New returns an engine.
func New(opts Options) *Engine {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{opts: opts, log: log, rec: opts.Recorder}
}

// Server serves the client connections of one listener: route returns the
// listener's current route, which each call loads once.
type Server struct {
	e     *Engine
	route func() *route.Route

	mu      sync.Mutex
	conns   map[*frontConn]struct{}
	closing bool
	// wg counts the goroutines that finish a connection's writes after its
	// reader asked for it.
	wg sync.WaitGroup
}

// NewServer returns a server for a listener.
func (e *Engine) NewServer(current func() *route.Route) *Server {
	return &Server{e: e, route: current, conns: map[*frontConn]struct{}{}}
}

// Close sends GOAWAY to every client connection, and to those that come
// later. Calls in flight continue; each connection closes when its calls
// are done.
func (srv *Server) Close() {
	srv.mu.Lock()
	srv.closing = true
	conns := make([]*frontConn, 0, len(srv.conns))
	for fc := range srv.conns {
		conns = append(conns, fc)
	}
	srv.mu.Unlock()
	for _, fc := range conns {
		fc.goAway()
	}
}

// Wait waits for the goroutines the server started, once no ServeConn runs
// any more.
func (srv *Server) Wait() { srv.wg.Wait() }
