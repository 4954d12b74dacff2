package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newStore(t *testing.T) *FileStore {
	t.Helper()
	return NewFileStore(filepath.Join(t.TempDir(), "sub", "state.json"))
}

func TestStoreWritesPrivately(t *testing.T) {
	store := newStore(t)
	_, err := store.Update(context.Background(), func(s *State) error {
		_, err := s.CreateLoadBalancer(LoadBalancer{Name: "demo", Address: "127.0.0.1"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(store.Location())
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, want 0600", info.Mode().Perm())
	}
	s, err := store.Load(context.Background())
	if err != nil || len(s.LoadBalancers) != 1 || s.LoadBalancers[0].Name != "demo" {
		t.Fatalf("reload: %+v, %v", s, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(store.Location()))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestStoreFailedChangeWritesNothing(t *testing.T) {
	store := newStore(t)
	ctx := context.Background()
	if _, err := store.Update(ctx, func(s *State) error {
		_, err := s.CreateServerGroup(NewServerGroup("grpc-backends", ProtocolGRPC))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(store.Location())
	_, err := store.Update(ctx, func(s *State) error {
		// The first server is fine; the second breaks the rules, so neither may land.
		_, err := s.AddServers("grpc-backends", []Server{{Address: "127.0.0.1", Port: 1, Weight: 1}, {Address: "127.0.0.1", Port: 2, Weight: 101}})
		return err
	})
	if !IsInvalid(err) {
		t.Fatalf("error = %v, want an InvalidError", err)
	}
	after, _ := os.ReadFile(store.Location())
	if string(before) != string(after) {
		t.Fatal("a refused change altered the state file")
	}
}

func TestStoreRefusesBadFiles(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"syntax", "{\n  \"version\": 1,\n  oops\n}", "line 3, column 3"},
		{"truncated", `{"version": 1, "loadBalancers": [`, "unexpected end of JSON input"},
		{"no version", `{"loadBalancers": []}`, `no "version" field`},
		{"future version", `{"version": 2}`, "version 2, but this albctl reads version 1"},
		{"unknown field", `{"version": 1, "pools": []}`, `unknown field "pools"`},
		{"invalid content", `{"version": 1, "loadBalancers": [{"id": "alb-1", "name": "x", "address": "nowhere", "dnsName": "d"}]}`, `invalid name "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newStore(t)
			if err := os.MkdirAll(filepath.Dir(store.Location()), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(store.Location(), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, loadErr := store.Load(context.Background())
			_, updateErr := store.Update(context.Background(), func(s *State) error {
				_, err := s.CreateLoadBalancer(LoadBalancer{Name: "demo", Address: "127.0.0.1"})
				return err
			})
			for _, err := range []error{loadErr, updateErr} {
				var corrupt *CorruptError
				if !errors.As(err, &corrupt) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), store.Location()) {
					t.Errorf("error = %v, want a CorruptError naming the file and %q", err, tt.want)
				}
			}
			if got, _ := os.ReadFile(store.Location()); string(got) != tt.content {
				t.Error("the bad file was overwritten")
			}
		})
	}
}

// A state file written before slow start existed has no slowStart field: it loads, with slow
// start off, and is written back with the field.
func TestStoreReadsGroupsWithoutSlowStart(t *testing.T) {
	group := `{"id": "sgp-a", "name": "grpc-backends", "protocol": "gRPC", "scheduler": "%s", "drainTimeout": "300s", %s"healthCheck": {"enabled": true, "protocol": "gRPC", "method": "POST", "path": "/a.B/C", "codes": "12", "interval": "2s", "timeout": "5s", "healthyThreshold": 3, "unhealthyThreshold": 3, "port": 0}, "servers": []}`
	doc := func(scheduler, slowStart string) []byte {
		return []byte(`{"version": 1, "serverGroups": [` + fmt.Sprintf(group, scheduler, slowStart) + `]}`)
	}
	s, err := Decode("old.json", doc("wrr", ""))
	if err != nil || s.ServerGroups[0].SlowStart != 0 {
		t.Fatalf("old file: %v, state %+v", err, s)
	}
	data, _ := json.Marshal(s.ServerGroups[0])
	if !strings.Contains(string(data), `"slowStart":"0s"`) {
		t.Fatalf("slowStart not written: %s", data)
	}
	if s, err := Decode("new.json", doc("wlc", `"slowStart": "60s", `)); err != nil || s.ServerGroups[0].SlowStart.D() != time.Minute {
		t.Fatalf("slowStart 60s: %v", err)
	}
	_, err = Decode("bad.json", doc("sch", `"slowStart": "60s", `))
	var corrupt *CorruptError
	if !errors.As(err, &corrupt) || !strings.Contains(err.Error(), `invalid slowStart "60s": needs the wrr or wlc scheduler`) {
		t.Fatalf("sch with slow start: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version": 1}`))
	f.Add([]byte(`{"version": 1, "loadBalancers": [{"id": "alb-a", "name": "demo", "address": "127.0.0.1", "dnsName": "alb-a.x"}]}`))
	f.Add([]byte(`{"version": 1, "serverGroups": [{"id": "sgp-a", "name": "g", "protocol": "gRPC", "scheduler": "wrr", "drainTimeout": 5, "healthCheck": {"enabled": true, "protocol": "gRPC", "method": "POST", "path": "/a.B/C", "codes": "12", "interval": "2s", "timeout": "5s", "healthyThreshold": 3, "unhealthyThreshold": 3, "port": 0}, "servers": []}]}`))
	f.Add([]byte(`{"version": 2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode("fuzz.json", data)
		if err != nil {
			var corrupt *CorruptError
			if !errors.As(err, &corrupt) {
				t.Fatalf("error %v is not a CorruptError", err)
			}
			return
		}
		// What decodes must be valid, since every writer relies on it.
		if err := s.Validate(); err != nil {
			t.Fatalf("decoded an invalid document: %v", err)
		}
	})
}

func TestWatchReportsBadAndMissingFiles(t *testing.T) {
	store := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	create := func(name string) {
		t.Helper()
		if _, err := store.Update(ctx, func(s *State) error {
			_, err := s.CreateLoadBalancer(LoadBalancer{Name: name, Address: "127.0.0.1"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	create("first")
	applied, reported := make(chan *State, 10), make(chan error, 10)
	go store.Watch(ctx, store.Stat(), 10*time.Millisecond, func(s *State) { applied <- s }, func(err error) { reported <- err })
	expect := func(what string) any {
		t.Helper()
		select {
		case s := <-applied:
			if what != "apply" {
				t.Fatalf("applied %d load balancers, want %s", len(s.LoadBalancers), what)
			}
			return s
		case err := <-reported:
			if what != "report" {
				t.Fatalf("reported %v, want %s", err, what)
			}
			return err
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing happened, want %s", what)
			return nil
		}
	}

	create("second")
	if s := expect("apply").(*State); len(s.LoadBalancers) != 2 {
		t.Fatalf("applied %d load balancers, want 2", len(s.LoadBalancers))
	}
	if err := os.WriteFile(store.Location(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := expect("report").(error); !strings.Contains(err.Error(), "cannot be used") {
		t.Fatalf("corrupt file reported as %v", err)
	}
	if err := os.Remove(store.Location()); err != nil {
		t.Fatal(err)
	}
	if err := expect("report").(error); !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("missing file reported as %v", err)
	}
	create("third") // a new file after the loss is applied again
	if s := expect("apply").(*State); len(s.LoadBalancers) != 1 {
		t.Fatalf("applied %d load balancers, want 1", len(s.LoadBalancers))
	}
}
