package state

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// ruleScenario is the tutorial's state with gRPC groups stable and canary, and an HTTP listener
// on port 8080 in front of the HTTP group web. It returns the two listeners' IDs.
func ruleScenario(t *testing.T) (s *State, grpcListener, httpListener string) {
	t.Helper()
	s = scenario(t)
	for _, g := range []ServerGroup{NewServerGroup("stable", ProtocolGRPC), NewServerGroup("canary", ProtocolGRPC), NewServerGroup("web", ProtocolHTTP)} {
		if _, err := s.CreateServerGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	l, err := s.CreateListener(Listener{LBID: "demo", Protocol: ProtocolHTTP, Port: 8080, ServerGroupID: "web",
		IdleTimeout: Duration(DefaultIdleTimeout), RequestTimeout: Duration(DefaultRequestTimeout)})
	if err != nil {
		t.Fatal(err)
	}
	return s, s.Listeners[0].ID, l.ID
}

func serviceRule(listenerID string, priority int) Rule {
	return Rule{
		ListenerID: listenerID,
		Priority:   priority,
		Conditions: []RuleCondition{{Type: CondPath, Values: []string{"/pkg.Orders/*"}}},
		Forward:    []ForwardTarget{{ServerGroupID: "stable", Weight: 90}, {ServerGroupID: "canary", Weight: 10}},
	}
}

func TestRuleLifecycle(t *testing.T) {
	s, grpcL, _ := ruleScenario(t)
	split := serviceRule(grpcL, 20)
	split.Name = "canary-split"
	created, err := s.CreateRule(split)
	if err != nil {
		t.Fatal(err)
	}
	stable, _ := s.ServerGroup("stable")
	if !strings.HasPrefix(created.ID, "rule-") || created.Forward[0].ServerGroupID != stable.ID {
		t.Fatalf("rule not stored with IDs: %+v", created)
	}
	pin := serviceRule(grpcL, 15)
	pin.Conditions = append(pin.Conditions, RuleCondition{Type: CondHeader, Key: "x-canary", Values: []string{"1"}})
	pin.Forward = []ForwardTarget{{ServerGroupID: "canary", Weight: 100}}
	if _, err := s.CreateRule(pin); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if rules := s.ListenerRules(grpcL); len(rules) != 2 || rules[0].Priority != 15 || rules[1].Priority != 20 {
		t.Fatalf("ListenerRules: %+v", rules)
	}

	// A refused change leaves the rule as it was, and an update keeps its ID and listener.
	_, err = s.UpdateRule("canary-split", func(r *Rule) error { r.Forward[0].Weight = 101; return nil })
	if err == nil || s.Rules[0].Forward[0].Weight != 90 {
		t.Fatalf("refused update: %v, %+v", err, s.Rules[0])
	}
	updated, err := s.UpdateRule(created.ID, func(r *Rule) error {
		r.ID, r.ListenerID, r.Priority = "rule-other", "elsewhere", 30
		return nil
	})
	if err != nil || updated.ID != created.ID || updated.ListenerID != grpcL || updated.Priority != 30 {
		t.Fatalf("UpdateRule: %+v, %v", updated, err)
	}

	var conflicting *ConflictError
	if _, err := s.DeleteServerGroup("canary"); !errors.As(err, &conflicting) || !strings.Contains(err.Error(), "is used by rules canary-split, rule-") {
		t.Fatalf("deleting a group rules forward to: %v", err)
	}
	if _, err := s.DeleteListener(grpcL); !errors.As(err, &conflicting) || !strings.Contains(err.Error(), "has rules canary-split, rule-") {
		t.Fatalf("deleting a listener with rules: %v", err)
	}
	var notFound *NotFoundError
	if _, err := s.CreateRule(serviceRule("lsn-nope", 1)); !errors.As(err, &notFound) || notFound.Kind != "listener" {
		t.Fatalf("rule on an unknown listener: %v", err)
	}
	if _, err := s.DeleteRule("canary-split"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rule("canary-split"); !errors.As(err, &notFound) {
		t.Fatalf("deleted rule still found: %v", err)
	}
}

// TestChangesThatBreakARule refuses a change to a group or listener that would leave a rule
// forwarding where it cannot, and names the rule.
func TestChangesThatBreakARule(t *testing.T) {
	s, grpcL, _ := ruleScenario(t)
	r := serviceRule(grpcL, 20)
	r.Name = "canary-split"
	if _, err := s.CreateRule(r); err != nil {
		t.Fatal(err)
	}
	var conflicting *ConflictError
	_, err := s.UpdateServerGroup("canary", func(sg *ServerGroup) error {
		sg.Protocol = ProtocolHTTP
		sg.HealthCheck.SetProtocolDefaults(ProtocolHTTP)
		return nil
	})
	if !errors.As(err, &conflicting) || !strings.Contains(err.Error(), "rule canary-split would no longer fit after this change to server group canary") {
		t.Fatalf("turning a rule's gRPC group to HTTP: %v", err)
	}
	if sg, _ := s.ServerGroup("canary"); sg.Protocol != ProtocolGRPC {
		t.Fatal("the refused change was kept")
	}
}

// withCondition gives a rule the one condition c.
func withCondition(c RuleCondition) func(r *Rule) {
	return func(r *Rule) { r.Conditions = []RuleCondition{c} }
}

func TestRuleValidation(t *testing.T) {
	many := func(n int, value func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = value(i)
		}
		return out
	}
	grpcStatus := func(code int) *FixedResponse { return &FixedResponse{GRPCStatus: &code} }
	tests := []struct {
		name   string
		change func(r *Rule)
		http   bool   // on the HTTP listener
		field  string // the InvalidError field, or "" for a conflict
		want   string
	}{
		{"priority 0", func(r *Rule) { r.Priority = 0 }, false, "priority", "must be 1-10000"},
		{"priority 10001", func(r *Rule) { r.Priority = 10001 }, false, "priority", "must be 1-10000"},
		{"priority taken", func(r *Rule) { r.Priority = 20 }, false, "priority", "rule canary-split of listener lsn-"},
		{"name taken", func(r *Rule) { r.Name = "canary-split" }, false, "", `a rule named "canary-split" already exists`},
		{"name like an ID", func(r *Rule) { r.Name = "rule-x" }, false, "name", `must not start with "rule-"`},
		{"no condition", func(r *Rule) { r.Conditions = nil }, false, "conditions", "at least one condition"},
		{"11 conditions", func(r *Rule) {
			r.Conditions = make([]RuleCondition, 11)
			for i := range r.Conditions {
				r.Conditions[i] = RuleCondition{Type: CondPath, Values: []string{"/p" + strconv.Itoa(i)}}
			}
		}, false, "conditions", "at most 10 conditions"},
		{"21 values", func(r *Rule) { r.Conditions[0].Values = many(21, func(i int) string { return "/p" + strconv.Itoa(i) }) },
			false, "conditions.Path", "a Path condition has at most 20 values"},
		{"6 source addresses", withCondition(RuleCondition{Type: CondSourceIP, Values: many(6, func(i int) string { return "10.0.0." + strconv.Itoa(i) })}), false, "conditions.SourceIp", "a SourceIp condition has at most 5 values"},
		{"zoned source address", withCondition(RuleCondition{Type: CondSourceIP, Values: []string{"fe80::1%eth0"}}), false, "conditions.SourceIp", "an IP address or a CIDR range"},
		{"no values", func(r *Rule) { r.Conditions[0].Values = nil }, false, "conditions.Path", "at least one value"},
		{"unknown type", withCondition(RuleCondition{Type: "Colour", Key: "x", Values: []string{"red"}}), false, "conditions", "unknown condition type: must be one of Host, Path"},
		{"key on a host condition", withCondition(RuleCondition{Type: CondHost, Key: "x", Values: []string{"a.example.test"}}), false, "conditions.Host", "a Host condition takes no key"},
		{"host header", withCondition(RuleCondition{Type: CondHeader, Key: "Host", Values: []string{"a"}}), false, "conditions.Header", "use a host or cookie condition for the host header"},
		{"host without a dot", withCondition(RuleCondition{Type: CondHost, Values: []string{"localhost"}}), false, "conditions.Host", "with at least one '.'"},
		{"host with a digit in its last label", withCondition(RuleCondition{Type: CondHost, Values: []string{"a.b1"}}), false, "conditions.Host", "a last label of letters or wildcards"},
		{"path without a slash", func(r *Rule) { r.Conditions[0].Values = []string{"pkg.Orders/*"} }, false, "conditions.Path", "starting with '/'"},
		{"path too long", func(r *Rule) { r.Conditions[0].Values = []string{"/" + strings.Repeat("a", 128)} }, false, "conditions.Path", "1-128 characters"},
		{"header value with a tab", withCondition(RuleCondition{Type: CondHeader, Key: "x-a", Values: []string{"a\tb"}}), false, "conditions.Header", "printable ASCII"},
		{"query key with a space", withCondition(RuleCondition{Type: CondQueryString, Key: "a b", Values: []string{"1"}}), false, "conditions.QueryString", "a query parameter name is"},
		{"cookie value with a semicolon", withCondition(RuleCondition{Type: CondCookie, Key: "s", Values: []string{"a;b"}}), false, "conditions.Cookie", "a cookie value is"},
		{"method", withCondition(RuleCondition{Type: CondMethod, Values: []string{"get"}}), false, "conditions.Method", "a method is one of"},
		{"forward and fixed response", func(r *Rule) { r.FixedResponse = grpcStatus(14) }, false, "forward", "not both"},
		{"no final action", func(r *Rule) { r.Forward = nil }, false, "forward", "needs a final action"},
		{"6 groups", func(r *Rule) {
			r.Forward = make([]ForwardTarget, 6)
			for i := range r.Forward {
				r.Forward[i] = ForwardTarget{ServerGroupID: "stable", Weight: 1}
			}
		}, false, "forward", "at most 5 server groups"},
		{"a group twice", func(r *Rule) { r.Forward[1].ServerGroupID = "stable" }, false, "forward", "listed twice"},
		{"weight 101", func(r *Rule) { r.Forward[0].Weight = 101 }, false, "forward.weight", "the weight of server group stable must be 0-100"},
		{"weight -1", func(r *Rule) { r.Forward[1].Weight = -1 }, false, "forward.weight", "must be 0-100"},
		{"weights add up to 0", func(r *Rule) { r.Forward[0].Weight, r.Forward[1].Weight = 0, 0 }, false, "forward.weight", "add up to 0"},
		{"HTTP group on a gRPC listener", func(r *Rule) { r.Forward = []ForwardTarget{{ServerGroupID: "web", Weight: 100}} },
			false, "forward", "server group web is HTTP, and this listener carries gRPC"},
		{"gRPC group on an HTTP listener", func(r *Rule) {}, true, "forward", "server group stable is gRPC, and this listener carries HTTP"},
		{"HTTP code on a gRPC listener", func(r *Rule) {
			r.Forward, r.FixedResponse = nil, &FixedResponse{HTTPCode: 404, ContentType: "text/plain"}
		},
			false, "fixedResponse", "this listener carries gRPC"},
		{"gRPC status on an HTTP listener", func(r *Rule) { r.Forward, r.FixedResponse = nil, grpcStatus(14) }, true, "fixedResponse", "this listener carries HTTP"},
		{"gRPC status 17", func(r *Rule) { r.Forward, r.FixedResponse = nil, grpcStatus(17) }, false, "fixedResponse.grpcStatus", "0-16"},
		{"gRPC message with a newline", func(r *Rule) {
			r.Forward, r.FixedResponse = nil, grpcStatus(14)
			r.FixedResponse.Message = "a\nb"
		}, false, "fixedResponse.message", "printable ASCII"},
		{"HTTP 302", func(r *Rule) {
			r.Forward, r.FixedResponse = nil, &FixedResponse{HTTPCode: 302, ContentType: "text/plain"}
		},
			true, "fixedResponse.httpCode", "2xx, 4xx or 5xx"},
		{"content type", func(r *Rule) {
			r.Forward, r.FixedResponse = nil, &FixedResponse{HTTPCode: 200, ContentType: "image/png"}
		},
			true, "fixedResponse.contentType", "must be one of text/plain"},
		{"body too long", func(r *Rule) {
			r.Forward, r.FixedResponse = nil, &FixedResponse{HTTPCode: 200, ContentType: "text/plain", Body: strings.Repeat("a", 1025)}
		}, true, "fixedResponse.body", "at most 1024"},
		{"header changes with a fixed response", func(r *Rule) {
			r.Forward, r.FixedResponse, r.RemoveHeaders = nil, grpcStatus(14), []string{"x-debug"}
		}, false, "removeHeaders", "header changes apply to forwarded calls"},
		{"insert grpc-timeout", func(r *Rule) { r.InsertHeaders = []HeaderField{{Key: "grpc-timeout", Value: "1S"}} }, false, "insertHeaders", "grpc-*"},
		{"remove x-forwarded-for", func(r *Rule) { r.RemoveHeaders = []string{"x-forwarded-for"} }, false, "removeHeaders", "x-forwarded-*"},
		{"remove :path", func(r *Rule) { r.RemoveHeaders = []string{":path"} }, false, "removeHeaders", "pseudo-headers"},
		{"insert in uppercase", func(r *Rule) { r.InsertHeaders = []HeaderField{{Key: "X-A", Value: "1"}} }, false, "insertHeaders", "lowercase"},
		{"insert an empty value", func(r *Rule) { r.InsertHeaders = []HeaderField{{Key: "x-a"}} }, false, "insertHeaders", "1-128 printable"},
		{"insert twice", func(r *Rule) { r.InsertHeaders = []HeaderField{{Key: "x-a", Value: "1"}, {Key: "x-a", Value: "2"}} }, false, "insertHeaders", "at most once"},
		{"insert and remove", func(r *Rule) {
			r.InsertHeaders, r.RemoveHeaders = []HeaderField{{Key: "x-a", Value: "1"}}, []string{"x-a"}
		}, false, "removeHeaders", "already inserts or removes"},
		{"6 actions", func(r *Rule) {
			r.InsertHeaders = []HeaderField{{Key: "x-a", Value: "1"}, {Key: "x-b", Value: "1"}}
			r.RemoveHeaders = []string{"x-c", "x-d"}
			r.TrafficLimit = &TrafficLimit{QPS: 10}
		}, false, "actions", "at most 5 actions"},
		{"qps 0", func(r *Rule) { r.TrafficLimit = &TrafficLimit{} }, false, "trafficLimit.qps", "qps must be 1-1000000"},
		{"qps 1000001", func(r *Rule) { r.TrafficLimit = &TrafficLimit{QPS: 1000001} }, false, "trafficLimit.qps", "qps must be 1-1000000"},
		{"per IP as much as qps", func(r *Rule) { r.TrafficLimit = &TrafficLimit{QPS: 10, PerIPQPS: 10} }, false, "trafficLimit.perIpQps", "less than qps (10)"},
		{"per IP below 0", func(r *Rule) { r.TrafficLimit = &TrafficLimit{QPS: 10, PerIPQPS: -1} }, false, "trafficLimit.perIpQps", "1 up to less than qps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, grpcL, httpL := ruleScenario(t)
			split := serviceRule(grpcL, 20)
			split.Name = "canary-split"
			if _, err := s.CreateRule(split); err != nil {
				t.Fatal(err)
			}
			r := serviceRule(grpcL, 10)
			if tt.http {
				r.ListenerID = httpL
			}
			tt.change(&r)
			_, err := s.CreateRule(r)
			if err == nil {
				t.Fatal("the rule was accepted")
			}
			wantRefusal(t, err, tt.field, tt.want)
			if len(s.Rules) != 1 {
				t.Fatalf("a refused rule was added: %+v", s.Rules)
			}
		})
	}
}

