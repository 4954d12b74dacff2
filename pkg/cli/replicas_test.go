package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/echo/echopb"
	"github.com/albctl/albctl/pkg/etcdstore"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/albctl/albctl/pkg/state"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// replicaState fills a new etcd state with the load balancer demo and its gRPC listener on a
// free port, forwarding to grpc-backends with the one server given, and returns the state and
// the port.
func replicaState(t *testing.T, server string) (string, int) {
	t.Helper()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	loc := etcdState(t)
	port := testutil.FreePort(t)
	mustRun(t, loc, "lb", "create", "--name", "demo")
	mustRun(t, loc, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC")
	mustRun(t, loc, "servergroup", "add-servers", "grpc-backends", "--server", server)
	mustRun(t, loc, "cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test", "--domain", "127.0.0.2", "--domain", "127.0.0.3")
	mustRun(t, loc, "listener", "create", "--lb", "demo", "--port", itoa(port), "--cert", "grpc-example", "--server-group", "grpc-backends")
	return loc, port
}

// replicaClient calls through a replica's listener at addr, verifying it with the state's CA.
func replicaClient(t *testing.T, loc, addr string) echopb.EchoClient {
	t.Helper()
	caPEM, err := os.ReadFile(strings.TrimSpace(mustRun(t, loc, "cert", "ca")))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "grpc.example.test"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return echopb.NewEchoClient(cc)
}

// etcdEndpoint is the one endpoint of an etcd state's location.
func etcdEndpoint(t *testing.T, loc string) (endpoint, prefix string) {
	t.Helper()
	endpoints, prefix, err := etcdstore.ParseLocation(loc)
	if err != nil {
		t.Fatal(err)
	}
	return endpoints[0], prefix
}

// openEtcdStore opens the etcd state at loc as serve does, for changes made in the test.
func openEtcdStore(t *testing.T, loc string) *etcdstore.Store {
	t.Helper()
	endpoint, prefix := etcdEndpoint(t, loc)
	st, err := etcdstore.Open(etcdstore.Options{Endpoints: []string{endpoint}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// etcdClient is a plain client of the etcd that holds loc, for what albctl does not do: raw
// reads, watching the replicas' records, compaction.
func etcdClient(t *testing.T, loc string) *clientv3.Client {
	t.Helper()
	endpoint, _ := etcdEndpoint(t, loc)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stateRevision is the revision of the last write of the state's document.
func stateRevision(t *testing.T, c *clientv3.Client, loc string) int64 {
	t.Helper()
	_, prefix := etcdEndpoint(t, loc)
	resp, err := c.Get(context.Background(), prefix+"/state")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read the state's key: %v", err)
	}
	return resp.Kvs[0].ModRevision
}

// appliedRevisions follows, in etcd, the revisions of the state's document and the revision each
// replica's record says it has applied.
type appliedRevisions struct {
	mu       sync.Mutex
	document int64
	byID     map[string]int64
	changed  chan struct{}
}

func watchApplied(t *testing.T, c *clientv3.Client, loc string) *appliedRevisions {
	t.Helper()
	_, prefix := etcdEndpoint(t, loc)
	dir := prefix + "/replicas/"
	a := &appliedRevisions{byID: map[string]int64{}, changed: make(chan struct{}, 1)}
	record := func(kv *mvccpb.KeyValue) {
		var r serve.Replica
		a.mu.Lock()
		switch {
		case string(kv.Key) == prefix+"/state":
			a.document = kv.ModRevision
		case json.Unmarshal(kv.Value, &r) == nil:
			a.byID[strings.TrimPrefix(string(kv.Key), dir)] = r.AppliedRevision
		}
		a.mu.Unlock()
		select {
		case a.changed <- struct{}{}:
		default:
		}
	}
	resp, err := c.Get(context.Background(), prefix+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		record(kv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	events := c.Watch(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	go func() {
		for resp := range events {
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypePut {
					record(ev.Kv)
				}
			}
		}
	}()
	return a
}

// wait waits until n replicas have applied a document written after revision after, and returns
// that document's revision, or false at the deadline.
func (a *appliedRevisions) wait(n int, after int64, within time.Duration) (int64, bool) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		rev, done := a.document, 0
		for _, applied := range a.byID {
			if applied >= rev {
				done++
			}
		}
		a.mu.Unlock()
		if rev > after && done >= n {
			return rev, true
		}
		select {
		case <-a.changed:
		case <-deadline.C:
			return rev, false
		}
	}
}

func (a *appliedRevisions) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fmt.Sprintf("document at revision %d, replicas applied %v", a.document, a.byID)
}

// callLoad calls through each client one call after another until stopped, and counts.
type callLoad struct {
	calls, failed atomic.Int64
	mu            sync.Mutex
	firstErr      error
	last          []string // the server that answered each client's last call
	stop          context.CancelFunc
	done          sync.WaitGroup
}

func startLoad(t *testing.T, clients ...echopb.EchoClient) *callLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &callLoad{stop: cancel, last: make([]string, len(clients))}
	for i, c := range clients {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for ctx.Err() == nil {
				callCtx, cancelCall := context.WithTimeout(ctx, 5*time.Second)
				res, err := c.UnaryEcho(callCtx, &echopb.EchoRequest{Message: "load"})
				cancelCall()
				if ctx.Err() != nil {
					return
				}
				l.calls.Add(1)
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					if l.firstErr == nil {
						l.firstErr = fmt.Errorf("client %d: %w", i, err)
					}
				} else {
					l.last[i] = res.Server
				}
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.finish)
	return l
}

// finish stops the calls and waits for the last.
func (l *callLoad) finish() {
	l.stop()
	l.done.Wait()
}

// lastServers says which server answered each client's last call.
func (l *callLoad) lastServers() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.last)
}

