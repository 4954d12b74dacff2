package probe

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/albctl/albctl/internal/testutil"
)

const svcName = "grpc.testing.TestService"

func TestListAndDescribe(t *testing.T) {
	addr := startGRPC(t, nil, true)
	cases := []struct {
		golden string
		args   []string
	}{
		{"list.golden", []string{"list"}},
		{"list_methods.golden", []string{"list", svcName}},
		{"describe_service.golden", []string{"describe", svcName}},
		{"describe_message.golden", []string{"describe", "grpc.testing.SimpleRequest"}},
		{"describe_method.golden", []string{"describe", ".grpc.testing.TestService.UnaryCall"}},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			res := probe(t, Env{}, append([]string{"-plaintext", addr}, c.args...)...)
			if res.code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
			}
			checkGolden(t, c.golden, res.stdout)
		})
	}
}

func TestCallKinds(t *testing.T) {
	addr := startGRPC(t, nil, true)
	cases := []struct {
		golden string
		args   []string
	}{
		{"unary.golden", []string{"-d", `{"payload": {"body": "aGVsbG8="}}`, addr, svcName + "/UnaryCall"}},
		{"empty.golden", []string{addr, svcName + ".EmptyCall"}},
		{"server_stream.golden", []string{"-d", `{"response_parameters": [{"size": 2}, {"size": 3}]}`, addr, svcName + "/StreamingOutputCall"}},
		{"client_stream.golden", []string{"-d", `{"payload": {"body": "YWI="}} {"payload": {"body": "Y2Rl"}}`, addr, svcName + "/StreamingInputCall"}},
		{"bidi.golden", []string{"-d", `{"payload": {"body": "YQ=="}}{"payload": {"body": "Yg=="}}`, addr, svcName + "/FullDuplexCall"}},
		{"unary_text.golden", []string{"-format", "text", "-d", `payload: {body: "hi"}`, addr, svcName + "/UnaryCall"}},
		{"emit_defaults.golden", []string{"-emit-defaults", addr, svcName + "/StreamingInputCall"}},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			res := probe(t, Env{}, append([]string{"-plaintext"}, c.args...)...)
			if res.code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
			}
			checkGolden(t, c.golden, res.stdout)
		})
	}
}

