package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// TestMain lets a test start this test binary as albctl itself, to run separate processes.
func TestMain(m *testing.M) {
	if os.Getenv("ALBCTL_TEST_RUN_MAIN") == "1" {
		os.Exit(Main(context.Background(), os.Args[1:], IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}))
	}
	os.Exit(m.Run())
}

type result struct {
	out, err string
	code     int
}

// run runs albctl in this process with the state file given, as a user would from a pipe.
func run(t *testing.T, statePath string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	full := append([]string{"--state", statePath}, args...)
	code := Main(context.Background(), full, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	return result{out: out.String(), err: errOut.String(), code: code}
}

func mustRun(t *testing.T, statePath string, args ...string) string {
	t.Helper()
	r := run(t, statePath, args...)
	if r.code != 0 {
		t.Fatalf("albctl %s: exit %d\n%s", strings.Join(args, " "), r.code, r.err)
	}
	return r.out
}

func decode[T any](t *testing.T, data string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, data)
	}
	return v
}

func newState(t *testing.T) string {
	return filepath.Join(t.TempDir(), "state.json")
}

// walkthrough runs the tutorial's control-plane steps and returns the state path.
func walkthrough(t *testing.T) string {
	t.Helper()
	path := newState(t)
	mustRun(t, path, "lb", "create", "--name", "demo")
	mustRun(t, path, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC", "--health-check-codes", "12")
	mustRun(t, path, "servergroup", "add-servers", "grpc-backends", "--server", "127.0.0.1:50051", "--server", "127.0.0.1:50052,weight=50")
	mustRun(t, path, "cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test")
	mustRun(t, path, "listener", "create", "--lb", "demo", "--protocol", "HTTPS", "--port", "8443", "--cert", "grpc-example", "--server-group", "grpc-backends")
	return path
}

var idPattern = regexp.MustCompile(`\b(alb|sgp|lsn|cert)-[a-z0-9]{16}\b`)

// maskIDs replaces generated IDs with their prefix and a placeholder, keeping outputs comparable.
func maskIDs(s string) string {
	return idPattern.ReplaceAllString(s, "$1-ID")
}

func TestWalkthroughJSON(t *testing.T) {
	path := newState(t)
	lb := decode[map[string]any](t, mustRun(t, path, "lb", "create", "--name", "demo", "-o", "json"))
	if !idPattern.MatchString(lb["id"].(string)) || lb["name"] != "demo" || lb["address"] != "127.0.0.1" ||
		lb["dnsName"] != lb["id"].(string)+".local.alb.albctl.test" {
		t.Fatalf("lb create: %v", lb)
	}

	sg := mustRun(t, path, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC", "--health-check-codes", "12", "-o", "json")
	wantSG := `{
  "id": "sgp-ID",
  "name": "grpc-backends",
  "protocol": "gRPC",
  "scheduler": "wrr",
  "healthCheck": {
    "enabled": true,
    "protocol": "gRPC",
    "method": "POST",
    "path": "/albctl.healthcheck.v1.Unimplemented/Check",
    "codes": "12",
    "interval": "2s",
    "timeout": "5s",
    "healthyThreshold": 3,
    "unhealthyThreshold": 3,
    "port": 0
  },
  "drainTimeout": "300s",
  "slowStart": "0s",
  "servers": []
}
`
	if maskIDs(sg) != wantSG {
		t.Fatalf("servergroup create -o json:\n%s\nwant:\n%s", sg, wantSG)
	}

	added := decode[struct {
		Servers []map[string]any `json:"servers"`
	}](t, mustRun(t, path, "servergroup", "add-servers", "grpc-backends", "--server", "127.0.0.1:50051", "--server", "127.0.0.1:50052,weight=50", "-o", "json"))
	wantServers := `[{"address":"127.0.0.1","description":"","port":50051,"weight":100},{"address":"127.0.0.1","description":"","port":50052,"weight":50}]`
	if got, _ := json.Marshal(added.Servers); string(got) != wantServers {
		t.Fatalf("servers %s, want %s", got, wantServers)
	}

	cert := decode[map[string]any](t, mustRun(t, path, "cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test", "-o", "json"))
	if cert["name"] != "grpc-example" || cert["notAfter"] == "" || cert["keyPEM"] != nil || cert["certPEM"] != nil {
		t.Fatalf("cert create must show the certificate without its PEM or key: %v", cert)
	}
	if domains, _ := json.Marshal(cert["domains"]); string(domains) != `["grpc.example.test"]` {
		t.Fatalf("domains %s", domains)
	}

	mustRun(t, path, "listener", "create", "--lb", "demo", "--protocol", "HTTPS", "--port", "8443", "--cert", "grpc-example", "--server-group", "grpc-backends")
	list := mustRun(t, path, "listener", "list", "-o", "json")
	wantList := `[
  {
    "id": "lsn-ID",
    "lbId": "` + lb["id"].(string) + `",
    "protocol": "HTTPS",
    "port": 8443,
    "http2": true,
    "certificateId": "` + cert["id"].(string) + `",
    "serverGroupId": "sgp-ID",
    "idleTimeout": "15s",
    "requestTimeout": "60s"
  }
]
`
	if got := idPattern.ReplaceAllStringFunc(list, func(id string) string {
		if strings.HasPrefix(id, "lsn-") || strings.HasPrefix(id, "sgp-") {
			return maskIDs(id)
		}
		return id
	}); got != wantList {
		t.Fatalf("listener list -o json:\n%s\nwant:\n%s", list, wantList)
	}
}

func TestTableOutput(t *testing.T) {
	path := walkthrough(t)
	// In a pipe, tables are tab-separated rows without a header.
	got := maskIDs(mustRun(t, path, "listener", "list"))
	if want := "lsn-ID\tdemo\tHTTPS\t8443\ttrue\tgrpc-example\tgrpc-backends\ttls_cipher_policy_1_2_strict_with_1_3\n"; got != want {
		t.Fatalf("listener list:\n%q\nwant\n%q", got, want)
	}
	got = maskIDs(mustRun(t, path, "servergroup", "get", "grpc-backends"))
	want := `ID:            sgp-ID
Name:          grpc-backends
Protocol:      gRPC
Scheduler:     wrr
Health check:  gRPC POST /albctl.healthcheck.v1.Unimplemented/Check codes 12
               every 2s, timeout 5s, healthy after 3, unhealthy after 3
Drain timeout: 300s
Slow start:    off
Servers:       2
  127.0.0.1	50051	100	
  127.0.0.1	50052	50	
`
	if got != want {
		t.Fatalf("servergroup get:\n%s\nwant:\n%s", got, want)
	}
	yamlOut := mustRun(t, path, "lb", "list", "-o", "yaml")
	if !strings.HasPrefix(yamlOut, "- address: 127.0.0.1\n  dnsName: alb-") || !strings.Contains(yamlOut, "  name: demo\n") {
		t.Fatalf("lb list -o yaml:\n%s", yamlOut)
	}
}

func TestBadInputIsRefusedAndStateUnchanged(t *testing.T) {
	path := walkthrough(t)
	tests := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"servergroup", "add-servers", "grpc-backends", "--server", "127.0.0.1:50053,weight=101"}, 2,
			`Error: invalid value "101" for --server weight: must be 0-100` + "\nRun 'albctl servergroup add-servers --help' for usage.\n"},
		{[]string{"servergroup", "update", "grpc-backends", "--health-check-codes", "100"}, 2,
			`Error: invalid value "100" for --health-check-codes: code 100 out of range 0-99` + "\nRun 'albctl servergroup update --help' for usage.\n"},
		{[]string{"servergroup", "update", "grpc-backends", "--health-check-interval", "0"}, 2,
			`Error: invalid value "0s" for --health-check-interval: must be 1s-50s` + "\nRun 'albctl servergroup update --help' for usage.\n"},
		{[]string{"servergroup", "add-servers", "grpc-backends", "--server", "127.0.0.1:70000"}, 2,
			`Error: invalid value "70000" for --server port: must be 1-65535` + "\nRun 'albctl servergroup add-servers --help' for usage.\n"},
		{[]string{"listener", "create", "--lb", "demo", "--protocol", "HTTP", "--port", "8080", "--server-group", "grpc-backends"}, 2,
			`Error: invalid value "HTTP" for --protocol: server group grpc-backends is gRPC: only an HTTPS listener with HTTP/2 on can forward to it` + "\nRun 'albctl listener create --help' for usage.\n"},
		{[]string{"servergroup", "add-servers", "grpc-backends", "--server", "127.0.0.1:50051"}, 1,
			"Error: server 127.0.0.1:50051 is already in server group grpc-backends\n"},
		{[]string{"servergroup", "get", "sgp-nope"}, 1,
			`Error: server group "sgp-nope" not found ('albctl servergroup list' shows them)` + "\n"},
		{[]string{"listener", "create", "--lb", "nope", "--port", "9443", "--cert", "grpc-example", "--server-group", "grpc-backends"}, 1,
			`Error: load balancer "nope" not found ('albctl lb list' shows them)` + "\n"},
		{[]string{"servergroup", "add-servers", "grpc-backends", "--server", "localhost"}, 2,
			`Error: invalid value "localhost" for --server: "localhost" is not HOST:PORT (bracket IPv6 hosts: [::1]:50051)` + "\nRun 'albctl servergroup add-servers --help' for usage.\n"},
		{[]string{"servergroup", "create", "--name", "x2", "--protocol", "QUIC"}, 2,
			`Error: invalid value "QUIC" for --protocol: must be gRPC, HTTP, HTTPS` + "\nRun 'albctl servergroup create --help' for usage.\n"},
		{[]string{"servergroup", "create", "--name", "x2", "--weight", "3"}, 2,
			"Error: unknown flag: --weight\nRun 'albctl servergroup create --help' for usage.\n"},
		{[]string{"servergroup", "create"}, 2,
			`Error: required flag(s) "name" not set` + "\nRun 'albctl servergroup create --help' for usage.\n"},
		{[]string{"lb", "get"}, 2, "Error: albctl lb get needs LB\nRun 'albctl lb get --help' for usage.\n"},
		{[]string{"lb", "list", "-o", "xml"}, 2, `Error: invalid value "xml" for --output: must be table, json or yaml` + "\nRun 'albctl lb list --help' for usage.\n"},
		{[]string{"servergroup", "delete", "grpc-backends"}, 1, "Error: server group grpc-backends is used by listeners lsn-ID (port 8443): delete them or point them elsewhere first\n"},
		{[]string{"cert", "delete", "grpc-example"}, 1, "Error: certificate grpc-example is used by listeners lsn-ID (port 8443): delete them, give them another certificate, or take it off with 'albctl listener remove-certs'\n"},
		{[]string{"lb", "delete", "demo"}, 1, "Error: load balancer demo has listeners lsn-ID (port 8443): delete them first\n"},
		{[]string{"servergroup", "update", "grpc-backends", "--admin", "127.0.0.1:1"}, 2,
			"Error: nothing to change: give at least one setting, such as --scheduler or --health-check-codes\nRun 'albctl servergroup update --help' for usage.\n"},
		{[]string{"nosuch"}, 2, "Error: unknown command \"nosuch\" for \"albctl\"\nRun 'albctl --help' for usage.\n"},
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		r := run(t, path, tt.args...)
		if r.code != tt.code || maskIDs(r.err) != tt.err || r.out != "" {
			t.Errorf("albctl %s:\nexit %d, stderr %q, stdout %q\nwant exit %d, stderr %q", strings.Join(tt.args, " "), r.code, r.err, r.out, tt.code, tt.err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatalf("albctl %s changed the state file", strings.Join(tt.args, " "))
		}
	}
}

