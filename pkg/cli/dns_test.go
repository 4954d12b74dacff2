package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/state"
	"github.com/miekg/dns"
)

// runDNSTest runs albctl with a state file and returns its output and exit code.
func runDNSTest(t *testing.T, statePath string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut testutil.SyncBuffer
	code = Main(context.Background(), append([]string{"--state", statePath}, args...),
		IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	return out.String(), errOut.String(), code
}

// mustDNSTest runs albctl, fails the test unless it succeeds, and decodes its JSON output
// into v when v is not nil.
func mustDNSTest(t *testing.T, statePath string, v any, args ...string) string {
	t.Helper()
	if v != nil {
		args = append(args, "-o", "json")
	}
	out, errOut, code := runDNSTest(t, statePath, args...)
	if code != 0 {
		t.Fatalf("albctl %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("albctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return out
}

func dnsTestEnv(t *testing.T) string {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // no user config file
	return filepath.Join(t.TempDir(), "state.json")
}

// verifiedDNSState makes a state with a load balancer and a verified example.test, and returns
// the load balancer's domain name.
func verifiedDNSState(t *testing.T, statePath string) string {
	t.Helper()
	var lb state.LoadBalancer
	mustDNSTest(t, statePath, &lb, "lb", "create", "--name", "demo")
	var d state.Domain
	mustDNSTest(t, statePath, &d, "dns", "domain", "add", "example.test")
	mustDNSTest(t, statePath, nil, "dns", "add", "--domain", "example.test", "--type", "TXT", "--host", d.Verification.Host, "--value", d.Verification.Value)
	mustDNSTest(t, statePath, nil, "dns", "domain", "verify", "example.test")
	return lb.DNSName
}

func TestDNSOwnershipFlow(t *testing.T) {
	path := dnsTestEnv(t)
	var lb state.LoadBalancer
	mustDNSTest(t, path, &lb, "lb", "create", "--name", "demo")

	out := mustDNSTest(t, path, nil, "dns", "domain", "add", "Example.Test")
	var d state.Domain
	mustDNSTest(t, path, &d, "dns", "domain", "get", "example.test")
	token := d.Verification.Value
	if d.Name != "example.test" || d.Verified || d.Verification.Host != "_albctl-challenge" || d.Verification.Type != "TXT" || token == "" {
		t.Fatalf("domain = %+v", d)
	}
	wantAdd := `Name:             example.test
Verified:         no
Records:          0
Ownership record: _albctl-challenge TXT ` + token + `
To verify:        albctl dns add --domain example.test --type TXT --host _albctl-challenge --value ` + token + `
                  albctl dns domain verify example.test
`
	if out != wantAdd {
		t.Errorf("domain add printed\n%s\nwant\n%s", out, wantAdd)
	}

	before, _ := os.ReadFile(path)
	_, errOut, code := runDNSTest(t, path, "dns", "add", "--domain", "example.test", "--type", "CNAME", "--host", "grpc", "--value", lb.DNSName)
	wantErr := `Error: domain example.test is not verified: until it is, the only record it takes is the ownership TXT record at _albctl-challenge
Add the ownership record, then verify the domain:
  albctl dns add --domain example.test --type TXT --host _albctl-challenge --value ` + token + `
  albctl dns domain verify example.test
`
	if code != 1 || errOut != wantErr {
		t.Errorf("CNAME on an unverified domain: exit %d\n%s\nwant exit 1\n%s", code, errOut, wantErr)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("a refused record changed the state file")
	}
	if _, errOut, code := runDNSTest(t, path, "dns", "domain", "verify", "example.test"); code != 1 ||
		!strings.Contains(errOut, "there is no TXT record at _albctl-challenge.example.test") {
		t.Errorf("verify before the TXT record: exit %d: %s", code, errOut)
	}

	mustDNSTest(t, path, nil, "dns", "add", "--domain", "example.test", "--type", "TXT", "--host", "_albctl-challenge", "--value", token)
	mustDNSTest(t, path, &d, "dns", "domain", "verify", "example.test")
	if !d.Verified {
		t.Fatalf("verify: %+v", d)
	}
	var rec state.Record
	mustDNSTest(t, path, &rec, "dns", "add", "--domain", "example.test", "--type", "cname", "--host", "grpc", "--value", strings.ToUpper(lb.DNSName)+".")
	if !strings.HasPrefix(rec.ID, "rr-") || rec.Domain != "example.test" || rec.Host != "grpc" || rec.Type != "CNAME" ||
		rec.Value != lb.DNSName || rec.TTL != 600 || rec.Line != "default" {
		t.Errorf("record = %+v", rec)
	}
	var raw map[string]any
	mustDNSTest(t, path, &raw, "dns", "get", rec.ID)
	for _, key := range []string{"id", "domain", "host", "type", "value", "ttl", "line"} {
		if _, ok := raw[key]; !ok || len(raw) != 7 {
			t.Errorf("record JSON %v lacks %q or has other keys", raw, key)
		}
	}

	out = mustDNSTest(t, path, nil, "dns", "resolve", "grpc.example.test")
	wantResolve := "grpc.example.test\t600\tCNAME\t" + lb.DNSName + ".\n" + lb.DNSName + "\t60\tA\t127.0.0.1\n"
	if out != wantResolve {
		t.Errorf("resolve printed\n%q\nwant\n%q", out, wantResolve)
	}
	out, errOut, code = runDNSTest(t, path, "dns", "resolve", "nothing.example.test", "-o", "json")
	if code != 1 || !strings.Contains(out, `"status": "NXDOMAIN"`) || errOut != "Error: nothing.example.test: no such name in zone example.test (NXDOMAIN)\n" {
		t.Errorf("resolve of a missing name: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := runDNSTest(t, path, "dns", "resolve", "grpc.example.test", "--type", "TXT"); code != 1 ||
		errOut != "Error: "+lb.DNSName+": no TXT record (NODATA)\n" {
		t.Errorf("resolve NODATA: exit %d: %s", code, errOut)
	}

	mustDNSTest(t, path, &rec, "dns", "update", rec.ID, "--ttl", "60")
	if rec.TTL != 60 || rec.Value != lb.DNSName {
		t.Errorf("update: %+v", rec)
	}
	var records []state.Record
	mustDNSTest(t, path, &records, "dns", "list", "--domain", "example.test")
	if len(records) != 2 {
		t.Errorf("list: %+v", records)
	}
	var domains []state.Domain
	mustDNSTest(t, path, &domains, "dns", "domain", "list")
	if len(domains) != 1 || !domains[0].Verified {
		t.Errorf("domain list: %+v", domains)
	}
	if out := mustDNSTest(t, path, nil, "dns", "domain", "list"); out != "example.test\tyes\t2\n" {
		t.Errorf("domain list table: %q", out)
	}

	if _, errOut, code := runDNSTest(t, path, "dns", "domain", "delete", "example.test"); code != 1 ||
		errOut != "Error: domain example.test has 2 record(s): delete them first, or delete the domain with --force\n" {
		t.Errorf("delete a domain with records: exit %d: %s", code, errOut)
	}
	mustDNSTest(t, path, nil, "dns", "delete", rec.ID)
	mustDNSTest(t, path, nil, "dns", "domain", "delete", "example.test", "--force")
	mustDNSTest(t, path, &records, "dns", "list")
	if len(records) != 0 {
		t.Errorf("records left after domain delete --force: %+v", records)
	}
}

func TestDNSRefusedChangesLeaveStateUnchanged(t *testing.T) {
	path := dnsTestEnv(t)
	lbName := verifiedDNSState(t, path)
	var grpc state.Record
	mustDNSTest(t, path, &grpc, "dns", "add", "--domain", "example.test", "--type", "CNAME", "--host", "grpc", "--value", lbName)
	mustDNSTest(t, path, nil, "dns", "add", "--domain", "example.test", "--type", "CNAME", "--host", "a", "--value", "b.example.test")
	mustDNSTest(t, path, nil, "dns", "domain", "add", "other.test")
	add := func(args ...string) []string {
		return append([]string{"dns", "add", "--domain", "example.test"}, args...)
	}
	tests := []struct {
		args []string
		code int
		err  string
	}{
		{add("--type", "A", "--host", "a..b", "--value", "127.0.0.1"), 2, `invalid value "a..b" for --host: labels are 1-63`},
		{add("--type", "A", "--host", strings.Repeat("x", 64), "--value", "127.0.0.1"), 2, `for --host: labels are 1-63`},
		{add("--type", "A", "--host", "x", "--value", "localhost"), 2, `invalid value "localhost" for --value: an A record's value is an IPv4 address`},
		{add("--type", "MX", "--host", "@", "--value", "mail.example.test"), 2, `for --value: an MX record's value is "PREFERENCE HOST"`},
		{add("--type", "A", "--host", "x", "--value", "127.0.0.1", "--ttl", "0"), 2, `invalid value "0" for --ttl: must be 1-86400 seconds (default 600)`},
		{add("--type", "A", "--host", "x", "--value", "127.0.0.1", "--line", "mobile"), 2, `invalid value "mobile" for --line: must be default`},
		{add("--type", "PTR", "--host", "x", "--value", "y.test"), 2, `invalid value "PTR" for --type: must be A, AAAA, CNAME, TXT, MX, SRV, CAA`},
		{add("--type", "A", "--host", "grpc", "--value", "127.0.0.1"), 1, `grpc.example.test already has record ` + grpc.ID + ` (CNAME ` + lbName + `): a CNAME cannot share its name with another record`},
		{add("--type", "CNAME", "--host", "b", "--value", "a.example.test"), 2, `invalid value "a.example.test" for --value: makes a CNAME loop: b.example.test -> a.example.test -> b.example.test`},
		{[]string{"dns", "add", "--domain", "other.test", "--type", "A", "--host", "x", "--value", "127.0.0.1"}, 1, "domain other.test is not verified"},
		{[]string{"dns", "add", "--domain", "missing.test", "--type", "A", "--host", "x", "--value", "127.0.0.1"}, 1, `domain "missing.test" not found ('albctl dns domain list' shows them)`},
		{[]string{"dns", "update", grpc.ID, "--value", "grpc.example.test"}, 2, "makes a CNAME loop: grpc.example.test -> grpc.example.test"},
		{[]string{"dns", "update", grpc.ID}, 2, "say what to change"},
		{[]string{"dns", "domain", "add", "bad_domain.test"}, 2, `invalid domain "bad_domain.test": must be a domain name`},
		{[]string{"dns", "domain", "add", "sub.example.test"}, 1, "domain sub.example.test is inside domain example.test"},
		{[]string{"dns", "resolve", "x.example.test", "--type", "BOGUS"}, 2, `invalid value "BOGUS" for --type`},
	}
	for _, tt := range tests {
		before, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runDNSTest(t, path, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.err) {
			t.Errorf("albctl %s: exit %d\n%s\nwant exit %d and %q", strings.Join(tt.args, " "), code, errOut, tt.code, tt.err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Errorf("albctl %s changed the state file", strings.Join(tt.args, " "))
		}
	}
}

func TestDNSServeFollowsStateFile(t *testing.T) {
	path := dnsTestEnv(t)
	lbName := verifiedDNSState(t, path)
	mustDNSTest(t, path, nil, "dns", "add", "--domain", "example.test", "--type", "CNAME", "--host", "grpc", "--value", lbName)

	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"--state", path, "dns", "serve", "--listen", "127.0.0.1:0"}, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("dns serve exited %d: %s", code, errOut.String())
			}
		case <-time.After(5 * time.Second):
			t.Error("dns serve did not stop")
		}
	})

	addrRE := regexp.MustCompile(`DNS server on (\S+) \(UDP and TCP\) for example.test, local.alb.albctl.test`)
	var addr string
	waitForDNS(t, "the server to start", func() bool {
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	query := func(name string) *dns.Msg {
		t.Helper()
		c := &dns.Client{Timeout: 2 * time.Second}
		r, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), addr)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := query("grpc.example.test."); len(r.Answer) != 2 || r.Answer[1].(*dns.A).A.String() != "127.0.0.1" {
		t.Fatalf("grpc.example.test: %v", r)
	}

	mustDNSTest(t, path, nil, "dns", "add", "--domain", "example.test", "--type", "A", "--host", "new", "--value", "10.2.3.4")
	waitForDNS(t, "the new record", func() bool { return len(query("new.example.test.").Answer) == 1 })

	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitForDNS(t, "the corrupt state to be reported", func() bool {
		return strings.Contains(errOut.String(), "still serving the last good state")
	})
	if r := query("new.example.test."); len(r.Answer) != 1 {
		t.Errorf("after a corrupt state file the server answers %v", r)
	}
}

func waitForDNS(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
