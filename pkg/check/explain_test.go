package check

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/albctl/albctl/pkg/balancer"
	"github.com/albctl/albctl/pkg/health"
	"github.com/albctl/albctl/pkg/proxy/route"
	"github.com/albctl/albctl/pkg/state"
)

// webState is an HTTP listener whose rules send /users/* to a group hashed by x-user, split
// /shop/* between two groups, one of weight 0, and answer /old with a fixed 410.
func webState(t *testing.T) (*state.State, *state.Listener) {
	t.Helper()
	s := state.New()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateLoadBalancer(state.LoadBalancer{Name: "web", Address: "127.0.0.1"}))
	group := func(name, scheduler string, servers ...string) {
		sg := state.NewServerGroup(name, state.ProtocolHTTP)
		sg.Scheduler = scheduler
		if scheduler == state.SchedulerUCH {
			sg.UCHConfig = &state.UCHConfig{Type: state.UCHHeader, Key: "x-user"}
		}
		for _, addr := range servers {
			ap := netip.MustParseAddrPort(addr)
			sg.Servers = append(sg.Servers, state.Server{Address: ap.Addr().String(), Port: int(ap.Port()), Weight: 100})
		}
		must(s.CreateServerGroup(sg))
	}
	group("site", state.SchedulerWRR, "127.0.0.1:8001", "127.0.0.1:8002")
	group("users", state.SchedulerUCH, "127.0.0.1:8101", "127.0.0.1:8102", "127.0.0.1:8103")
	group("shop", state.SchedulerWRR, "127.0.0.1:8201")
	group("shop-next", state.SchedulerWRR, "127.0.0.1:8301")
	l, err := s.CreateListener(state.Listener{LBID: "web", Protocol: state.ProtocolHTTP, Port: 80, ServerGroupID: "site",
		IdleTimeout: state.Duration(state.DefaultIdleTimeout), RequestTimeout: state.Duration(state.DefaultRequestTimeout)})
	if err != nil {
		t.Fatal(err)
	}
	path := func(v string) []state.RuleCondition {
		return []state.RuleCondition{{Type: state.CondPath, Values: []string{v}}, {Type: state.CondHost, Values: []string{"www.example.test"}}}
	}
	must(s.CreateRule(state.Rule{Name: "users", ListenerID: l.ID, Priority: 10, Conditions: path("/users/*"),
		Forward: []state.ForwardTarget{{ServerGroupID: "users", Weight: 100}}}))
	must(s.CreateRule(state.Rule{Name: "shop", ListenerID: l.ID, Priority: 20, Conditions: path("/shop/*"),
		Forward: []state.ForwardTarget{{ServerGroupID: "shop", Weight: 100}, {ServerGroupID: "shop-next", Weight: 0}}}))
	must(s.CreateRule(state.Rule{Name: "gone", ListenerID: l.ID, Priority: 30, Conditions: path("/old"),
		FixedResponse: &state.FixedResponse{HTTPCode: 410, ContentType: "text/plain", Body: "gone"}}))
	return s, l
}

func request(path string, md Metadata) route.Request {
	return route.Request{Path: path, Host: "WWW.example.test:80", Method: "GET", Source: netip.MustParseAddr("192.0.2.7"), Header: md}
}