func TestCorruptStateFile(t *testing.T) {
	path := newState(t)
	corrupt := []byte(`{"version": 1, "loadBalancers": [`)
	if err := os.WriteFile(path, corrupt, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"lb", "list"}, {"lb", "create", "--name", "demo"}} {
		r := run(t, path, args...)
		want := "Error: state file " + path + " cannot be used: line 1, column 33: unexpected end of JSON input (albctl does not change it; fix it, or move it away to start afresh)\n"
		if r.code != 1 || r.err != want {
			t.Errorf("albctl %v: exit %d, stderr %q; want 1, %q", args, r.code, r.err, want)
		}
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, corrupt) {
		t.Fatal("the corrupt state file was changed")
	}
}

// TestConcurrentProcesses starts 20 albctl processes that each add a server to one group at
// the same time; all 20 must be recorded.
func TestConcurrentProcesses(t *testing.T) {
	path := newState(t)
	mustRun(t, path, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC")
	const writers = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "--state", path, "servergroup", "add-servers", "grpc-backends",
				"--server", "127.0.0.1:"+itoa(50000+i))
			cmd.Env = append(os.Environ(), "ALBCTL_TEST_RUN_MAIN=1")
			<-start
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("writer %d: %v\n%s", i, err, out)
			}
		}()
	}
	close(start)
	wg.Wait()
	sg := decode[struct {
		Servers []struct{ Port int } `json:"servers"`
	}](t, mustRun(t, path, "servergroup", "get", "grpc-backends", "-o", "json"))
	seen := map[int]bool{}
	for _, s := range sg.Servers {
		seen[s.Port] = true
	}
	if len(sg.Servers) != writers || len(seen) != writers {
		t.Fatalf("%d servers recorded (%d distinct), want %d", len(sg.Servers), len(seen), writers)
	}
}

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	fromConfig, fromEnv, fromFlag := filepath.Join(dir, "config.json"), filepath.Join(dir, "env.json"), filepath.Join(dir, "flag.json")
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, []byte("state: "+fromConfig+"\noutput: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runWith := func(args ...string) result {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), args, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		return result{out.String(), errOut.String(), code}
	}
	// The config file sets the state file and the output format.
	if r := runWith("--config", configFile, "lb", "create", "--name", "cfg"); r.code != 0 || !strings.HasPrefix(r.out, "{") || !fileExists(fromConfig) {
		t.Fatalf("config file not applied: %+v", r)
	}
	// The environment beats the config file.
	t.Setenv("ALBCTL_STATE", fromEnv)
	t.Setenv("ALBCTL_OUTPUT", "yaml")
	if r := runWith("--config", configFile, "lb", "create", "--name", "env"); r.code != 0 || !strings.HasPrefix(r.out, "address: ") || !fileExists(fromEnv) {
		t.Fatalf("environment not applied over the config file: %+v", r)
	}
	// A flag beats both.
	if r := runWith("--config", configFile, "--state", fromFlag, "-o", "table", "lb", "create", "--name", "flag"); r.code != 0 || !strings.HasPrefix(r.out, "ID:") || !fileExists(fromFlag) {
		t.Fatalf("flags not applied over the environment: %+v", r)
	}
	// A bad value from the environment is a usage error that names its source.
	t.Setenv("ALBCTL_OUTPUT", "xml")
	if r := runWith("lb", "list"); r.code != 2 || !strings.Contains(r.err, `invalid value "xml" for --output`) {
		t.Fatalf("bad ALBCTL_OUTPUT: %+v", r)
	}
}

