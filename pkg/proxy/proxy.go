// Package proxy is albctl's data plane as a whole: its listeners accept
// connections, do TLS (certificates by SNI) and hand each connection to an
// engine: h2 forwards gRPC calls to gRPC server groups, web is the HTTP
// reverse proxy for HTTP and HTTPS groups. route says where each call goes,
// obs records it.
//
// The proxy is configured as a whole with Apply, which may be called again at
// any time: listeners start and stop, certificates and servers change, and
// calls in flight carry on. Removed servers drain. Shutdown sends GOAWAY to
// clients and waits for calls in flight.
package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/albctl/albctl/pkg/balancer"
	"github.com/albctl/albctl/pkg/proxy/grpcweb"
	"github.com/albctl/albctl/pkg/proxy/h2"
	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/proxy/route"
	"github.com/albctl/albctl/pkg/proxy/web"
)

// Config is the whole data-plane configuration.
type Config struct {
	Listeners []ListenerConfig
	// Groups maps a server group ID to the group.
	Groups map[string]GroupConfig
}

// ListenerConfig is one listener: TLS with HTTP/2 in front of a gRPC group,
// or HTTP/1.1 (and HTTP/2 over TLS, if enabled) in front of an HTTP group.
type ListenerConfig struct {
	ID string
	// Addr is the address to listen on, such as "127.0.0.1:8443" or ":443".
	Addr string
	// Certificates are served by SNI; the first is the default for clients
	// that send no or an unknown server name. None means plaintext, which
	// only a listener of an HTTP group may be.
	Certificates []tls.Certificate
	// HTTP2 must be true for a gRPC group, which needs HTTP/2.
	HTTP2 bool
	// GroupID is the server group calls are forwarded to.
	GroupID string
	// IdleTimeout closes client connections without calls for this long;
	// 0 means 15 s.
	IdleTimeout time.Duration
	// RequestTimeout bounds the wait for the server's response to a call
	// (DEADLINE_EXCEEDED when it expires); once the response has started,
	// only the client's own deadline applies, so long streams live on.
	// 0 means no limit.
	RequestTimeout time.Duration
	// Rules are tried in order; a call no rule matches goes to GroupID.
	Rules []RuleConfig
	// TLS is the listener's TLS security policy.
	TLS TLSPolicy
	// ACL, if set, decides at accept which clients may connect.
	ACL *ACL
	// ClientCAs, if set, verify client certificates (mutual TLS); a client
	// must present one if RequireClientCert is set.
	ClientCAs         *x509.CertPool
	RequireClientCert bool
	// ClientCertHeaders, if set, pass a verified client certificate's
	// details to the servers.
	ClientCertHeaders *ClientCertHeaders
	// Web, if set, takes gRPC-Web calls from browsers, over HTTP/2 and
	// HTTP/1.1, for a gRPC group behind a TLS listener.
	Web *WebConfig
}

// WebConfig is a listener's gRPC-Web and CORS setting.
type WebConfig = grpcweb.Config

// ClientCertHeaders name the headers of a verified client certificate.
type ClientCertHeaders = route.ClientCertHeaders

// RuleConfig is a forwarding rule: calls that meet every condition are
// forwarded to Forward's groups by weight, or answered with Fixed.
type RuleConfig struct {
	ID string
	// Label names the rule in the access log and metrics.
	Label      string
	Conditions []Condition
	Forward    []WeightedGroup
	Fixed      *FixedResponse
	Insert     []Field
	Remove     []string
	// QPS, if above 0, limits the calls the rule admits per second, and
	// PerIPQPS, if above 0, those of each client address.
	QPS, PerIPQPS int
}

// WeightedGroup is a rule's server group and its weight.
type WeightedGroup struct {
	GroupID string
	Weight  int
}

// Parts of a rule, as route defines them.
type (
	Condition     = route.Condition
	FixedResponse = route.Fixed
	Field         = route.Field
	HashKey       = route.HashKey
)

