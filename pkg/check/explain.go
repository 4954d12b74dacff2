package check

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/albctl/albctl/pkg/balancer"
	"github.com/albctl/albctl/pkg/health"
	"github.com/albctl/albctl/pkg/proxy/route"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/albctl/albctl/pkg/state"
)

// Explanation is where a described call goes on a listener: the rules tried, in order, and
// the action the call gets.
type Explanation struct {
	Listener string `json:"listener"`
	Call     Call   `json:"call"`
	// Rules are the rules tried: those that did not match, then the one that did, if any.
	Rules  []RuleVerdict `json:"rules"`
	Action Action        `json:"action"`
	// Health says where the servers' health comes from, or why it is not known; empty when
	// the call goes to no server group.
	Health string `json:"health,omitempty"`

	req route.Request
}

// Call is the described call.
type Call struct {
	Method string   `json:"method"`
	Host   string   `json:"host"`
	Path   string   `json:"path"`
	Source string   `json:"source"`
	Header Metadata `json:"header,omitempty"`
}

// RuleVerdict is one rule tried and whether the call meets it.
type RuleVerdict struct {
	ID       string `json:"id"`
	Name     string `json:"name,omitempty"`
	Priority int    `json:"priority"`
	Matched  bool   `json:"matched"`
	// Failed is the first condition the call does not meet, as --match writes it, and Seen is
	// what the call holds for it.
	Failed string `json:"failed,omitempty"`
	Seen   string `json:"seen,omitempty"`
}

// Action is what the call gets: a rule's forward or fixed response, or the listener's server
// group when no rule matches.
type Action struct {
	Default    bool     `json:"default"`
	Rule       string   `json:"rule,omitempty"` // the rule's name, or its ID
	RuleID     string   `json:"ruleId,omitempty"`
	Priority   int      `json:"priority,omitempty"`
	Conditions []string `json:"conditions,omitempty"` // as --match writes them
	// FixedResponse is the rule's answer at the load balancer; Groups are empty then.
	FixedResponse *state.FixedResponse `json:"fixedResponse,omitempty"`
	Groups        []GroupTarget        `json:"groups,omitempty"`
}

// GroupTarget is a server group the call may go to.
type GroupTarget struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Protocol  string `json:"protocol"`
	Scheduler string `json:"scheduler"`
	// Weight is the group's share of the rule's calls; the listener's own group has 100.
	Weight  int            `json:"weight"`
	Servers []ServerTarget `json:"servers"`
	// LikelyServer is the server the call likely reaches, and Why says how the scheduler
	// picks it; LikelyServer is empty if no server can take the call.
	LikelyServer string `json:"likelyServer,omitempty"`
	Why          string `json:"why"`

	hashKey *route.HashKey
}

// ServerTarget is a server of a group.
type ServerTarget struct {
	Addr   string `json:"addr"`
	Weight int    `json:"weight"`
	// Health is the running serve's verdict (healthy, unhealthy, initial, unchecked), empty
	// when not known.
	Health string `json:"health,omitempty"`
}

// Explain tells which of the listener's rules the call meets and why each rule tried before it
// does not, with the data plane's own matcher, and what the call gets. The servers' health is
// not in the state: AddHealth adds it.
func Explain(s *state.State, l *state.Listener, req route.Request) (Explanation, error) {
	e := Explanation{Listener: l.ID, req: req,
		Call: Call{Method: req.Method, Host: req.Host, Path: req.Path, Source: req.Source.String()}}
	if md, ok := req.Header.(Metadata); ok {
		e.Call.Header = md
	}
	e.Rules = []RuleVerdict{}
	for _, r := range s.ListenerRules(l.ID) {
		m, err := route.Compile(serve.RuleConfig(r).Conditions)
		if err != nil {
			return e, fmt.Errorf("rule %s: %w", r.Label(), err)
		}
		v := RuleVerdict{ID: r.ID, Name: r.Name, Priority: r.Priority}
		if i := m.FirstMismatch(&e.req); i >= 0 {
			v.Failed, v.Seen = state.FormatMatch(r.Conditions[i]), m.Seen(&e.req, i)
			e.Rules = append(e.Rules, v)
			continue
		}
		v.Matched = true
		e.Rules = append(e.Rules, v)
		e.Action = Action{Rule: r.Label(), RuleID: r.ID, Priority: r.Priority, FixedResponse: r.FixedResponse}
		for _, c := range r.Conditions {
			e.Action.Conditions = append(e.Action.Conditions, state.FormatMatch(c))
		}
		for _, t := range r.Forward {
			if err := e.addGroup(s, t.ServerGroupID, t.Weight); err != nil {
				return e, err
			}
		}
		return e, nil
	}
	e.Action.Default = true
	return e, e.addGroup(s, l.ServerGroupID, state.MaxForwardWeight)
}

