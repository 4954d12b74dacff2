package cli

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/state"
	"google.golang.org/grpc/codes"
)

// verifiedDomain adds example.test with its ownership TXT, verifies it, and points
// grpc.example.test at the load balancer, as the tutorial does.
func verifiedDomain(t *testing.T, path string) {
	t.Helper()
	mustRun(t, path, "dns", "domain", "add", "example.test")
	d := decode[struct {
		Verification struct{ Host, Value string } `json:"verification"`
	}](t, mustRun(t, path, "dns", "domain", "get", "example.test", "-o", "json"))
	mustRun(t, path, "dns", "add", "--domain", "example.test", "--type", "TXT", "--host", d.Verification.Host, "--value", d.Verification.Value)
	mustRun(t, path, "dns", "domain", "verify", "example.test")
	lb := decode[struct{ DNSName string }](t, mustRun(t, path, "lb", "get", "demo", "-o", "json"))
	mustRun(t, path, "dns", "add", "--domain", "example.test", "--type", "CNAME", "--host", "grpc", "--value", lb.DNSName)
}

func TestCheck(t *testing.T) {
	path, port := serveScenario(t, 0)
	verifiedDomain(t, path)
	target := "grpc.example.test:" + itoa(port)

	// Without serve, the walk gets as far as the servers' health and says what is missing.
	r := run(t, path, "check", target)
	if r.code != 1 || !strings.Contains(r.out, "FAIL\tservers\tno albctl serve is running for this state file") {
		t.Fatalf("check without serve: %+v", r)
	}

	r = run(t, path, "probe", "-insecure", target, "list")
	if r.code != 1 || !strings.Contains(r.err, "is on port "+itoa(port)+", but no albctl serve runs for") {
		t.Fatalf("probe without serve must name the listener and say serve is not running: %+v", r)
	}

	cmd, stderr := startServeProcess(t, path)
	// The name exists only in albctl's records; -cacert verifies the listener without -insecure.
	caFile := strings.TrimSpace(mustRun(t, path, "cert", "ca"))
	r = run(t, path, "probe", "-cacert", caFile, "-d", `{"message": "hi"}`, target, "albctl.echo.v1.Echo/UnaryEcho")
	if r.code != 0 || r.out != "{\n  \"message\": \"hi\",\n  \"server\": \"b1\"\n}\n" {
		t.Fatalf("probe -cacert by name through serve: %+v", r)
	}
	r = run(t, path, "probe", target, "list")
	if r.code != 1 || !strings.Contains(r.err, "certificate signed by unknown authority") || !strings.Contains(r.err, "hint: if the listener's certificate is albctl's, use -cacert "+caFile) {
		t.Fatalf("probe without -cacert: %+v", r)
	}
	r = run(t, path, "probe", "-insecure", "grpc.example.test:1", "list")
	if r.code != 1 || !strings.Contains(r.err, "hint: no albctl listener is on port 1") {
		t.Fatalf("probe of a port without a listener: %+v", r)
	}
	for _, args := range [][]string{{"check", target}, {"check", target, "albctl.echo.v1.Echo/UnaryEcho"}} {
		r = run(t, path, args...)
		steps := strings.Count(r.out, "PASS\t")
		if r.code != 0 || steps != 8 {
			t.Fatalf("albctl %s: exit %d, %d steps passed\n%s%s\nserve:\n%s", strings.Join(args, " "), r.code, steps, r.out, r.err, stderr.String())
		}
	}
	if !strings.Contains(run(t, path, "check", target).out, "PASS\tcall\t/albctl.healthcheck.v1.Unimplemented/Check → grpc-status 12 (UNIMPLEMENTED)") {
		t.Fatal("the default call does not use the health-check path")
	}

	r = run(t, path, "check", target, "albctl.echo.v1.Echo/Nope")
	if r.code != 1 || !strings.Contains(r.out, "FAIL\tcall\t/albctl.echo.v1.Echo/Nope through 127.0.0.1:"+itoa(port)+": grpc-status 12 (UNIMPLEMENTED)") {
		t.Fatalf("check of an unknown method: %+v", r)
	}
	r = run(t, path, "check", "grpc.example.test:1")
	if r.code != 1 || !strings.Contains(r.out, "FAIL\tlistener\tload balancer demo has no listener on port 1") || strings.Contains(r.out, "certificate") {
		t.Fatalf("check of a port without a listener must stop at the listener: %+v", r)
	}
	r = run(t, path, "check", "nowhere.test:443")
	if r.code != 1 || !strings.Contains(r.out, "FAIL\tdns\tnowhere.test is not in albctl's DNS zones") {
		t.Fatalf("check of an unknown name: %+v", r)
	}
	r = run(t, path, "check", "grpc.example.test")
	if r.code != 2 || !strings.Contains(r.err, `invalid DOMAIN:PORT "grpc.example.test"`) {
		t.Fatalf("check without a port: %+v", r)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	exitCodeOf(t, cmd, 10*time.Second)
}

func TestServerGroupHealth(t *testing.T) {
	path, _ := serveScenario(t, 0)
	r := run(t, path, "servergroup", "health", "grpc-backends")
	if r.code != 1 || !strings.Contains(r.err, "Error: no albctl serve is running for this state file ("+path+"): start one with 'albctl serve'") {
		t.Fatalf("health without serve: %+v", r)
	}
	r = run(t, path, "servergroup", "health", "grpc-backends", "--admin", "127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.err, "no albctl serve answers at --admin 127.0.0.1:1") {
		t.Fatalf("health with a dead --admin: %+v", r)
	}
	cmd, _ := startServeProcess(t, path)
	deadline := time.Now().Add(10 * time.Second)
	for {
		gs := decode[struct {
			Name    string `json:"name"`
			Servers []struct {
				State, Reason string
				Weight        int
			} `json:"servers"`
		}](t, mustRun(t, path, "servergroup", "health", "grpc-backends", "-o", "json"))
		if gs.Name == "grpc-backends" && len(gs.Servers) == 1 && gs.Servers[0].State == "healthy" && gs.Servers[0].Reason == "grpc-status 12 (UNIMPLEMENTED)" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never became healthy: %+v", gs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	exitCodeOf(t, cmd, 10*time.Second)
}

// addRule writes a rule into the state file, as 'albctl rule create' does.
func addRule(t *testing.T, path string, r state.Rule) {
	t.Helper()
	_, err := state.NewFileStore(path).Update(context.Background(), func(s *state.State) error {
		_, err := s.CreateRule(r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rulesScenario is a listener with three rules: a fixed answer for a retired service, a header
// that sends calls to the canary group, and one that sends them to a group whose servers are
// all down. Of the listener's own three servers one is down, and the two others fail every
// Echo call with DATA_LOSS, so a call that succeeds went where a rule sent it.
func rulesScenario(t *testing.T) (path, listenerID, canary string, port int) {
	t.Helper()
	_, b1 := testutil.StartEcho(t, echo.Options{Name: "b1", FailRate: 1, FailCode: codes.DataLoss})
	_, b2 := testutil.StartEcho(t, echo.Options{Name: "b2", FailRate: 1, FailCode: codes.DataLoss})
	_, canary = testutil.StartEcho(t, echo.Options{Name: "c1"})
	port = testutil.FreePort(t)
	path = newState(t)
	quick := []string{"--protocol", "gRPC", "--health-check-interval", "1", "--unhealthy-threshold", "2", "--healthy-threshold", "2"}
	mustRun(t, path, "lb", "create", "--name", "demo")
	mustRun(t, path, append([]string{"servergroup", "create", "--name", "grpc-backends"}, quick...)...)
	mustRun(t, path, "servergroup", "add-servers", "grpc-backends", "--server", b1, "--server", b2, "--server", testutil.ClosedAddr(t))
	mustRun(t, path, append([]string{"servergroup", "create", "--name", "canary"}, quick...)...)
	mustRun(t, path, "servergroup", "add-servers", "canary", "--server", canary)
	mustRun(t, path, append([]string{"servergroup", "create", "--name", "dead"}, quick...)...)
	mustRun(t, path, "servergroup", "add-servers", "dead", "--server", testutil.ClosedAddr(t), "--server", testutil.ClosedAddr(t))
	mustRun(t, path, "cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test")
	l := decode[struct{ ID string }](t, mustRun(t, path, "listener", "create", "--lb", "demo", "--port", itoa(port), "--cert", "grpc-example", "--server-group", "grpc-backends", "-o", "json"))
	retired := 7
	addRule(t, path, state.Rule{Name: "retired", ListenerID: l.ID, Priority: 5,
		Conditions:    []state.RuleCondition{{Type: state.CondPath, Values: []string{"/albctl.retired.v1.Old/*"}}},
		FixedResponse: &state.FixedResponse{GRPCStatus: &retired, Message: "retired"}})
	addRule(t, path, state.Rule{Name: "canary-pin", ListenerID: l.ID, Priority: 10,
		Conditions: []state.RuleCondition{{Type: state.CondHeader, Key: "x-canary", Values: []string{"1"}}},
		Forward:    []state.ForwardTarget{{ServerGroupID: "canary", Weight: 100}}})
	addRule(t, path, state.Rule{Name: "to-dead", ListenerID: l.ID, Priority: 20,
		Conditions: []state.RuleCondition{{Type: state.CondHeader, Key: "x-dead", Values: []string{"1"}}},
		Forward:    []state.ForwardTarget{{ServerGroupID: "dead", Weight: 100}}})
	return path, l.ID, canary, port
}

// waitForHealth waits until the group's servers that serve reports unhealthy number want.
func waitForHealth(t *testing.T, path, group string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		gs := decode[struct{ Servers []struct{ State string } }](t, mustRun(t, path, "servergroup", "health", group, "-o", "json"))
		unhealthy, healthy := 0, 0
		for _, s := range gs.Servers {
			switch s.State {
			case "unhealthy":
				unhealthy++
			case "healthy":
				healthy++
			}
		}
		if unhealthy == want && healthy == len(gs.Servers)-want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never had %d unhealthy servers: %+v", group, want, gs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestCheckRules(t *testing.T) {
	path, listenerID, canary, port := rulesScenario(t)
	verifiedDomain(t, path)
	target := "grpc.example.test:" + itoa(port)
	_, stderr := startServeProcess(t, path)
	waitForHealth(t, path, "grpc-backends", 1)
	waitForHealth(t, path, "canary", 0)
	waitForHealth(t, path, "dead", 2)
	const echoCall = "albctl.echo.v1.Echo/UnaryEcho"

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		want   []string
		passed int
	}{
		{"the header rule sends the call to the canary group", []string{echoCall, "-H", "x-canary: 1"}, 0, []string{
			"PASS\trule\trule canary-pin (priority 10): header:x-canary=1 → canary\n",
			"PASS\tserver group\tcanary: gRPC, wrr, 1 of 1 servers take calls\n",
			"PASS\tservers\t" + canary + " healthy\n",
			"PASS\tcall\t/albctl.echo.v1.Echo/UnaryEcho → grpc-status 0 (OK) in ",
		}, 8},
		{"without the header, the listener's group fails Echo calls on purpose", []string{echoCall}, 1, []string{
			"PASS\trule\tdefault: no rule matched (3 tried), the listener's server group grpc-backends\n",
			"FAIL\tcall\t/albctl.echo.v1.Echo/UnaryEcho through 127.0.0.1:" + itoa(port) + ": grpc-status 15 (DATA_LOSS)",
		}, 7},
		{"one server of three down passes with a warning", nil, 0, []string{
			"PASS\tserver group\tgrpc-backends: gRPC, wrr, 2 of 3 servers take calls\n",
			"; WARNING: 1 of 3 servers of grpc-backends unhealthy, the other 2 take the calls: 127.0.0.1:",
			"PASS\tcall\t/albctl.healthcheck.v1.Unimplemented/Check → grpc-status 12 (UNIMPLEMENTED)",
		}, 8},
		{"--strict fails on it", []string{"--strict"}, 1, []string{
			"FAIL\tservers\t1 of 3 servers of grpc-backends unhealthy (strict): 127.0.0.1:",
		}, 6},
		{"a fixed response is the status the call must get", []string{"albctl.retired.v1.Old/Call"}, 0, []string{
			"PASS\trule\trule retired (priority 5): path=/albctl.retired.v1.Old/* answers grpc-status 7 (PERMISSION_DENIED) at the load balancer\n",
			"PASS\tcall\t/albctl.retired.v1.Old/Call → grpc-status 7 (PERMISSION_DENIED) in ",
		}, 6},
		{"a group with every server down fails", []string{"-H", "x-dead:1"}, 1, []string{
			"PASS\tserver group\tdead: gRPC, wrr, 0 of 2 servers take calls\n",
			"FAIL\tservers\tno server of dead can take the call: unhealthy: 127.0.0.1:",
		}, 6},
	} {
		r := run(t, path, append([]string{"check", target}, tc.args...)...)
		ok := r.code == tc.code && strings.Count(r.out, "PASS\t") == tc.passed
		for _, w := range tc.want {
			ok = ok && strings.Contains(r.out, w)
		}
		if !ok {
			t.Fatalf("%s: albctl check %s %s: exit %d, want %d with %d steps passed and %q\n%s%s\nserve:\n%s",
				tc.name, target, strings.Join(tc.args, " "), r.code, tc.code, tc.passed, tc.want, r.out, r.err, stderr.String())
		}
	}

	r := run(t, path, "check", target, "-o", "json")
	steps := decode[[]struct {
		Step    string `json:"step"`
		OK      bool   `json:"ok"`
		Warning string `json:"warning"`
	}](t, r.out)
	if r.code != 0 || len(steps) != 8 || steps[6].Step != "servers" || !steps[6].OK || !strings.HasPrefix(steps[6].Warning, "1 of 3 servers of grpc-backends unhealthy") ||
		!strings.Contains(r.err, `check passed with a warning at step "servers"`) {
		t.Fatalf("check -o json with a server down: %+v\n%s%s", r, r.out, r.err)
	}
	r = run(t, path, "check", target, "-H", "x-canary")
	if r.code != 2 || !strings.Contains(r.err, `invalid value "x-canary" for -H: give KEY:VALUE`) {
		t.Fatalf("check with a bad -H: %+v", r)
	}

	// With serve running, explain knows the servers' health.
	e := decode[explanation](t, runExplain(t, path, "--listener", listenerID, "--path", "/"+echoCall, "-H", "x-dead:1", "-o", "json").out)
	g := e.Action.Groups
	if e.Action.Rule != "to-dead" || len(g) != 1 || g[0].Servers[0].Health != "unhealthy" || e.Health != "from the running albctl serve" ||
		!strings.HasSuffix(g[0].Why, "every server is unhealthy, so the group fails open and calls go to them anyway") {
		t.Fatalf("explain with serve running: %+v", e)
	}
}
