package cli

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// verifiedDomain adds example.test with its ownership TXT, verifies it, and points
// grpc.example.test at the load balancer, as the tutorial does.
func verifiedDomain(t *testing.T, path string) {
	t.Helper()
	mustRun(t, path, "dns", "domain", "add", "example.test")
	d := decode[struct {
		Verification struct{ Host, Value string } `json:"verification"`
	}](t, mustRun(t, path, "dns", "domain", "get", "example.test", "-o", "json"))
	mustRun(t, path, "dns", "add", "--domain", "example.test", "--type", "TXT", "--host", d.Verification.Host, "--value", d.Verification.Value)
	mustRun(t, path, "dns", "domain", "verify", "example.test")
	lb := decode[struct{ DNSName string }](t, mustRun(t, path, "lb", "get", "demo", "-o", "json"))
	mustRun(t, path, "dns", "add", "--domain", "example.test", "--type", "CNAME", "--host", "grpc", "--value", lb.DNSName)
}

func TestCheck(t *testing.T) {
	path, port := serveScenario(t, 0)
	verifiedDomain(t, path)
	target := "grpc.example.test:" + itoa(port)

	// Without serve, the walk gets as far as the servers' health and says what is missing.
	r := run(t, path, "check", target)
	if r.code != 1 || !strings.Contains(r.out, "FAIL\tservers\tno albctl serve is running for this state file") {
		t.Fatalf("check without serve: %+v", r)
	}

	r = run(t, path, "probe", "-insecure", target, "list")
	if r.code != 1 || !strings.Contains(r.err, "is on port "+itoa(port)+", but no albctl serve runs for") {
		t.Fatalf("probe without serve must name the listener and say serve is not running: %+v", r)
	}

	cmd, stderr := startServeProcess(t, path)
	// The name exists only in albctl's records; -cacert verifies the listener without -insecure.
	caFile := strings.TrimSpace(mustRun(t, path, "cert", "ca"))
	r = run(t, path, "probe", "-cacert", caFile, "-d", `{"message": "hi"}`, target, "albctl.echo.v1.Echo/UnaryEcho")
	if r.code != 0 || r.out != "{\n  \"message\": \"hi\",\n  \"server\": \"b1\"\n}\n" {
		t.Fatalf("probe -cacert by name through serve: %+v", r)
	}
	r = run(t, path, "probe", target, "list")
	if r.code != 1 || !strings.Contains(r.err, "certificate signed by unknown authority") || !strings.Contains(r.err, "hint: if the listener's certificate is albctl's, use -cacert "+caFile) {
		t.Fatalf("probe without -cacert: %+v", r)
	}
	r = run(t, path, "probe", "-insecure", "grpc.example.test:1", "list")
	if r.code != 1 || !strings.Contains(r.err, "hint: no albctl listener is on port 1") {
		t.Fatalf("probe of a port without a listener: %+v", r)
	}
	for _, args := range [][]string{{"check", target}, {"check", target, "albctl.echo.v1.Echo/UnaryEcho"}} {
		r = run(t, path, args...)
		steps := strings.Count(r.out, "PASS\t")
		if r.code != 0 || steps != 7 {
			t.Fatalf("albctl %s: exit %d, %d steps passed\n%s%s\nserve:\n%s", strings.Join(args, " "), r.code, steps, r.out, r.err, stderr.String())
		}
	}
	if !strings.Contains(run(t, path, "check", target).out, "PASS\tcall\t/albctl.healthcheck.v1.Unimplemented/Check → grpc-status 12 (UNIMPLEMENTED)") {
		t.Fatal("the default call does not use the health-check path")
	}

	r = run(t, path, "check", target, "albctl.echo.v1.Echo/Nope")
	if r.code != 1 || !strings.Contains(r.out, "FAIL\tcall\t/albctl.echo.v1.Echo/Nope through 127.0.0.1:"+itoa(port)+": grpc-status 12 (UNIMPLEMENTED)") {
		t.Fatalf("check of an unknown method: %+v", r)
	}
	r = run(t, path, "check", "grpc.example.test:1")
	if r.code != 1 || !strings.Contains(r.out, "FAIL\tlistener\tload balancer demo has no listener on port 1") || strings.Contains(r.out, "certificate") {
		t.Fatalf("check of a port without a listener must stop at the listener: %+v", r)
	}
	r = run(t, path, "check", "nowhere.test:443")
	if r.code != 1 || !strings.Contains(r.out, "FAIL\tdns\tnowhere.test is not in albctl's DNS zones") {
		t.Fatalf("check of an unknown name: %+v", r)
	}
	r = run(t, path, "check", "grpc.example.test")
	if r.code != 2 || !strings.Contains(r.err, `invalid DOMAIN:PORT "grpc.example.test"`) {
		t.Fatalf("check without a port: %+v", r)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	exitCodeOf(t, cmd, 10*time.Second)
}

func TestServerGroupHealth(t *testing.T) {
	path, _ := serveScenario(t, 0)
	r := run(t, path, "servergroup", "health", "grpc-backends")
	if r.code != 1 || !strings.Contains(r.err, "Error: no albctl serve is running for this state file ("+path+"): start one with 'albctl serve'") {
		t.Fatalf("health without serve: %+v", r)
	}
	r = run(t, path, "servergroup", "health", "grpc-backends", "--admin", "127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.err, "no albctl serve answers at --admin 127.0.0.1:1") {
		t.Fatalf("health with a dead --admin: %+v", r)
	}
	cmd, _ := startServeProcess(t, path)
	deadline := time.Now().Add(10 * time.Second)
	for {
		gs := decode[struct {
			Name    string `json:"name"`
			Servers []struct {
				State, Reason string
				Weight        int
			} `json:"servers"`
		}](t, mustRun(t, path, "servergroup", "health", "grpc-backends", "-o", "json"))
		if gs.Name == "grpc-backends" && len(gs.Servers) == 1 && gs.Servers[0].State == "healthy" && gs.Servers[0].Reason == "grpc-status 12 (UNIMPLEMENTED)" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never became healthy: %+v", gs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	exitCodeOf(t, cmd, 10*time.Second)
}
