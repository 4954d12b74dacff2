package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/state"
	"github.com/albctl/albctl/pkg/state/storetest"
)

// shared is the etcd most tests use, one per test binary; each test takes its own prefix.
var shared struct {
	endpoint string
	raw      *clientv3.Client
}

func TestMain(m *testing.M) {
	os.Exit(runWithEtcd(m))
}

func runWithEtcd(m *testing.M) int {
	dir, err := os.MkdirTemp("", "etcdstore-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	e, err := startEtcd(dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer e.Close()
	shared.endpoint = e.Clients[0].Addr().String()
	shared.raw, err = clientv3.New(clientv3.Config{Endpoints: []string{shared.endpoint}, Logger: zap.NewNop()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer shared.raw.Close()
	return m.Run()
}

// startEtcd runs a one-member etcd in dir on loopback ports the kernel picks, unless configure
// sets others, and waits until it serves.
func startEtcd(dir string, configure func(*embed.Config)) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.UnsafeNoFsync = true // tests only: a crash loses nothing that matters
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.EnableGRPCGateway = false
	cfg.TickMs, cfg.ElectionMs = 10, 100 // a one-member cluster elects itself sooner
	local := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{local}, []url.URL{local}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{local}, []url.URL{local}
	if configure != nil {
		configure(cfg)
	}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(15 * time.Second):
		e.Close()
		return nil, errors.New("embedded etcd not ready after 15s")
	}
}

// newEtcd is startEtcd for one test, stopped at its end.
func newEtcd(t *testing.T, configure func(*embed.Config)) *embed.Etcd {
	t.Helper()
	e, err := startEtcd(t.TempDir(), configure)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

var prefixes atomic.Int64

// sharedOptions are options for a new, empty prefix on the shared etcd.
func sharedOptions() Options {
	return Options{Endpoints: []string{shared.endpoint}, Prefix: fmt.Sprintf("/albctl/test%d", prefixes.Add(1))}
}

func open(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func put(t *testing.T, key string, data []byte) {
	t.Helper()
	if _, err := shared.raw.Put(context.Background(), key, string(data)); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, key string) (value []byte, modRevision int64) {
	t.Helper()
	resp, err := shared.raw.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		opts := sharedOptions()
		key := opts.Prefix + "/state"
		return storetest.Harness{
			Store:    open(t, opts),
			Reopen:   func() state.Store { return open(t, opts) },
			ReadRaw:  func() []byte { v, _ := get(t, key); return v },
			WriteRaw: func(data []byte) { put(t, key, data) },
		}
	})
}

func createLB(name string) func(*state.State) error {
	return func(s *state.State) error {
		_, err := s.CreateLoadBalancer(state.LoadBalancer{Name: name, Address: "127.0.0.1"})
		return err
	}
}

func TestUpdateThatChangesNothingDoesNotWrite(t *testing.T) {
	s := open(t, sharedOptions())
	ctx := context.Background()
	if _, err := s.Update(ctx, createLB("first")); err != nil {
		t.Fatal(err)
	}
	_, before := get(t, s.key)
	if _, err := s.Update(ctx, func(*state.State) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, after := get(t, s.key); after != before {
		t.Fatalf("the key was rewritten: revision %d, was %d", after, before)
	}
}

// TestLoadRevisionIsTheDocuments: the revision is the document's, not etcd's, which other keys
// move: replicas that applied one document record one revision.
func TestLoadRevisionIsTheDocuments(t *testing.T) {
	s := open(t, sharedOptions())
	ctx := context.Background()
	if _, err := s.Update(ctx, createLB("first")); err != nil {
		t.Fatal(err)
	}
	put(t, s.prefix()+"/replicas/other", []byte("{}"))
	_, rev, err := s.LoadRevision(ctx)
	if _, modRev := get(t, s.key); err != nil || rev != modRev {
		t.Fatalf("LoadRevision = %d (%v), want the document's %d", rev, err, modRev)
	}
}

// TestUpdateGivesUpUnderConstantChange has another writer commit during every attempt.
func TestUpdateGivesUpUnderConstantChange(t *testing.T) {
	s := open(t, sharedOptions())
	ctx := context.Background()
	attempts := 0
	_, err := s.Update(ctx, func(st *state.State) error {
		attempts++
		other := state.New()
		if err := createLB(fmt.Sprintf("other-%d", attempts))(other); err != nil {
			return err
		}
		data, _ := state.Encode(other)
		put(t, s.key, data)
		return createLB("mine")(st)
	})
	var conflict *ConflictError
	if !errors.As(err, &conflict) || attempts != maxAttempts {
		t.Fatalf("after %d attempts: error %v, want a ConflictError after %d", attempts, err, maxAttempts)
	}
	t.Log(err)
	got, err := s.Load(ctx)
	if err != nil || len(got.LoadBalancers) != 1 || got.LoadBalancers[0].Name != fmt.Sprintf("other-%d", maxAttempts) {
		t.Fatalf("the document holds %+v (%v), want only the other writer's last", got, err)
	}
}

// watcher runs Watch for one test and collects what it hands over.
type watcher struct {
	applied  chan applied
	reported chan error
	resumed  chan int64
	done     chan struct{}
	cancel   context.CancelFunc
}

type applied struct {
	state *state.State
	rev   int64
}

func startWatch(t *testing.T, s *Store, after int64) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{applied: make(chan applied, 10), reported: make(chan error, 10), resumed: make(chan int64, 10), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(w.done)
		s.Watch(ctx, after, func(st *state.State, rev int64) { w.applied <- applied{st, rev} }, func(err error) { w.reported <- err }, func(rev int64) { w.resumed <- rev })
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// stop cancels the watch and waits until Watch returns.
func (w *watcher) stop(t *testing.T) {
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		t.Error("Watch did not return after its context was canceled")
	}
}

func (w *watcher) expectApply(t *testing.T, within time.Duration) applied {
	t.Helper()
	select {
	case a := <-w.applied:
		return a
	case err := <-w.reported:
		t.Fatalf("reported %v, want a document applied", err)
	case <-time.After(within):
		t.Fatalf("nothing applied within %v", within)
	}
	return applied{}
}

func (w *watcher) expectReport(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case a := <-w.applied:
		t.Fatalf("applied %d load balancers, want a report", len(a.state.LoadBalancers))
	case err := <-w.reported:
		return err
	case <-time.After(within):
		t.Fatalf("nothing reported within %v", within)
	}
	return nil
}

func (w *watcher) expectNothing(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case a := <-w.applied:
		t.Fatalf("applied %d load balancers, want nothing", len(a.state.LoadBalancers))
	case err := <-w.reported:
		t.Fatalf("reported %v, want nothing", err)
	case <-time.After(d):
	}
}

