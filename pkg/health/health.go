// Package health runs the active health checks of albctl's server groups.
//
// A Checker keeps one loop per checked server. Each loop checks its server
// every interval (gRPC, grpc-health, HTTP or TCP, as the group says), counts
// passes and failures in a row, and moves the server from initial to healthy
// or unhealthy when a threshold is reached. The verdict goes to the server's
// balancer.Backend, so routing skips an unhealthy server on the next pick;
// when every server of a group is unhealthy the pickers fail open, and the
// group's status says so. Apply changes groups, servers and settings while
// the loops run, keeping what is known of the servers that stay.
package health

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/albctl/albctl/pkg/balancer"
	"github.com/albctl/albctl/pkg/state"
)

// Target is one server of a group.
type Target struct {
	// Addr is the server's "host:port", as the proxy names its backend.
	Addr   string
	Weight int
	// Backend receives the verdicts; nil keeps them in the checker only.
	Backend *balancer.Backend
}

// Group is a server group as the checker sees it.
type Group struct {
	ID      string
	Name    string
	Check   state.HealthCheck
	Targets []Target
}

// FromServerGroup builds the checker's view of a server group. backend finds
// the data plane's backend for a server (such as proxy.Proxy.Backend) and may
// be nil.
func FromServerGroup(sg state.ServerGroup, backend func(groupID, addr string) *balancer.Backend) Group {
	g := Group{ID: sg.ID, Name: sg.Name, Check: sg.HealthCheck}
	for _, srv := range sg.Servers {
		t := Target{Addr: srv.HostPort(), Weight: srv.Weight}
		if backend != nil {
			t.Backend = backend(sg.ID, t.Addr)
		}
		g.Targets = append(g.Targets, t)
	}
	return g
}

// States a server reports, beyond balancer.Health's three.
const (
	StateInitial   = "initial"
	StateHealthy   = "healthy"
	StateUnhealthy = "unhealthy"
	// StateUnchecked is a server whose group has checks off, or whose weight is 0.
	StateUnchecked = "unchecked"
)

// DefaultJitter is the fraction of the interval by which a wait between two
// checks is shortened at random, so that servers are not checked in lockstep.
const DefaultJitter = 0.1

// maxFirstDelay bounds the random delay before a loop's first check and
// before the first check after a change, so that changes show within a second.
const maxFirstDelay = 200 * time.Millisecond

// Options are a Checker's fixed settings.
type Options struct {
	// Logger gets one line per state change of a server and per group entering
	// or leaving fail-open; nil discards them.
	Logger *slog.Logger
	// Now reads the clock for the times in the status; nil means time.Now.
	Now func() time.Time
	// Jitter is the fraction of the interval, 0 to 0.5, by which waits are
	// shortened at random. 0 means DefaultJitter; a negative value means none.
	// Jitter only ever makes checks come sooner.
	Jitter float64
}

// Checker runs the health checks. Its methods are safe for concurrent use.
type Checker struct {
	log    *slog.Logger
	now    func() time.Time
	jitter float64

	ctx    context.Context
	cancel context.CancelFunc
	loops  sync.WaitGroup

	// mu guards groups and each group's fields; a server's own mu is taken
	// after it, never before.
	mu     sync.Mutex
	groups map[string]*group
	closed bool
}

type group struct {
	id, name string
	settings state.HealthCheck
	// probe is nil when the group's checks are off or cannot run.
	probe    *probe
	probeErr error
	servers  map[string]*server
	order    []string
	failOpen bool
}

// server is one checked (or unchecked) server and what is known of it.
type server struct {
	addr string
	// wake tells the loop that its settings changed.
	wake chan struct{}

	mu      sync.Mutex
	weight  int
	backend *balancer.Backend
	probe   *probe
	// stop ends the running loop; nil when the server is not checked.
	stop context.CancelFunc
	// loopCtx identifies the running loop: a result from any other loop is
	// stale and dropped.
	loopCtx   context.Context
	health    balancer.Health
	reason    string
	lastCheck time.Time
	latency   time.Duration
	successes int
	failures  int
}

