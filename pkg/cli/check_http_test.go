package cli

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/albctl/albctl/internal/testutil"
)

// check on listeners of an HTTP server group, plaintext and HTTPS: the call step is an HTTP
// request through the listener.
func TestCheckHTTPListeners(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(backend.Close)

	path := newState(t)
	mustRun(t, path, "lb", "create", "--name", "web")
	mustRun(t, path, "servergroup", "create", "--name", "site", "--protocol", "HTTP")
	mustRun(t, path, "servergroup", "add-servers", "site", "--server", backend.Listener.Addr().String())
	mustRun(t, path, "cert", "create", "--name", "web-ip", "--domain", "127.0.0.1")
	plain, secure := testutil.FreePort(t), testutil.FreePort(t)
	mustRun(t, path, "listener", "create", "--lb", "web", "--protocol", "HTTP", "--port", itoa(plain), "--server-group", "site")
	mustRun(t, path, "listener", "create", "--lb", "web", "--protocol", "HTTPS", "--port", itoa(secure), "--cert", "web-ip", "--server-group", "site")
	_, stderr := startServeProcess(t, path)

	for _, tc := range []struct {
		args   []string
		code   int
		want   string
		passed int
	}{
		{[]string{"127.0.0.1:" + itoa(plain)}, 0, "HEAD / → 200 OK (HTTP/1.1)", 8},
		{[]string{"127.0.0.1:" + itoa(secure), "/x"}, 0, "GET /x → 200 OK (HTTP/2.0)", 8},
		{[]string{"127.0.0.1:" + itoa(secure)}, 0, "covers 127.0.0.1", 8},
		{[]string{"127.0.0.1:" + itoa(plain), "/fail"}, 1, "GET /fail through 127.0.0.1:" + itoa(plain) + ": 500 Internal Server Error, want no 5xx", 7},
		{[]string{"127.0.0.1:" + itoa(plain), "healthz"}, 1, `invalid path "healthz"`, 3},
	} {
		r := run(t, path, append([]string{"check"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.out, tc.want) || strings.Count(r.out, "PASS\t") != tc.passed {
			t.Fatalf("albctl check %s: exit %d, want %d with %q and %d steps passed\n%s%s\nserve:\n%s",
				strings.Join(tc.args, " "), r.code, tc.code, tc.want, tc.passed, r.out, r.err, stderr.String())
		}
	}
}