func TestWatchSeesUpdates(t *testing.T) {
	opts := sharedOptions()
	s := open(t, opts)
	ctx := context.Background()
	_, rev, err := s.LoadRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, s, rev)
	other := open(t, opts)
	for _, name := range []string{"first", "second"} {
		if _, err := other.Update(ctx, createLB(name)); err != nil {
			t.Fatal(err)
		}
		a := w.expectApply(t, time.Second)
		if last := a.state.LoadBalancers[len(a.state.LoadBalancers)-1]; last.Name != name {
			t.Fatalf("applied %s, want %s", last.Name, name)
		}
		if _, modRev := get(t, s.key); a.rev != modRev {
			t.Fatalf("applied at revision %d, the key's is %d", a.rev, modRev)
		}
	}
	w.stop(t)
}

func TestWatchRecoversFromCompaction(t *testing.T) {
	s := open(t, sharedOptions())
	ctx := context.Background()
	_, rev, err := s.LoadRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"lb-a", "lb-b", "lb-c"} {
		if _, err := s.Update(ctx, createLB(name)); err != nil {
			t.Fatal(err)
		}
	}
	// The watch starts behind the compacted revision, as one that was away would resume.
	_, latest := get(t, s.key)
	if _, err := shared.raw.Compact(ctx, latest); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, s, rev)
	if a := w.expectApply(t, 2*time.Second); len(a.state.LoadBalancers) != 3 || a.rev != latest {
		t.Fatalf("after compaction applied %d load balancers at revision %d, want 3 at %d", len(a.state.LoadBalancers), a.rev, latest)
	}
	if _, err := s.Update(ctx, createLB("lb-d")); err != nil {
		t.Fatal(err)
	}
	if a := w.expectApply(t, time.Second); len(a.state.LoadBalancers) != 4 {
		t.Fatalf("applied %d load balancers, want 4", len(a.state.LoadBalancers))
	}
}