// GroupConfig is a server group.
type GroupConfig struct {
	ID string
	// Protocol is how the servers are spoken to: GroupGRPC (the default,
	// "") over h2c, GroupHTTP or GroupHTTPS in HTTP/1.1.
	Protocol string
	// Scheduler is "wrr" (default), "wlc", "sch" or "uch".
	Scheduler string
	// HashKey is the value a "uch" group hashes.
	HashKey *HashKey
	Servers []ServerConfig
	// DrainTimeout is how long a removed server may keep its calls in
	// flight before its connections are closed. 0 means until those calls
	// end.
	DrainTimeout time.Duration
	// SlowStart is how long a server that joins the running group, or
	// comes back healthy, takes to ramp up to its full weight (wrr and wlc
	// only). 0 turns slow start off.
	SlowStart time.Duration
}

// Server group protocols for GroupConfig.Protocol.
const (
	GroupGRPC  = route.ProtocolGRPC
	GroupHTTP  = route.ProtocolHTTP
	GroupHTTPS = route.ProtocolHTTPS
)

func (gc GroupConfig) protocol() string {
	if gc.Protocol == "" {
		return GroupGRPC
	}
	return gc.Protocol
}

// ServerConfig is a backend server: "host:port" of its service and a weight
// (0 = no traffic).
type ServerConfig = route.Server

// Options are the proxy's fixed settings.
type Options struct {
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// AccessLog receives one line per call; nil disables the access log.
	// The caller closes it after Shutdown.
	AccessLog *obs.AccessLog
	// OnConnectFailure, if set, is called when a real call could not connect
	// to a backend: a passive health signal. It must not block.
	OnConnectFailure func(groupID, addr string, err error)
	// MaxConcurrentStreams per client connection; 0 means 1000.
	MaxConcurrentStreams uint32
	// HandshakeTimeout bounds the TLS handshake; 0 means 10 s.
	HandshakeTimeout time.Duration
	// DialTimeout bounds connecting to a backend; 0 means 5 s.
	DialTimeout time.Duration
}

// Proxy runs the listeners and forwards calls to server groups.
type Proxy struct {
	opts Options
	log  *slog.Logger
	rec  *obs.Recorder
	env  *route.Env
	h2   *h2.Engine
	web  web.Options

	// mu serialises Apply and Shutdown and guards the maps.
	mu        sync.Mutex
	listeners map[string]*listener
	groups    map[string]*group
	closed    bool
	// limiters are the rules' traffic limiters by rule ID, kept across
	// Apply while a rule's limits stay the same.
	limiters map[string]*route.Limiter

	// draining holds removed servers until their connections close.
	draining map[*route.Upstream]struct{}
	// stop ends background goroutines (drains) at Shutdown; bg waits for them.
	stop chan struct{}
	bg   sync.WaitGroup
}

