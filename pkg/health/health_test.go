package health

import (
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/balancer"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/state"
)

func newChecker(t *testing.T) (*Checker, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	c := New(Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	t.Cleanup(c.Close)
	return c, logs
}

func serverStatus(t *testing.T, c *Checker, groupID, addr string) ServerStatus {
	t.Helper()
	g, ok := c.Status(groupID)
	if !ok {
		t.Fatalf("no status for group %s", groupID)
	}
	for _, s := range g.Servers {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("no status for server %s in group %s", addr, groupID)
	return ServerStatus{}
}

// waitFor polls a server's status until cond holds, failing after within.
// It returns the status that satisfied cond and how long it took.
func waitFor(t *testing.T, c *Checker, groupID, addr string, within time.Duration, what string, cond func(ServerStatus) bool) (ServerStatus, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		st := serverStatus(t, c, groupID, addr)
		if cond(st) {
			return st, time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not %s within %v; last status %+v", addr, what, within, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitState(t *testing.T, c *Checker, groupID, addr, state string, within time.Duration) (ServerStatus, time.Duration) {
	t.Helper()
	return waitFor(t, c, groupID, addr, within, state, func(s ServerStatus) bool { return s.State == state })
}

// detectWithin is interval × threshold + timeout, the bound the issue sets.
func detectWithin(hc state.HealthCheck) time.Duration {
	return hc.Interval.D()*time.Duration(hc.UnhealthyThreshold) + hc.Timeout.D()
}

func TestStopAndRestartServer(t *testing.T) {
	t.Parallel()
	c, logs := newChecker(t)
	srv1, addr1 := testutil.StartEcho(t, echo.Options{Name: "b1"})
	_, addr2 := testutil.StartEcho(t, echo.Options{Name: "b2"})

	hc := fastCheck(state.ProtocolGRPC)
	hc.Timeout = state.Duration(5 * time.Second)
	b1, b2 := balancer.NewBackend(addr1, 100), balancer.NewBackend(addr2, 100)
	c.Apply([]Group{{ID: "sg-1", Name: "grpc-backends", Check: hc, Targets: []Target{
		{Addr: addr1, Weight: 100, Backend: b1},
		{Addr: addr2, Weight: 100, Backend: b2},
	}}})
	bound := detectWithin(hc)
	waitState(t, c, "sg-1", addr1, StateHealthy, bound)
	waitState(t, c, "sg-1", addr2, StateHealthy, bound)
	if b1.Health() != balancer.HealthHealthy || b2.Health() != balancer.HealthHealthy {
		t.Fatalf("backends %v, %v; want both healthy", b1.Health(), b2.Health())
	}

	srv1.Stop()
	st, took := waitState(t, c, "sg-1", addr1, StateUnhealthy, bound)
	t.Logf("stopped server unhealthy after %v (bound %v)", took, bound)
	if st.Reason != "connection refused" || st.ConsecutiveFailures != 2 {
		t.Errorf("status %+v, want reason \"connection refused\" after 2 failures", st)
	}
	if b1.Health() != balancer.HealthUnhealthy {
		t.Errorf("backend 1 is %v, want unhealthy", b1.Health())
	}
	// Routing skips the stopped server at once.
	picker, err := balancer.New(balancer.SchedulerWRR, []*balancer.Backend{b1, b2})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		res, err := picker.Pick("", nil)
		if err != nil || res.Backend != b2 || res.FailOpen {
			t.Fatalf("pick = %v, %+v; want server 2 without fail-open", err, res)
		}
	}
	if g, _ := c.Status("sg-1"); g.FailOpen {
		t.Error("group fails open with one healthy server")
	}

	// Back on the same port.
	lis, err := net.Listen("tcp", addr1)
	if err != nil {
		t.Fatal(err)
	}
	testutil.ServeEcho(t, lis, echo.Options{Name: "b1-again"})
	st, took = waitState(t, c, "sg-1", addr1, StateHealthy, bound)
	t.Logf("restarted server healthy after %v", took)
	if st.Reason != "grpc-status 12 (UNIMPLEMENTED)" || st.ConsecutiveSuccesses != 2 {
		t.Errorf("status %+v, want healthy by grpc-status 12 after 2 successes", st)
	}

	text := logs.String()
	for _, want := range []string{
		"from=initial to=healthy",
		"from=healthy to=unhealthy reason=\"connection refused\"",
		"from=unhealthy to=healthy reason=\"grpc-status 12 (UNIMPLEMENTED)\"",
		"group=grpc-backends server=" + addr1,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("logs lack %q:\n%s", want, text)
		}
	}
}

func TestCodeOutsideSet(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t)
	addr := startCodeServer(t, 14)
	hc := fastCheck(state.ProtocolGRPC)
	c.Apply([]Group{{ID: "sg-1", Check: hc, Targets: []Target{{Addr: addr, Weight: 100}}}})
	st, _ := waitState(t, c, "sg-1", addr, StateUnhealthy, detectWithin(hc))
	if st.Reason != "grpc-status 14 (UNAVAILABLE) not in 12" {
		t.Errorf("reason %q", st.Reason)
	}
	if st.LastCheck.IsZero() || st.Latency <= 0 || !st.Checked {
		t.Errorf("status lacks the last check: %+v", st)
	}
}