func TestRuleAccepted(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *Rule)
		http   bool
	}{
		{"one group with weight 0 beside one above", func(r *Rule) { r.Forward[1].Weight = 0 }, false},
		{"wildcard host", withCondition(RuleCondition{Type: CondHost, Values: []string{"*.example.test", "api?.example.test"}}), false},
		{"every condition type", func(r *Rule) {
			r.Conditions = append(r.Conditions,
				RuleCondition{Type: CondHost, Values: []string{"grpc.example.test"}},
				RuleCondition{Type: CondHeader, Key: "x-canary", Values: []string{"1", "yes please"}},
				RuleCondition{Type: CondMethod, Values: []string{"POST"}},
				RuleCondition{Type: CondQueryString, Key: "lang", Values: []string{"en-*"}},
				RuleCondition{Type: CondCookie, Key: "session", Values: []string{"a?c"}},
				RuleCondition{Type: CondSourceIP, Values: []string{"10.0.0.0/8", "::1", "::ffff:192.0.2.1"}})
		}, false},
		{"five actions", func(r *Rule) {
			r.InsertHeaders = []HeaderField{{Key: "x-a", Value: "1"}, {Key: "x-b", Value: "1"}}
			r.RemoveHeaders = []string{"x-c"}
			r.TrafficLimit = &TrafficLimit{QPS: 1000000, PerIPQPS: 999999}
		}, false},
		{"gRPC status by the listener's group", func(r *Rule) {
			code := 0
			r.Forward, r.FixedResponse = nil, &FixedResponse{GRPCStatus: &code, Message: "ok, done"}
		}, false},
		{"HTTP answer", func(r *Rule) {
			r.Forward, r.FixedResponse = nil, &FixedResponse{HTTPCode: 503, ContentType: "application/json", Body: "{\n\t\"down\": true\n}"}
		}, true},
		{"HTTP group on an HTTP listener", func(r *Rule) { r.Forward = []ForwardTarget{{ServerGroupID: "web", Weight: 1}} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, grpcL, httpL := ruleScenario(t)
			r := serviceRule(grpcL, 10)
			if tt.http {
				r.ListenerID = httpL
			}
			tt.change(&r)
			if _, err := s.CreateRule(r); err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseMatch(t *testing.T) {
	tests := []struct {
		in   string
		want RuleCondition
		err  string
	}{
		{in: "grpc-service=pkg.Billing", want: RuleCondition{Type: CondPath, Values: []string{"/pkg.Billing/*"}}},
		{in: "grpc-service=.pkg.Billing, pkg.Orders", want: RuleCondition{Type: CondPath, Values: []string{"/pkg.Billing/*", "/pkg.Orders/*"}}},
		{in: "grpc-method=pkg.Billing/Charge", want: RuleCondition{Type: CondPath, Values: []string{"/pkg.Billing/Charge"}}},
		{in: "grpc-method=*/Charge", want: RuleCondition{Type: CondPath, Values: []string{"/*/Charge"}}},
		{in: "path=/a/*,/b?", want: RuleCondition{Type: CondPath, Values: []string{"/a/*", "/b?"}}},
		{in: "HOST=API.Example.test", want: RuleCondition{Type: CondHost, Values: []string{"api.example.test"}}},
		{in: "header:X-Canary=1,true", want: RuleCondition{Type: CondHeader, Key: "x-canary", Values: []string{"1", "true"}}},
		{in: "method=get, post", want: RuleCondition{Type: CondMethod, Values: []string{"GET", "POST"}}},
		{in: "query:lang=en", want: RuleCondition{Type: CondQueryString, Key: "lang", Values: []string{"en"}}},
		{in: "cookie:session=a=b", want: RuleCondition{Type: CondCookie, Key: "session", Values: []string{"a=b"}}},
		{in: "source-ip=10.0.0.0/8,::1", want: RuleCondition{Type: CondSourceIP, Values: []string{"10.0.0.0/8", "::1"}}},
		{in: "path", err: `"path" is not TYPE[:KEY]=VALUE[,VALUE...]`},
		{in: "path=", err: `"path=" is not TYPE[:KEY]=VALUE[,VALUE...]`},
		{in: "colour=red", err: `unknown condition type "colour"`},
		{in: "header=x", err: "header needs a key: header:KEY=VALUE"},
		{in: "cookie:=x", err: "cookie needs a key"},
		{in: "host:x=a.example.test", err: "host takes no key"},
		{in: "grpc-service:x=pkg.A", err: "grpc-service takes no key"},
		{in: "grpc-service=1pkg", err: `grpc-service "1pkg" is not a service name`},
		{in: "grpc-service=pkg.*", err: `grpc-service "pkg.*" is not a service name`},
		{in: "grpc-method=pkg.Billing", err: `grpc-method "pkg.Billing" is not SERVICE/METHOD or */METHOD`},
		{in: "grpc-method=pkg.Billing/Charge.V2", err: `grpc-method "pkg.Billing/Charge.V2" is not SERVICE/METHOD`},
		{in: "grpc-method=*/*", err: `grpc-method "*/*" is not SERVICE/METHOD`},
		{in: "host=api.example.\u212atest", err: "has '\u212a', which is not ASCII"},
		{in: "method=po\u017ft", err: "has '\u017f', which is not ASCII"},
		{in: "source-ip=\u00a010.0.0.1", err: `has '\u00a0', which is not ASCII`},
	}
	for _, tt := range tests {
		got, err := ParseMatch(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseMatch(%q) error = %v, want it to contain %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseMatch(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestFormatMatch(t *testing.T) {
	for c, want := range map[*RuleCondition]string{
		{Type: CondPath, Values: []string{"/pkg.A/*", "/pkg.B/*"}}:         "path=/pkg.A/*,/pkg.B/*",
		{Type: CondHeader, Key: "x-canary", Values: []string{"1"}}:         "header:x-canary=1",
		{Type: CondQueryString, Key: "lang", Values: []string{"en"}}:       "query:lang=en",
		{Type: CondSourceIP, Values: []string{"10.0.0.0/8"}}:               "source-ip=10.0.0.0/8",
		{Type: "Colour", Values: []string{"red"}}:                          "Colour=red",
		{Type: CondCookie, Key: "session", Values: []string{"a=b", "c=d"}}: "cookie:session=a=b,c=d",
	} {
		if got := FormatMatch(*c); got != want {
			t.Errorf("FormatMatch(%+v) = %q, want %q", *c, got, want)
		}
	}
}

func TestParseForward(t *testing.T) {
	tests := []struct {
		in   string
		want []ForwardTarget
		err  string
	}{
		{in: "stable", want: []ForwardTarget{{"stable", 100}}},
		{in: "stable=0", want: []ForwardTarget{{"stable", 0}}},
		{in: " stable = 90 , canary=10", want: []ForwardTarget{{"stable", 90}, {"canary", 10}}},
		{in: "stable=101,canary=-1", want: []ForwardTarget{{"stable", 101}, {"canary", -1}}},
		{in: "", err: "name a server group"},
		{in: "=5", err: "name a server group"},
		{in: "stable=90,", err: "name a server group"},
		{in: "stable,canary", err: "with several server groups give each a weight"},
		{in: "stable=90,canary", err: "with several server groups give each a weight"},
		{in: "stable=x", err: `weight "x" of stable is not a whole number`},
		{in: "stable=", err: `weight "" of stable is not a whole number`},
	}
	for _, tt := range tests {
		got, err := ParseForward(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseForward(%q) error = %v, want it to contain %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseForward(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseFixedResponse(t *testing.T) {
	code := func(n int) *int { return &n }
	tests := []struct {
		in   string
		want FixedResponse
		err  string
	}{
		{in: "grpc-status=14", want: FixedResponse{GRPCStatus: code(14)}},
		{in: "grpc-status=0", want: FixedResponse{GRPCStatus: code(0)}},
		{in: "grpc-status=unavailable,message=down, for now", want: FixedResponse{GRPCStatus: code(14), Message: "down, for now"}},
		{in: "grpc-status=DeadlineExceeded", want: FixedResponse{GRPCStatus: code(4)}},
		{in: "grpc-status=permission-denied", want: FixedResponse{GRPCStatus: code(7)}},
		{in: "code=404", want: FixedResponse{HTTPCode: 404, ContentType: "text/plain"}},
		{in: `code=503,content-type=application/json,body={"a":1,"b":2}`, want: FixedResponse{HTTPCode: 503, ContentType: "application/json", Body: `{"a":1,"b":2}`}},
		{in: "", err: `"": give grpc-status=CODE for a gRPC listener or code=NNN for an HTTP one`},
		{in: "message=hi", err: "give grpc-status=CODE"},
		{in: "grpc-status", err: `"grpc-status" is not key=value`},
		{in: "grpc-status=soon", err: `grpc-status "soon" is neither a number 0-16 nor a code name`},
		{in: "code=abc", err: `code "abc" is not an HTTP status`},
		{in: "colour=red", err: `unknown key "colour"`},
	}
	for _, tt := range tests {
		got, err := ParseFixedResponse(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseFixedResponse(%q) error = %v, want it to contain %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseFixedResponse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseTrafficLimitAndUCHKey(t *testing.T) {
	if tl, err := ParseTrafficLimit("qps=100, per-ip=10"); err != nil || tl != (TrafficLimit{QPS: 100, PerIPQPS: 10}) {
		t.Errorf("ParseTrafficLimit = %+v, %v", tl, err)
	}
	for in, want := range map[string]string{"per-ip=10": "give qps=N", "qps=x": "is not qps=N", "rate=1": `unknown key "rate"`} {
		if _, err := ParseTrafficLimit(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTrafficLimit(%q) error = %v, want it to contain %q", in, err, want)
		}
	}
	if k, err := ParseUCHKey("Header:X-User-Id"); err != nil || k != (UCHConfig{Type: UCHHeader, Key: "x-user-id"}) || FormatUCHKey(&k) != "header:x-user-id" {
		t.Errorf("ParseUCHKey = %+v, %v", k, err)
	}
	if k, err := ParseUCHKey("query:user"); err != nil || FormatUCHKey(&k) != "query:user" {
		t.Errorf("ParseUCHKey = %+v, %v", k, err)
	}
	for _, in := range []string{"cookie:session", "header:\u212a"} {
		if _, err := ParseUCHKey(in); err == nil {
			t.Errorf("ParseUCHKey(%q) succeeded", in)
		}
	}
	if _, err := ParseInsertHeader("x-\u212a=1"); err == nil {
		t.Error("ParseInsertHeader accepted a Kelvin sign")
	}
}

func FuzzParseMatch(f *testing.F) {
	for _, seed := range []string{
		"grpc-service=pkg.Billing", "grpc-method=*/Charge", "grpc-method=pkg.A/B,pkg.C/D", "path=/a/*,/b?", "host=*.example.test",
		"header:X-Canary=1,true", "method=get, post", "query:lang=en", "cookie:session=a=b", "source-ip=10.0.0.0/8,::1",
		"source-ip=::FFFF:10.0.0.1", "header:a:b=c", "query:a:b=c", "path=", "=", ":=", "host:=x", "grpc-service=.x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseMatch(in)
		if err != nil {
			return
		}
		if len(c.Values) == 0 || !slices.Contains(ConditionTypes, c.Type) {
			t.Fatalf("%q: parsed as %+v", in, c)
		}
		if c.Validate() != nil {
			return
		}
		// Every valid condition is ASCII: other input must not be folded or trimmed into one.
		for i := 0; i < len(in); i++ {
			if in[i] >= utf8.RuneSelf {
				t.Fatalf("%q: the input is not ASCII, and it parsed as the valid %+v", in, c)
			}
		}
		// What --match accepts and the model keeps must read back as the same condition.
		text := FormatMatch(c)
		again, err := ParseMatch(text)
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("%q: parsed as %+v, written %q, read back as %+v, %v", in, c, text, again, err)
		}
	})
}

func FuzzParseForward(f *testing.F) {
	for _, seed := range []string{"stable", "stable=90,canary=10", " a = 1 , b=2", "a=0", "a,b", "a=", "=1", ",", "a=1,", "a=+5", "a=-1", "a=99999999999999999999"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		targets, err := ParseForward(in)
		if err != nil {
			return
		}
		items := strings.Split(in, ",")
		if len(targets) != len(items) {
			t.Fatalf("%q: %d targets from %d items", in, len(targets), len(items))
		}
		for i, target := range targets {
			name, weight, hasWeight := strings.Cut(items[i], "=")
			if target.ServerGroupID == "" || target.ServerGroupID != strings.TrimSpace(name) {
				t.Fatalf("%q: target %d names group %q", in, i, target.ServerGroupID)
			}
			// A weight is the one written, or 100 for a group alone.
			want, err := strconv.Atoi(strings.TrimSpace(weight))
			if !hasWeight {
				want, err = MaxForwardWeight, nil
				if len(items) > 1 {
					t.Fatalf("%q: group %q of several has no weight", in, name)
				}
			}
			if err != nil || target.Weight != want {
				t.Fatalf("%q: target %d has weight %d, want %d (%v)", in, i, target.Weight, want, err)
			}
		}
	})
}