// New returns a Checker with no groups; Apply gives it work.
func New(opts Options) *Checker {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	jitter := opts.Jitter
	switch {
	case jitter == 0:
		jitter = DefaultJitter
	case jitter < 0:
		jitter = 0
	case jitter > 0.5:
		jitter = 0.5
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Checker{
		log:    log,
		now:    now,
		jitter: jitter,
		ctx:    ctx,
		cancel: cancel,
		groups: make(map[string]*group),
	}
}

// Apply makes groups the checked configuration. Loops start for new servers,
// stop for removed ones and for servers whose group turned checks off or
// whose weight became 0, and pick up changed settings at once; servers that
// stay checked keep their state and counters. A server that stops being
// checked goes back to initial, so that it is routable.
func (c *Checker) Apply(groups []Group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	seen := make(map[string]bool, len(groups))
	for _, gc := range groups {
		seen[gc.ID] = true
		g := c.groups[gc.ID]
		if g == nil {
			g = &group{id: gc.ID, servers: make(map[string]*server)}
			c.groups[gc.ID] = g
		}
		c.updateGroup(g, gc)
	}
	for id, g := range c.groups {
		if !seen[id] {
			for _, s := range g.servers {
				s.stopLoop()
			}
			delete(c.groups, id)
		}
	}
}

func (c *Checker) updateGroup(g *group, gc Group) {
	g.name = gc.Name
	if gc.Check != g.settings {
		g.settings = gc.Check
		g.probe, g.probeErr = nil, nil
		if gc.Check.Enabled {
			g.probe, g.probeErr = newProbe(gc.Check)
			if g.probeErr != nil {
				c.log.Warn("health checks cannot run", "group", g.label(), "error", g.probeErr)
			}
		}
	}
	keep := make(map[string]bool, len(gc.Targets))
	g.order = g.order[:0]
	for _, t := range gc.Targets {
		if keep[t.Addr] {
			continue
		}
		keep[t.Addr] = true
		g.order = append(g.order, t.Addr)
		s := g.servers[t.Addr]
		if s == nil {
			s = &server{addr: t.Addr, wake: make(chan struct{}, 1)}
			g.servers[t.Addr] = s
		}
		c.updateServer(g, s, t)
	}
	for addr, s := range g.servers {
		if !keep[addr] {
			s.stopLoop()
			delete(g.servers, addr)
		}
	}
	c.updateFailOpen(g)
}

func (c *Checker) updateServer(g *group, s *server, t Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.Backend != s.backend {
		s.backend = t.Backend
		if s.backend != nil {
			s.backend.SetHealth(s.health)
		}
	}
	s.weight = t.Weight
	checked := g.probe != nil && t.Weight > 0
	switch {
	case !checked:
		s.stopLocked()
		s.probe = nil
		s.reset()
	case s.stop == nil:
		s.probe = g.probe
		s.startLocked(c, g.id)
	case s.probe != g.probe:
		s.probe = g.probe
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// reset forgets what checks found, leaving the server routable.
func (s *server) reset() {
	s.health = balancer.HealthInitial
	s.reason = ""
	s.lastCheck = time.Time{}
	s.latency = 0
	s.successes, s.failures = 0, 0
	if s.backend != nil {
		s.backend.SetHealth(balancer.HealthInitial)
	}
}

func (s *server) startLocked(c *Checker, groupID string) {
	ctx, cancel := context.WithCancel(c.ctx)
	s.stop, s.loopCtx = cancel, ctx
	c.loops.Add(1)
	go func() {
		defer c.loops.Done()
		c.loop(ctx, groupID, s)
	}()
}

func (s *server) stopLocked() {
	if s.stop != nil {
		s.stop()
		s.stop, s.loopCtx = nil, nil
	}
}

func (s *server) stopLoop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// loop checks the server until ctx ends. Waits are measured from the start of
// one check to the start of the next, shortened by the jitter.
func (c *Checker) loop(ctx context.Context, groupID string, s *server) {
	timer := time.NewTimer(c.firstDelay())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			timer.Reset(c.firstDelay())
			continue
		case <-timer.C:
		}
		s.mu.Lock()
		p := s.probe
		s.mu.Unlock()
		start := c.now()
		began := time.Now()
		res := p.run(ctx, s.addr)
		latency := time.Since(began)
		if ctx.Err() != nil {
			return
		}
		c.record(ctx, groupID, s, p, res, start, latency)
		timer.Reset(max(0, c.shorten(p.interval)-latency))
	}
}

// firstDelay spreads the first checks of many servers over a moment.
func (c *Checker) firstDelay() time.Duration {
	if c.jitter == 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(maxFirstDelay)))
}

// shorten takes up to the jitter fraction off d at random.
func (c *Checker) shorten(d time.Duration) time.Duration {
	span := int64(float64(d) * c.jitter)
	if span <= 0 {
		return d
	}
	return d - time.Duration(rand.Int64N(span+1))
}

