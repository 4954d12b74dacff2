package cli

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/albctl/albctl/pkg/state"
)

var aclIDPattern = regexp.MustCompile(`\bacl-[a-z0-9]{16}\b`)

func maskACLIDs(s string) string { return maskIDs(aclIDPattern.ReplaceAllString(s, "acl-ID")) }

// aclScene is the walkthrough with ACL office (two entries) and its listener's ID.
func aclScene(t *testing.T) (path, listener, office string) {
	t.Helper()
	path = walkthrough(t)
	listener = decode[[]state.Listener](t, mustRun(t, path, "listener", "list", "-o", "json"))[0].ID
	office = decode[state.ACL](t, mustRun(t, path, "acl", "create", "--name", "office",
		"--entry", "10.1.2.3/8", "--entry", "192.168.1.7,description=build server, floor 2", "-o", "json")).ID
	return path, listener, office
}

func TestACLRoundTrip(t *testing.T) {
	path, lsn, office := aclScene(t)
	got := maskACLIDs(mustRun(t, path, "acl", "get", "office"))
	want := "ID:      acl-ID\nName:    office\nEntries: 2\n  10.0.0.0/8\t\n  192.168.1.7/32\tbuild server, floor 2\n"
	if got != want {
		t.Fatalf("acl get:\n%q\nwant\n%q", got, want)
	}
	added := decode[state.ACL](t, mustRun(t, path, "acl", "add-entries", office, "--entry", "::1", "--entry", "2001:DB8::/32,description=v6", "-o", "json"))
	wantEntries := []state.ACLEntry{{CIDR: "10.0.0.0/8"}, {CIDR: "192.168.1.7/32", Description: "build server, floor 2"}, {CIDR: "::1/128"}, {CIDR: "2001:db8::/32", Description: "v6"}}
	if fmt.Sprint(added.Entries) != fmt.Sprint(wantEntries) {
		t.Fatalf("entries %v, want %v", added.Entries, wantEntries)
	}
	removed := decode[state.ACL](t, mustRun(t, path, "acl", "remove-entries", "office", "--entry", "192.168.1.7", "--entry", "::1/128", "-o", "json"))
	if len(removed.Entries) != 2 || removed.Entries[1].CIDR != "2001:db8::/32" {
		t.Fatalf("after remove-entries: %v", removed.Entries)
	}
	mustRun(t, path, "acl", "create", "--name", "nobody")

	l := decode[state.Listener](t, mustRun(t, path, "listener", "update", lsn, "--acl", "office", "--acl", "nobody", "--acl-type", "White", "-o", "json"))
	if l.ACLType != state.ACLWhite || len(l.ACLIDs) != 2 || l.ACLIDs[0] != office || !strings.HasPrefix(l.ACLIDs[1], "acl-") {
		t.Fatalf("listener ACLs: %s %v", l.ACLType, l.ACLIDs)
	}
	got = maskACLIDs(mustRun(t, path, "listener", "get", lsn))
	if !regexp.MustCompile(`\nACL type: +white\nACLs: +acl-ID, acl-ID\n`).MatchString(got) {
		t.Fatalf("listener get:\n%s", got)
	}
	if got := maskACLIDs(mustRun(t, path, "acl", "list")); got != "acl-ID\toffice\t2\tlsn-ID (white)\nacl-ID\tnobody\t0\tlsn-ID (white)\n" {
		t.Fatalf("acl list:\n%q", got)
	}
	if got := mustRun(t, path, "acl", "list", "-o", "yaml"); !strings.Contains(got, "- entries:\n  - cidr: 10.0.0.0/8\n") || !strings.Contains(got, "  name: nobody\n") {
		t.Fatalf("acl list -o yaml:\n%s", got)
	}

	// The type alone, and the list alone, change; the other stays.
	l = decode[state.Listener](t, mustRun(t, path, "listener", "update", lsn, "--acl-type", "black", "-o", "json"))
	if l.ACLType != state.ACLBlack || len(l.ACLIDs) != 2 {
		t.Fatalf("after --acl-type black: %s %v", l.ACLType, l.ACLIDs)
	}
	l = decode[state.Listener](t, mustRun(t, path, "listener", "update", lsn, "--acl", "nobody", "-o", "json"))
	if l.ACLType != state.ACLBlack || len(l.ACLIDs) != 1 || l.ACLIDs[0] == office {
		t.Fatalf("after --acl nobody: %s %v", l.ACLType, l.ACLIDs)
	}
	mustRun(t, path, "acl", "delete", "office")
	l = decode[state.Listener](t, mustRun(t, path, "listener", "update", lsn, "--clear-acls", "-o", "json"))
	if l.ACLType != "" || l.ACLIDs != nil {
		t.Fatalf("after --clear-acls: %q %v", l.ACLType, l.ACLIDs)
	}
	mustRun(t, path, "acl", "delete", "nobody")
	if got := mustRun(t, path, "acl", "list", "-o", "json"); got != "[]\n" {
		t.Fatalf("acl list after deleting all: %q", got)
	}
	if data, _ := os.ReadFile(path); bytes.Contains(data, []byte(`"acl`)) {
		t.Fatalf("the state file still speaks of ACLs:\n%s", data)
	}

	created := decode[state.Listener](t, mustRun(t, path, "listener", "create", "--lb", "demo", "--port", "9443", "--cert", "grpc-example",
		"--server-group", "grpc-backends", "--acl", mustRunID(t, path, "acl", "create", "--name", "blocked", "--entry", "203.0.113.0/24"), "--acl-type", "black", "-o", "json"))
	if created.ACLType != state.ACLBlack || len(created.ACLIDs) != 1 {
		t.Fatalf("listener create with an ACL: %s %v", created.ACLType, created.ACLIDs)
	}
}