func TestGRPCHealthNotServing(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t)
	srv, addr := testutil.StartEcho(t, echo.Options{Name: "b1"})
	hc := fastCheck(state.HealthGRPCHealth)
	c.Apply([]Group{{ID: "sg-1", Check: hc, Targets: []Target{{Addr: addr, Weight: 100}}}})
	waitState(t, c, "sg-1", addr, StateHealthy, detectWithin(hc))
	srv.SetServing("", false)
	st, _ := waitState(t, c, "sg-1", addr, StateUnhealthy, detectWithin(hc))
	if st.Reason != "NOT_SERVING" {
		t.Errorf("reason %q, want NOT_SERVING", st.Reason)
	}
}

func TestHTTPAndTCPGroups(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t)
	silent := startSilent(t)
	refused := testutil.ClosedAddr(t)
	httpCheck := fastCheck(state.ProtocolHTTP)
	httpCheck.Method, httpCheck.Path = "GET", "/"
	c.Apply([]Group{
		{ID: "sg-tcp", Check: fastCheck(state.ProtocolTCP), Targets: []Target{{Addr: silent.addr, Weight: 100}}},
		{ID: "sg-http", Check: httpCheck, Targets: []Target{{Addr: refused, Weight: 100}}},
	})
	st, _ := waitState(t, c, "sg-tcp", silent.addr, StateHealthy, detectWithin(fastCheck(state.ProtocolTCP)))
	if st.Reason != "connected" {
		t.Errorf("tcp reason %q", st.Reason)
	}
	st, _ = waitState(t, c, "sg-http", refused, StateUnhealthy, detectWithin(httpCheck))
	if st.Reason != "connection refused" {
		t.Errorf("http reason %q", st.Reason)
	}
}

func TestHealthyThreshold(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t)
	_, addr := testutil.StartEcho(t, echo.Options{Name: "b1"})
	hc := fastCheck(state.ProtocolGRPC)
	hc.HealthyThreshold = 3
	c.Apply([]Group{{ID: "sg-1", Check: hc, Targets: []Target{{Addr: addr, Weight: 100}}}})
	// Watch every step: initial with 1 and 2 successes, healthy with the third.
	seen := map[int]string{}
	waitFor(t, c, "sg-1", addr, 4*time.Second, "healthy", func(s ServerStatus) bool {
		if prev, ok := seen[s.ConsecutiveSuccesses]; ok && prev != s.State {
			t.Errorf("%d successes gave both %s and %s", s.ConsecutiveSuccesses, prev, s.State)
		}
		seen[s.ConsecutiveSuccesses] = s.State
		return s.State == StateHealthy
	})
	want := map[int]string{0: StateInitial, 1: StateInitial, 2: StateInitial, 3: StateHealthy}
	for n, st := range seen {
		if want[n] != st {
			t.Errorf("after %d successes the state was %s, want %s", n, st, want[n])
		}
	}
}

func TestUnhealthyThresholdAndPassiveFailures(t *testing.T) {
	t.Parallel()
	c, logs := newChecker(t)
	_, addr := testutil.StartEcho(t, echo.Options{Name: "b1"})
	hc := fastCheck(state.ProtocolGRPC)
	// A long interval: after its first check the server is left to the
	// passive signal alone.
	hc.Interval = state.Duration(50 * time.Second)
	hc.UnhealthyThreshold = 3
	b := balancer.NewBackend(addr, 100)
	c.Apply([]Group{{ID: "sg-1", Check: hc, Targets: []Target{{Addr: addr, Weight: 100, Backend: b}}}})
	waitFor(t, c, "sg-1", addr, time.Second, "checked once", func(s ServerStatus) bool { return s.ConsecutiveSuccesses == 1 })

	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	for i, want := range []string{StateInitial, StateInitial, StateUnhealthy} {
		c.ReportFailure("sg-1", addr, refused)
		st := serverStatus(t, c, "sg-1", addr)
		if st.State != want || st.ConsecutiveFailures != i+1 || st.ConsecutiveSuccesses != 0 {
			t.Fatalf("after %d passive failures: %+v, want %s", i+1, st, want)
		}
		if st.Reason != "a call could not connect: connection refused" {
			t.Errorf("reason %q", st.Reason)
		}
	}
	if b.Health() != balancer.HealthUnhealthy {
		t.Errorf("backend is %v, want unhealthy", b.Health())
	}
	if !strings.Contains(logs.String(), "from=initial to=unhealthy") {
		t.Errorf("no log line for the change:\n%s", logs)
	}
	// Unknown groups and servers are ignored.
	c.ReportFailure("sg-2", addr, refused)
	c.ReportFailure("sg-1", "127.0.0.1:1", refused)
}