func TestExplain(t *testing.T) {
	s, l := webState(t)
	for _, tc := range []struct {
		name    string
		req     route.Request
		verdict []string // per rule tried: "matched", or the failed condition and what the call held
		groups  []string // name and likely server of each group
		why     string   // of the first group
	}{
		{"no rule matches", request("/", nil),
			[]string{"path=/users/* / path \"/\"", "path=/shop/* / path \"/\"", "path=/old / path \"/\""},
			[]string{"site 127.0.0.1:8001"}, "wrr shares calls by weight, and it is the first of 2 servers with the largest weight (100 of 200 each)"},
		{"the host is matched without its port and case", request("/users/alice", Metadata{"x-user": {"alice"}}),
			[]string{"matched"}, []string{"users " + likely(t, "alice")}, `uch hashes header x-user "alice" to it`},
		{"without the hash key uch hashes the source", request("/users/alice", nil),
			[]string{"matched"}, []string{"users " + likely(t, "192.0.2.7")}, "uch hashes the source address 192.0.2.7 to it, since the call has no header x-user"},
		{"a group of weight 0 gets no call", request("/shop/cart", nil),
			[]string{"path=/users/* / path \"/shop/cart\"", "matched"}, []string{"shop 127.0.0.1:8201", "shop-next "}, "the only server that takes calls"},
		{"a fixed answer has no group", request("/old?x=1", nil),
			[]string{"path=/users/* / path \"/old\"", "path=/shop/* / path \"/old\"", "matched"}, nil, ""},
	} {
		e, err := Explain(s, l, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var verdicts, groups []string
		for _, r := range e.Rules {
			v := "matched"
			if !r.Matched {
				v = r.Failed + " / " + r.Seen
			}
			verdicts = append(verdicts, v)
		}
		for _, g := range e.Action.Groups {
			groups = append(groups, g.Name+" "+g.LikelyServer)
		}
		why := ""
		if len(e.Action.Groups) > 0 {
			why = e.Action.Groups[0].Why
		}
		if strings.Join(verdicts, "; ") != strings.Join(tc.verdict, "; ") || strings.Join(groups, "; ") != strings.Join(tc.groups, "; ") || why != tc.why {
			t.Errorf("%s:\n got %q %q %q\nwant %q %q %q", tc.name, verdicts, groups, why, tc.verdict, tc.groups, tc.why)
		}
		if tc.name == "a fixed answer has no group" && (e.Action.FixedResponse == nil || e.Action.FixedResponse.HTTPCode != 410 || e.Health != "") {
			t.Errorf("%s: %+v", tc.name, e.Action)
		}
		if tc.name == "a group of weight 0 gets no call" && e.Action.Groups[1].Why != "the rule gives this group weight 0: it gets none of the calls" {
			t.Errorf("%s: %+v", tc.name, e.Action.Groups[1])
		}
	}
}

// likely asks the data plane's picker over the users group, all healthy, where key goes.
func likely(t *testing.T, key string) string {
	t.Helper()
	var backends []*balancer.Backend
	for _, addr := range []string{"127.0.0.1:8101", "127.0.0.1:8102", "127.0.0.1:8103"} {
		backends = append(backends, balancer.NewBackend(addr, 100))
	}
	p, err := balancer.New(balancer.SchedulerUCH, backends)
	if err != nil {
		t.Fatal(err)
	}
	pick, err := p.Pick(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pick.Backend.Addr()
}

func TestExplainAddHealth(t *testing.T) {
	s, l := webState(t)
	e, err := Explain(s, l, request("/", nil))
	if err != nil {
		t.Fatal(err)
	}
	e.AddHealth(func(string) (health.GroupStatus, error) {
		return health.GroupStatus{}, errors.New("no albctl serve is running for this state file")
	})
	if e.Health != "not known: no albctl serve is running for this state file" || e.Action.Groups[0].Servers[0].Health != "" {
		t.Fatalf("health from a serve that is not running: %+v", e)
	}
	e.AddHealth(func(string) (health.GroupStatus, error) {
		return health.GroupStatus{Servers: []health.ServerStatus{
			{Addr: "127.0.0.1:8001", Weight: 100, State: health.StateUnhealthy},
			{Addr: "127.0.0.1:8002", Weight: 100, State: health.StateHealthy},
		}}, nil
	})
	g := e.Action.Groups[0]
	if e.Health != "from the running albctl serve" || g.Servers[0].Health != "unhealthy" || g.LikelyServer != "127.0.0.1:8002" || g.Why != "the only server that takes calls" {
		t.Fatalf("health with one server down: %+v", e)
	}
}

func TestParseMetadata(t *testing.T) {
	md, err := ParseMetadata([]string{"X-Canary: 1", "x-canary:2", "authorization:Bearer a:b"})
	if err != nil || md.String() != "authorization: Bearer a:b, x-canary: 1, x-canary: 2" {
		t.Fatalf("got %v, %v", md, err)
	}
	for _, bad := range []string{"x-canary", ":1", "x canary:1", "host:example.test"} {
		if _, err := ParseMetadata([]string{bad}); err == nil || !strings.Contains(err.Error(), `invalid value "`+bad+`" for -H`) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