func mustRunID(t *testing.T, path string, args ...string) string {
	t.Helper()
	return decode[map[string]any](t, mustRun(t, path, append(args, "-o", "json")...))["id"].(string)
}

func TestACLRefusedInputLeavesStateUnchanged(t *testing.T) {
	path, lsn, _ := aclScene(t)
	for _, name := range []string{"a2", "a3", "a4"} {
		mustRun(t, path, "acl", "create", "--name", name)
	}
	mustRun(t, path, "acl", "create", "--name", "used")
	mustRun(t, path, "listener", "update", lsn, "--acl", "used", "--acl-type", "white")
	var tooMany []string
	for i := range state.MaxACLEntries + 1 {
		tooMany = append(tooMany, "--entry", fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	mustRun(t, path, append([]string{"acl", "create", "--name", "full"}, tooMany[:2*state.MaxACLEntries]...)...)

	badCIDR := "an entry is an IP address or a CIDR range, such as 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32"
	usage := func(cmd string) string { return "\nRun 'albctl " + cmd + " --help' for usage.\n" }
	tests := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"acl", "create", "--name", "x1", "--entry", "10.0.0.0/33"}, 2, `invalid value "10.0.0.0/33" for --entry: ` + badCIDR + usage("acl create")},
		{[]string{"acl", "create", "--name", "x1", "--entry", "10.0.0.256"}, 2, `invalid value "10.0.0.256" for --entry: ` + badCIDR + usage("acl create")},
		{[]string{"acl", "add-entries", "office", "--entry", "fe80::1%eth0"}, 2, `invalid value "fe80::1%eth0" for --entry: ` + badCIDR + usage("acl add-entries")},
		{[]string{"acl", "add-entries", "office", "--entry", "10.0.0.1,weight=3"}, 2,
			`invalid value "10.0.0.1,weight=3" for --entry: "weight=3" is not description=TEXT: an entry is CIDR[,description=TEXT]` + usage("acl add-entries")},
		{[]string{"acl", "add-entries", "office", "--entry", "10.0.0.1,description=" + strings.Repeat("d", 257)}, 2,
			`invalid value "` + strings.Repeat("d", 257) + `" for --entry: a description is at most 256 printable ASCII characters` + usage("acl add-entries")},
		{[]string{"acl", "add-entries", "office"}, 2, "give at least one --entry" + usage("acl add-entries")},
		{[]string{"acl", "add-entries", "office", "--entry", "10.200.0.0/8"}, 1, "entry 10.0.0.0/8 is already in ACL office\n"},
		{[]string{"acl", "create", "--name", "x1", "--entry", "192.0.2.1", "--entry", "192.0.2.1/32"}, 1, "entry 192.0.2.1/32 is already in ACL x1\n"},
		{append([]string{"acl", "create", "--name", "x1"}, tooMany...), 1, "ACL x1 would have 501 entries: at most 500\n"},
		{[]string{"acl", "add-entries", "full", "--entry", "192.0.2.1"}, 1, "ACL full would have 501 entries: at most 500\n"},
		{[]string{"acl", "create", "--name", "office"}, 1, `an ACL named "office" already exists` + "\n"},
		{[]string{"acl", "create", "--name", "acl-office"}, 2, `invalid value "acl-office" for --name: must not start with "acl-", which IDs use` + usage("acl create")},
		{[]string{"acl", "remove-entries", "office", "--entry", "10.0.0.0/16"}, 1, "entry 10.0.0.0/16 is not in ACL office\n"},
		{[]string{"acl", "remove-entries", "office", "--entry", "10.0.0.0/8", "--entry", "10.0.0.0/8"}, 1, "entry 10.0.0.0/8 is not in ACL office\n"},
		{[]string{"acl", "get", "nope"}, 1, `ACL "nope" not found ('albctl acl list' shows them)` + "\n"},
		{[]string{"acl", "delete", "used"}, 1,
			"ACL used is used by listeners lsn-ID (port 8443): give them other ACLs, or none with 'albctl listener update LISTENER --clear-acls', first\n"},
		{[]string{"listener", "update", lsn, "--acl", "office", "--acl", "a2", "--acl", "a3", "--acl", "a4"}, 2,
			`invalid value "4 ACLs" for --acl: a listener uses at most 3 ACLs` + usage("listener update")},
		{[]string{"listener", "update", lsn, "--acl", "office", "--acl", "office"}, 2,
			`invalid value "office" for --acl: the listener has this ACL already` + usage("listener update")},
		{[]string{"listener", "update", lsn, "--acl", "nope"}, 1, `ACL "nope" not found ('albctl acl list' shows them)` + "\n"},
		{[]string{"listener", "update", lsn, "--acl-type", "grey"}, 2, `invalid value "grey" for --acl-type: must be white, black` + usage("listener update")},
		{[]string{"listener", "update", lsn, "--clear-acls", "--acl-type", "black"}, 2, "give --acl and --acl-type, or --clear-acls, not both" + usage("listener update")},
		{[]string{"listener", "create", "--lb", "demo", "--port", "9443", "--cert", "grpc-example", "--server-group", "grpc-backends", "--acl-type", "white"}, 2,
			`invalid value "white" for --acl-type: an ACL type applies only to a listener with ACLs` + usage("listener create")},
		{[]string{"listener", "create", "--lb", "demo", "--port", "9443", "--cert", "grpc-example", "--server-group", "grpc-backends", "--acl", "office"}, 2,
			`invalid value "" for --acl-type: must be white (admit only the clients the ACLs list) or black (refuse them)` + usage("listener create")},
		{[]string{"listener", "create", "--lb", "demo", "--port", "9443", "--cert", "grpc-example", "--server-group", "grpc-backends", "--acl", "nope", "--acl-type", "white"}, 1,
			`ACL "nope" not found ('albctl acl list' shows them)` + "\n"},
		{[]string{"listener", "create", "--lb", "demo", "--port", "9443", "--cert", "grpc-example", "--server-group", "grpc-backends", "--clear-acls"}, 2,
			"unknown flag: --clear-acls" + usage("listener create")},
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		r := run(t, path, tt.args...)
		if want := "Error: " + tt.err; r.code != tt.code || maskIDs(r.err) != want || r.out != "" {
			t.Errorf("albctl %.200s:\nexit %d, stderr %.300q, stdout %q\nwant exit %d, stderr %.300q", strings.Join(tt.args, " "), r.code, r.err, r.out, tt.code, want)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatalf("albctl %.200s changed the state file", strings.Join(tt.args, " "))
		}
	}
}

