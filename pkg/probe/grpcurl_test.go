package probe

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSameAsGrpcurl runs grpcurl and the probe against the same server and
// compares stdout and exit codes, and stderr where both print a gRPC status.
// It needs a grpcurl binary: $GRPCURL or grpcurl on $PATH, e.g. from
// go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4.
func TestSameAsGrpcurl(t *testing.T) {
	bin := os.Getenv("GRPCURL")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("grpcurl"); err != nil {
			t.Skip("grpcurl not installed; set GRPCURL or put it on PATH")
		}
	}
	addr := startGRPC(t, nil, true)
	noReflection := startGRPC(t, nil, false)
	pki := newTestPKI(t)
	tlsAddr := startGRPC(t, serverTLS(pki.valid), true)

	cases := []struct {
		name        string
		args        []string
		stdin       string
		checkStderr bool
	}{
		{"list", []string{"-plaintext", addr, "list"}, "", false},
		{"list service", []string{"-plaintext", addr, "list", svcName}, "", false},
		{"describe", []string{"-plaintext", addr, "describe"}, "", false},
		{"describe service", []string{"-plaintext", addr, "describe", svcName}, "", false},
		{"describe message", []string{"-plaintext", addr, "describe", ".grpc.testing.StreamingOutputCallRequest"}, "", false},
		{"describe template", []string{"-plaintext", "-msg-template", addr, "describe", "grpc.testing.SimpleRequest"}, "", false},
		{"unary", []string{"-plaintext", "-d", `{"payload": {"body": "aGk="}}`, addr, svcName + "/UnaryCall"}, "", false},
		{"unary -v", []string{"-plaintext", "-v", "-H", "x-a: 1", "-d", `{"payload": {"body": "aGk="}}`, addr, svcName + "/UnaryCall"}, "", false},
		{"unary TLS -v", []string{"-cacert", pki.caFile, "-servername", testServerName, "-v", tlsAddr, svcName + "/EmptyCall"}, "", false},
		{"unary text", []string{"-plaintext", "-format", "text", "-d", `payload: {body: "hi"}`, addr, svcName + "/UnaryCall"}, "", false},
		{"stdin", []string{"-plaintext", "-d", "@", addr, svcName + "/UnaryCall"}, `{"payload": {"body": "aGk="}}`, false},
		{"server stream", []string{"-plaintext", "-d", `{"response_parameters": [{"size": 1}, {"size": 2}]}`, addr, svcName + "/StreamingOutputCall"}, "", false},
		{"client stream -v", []string{"-plaintext", "-v", "-d", `{"payload": {"body": "YQ=="}} {"payload": {"body": "Yg=="}}`, addr, svcName + "/StreamingInputCall"}, "", false},
		{"bidi", []string{"-plaintext", "-d", `{"payload": {"body": "YQ=="}} {"payload": {"body": "Yg=="}}`, addr, svcName + "/FullDuplexCall"}, "", false},
		{"emit defaults", []string{"-plaintext", "-emit-defaults", addr, svcName + "/StreamingInputCall"}, "", false},
		{"unimplemented", []string{"-plaintext", addr, svcName + "/UnimplementedCall"}, "", true},
		{"unimplemented -v", []string{"-plaintext", "-v", addr, svcName + "/UnimplementedCall"}, "", true},
		{"not found", []string{"-plaintext", "-d", `{"response_status": {"code": 5, "message": "gone"}}`, addr, svcName + "/UnaryCall"}, "", true},
		{"unknown service", []string{"-plaintext", addr, "no.Such/Method"}, "", false},
		{"no reflection", []string{"-plaintext", noReflection, "list"}, "", false},
		{"usage", []string{"-plaintext"}, "", false},
		{"help", []string{"-help"}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, c.args...)
			cmd.Stdin = strings.NewReader(c.stdin)
			var wantOut, wantErr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &wantOut, &wantErr
			wantCode := 0
			if err := cmd.Run(); err != nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatal(err)
				}
				wantCode = exit.ExitCode()
			}

			got := probe(t, Env{Stdin: strings.NewReader(c.stdin)}, c.args...)
			if got.code != wantCode {
				t.Errorf("exit %d, grpcurl exit %d\nstderr:\n%s\ngrpcurl stderr:\n%s", got.code, wantCode, got.stderr, wantErr.String())
			}
			if got.stdout != wantOut.String() {
				t.Errorf("stdout differs\n--- probe ---\n%s\n--- grpcurl ---\n%s", got.stdout, wantOut.String())
			}
			if c.checkStderr && withoutConnectionLines(got.stderr) != wantErr.String() {
				t.Errorf("stderr differs\n--- probe ---\n%s\n--- grpcurl ---\n%s", got.stderr, wantErr.String())
			}
		})
	}
}

// withoutConnectionLines drops the "* ..." lines that -v adds on stderr.
func withoutConnectionLines(s string) string {
	var kept []string
	for _, line := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(line, "* ") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "")
}
