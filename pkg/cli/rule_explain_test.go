package cli

import (
	"strings"
	"testing"

	"github.com/albctl/albctl/pkg/state"
)

// runExplain runs 'albctl rule explain' under a root of its own, with the global flags it
// uses: root.go registers the command under 'albctl rule'.
func runExplain(t *testing.T, statePath string, args ...string) result {
	t.Helper()
	return run(t, statePath, append([]string{"rule", "explain"}, args...)...)
}

// explanation is rule explain's JSON, as a script reads it.
type explanation struct {
	Call struct {
		Method, Host, Path, Source string
		Header                     map[string][]string
	}
	Rules []struct {
		Name         string
		Priority     int
		Matched      bool
		Failed, Seen string
	}
	Action struct {
		Default       bool
		Rule          string
		Priority      int
		Conditions    []string
		FixedResponse *struct{ GRPCStatus *int }
		Groups        []struct {
			Name, Scheduler   string
			Weight            int
			Servers           []struct{ Addr, Health string }
			LikelyServer, Why string
		}
	}
	Health string
}

func TestRuleExplain(t *testing.T) {
	path := newState(t)
	mustRun(t, path, "lb", "create", "--name", "demo")
	mustRun(t, path, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC")
	mustRun(t, path, "servergroup", "add-servers", "grpc-backends", "--server", "127.0.0.1:50051", "--server", "127.0.0.1:50052,weight=50")
	mustRun(t, path, "servergroup", "create", "--name", "canary", "--protocol", "gRPC")
	mustRun(t, path, "servergroup", "add-servers", "canary", "--server", "127.0.0.1:50061")
	mustRun(t, path, "servergroup", "create", "--name", "sticky", "--protocol", "gRPC", "--scheduler", "sch")
	mustRun(t, path, "servergroup", "add-servers", "sticky", "--server", "127.0.0.1:50071", "--server", "127.0.0.1:50072")
	mustRun(t, path, "cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test")
	l := decode[struct{ ID string }](t, mustRun(t, path, "listener", "create", "--lb", "demo", "--port", "8443", "--cert", "grpc-example", "--server-group", "grpc-backends", "-o", "json"))
	lb := decode[struct{ DNSName string }](t, mustRun(t, path, "lb", "get", "demo", "-o", "json"))
	retired := 7
	// Added out of order: explain tries them by priority.
	addRule(t, path, state.Rule{Name: "internal", ListenerID: l.ID, Priority: 30,
		Conditions: []state.RuleCondition{{Type: state.CondSourceIP, Values: []string{"10.0.0.0/8"}}},
		Forward:    []state.ForwardTarget{{ServerGroupID: "sticky", Weight: 100}}})
	addRule(t, path, state.Rule{Name: "canary-pin", ListenerID: l.ID, Priority: 10,
		Conditions: []state.RuleCondition{{Type: state.CondHeader, Key: "x-canary", Values: []string{"1"}}},
		Forward:    []state.ForwardTarget{{ServerGroupID: "canary", Weight: 100}}})
	addRule(t, path, state.Rule{Name: "retired", ListenerID: l.ID, Priority: 5,
		Conditions:    []state.RuleCondition{{Type: state.CondPath, Values: []string{"/albctl.retired.v1.Old/*"}}},
		FixedResponse: &state.FixedResponse{GRPCStatus: &retired, Message: "retired"}})
	echoPath := "/albctl.echo.v1.Echo/UnaryEcho"

	r := runExplain(t, path, "--listener", l.ID, "--path", echoPath)
	for _, want := range []string{
		"Call:          POST /albctl.echo.v1.Echo/UnaryEcho, host " + lb.DNSName + ", from 127.0.0.1\n",
		"Priority 5:    retired: no match: wants path=/albctl.retired.v1.Old/*, the call has path \"/albctl.echo.v1.Echo/UnaryEcho\"\n",
		"Priority 10:   canary-pin: no match: wants header:x-canary=1, the call has header x-canary (missing)\n",
		"Priority 30:   internal: no match: wants source-ip=10.0.0.0/8, the call has source 127.0.0.1\n",
		"Action:        default: no rule matched, the listener's server group grpc-backends\n",
		"Server group:  grpc-backends: gRPC, wrr\n               127.0.0.1:50051 weight 100\n               127.0.0.1:50052 weight 50\n",
		"Likely server: 127.0.0.1:50051: wrr shares calls by weight, and it has the largest weight (100 of 150)\n",
		"Health:        not known: no albctl serve is running for this state file",
	} {
		if r.code != 0 || !strings.Contains(r.out, want) {
			t.Fatalf("explain without a matching rule: exit %d, want %q in\n%s%s", r.code, want, r.out, r.err)
		}
	}

	e := decode[explanation](t, runExplain(t, path, "--listener", l.ID, "--path", echoPath, "-H", "X-Canary: 1", "-o", "json").out)
	if len(e.Rules) != 2 || e.Rules[0].Name != "retired" || e.Rules[0].Matched || e.Rules[0].Failed != "path=/albctl.retired.v1.Old/*" ||
		e.Rules[1].Name != "canary-pin" || !e.Rules[1].Matched || e.Call.Header["x-canary"][0] != "1" ||
		e.Action.Default || e.Action.Rule != "canary-pin" || e.Action.Priority != 10 || e.Action.Conditions[0] != "header:x-canary=1" ||
		len(e.Action.Groups) != 1 || e.Action.Groups[0].Name != "canary" || e.Action.Groups[0].LikelyServer != "127.0.0.1:50061" ||
		e.Action.Groups[0].Why != "the only server that takes calls" {
		t.Fatalf("explain -H x-canary:1 -o json: %+v", e)
	}

	e = decode[explanation](t, runExplain(t, path, "--listener", l.ID, "--path", "/albctl.retired.v1.Old/Call", "-o", "json").out)
	if len(e.Rules) != 1 || !e.Rules[0].Matched || e.Action.FixedResponse == nil || *e.Action.FixedResponse.GRPCStatus != 7 || len(e.Action.Groups) != 0 {
		t.Fatalf("explain of a retired method: %+v", e)
	}
	r = runExplain(t, path, "--listener", l.ID, "--path", "/albctl.retired.v1.Old/Call")
	if !strings.Contains(r.out, " rule retired (priority 5) answers grpc-status 7 (PERMISSION_DENIED) \"retired\" at the load balancer\n") || strings.Contains(r.out, "Health") {
		t.Fatalf("explain of a retired method:\n%s", r.out)
	}

	e = decode[explanation](t, runExplain(t, path, "--listener", l.ID, "--path", echoPath, "--source-ip", "10.1.2.3", "-o", "json").out)
	g := e.Action.Groups
	if e.Action.Rule != "internal" || len(g) != 1 || g[0].Scheduler != "sch" || g[0].Why != "sch hashes the source address 10.1.2.3 to it" ||
		(g[0].LikelyServer != "127.0.0.1:50071" && g[0].LikelyServer != "127.0.0.1:50072") {
		t.Fatalf("explain of a call from 10.1.2.3: %+v", e)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--path", echoPath}, 2, `required flag(s) "listener" not set`},
		{[]string{"--listener", l.ID}, 2, `required flag(s) "path" not set`},
		{[]string{"--listener", l.ID, "--path", "albctl.echo.v1.Echo/UnaryEcho"}, 2, `invalid value "albctl.echo.v1.Echo/UnaryEcho" for --path: a path starts with '/'`},
		{[]string{"--listener", l.ID, "--path", echoPath, "--source-ip", "10.0.0.0/8"}, 2, `invalid value "10.0.0.0/8" for --source-ip: an IP address`},
		{[]string{"--listener", l.ID, "--path", echoPath, "--http-method", "PO ST"}, 2, `invalid value "PO ST" for --http-method`},
		{[]string{"--listener", l.ID, "--path", echoPath, "-H", "x canary:1"}, 2, `invalid value "x canary:1" for -H`},
		{[]string{"--listener", "lsn-nope", "--path", echoPath}, 1, `listener "lsn-nope" not found`},
	} {
		r := runExplain(t, path, tc.args...)
		if r.code != tc.code || !strings.Contains(r.err, tc.want) {
			t.Fatalf("explain %s: exit %d, want %d with %q\n%s", strings.Join(tc.args, " "), r.code, tc.code, tc.want, r.err)
		}
	}
}