func TestACLCompletion(t *testing.T) {
	path, lsn, office := aclScene(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"acl", "get", ""}, office + "\toffice\noffice\t" + office + "\n:4\n"},
		{[]string{"acl", "add-entries", ""}, office + "\toffice\noffice\t" + office + "\n:4\n"},
		{[]string{"acl", "delete", ""}, office + "\toffice\noffice\t" + office + "\n:4\n"},
		{[]string{"listener", "update", lsn, "--acl", ""}, office + "\toffice\noffice\t" + office + "\n:4\n"},
		{[]string{"listener", "create", "--acl-type", ""}, "white\nblack\n:4\n"},
	}
	for _, tt := range tests {
		if got := mustRun(t, path, append([]string{"__complete"}, tt.args...)...); !strings.HasPrefix(got, tt.want) {
			t.Errorf("completion of %q:\n%q\nwant it to start with\n%q", tt.args, got, tt.want)
		}
	}
}

// TestCheckSaysWhatTheACLDoes: check's listener step gives the ACL's verdict on the address it
// calls from, and stops there when the listener would refuse it.
func TestCheckSaysWhatTheACLDoes(t *testing.T) {
	path, port := serveScenario(t, 0)
	verifiedDomain(t, path)
	l := decode[[]struct{ ID string }](t, mustRun(t, path, "listener", "list", "-o", "json"))[0]
	mustRun(t, path, "acl", "create", "--name", "loopback", "--entry", "127.0.0.0/8")
	target := "grpc.example.test:" + itoa(port)

	mustRun(t, path, "listener", "update", l.ID, "--acl", "loopback", "--acl-type", "black")
	r := run(t, path, "check", target)
	if r.code != ExitError || !strings.Contains(r.out, "FAIL\tlistener\tlistener "+l.ID+"'s black list ACL refuses 127.0.0.1, the address check calls from") {
		t.Fatalf("check behind a black list of its address: exit %d\n%s%s", r.code, r.out, r.err)
	}
	mustRun(t, path, "listener", "update", l.ID, "--acl-type", "white")
	r = run(t, path, "check", target)
	if !strings.Contains(r.out, "PASS\tlistener\t") || !strings.Contains(r.out, "white list ACL admits 127.0.0.1") {
		t.Fatalf("check behind a white list of its address: exit %d\n%s%s", r.code, r.out, r.err)
	}
}
