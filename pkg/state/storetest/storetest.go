// Package storetest is the conformance suite every state.Store passes: the same cases run against
// the file store and the etcd store, so that the CLI and the data plane can rely on one contract.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/albctl/albctl/pkg/state"
)

// Harness is one empty store under test, with a way around it to its storage. Its functions
// fail the test that opened it on error.
type Harness struct {
	Store state.Store
	// Reopen returns another store on the same location, as a second process would open it.
	Reopen func() state.Store
	// ReadRaw returns the stored bytes, or nil when nothing is stored.
	ReadRaw func() []byte
	// WriteRaw stores data as the document, bypassing the store's checks.
	WriteRaw func(data []byte)
}

// Run runs every case, each on a fresh store from open.
func Run(t *testing.T, open func(t *testing.T) Harness) {
	cases := []struct {
		name string
		run  func(t *testing.T, h Harness)
	}{
		{"EmptyIsNew", testEmptyIsNew},
		{"UpdateIsSeen", testUpdateIsSeen},
		{"FailedChangeWritesNothing", testFailedChangeWritesNothing},
		{"InvalidResultWritesNothing", testInvalidResultWritesNothing},
		{"ConcurrentWriters", testConcurrentWriters},
		{"CorruptDocuments", testCorruptDocuments},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, open(t)) })
	}
}

func createLB(name string) func(*state.State) error {
	return func(s *state.State) error {
		_, err := s.CreateLoadBalancer(state.LoadBalancer{Name: name, Address: "127.0.0.1"})
		return err
	}
}

func lbNames(s *state.State) []string {
	var names []string
	for _, lb := range s.LoadBalancers {
		names = append(names, lb.Name)
	}
	slices.Sort(names)
	return names
}

func testEmptyIsNew(t *testing.T, h Harness) {
	if h.Store.Location() == "" {
		t.Error("Location is empty")
	}
	s, err := h.Store.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != state.Version || len(s.LoadBalancers) != 0 || s.LoadBalancers == nil {
		t.Fatalf("empty store loads as %+v, want state.New()", s)
	}
	if raw := h.ReadRaw(); raw != nil {
		t.Fatalf("Load wrote %q", raw)
	}
}

func testUpdateIsSeen(t *testing.T, h Harness) {
	ctx := context.Background()
	got, err := h.Store.Update(ctx, createLB("first"))
	if err != nil {
		t.Fatal(err)
	}
	if names := lbNames(got); !slices.Equal(names, []string{"first"}) {
		t.Fatalf("Update returned load balancers %v", names)
	}
	want, err := state.Encode(got)
	if err != nil {
		t.Fatal(err)
	}
	if raw := h.ReadRaw(); string(raw) != string(want) {
		t.Fatalf("stored bytes differ from state.Encode:\n%s\nwant\n%s", raw, want)
	}
	for _, store := range []state.Store{h.Store, h.Reopen()} {
		s, err := store.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if names := lbNames(s); !slices.Equal(names, []string{"first"}) || s.LoadBalancers[0].ID != got.LoadBalancers[0].ID {
			t.Fatalf("Load from %s: load balancers %v", store.Location(), names)
		}
	}
}

func testFailedChangeWritesNothing(t *testing.T, h Harness) {
	ctx := context.Background()
	if _, err := h.Store.Update(ctx, createLB("first")); err != nil {
		t.Fatal(err)
	}
	before := h.ReadRaw()
	refused := errors.New("refused")
	_, err := h.Store.Update(ctx, func(s *state.State) error {
		if err := createLB("second")(s); err != nil {
			return err
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("error = %v, want the change's own", err)
	}
	if after := h.ReadRaw(); string(after) != string(before) {
		t.Fatal("a failed change altered the stored document")
	}
}

func testInvalidResultWritesNothing(t *testing.T, h Harness) {
	ctx := context.Background()
	if _, err := h.Store.Update(ctx, createLB("first")); err != nil {
		t.Fatal(err)
	}
	before := h.ReadRaw()
	_, err := h.Store.Update(ctx, func(s *state.State) error {
		// Past the model's methods, so only the validation of the whole document can refuse it.
		s.LoadBalancers = append(s.LoadBalancers, state.LoadBalancer{ID: "alb-1", Name: "x", Address: "nowhere", DNSName: "d"})
		return nil
	})
	if !state.IsInvalid(err) {
		t.Fatalf("error = %v, want an InvalidError", err)
	}
	if after := h.ReadRaw(); string(after) != string(before) {
		t.Fatal("an invalid document was stored")
	}
}

// testConcurrentWriters runs 20 writers, on two stores, each adding its own load balancer: none
// may be lost.
func testConcurrentWriters(t *testing.T, h Harness) {
	ctx := context.Background()
	stores := []state.Store{h.Store, h.Reopen()}
	var want []string
	var wg sync.WaitGroup
	for i := range 20 {
		name := fmt.Sprintf("lb-%02d", i)
		want = append(want, name)
		wg.Go(func() {
			if _, err := stores[i%2].Update(ctx, createLB(name)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s, err := h.Store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := lbNames(s); !slices.Equal(got, want) {
		t.Fatalf("load balancers %v, want %v", got, want)
	}
}

func testCorruptDocuments(t *testing.T, h Harness) {
	ctx := context.Background()
	for _, doc := range []struct{ name, content, want string }{
		{"bad JSON", "{\n  \"version\": 1,\n  oops\n}", "line 3, column 3"},
		{"unknown field", `{"version": 1, "pools": []}`, `unknown field "pools"`},
		{"other version", `{"version": 2}`, "version 2, but this albctl reads version 1"},
		{"another program's JSON", `{"foo": 1}`, `not an albctl state: no "version" field`},
	} {
		h.WriteRaw([]byte(doc.content))
		_, loadErr := h.Store.Load(ctx)
		called := false
		_, updateErr := h.Store.Update(ctx, func(s *state.State) error {
			called = true
			return createLB("demo")(s)
		})
		for _, err := range []error{loadErr, updateErr} {
			var corrupt *state.CorruptError
			if !errors.As(err, &corrupt) || !strings.Contains(err.Error(), doc.want) || !strings.Contains(err.Error(), h.Store.Location()) {
				t.Errorf("%s: error = %v, want a CorruptError naming %s and %q", doc.name, err, h.Store.Location(), doc.want)
			}
		}
		if called {
			t.Errorf("%s: Update ran the change on a document it cannot read", doc.name)
		}
		if got := h.ReadRaw(); string(got) != doc.content {
			t.Errorf("%s: the document was overwritten with %q", doc.name, got)
		}
	}
}
