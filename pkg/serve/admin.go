package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/albctl/albctl/pkg/etcdstore"
	"github.com/albctl/albctl/pkg/health"
	"github.com/albctl/albctl/pkg/proxy"
	"github.com/albctl/albctl/pkg/state"
)

// Runtime is what a running serve records beside its state file, so other albctl commands find
// its admin API without flags.
type Runtime struct {
	Admin string    `json:"admin"`
	PID   int       `json:"pid"`
	Since time.Time `json:"since"`
}

// RuntimePath is where serve records its Runtime for the state file at statePath.
func RuntimePath(statePath string) string {
	if etcdstore.IsLocation(statePath) {
		return ""
	}
	return strings.TrimSuffix(statePath, filepath.Ext(statePath)) + "-serve.json"
}

// StatusReport is the admin API's /status document.
type StatusReport struct {
	StateFile   string                 `json:"stateFile"`
	Since       time.Time              `json:"since"`
	Listeners   []proxy.ListenerStatus `json:"listeners"`
	Groups      []proxy.GroupStatus    `json:"groups"`
	Health      []health.GroupStatus   `json:"health"`
	ActiveCalls int64                  `json:"activeCalls"`
}

func (srv *Server) startAdmin(ctx context.Context, wg *sync.WaitGroup) (string, error) {
	runtimePath := RuntimePath(srv.opts.Store.Location())
	addr := srv.opts.AdminAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("admin API: %w", err)
	}
	since := time.Now().UTC()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st := srv.proxy.Status()
		srv.mu.Lock()
		report := StatusReport{StateFile: srv.opts.Store.Location(), Since: since, Listeners: st.Listeners,
			Groups: st.Groups, Health: srv.health.Statuses(), ActiveCalls: st.ActiveCalls}
		srv.mu.Unlock()
		writeJSON(w, report)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, srv.health.Statuses())
	})
	mux.HandleFunc("GET /health/{group}", func(w http.ResponseWriter, r *http.Request) {
		gs, ok := srv.health.Status(r.PathValue("group"))
		if !ok {
			http.Error(w, "server group "+r.PathValue("group")+" is not served", http.StatusNotFound)
			return
		}
		writeJSON(w, gs)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_ = srv.proxy.WriteMetrics(w)
	})
	httpServer := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := httpServer.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			srv.log.Error("admin API stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = httpServer.Shutdown(shutdownCtx)
		removeRuntime(runtimePath, os.Getpid())
	}()
	rt := Runtime{Admin: l.Addr().String(), PID: os.Getpid(), Since: since}
	// Many replicas may serve an etcd state (no runtime path): none records itself beside it.
	if runtimePath != "" {
		if err := writeRuntime(runtimePath, rt); err != nil {
			srv.log.Warn("could not record the admin API's address; other commands need --admin", "err", err)
		}
	}
	return rt.Admin, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeRuntime(path string, rt Runtime) error {
	data, err := json.Marshal(rt)
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(path, append(data, '\n'))
}

// removeRuntime removes the record if it is still this process's.
func removeRuntime(path string, pid int) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var rt Runtime
	if json.Unmarshal(data, &rt) == nil && rt.PID == pid {
		_ = os.Remove(path)
	}
}

// Discover returns the admin API address of a serve running for the state, as Locate finds it.
func Discover(store state.Store, override string) (string, error) {
	r, err := Locate(store, override)
	return r.Admin, err
}

// Locate finds a serve running for the state: override if given, else the one serve recorded
// beside a state file, or the oldest live replica of an etcd state that answers, whose ID it
// then gives too. It fails when nothing answers.
func Locate(store state.Store, override string) (Replica, error) {
	loc := store.Location()
	if override != "" {
		if err := Get(override, "/healthz", nil); err != nil {
			return Replica{}, fmt.Errorf("no albctl serve answers at --admin %s: %v", override, err)
		}
		return Replica{Admin: override}, nil
	}
	if st, ok := store.(*etcdstore.Store); ok {
		return locateReplica(st)
	}
	data, err := os.ReadFile(RuntimePath(loc))
	if errors.Is(err, fs.ErrNotExist) {
		return Replica{}, fmt.Errorf("%w (%s): start one with 'albctl serve', or name its admin API with --admin", errNotRunning, loc)
	}
	if err != nil {
		return Replica{}, err
	}
	var rt Runtime
	if err := json.Unmarshal(data, &rt); err != nil || rt.Admin == "" {
		return Replica{}, fmt.Errorf("%s is not a serve record: %v", RuntimePath(loc), err)
	}
	if err := Get(rt.Admin, "/healthz", nil); err != nil {
		return Replica{}, fmt.Errorf("%w (%s): the one recorded at %s does not answer; start one with 'albctl serve'", errNotRunning, loc, rt.Admin)
	}
	return Replica{Admin: rt.Admin}, nil
}

// locateReplica returns the oldest live replica of an etcd state whose admin API answers.
func locateReplica(st *etcdstore.Store) (Replica, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	replicas, err := Replicas(ctx, st)
	if err != nil {
		return Replica{}, fmt.Errorf("list the serve replicas of %s: %w", st.Location(), err)
	}
	for _, r := range replicas {
		if Get(r.Admin, "/healthz", nil) == nil {
			return r, nil
		}
	}
	return Replica{}, fmt.Errorf("%w (%s): no live replica answers ('albctl lb replicas' lists them); start one with 'albctl serve', or name one's admin API with --admin", errNotRunning, st.Location())
}

// Get fetches path from the admin API at addr and decodes its JSON into v (nil: discard).
func Get(addr, path string, v any) error {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &statusError{code: resp.StatusCode, msg: fmt.Sprintf("admin API %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))}
	}
	if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// statusError is an answer of the admin API other than 200 OK.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// GroupHealth fetches the health of a server group's servers from the admin API at addr.
func GroupHealth(addr string, sg *state.ServerGroup) (health.GroupStatus, error) {
	var gs health.GroupStatus
	err := Get(addr, "/health/"+sg.ID, &gs)
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusNotFound {
		return gs, fmt.Errorf("the running serve does not serve server group %s: no listener forwards to it", sg.Name)
	}
	if err != nil {
		return gs, fmt.Errorf("server group %s: %w", sg.Name, err)
	}
	return gs, nil
}
