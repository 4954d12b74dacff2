package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/echo/echopb"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/albctl/albctl/pkg/state"
)

// serveScenario builds the tutorial's state around one echo server with the given delay and
// returns the state path and the listener's port.
func serveScenario(t *testing.T, delay time.Duration) (string, int) {
	t.Helper()
	_, backendAddr := testutil.StartEcho(t, echo.Options{Name: "b1", Delay: delay})
	port := testutil.FreePort(t)

	path := newState(t)
	mustRun(t, path, "lb", "create", "--name", "demo")
	mustRun(t, path, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC")
	mustRun(t, path, "servergroup", "add-servers", "grpc-backends", "--server", backendAddr)
	mustRun(t, path, "cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test")
	mustRun(t, path, "listener", "create", "--lb", "demo", "--port", itoa(port), "--cert", "grpc-example", "--server-group", "grpc-backends")
	return path, port
}

// startServeProcess runs `albctl serve` as a separate process and waits until it answers.
func startServeProcess(t *testing.T, path string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(os.Args[0], append([]string{"--state", path, "serve"}, args...)...)
	cmd.Env = append(os.Environ(), "ALBCTL_TEST_RUN_MAIN=1")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := serve.Discover(state.NewFileStore(path), ""); err == nil {
			return cmd, &stderr
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func echoClient(t *testing.T, path string, port int) echopb.EchoClient {
	t.Helper()
	caFile := strings.TrimSpace(mustRun(t, path, "cert", "ca"))
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cc, err := grpc.NewClient("127.0.0.1:"+itoa(port), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "grpc.example.test"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return echopb.NewEchoClient(cc)
}

func exitCodeOf(t *testing.T, cmd *exec.Cmd, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("serve did not exit within %v", within)
		return -1
	}
}

func TestServeProcessSIGTERM(t *testing.T) {
	path, port := serveScenario(t, 0)
	cmd, stderr := startServeProcess(t, path)
	resp, err := echoClient(t, path, port).UnaryEcho(context.Background(), &echopb.EchoRequest{Message: "hi"})
	if err != nil || resp.Server != "b1" {
		t.Fatalf("call through serve: %v, %v\n%s", resp, err, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCodeOf(t, cmd, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, stderr.String())
	}
	log := stderr.String()
	for _, want := range []string{"msg=\"listener serving\"", "method=/albctl.echo.v1.Echo/UnaryEcho server=127.0.0.1:", "grpc_status=0", "msg=stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("serve's log lacks %q:\n%s", want, log)
		}
	}
	if _, err := os.Stat(serve.RuntimePath(path)); !os.IsNotExist(err) {
		t.Errorf("the serve record is still there after exit: %v", err)
	}
}

func TestServeProcessSecondSignalExitsAtOnce(t *testing.T) {
	path, port := serveScenario(t, 20*time.Second)
	cmd, stderr := startServeProcess(t, path, "--shutdown-timeout", "60s")
	client := echoClient(t, path, port)
	go func() { _, _ = client.UnaryEcho(context.Background(), &echopb.EchoRequest{Message: "slow"}) }()
	time.Sleep(300 * time.Millisecond) // the slow call is now in flight and holds shutdown open
	_ = cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGINT)
	if code := exitCodeOf(t, cmd, 5*time.Second); code != ExitError {
		t.Fatalf("exit code %d after a second signal, want %d\n%s", code, ExitError, stderr.String())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("exit took %v after the second signal", d)
	}
	if !strings.Contains(stderr.String(), "second signal") {
		t.Fatalf("log:\n%s", stderr.String())
	}
}

func TestServeRefusesBadAccessLogFormat(t *testing.T) {
	r := run(t, newState(t), "serve", "--access-log", "xml")
	if r.code != ExitUsage || !strings.Contains(r.err, `invalid value "xml" for --access-log: must be text, json or off`) {
		t.Fatalf("%+v", r)
	}
}

// The access log goes to --access-log-file, not stderr, and SIGUSR1 reopens it: after
// logrotate's rename, the old lines stay in the renamed file and new ones go to a new file.
func TestServeProcessAccessLogFileReopensOnSIGUSR1(t *testing.T) {
	path, port := serveScenario(t, 0)
	logFile := filepath.Join(t.TempDir(), "access.log")
	cmd, stderr := startServeProcess(t, path, "--access-log-file", logFile)
	client := echoClient(t, path, port)
	call := func(msg string) {
		t.Helper()
		if _, err := client.UnaryEcho(context.Background(), &echopb.EchoRequest{Message: msg}); err != nil {
			t.Fatal(err)
		}
	}
	lines := func(file string) int {
		b, _ := os.ReadFile(file)
		return strings.Count(string(b), "method=/albctl.echo.v1.Echo/UnaryEcho")
	}

	call("one")
	testutil.WaitFor(t, "the first call's line", func() bool { return lines(logFile) == 1 })
	rotated := logFile + ".1"
	if err := os.Rename(logFile, rotated); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "a new file after SIGUSR1", func() bool { _, err := os.Stat(logFile); return err == nil })
	call("two")
	testutil.WaitFor(t, "the second call's line in the new file", func() bool { return lines(logFile) == 1 })
	if n := lines(rotated); n != 1 {
		t.Fatalf("the rotated file has %d lines, want 1", n)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCodeOf(t, cmd, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, stderr.String())
	}
	if log := stderr.String(); strings.Contains(log, "UnaryEcho") || !strings.Contains(log, "access log reopened") {
		t.Fatalf("serve's stderr should say the log was reopened and hold no access lines:\n%s", log)
	}
}

func TestServeRefusesAccessLogFileWithLogOff(t *testing.T) {
	r := run(t, newState(t), "serve", "--access-log", "off", "--access-log-file", "x.log")
	if r.code != ExitUsage || !strings.Contains(r.err, "--access-log-file x.log with --access-log off") {
		t.Fatalf("%+v", r)
	}
}

func TestServeAccessLogFileThatCannotBeOpened(t *testing.T) {
	file := filepath.Join(t.TempDir(), "missing", "access.log")
	r := run(t, newState(t), "serve", "--access-log-file", file)
	if r.code != ExitError || !strings.Contains(r.err, "access log: open "+file+": no such file or directory") {
		t.Fatalf("%+v", r)
	}
}