func (e *Explanation) addGroup(s *state.State, id string, weight int) error {
	sg, err := s.ServerGroup(id)
	if err != nil {
		return err
	}
	g := GroupTarget{ID: sg.ID, Name: sg.Name, Protocol: sg.Protocol, Scheduler: sg.Scheduler, Weight: weight, Servers: []ServerTarget{}}
	if uch := sg.UCHConfig; uch != nil {
		g.hashKey = &route.HashKey{Header: uch.Type == state.UCHHeader, Name: uch.Key}
	}
	for _, srv := range sg.Servers {
		g.Servers = append(g.Servers, ServerTarget{Addr: srv.HostPort(), Weight: srv.Weight})
	}
	g.guess(e.req)
	e.Action.Groups = append(e.Action.Groups, g)
	e.Health = "not known"
	return nil
}

// AddHealth adds the servers' health as the running serve reports it (such as through
// serve.GroupHealth) and guesses again which server each group gives the call, skipping the
// unhealthy as the schedulers do. On an error the health stays unknown, and Health says why.
func (e *Explanation) AddHealth(groupHealth func(groupID string) (health.GroupStatus, error)) {
	var statuses []health.GroupStatus
	for _, g := range e.Action.Groups {
		gs, err := groupHealth(g.ID)
		if err != nil {
			e.Health = "not known: " + err.Error()
			return
		}
		statuses = append(statuses, gs)
	}
	for i := range e.Action.Groups {
		g := &e.Action.Groups[i]
		for j := range g.Servers {
			for _, ss := range statuses[i].Servers {
				if ss.Addr == g.Servers[j].Addr {
					g.Servers[j].Health = ss.State
				}
			}
		}
		g.guess(e.req)
	}
	e.Health = "from the running albctl serve"
}

