package serve

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/health"
	"github.com/albctl/albctl/pkg/state"
)

// An HTTP listener in front of an HTTP server group, added to the state while serve runs:
// requests are balanced per request and the HTTP health check takes a failing server out.
func TestServeRunsHTTPListenersOfHTTPGroups(t *testing.T) {
	var backends []*httptest.Server
	var w2Failing atomic.Bool
	for _, name := range []string{"w1", "w2"} {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if name == "w2" && w2Failing.Load() {
				http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(w, name)
		}))
		t.Cleanup(s.Close)
		backends = append(backends, s)
	}
	f := startServe(t)
	port := testutil.FreePort(t)
	if _, err := f.store.Update(context.Background(), func(s *state.State) error {
		sg := state.NewServerGroup("web", state.ProtocolHTTP)
		sg.HealthCheck.Interval, sg.HealthCheck.HealthyThreshold, sg.HealthCheck.UnhealthyThreshold = state.Duration(time.Second), 2, 2
		if _, err := s.CreateServerGroup(sg); err != nil {
			return err
		}
		if _, err := s.AddServers("web", []state.Server{server(t, backends[0].Listener.Addr().String(), 100), server(t, backends[1].Listener.Addr().String(), 100)}); err != nil {
			return err
		}
		_, err := s.CreateListener(state.Listener{LBID: "demo", Protocol: state.ProtocolHTTP, Port: port, ServerGroupID: "web",
			IdleTimeout: state.Duration(state.DefaultIdleTimeout), RequestTimeout: state.Duration(state.DefaultRequestTimeout)})
		return err
	}); err != nil {
		t.Fatal(err)
	}

	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	client := &http.Client{Timeout: 5 * time.Second}
	counts := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			res, err := client.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			got[fmt.Sprintf("%d %s", res.StatusCode, body)]++
		}
		return got
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		res, err := client.Get(url)
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HTTP listener added to the state is not served: %v\n%s", err, f.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// serve logs the new listener once Apply has returned, which may be after the first answer.
	logged := func() bool {
		return strings.Contains(f.log.String(), `msg="listener serving"`) && strings.Contains(f.log.String(), "addr=127.0.0.1:"+strconv.Itoa(port))
	}
	for deadline := time.Now().Add(2 * time.Second); !logged(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no listener serving line for the listener added while serving:\n%s", f.log.String())
		}
	}
	if got := counts(20); got["200 w1"] != 10 || got["200 w2"] != 10 {
		t.Fatalf("20 requests landed %v, want 10 on each server", got)
	}

	// w2 answers 503 from now on: only the active HTTP check (HEAD /, 2xx or 3xx) can tell.
	w2 := backends[1].Listener.Addr().String()
	w2Failing.Store(true)
	st, _ := f.store.Load(context.Background())
	sg, _ := st.ServerGroup("web")
	deadline = time.Now().Add(8 * time.Second)
	for {
		var gs health.GroupStatus
		if err := Get(f.admin, "/health/"+sg.ID, &gs); err != nil {
			t.Fatal(err)
		}
		for _, s := range gs.Servers {
			if s.Addr == w2 && s.State == health.StateUnhealthy {
				if got := counts(10); got["200 w1"] != 10 {
					t.Fatalf("10 requests after w2 was marked unhealthy: %v", got)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stopped server is not unhealthy: %+v\n%s", gs, f.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