// record counts a result of the loop identified by ctx and moves the server's
// state when a threshold is reached. A zero start marks a passive failure,
// which leaves the last check's time and latency alone.
func (c *Checker) record(ctx context.Context, groupID string, s *server, p *probe, res result, start time.Time, latency time.Duration) {
	s.mu.Lock()
	if s.loopCtx != ctx || ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	old := s.health
	if res.ok {
		s.successes++
		s.failures = 0
		if s.health != balancer.HealthHealthy && s.successes >= p.healthyThreshold {
			s.health = balancer.HealthHealthy
		}
	} else {
		s.failures++
		s.successes = 0
		if s.health != balancer.HealthUnhealthy && s.failures >= p.unhealthyThreshold {
			s.health = balancer.HealthUnhealthy
		}
	}
	s.reason = res.reason
	if !start.IsZero() {
		s.lastCheck, s.latency = start, latency
	}
	if s.backend != nil {
		s.backend.SetHealth(s.health)
	}
	now := s.health
	s.mu.Unlock()
	if now == old {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[groupID]
	if g == nil || g.servers[s.addr] != s {
		return
	}
	c.log.Info("health state changed", "group", g.label(), "server", s.addr,
		"from", old.String(), "to", now.String(), "reason", res.reason)
	c.updateFailOpen(g)
}

// ReportFailure counts a real call that could not connect to the server as a
// failed check: the passive signal. It does not block; servers that are not
// checked ignore it.
func (c *Checker) ReportFailure(groupID, addr string, err error) {
	c.mu.Lock()
	var s *server
	if g := c.groups[groupID]; g != nil {
		s = g.servers[addr]
	}
	c.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	ctx, p := s.loopCtx, s.probe
	s.mu.Unlock()
	if ctx == nil || p == nil {
		return
	}
	reason := "a call could not connect"
	if err != nil {
		reason += ": " + describe(err)
	}
	c.record(ctx, groupID, s, p, result{reason: reason}, time.Time{}, 0)
}

// updateFailOpen notes whether every server that may take traffic is
// unhealthy, the case in which the pickers route by the scheduler anyway.
// c.mu must be held.
func (c *Checker) updateFailOpen(g *group) {
	candidates, unhealthy := 0, 0
	for _, s := range g.servers {
		s.mu.Lock()
		if s.weight > 0 {
			candidates++
			if s.health == balancer.HealthUnhealthy {
				unhealthy++
			}
		}
		s.mu.Unlock()
	}
	failOpen := candidates > 0 && unhealthy == candidates
	if failOpen == g.failOpen {
		return
	}
	g.failOpen = failOpen
	if failOpen {
		c.log.Warn("every server is unhealthy: failing open, routing by the scheduler anyway", "group", g.label())
	} else {
		c.log.Info("a server is routable again: fail-open ended", "group", g.label())
	}
}

func (g *group) label() string {
	if g.name != "" {
		return g.name
	}
	return g.id
}

// GroupStatus is what the checker knows of a group.
type GroupStatus struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Enabled  bool   `json:"enabled"`
	Protocol string `json:"protocol"`
	// FailOpen is true when every server that may take traffic is unhealthy,
	// so that calls are routed by the scheduler anyway.
	FailOpen bool `json:"failOpen"`
	// Message says in words what FailOpen, or a check that cannot run, means.
	Message string         `json:"message,omitempty"`
	Servers []ServerStatus `json:"servers"`
}

// ServerStatus is what the checker knows of a server.
type ServerStatus struct {
	Addr   string `json:"addr"`
	Weight int    `json:"weight"`
	// State is "initial", "healthy", "unhealthy" or "unchecked".
	State string `json:"state"`
	// Reason is the last result in words, or why the server is unchecked.
	Reason    string    `json:"reason,omitempty"`
	LastCheck time.Time `json:"lastCheck,omitzero"`
	// Latency is the last check's duration.
	Latency              state.Duration `json:"latency"`
	ConsecutiveSuccesses int            `json:"consecutiveSuccesses"`
	ConsecutiveFailures  int            `json:"consecutiveFailures"`
	Checked              bool           `json:"checked"`
}

// Status returns what the checker knows of a group, its servers in the order
// Apply gave them; false if the group is unknown.
func (c *Checker) Status(groupID string) (GroupStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[groupID]
	if g == nil {
		return GroupStatus{}, false
	}
	return g.status(), true
}

// Statuses returns every group's status, sorted by ID.
func (c *Checker) Statuses() []GroupStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]GroupStatus, 0, len(c.groups))
	for _, g := range c.groups {
		out = append(out, g.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (g *group) status() GroupStatus {
	st := GroupStatus{
		ID:       g.id,
		Name:     g.name,
		Enabled:  g.settings.Enabled,
		Protocol: g.settings.Protocol,
		FailOpen: g.failOpen,
		Servers:  make([]ServerStatus, 0, len(g.order)),
	}
	switch {
	case g.probeErr != nil:
		st.Message = "health checks cannot run: " + g.probeErr.Error()
	case g.failOpen:
		st.Message = "every server is unhealthy: failing open, routing by the scheduler anyway"
	}
	for _, addr := range g.order {
		s := g.servers[addr]
		s.mu.Lock()
		ss := ServerStatus{
			Addr:                 addr,
			Weight:               s.weight,
			State:                s.health.String(),
			Reason:               s.reason,
			LastCheck:            s.lastCheck,
			Latency:              state.Duration(s.latency),
			ConsecutiveSuccesses: s.successes,
			ConsecutiveFailures:  s.failures,
			Checked:              s.stop != nil,
		}
		s.mu.Unlock()
		if !ss.Checked {
			ss.State = StateUnchecked
			switch {
			case !g.settings.Enabled:
				ss.Reason = "health checks disabled"
			case g.probeErr != nil:
				ss.Reason = "health checks cannot run"
			case s.weight <= 0:
				ss.Reason = "weight 0"
			}
		}
		st.Servers = append(st.Servers, ss)
	}
	return st
}

// Close stops every check and waits for the loops to end. Backends keep
// their last verdicts.
func (c *Checker) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.loops.Wait()
}
