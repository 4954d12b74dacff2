package proxy

import (
	"testing"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// A server added to a running group with slow start takes a small share of
// the calls at first and its full share once the ramp is over.
func TestSlowStartNewServer(t *testing.T) {
	const slowStart = 1500 * time.Millisecond
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	cfg := testConfig(t, GroupConfig{Servers: servers(100, b1), SlowStart: slowStart})
	p, addr := startProxy(t, Options{}, cfg)
	if p.Backend("sgp-test", b1.Addr).Warming() {
		t.Fatal("a server of a new group is warming")
	}
	client := dial(t, addr)
	ctx := ctxTimeout(t, 10*time.Second)
	calls := func(n int) (toB2 int64) {
		t.Helper()
		before := b2.Calls.Load()
		for i := 0; i < n; i++ {
			if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
		}
		return b2.Calls.Load() - before
	}
	calls(10) // connect

	group := cfg.Groups["sgp-test"]
	group.Servers = servers(100, b1, b2)
	cfg.Groups["sgp-test"] = group
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	if !p.Backend("sgp-test", b2.Addr).Warming() {
		t.Fatal("a server added to a running group is not warming")
	}
	// About 10 of 110 at the floor; even if these calls took half the ramp
	// the share would stay under a third.
	early := calls(100)
	t.Logf("new server: %d of the first 100 calls, in %s", early, time.Since(added).Round(time.Millisecond))
	if early > 30 {
		t.Fatalf("new server got %d of the first 100 calls, want well below half", early)
	}
	time.Sleep(slowStart - time.Since(added) + 100*time.Millisecond)
	late := calls(200)
	t.Logf("new server: %d of 200 calls after the ramp", late)
	if late < 85 || late > 115 {
		t.Fatalf("after the ramp the new server got %d of 200 calls, want about half", late)
	}
	if p.Backend("sgp-test", b2.Addr).Warming() {
		t.Fatal("the new server is still warming after the ramp")
	}
}
