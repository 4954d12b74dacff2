package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestServerGroupSlowStart(t *testing.T) {
	path := walkthrough(t)
	got := maskIDs(mustRun(t, path, "servergroup", "update", "grpc-backends", "--slow-start", "60"))
	if !strings.Contains(got, "Drain timeout: 300s\nSlow start:    60s\nServers:       2\n") {
		t.Fatalf("servergroup update --slow-start 60:\n%s", got)
	}
	sg := decode[map[string]any](t, mustRun(t, path, "servergroup", "get", "grpc-backends", "-o", "json"))
	if sg["slowStart"] != "60s" {
		t.Fatalf("get -o json: slowStart = %v", sg["slowStart"])
	}
	if y := mustRun(t, path, "servergroup", "list", "-o", "yaml"); !strings.Contains(y, "\n  slowStart: 60s\n") {
		t.Fatalf("list -o yaml:\n%s", y)
	}
	if got := maskIDs(mustRun(t, path, "servergroup", "list")); !strings.HasPrefix(got, "sgp-ID\tgrpc-backends\tgRPC\twrr\t60s\t2\t") {
		t.Fatalf("list:\n%q", got)
	}
	// wlc keeps it; 0 turns it off.
	mustRun(t, path, "servergroup", "update", "grpc-backends", "--scheduler", "wlc")
	if got := mustRun(t, path, "servergroup", "update", "grpc-backends", "--slow-start", "0"); !strings.Contains(got, "Slow start:    off\n") {
		t.Fatalf("servergroup update --slow-start 0:\n%s", got)
	}
	created := decode[map[string]any](t, mustRun(t, path, "servergroup", "create", "--name", "warm", "--protocol", "gRPC", "--slow-start", "15m", "-o", "json"))
	if created["slowStart"] != "900s" {
		t.Fatalf("create --slow-start 15m: slowStart = %v", created["slowStart"])
	}
}

func TestServerGroupSlowStartRefused(t *testing.T) {
	path := walkthrough(t)
	mustRun(t, path, "servergroup", "create", "--name", "hashed", "--protocol", "gRPC", "--scheduler", "sch")
	mustRun(t, path, "servergroup", "create", "--name", "warm", "--protocol", "gRPC", "--slow-start", "30s")
	const schRule = "needs the wrr or wlc scheduler: sch keeps each client on the server its IP hashes to, so it cannot ramp a server up"
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"servergroup", "update", "grpc-backends", "--slow-start", "29"},
			`Error: invalid value "29s" for --slow-start: must be 0 (off) or 30s-900s` + "\nRun 'albctl servergroup update --help' for usage.\n"},
		{[]string{"servergroup", "update", "grpc-backends", "--slow-start", "901s"},
			`Error: invalid value "901s" for --slow-start: must be 0 (off) or 30s-900s` + "\nRun 'albctl servergroup update --help' for usage.\n"},
		{[]string{"servergroup", "update", "grpc-backends", "--slow-start", "-1m"},
			`Error: invalid value "-60s" for --slow-start: must be 0 (off) or 30s-900s` + "\nRun 'albctl servergroup update --help' for usage.\n"},
		{[]string{"servergroup", "create", "--name", "x2", "--protocol", "gRPC", "--slow-start", "1000"},
			`Error: invalid value "1000s" for --slow-start: must be 0 (off) or 30s-900s` + "\nRun 'albctl servergroup create --help' for usage.\n"},
		{[]string{"servergroup", "update", "grpc-backends", "--slow-start", "soon"},
			`Error: invalid argument "soon" for "--slow-start" flag: not a duration: use seconds (5) or a Go duration (5s, 1m30s)` + "\nRun 'albctl servergroup update --help' for usage.\n"},
		{[]string{"servergroup", "update", "hashed", "--slow-start", "60"},
			`Error: invalid value "60s" for --slow-start: ` + schRule + "\nRun 'albctl servergroup update --help' for usage.\n"},
		{[]string{"servergroup", "update", "warm", "--scheduler", "sch"},
			`Error: invalid value "30s" for --slow-start: ` + schRule + "\nRun 'albctl servergroup update --help' for usage.\n"},
		{[]string{"servergroup", "create", "--name", "x2", "--protocol", "gRPC", "--scheduler", "sch", "--slow-start", "60"},
			`Error: invalid value "60s" for --slow-start: ` + schRule + "\nRun 'albctl servergroup create --help' for usage.\n"},
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		r := run(t, path, tt.args...)
		if r.code != 2 || r.err != tt.err || r.out != "" {
			t.Errorf("albctl %s:\nexit %d, stderr %q, stdout %q\nwant exit 2, stderr %q", strings.Join(tt.args, " "), r.code, r.err, r.out, tt.err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatalf("albctl %s changed the state file", strings.Join(tt.args, " "))
		}
	}
}