func TestDataFromStdin(t *testing.T) {
	addr := startGRPC(t, nil, true)
	env := Env{Stdin: strings.NewReader(`{"payload": {"body": "aGk="}}`)}
	res := probe(t, env, "-plaintext", "-d", "@", addr, svcName+"/UnaryCall")
	if res.code != 0 || !strings.Contains(res.stdout, `"body": "aGk="`) {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}

func TestStatusExitCodes(t *testing.T) {
	addr := startGRPC(t, nil, true)
	res := probe(t, Env{}, "-plaintext", addr, svcName+"/UnimplementedCall")
	if res.code != 64+12 {
		t.Errorf("UnimplementedCall: exit %d, want 76", res.code)
	}
	want := "ERROR:\n  Code: Unimplemented\n  Message: method UnimplementedCall not implemented\n"
	if res.stderr != want || res.stdout != "" {
		t.Errorf("UnimplementedCall: stdout %q, stderr %q, want stderr %q", res.stdout, res.stderr, want)
	}

	res = probe(t, Env{}, "-plaintext", "-d", `{"response_status": {"code": 5, "message": "no such thing"}}`, addr, svcName+"/UnaryCall")
	if res.code != 64+5 || res.stderr != "ERROR:\n  Code: NotFound\n  Message: no such thing\n" {
		t.Errorf("NOT_FOUND: exit %d, stderr %q", res.code, res.stderr)
	}

	res = probe(t, Env{}, "-plaintext", "-format-error", "-d", `{"response_status": {"code": 5, "message": "no such thing"}}`, addr, svcName+"/UnaryCall")
	if res.code != 64+5 || !strings.Contains(res.stderr, `"code": 5`) {
		t.Errorf("-format-error: exit %d, stderr %q", res.code, res.stderr)
	}

	// A service the server does not have is an error of the probe (exit 1),
	// as in grpcurl, because the method cannot be resolved.
	res = probe(t, Env{}, "-plaintext", addr, "no.Such/Method")
	if res.code != 1 || !strings.Contains(res.stderr, `target server does not expose service "no.Such"`) {
		t.Errorf("unknown service: exit %d, stderr %q", res.code, res.stderr)
	}
}

// TestVerbose covers -v over TLS with a name resolved through Env.Resolve:
// the connection lines on stderr and grpcurl's blocks on stdout.
func TestVerbose(t *testing.T) {
	pki := newTestPKI(t)
	addr := startGRPC(t, serverTLS(pki.valid), true)
	_, port, _ := net.SplitHostPort(addr)
	target := net.JoinHostPort(testServerName, port)
	env := Env{Resolve: fakeResolve}

	res := probe(t, env, "-cacert", pki.caFile, "-v", "-H", "x-probe: yes", "-d", `{"payload": {"body": "aGk="}}`, target, svcName+"/UnaryCall")
	if res.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
	checkGolden(t, "verbose_tls.golden", normalise("== stderr ==\n"+res.stderr+"== stdout ==\n"+res.stdout, addr))

	res = probe(t, env, "-insecure", "-v", target, svcName+"/UnimplementedCall")
	if res.code != 76 {
		t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
	checkGolden(t, "verbose_insecure_error.golden", normalise("== stderr ==\n"+res.stderr+"== stdout ==\n"+res.stdout, addr))

	res = probe(t, env, "-cacert", pki.caFile, "-vv", target, svcName+"/EmptyCall")
	if res.code != 0 || !strings.Contains(res.stdout, "\nTiming Data: ") || !strings.Contains(res.stdout, "\n  Dial: ") {
		t.Fatalf("-vv: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}

func TestTLSOptions(t *testing.T) {
	pki := newTestPKI(t)
	addr := startGRPC(t, serverTLS(pki.valid), true)
	// Dial the IP but verify the certificate against the name it carries.
	for _, flagName := range []string{"-servername", "--authority"} {
		res := probe(t, Env{}, "-cacert", pki.caFile, flagName, testServerName, addr, "list")
		if res.code != 0 || !strings.Contains(res.stdout, svcName) {
			t.Errorf("%s: exit %d, stderr:\n%s", flagName, res.code, res.stderr)
		}
	}
}

func TestResolverFlag(t *testing.T) {
	pki := newTestPKI(t)
	addr := startGRPC(t, serverTLS(pki.valid), true)
	_, port, _ := net.SplitHostPort(addr)
	server := startDNS(t)

	res := probe(t, Env{}, "--resolver", server, "--cacert", pki.caFile, "-v", net.JoinHostPort(testServerName, port), "list")
	if res.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
	for _, want := range []string{
		"*   grpc.example.test CNAME alb-x.local.alb.albctl.test\n",
		"*   alb-x.local.alb.albctl.test A 127.0.0.1\n",
		"* Connected to " + addr + "\n",
	} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
		}
	}

	res = probe(t, Env{}, "--resolver", server, "nope.example.test:443", "list")
	if res.code != 1 || !strings.HasPrefix(res.stderr, `ERROR: unknown host "nope.example.test": no such host`) {
		t.Errorf("NXDOMAIN: exit %d, stderr %q", res.code, res.stderr)
	}
}

// TestFailures checks that each way of not reaching a gRPC server gives one
// ERROR line naming the cause, a hint, exit 1, and no waiting.
func TestFailures(t *testing.T) {
	pki := newTestPKI(t)
	plainAddr := startGRPC(t, nil, true)
	tlsAddr := startGRPC(t, serverTLS(pki.valid), true)
	expiredAddr := startGRPC(t, serverTLS(pki.expired), true)
	noReflectionAddr := startGRPC(t, nil, false)
	http11Addr := startTLSOnly(t, pki.valid, []string{"http/1.1"})
	noALPNAddr := startTLSOnly(t, pki.valid, nil)
	http1Addr := startRaw(t, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
	// albctl's listeners answer plaintext with a 400 that names the problem.
	httpsAddr := startRaw(t, "HTTP/1.0 400 Bad Request\r\nConnection: close\r\n\r\nThis port expects TLS with HTTP/2 (gRPC); the client sent plaintext.\n")
	refusedAddr := testutil.ClosedAddr(t)
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	unknownName := func(context.Context, string) ([]string, []string, error) {
		return nil, nil, &net.DNSError{Err: "no such host", Name: "nope.example.test", IsNotFound: true}
	}

	cases := []struct {
		name string
		env  Env
		args []string
		kind FailureKind
		want string // start of the ERROR line, after "ERROR: "
	}{
		{"unknown name", Env{Resolve: unknownName}, []string{"nope.example.test:443", "list"},
			FailResolve, `unknown host "nope.example.test": no such host`},
		{"refused", Env{}, []string{"-plaintext", refusedAddr, "list"},
			FailRefused, "connection refused by " + refusedAddr},
		{"unknown authority", Env{}, []string{"-servername", testServerName, tlsAddr, "list"},
			FailTLSUnknownAuthority, "TLS handshake with " + tlsAddr + ` failed: certificate signed by unknown authority (issuer "CN=albctl test CA")`},
		{"name mismatch", Env{}, []string{"-cacert", pki.caFile, tlsAddr, "list"},
			FailTLSNameMismatch, "TLS handshake with " + tlsAddr + " failed: certificate is valid for grpc.example.test, not 127.0.0.1"},
		{"name mismatch via resolver", Env{Resolve: func(context.Context, string) ([]string, []string, error) {
			return []string{"127.0.0.1"}, nil, nil
		}}, []string{"-cacert", pki.caFile, "other.example.test:" + tlsPort, "list"},
			FailTLSNameMismatch, "TLS handshake with " + tlsAddr + " failed: certificate is valid for grpc.example.test, not other.example.test"},
		{"expired", Env{}, []string{"-cacert", pki.caFile, "-servername", testServerName, expiredAddr, "list"},
			FailTLSExpired, "TLS handshake with " + expiredAddr + " failed: certificate expired at 2021-01-01T00:00:00Z"},
		{"ALPN refused", Env{}, []string{"-insecure", http11Addr, "list"},
			FailNoH2, "server at " + http11Addr + " refused ALPN h2"},
		{"no ALPN", Env{}, []string{"-insecure", noALPNAddr, "list"},
			FailNoH2, "server at " + noALPNAddr + " did not negotiate ALPN h2"},
		{"plaintext server, TLS dial", Env{}, []string{plainAddr, "list"},
			FailNotTLS, "server at " + plainAddr + " answered in plaintext, not TLS (it looks like an HTTP/2 SETTINGS frame)"},
		{"TLS server, plaintext dial", Env{}, []string{"-plaintext", tlsAddr, "list"},
			FailTLSServer, "server at " + tlsAddr + " closed the connection instead of answering the HTTP/2 preface"},
		{"HTTPS server, plaintext dial", Env{}, []string{"-plaintext", httpsAddr, "list"},
			FailTLSServer, "server at " + httpsAddr + " says it is an HTTPS port: it expects TLS, not plaintext"},
		{"HTTP/1 server, plaintext dial", Env{}, []string{"-plaintext", http1Addr, "list"},
			FailNoH2, "server at " + http1Addr + " answered with HTTP/1.x"},
		{"no reflection, list", Env{}, []string{"-plaintext", noReflectionAddr, "list"},
			FailNoReflection, "server at " + noReflectionAddr + " does not support the reflection API"},
		{"no reflection, call", Env{}, []string{"-plaintext", noReflectionAddr, svcName + "/EmptyCall"},
			FailNoReflection, "server at " + noReflectionAddr + " does not support the reflection API"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var hinted FailureKind
			c.env.Hint = func(f Failure) string {
				hinted = f.Kind
				return ""
			}
			res := probe(t, c.env, append([]string{"-connect-timeout", "5"}, c.args...)...)
			t.Logf("%s in %s", res.stderr, res.elapsed)
			if res.code != 1 {
				t.Errorf("exit %d, want 1", res.code)
			}
			lines := strings.Split(strings.TrimSuffix(res.stderr, "\n"), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "ERROR: "+c.want) || !strings.HasPrefix(lines[1], "  hint: ") {
				t.Errorf("stderr:\n%s\nwant ERROR: %s...\nand a hint line", res.stderr, c.want)
			}
			if hinted != c.kind {
				t.Errorf("failure kind %q, want %q", hinted, c.kind)
			}
			if res.elapsed > 3*time.Second {
				t.Errorf("took %s; failures should be reported at once", res.elapsed)
			}
		})
	}
}

// TestRefusedIsFast makes sure a refused port is reported at once rather
// than after the connect timeout, and that Env.Hint's text is used.
func TestRefusedIsFast(t *testing.T) {
	addr := testutil.ClosedAddr(t)
	env := Env{Hint: func(f Failure) string {
		return fmt.Sprintf("no listener on port %s", f.Port())
	}}
	res := probe(t, env, "-plaintext", addr, svcName+"/EmptyCall")
	_, port, _ := net.SplitHostPort(addr)
	want := "ERROR: connection refused by " + addr + "\n  hint: no listener on port " + port + "\n"
	if res.code != 1 || res.stderr != want {
		t.Errorf("exit %d, stderr %q, want %q", res.code, res.stderr, want)
	}
	if res.elapsed >= 1500*time.Millisecond {
		t.Errorf("took %s, want well under the connect timeout", res.elapsed)
	}
}

func TestProtoSources(t *testing.T) {
	addr := startGRPC(t, nil, false)

	res := probe(t, Env{}, "-plaintext", "-proto", "empty_call.proto", "-import-path", "testdata", addr, svcName+"/EmptyCall")
	if res.code != 0 || res.stdout != "{}\n" {
		t.Errorf("-proto: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}

	protoset := writeProtoset(t, testpb.File_grpc_testing_test_proto)
	res = probe(t, Env{}, "-protoset", protoset, "list")
	if res.code != 0 || !strings.Contains(res.stdout, "\n"+svcName+"\n") {
		t.Errorf("-protoset list: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	res = probe(t, Env{}, "-plaintext", "-protoset", protoset, "-d", `{"payload": {"body": "aGk="}}`, addr, svcName+"/UnaryCall")
	if res.code != 0 || !strings.Contains(res.stdout, `"body": "aGk="`) {
		t.Errorf("-protoset call: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestUsage(t *testing.T) {
	// Like grpcurl, help goes to stderr and exits 0.
	for _, help := range []string{"-h", "--help", "-help"} {
		res := probe(t, Env{}, help)
		if res.code != 0 || res.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q", help, res.code, res.stdout)
		}
		checkGolden(t, "help.golden", res.stderr)
	}
	cases := []struct {
		args []string
		want string
	}{
		{nil, "Too few arguments.\n"},
		{[]string{"127.0.0.1:1"}, "Too few arguments.\n"},
		{[]string{"127.0.0.1:1", "a/b", "extra"}, "Too many arguments.\n"},
		{[]string{"-plaintext", "-insecure", "127.0.0.1:1", "list"}, "The -insecure argument can only be used with TLS.\n"},
		{[]string{"--format", "yaml", "127.0.0.1:1", "list"}, "The -format option must be 'json' or 'text'.\n"},
		{[]string{"-cert", "c.pem", "127.0.0.1:1", "list"}, "The -cert and -key arguments must be used together and both be present.\n"},
		{[]string{"-connect-timeout", "-1", "127.0.0.1:1", "list"}, "The -connect-timeout argument must not be negative.\n"},
		{[]string{"list"}, "No host:port specified, no protoset specified, and no proto sources specified.\n"},
		{[]string{"-nope", "127.0.0.1:1", "list"}, "flag provided but not defined: -nope\n"},
	}
	for _, c := range cases {
		res := probe(t, Env{}, c.args...)
		if res.code != 2 || !strings.HasPrefix(res.stderr, c.want) {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant it to start with %q", c.args, res.code, res.stderr, c.want)
		}
	}
}

// writeProtoset writes fd and everything it imports as a FileDescriptorSet.
func writeProtoset(t *testing.T, fd protoreflect.FileDescriptor) string {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(fd)
	data, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "test.protoset")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSystemResolver dials a name through the system resolver, which is
// asked when Env.Resolve does not know the name.
func TestSystemResolver(t *testing.T) {
	addr := startGRPC(t, nil, true)
	_, port, _ := net.SplitHostPort(addr)
	res := probe(t, Env{Resolve: fakeResolve}, "-plaintext", "-v", net.JoinHostPort("localhost", port), svcName+"/EmptyCall")
	if res.code != 0 || res.stdout == "" {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	for _, want := range []string{"* Resolving localhost (system resolver)\n", "* Connected to " + addr + "\n"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
		}
	}
}