// guess sets the server the call likely reaches. The hashing schedulers are asked through the
// data plane's own picker, so their answer holds while weights and health stay as they are;
// for wrr and wlc, which depend on the calls before, it is the server with the largest weight.
func (g *GroupTarget) guess(req route.Request) {
	g.LikelyServer, g.Why = "", ""
	if g.Weight == 0 {
		g.Why = "the rule gives this group weight 0: it gets none of the calls"
		return
	}
	var backends []*balancer.Backend
	var candidates []ServerTarget
	for _, s := range g.Servers {
		if s.Weight == 0 {
			continue
		}
		b := balancer.NewBackend(s.Addr, s.Weight)
		switch s.Health {
		case health.StateHealthy:
			b.SetHealth(balancer.HealthHealthy)
		case health.StateUnhealthy:
			b.SetHealth(balancer.HealthUnhealthy)
		}
		backends = append(backends, b)
		if s.Health != health.StateUnhealthy {
			candidates = append(candidates, s)
		}
	}
	failOpen := ""
	if len(backends) > 0 && len(candidates) == 0 {
		failOpen = "; every server is unhealthy, so the group fails open and calls go to them anyway"
		for _, s := range g.Servers {
			if s.Weight > 0 {
				candidates = append(candidates, s)
			}
		}
	}
	switch {
	case len(candidates) == 0:
		g.Why = "no server has a weight above 0: the call fails"
		return
	case len(candidates) == 1:
		g.LikelyServer, g.Why = candidates[0].Addr, "the only server that takes calls"+failOpen
		return
	}
	if g.Scheduler == state.SchedulerSCH || g.Scheduler == state.SchedulerUCH {
		picker, err := balancer.New(g.Scheduler, backends)
		if err != nil {
			g.Why = err.Error()
			return
		}
		source := req.Source.String()
		key := (&route.GroupState{HashKey: g.hashKey}).PickKey(&req, source)
		pick, err := picker.Pick(key, nil)
		if err != nil {
			g.Why = err.Error()
			return
		}
		g.LikelyServer = pick.Backend.Addr()
		switch {
		case key != source:
			g.Why = fmt.Sprintf("%s hashes %s %q to it", g.Scheduler, hashKeyText(g.hashKey), key)
		case g.hashKey != nil:
			g.Why = fmt.Sprintf("%s hashes the source address %s to it, since the call has no %s", g.Scheduler, key, hashKeyText(g.hashKey))
		default:
			g.Why = fmt.Sprintf("%s hashes the source address %s to it", g.Scheduler, key)
		}
		g.Why += failOpen
		return
	}
	total, best, tied := 0, candidates[0], 0
	for _, s := range candidates {
		total += s.Weight
		if s.Weight > best.Weight {
			best, tied = s, 0
		}
		if s.Weight == best.Weight {
			tied++
		}
	}
	how := "wrr shares calls by weight"
	if g.Scheduler == state.SchedulerWLC {
		how = "wlc sends each call to the server with the fewest calls in flight for its weight"
	}
	g.LikelyServer = best.Addr
	if tied > 1 {
		g.Why = fmt.Sprintf("%s, and it is the first of %d servers with the largest weight (%d of %d each)%s", how, tied, best.Weight, total, failOpen)
		return
	}
	g.Why = fmt.Sprintf("%s, and it has the largest weight (%d of %d)%s", how, best.Weight, total, failOpen)
}

func hashKeyText(hk *route.HashKey) string {
	if hk.Header {
		return "header " + hk.Name
	}
	return "query parameter " + hk.Name
}

// Metadata is the header fields a call sends (gRPC metadata), by lowercase name. It gives them
// to the matcher as route.Header.
type Metadata map[string][]string

// Value returns the i-th value of the field name.
func (m Metadata) Value(name string, i int) (string, bool) {
	if i < len(m[name]) {
		return m[name][i], true
	}
	return "", false
}

// ParseMetadata reads header fields given as grpcurl's -H takes them: KEY:VALUE, or
// "KEY: VALUE".
func ParseMetadata(fields []string) (Metadata, error) {
	md := Metadata{}
	for _, f := range fields {
		key, value, ok := strings.Cut(f, ":")
		key = strings.ToLower(strings.TrimSpace(key))
		if !ok || key == "" || strings.ContainsFunc(key, func(r rune) bool { return !headerNameChar(r) }) {
			return nil, fmt.Errorf("invalid value %q for -H: give KEY:VALUE with a header name of letters, digits, '-', '_' or '.', such as x-canary:1", f)
		}
		if key == "host" {
			return nil, fmt.Errorf("invalid value %q for -H: the host is the call's own (DOMAIN, or --host)", f)
		}
		md[key] = append(md[key], strings.TrimSpace(value))
	}
	return md, nil
}

func headerNameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.", r)
}

// String writes the fields as -H takes them, sorted by name.
func (m Metadata) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		for _, v := range m[k] {
			parts = append(parts, k+": "+v)
		}
	}
	return strings.Join(parts, ", ")
}

// LocalSource returns the address the kernel would call target ("host:port") from, by
// connecting a UDP socket, which sends nothing; if it cannot, the loopback address of the
// target's family.
func LocalSource(target string) netip.Addr {
	if c, err := net.Dial("udp", target); err == nil {
		defer c.Close()
		if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
			return ap.Addr().Unmap()
		}
	}
	host, _, _ := net.SplitHostPort(target)
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		return netip.IPv6Loopback()
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}
