package route

import (
	"fmt"
	"net/netip"
	"testing"
)

type fields map[string][]string

func (f fields) Value(name string, i int) (string, bool) {
	if vs := f[name]; i < len(vs) {
		return vs[i], true
	}
	return "", false
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		pat, s string
		fold   bool
		want   bool
	}{
		{"/pkg.Svc/*", "/pkg.Svc/Get", false, true},
		{"/pkg.Svc/*", "/pkg.Svc/", false, true},
		{"/pkg.Svc/*", "/pkg.SvcX/Get", false, false},
		{"/*/Get", "/a.B/Get", false, true},
		{"/*/Get", "/a.B/GetAll", false, false},
		{"/pkg.svc/*", "/pkg.Svc/Get", false, false},
		{"*.example.test", "api.example.test", true, true},
		{"*.example.test", "example.test", true, false},
		{"*.example.test", "API.Example.TEST", true, true},
		{"a?c", "abc", false, true},
		{"a?c", "ac", false, false},
		{"*a*b*c*", "xxaxxbxxcxx", false, true},
		{"*a*b*c*", "xxaxxcxxbxx", false, false},
		{"**", "", false, true},
		{"", "", false, true},
		{"", "x", false, false},
		{"*x", "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", false, false},
	} {
		if got := glob(c.pat, c.s, c.fold); got != c.want {
			t.Errorf("glob(%q, %q, fold %v) = %v, want %v", c.pat, c.s, c.fold, got, c.want)
		}
	}
}