func TestDynamicCompletion(t *testing.T) {
	path := walkthrough(t)
	s := decode[[]map[string]any](t, mustRun(t, path, "servergroup", "list", "-o", "json"))
	id := s[0]["id"].(string)
	got := mustRun(t, path, "__complete", "servergroup", "get", "")
	want := id + "\tgrpc-backends\ngrpc-backends\t" + id + "\n:4\n"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("completion of servergroup get:\n%q\nwant it to start with\n%q", got, want)
	}
	got = mustRun(t, path, "__complete", "listener", "create", "--cert", "")
	if !strings.Contains(got, "grpc-example\t") {
		t.Fatalf("completion of --cert:\n%s", got)
	}
	got = mustRun(t, path, "__complete", "servergroup", "create", "--scheduler", "")
	if !strings.HasPrefix(got, "wrr\nwlc\nsch\n") {
		t.Fatalf("completion of --scheduler:\n%s", got)
	}
}

func TestCertCAAndImport(t *testing.T) {
	path := walkthrough(t)
	caFile := strings.TrimSpace(mustRun(t, path, "cert", "ca"))
	if caFile != strings.TrimSuffix(path, ".json")+"-ca.pem" {
		t.Fatalf("cert ca printed %q", caFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Export the issued certificate and key from the state, then import them under a new name.
	st := decode[struct {
		Certificates []struct{ CertPEM, KeyPEM string } `json:"certificates"`
	}](t, string(data))
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, []byte(st.Certificates[0].CertPEM), 0o600)
	_ = os.WriteFile(keyFile, []byte(st.Certificates[0].KeyPEM), 0o600)
	imported := decode[map[string]any](t, mustRun(t, path, "cert", "import", "--name", "again", "--cert", certFile, "--key", keyFile, "-o", "json"))
	if imported["issuer"] != "imported" || imported["notAfter"] == "" {
		t.Fatalf("import: %v", imported)
	}
	// A key of another certificate is refused.
	mustRun(t, path, "cert", "create", "--name", "other", "--domain", "other.test")
	data, _ = os.ReadFile(path)
	st = decode[struct {
		Certificates []struct{ CertPEM, KeyPEM string } `json:"certificates"`
	}](t, string(data))
	_ = os.WriteFile(keyFile, []byte(st.Certificates[2].KeyPEM), 0o600)
	r := run(t, path, "cert", "import", "--name", "mismatch", "--cert", certFile, "--key", keyFile)
	if r.code != 1 || !strings.Contains(r.err, "the private key does not match the certificate") {
		t.Fatalf("mismatched key: %+v", r)
	}
}

func TestListenerSNICertificates(t *testing.T) {
	path := walkthrough(t)
	mustRun(t, path, "cert", "create", "--name", "api-example", "--domain", "api.example.test")
	lsn := decode[[]struct{ ID string }](t, mustRun(t, path, "listener", "list", "-o", "json"))[0].ID
	l := decode[map[string]any](t, mustRun(t, path, "listener", "add-certs", lsn, "--cert", "api-example", "-o", "json"))
	api := decode[map[string]any](t, mustRun(t, path, "cert", "get", "api-example", "-o", "json"))
	if ids, _ := json.Marshal(l["additionalCertificateIds"]); string(ids) != `["`+api["id"].(string)+`"]` {
		t.Fatalf("additionalCertificateIds %s", ids)
	}
	if r := run(t, path, "listener", "add-certs", lsn, "--cert", "api-example"); r.code != 2 || !strings.Contains(r.err, "the listener has this certificate already") {
		t.Fatalf("adding a certificate twice: %+v", r)
	}
	if r := run(t, path, "cert", "delete", "api-example"); r.code != 1 || !strings.Contains(r.err, "certificate api-example is used by listeners "+lsn) {
		t.Fatalf("deleting an attached certificate: %+v", r)
	}
	l = decode[map[string]any](t, mustRun(t, path, "listener", "remove-certs", lsn, "--cert", "api-example", "-o", "json"))
	if _, ok := l["additionalCertificateIds"]; ok {
		t.Fatalf("remove-certs left %v", l["additionalCertificateIds"])
	}
	if r := run(t, path, "listener", "remove-certs", lsn, "--cert", "api-example"); r.code != 1 || r.err != "Error: certificate "+api["id"].(string)+" is not in the SNI certificates of listener "+lsn+"\n" {
		t.Fatalf("removing a certificate the listener does not have: %+v", r)
	}
	mustRun(t, path, "cert", "delete", "api-example")
}

func TestHealthCheckProtocolSwitch(t *testing.T) {
	path := walkthrough(t)
	mustRun(t, path, "servergroup", "update", "grpc-backends", "--health-check-protocol", "grpc-health", "--health-check-service", "albctl.echo.v1.Echo")
	// Back to the cloud's check: the service name, which only grpc-health uses, goes with it.
	sg := decode[struct {
		HealthCheck map[string]any `json:"healthCheck"`
	}](t, mustRun(t, path, "servergroup", "update", "grpc-backends", "--health-check-protocol", "gRPC", "--health-check-codes", "0", "-o", "json"))
	if sg.HealthCheck["service"] != nil || sg.HealthCheck["codes"] != "0" || sg.HealthCheck["path"] != "/albctl.healthcheck.v1.Unimplemented/Check" {
		t.Fatalf("health check after switching back: %v", sg.HealthCheck)
	}
	r := run(t, path, "listener", "create", "--lb", "demo", "--port", "9443", "--cert", "grpc-example", "--server-group", "grpc-backends", "--http2=false")
	if r.code != 2 || !strings.HasPrefix(r.err, `Error: invalid value "false" for --http2: server group grpc-backends is gRPC, which needs HTTP/2`) {
		t.Fatalf("gRPC listener without HTTP/2: %+v", r)
	}
}

func TestUnknownSubcommand(t *testing.T) {
	r := run(t, newState(t), "lb", "lsit")
	if r.code != 2 || !strings.Contains(r.err, `unknown command "lsit" for "albctl lb"`) || !strings.Contains(r.err, "Did you mean this?\n\tlist") {
		t.Fatalf("albctl lb lsit: %+v", r)
	}
	if r := run(t, newState(t), "lb"); r.code != 0 || !strings.Contains(r.out, "Available Commands:") {
		t.Fatalf("albctl lb: %+v", r)
	}
}

func TestConfigFileMistakes(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte("outptu: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, newState(t), "--config", config, "lb", "list")
	if r.code != 2 || !strings.Contains(r.err, `config file `+config+`: unknown key "outptu" (keys: state, output, admin)`) {
		t.Fatalf("unknown config key: %+v", r)
	}
	if err := os.WriteFile(config, []byte("output: xml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, newState(t), "--config", config, "lb", "list")
	if r.code != 2 || !strings.Contains(r.err, `invalid value "xml" for --output (from ALBCTL_OUTPUT or the config file)`) {
		t.Fatalf("bad output from the config file: %+v", r)
	}
}
