package route

import (
	"sync/atomic"
	"time"

	"github.com/albctl/albctl/pkg/balancer"
)

// Server group protocols.
const (
	ProtocolGRPC  = "gRPC"
	ProtocolHTTP  = "HTTP"
	ProtocolHTTPS = "HTTPS"
)

// Server is a group's server: its address and weight (0 = no traffic).
type Server struct {
	Addr   string
	Weight int
}

// Group is a server group. Its state is swapped as a whole by Update; calls
// load it once and never lock.
type Group struct {
	ID    string
	state atomic.Pointer[GroupState]

	// Owned by the caller of Update.
	byAddr map[string]*Upstream
}

// GroupState is an immutable view of a group: Upstreams[i] belongs to the
// picker's backend i.
type GroupState struct {
	Picker    balancer.Picker
	Upstreams []*Upstream
	Protocol  string // ProtocolGRPC, ProtocolHTTP or ProtocolHTTPS
	// HashKey is what the uch scheduler hashes; nil for the others.
	HashKey *HashKey
}

// Settings are a group's settings other than its servers.
type Settings struct {
	Protocol  string
	Scheduler string // valid for balancer.New
	SlowStart time.Duration
	HashKey   *HashKey
}

// HashKey names the request value a uch group hashes: a header field
// (lowercase name) or a query parameter.
type HashKey struct {
	Header bool
	Name   string
}

// PickKey returns what the group's picker hashes for a request from
// source: the request's value for uch, when the request has it, and the
// client's address otherwise.
func (gs *GroupState) PickKey(req *Request, source string) string {
	hk := gs.HashKey
	if hk == nil {
		return source
	}
	var v string
	var ok bool
	if hk.Header {
		v, ok = header(req, hk.Name, 0)
	} else {
		v, ok = queryValue(req.Path, hk.Name)
	}
	if !ok {
		return source
	}
	return v
}

var emptyPicker, _ = balancer.New(balancer.SchedulerWRR, nil)

// NewGroup returns a group with no servers; Update gives it its first.
func NewGroup(id string) *Group {
	return &Group{ID: id, byAddr: map[string]*Upstream{}}
}

// State returns the group's current state.
func (g *Group) State() *GroupState { return g.state.Load() }

// Pick picks a server, other than exclude, for a call that loaded gs. If gs has none left
// because an Apply since then drained them all (the group's servers were replaced), it picks
// from the group's state now. It returns the state it picked from.
func (g *Group) Pick(gs *GroupState, key string, exclude *balancer.Backend) (balancer.Result, *GroupState, error) {
	r, err := gs.Picker.Pick(key, exclude)
	if cur := g.State(); err != nil && cur != gs {
		gs = cur
		r, err = gs.Picker.Pick(key, exclude)
	}
	return r, gs, err
}

// Update makes servers, balanced as set says, the group's; servers that
// stay keep their health and connections. It returns the servers that
// left: no new call can pick them, and the caller drains them.
func (g *Group) Update(env *Env, set Settings, servers []Server) (removed []*Upstream) {
	next := make(map[string]*Upstream, len(servers))
	ups := make([]*Upstream, 0, len(servers))
	backends := make([]*balancer.Backend, 0, len(servers))
	// The servers of a new group start together; only one that joins a
	// group already taking calls warms up.
	running := g.state.Load() != nil
	for _, s := range servers {
		u := g.byAddr[s.Addr]
		if u == nil {
			u = newUpstream(env, g.ID, s.Addr, s.Weight)
			if running && set.SlowStart > 0 {
				u.Backend.StartWarming()
			}
		}
		u.Backend.SetWeight(s.Weight)
		next[s.Addr] = u
		ups = append(ups, u)
		backends = append(backends, u.Backend)
	}
	picker, err := balancer.New(set.Scheduler, backends, balancer.WithSlowStart(set.SlowStart))
	if err != nil {
		panic(err) // the caller checked the scheduler
	}
	g.state.Store(&GroupState{Picker: picker, Upstreams: ups, Protocol: set.Protocol, HashKey: set.HashKey})
	for addr, u := range g.byAddr {
		if next[addr] == nil {
			removed = append(removed, u)
		}
	}
	g.byAddr = next
	return removed
}

// Remove takes every server out of the group, for a group that was
// deleted, and returns them for the caller to drain.
func (g *Group) Remove() []*Upstream {
	removed := make([]*Upstream, 0, len(g.byAddr))
	for _, u := range g.byAddr {
		removed = append(removed, u)
	}
	g.byAddr = map[string]*Upstream{}
	g.state.Store(&GroupState{Picker: emptyPicker, Protocol: g.state.Load().Protocol})
	return removed
}

// Upstream returns the group's server at addr, or nil.
func (g *Group) Upstream(addr string) *Upstream { return g.byAddr[addr] }

// Upstreams returns the group's servers in no particular order.
func (g *Group) Upstreams() []*Upstream {
	out := make([]*Upstream, 0, len(g.byAddr))
	for _, u := range g.byAddr {
		out = append(out, u)
	}
	return out
}
