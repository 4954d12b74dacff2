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
	const schRule = "needs the wrr or wlc scheduler: sch keeps each client on the server its key hashes to, so it cannot ramp a server up"
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

func TestServerGroupUCH(t *testing.T) {
	path := walkthrough(t)
	type group struct {
		Scheduler string
		UCHConfig *struct{ Type, Key string }
		SlowStart string
	}
	sg := decode[group](t, mustRun(t, path, "servergroup", "create", "--name", "sessions", "--protocol", "gRPC",
		"--scheduler", "UCH", "--uch-key", "header:X-User-Id", "-o", "json"))
	if sg.Scheduler != "uch" || sg.UCHConfig == nil || *sg.UCHConfig != (struct{ Type, Key string }{"Header", "x-user-id"}) {
		t.Fatalf("create --scheduler uch --uch-key header:X-User-Id: %+v", sg)
	}
	if got := mustRun(t, path, "servergroup", "get", "sessions"); !strings.Contains(got, "\nScheduler:     uch header:x-user-id\n") {
		t.Fatalf("servergroup get:\n%s", got)
	}
	if got := maskIDs(mustRun(t, path, "servergroup", "list")); !strings.Contains(got, "sgp-ID\tsessions\tgRPC\tuch header:x-user-id\toff\t0\t") {
		t.Fatalf("servergroup list:\n%s", got)
	}
	// The key changes alone; leaving uch drops it; coming back needs one.
	sg = decode[group](t, mustRun(t, path, "servergroup", "update", "sessions", "--uch-key", "query:user", "-o", "json"))
	if sg.Scheduler != "uch" || *sg.UCHConfig != (struct{ Type, Key string }{"QueryString", "user"}) {
		t.Fatalf("update --uch-key query:user: %+v", sg)
	}
	sg = decode[group](t, mustRun(t, path, "servergroup", "update", "sessions", "--scheduler", "wrr", "--slow-start", "30", "-o", "json"))
	if sg.Scheduler != "wrr" || sg.UCHConfig != nil || sg.SlowStart != "30s" {
		t.Fatalf("update --scheduler wrr: %+v", sg)
	}
	mustRun(t, path, "servergroup", "update", "sessions", "--slow-start", "0")
	if got := mustRun(t, path, "servergroup", "update", "grpc-backends", "--scheduler", "uch", "--uch-key", "query:tenant"); !strings.Contains(got, "\nScheduler:     uch query:tenant\n") {
		t.Fatalf("update --scheduler uch --uch-key query:tenant:\n%s", got)
	}

	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"servergroup", "update", "sessions", "--scheduler", "uch"},
			`invalid value "" for --uch-key: the uch scheduler needs a key to hash: query:KEY or header:KEY`},
		{[]string{"servergroup", "create", "--name", "x2", "--protocol", "gRPC", "--scheduler", "uch"},
			`invalid value "" for --uch-key: the uch scheduler needs a key to hash: query:KEY or header:KEY`},
		{[]string{"servergroup", "update", "sessions", "--uch-key", "header:x-user-id"},
			`invalid value "header:x-user-id" for --uch-key: a hash key applies only to the uch scheduler`},
		{[]string{"servergroup", "update", "grpc-backends", "--scheduler", "wlc", "--uch-key", "query:tenant"},
			`invalid value "query:tenant" for --uch-key: a hash key applies only to the uch scheduler`},
		{[]string{"servergroup", "update", "sessions", "--scheduler", "uch", "--uch-key", "cookie:session"},
			`invalid value "cookie:session" for --uch-key: "cookie:session" is not query:KEY or header:KEY, such as header:x-user-id`},
		{[]string{"servergroup", "update", "sessions", "--scheduler", "uch", "--uch-key", "header:"},
			`invalid value "header:" for --uch-key: "header:" is not query:KEY or header:KEY, such as header:x-user-id`},
		{[]string{"servergroup", "update", "sessions", "--scheduler", "uch", "--uch-key", "header:x user"},
			`invalid value "x user" for --uch-key: a header name is 1-40 letters, digits, '-' or '_'`},
		{[]string{"servergroup", "update", "sessions", "--scheduler", "uch", "--uch-key", "query:User"},
			`invalid value "User" for --uch-key: a query key is 1-100 printable characters without uppercase letters, spaces or # [ ] { } \ | < > & "`},
		{[]string{"servergroup", "update", "grpc-backends", "--slow-start", "30"},
			`invalid value "30s" for --slow-start: needs the wrr or wlc scheduler: uch keeps each client on the server its key hashes to, so it cannot ramp a server up`},
		{[]string{"servergroup", "update", "sessions", "--scheduler", "random"}, `invalid value "random" for --scheduler: must be wrr, wlc, sch, uch`},
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		r := run(t, path, tt.args...)
		want := "Error: " + tt.err + "\nRun 'albctl servergroup " + tt.args[1] + " --help' for usage.\n"
		if r.code != 2 || r.err != want || r.out != "" {
			t.Errorf("albctl %s:\nexit %d, stderr %q, stdout %q\nwant exit 2, stderr %q", strings.Join(tt.args, " "), r.code, r.err, r.out, want)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatalf("albctl %s changed the state file", strings.Join(tt.args, " "))
		}
	}
	if got := mustRun(t, path, "__complete", "servergroup", "update", "sessions", "--scheduler", ""); !strings.HasPrefix(got, "wrr\nwlc\nsch\nuch\n") {
		t.Fatalf("completion of --scheduler:\n%s", got)
	}
}
