package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/certs"
	"github.com/albctl/albctl/pkg/check"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/echo/echopb"
	"github.com/albctl/albctl/pkg/etcdstore"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/miekg/dns"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// etcdState starts a one-member etcd on a loopback port the kernel picks, for the test, and
// returns an etcd:// state location in it.
func etcdState(t *testing.T) string {
	t.Helper()
	e := startEmbeddedEtcd(t, t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", nil)
	t.Cleanup(e.Close)
	return "etcd://" + e.Clients[0].Addr().String() + "/albctl/test"
}

// startEmbeddedEtcd runs a one-member etcd with its data in dir on the client and peer
// addresses given, and waits until it serves; with clientTLS, clients reach it over TLS.
func startEmbeddedEtcd(t *testing.T, dir, client, peer string, clientTLS *transport.TLSInfo) *embed.Etcd {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.UnsafeNoFsync = true
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.TickMs, cfg.ElectionMs = 10, 100
	c, p := url.URL{Scheme: "http", Host: client}, url.URL{Scheme: "http", Host: peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{c}, []url.URL{c}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{p}, []url.URL{p}
	if clientTLS != nil {
		cfg.ListenClientUrls[0].Scheme, cfg.AdvertiseClientUrls[0].Scheme = "https", "https"
		cfg.ClientTLSInfo = *clientTLS
	}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(15 * time.Second):
		e.Close()
		t.Fatal("embedded etcd not ready")
	}
	return e
}

// TestCommandsOnAnEtcdState runs the tutorial's commands on a state in etcd, and moves the
// state to a file and back with export and import.
func TestCommandsOnAnEtcdState(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	loc := etcdState(t)
	mustRun(t, loc, "lb", "create", "--name", "demo")
	mustRun(t, loc, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC")
	mustRun(t, loc, "servergroup", "add-servers", "grpc-backends", "--server", "127.0.0.1:50051")
	mustRun(t, loc, "cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test")
	mustRun(t, loc, "listener", "create", "--lb", "demo", "--port", "8443", "--cert", "grpc-example", "--server-group", "grpc-backends")
	if got := decode[[]struct{ Name string }](t, mustRun(t, loc, "servergroup", "list", "-o", "json")); len(got) != 1 || got[0].Name != "grpc-backends" {
		t.Fatalf("servergroup list: %v", got)
	}
	ca := strings.TrimSpace(mustRun(t, loc, "cert", "ca"))
	if _, err := os.Stat(ca); err != nil || !strings.HasPrefix(ca, os.Getenv("XDG_CACHE_HOME")) {
		t.Fatalf("cert ca wrote %s: %v", ca, err)
	}

	// A refused change leaves the document as it was.
	before := mustRun(t, loc, "state", "export")
	if r := run(t, loc, "servergroup", "add-servers", "grpc-backends", "--server", "127.0.0.1:50051"); r.code != ExitError {
		t.Fatalf("a duplicate server: exit %d %s", r.code, r.err)
	}
	if after := mustRun(t, loc, "state", "export"); after != before {
		t.Fatal("a refused change altered the etcd state")
	}

	// To a file and back.
	file := filepath.Join(t.TempDir(), "state.json")
	export := filepath.Join(t.TempDir(), "export.json")
	if err := os.WriteFile(export, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, file, "state", "import", export)
	if got := mustRun(t, file, "state", "export"); got != before {
		t.Fatal("the file holds another document than etcd did")
	}
	if r := run(t, loc, "state", "import", export); r.code != ExitUsage || !strings.Contains(r.err, loc+" already holds a configuration") {
		t.Fatalf("import over the etcd state: exit %d %s", r.code, r.err)
	}
	mustRun(t, loc, "state", "import", "--force", export)

	// What cannot be reached, or read, says so.
	if r := run(t, "etcd://127.0.0.1:1/albctl/x", "lb", "list"); r.code != ExitError || !strings.Contains(r.err, "127.0.0.1:1") {
		t.Fatalf("an etcd that is not there: exit %d %s", r.code, r.err)
	}
	if r := run(t, "etcd://127.0.0.1:2379", "lb", "list"); r.code != ExitUsage || !strings.Contains(r.err, "--state") {
		t.Fatalf("an etcd location without a prefix: exit %d %s", r.code, r.err)
	}
}

// TestBadEtcdInput: a document albctl cannot read under the key, an empty prefix, an etcd that
// does not answer, a CA file that is not PEM and a CA that does not sign etcd's certificate.
// Each error is one line naming the endpoint and the cause, exit 1, and writes nothing.
func TestBadEtcdInput(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	loc := etcdState(t)
	endpoint, _ := etcdEndpoint(t, loc)
	raw := etcdClient(t, loc)
	ctx := context.Background()
	oneLine := func(what string, r result, want ...string) {
		t.Helper()
		if r.code != ExitError || !strings.HasPrefix(r.err, "Error: ") || strings.Count(r.err, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line", what, r.code, r.err)
		}
		for _, w := range want {
			if !strings.Contains(r.err, w) {
				t.Errorf("%s: stderr %q does not say %q", what, r.err, w)
			}
		}
		t.Logf("%s: %s", what, strings.TrimSpace(r.err))
	}
	keys := func(prefix string) []string {
		resp, err := raw.Get(ctx, prefix+"/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, kv := range resp.Kvs {
			out = append(out, fmt.Sprintf("%s@%d=%q", kv.Key, kv.ModRevision, kv.Value))
		}
		return out
	}
	for _, tt := range []struct{ name, doc, want string }{
		{"corrupt", "not json{", "cannot be used: line 1, column 2"},
		{"foreign", `{"foo": 1}`, `cannot be used: not an albctl state: no "version" field`},
	} {
		prefix := "/albctl/" + tt.name
		if _, err := raw.Put(ctx, prefix+"/state", tt.doc); err != nil {
			t.Fatal(err)
		}
		before := keys(prefix)
		at := "etcd://" + endpoint + prefix
		for _, args := range [][]string{{"servergroup", "list"}, {"lb", "create", "--name", "demo"}, {"state", "export"}} {
			oneLine(tt.name+": "+strings.Join(args, " "), run(t, at, args...), "etcd state "+at+" (key "+prefix+"/state)", tt.want)
		}
		if after := keys(prefix); !slices.Equal(after, before) {
			t.Errorf("%s: the prefix held %v, now %v", tt.name, before, after)
		}
	}

	// A prefix nothing was written under is an empty state, as a missing file is: reads find
	// nothing and write nothing.
	empty := "etcd://" + endpoint + "/albctl/typo"
	if out := mustRun(t, empty, "servergroup", "list"); out != "" {
		t.Errorf("servergroup list on an empty prefix: %q", out)
	}
	oneLine("lb get on an empty prefix", run(t, empty, "lb", "get", "demo"), `load balancer "demo" not found in `+empty+` ('albctl lb list' shows them)`)
	if got := keys("/albctl/typo"); len(got) != 0 {
		t.Errorf("reads wrote %v under an empty prefix", got)
	}

	// Certificates: a CA file that is not PEM fails at once.
	files := map[string]string{}
	caCert, caKey, err := certs.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey, _, err := certs.Issue(caCert, caKey, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _, err := certs.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"server.pem": serverCert, "server-key.pem": serverKey, "other-ca.pem": otherCA, "not.pem": "not a certificate\n"} {
		files[name] = filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(files[name], []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tlsEtcd := startEmbeddedEtcd(t, t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", &transport.TLSInfo{CertFile: files["server.pem"], KeyFile: files["server-key.pem"]})
	t.Cleanup(tlsEtcd.Close)
	tlsEndpoint := tlsEtcd.Clients[0].Addr().String()
	oneLine("--etcd-cacert not PEM", run(t, loc, "--etcd-cacert", files["not.pem"], "servergroup", "list"), endpoint, files["not.pem"]+" holds no PEM certificate")

	// etcd that does not answer, and a TLS handshake that fails, fail within the dial timeout:
	// both at once, to wait for it once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	var wg sync.WaitGroup
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"a closed port", []string{"--state", "etcd://" + closed + "/albctl/test"}, []string{closed, "connection refused"}},
		{"the wrong CA", []string{"--state", "etcd://" + tlsEndpoint + "/albctl/test", "--etcd-cacert", files["other-ca.pem"]}, []string{tlsEndpoint, "certificate signed by unknown authority"}},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			var out, errOut bytes.Buffer
			code := Main(ctx, append(tt.args, "lb", "create", "--name", "demo"), IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
			if took := time.Since(start); took > 8*time.Second {
				t.Errorf("%s: failed after %v", tt.name, took)
			}
			oneLine(tt.name, result{out: out.String(), err: errOut.String(), code: code}, tt.want...)
		}()
	}
	wg.Wait()
	tlsClient, err := clientv3.New(clientv3.Config{Endpoints: []string{tlsEndpoint}, TLS: &tls.Config{InsecureSkipVerify: true}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer tlsClient.Close()
	if resp, err := tlsClient.Get(ctx, "/albctl/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Errorf("the TLS etcd holds %v keys under /albctl/ (%v)", resp, err)
	}
}

// startReplica runs `albctl serve` on an etcd state with args, which name its --admin, until
// it answers there or the test ends.
func startReplica(t *testing.T, loc string, args ...string) (*exec.Cmd, *testutil.SyncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--state", loc, "serve"}, args...)...)
	cmd.Env = append(os.Environ(), "ALBCTL_TEST_RUN_MAIN=1")
	var stderr testutil.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
	})
	admin := args[slices.Index(args, "--admin")+1]
	testutil.WaitFor(t, "serve to answer on its admin API", func() bool {
		return serve.Get(admin, "/healthz", nil) == nil
	})
	// serve records itself once its admin API answers.
	testutil.WaitFor(t, "serve to record itself as a replica", func() bool {
		r := run(t, loc, "lb", "replicas", "-o", "json")
		return r.code == ExitOK && strings.Contains(r.out, `"admin": "`+admin+`"`)
	})
	return cmd, &stderr
}

// TestServeFollowsAnEtcdState runs serve on a state in etcd: it serves the listener, and a
// change made with albctl reaches it through its watch, within a second.
func TestServeFollowsAnEtcdState(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	loc := etcdState(t)
	_, b1 := testutil.StartEcho(t, echo.Options{Name: "b1"})
	_, b2 := testutil.StartEcho(t, echo.Options{Name: "b2"})
	port := testutil.FreePort(t)
	mustRun(t, loc, "lb", "create", "--name", "demo")
	mustRun(t, loc, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC")
	mustRun(t, loc, "servergroup", "add-servers", "grpc-backends", "--server", b1)
	mustRun(t, loc, "cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test")
	mustRun(t, loc, "listener", "create", "--lb", "demo", "--port", itoa(port), "--cert", "grpc-example", "--server-group", "grpc-backends")

	admin := "127.0.0.1:" + itoa(testutil.FreePort(t))
	cmd, stderr := startReplica(t, loc, "--admin", admin)
	// Commands that ask serve find it among the replicas.
	testutil.WaitFor(t, "servergroup health to find the replica", func() bool {
		return run(t, loc, "servergroup", "health", "grpc-backends").code == ExitOK
	})
	client := echoClient(t, loc, port)
	call := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := client.UnaryEcho(ctx, &echopb.EchoRequest{Message: "hi"})
		if err != nil {
			t.Fatalf("call through serve: %v\n%s", err, stderr.String())
		}
		return res.Server
	}
	if got := call(); got != "b1" {
		t.Fatalf("call reached %s", got)
	}
	type replica struct {
		Admin           string
		Listeners       []string
		AppliedRevision int64
	}
	replicas := decode[[]replica](t, mustRun(t, loc, "lb", "replicas", "demo", "-o", "json"))
	if len(replicas) != 1 || replicas[0].Admin != admin || len(replicas[0].Listeners) != 1 || replicas[0].Listeners[0] != "127.0.0.1:"+itoa(port) || replicas[0].AppliedRevision == 0 {
		t.Fatalf("lb replicas: %+v", replicas)
	}
	first := replicas[0].AppliedRevision
	mustRun(t, loc, "servergroup", "add-servers", "grpc-backends", "--server", b2)
	mustRun(t, loc, "servergroup", "update-servers", "grpc-backends", "--server", b1+",weight=0")
	deadline := time.Now().Add(time.Second)
	for call() != "b2" {
		if time.Now().After(deadline) {
			t.Fatalf("the change in etcd did not reach serve within a second\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	testutil.WaitFor(t, "the replica to record the revision it applied", func() bool {
		r := decode[[]replica](t, mustRun(t, loc, "lb", "replicas", "-o", "json"))
		return len(r) == 1 && r[0].AppliedRevision > first
	})

	// A clean stop removes the record at once, not a lease later.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, stderr.String())
	}
	if r := decode[[]replica](t, mustRun(t, loc, "lb", "replicas", "-o", "json")); len(r) != 0 {
		t.Fatalf("replicas after serve stopped: %+v", r)
	}
	if r := run(t, newState(t), "lb", "replicas"); r.code != ExitUsage || !strings.Contains(r.err, "replicas are recorded in an etcd state") {
		t.Fatalf("lb replicas on a state file: exit %d %s", r.code, r.err)
	}
}

// TestReplicasOnOneMachine runs two serves of one etcd state on one machine, each on its own
// loopback address, and calls through both.
func TestReplicasOnOneMachine(t *testing.T) {
	_, b1 := testutil.StartEcho(t, echo.Options{Name: "b1"})
	loc, port := replicaState(t, b1)
	dnsAddr := "127.0.0.1:" + itoa(testutil.FreePort(t))
	startReplica(t, loc, "--bind-address", "127.0.0.2", "--dns", dnsAddr, "--admin", "127.0.0.1:"+itoa(testutil.FreePort(t)))
	second, _ := startReplica(t, loc, "--bind-address", "127.0.0.3", "--admin", "127.0.0.1:"+itoa(testutil.FreePort(t)))
	thirdAdmin := "127.0.0.1:" + itoa(testutil.FreePort(t))
	third, _ := startReplica(t, loc, "--bind-address", "127.0.0.4", "--admin", thirdAdmin)
	replicas := decode[[]struct {
		ID, Admin string
		Listeners []string
	}](t, mustRun(t, loc, "lb", "replicas", "-o", "json"))
	var addrs []string
	thirdID := ""
	for _, r := range replicas {
		addrs = append(addrs, r.Listeners...)
		if r.Admin == thirdAdmin {
			thirdID = r.ID
		}
	}
	slices.Sort(addrs)
	if want := []string{"127.0.0.2:" + itoa(port), "127.0.0.3:" + itoa(port), "127.0.0.4:" + itoa(port)}; !slices.Equal(addrs, want) {
		t.Fatalf("replicas serve %v, want %v", addrs, want)
	}
	for _, addr := range addrs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := replicaClient(t, loc, addr).UnaryEcho(ctx, &echopb.EchoRequest{Message: "hi"})
		cancel()
		if err != nil || res.Server != "b1" {
			t.Fatalf("call through the replica at %s: %v %v", addr, res, err)
		}
	}
	// The load balancer's name resolves to every live replica, and a replica that stops leaves.
	lbName := decode[struct{ DNSName string }](t, mustRun(t, loc, "lb", "get", "demo", "-o", "json")).DNSName
	resolve := func() []string {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(lbName), dns.TypeA)
		in, err := dns.Exchange(m, dnsAddr)
		if err != nil {
			return nil
		}
		var ips []string
		for _, rr := range in.Answer {
			if a, ok := rr.(*dns.A); ok {
				ips = append(ips, a.A.String())
			}
		}
		slices.Sort(ips)
		return ips
	}
	testutil.WaitFor(t, "the name to resolve to the three replicas", func() bool {
		return slices.Equal(resolve(), []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"})
	})

	// check --all-replicas checks through each replica, and fails on one that died, while its
	// record lives.
	verifiedDomain(t, loc)
	target := "grpc.example.test:" + itoa(port)
	checkAll := func() (result, []check.ReplicaResult) {
		r := run(t, loc, "check", target, "albctl.echo.v1.Echo/UnaryEcho", "--all-replicas", "--timeout", "2s", "-o", "json")
		return r, decode[[]check.ReplicaResult](t, r.out)
	}
	killed := time.Now()
	_ = third.Process.Kill()
	_ = third.Wait()
	r, results := checkAll()
	if r.code != ExitError || len(results) != 3 || !strings.Contains(r.err, "check failed on replica "+thirdID+" at step \"servers\"") ||
		!strings.HasSuffix(r.err, "check failed on 1 of 3 replicas\n") {
		t.Fatalf("check --all-replicas with a replica killed: exit %d\n%s%s", r.code, r.out, r.err)
	}
	for _, res := range results {
		if res.OK == (res.Replica == thirdID) {
			t.Fatalf("check --all-replicas: replica %s ok=%v; the killed one is %s\n%s", res.Replica, res.OK, thirdID, r.out)
		}
	}

	// A replica killed outright leaves the answer once its lease ends.
	for !slices.Equal(resolve(), []string{"127.0.0.2", "127.0.0.3"}) {
		if time.Since(killed) > etcdstore.ReplicaTTL+time.Second {
			t.Fatalf("a killed replica still in the answer after %v: %v", time.Since(killed).Round(time.Second), resolve())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("a killed replica left the DNS answer after %v (lease %v)", time.Since(killed).Round(100*time.Millisecond), etcdstore.ReplicaTTL)
	// Health comes from one replica, named, or from each.
	if out := mustRun(t, loc, "servergroup", "health", "grpc-backends"); !strings.Contains(out, "Answered by") || !strings.Contains(out, "replica ") {
		t.Fatalf("servergroup health on an etcd state:\n%s", out)
	}
	each := decode[[]struct {
		Replica string
		Health  *struct{ Servers []struct{ Addr string } }
	}](t, mustRun(t, loc, "servergroup", "health", "grpc-backends", "--all-replicas", "-o", "json"))
	if len(each) != 2 || each[0].Health == nil || each[1].Health == nil || each[0].Replica == each[1].Replica {
		t.Fatalf("servergroup health --all-replicas: %+v", each)
	}
	if r := run(t, newState(t), "servergroup", "health", "grpc-backends", "--all-replicas"); r.code != ExitUsage {
		t.Fatalf("--all-replicas on a state file: exit %d %s", r.code, r.err)
	}

	// check walks the name to the replicas, says whose view of the servers it reports, and
	// calls through that replica.
	if r := run(t, loc, "check", target, "albctl.echo.v1.Echo/UnaryEcho"); r.code != ExitOK ||
		!strings.Contains(r.out, "127.0.0.2") || strings.Count(r.out, "served by replica ") != 1 {
		t.Fatalf("check through the replicas: exit %d\n%s%s", r.code, r.out, r.err)
	} else if id := regexp.MustCompile(`served by replica (\S+) `).FindStringSubmatch(r.out); !strings.Contains(r.out, "(as replica "+id[1]+" sees them)") {
		t.Fatalf("check called through replica %s but read another's health:\n%s", id[1], r.out)
	}
	r, results = checkAll()
	if r.code != ExitOK || len(results) != 2 || r.err != "" {
		t.Fatalf("check --all-replicas: exit %d\n%s%s", r.code, r.out, r.err)
	}
	for i, bind := range []string{"127.0.0.2", "127.0.0.3"} {
		if listener := results[i].Steps[2].Detail; !strings.Contains(listener, "served by replica "+results[i].Replica+" at "+bind+":"+itoa(port)) {
			t.Fatalf("check --all-replicas: listener step %q, want replica %s at %s", listener, results[i].Replica, bind)
		}
	}
	human := mustRun(t, loc, "check", target, "--all-replicas")
	if strings.Count(human, "Replica") != 2 || strings.Count(human, "PASS\tcall") != 2 {
		t.Fatalf("check --all-replicas:\n%s", human)
	}
	if r := run(t, loc, "check", target, "--all-replicas", "--admin", "127.0.0.1:1"); r.code != ExitUsage {
		t.Fatalf("check --all-replicas --admin: exit %d %s", r.code, r.err)
	}

	// probe and dns resolve find the replicas by name too.
	if out := mustRun(t, loc, "dns", "resolve", lbName); !strings.Contains(out, "127.0.0.2") || !strings.Contains(out, "127.0.0.3") {
		t.Fatalf("dns resolve %s:\n%s", lbName, out)
	}
	ca := strings.TrimSpace(mustRun(t, loc, "cert", "ca"))
	if r := run(t, loc, "probe", "-cacert", ca, "-servername", "grpc.example.test", "-d", `{"message": "hi"}`, lbName+":"+itoa(port), "albctl.echo.v1.Echo/UnaryEcho"); r.code != ExitOK {
		t.Fatalf("probe by the load balancer's name: exit %d %s%s", r.code, r.out, r.err)
	}
	_ = second.Process.Signal(syscall.SIGTERM)
	_ = second.Wait()
	testutil.WaitFor(t, "the stopped replica to leave the answer", func() bool {
		return slices.Equal(resolve(), []string{"127.0.0.2"})
	})

	if r := run(t, loc, "serve", "--bind-address", "localhost"); r.code != ExitUsage || !strings.Contains(r.err, `invalid value "localhost" for --bind-address`) {
		t.Fatalf("serve --bind-address localhost: exit %d %s", r.code, r.err)
	}
}

// TestDebianEtcdServer runs the commands against the etcd that Debian packages (etcd-server,
// installed by scripts/install-test-deps.sh), an older server than the embedded one.
func TestDebianEtcdServer(t *testing.T) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("etcd (Debian's etcd-server) is not installed: scripts/install-test-deps.sh installs it")
		}
		t.Skip("etcd (Debian's etcd-server) is not installed: scripts/install-test-deps.sh installs it")
	}
	client, peer := "127.0.0.1:"+itoa(testutil.FreePort(t)), "127.0.0.1:"+itoa(testutil.FreePort(t))
	cmd := exec.Command(bin, "--data-dir", t.TempDir(), "--name", "albctl-test",
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "albctl-test=http://"+peer)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	testutil.WaitFor(t, "etcd to listen", func() bool {
		c, err := net.Dial("tcp", client)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	loc := "etcd://" + client + "/albctl/debian"
	mustRun(t, loc, "lb", "create", "--name", "demo")
	mustRun(t, loc, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC")
	mustRun(t, loc, "servergroup", "add-servers", "grpc-backends", "--server", "127.0.0.1:50051")
	got := decode[[]struct{ Servers []struct{ Port int } }](t, mustRun(t, loc, "servergroup", "list", "-o", "json"))
	if len(got) != 1 || len(got[0].Servers) != 1 || got[0].Servers[0].Port != 50051 {
		t.Fatalf("servergroup list from %s: %+v\n%s", bin, got, out.String())
	}
	if export := mustRun(t, loc, "state", "export"); !strings.Contains(export, `"name": "grpc-backends"`) {
		t.Fatalf("state export:\n%s", export)
	}
}

// TestConcurrentProcessesOnEtcd: 20 albctl processes at once each add a server to one group
// in etcd, and none of the 20 is lost.
func TestConcurrentProcessesOnEtcd(t *testing.T) {
	loc := etcdState(t)
	mustRun(t, loc, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC")
	const n = 20
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			cmd := exec.Command(os.Args[0], "--state", loc, "servergroup", "add-servers", "grpc-backends", "--server", "127.0.0.1:"+itoa(51000+i))
			cmd.Env = append(os.Environ(), "ALBCTL_TEST_RUN_MAIN=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				err = fmt.Errorf("process %d: %v: %s", i, err, out)
			}
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	got := decode[struct{ Servers []struct{ Port int } }](t, mustRun(t, loc, "servergroup", "get", "grpc-backends", "-o", "json"))
	if len(got.Servers) != n {
		t.Fatalf("%d servers recorded of %d added", len(got.Servers), n)
	}
}