func TestFailOpen(t *testing.T) {
	t.Parallel()
	c, logs := newChecker(t)
	addr1, addr2 := testutil.ClosedAddr(t), testutil.ClosedAddr(t)
	b1, b2 := balancer.NewBackend(addr1, 100), balancer.NewBackend(addr2, 100)
	hc := fastCheck(state.ProtocolGRPC)
	c.Apply([]Group{{ID: "sg-1", Check: hc, Targets: []Target{
		{Addr: addr1, Weight: 100, Backend: b1},
		{Addr: addr2, Weight: 100, Backend: b2},
	}}})
	waitState(t, c, "sg-1", addr1, StateUnhealthy, detectWithin(hc))
	waitState(t, c, "sg-1", addr2, StateUnhealthy, detectWithin(hc))
	g, _ := c.Status("sg-1")
	if !g.FailOpen || !strings.Contains(g.Message, "failing open") {
		t.Errorf("group status %+v, want fail-open said", g)
	}
	picker, err := balancer.New(balancer.SchedulerWRR, []*balancer.Backend{b1, b2})
	if err != nil {
		t.Fatal(err)
	}
	res, err := picker.Pick("", nil)
	if err != nil || !res.FailOpen {
		t.Errorf("pick = %+v, %v; want a fail-open pick", res, err)
	}
	if !strings.Contains(logs.String(), "failing open") {
		t.Errorf("no fail-open log line:\n%s", logs)
	}

	// A healthy server added live ends it.
	_, addr3 := testutil.StartEcho(t, echo.Options{Name: "b3"})
	b3 := balancer.NewBackend(addr3, 100)
	c.Apply([]Group{{ID: "sg-1", Check: hc, Targets: []Target{
		{Addr: addr1, Weight: 100, Backend: b1},
		{Addr: addr2, Weight: 100, Backend: b2},
		{Addr: addr3, Weight: 100, Backend: b3},
	}}})
	if g, _ := c.Status("sg-1"); g.FailOpen {
		t.Error("still failing open with a new, initial server")
	}
	if st := serverStatus(t, c, "sg-1", addr1); st.State != StateUnhealthy {
		t.Errorf("server 1 lost its state across Apply: %+v", st)
	}
}

func TestWeightZeroNotChecked(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t)
	silent := startSilent(t)
	_, addr := testutil.StartEcho(t, echo.Options{Name: "b1"})
	b0 := balancer.NewBackend(silent.addr, 0)
	hc := fastCheck(state.ProtocolTCP)
	group := func(weight int) []Group {
		return []Group{{ID: "sg-1", Check: hc, Targets: []Target{
			{Addr: addr, Weight: 100},
			{Addr: silent.addr, Weight: weight, Backend: b0},
		}}}
	}
	c.Apply(group(0))
	waitState(t, c, "sg-1", addr, StateHealthy, detectWithin(hc))
	st := serverStatus(t, c, "sg-1", silent.addr)
	if st.State != StateUnchecked || st.Reason != "weight 0" || st.Checked || st.Weight != 0 {
		t.Errorf("weight-0 server: %+v", st)
	}
	if n := silent.accepted.Load(); n != 0 {
		t.Errorf("weight-0 server was connected to %d times", n)
	}
	if b0.Health() != balancer.HealthInitial {
		t.Errorf("weight-0 backend is %v", b0.Health())
	}

	// A weight set live starts its checks within a second.
	c.Apply(group(50))
	waitFor(t, c, "sg-1", silent.addr, time.Second, "checked", func(s ServerStatus) bool {
		return s.Checked && !s.LastCheck.IsZero()
	})
	if silent.accepted.Load() == 0 {
		t.Error("no connection reached the server")
	}
}

func TestDisabledGroup(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t)
	refused := testutil.ClosedAddr(t)
	b := balancer.NewBackend(refused, 100)
	hc := fastCheck(state.ProtocolGRPC)
	apply := func(enabled bool) {
		hc.Enabled = enabled
		c.Apply([]Group{{ID: "sg-1", Check: hc, Targets: []Target{{Addr: refused, Weight: 100, Backend: b}}}})
	}
	apply(false)
	time.Sleep(300 * time.Millisecond)
	st := serverStatus(t, c, "sg-1", refused)
	if st.State != StateUnchecked || st.Reason != "health checks disabled" || st.Checked {
		t.Errorf("disabled group's server: %+v", st)
	}

	// On, the dead server turns unhealthy; off again, it is routable at once.
	apply(true)
	waitState(t, c, "sg-1", refused, StateUnhealthy, detectWithin(hc))
	apply(false)
	if b.Health() != balancer.HealthInitial {
		t.Errorf("backend is %v after checks were turned off, want initial", b.Health())
	}
	if g, _ := c.Status("sg-1"); g.FailOpen || g.Enabled {
		t.Errorf("group status %+v", g)
	}
}