// New returns a proxy with no listeners; call Apply to start serving.
func New(opts Options) *Proxy {
	if opts.MaxConcurrentStreams == 0 {
		opts.MaxConcurrentStreams = 1000
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rec := obs.NewRecorder(opts.AccessLog)
	return &Proxy{
		opts: opts,
		log:  log,
		rec:  rec,
		env:  &route.Env{Recorder: rec, DialTimeout: opts.DialTimeout, OnConnectFailure: opts.OnConnectFailure},
		h2: h2.New(h2.Options{
			Logger: log, Recorder: rec, MaxConcurrentStreams: opts.MaxConcurrentStreams,
			HandshakeTimeout: opts.HandshakeTimeout, DialTimeout: opts.DialTimeout,
		}),
		web:       web.Options{Recorder: rec, HandshakeTimeout: opts.HandshakeTimeout, MaxConcurrentStreams: opts.MaxConcurrentStreams},
		listeners: make(map[string]*listener),
		groups:    make(map[string]*group),
		limiters:  make(map[string]*route.Limiter),
		draining:  make(map[*route.Upstream]struct{}),
		stop:      make(chan struct{}),
	}
}

// ErrClosed is returned by Apply after Shutdown.
var ErrClosed = errors.New("proxy: shut down")

// Apply makes cfg the running configuration. It validates everything and
// opens new listening sockets first, so an error leaves the previous
// configuration running untouched.
func (p *Proxy) Apply(cfg Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if err := validate(cfg); err != nil {
		return err
	}
	matchers := map[string]*route.Matcher{}
	for _, lc := range cfg.Listeners {
		for _, rc := range lc.Rules {
			m, err := route.Compile(rc.Conditions)
			if err != nil {
				return fmt.Errorf("listener %s: rule %s: %w", lc.ID, rc.Label, err)
			}
			matchers[rc.ID] = m
		}
	}
	certs := make(map[string]*certSet, len(cfg.Listeners))
	for _, lc := range cfg.Listeners {
		cs, err := newCertSet(lc.Certificates)
		if err != nil {
			return fmt.Errorf("listener %s: %w", lc.ID, err)
		}
		certs[lc.ID] = cs
	}

	// Open the sockets of new listeners and of listeners that moved.
	opened := map[string]*listener{}
	for _, lc := range cfg.Listeners {
		if old := p.listeners[lc.ID]; old != nil && (old.addr == lc.Addr || old.Addr() == lc.Addr) {
			continue
		}
		l, err := p.listen(lc)
		if err != nil {
			for _, o := range opened {
				o.ln.Close()
			}
			return fmt.Errorf("listener %s: %w", lc.ID, err)
		}
		opened[lc.ID] = l
	}

	// Groups: keep backends (and their health and connections) by address.
	for id, gc := range cfg.Groups {
		g := p.groups[id]
		if g == nil {
			g = &group{Group: route.NewGroup(id)}
			p.groups[id] = g
		}
		g.drainTimeout = gc.DrainTimeout
		g.scheduler = gc.Scheduler
		if g.scheduler == "" {
			g.scheduler = balancer.SchedulerWRR
		}
		// Only once no new call can pick them do removed servers start draining.
		set := route.Settings{Protocol: gc.protocol(), Scheduler: g.scheduler, SlowStart: gc.SlowStart, HashKey: gc.HashKey}
		for _, u := range g.Update(p.env, set, gc.Servers) {
			p.drain(u, g.drainTimeout)
		}
	}
	for id, g := range p.groups {
		if _, ok := cfg.Groups[id]; !ok {
			for _, u := range g.Remove() {
				p.drain(u, g.drainTimeout)
			}
			delete(p.groups, id)
		}
	}

	limiters := map[string]*route.Limiter{}
	rules := map[string][]*route.Rule{}
	for _, lc := range cfg.Listeners {
		for _, rc := range lc.Rules {
			rules[lc.ID] = append(rules[lc.ID], p.rule(rc, matchers[rc.ID], limiters))
		}
	}
	p.limiters = limiters

	// Listeners: new state for all, close the ones that went away.
	keep := map[string]bool{}
	for _, lc := range cfg.Listeners {
		keep[lc.ID] = true
		l := opened[lc.ID]
		if l == nil {
			l = p.listeners[lc.ID]
		} else if old := p.listeners[lc.ID]; old != nil {
			old.close()
		}
		l.update(lc, certs[lc.ID], p.groups[lc.GroupID], rules[lc.ID])
		if opened[lc.ID] != nil {
			p.listeners[lc.ID] = l
			l.start()
		}
	}
	for id, l := range p.listeners {
		if !keep[id] {
			l.close()
			delete(p.listeners, id)
		}
	}
	return nil
}

// rule builds a rule's data-plane form; a limiter whose limits stay keeps
// its buckets.
func (p *Proxy) rule(rc RuleConfig, m *route.Matcher, limiters map[string]*route.Limiter) *route.Rule {
	var targets []route.Target
	for _, wg := range rc.Forward {
		targets = append(targets, route.Target{Group: p.groups[wg.GroupID].Group, Weight: wg.Weight})
	}
	r := route.NewRule(rc.Label, m, targets, rc.Fixed)
	r.Insert, r.Remove = rc.Insert, rc.Remove
	if rc.QPS > 0 {
		lim := p.limiters[rc.ID]
		if lim == nil || lim.QPS != rc.QPS || lim.PerIP != rc.PerIPQPS {
			lim = route.NewLimiter(rc.QPS, rc.PerIPQPS)
		}
		limiters[rc.ID] = lim
		r.Limit = lim
	}
	return r
}

func validate(cfg Config) error {
	seen := map[string]bool{}
	for _, lc := range cfg.Listeners {
		switch {
		case lc.ID == "":
			return errors.New("listener without an ID")
		case seen[lc.ID]:
			return fmt.Errorf("listener %s: duplicate ID", lc.ID)
		}
		gc, ok := cfg.Groups[lc.GroupID]
		switch {
		case !ok:
			return fmt.Errorf("listener %s: unknown server group %q", lc.ID, lc.GroupID)
		case gc.protocol() == GroupGRPC && !lc.HTTP2:
			return fmt.Errorf("listener %s: HTTP/2 must be enabled to forward gRPC", lc.ID)
		case gc.protocol() == GroupGRPC && len(lc.Certificates) == 0:
			return fmt.Errorf("listener %s: a certificate is required to forward gRPC", lc.ID)
		case len(lc.Certificates) == 0 && lc.HTTP2:
			return fmt.Errorf("listener %s: HTTP/2 needs TLS (a certificate)", lc.ID)
		case lc.Web != nil && gc.protocol() != GroupGRPC:
			return fmt.Errorf("listener %s: gRPC-Web needs a gRPC server group", lc.ID)
		case lc.Web != nil && lc.Web.Credentials && slices.Contains(lc.Web.Origins, "*"):
			return fmt.Errorf("listener %s: CORS credentials cannot go with any origin (*)", lc.ID)
		}
		if err := validateRules(cfg, lc, gc.protocol() == GroupGRPC); err != nil {
			return fmt.Errorf("listener %s: %w", lc.ID, err)
		}
		if err := lc.ACL.validate(); err != nil {
			return fmt.Errorf("listener %s: %w", lc.ID, err)
		}
		if err := lc.TLS.validate(); err != nil {
			return fmt.Errorf("listener %s: TLS policy: %w", lc.ID, err)
		}
		seen[lc.ID] = true
	}
	for id, gc := range cfg.Groups {
		if gc.ID != "" && gc.ID != id {
			return fmt.Errorf("server group %s: ID %q does not match its key", id, gc.ID)
		}
		if p := gc.protocol(); p != GroupGRPC && p != GroupHTTP && p != GroupHTTPS {
			return fmt.Errorf("server group %s: unknown protocol %q", id, p)
		}
		if _, err := balancer.New(gc.Scheduler, nil); err != nil {
			return fmt.Errorf("server group %s: %w", id, err)
		}
		addrs := map[string]bool{}
		for _, s := range gc.Servers {
			if addrs[s.Addr] {
				return fmt.Errorf("server group %s: server %s listed twice", id, s.Addr)
			}
			if s.Weight < 0 {
				return fmt.Errorf("server group %s: server %s: negative weight %d", id, s.Addr, s.Weight)
			}
			addrs[s.Addr] = true
		}
	}
	return nil
}

func validateRules(cfg Config, lc ListenerConfig, grpc bool) error {
	ids := map[string]bool{}
	for _, rc := range lc.Rules {
		if rc.ID == "" || ids[rc.ID] {
			return fmt.Errorf("rule %q: a rule needs an ID of its own", rc.ID)
		}
		ids[rc.ID] = true
		if (len(rc.Forward) == 0) == (rc.Fixed == nil) {
			return fmt.Errorf("rule %s: give either server groups or a fixed response", rc.Label)
		}
		total := 0
		for _, wg := range rc.Forward {
			gc, ok := cfg.Groups[wg.GroupID]
			switch {
			case !ok:
				return fmt.Errorf("rule %s: unknown server group %q", rc.Label, wg.GroupID)
			case (gc.protocol() == GroupGRPC) != grpc:
				return fmt.Errorf("rule %s: server group %s is %s, which this listener cannot forward to", rc.Label, wg.GroupID, gc.protocol())
			case wg.Weight < 0:
				return fmt.Errorf("rule %s: negative weight %d", rc.Label, wg.Weight)
			}
			total += wg.Weight
		}
		if len(rc.Forward) > 0 && total == 0 {
			return fmt.Errorf("rule %s: the weights add up to 0", rc.Label)
		}
		if rc.QPS < 0 || rc.PerIPQPS < 0 || rc.PerIPQPS > 0 && rc.QPS == 0 {
			return fmt.Errorf("rule %s: limits %d, %d per address: a per-address limit needs a total one", rc.Label, rc.QPS, rc.PerIPQPS)
		}
	}
	return nil
}

// Shutdown stops accepting connections, sends GOAWAY to every client, waits
// for calls in flight until they end or ctx is done, then closes all
// connections. It returns ctx's error if calls had to be cut.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	listeners := make([]*listener, 0, len(p.listeners))
	for _, l := range p.listeners {
		listeners = append(listeners, l)
	}
	groups := p.groups
	p.listeners, p.groups = map[string]*listener{}, map[string]*group{}
	p.mu.Unlock()

	for _, l := range listeners {
		l.close()
	}
	var err error
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for p.rec.Active() > 0 && err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-tick.C:
		}
	}
	if err == nil {
		// Connections write in the background: let each one close itself
		// (an HTTP/2 connection does once its last stream is done after its
		// GOAWAY) so that no answer is cut short.
		grace := time.NewTimer(shutdownGrace)
		defer grace.Stop()
	wait:
		for openConns(listeners) > 0 {
			select {
			case <-ctx.Done():
				break wait
			case <-grace.C:
				break wait
			case <-tick.C:
			}
		}
	}
	for _, l := range listeners {
		l.closeConns()
	}
	close(p.stop)
	for _, g := range groups {
		for _, u := range g.Upstreams() {
			u.Close()
		}
	}
	p.bg.Wait()
	for _, l := range listeners {
		l.wait()
	}
	return err
}