func (l *callLoad) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed.Load() != 0 {
		t.Errorf("%d of %d calls failed; the first: %v", l.failed.Load(), l.calls.Load(), l.firstErr)
	}
}

// TestReplicasApplyChangesUnderLoad: three replicas on 127.0.0.1-3 carry calls from grpc-go
// clients while 100 changes (a server added, a weight changed, a listener added) are made;
// each reaches every replica within a second, and no call fails.
func TestReplicasApplyChangesUnderLoad(t *testing.T) {
	_, first := testutil.StartEcho(t, echo.Options{Name: "b0"})
	loc, port := replicaState(t, first)
	binds := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	var clients []echopb.EchoClient
	var replicas []*exec.Cmd
	for _, bind := range binds {
		cmd, _ := startReplica(t, loc, "--bind-address", bind, "--admin", "127.0.0.1:"+itoa(testutil.FreePort(t)))
		replicas = append(replicas, cmd)
		clients = append(clients, replicaClient(t, loc, bind+":"+itoa(port)))
	}
	raw := etcdClient(t, loc)
	applied := watchApplied(t, raw, loc)
	rev, ok := applied.wait(len(binds), 0, 5*time.Second)
	if !ok {
		t.Fatalf("the replicas did not record the first revision: %s", applied)
	}
	st := openEtcdStore(t, loc)
	load := startLoad(t, clients...)

	const changes = 100
	var servers []state.Server
	var ports []int
	lags := make([]time.Duration, 0, changes)
	ctx := context.Background()
	for i := range changes {
		var change func(*state.State) error
		switch i % 3 {
		case 0:
			_, addr := testutil.StartEcho(t, echo.Options{Name: fmt.Sprintf("b%d", len(servers)+1)})
			spec, err := state.ParseServerSpec(addr)
			if err != nil {
				t.Fatal(err)
			}
			servers = append(servers, spec.Server)
			change = func(s *state.State) error {
				_, err := s.AddServers("grpc-backends", []state.Server{spec.Server})
				return err
			}
		case 1:
			j := rand.IntN(len(servers))
			// Another weight than the server's, or the change would write nothing.
			servers[j].Weight = 1 + (servers[j].Weight+rand.IntN(99))%100
			target := servers[j]
			change = func(s *state.State) error {
				_, err := s.UpdateServers("grpc-backends", []state.ServerSpec{{Server: target, HasWeight: true}})
				return err
			}
		case 2:
			p := testutil.FreePort(t)
			ports = append(ports, p)
			change = func(s *state.State) error {
				l := s.Listeners[0]
				l.Port = p
				_, err := s.CreateListener(l)
				return err
			}
		}
		if _, err := st.Update(ctx, change); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
		start := time.Now()
		if rev, ok = applied.wait(len(binds), rev, time.Second); !ok {
			t.Fatalf("change %d not applied by every replica within 1s: %s", i, applied)
		}
		lags = append(lags, time.Since(start))
	}
	load.finish()
	load.check(t)
	if load.calls.Load() < changes {
		t.Errorf("only %d calls during %d changes", load.calls.Load(), changes)
	}
	slices.Sort(lags)
	percentile := func(p int) int64 { return lags[(len(lags)*p+99)/100-1].Milliseconds() }
	t.Logf("apply lag over %d changes: p50 %d ms, p99 %d ms, max %d ms; calls %d, failed %d", changes,
		percentile(50), percentile(99), percentile(100), load.calls.Load(), load.failed.Load())

	// Every replica serves what the records say it applied: the last listener added answers.
	for _, bind := range binds {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := replicaClient(t, loc, bind+":"+itoa(ports[len(ports)-1])).UnaryEcho(ctx, &echopb.EchoRequest{Message: "new listener"})
		cancel()
		if err != nil {
			t.Errorf("the last listener added, on %s: %v", bind, err)
		}
	}

	// One replica killed outright: the other two go on without a failed call.
	survivors := startLoad(t, clients[:2]...)
	time.Sleep(200 * time.Millisecond)
	_ = replicas[2].Process.Kill()
	_ = replicas[2].Wait()
	time.Sleep(time.Second)
	survivors.finish()
	survivors.check(t)
	t.Logf("a replica killed: the other two took %d calls, %d failed", survivors.calls.Load(), survivors.failed.Load())
}