func TestWatchReportsBadAndDeletedDocuments(t *testing.T) {
	s := open(t, sharedOptions())
	ctx := context.Background()
	_, rev, err := s.LoadRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, s, rev)
	put(t, s.key, []byte(`{"version": 1, "pools": []}`))
	var corrupt *state.CorruptError
	if err := w.expectReport(t, time.Second); !errors.As(err, &corrupt) {
		t.Fatalf("reported %v, want a CorruptError", err)
	}
	if _, err := shared.raw.Delete(ctx, s.key); err != nil {
		t.Fatal(err)
	}
	if err := w.expectReport(t, time.Second); !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("deletion reported as %v", err)
	}
	if _, err := s.Update(ctx, createLB("again")); err != nil {
		t.Fatal(err)
	}
	if a := w.expectApply(t, time.Second); len(a.state.LoadBalancers) != 1 {
		t.Fatalf("applied %d load balancers, want 1", len(a.state.LoadBalancers))
	}
}

func TestWatchOutlivesLosingEtcd(t *testing.T) {
	ctx := context.Background()
	direct := sharedOptions()
	writer := open(t, direct)
	viaProxy := direct
	p := testutil.StartTCPProxy(t, shared.endpoint)
	viaProxy.Endpoints = []string{p.Addr}
	s := open(t, viaProxy)
	s.probeInterval = 250 * time.Millisecond
	_, rev, err := s.LoadRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, s, rev)
	if _, err := writer.Update(ctx, createLB("before")); err != nil {
		t.Fatal(err)
	}
	w.expectApply(t, time.Second)

	p.Cut()
	var lost *UnreachableError
	if err := w.expectReport(t, 3*time.Second); !errors.As(err, &lost) || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("lost etcd reported as %v", err)
	}
	if _, err := writer.Update(ctx, createLB("during")); err != nil {
		t.Fatal(err)
	}
	w.expectNothing(t, time.Second) // the loss is reported once

	p.Restore(t)
	a := w.expectApply(t, 10*time.Second)
	if len(a.state.LoadBalancers) != 2 {
		t.Fatalf("after etcd came back applied %d load balancers, want 2", len(a.state.LoadBalancers))
	}
	select {
	case rev := <-w.resumed:
		if rev != a.rev {
			t.Fatalf("resumed at revision %d, want %d, the one applied", rev, a.rev)
		}
	case <-time.After(time.Second):
		t.Fatal("the watch did not say it resumed")
	}
	p.Cut()
	w.stop(t) // cancel ends Watch while etcd is away, too
}

// TestWatchReplicasSeesRecordsComeAndGo registers, updates and closes a replica's record and
// checks that a watcher of the records hears of each, as it happens.
func TestWatchReplicasSeesRecordsComeAndGo(t *testing.T) {
	s := open(t, sharedOptions())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 16)
	go s.WatchReplicas(ctx, func() { changed <- struct{}{} })
	wait := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatalf("no change heard after %s", what)
		}
	}
	wait("the watch began")
	r, err := s.Register(ctx, "r1", []byte(`{"id":"r1"}`))
	if err != nil {
		t.Fatal(err)
	}
	wait("a replica registered")
	if got, _ := s.Replicas(ctx); string(got["r1"]) != `{"id":"r1"}` {
		t.Fatalf("records %q", got)
	}
	if err := r.Update(ctx, []byte(`{"id":"r1","revision":2}`)); err != nil {
		t.Fatal(err)
	}
	wait("its record changed")
	r.Close()
	wait("it deregistered")
	if got, _ := s.Replicas(ctx); len(got) != 0 {
		t.Fatalf("records after deregistering: %q", got)
	}
}