// shutdownGrace bounds how long Shutdown waits, once calls are done, for
// client connections to finish writing and close; net/http's HTTP/2 server
// closes a connection one second after its GOAWAY when no stream is left.
const shutdownGrace = 1500 * time.Millisecond

func openConns(listeners []*listener) int {
	n := 0
	for _, l := range listeners {
		n += l.connCount()
	}
	return n
}

// BackendRef names a backend for a health checker.
type BackendRef struct {
	GroupID string
	Backend *balancer.Backend
}

// Backends returns every backend of every group, sorted by group and
// address. A health checker probes them and calls SetHealth; the proxy sees
// the change on the next pick. Draining backends are left out.
func (p *Proxy) Backends() []BackendRef {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []BackendRef
	for id, g := range p.groups {
		for _, u := range g.Upstreams() {
			out = append(out, BackendRef{GroupID: id, Backend: u.Backend})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].GroupID != out[j].GroupID {
			return out[i].GroupID < out[j].GroupID
		}
		return out[i].Backend.Addr() < out[j].Backend.Addr()
	})
	return out
}

// Backend returns the backend for addr in group, or nil.
func (p *Proxy) Backend(groupID, addr string) *balancer.Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g := p.groups[groupID]; g != nil {
		if u := g.Upstream(addr); u != nil {
			return u.Backend
		}
	}
	return nil
}