// TestReplicasOutliveEtcdOutage cuts etcd off from two replicas for 10 s: they keep serving
// the last configuration without a failed call, say once that etcd is unreachable and once
// that they caught up, and apply the change made meanwhile once etcd answers.
func TestReplicasOutliveEtcdOutage(t *testing.T) {
	_, b1 := testutil.StartEcho(t, echo.Options{Name: "b1"})
	_, b2 := testutil.StartEcho(t, echo.Options{Name: "b2"})
	loc, port := replicaState(t, b1)
	mustRun(t, loc, "servergroup", "add-servers", "grpc-backends", "--server", b2+",weight=0")
	endpoint, prefix := etcdEndpoint(t, loc)
	proxy := testutil.StartTCPProxy(t, endpoint)
	viaProxy := "etcd://" + proxy.Addr + prefix
	binds := []string{"127.0.0.1", "127.0.0.2"}
	var logs []*testutil.SyncBuffer
	var clients []echopb.EchoClient
	for _, bind := range binds {
		_, log := startReplica(t, viaProxy, "--bind-address", bind, "--admin", "127.0.0.1:"+itoa(testutil.FreePort(t)))
		logs = append(logs, log)
		clients = append(clients, replicaClient(t, loc, bind+":"+itoa(port)))
	}
	load := startLoad(t, clients...)
	servedBy := func(server string) bool {
		return slices.Equal(load.lastServers(), []string{server, server})
	}
	testutil.WaitFor(t, "calls through both replicas", func() bool { return servedBy("b1") })

	proxy.Cut()
	cut := time.Now()
	// The watch probes etcd every 2 s: the loss shows after one to two probes.
	for i, log := range logs {
		for !strings.Contains(log.String(), "etcd unreachable") {
			if time.Since(cut) > 8*time.Second {
				t.Fatalf("replica %s did not say etcd is unreachable within 8 s:\n%s", binds[i], log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("the replicas said etcd is unreachable %v after the cut", time.Since(cut).Round(100*time.Millisecond))
	mustRun(t, loc, "servergroup", "update-servers", "grpc-backends", "--server", b2+",weight=100", "--server", b1+",weight=0")
	time.Sleep(10*time.Second - time.Since(cut))
	if !servedBy("b1") {
		t.Fatalf("during the outage the replicas served %v, want the last configuration (b1)", load.lastServers())
	}

	proxy.Restore(t)
	back := time.Now()
	for !servedBy("b2") {
		if time.Since(back) > 10*time.Second {
			t.Fatalf("the change made during the outage not applied 10 s after etcd came back: %v\n%s", load.lastServers(), logs[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("etcd away %v; the change made meanwhile served by both replicas %v after it came back", back.Sub(cut).Round(100*time.Millisecond), time.Since(back).Round(10*time.Millisecond))
	for i, log := range logs {
		testutil.WaitFor(t, "replica "+binds[i]+" to say it caught up", func() bool {
			return strings.Contains(log.String(), "etcd answers again; caught up")
		})
	}
	load.finish()
	load.check(t)
	for i, log := range logs {
		if lost, caught := strings.Count(log.String(), "etcd unreachable"), strings.Count(log.String(), "etcd answers again; caught up"); lost != 1 || caught != 1 {
			t.Errorf("replica %s said etcd is unreachable %d times and caught up %d times, want once each:\n%s", binds[i], lost, caught, log)
		}
	}
	t.Logf("calls %d, failed %d", load.calls.Load(), load.failed.Load())
}

// TestPausedReplicaConverges stops a replica with SIGSTOP while 500 changes are made and etcd's
// history is compacted; after SIGCONT it records and serves the latest revision within seconds.
func TestPausedReplicaConverges(t *testing.T) {
	_, b1 := testutil.StartEcho(t, echo.Options{Name: "b1"})
	_, b2 := testutil.StartEcho(t, echo.Options{Name: "b2"})
	loc, port := replicaState(t, b1)
	mustRun(t, loc, "servergroup", "add-servers", "grpc-backends", "--server", b2+",weight=0")
	replica, _ := startReplica(t, loc, "--admin", "127.0.0.1:"+itoa(testutil.FreePort(t)))
	raw := etcdClient(t, loc)
	applied := watchApplied(t, raw, loc)
	before, ok := applied.wait(1, 0, 5*time.Second)
	if !ok {
		t.Fatalf("the replica did not record the document's revision: %s", applied)
	}
	client := replicaClient(t, loc, "127.0.0.1:"+itoa(port))
	serverOfACall := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := client.UnaryEcho(ctx, &echopb.EchoRequest{Message: "hi"})
		if err != nil {
			t.Fatalf("call through the replica: %v", err)
		}
		return res.Server
	}
	if got := serverOfACall(); got != "b1" {
		t.Fatalf("call reached %s, want b1", got)
	}

	if err := replica.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replica.Process.Signal(syscall.SIGCONT) })
	paused := time.Now()
	st := openEtcdStore(t, loc)
	spec := func(addr string, weight int) state.ServerSpec {
		s, err := state.ParseServerSpec(addr + ",weight=" + itoa(weight))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const changes = 500
	for i := range changes {
		// The weights move each time; the last change leaves b1 at 0 and b2 at 100.
		w := 1 + i%100
		change := func(s *state.State) error {
			_, err := s.UpdateServers("grpc-backends", []state.ServerSpec{spec(b1, 100-w), spec(b2, w)})
			return err
		}
		if _, err := st.Update(context.Background(), change); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	latest := stateRevision(t, raw, loc)
	if latest < before+changes {
		t.Fatalf("the state's revision went from %d to %d in %d changes", before, latest, changes)
	}
	if _, err := raw.Compact(context.Background(), latest); err != nil {
		t.Fatal(err)
	}
	if _, ok := applied.wait(1, before, 0); ok {
		t.Fatalf("the stopped replica recorded a later revision: %s", applied)
	}
	t.Logf("%d changes and a compaction to revision %d made in %v while the replica was stopped", changes, latest, time.Since(paused).Round(10*time.Millisecond))

	if err := replica.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	if _, ok := applied.wait(1, latest-1, 5*time.Second); !ok {
		t.Fatalf("the replica did not record revision %d within 5s of SIGCONT: %s", latest, applied)
	}
	recorded := time.Since(resumed)
	for i := 0; i < 5; i++ {
		if got := serverOfACall(); got != "b2" {
			t.Fatalf("after SIGCONT a call reached %s, want b2 (the latest configuration)", got)
		}
	}
	t.Logf("after SIGCONT the replica recorded the latest revision in %v", recorded.Round(time.Millisecond))
}
