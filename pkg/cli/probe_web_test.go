package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/echo/echopb"
)

// TestProbeWebProtocols calls through serve's listener that takes gRPC-Web and Connect with
// probe -protocol, with and without a page's origin: every kind of call in each protocol, an
// error's status and exit code, and a refused origin.
func TestProbeWebProtocols(t *testing.T) {
	path := newState(t)
	mustRun(t, path, "lb", "create", "--name", "demo")
	mustRun(t, path, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC")
	_, addr := testutil.StartEcho(t, echo.Options{Name: "b1"})
	mustRun(t, path, "servergroup", "add-servers", "grpc-backends", "--server", addr)
	mustRun(t, path, "cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test")
	port := testutil.FreePort(t)
	mustRun(t, path, "listener", "create", "--lb", "demo", "--port", itoa(port), "--cert", "grpc-example", "--server-group", "grpc-backends",
		"--web-protocols", "grpc-web,connect", "--cors-allow-origin", "https://app.example.test")
	startServeProcess(t, path)
	native := echoClient(t, path, port)
	testutil.WaitFor(t, "a native call through the listener", func() bool {
		_, err := native.UnaryEcho(testutil.CtxTimeout(t, time.Second), &echopb.EchoRequest{Message: "ready?"})
		return err == nil
	})
	ca := strings.TrimSpace(mustRun(t, path, "cert", "ca"))
	target := "127.0.0.1:" + itoa(port)
	probe := func(args ...string) result {
		return run(t, path, append([]string{"probe", "-cacert", ca, "-servername", "grpc.example.test"}, args...)...)
	}
	for _, protocol := range []string{"grpc-web", "grpc-web-text", "connect"} {
		t.Run(protocol, func(t *testing.T) {
			r := probe("-protocol", protocol, "-origin", "https://app.example.test", "-v", "-d", `{"message": "hi"}`, target, "albctl.echo.v1.Echo/UnaryEcho")
			if r.code != ExitOK || !strings.Contains(r.out, `"server": "b1"`) || !strings.Contains(r.err, "CORS preflight from https://app.example.test: allowed") {
				t.Fatalf("unary: exit %d\n%s%s", r.code, r.out, r.err)
			}
			r = probe("-protocol", protocol, "-d", `{"message": "s", "count": 4}`, target, "albctl.echo.v1.Echo/ServerStreamingEcho")
			if r.code != ExitOK || strings.Count(r.out, `"server": "b1"`) != 4 {
				t.Fatalf("server stream: exit %d\n%s%s", r.code, r.out, r.err)
			}
			r = probe("-protocol", protocol, "-v", "-d", `{"message": "a"} {"message": "b"}`, target, "albctl.echo.v1.Echo/ClientStreamingEcho")
			if r.code != ExitOK || !strings.Contains(r.out, `"server": "b1"`) || !strings.Contains(r.out, "Response headers received:\nx-echo-server: b1") {
				t.Fatalf("client stream: exit %d\n%s%s", r.code, r.out, r.err)
			}
			r = probe("-protocol", protocol, "-d", `{"message": "a"} {"message": "b"} {"message": "c"}`, target, "albctl.echo.v1.Echo/BidirectionalStreamingEcho")
			if r.code != ExitOK || strings.Count(r.out, `"server": "b1"`) != 3 {
				t.Fatalf("bidi stream: exit %d\n%s%s", r.code, r.out, r.err)
			}
			r = probe("-protocol", protocol, "-origin", "https://evil.example.test", target, "albctl.echo.v1.Echo/UnaryEcho")
			if r.code != 1 || !strings.Contains(r.err, "CORS preflight from https://evil.example.test refused: HTTP 403: origin https://evil.example.test is not allowed on listener") {
				t.Fatalf("a refused origin: exit %d\n%s", r.code, r.err)
			}
		})
	}
	// A status other than OK exits with it, as over gRPC: a rule answers calls that carry
	// x-closed: 1 with FAILED_PRECONDITION.
	lsn := decode[[]struct{ ID string }](t, mustRun(t, path, "listener", "list", "-o", "json"))[0].ID
	mustRun(t, path, "rule", "create", "--listener", lsn, "--priority", "1", "--match", "header:x-closed=1",
		"--fixed-response", "grpc-status=9,message=closed for the night")
	for _, protocol := range []string{"grpc", "grpc-web", "grpc-web-text", "connect"} {
		var r result
		testutil.WaitFor(t, "the rule to apply", func() bool {
			r = probe("-protocol", protocol, "-rpc-header", "x-closed: 1", target, "albctl.echo.v1.Echo/UnaryEcho")
			return r.code != ExitOK
		})
		if r.code != 64+9 || !strings.Contains(r.err, "Code: FailedPrecondition") || !strings.Contains(r.err, "Message: closed for the night") {
			t.Errorf("%s: a rule's fixed answer: exit %d\n%s", protocol, r.code, r.err)
		}
	}
	if r := run(t, path, "probe", "-origin", "https://app.example.test", target, "x/y"); r.code != ExitUsage || !strings.Contains(r.err, "-origin needs -protocol") {
		t.Errorf("-origin over gRPC: exit %d %q", r.code, r.err)
	}
	if r := run(t, path, "probe", "-protocol", "http", target, "x/y"); r.code != ExitUsage || !strings.Contains(r.err, `Invalid -protocol "http"`) {
		t.Errorf("-protocol http: exit %d %q", r.code, r.err)
	}
}
