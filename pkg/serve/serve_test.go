package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/certs"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/echo/echopb"
	"github.com/albctl/albctl/pkg/health"
	"github.com/albctl/albctl/pkg/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

func server(t *testing.T, addr string, weight int) state.Server {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return state.Server{Address: host, Port: p, Weight: weight}
}

type fixture struct {
	store         *state.FileStore
	caCert, caKey string
	port          int
	caPool        *x509.CertPool
	log           *testutil.SyncBuffer
	admin         string
	done          chan error
	cancel        context.CancelFunc
}

// startServe writes the tutorial's state with the given servers and runs serve on it.
func startServe(t *testing.T, servers ...state.Server) *fixture {
	t.Helper()
	f := &fixture{store: state.NewFileStore(filepath.Join(t.TempDir(), "state.json")), port: testutil.FreePort(t), log: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	caCert, caKey, err := certs.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.caCert, f.caKey = caCert, caKey
	certPEM, keyPEM, notAfter, err := certs.Issue(caCert, caKey, []string{"grpc.example.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.caPool = x509.NewCertPool()
	f.caPool.AppendCertsFromPEM([]byte(caCert))
	_, err = f.store.Update(context.Background(), func(s *state.State) error {
		if _, err := s.CreateLoadBalancer(state.LoadBalancer{Name: "demo", Address: "127.0.0.1"}); err != nil {
			return err
		}
		if _, err := s.CreateServerGroup(state.NewServerGroup("grpc-backends", state.ProtocolGRPC)); err != nil {
			return err
		}
		if _, err := s.AddServers("grpc-backends", servers); err != nil {
			return err
		}
		if _, err := s.AddCertificate(state.Certificate{Name: "grpc-example", Domains: []string{"grpc.example.test"}, NotAfter: notAfter, Issuer: "albctl-ca", CertPEM: certPEM, KeyPEM: keyPEM}); err != nil {
			return err
		}
		_, err := s.CreateListener(state.Listener{LBID: "demo", Protocol: state.ProtocolHTTPS, Port: f.port, HTTP2: true, CertificateID: "grpc-example",
			ServerGroupID: "grpc-backends", IdleTimeout: state.Duration(state.DefaultIdleTimeout), RequestTimeout: state.Duration(state.DefaultRequestTimeout)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	ready := make(chan string, 1)
	go func() {
		f.done <- Run(ctx, Options{Store: f.store, Log: f.log, ShutdownTimeout: 5 * time.Second, ReloadInterval: 50 * time.Millisecond,
			Ready: func(addr string) { ready <- addr }})
	}()
	select {
	case f.admin = <-ready:
	case err := <-f.done:
		t.Fatalf("serve stopped: %v\n%s", err, f.log.String())
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
	})
	return f
}

// client dials the listener by IP and verifies its certificate for grpc.example.test.
func (f *fixture) client(t *testing.T) echopb.EchoClient {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{RootCAs: f.caPool, ServerName: "grpc.example.test"})
	cc, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(f.port), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return echopb.NewEchoClient(cc)
}

// count makes n unary calls and counts the answers by server name.
func count(t *testing.T, c echopb.EchoClient, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.UnaryEcho(ctx, &echopb.EchoRequest{Message: "hi"})
		cancel()
		if err != nil {
			t.Fatalf("call failed: %v", err)
		}
		got[resp.Server]++
	}
	return got
}

func TestServeBalancesAndFollowsTheStateFile(t *testing.T) {
	_, b1 := testutil.StartEcho(t, echo.Options{Name: "b1"})
	_, b2 := testutil.StartEcho(t, echo.Options{Name: "b2"})
	f := startServe(t, server(t, b1, 100), server(t, b2, 50))
	c := f.client(t)

	if got := count(t, c, 300); got["b1"] < 190 || got["b1"] > 210 || got["b2"] < 90 || got["b2"] > 110 {
		t.Fatalf("weights 100/50 over 300 calls gave %v", got)
	}

	// A server added to the state gets calls within a second, without restarting anything.
	_, b3 := testutil.StartEcho(t, echo.Options{Name: "b3"})
	if _, err := f.store.Update(context.Background(), func(s *state.State) error {
		_, err := s.AddServers("grpc-backends", []state.Server{server(t, b3, 100)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for count(t, c, 5)["b3"] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the added server got no calls within a second\n%s", f.log.String())
		}
	}

	// A broken state file is reported and the last good configuration keeps serving.
	if err := os.WriteFile(f.store.Location(), []byte(`{"version": 1, "loadBalancers": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(2 * time.Second)
	for !strings.Contains(f.log.String(), "still serving the last good configuration") {
		if time.Now().After(deadline) {
			t.Fatalf("the broken state file was not reported:\n%s", f.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := count(t, c, 30); got["b1"]+got["b2"]+got["b3"] != 30 {
		t.Fatalf("after a broken state: %v", got)
	}
}

func TestAdminAPI(t *testing.T) {
	_, b1 := testutil.StartEcho(t, echo.Options{Name: "b1"})
	f := startServe(t, server(t, b1, 100))
	count(t, f.client(t), 3)

	addr, err := Discover(f.store, "")
	if err != nil || addr != f.admin {
		t.Fatalf("Discover = %q, %v; want %q", addr, err, f.admin)
	}
	var st StatusReport
	if err := Get(addr, "/status", &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Listeners) != 1 || !strings.HasSuffix(st.Listeners[0].Addr, ":"+strconv.Itoa(f.port)) || len(st.Groups) != 1 ||
		len(st.Groups[0].Servers) != 1 || st.Groups[0].Servers[0].Calls < 3 {
		t.Fatalf("status: %+v", st)
	}
	metrics := getText(t, "http://"+addr+"/metrics")
	if !strings.Contains(metrics, `method="/albctl.echo.v1.Echo/UnaryEcho"`) {
		t.Fatalf("metrics do not count the calls:\n%s", metrics)
	}

	// A second serve for the same state file is refused and leaves the first running.
	err = Run(context.Background(), Options{Store: f.store, Log: &testutil.SyncBuffer{}})
	if err == nil || !strings.Contains(err.Error(), "albctl serve is already running for") {
		t.Fatalf("second serve: %v", err)
	}
	if _, err := Discover(f.store, ""); err != nil {
		t.Fatalf("the first serve stopped answering: %v", err)
	}

	// After shutdown the record is gone and Discover says plainly that nothing runs.
	f.cancel()
	if err := <-f.done; err != nil {
		t.Fatal(err)
	}
	f.done <- nil // for the cleanup
	if _, err := Discover(f.store, ""); err == nil || !strings.Contains(err.Error(), "no albctl serve is running for this state file") {
		t.Fatalf("Discover after shutdown: %v", err)
	}
}

func TestShutdownLetsCallsInFlightFinish(t *testing.T) {
	_, slow := testutil.StartEcho(t, echo.Options{Name: "slow", Delay: 700 * time.Millisecond})
	f := startServe(t, server(t, slow, 100))
	c := f.client(t)
	count(t, c, 1) // connect first, so the call below is in flight when shutdown starts
	result := make(chan error, 1)
	go func() {
		_, err := c.UnaryEcho(context.Background(), &echopb.EchoRequest{Message: "late"})
		result <- err
	}()
	time.Sleep(200 * time.Millisecond)
	f.cancel()
	if err := <-result; err != nil {
		t.Fatalf("the call in flight failed at shutdown: %v", err)
	}
	if err := <-f.done; err != nil {
		t.Fatalf("serve returned %v", err)
	}
	f.done <- nil
	if !strings.Contains(f.log.String(), "msg=stopped") {
		t.Fatalf("log:\n%s", f.log.String())
	}
}

func getText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestHealthChecksTakeADeadServerOut is the health issue's scenario: two servers, codes 12,
// interval 1s, thresholds 2. A stopped server is marked unhealthy within interval × threshold
// + timeout, after which calls do not fail; restarted, it is healthy and gets calls again.
func TestHealthChecksTakeADeadServerOut(t *testing.T) {
	_, b1 := testutil.StartEcho(t, echo.Options{Name: "b1"})
	b2, b2Addr := testutil.StartEcho(t, echo.Options{Name: "b2"})

	f := startServe(t, server(t, b1, 100), server(t, b2Addr, 100))
	if _, err := f.store.Update(context.Background(), func(s *state.State) error {
		_, err := s.UpdateServerGroup("grpc-backends", func(sg *state.ServerGroup) error {
			hc := &sg.HealthCheck
			hc.Codes, hc.Interval, hc.HealthyThreshold, hc.UnhealthyThreshold = "12", state.Duration(time.Second), 2, 2
			return nil
		})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	groupID := func() string {
		s, _ := f.store.Load(context.Background())
		sg, _ := s.ServerGroup("grpc-backends")
		return sg.ID
	}()
	waitFor := func(addr, want string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			var gs health.GroupStatus
			if err := Get(f.admin, "/health/"+groupID, &gs); err != nil {
				t.Fatal(err)
			}
			for _, s := range gs.Servers {
				if s.Addr == addr && s.State == want {
					return time.Since(start)
				}
			}
			if time.Since(start) > within {
				t.Fatalf("%s not %s within %v: %+v\n%s", addr, want, within, gs, f.log.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(b2Addr, health.StateHealthy, 5*time.Second)

	b2.Stop()
	// interval × threshold + timeout, with a second to spare for a loaded machine.
	took := waitFor(b2Addr, health.StateUnhealthy, 1*2*time.Second+5*time.Second+time.Second)
	t.Logf("stopped server marked unhealthy after %v", took)
	c := f.client(t)
	if got := count(t, c, 200); got["b1"] != 200 {
		t.Fatalf("200 calls after the server died: %v", got)
	}

	l2, err := net.Listen("tcp", b2Addr)
	if err != nil {
		t.Fatalf("restart on the same port: %v", err)
	}
	testutil.ServeEcho(t, l2, echo.Options{Name: "b2"})
	waitFor(b2Addr, health.StateHealthy, 5*time.Second)
	if got := count(t, c, 40); got["b2"] == 0 {
		t.Fatalf("the restarted server gets no calls: %v", got)
	}
	if !strings.Contains(f.log.String(), `from=healthy to=unhealthy reason="connection refused"`) {
		t.Fatalf("the state change is not logged:\n%s", f.log.String())
	}
}

// TestSNIPicksTheCertificate attaches a second certificate to the running listener: clients that
// ask for its name get it, the others keep the default.
func TestSNIPicksTheCertificate(t *testing.T) {
	_, b1 := testutil.StartEcho(t, echo.Options{Name: "b1"})
	f := startServe(t, server(t, b1, 100))
	certPEM, keyPEM, notAfter, err := certs.Issue(f.caCert, f.caKey, []string{"api.example.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Update(context.Background(), func(s *state.State) error {
		if _, err := s.AddCertificate(state.Certificate{Name: "api-example", Domains: []string{"api.example.test"}, NotAfter: notAfter, Issuer: "albctl-ca", CertPEM: certPEM, KeyPEM: keyPEM}); err != nil {
			return err
		}
		_, err := s.UpdateListener(s.Listeners[0].ID, func(l *state.Listener) error {
			l.AdditionalCertificateIDs = append(l.AdditionalCertificateIDs, "api-example")
			return nil
		})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	served := func(name string) string {
		conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(f.port), &tls.Config{RootCAs: f.caPool, ServerName: name, NextProtos: []string{"h2"}})
		if err != nil {
			return "handshake: " + err.Error()
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].DNSNames[0]
	}
	deadline := time.Now().Add(time.Second)
	for served("api.example.test") != "api.example.test" {
		if time.Now().After(deadline) {
			t.Fatalf("api.example.test is served %q a second after the change", served("api.example.test"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := served("grpc.example.test"); got != "grpc.example.test" {
		t.Fatalf("the default certificate changed: %q", got)
	}
	// An attached certificate cannot be deleted.
	_, err = f.store.Update(context.Background(), func(s *state.State) error {
		_, err := s.DeleteCertificate("api-example")
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "certificate api-example is used by listeners") {
		t.Fatalf("deleting an attached certificate: %v", err)
	}
}
