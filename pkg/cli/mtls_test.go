package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMutualTLSEndToEnd is the mutual TLS guide's example: a client certificate from albctl's
// CA, a listener that requires one, and probe without and with it, through a real serve.
func TestMutualTLSEndToEnd(t *testing.T) {
	path, port := serveScenario(t, 0)
	out := mustRun(t, path, "cert", "create", "--client", "--name", "ci-client", "-o", "json")
	created := decode[certView](t, out)
	if created.Usage != "client" || len(created.Files) != 2 {
		t.Fatalf("cert create --client: %s", out)
	}
	certFile, keyFile := created.Files[0], created.Files[1]
	if info, err := os.Stat(keyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v %v", keyFile, info, err)
	}
	l := decode[[]struct{ ID string }](t, mustRun(t, path, "listener", "list", "-o", "json"))[0]
	mustRun(t, path, "listener", "update", l.ID, "--client-ca", "albctl-ca", "--forward-client-cert")
	got := decode[struct {
		ClientCAID, ClientAuth string
		ForwardClientCert      *struct{ Subject string }
	}](t, mustRun(t, path, "listener", "get", l.ID, "-o", "json"))
	if got.ClientCAID != "albctl-ca" || got.ClientAuth != "require" || got.ForwardClientCert == nil || got.ForwardClientCert.Subject != "x-forwarded-clientcert-subjectdn" {
		t.Fatalf("listener get: %+v", got)
	}
	verifiedDomain(t, path)
	startServeProcess(t, path)

	ca := strings.TrimSpace(mustRun(t, path, "cert", "ca"))
	target := "grpc.example.test:" + itoa(port)
	probe := []string{"probe", "-cacert", ca, "-d", `{"message": "hi"}`}
	r := run(t, path, append(probe, target, "albctl.echo.v1.Echo/UnaryEcho")...)
	if r.code == ExitOK || !strings.Contains(r.err, "requires a client certificate (mutual TLS) and none was given") || !strings.Contains(r.err, "hint: listener "+l.ID+" verifies client certificates with albctl-ca (require): pass -cert FILE -key FILE") {
		t.Fatalf("probe without a certificate: exit %d\n%s%s", r.code, r.out, r.err)
	}
	r = run(t, path, append(probe, "-cert", certFile, "-key", keyFile, target, "albctl.echo.v1.Echo/UnaryEcho")...)
	if r.code != ExitOK || !strings.Contains(r.out, `"hi"`) {
		t.Fatalf("probe with the client certificate: exit %d\n%s%s", r.code, r.out, r.err)
	}

	r = run(t, path, "check", target, "albctl.echo.v1.Echo/UnaryEcho")
	if r.code != ExitError || !strings.Contains(r.out, "FAIL\tlistener\tlistener "+l.ID+" requires a client certificate (mutual TLS, CA albctl-ca): pass --cert FILE --key FILE") {
		t.Fatalf("check without a certificate: exit %d\n%s%s", r.code, r.out, r.err)
	}
	r = run(t, path, "check", target, "albctl.echo.v1.Echo/UnaryEcho", "--cert", certFile, "--key", keyFile)
	if r.code != ExitOK || !strings.Contains(r.out, "client certificates require (CA albctl-ca)") {
		t.Fatalf("check with the client certificate: exit %d\n%s%s", r.code, r.out, r.err)
	}
}

func TestMutualTLSRefusals(t *testing.T) {
	path := walkthrough(t)
	l := decode[[]struct{ ID string }](t, mustRun(t, path, "listener", "list", "-o", "json"))[0]
	serverPEM := filepath.Join(t.TempDir(), "server.pem")
	mustRun(t, path, "cert", "create", "--client", "--name", "dev", "--cert-file", serverPEM, "--key-file", filepath.Join(t.TempDir(), "dev-key.pem"))
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cert", "import", "--name", "not-a-ca", "--cert", serverPEM, "--ca"}, ExitError, "is not a CA certificate"},
		{[]string{"cert", "import", "--name", "x", "--cert", serverPEM}, ExitUsage, "give --key FILE for a server certificate, or --ca"},
		{[]string{"listener", "update", l.ID, "--client-ca", "grpc-example"}, ExitUsage, `invalid value "grpc-example" for --client-ca: certificate grpc-example is not a CA certificate`},
		{[]string{"listener", "update", l.ID, "--client-ca", "albctl-ca", "--client-auth", "maybe"}, ExitUsage, `invalid value "maybe" for --client-auth: must be require or verify-if-given`},
		{[]string{"listener", "update", l.ID, "--forward-client-cert"}, ExitUsage, "client authentication needs a client CA (--client-ca)"},
		{[]string{"listener", "update", l.ID, "--client-ca", "albctl-ca", "--forward-client-cert", "--client-cert-headers", "subject=x-a,issuer=x-a"}, ExitUsage, "each detail needs a header of its own"},
		{[]string{"listener", "update", l.ID, "--client-ca", "albctl-ca", "--forward-client-cert", "--client-cert-headers", "subject=grpc-x"}, ExitUsage, "--client-cert-headers"},
		{[]string{"listener", "update", l.ID, "--cert", "dev"}, ExitUsage, "certificate dev is a client certificate: a listener serves a server certificate"},
		{[]string{"listener", "update", l.ID, "--clear-client-ca", "--client-auth", "require"}, ExitUsage, "--clear-client-ca turns mutual TLS off"},
		{[]string{"cert", "create", "--name", "albctl-ca", "--client"}, ExitUsage, "albctl-ca names albctl's own CA"},
	} {
		r := run(t, path, c.args...)
		if r.code != c.code || !strings.Contains(r.err, c.want) {
			t.Errorf("albctl %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), r.code, r.err, c.code, c.want)
		}
		if after, _ := os.ReadFile(path); string(after) != string(before) {
			t.Fatalf("albctl %s changed the state file", strings.Join(c.args, " "))
		}
	}
	// Mutual TLS on, then off again.
	mustRun(t, path, "listener", "update", l.ID, "--client-ca", "albctl-ca", "--client-auth", "verify-if-given")
	if r := run(t, path, "cert", "delete", "dev"); r.code != ExitOK {
		t.Fatalf("delete an unused client certificate: %s", r.err)
	}
	mustRun(t, path, "listener", "update", l.ID, "--clear-client-ca")
	if got := decode[struct{ ClientCAID string }](t, mustRun(t, path, "listener", "get", l.ID, "-o", "json")); got.ClientCAID != "" {
		t.Fatalf("--clear-client-ca left %q", got.ClientCAID)
	}
}