func TestLiveSettingsChange(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t)
	_, addr := testutil.StartEcho(t, echo.Options{Name: "b1"})
	hc := fastCheck(state.ProtocolGRPC)
	// The interval is long, so only the change itself can cause a check soon.
	hc.Interval = state.Duration(50 * time.Second)
	apply := func(hc state.HealthCheck, addrs ...string) {
		var targets []Target
		for _, a := range addrs {
			targets = append(targets, Target{Addr: a, Weight: 100})
		}
		c.Apply([]Group{{ID: "sg-1", Check: hc, Targets: targets}})
	}
	apply(hc, addr)
	waitFor(t, c, "sg-1", addr, time.Second, "checked", func(s ServerStatus) bool { return s.ConsecutiveSuccesses == 1 })

	// The same settings again do not cause a check.
	apply(hc, addr)
	time.Sleep(300 * time.Millisecond)
	if st := serverStatus(t, c, "sg-1", addr); st.ConsecutiveSuccesses != 1 {
		t.Errorf("an unchanged Apply caused a check: %+v", st)
	}

	hc.Codes = "0"
	apply(hc, addr)
	_, took := waitFor(t, c, "sg-1", addr, time.Second, "checked with codes 0", func(s ServerStatus) bool {
		return s.Reason == "grpc-status 12 (UNIMPLEMENTED) not in 0"
	})
	t.Logf("new codes applied after %v", took)

	hc = fastCheck(state.ProtocolTCP)
	hc.Interval = state.Duration(50 * time.Second)
	apply(hc, addr)
	waitFor(t, c, "sg-1", addr, time.Second, "checked by TCP", func(s ServerStatus) bool { return s.Reason == "connected" })

	// Servers added and removed live.
	_, addr2 := testutil.StartEcho(t, echo.Options{Name: "b2"})
	apply(hc, addr, addr2)
	waitFor(t, c, "sg-1", addr2, time.Second, "checked", func(s ServerStatus) bool { return s.Reason == "connected" })
	apply(hc, addr2)
	g, _ := c.Status("sg-1")
	if len(g.Servers) != 1 || g.Servers[0].Addr != addr2 {
		t.Errorf("servers after removal: %+v", g.Servers)
	}

	// A removed group is forgotten.
	c.Apply(nil)
	if _, ok := c.Status("sg-1"); ok {
		t.Error("removed group still has a status")
	}
	if got := c.Statuses(); len(got) != 0 {
		t.Errorf("statuses after removing every group: %+v", got)
	}
}

func TestCloseStopsChecksInFlight(t *testing.T) {
	t.Parallel()
	c := New(Options{Jitter: -1})
	silent := startSilent(t)
	hc := fastCheck(state.ProtocolGRPC)
	hc.Timeout = state.Duration(30 * time.Second)
	c.Apply([]Group{{ID: "sg-1", Check: hc, Targets: []Target{{Addr: silent.addr, Weight: 100}}}})
	deadline := time.Now().Add(time.Second)
	for silent.accepted.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	c.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v with a check in flight", took)
	}
	c.Apply([]Group{{ID: "sg-2", Check: hc, Targets: []Target{{Addr: silent.addr, Weight: 100}}}})
	if _, ok := c.Status("sg-2"); ok {
		t.Error("Apply after Close started checks")
	}
}

func TestFromServerGroup(t *testing.T) {
	t.Parallel()
	sg := state.NewServerGroup("grpc-backends", state.ProtocolGRPC)
	sg.ID = "sg-1"
	sg.Servers = []state.Server{{Address: "127.0.0.1", Port: 50051, Weight: 100}, {Address: "::1", Port: 50052, Weight: 0}}
	known := balancer.NewBackend("127.0.0.1:50051", 100)
	g := FromServerGroup(sg, func(groupID, addr string) *balancer.Backend {
		if groupID == "sg-1" && addr == "127.0.0.1:50051" {
			return known
		}
		return nil
	})
	if g.ID != "sg-1" || g.Name != "grpc-backends" || g.Check != sg.HealthCheck || len(g.Targets) != 2 {
		t.Fatalf("group %+v", g)
	}
	if g.Targets[0].Backend != known || g.Targets[1].Addr != "[::1]:50052" || g.Targets[1].Weight != 0 || g.Targets[1].Backend != nil {
		t.Errorf("targets %+v", g.Targets)
	}
}