func TestConditions(t *testing.T) {
	src := netip.MustParseAddr("10.1.2.3")
	req := &Request{
		Path: "/pkg.Billing/Charge?tenant=acme&x=1", Host: "API.example.test:8443", Method: "POST", Source: src,
		Header: fields{"x-canary": {"0", "1"}, "cookie": {"a=1; session=abc", "b=2"}},
	}
	for _, c := range []struct {
		cond Condition
		want bool
	}{
		{Condition{Type: CondPath, Values: []string{"/pkg.Billing/*"}}, true},
		{Condition{Type: CondPath, Values: []string{"/pkg.Other/*", "/*/Charge"}}, true},
		{Condition{Type: CondPath, Values: []string{"/pkg.billing/*"}}, false},
		{Condition{Type: CondHost, Values: []string{"api.example.test"}}, true},
		{Condition{Type: CondHost, Values: []string{"*.example.test"}}, true},
		{Condition{Type: CondHost, Values: []string{"example.test"}}, false},
		{Condition{Type: CondHeader, Key: "X-Canary", Values: []string{"1"}}, true},
		{Condition{Type: CondHeader, Key: "x-canary", Values: []string{"2"}}, false},
		{Condition{Type: CondHeader, Key: "x-missing", Values: []string{"*"}}, false},
		{Condition{Type: CondMethod, Values: []string{"GET", "POST"}}, true},
		{Condition{Type: CondMethod, Values: []string{"GET"}}, false},
		{Condition{Type: CondQueryString, Key: "tenant", Values: []string{"acme"}}, true},
		{Condition{Type: CondQueryString, Key: "tenant", Values: []string{"other"}}, false},
		{Condition{Type: CondQueryString, Key: "nope", Values: []string{"*"}}, false},
		{Condition{Type: CondCookie, Key: "session", Values: []string{"ab?"}}, true},
		{Condition{Type: CondCookie, Key: "b", Values: []string{"2"}}, true},
		{Condition{Type: CondCookie, Key: "c", Values: []string{"*"}}, false},
		{Condition{Type: CondSourceIP, Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, true},
		{Condition{Type: CondSourceIP, Sources: []netip.Prefix{netip.MustParsePrefix("10.1.2.4/32"), netip.MustParsePrefix("::1/128")}}, false},
	} {
		m, err := Compile([]Condition{c.cond})
		if err != nil {
			t.Fatal(err)
		}
		if got := m.FirstMismatch(req) == -1; got != c.want {
			t.Errorf("%+v: match = %v, want %v (%s)", c.cond, got, c.want, m.Seen(req, 0))
		}
	}
}

func TestAllConditionsMustHold(t *testing.T) {
	m, err := Compile([]Condition{
		{Type: CondPath, Values: []string{"/pkg.Billing/*"}},
		{Type: CondHeader, Key: "x-canary", Values: []string{"1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{Path: "/pkg.Billing/Charge", Header: fields{"x-canary": {"0"}}}
	if i := m.FirstMismatch(req); i != 1 {
		t.Fatalf("first mismatch %d, want 1", i)
	}
	if got := m.Seen(req, 1); got != `header x-canary "0"` {
		t.Fatalf("seen %q", got)
	}
	req = &Request{Path: "/pkg.Billing/Charge", Header: fields{"x-canary": {"1"}}}
	if i := m.FirstMismatch(req); i != -1 {
		t.Fatalf("first mismatch %d, want none", i)
	}
}

func TestWeightedSplitIsExactPerCycle(t *testing.T) {
	a, b, c := NewGroup("a"), NewGroup("b"), NewGroup("c")
	r := NewRule("split", &Matcher{}, []Target{{a, 90}, {b, 10}, {c, 0}}, nil)
	counts := map[*Group]int{}
	for i := 0; i < 1000; i++ {
		counts[r.Group()]++
	}
	if counts[a] != 900 || counts[b] != 100 || counts[c] != 0 {
		t.Fatalf("1000 calls split a=%d b=%d c=%d, want 900/100/0", counts[a], counts[b], counts[c])
	}
	// Spread: no run of the minority target's calls longer than 2 in a row.
	run, longest := 0, 0
	for i := 0; i < 1000; i++ {
		if r.Group() == b {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	if longest > 2 {
		t.Fatalf("canary calls come in runs of %d", longest)
	}
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(100, 30)
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	okA, okB := 0, 0
	for i := 0; i < 200; i++ {
		if l.Allow(a) {
			okA++
		}
		if l.Allow(b) {
			okB++
		}
	}
	if okA < 30 || okA > 31 || okB < 30 || okB > 31 {
		t.Fatalf("per-address limit 30: a got %d, b got %d", okA, okB)
	}
	if d := l.Denied.Load(); d != uint64(400-okA-okB) {
		t.Fatalf("denied %d", d)
	}
}

func TestRulesIndexKeepsPriorityOrder(t *testing.T) {
	rule := func(label string, conds ...Condition) *Rule {
		m, err := Compile(conds)
		if err != nil {
			t.Fatal(err)
		}
		return NewRule(label, m, []Target{{NewGroup("g"), 100}}, nil)
	}
	rules := NewRules([]*Rule{
		rule("pinned", Condition{Type: CondHeader, Key: "x-canary", Values: []string{"1"}}),
		rule("billing", Condition{Type: CondPath, Values: []string{"/pkg.Billing/*", "/pkg.Orders/Get"}}),
		rule("any-get", Condition{Type: CondPath, Values: []string{"/*/Get"}}),
		rule("svc-wild", Condition{Type: CondPath, Values: []string{"/pkg.B?lling/*"}}),
		rule("orders", Condition{Type: CondPath, Values: []string{"/pkg.Orders/*"}}),
		rule("all", Condition{Type: CondPath, Values: []string{"/*"}}),
	})
	for _, c := range []struct {
		path, canary, want string
	}{
		{"/pkg.Billing/Charge", "1", "pinned"},
		{"/pkg.Billing/Charge", "", "billing"},
		{"/pkg.Orders/Get", "", "billing"},
		{"/pkg.Users/Get", "", "any-get"},
		{"/pkg.Bolling/Charge", "", "svc-wild"},
		{"/pkg.Orders/List?x=1", "", "orders"},
		{"/pkg.Users/List", "", "all"},
		{"/", "", "all"},
	} {
		h := fields{}
		if c.canary != "" {
			h["x-canary"] = []string{c.canary}
		}
		got := rules.Match(&Request{Path: c.path, Header: h})
		if got == nil || got.Label != c.want {
			t.Errorf("%s (x-canary %q) met %v, want %s", c.path, c.canary, got, c.want)
		}
	}
	var none *Rules
	if none.Match(&Request{Path: "/a/b"}) != nil || none.All() != nil {
		t.Fatal("no rules matched a call")
	}
}

// benchRules makes 100 rules whose conditions the call meets only in the
// last; cond gives rule i's first condition.
func benchRules(b *testing.B, cond func(i int) Condition) *Rules {
	var rules []*Rule
	for i := 0; i < 100; i++ {
		m, err := Compile([]Condition{cond(i), {Type: CondHeader, Key: "x-canary", Values: []string{"1"}}})
		if err != nil {
			b.Fatal(err)
		}
		rules = append(rules, NewRule(fmt.Sprint(i), m, []Target{{NewGroup("g"), 100}}, nil))
	}
	return NewRules(rules)
}

func benchMatch(b *testing.B, rules *Rules) {
	req := Request{Path: "/pkg.Billing/Charge", Host: "api.example.test", Method: "POST",
		Header: fields{"content-type": {"application/grpc"}, "x-canary": {"1"}, "user-agent": {"grpc-go/1.70"}, "x-tenant": {"t99"}}}
	last := rules.All()[99]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := req
		if rules.Match(&r) != last {
			b.Fatal("wrong rule")
		}
	}
}

// BenchmarkMatch100Rules matches a call against 100 rules of a service
// each (and a header), the call's own last: the index skips the others.
func BenchmarkMatch100Rules(b *testing.B) {
	benchMatch(b, benchRules(b, func(i int) Condition {
		svc := fmt.Sprintf("/pkg.Service%d/*", i)
		if i == 99 {
			svc = "/pkg.Billing/*"
		}
		return Condition{Type: CondPath, Values: []string{svc}}
	}))
}

// BenchmarkMatch100HeaderRules matches a call against 100 rules that name
// no service, so each is tried: the worst case.
func BenchmarkMatch100HeaderRules(b *testing.B) {
	benchMatch(b, benchRules(b, func(i int) Condition {
		return Condition{Type: CondHeader, Key: "x-tenant", Values: []string{fmt.Sprint("t", i)}}
	}))
}
