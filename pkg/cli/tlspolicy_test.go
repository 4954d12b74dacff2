package cli

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/albctl/albctl/pkg/probe"
)

type tlsPolicyJSON struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	System      bool     `json:"system"`
	MinVersion  string   `json:"minVersion"`
	MaxVersion  string   `json:"maxVersion"`
	Ciphers     []string `json:"ciphers"`
	Unsupported []string `json:"unsupported"`
}

// tlsPolicyScene is the walkthrough with an HTTP listener beside the HTTPS one, and the IDs of
// both.
func tlsPolicyScene(t *testing.T) (path, https, http string) {
	path = walkthrough(t)
	mustRun(t, path, "servergroup", "create", "--name", "web", "--protocol", "HTTP")
	http = decode[map[string]any](t, mustRun(t, path, "listener", "create", "--lb", "demo", "--protocol", "HTTP", "--port", "8080",
		"--server-group", "web", "-o", "json"))["id"].(string)
	https = strings.Fields(mustRun(t, path, "listener", "list"))[0]
	return path, https, http
}

func TestTLSPolicyRoundTrip(t *testing.T) {
	path, lsn, _ := tlsPolicyScene(t)
	list := decode[[]tlsPolicyJSON](t, mustRun(t, path, "tls-policy", "list", "-o", "json"))
	var names []string
	for _, p := range list {
		names = append(names, p.Name)
	}
	if want := []string{"tls_cipher_policy_1_0", "tls_cipher_policy_1_1", "tls_cipher_policy_1_2", "tls_cipher_policy_1_2_strict",
		"tls_cipher_policy_1_2_strict_with_1_3"}; !slices.Equal(names, want) {
		t.Fatalf("system policies %v, want %v", names, want)
	}
	if p := list[0]; !p.System || p.ID != p.Name || p.MinVersion != "TLSv1.0" || p.MaxVersion != "TLSv1.2" || len(p.Ciphers) != 16 ||
		!slices.Equal(p.Unsupported, []string{"ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384", "AES256-SHA256"}) {
		t.Fatalf("tls_cipher_policy_1_0: %+v", p)
	}

	// In a pipe the table is tab-separated: ID, name, versions, suites, unsupported suites.
	row := strings.Split(strings.Split(mustRun(t, path, "tls-policy", "list"), "\n")[3], "\t")
	if want := []string{"tls_cipher_policy_1_2_strict", "tls_cipher_policy_1_2_strict", "TLSv1.2",
		"ECDHE-ECDSA-AES128-GCM-SHA256,ECDHE-ECDSA-AES256-GCM-SHA384,ECDHE-ECDSA-AES128-SHA256,ECDHE-RSA-AES128-GCM-SHA256,ECDHE-RSA-AES256-GCM-SHA384,ECDHE-RSA-AES128-SHA256,ECDHE-ECDSA-AES128-SHA,ECDHE-ECDSA-AES256-SHA,ECDHE-RSA-AES128-SHA,ECDHE-RSA-AES256-SHA",
		"ECDHE-ECDSA-AES256-SHA384 (not in Go),ECDHE-RSA-AES256-SHA384 (not in Go)"}; !slices.Equal(row, want) {
		t.Fatalf("tls-policy list row:\n%q\nwant\n%q", row, want)
	}

	created := decode[tlsPolicyJSON](t, mustRun(t, path, "tls-policy", "create", "--name", "ecdhe-gcm", "--min-version", "tlsv1.2",
		"--ciphers", "ecdhe-ecdsa-aes128-gcm-sha256", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256,ECDHE-ECDSA-AES128-SHA", "-o", "json"))
	if !strings.HasPrefix(created.ID, "tlsp-") || created.System || created.MinVersion != "TLSv1.2" || created.MaxVersion != "TLSv1.3" ||
		!slices.Equal(created.Ciphers, []string{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-SHA",
			"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}) {
		t.Fatalf("created %+v", created)
	}
	got := strings.ReplaceAll(mustRun(t, path, "tls-policy", "get", created.ID), created.ID, "tlsp-ID")
	want := `ID:          tlsp-ID
Name:        ecdhe-gcm
Type:        custom
Versions:    TLSv1.2-TLSv1.3
Ciphers:     ECDHE-ECDSA-AES128-GCM-SHA256
             ECDHE-RSA-AES128-GCM-SHA256
             ECDHE-ECDSA-AES128-SHA
             TLS_AES_128_GCM_SHA256
             TLS_AES_256_GCM_SHA384
             TLS_CHACHA20_POLY1305_SHA256
Unsupported: -
`
	if got != want {
		t.Fatalf("tls-policy get:\n%s\nwant:\n%s", got, want)
	}
	mustRun(t, path, "tls-policy", "create", "--name", "tls13-only", "--min-version", "TLSv1.3")
	if list := decode[[]tlsPolicyJSON](t, mustRun(t, path, "tls-policy", "list", "-o", "json")); len(list) != 7 || list[6].Name != "tls13-only" || list[6].MinVersion != "TLSv1.3" {
		t.Fatalf("list after create: %+v", list)
	}

	// A listener shows the default's name until it is given a policy, and is stored as before.
	if got := mustRun(t, path, "listener", "get", lsn); !regexp.MustCompile(`\nTLS policy: +tls_cipher_policy_1_2_strict_with_1_3\n`).MatchString(got) {
		t.Fatalf("listener get:\n%s", got)
	}
	if got := mustRun(t, path, "listener", "get", lsn, "-o", "json"); strings.Contains(got, "tlsPolicy") {
		t.Fatalf("a listener without a policy gained one:\n%s", got)
	}
	mustRun(t, path, "listener", "update", lsn, "--tls-policy", "ecdhe-gcm")
	if got := decode[map[string]any](t, mustRun(t, path, "listener", "get", lsn, "-o", "json"))["tlsPolicy"]; got != created.ID {
		t.Fatalf("stored tlsPolicy %v, want the ID %s", got, created.ID)
	}
	if got := mustRun(t, path, "listener", "list"); !strings.Contains(got, "\tgrpc-backends\tecdhe-gcm\n") || !strings.Contains(got, "\tHTTP\t8080\tfalse\t-\tweb\t-\n") {
		t.Fatalf("listener list:\n%s", got)
	}
	mustRun(t, path, "listener", "update", lsn, "--tls-policy", "tls_cipher_policy_1_1")
	if got := mustRun(t, path, "listener", "get", lsn); !regexp.MustCompile(`\nTLS policy: +tls_cipher_policy_1_1\n`).MatchString(got) {
		t.Fatalf("listener get:\n%s", got)
	}
	mustRun(t, path, "listener", "create", "--lb", "demo", "--port", "9443", "--cert", "grpc-example", "--server-group", "grpc-backends",
		"--tls-policy", created.ID)

	if deleted := decode[tlsPolicyJSON](t, mustRun(t, path, "tls-policy", "delete", "tls13-only", "-o", "json")); deleted.Name != "tls13-only" {
		t.Fatalf("deleted %+v", deleted)
	}
	if r := run(t, path, "tls-policy", "get", "tls13-only"); r.code != 1 {
		t.Fatalf("deleted policy still there: %+v", r)
	}
}

func TestTLSPolicyRefusedInputLeavesStateUnchanged(t *testing.T) {
	path, lsn, http := tlsPolicyScene(t)
	id := decode[tlsPolicyJSON](t, mustRun(t, path, "tls-policy", "create", "--name", "ecdhe-gcm", "--min-version", "TLSv1.2",
		"--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256", "-o", "json")).ID
	mustRun(t, path, "listener", "update", lsn, "--tls-policy", "ecdhe-gcm")
	create := func(extra ...string) []string {
		return append([]string{"tls-policy", "create", "--name", "custom"}, extra...)
	}
	tls13 := "Go always offers TLS 1.3's suites (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256) with TLS 1.3, and they cannot be chosen"
	usage := func(cmd string) string { return "\nRun 'albctl " + cmd + " --help' for usage.\n" }
	tests := []struct {
		args []string
		code int
		err  string
	}{
		{create("--min-version", "TLSv1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256,RC4-MD5"), 2,
			`invalid value "RC4-MD5" for --ciphers: unknown cipher suite: use the OpenSSL names that 'albctl tls-policy list' shows, such as ECDHE-ECDSA-AES128-GCM-SHA256` + usage("tls-policy create")},
		{create("--min-version", "TLSv1.2", "--ciphers", "AES256-SHA256"), 2,
			`invalid value "AES256-SHA256" for --ciphers: Go's TLS does not implement this suite, so albctl cannot offer it` + usage("tls-policy create")},
		{create("--min-version", "TLSv1.2", "--ciphers", "TLS_AES_128_GCM_SHA256"), 2,
			`invalid value "TLS_AES_128_GCM_SHA256" for --ciphers: a suite of TLS 1.3: ` + tls13 + usage("tls-policy create")},
		{create("--min-version", "TLSv1.3", "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"), 2,
			`invalid value "ECDHE-ECDSA-AES128-GCM-SHA256" for --ciphers: a TLSv1.3-only policy takes no ciphers: ` + tls13 + usage("tls-policy create")},
		{create("--min-version", "TLSv1.0"), 2,
			`invalid value "" for --ciphers: a policy that offers TLSv1.0 needs at least one suite of TLS 1.2 and below, such as ECDHE-ECDSA-AES128-GCM-SHA256` + usage("tls-policy create")},
		{create("--min-version", "1.2", "--ciphers", "AES128-SHA"), 2,
			`invalid value "1.2" for --min-version: must be TLSv1.0, TLSv1.1, TLSv1.2, TLSv1.3` + usage("tls-policy create")},
		{create("--ciphers", "AES128-SHA"), 2, `required flag(s) "min-version" not set` + usage("tls-policy create")},
		{[]string{"tls-policy", "create", "--name", "ecdhe-gcm", "--min-version", "TLSv1.3"}, 1, `a TLS policy named "ecdhe-gcm" already exists` + "\n"},
		{[]string{"tls-policy", "create", "--name", "tls_cipher_policy_1_0", "--min-version", "TLSv1.3"}, 1,
			"tls_cipher_policy_1_0 is the name of a system policy: choose another\n"},
		{[]string{"tls-policy", "delete", "ecdhe-gcm"}, 1,
			"TLS policy ecdhe-gcm is used by listeners " + lsn + " (port 8443): give them another with 'albctl listener update LISTENER --tls-policy POLICY' first\n"},
		{[]string{"tls-policy", "delete", "tls_cipher_policy_1_2"}, 1, "tls_cipher_policy_1_2 is a system policy: only custom policies can be deleted\n"},
		{[]string{"tls-policy", "get", "nope"}, 1, `TLS policy "nope" not found ('albctl tls-policy list' shows them)` + "\n"},
		{[]string{"listener", "update", lsn, "--tls-policy", "nope"}, 1, `TLS policy "nope" not found ('albctl tls-policy list' shows them)` + "\n"},
		{[]string{"listener", "update", http, "--tls-policy", "tls_cipher_policy_1_0"}, 2,
			`invalid value "tls_cipher_policy_1_0" for --tls-policy: only HTTPS listeners take a TLS policy` + usage("listener update")},
		{[]string{"listener", "create", "--lb", "demo", "--protocol", "HTTP", "--port", "8081", "--server-group", "web", "--tls-policy", id}, 2,
			`invalid value "ecdhe-gcm" for --tls-policy: only HTTPS listeners take a TLS policy` + usage("listener create")},
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		r := run(t, path, tt.args...)
		if r.code != tt.code || r.err != "Error: "+tt.err || r.out != "" {
			t.Errorf("albctl %s:\nexit %d, stderr %q, stdout %q\nwant exit %d, stderr %q", strings.Join(tt.args, " "), r.code, r.err, r.out, tt.code, "Error: "+tt.err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatalf("albctl %s changed the state file", strings.Join(tt.args, " "))
		}
	}
}

func TestTLSPolicyCompletion(t *testing.T) {
	path, lsn, _ := tlsPolicyScene(t)
	id := decode[tlsPolicyJSON](t, mustRun(t, path, "tls-policy", "create", "--name", "ecdhe-gcm", "--min-version", "TLSv1.2",
		"--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256", "-o", "json")).ID
	custom := id + "\tecdhe-gcm\necdhe-gcm\t" + id + "\n:4\n"
	tests := []struct {
		args       []string
		start, end string
	}{
		{[]string{"listener", "update", lsn, "--tls-policy", ""}, "tls_cipher_policy_1_0\tTLS 1.0 to 1.2 with every suite", custom},
		{[]string{"listener", "create", "--tls-policy", ""}, "tls_cipher_policy_1_0\t", custom},
		{[]string{"tls-policy", "get", ""}, "tls_cipher_policy_1_0\t", custom},
		{[]string{"tls-policy", "delete", ""}, custom, custom},
		{[]string{"tls-policy", "create", "--min-version", ""}, "TLSv1.0\nTLSv1.1\nTLSv1.2\nTLSv1.3\n:4\n", ":4\n"},
		{[]string{"tls-policy", "create", "--ciphers", ""}, "ECDHE-ECDSA-AES128-GCM-SHA256\nECDHE-ECDSA-AES256-GCM-SHA384\nECDHE-ECDSA-AES128-SHA256\nECDHE-RSA-AES128-GCM-SHA256\n", ":4\n"},
	}
	for _, tt := range tests {
		got := mustRun(t, path, append([]string{"__complete"}, tt.args...)...)
		if !strings.HasPrefix(got, tt.start) || !strings.HasSuffix(got, tt.end) {
			t.Errorf("completion of %q:\n%q\nwant it to start with %q and end with %q", tt.args, got, tt.start, tt.end)
		}
	}
}

// TestProbeHintNamesThePolicy: a handshake a listener refused is explained by its TLS policy.
func TestProbeHintNamesThePolicy(t *testing.T) {
	path := walkthrough(t)
	l := decode[[]struct{ ID string }](t, mustRun(t, path, "listener", "list", "-o", "json"))[0]
	mustRun(t, path, "listener", "update", l.ID, "--tls-policy", "tls_cipher_policy_1_2_strict")
	a := &app{statePath: path}
	s, err := a.store().Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hint := a.probeHint(s, probe.Failure{Kind: probe.FailTLSHandshake, Target: "grpc.example.test:8443"})
	if !strings.HasPrefix(hint, "listener "+l.ID+"'s TLS policy tls_cipher_policy_1_2_strict allows TLSv1.2 to TLSv1.2 with ECDHE-") {
		t.Fatalf("hint %q", hint)
	}
}
