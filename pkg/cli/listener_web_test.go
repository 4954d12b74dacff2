package cli

import (
	"os"
	"strings"
	"testing"
)

// TestListenerWebSettings sets, shows and turns off a listener's gRPC-Web setting, and checks
// that each bad value is refused naming its flag, with the state file untouched.
func TestListenerWebSettings(t *testing.T) {
	path := walkthrough(t)
	l := decode[[]struct{ ID string }](t, mustRun(t, path, "listener", "list", "-o", "json"))[0]
	mustRun(t, path, "servergroup", "create", "--name", "web", "--protocol", "HTTP")
	mustRun(t, path, "listener", "create", "--lb", "demo", "--protocol", "HTTP", "--port", "8080", "--server-group", "web")
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--web-protocols", "grpcweb"}, `invalid value "grpcweb" for --web-protocols: must be grpc-web or connect, or both`},
		{[]string{"--web-protocols", "grpc-web,grpc-web"}, `invalid value "grpc-web" for --web-protocols: listed twice`},
		{[]string{"--cors-allow-origin", "https://app.example.test"}, "--cors-allow-origin applies to gRPC-Web calls: turn them on with --web-protocols grpc-web"},
		{[]string{"--web-protocols", "grpc-web", "--cors-allow-origin", "https://app.example.test/page"}, `invalid value "https://app.example.test/page" for --cors-allow-origin: must be * or an origin`},
		{[]string{"--web-protocols", "grpc-web", "--cors-allow-origin", "app.example.test"}, `for --cors-allow-origin`},
		{[]string{"--web-protocols", "grpc-web", "--cors-allow-origin", "*", "--cors-allow-credentials"}, "--cors-allow-credentials: browsers send credentials only to a listener that names their page's origin"},
		{[]string{"--web-protocols", "grpc-web", "--cors-allow-header", "x a"}, `invalid value "x a" for --cors-allow-header`},
		{[]string{"--web-protocols", "grpc-web", "--cors-max-age", "48h"}, `invalid value "172800s" for --cors-max-age: must be 0s-86400s`},
		{[]string{"--web-protocols", "none", "--cors-max-age", "1h"}, "turns gRPC-Web off: give it without --cors-max-age"},
	} {
		args := append([]string{"listener", "update", l.ID}, c.args...)
		r := run(t, path, args...)
		if r.code != ExitUsage || !strings.Contains(r.err, c.want) {
			t.Errorf("albctl %s: exit %d, stderr %q; want exit %d and %q", strings.Join(args, " "), r.code, r.err, ExitUsage, c.want)
		}
		if after, _ := os.ReadFile(path); string(after) != string(before) {
			t.Fatalf("albctl %s changed the state file", strings.Join(args, " "))
		}
	}
	http := decode[[]struct{ ID, Protocol string }](t, mustRun(t, path, "listener", "list", "-o", "json"))
	for _, h := range http {
		if h.Protocol != "HTTP" {
			continue
		}
		if r := run(t, path, "listener", "update", h.ID, "--web-protocols", "grpc-web"); r.code != ExitUsage || !strings.Contains(r.err, "gRPC-Web needs an HTTPS listener in front of a gRPC server group") {
			t.Errorf("gRPC-Web on an HTTP listener: exit %d, %q", r.code, r.err)
		}
	}

	mustRun(t, path, "listener", "update", l.ID, "--web-protocols", "grpc-web,connect", "--cors-allow-origin", "https://App.example.test",
		"--cors-allow-origin", "https://*.example.test", "--cors-allow-header", "Authorization", "--cors-max-age", "2h")
	type cors struct {
		AllowOrigins, AllowHeaders []string
		MaxAge                     string
	}
	got := decode[struct {
		WebProtocols []string
		CORS         *cors
	}](t, mustRun(t, path, "listener", "get", l.ID, "-o", "json"))
	if strings.Join(got.WebProtocols, ",") != "grpc-web,connect" || got.CORS == nil ||
		strings.Join(got.CORS.AllowOrigins, " ") != "https://app.example.test https://*.example.test" ||
		strings.Join(got.CORS.AllowHeaders, " ") != "authorization" || got.CORS.MaxAge != "7200s" {
		t.Fatalf("listener after update: %+v %+v", got, got.CORS)
	}
	table := mustRun(t, path, "listener", "get", l.ID)
	for _, want := range []string{"grpc-web, connect", "https://app.example.test, https://*.example.test", "authorization", "7200s"} {
		if !strings.Contains(table, want) {
			t.Errorf("listener get lacks %q:\n%s", want, table)
		}
	}
	// Another origin replaces the list; the other settings stay.
	mustRun(t, path, "listener", "update", l.ID, "--cors-allow-origin", "http://127.0.0.1:8080")
	got = decode[struct {
		WebProtocols []string
		CORS         *cors
	}](t, mustRun(t, path, "listener", "get", l.ID, "-o", "json"))
	if strings.Join(got.CORS.AllowOrigins, " ") != "http://127.0.0.1:8080" || got.CORS.MaxAge != "7200s" {
		t.Errorf("after a new origin: %+v", got.CORS)
	}
	mustRun(t, path, "listener", "update", l.ID, "--web-protocols", "none")
	got = decode[struct {
		WebProtocols []string
		CORS         *cors
	}](t, mustRun(t, path, "listener", "get", l.ID, "-o", "json"))
	if got.WebProtocols != nil || got.CORS != nil {
		t.Errorf("--web-protocols none left %+v", got)
	}
}