// Status is a snapshot of the data plane for a status page.
type Status struct {
	Listeners   []ListenerStatus `json:"listeners"`
	Groups      []GroupStatus    `json:"groups"`
	ActiveCalls int64            `json:"activeCalls"`
}

// ListenerStatus describes a running listener.
type ListenerStatus struct {
	ID          string `json:"id"`
	Addr        string `json:"addr"`
	GroupID     string `json:"groupId"`
	Connections int    `json:"connections"`
}

// GroupStatus describes a server group and its backends.
type GroupStatus struct {
	ID        string         `json:"id"`
	Scheduler string         `json:"scheduler"`
	Servers   []ServerStatus `json:"servers"`
}

// ServerStatus is a backend's counters plus its open connections.
type ServerStatus struct {
	balancer.Stats
	Connections int `json:"connections"`
}

// Status returns the current listeners, groups and backend counters.
func (p *Proxy) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{ActiveCalls: p.rec.Active()}
	for _, l := range p.listeners {
		ls := l.state.Load()
		st.Listeners = append(st.Listeners, ListenerStatus{ID: l.id, Addr: l.Addr(), GroupID: ls.cfg.GroupID, Connections: l.connCount()})
	}
	sort.Slice(st.Listeners, func(i, j int) bool { return st.Listeners[i].ID < st.Listeners[j].ID })
	for id, g := range p.groups {
		gs := GroupStatus{ID: id, Scheduler: g.scheduler}
		for _, u := range g.Upstreams() {
			gs.Servers = append(gs.Servers, ServerStatus{Stats: u.Backend.Stats(), Connections: u.ConnCount()})
		}
		sort.Slice(gs.Servers, func(i, j int) bool { return gs.Servers[i].Addr < gs.Servers[j].Addr })
		st.Groups = append(st.Groups, gs)
	}
	sort.Slice(st.Groups, func(i, j int) bool { return st.Groups[i].ID < st.Groups[j].ID })
	return st
}

func (p *Proxy) sortedListeners() []*listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*listener, 0, len(p.listeners))
	for _, l := range p.listeners {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// ListenerAddr returns the bound address of a running listener (useful with
// port 0), or "" if there is none.
func (p *Proxy) ListenerAddr(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.listeners[id]; l != nil {
		return l.Addr()
	}
	return ""
}

// group is a server group with what Apply keeps beside it.
type group struct {
	*route.Group
	drainTimeout time.Duration
	scheduler    string
}

// drain stops new calls to u, waits for its calls in flight (up to timeout,
// if set) and closes its connections. Apply holds p.mu.
func (p *Proxy) drain(u *route.Upstream, timeout time.Duration) {
	u.Backend.SetDraining(true)
	p.draining[u] = struct{}{}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		defer func() {
			u.Close()
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
		for u.Backend.Outstanding() > 0 {
			select {
			case <-deadline:
				p.log.Info("drain timeout: closing connections", "group", u.GroupID, "server", u.Addr, "calls", u.Backend.Outstanding())
				return
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
}

// WriteMetrics writes the proxy's metrics in the Prometheus text format.
func (p *Proxy) WriteMetrics(w io.Writer) error {
	if err := p.rec.WriteMetrics(w); err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "# HELP albctl_proxy_upstream_connections Open connections to backends (HTTP/2 to gRPC servers, HTTP/1.1 to HTTP ones).")
	fmt.Fprintln(bw, "# TYPE albctl_proxy_upstream_connections gauge")
	for _, g := range p.Status().Groups {
		for _, s := range g.Servers {
			fmt.Fprintf(bw, "albctl_proxy_upstream_connections{group=%s,server=%s} %d\n", strconv.Quote(g.ID), strconv.Quote(s.Addr), s.Connections)
		}
	}
	fmt.Fprintln(bw, "# HELP albctl_proxy_rule_limited_total Calls refused by a rule's traffic limit (RESOURCE_EXHAUSTED, or 503 for HTTP).")
	fmt.Fprintln(bw, "# TYPE albctl_proxy_rule_limited_total counter")
	for _, l := range p.sortedListeners() {
		for _, r := range l.route().Rules.All() {
			if r.Limit != nil {
				fmt.Fprintf(bw, "albctl_proxy_rule_limited_total{listener=%s,rule=%s} %d\n", strconv.Quote(l.id), strconv.Quote(r.Label), r.Limit.Denied.Load())
			}
		}
	}
	writeACLMetrics(bw, p.sortedListeners())
	return bw.Flush()
}
