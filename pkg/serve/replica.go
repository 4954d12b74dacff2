package serve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/albctl/albctl/pkg/etcdstore"
	"github.com/albctl/albctl/pkg/state"
)

// Replica is a serve's record in an etcd state: where it serves and how far it has applied the
// state. It lives while the serve does, and a lease's TTL after a serve that died.
type Replica struct {
	ID    string `json:"id"`
	Host  string `json:"host"`
	PID   int    `json:"pid"`
	Admin string `json:"admin"`
	LB    string `json:"lb,omitempty"` // the load balancer it serves, by ID; empty for all
	// BindAddress is the address it serves its load balancers on; empty for their own.
	BindAddress     string    `json:"bindAddress,omitempty"`
	Listeners       []string  `json:"listeners"` // the addresses it serves
	Version         string    `json:"version"`
	AppliedRevision int64     `json:"appliedRevision"`
	Since           time.Time `json:"since"`
}

// register records this serve as a replica of the etcd state.
func (srv *Server) register(ctx context.Context, st *etcdstore.Store, admin string, rev int64) error {
	host, _ := os.Hostname()
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	srv.replica = Replica{ID: host + "-" + hex.EncodeToString(id), Host: host, PID: os.Getpid(), Admin: admin,
		Version: srv.opts.Version, BindAddress: srv.opts.BindAddress, AppliedRevision: rev, Since: time.Now().UTC()}
	if srv.opts.LB != "" {
		if lb, err := srv.current.LoadBalancer(srv.opts.LB); err == nil {
			srv.replica.LB = lb.ID
		}
	}
	srv.replica.Listeners = srv.listenerAddrs()
	reg, err := st.Register(ctx, srv.replica.ID, srv.replicaRecord())
	if err != nil {
		return err
	}
	srv.registration = reg
	return nil
}

// applied updates the record after the state at rev was applied.
func (srv *Server) applied(ctx context.Context, rev int64) {
	if srv.registration == nil {
		return
	}
	srv.replica.AppliedRevision = rev
	srv.replica.Listeners = srv.listenerAddrs()
	if err := srv.registration.Update(ctx, srv.replicaRecord()); err != nil && ctx.Err() == nil {
		srv.log.Warn("replica record not updated", "err", err)
	}
}

func (srv *Server) deregister() {
	if err := srv.registration.Close(); err != nil {
		srv.log.Warn("replica record not removed; it lapses with its lease", "ttl", etcdstore.ReplicaTTL.String(), "err", err)
	}
}

func (srv *Server) replicaRecord() []byte {
	data, _ := json.Marshal(srv.replica) // a struct of strings, numbers and a time
	return data
}

func (srv *Server) listenerAddrs() []string {
	var addrs []string
	for _, l := range srv.proxy.Status().Listeners {
		addrs = append(addrs, l.Addr)
	}
	sort.Strings(addrs)
	return addrs
}

// Replicas returns the live replicas of an etcd state, oldest first.
func Replicas(ctx context.Context, st *etcdstore.Store) ([]Replica, error) {
	records, err := st.Replicas(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Replica, 0, len(records))
	for _, data := range records {
		var r Replica
		if json.Unmarshal(data, &r) == nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, nil
}

// answerReplicas keeps the DNS server's answers for load balancers' names to the addresses of
// the live replicas that serve them, until ctx is done. It reads the replicas whenever a record
// changes, so a replica that stops leaves the answers as soon as its record goes.
func (srv *Server) answerReplicas(ctx context.Context, st *etcdstore.Store) {
	changed := make(chan struct{}, 1)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	go st.WatchReplicas(ctx, signal)
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		replicas, err := Replicas(ctx, st)
		if err != nil {
			// No change may come to try again: try again in a while.
			time.AfterFunc(replicaRetry, signal)
			continue
		}
		srv.mu.Lock()
		s := srv.current
		srv.mu.Unlock()
		srv.dns.SetLBAddresses(LBAddresses(s, replicas))
	}
}

// replicaRetry is how soon a replica reads the records again after a failed read.
const replicaRetry = 2 * time.Second

// LBAddresses maps each load balancer's ID to the addresses its live replicas serve it on: what
// its name resolves to.
func LBAddresses(s *state.State, replicas []Replica) map[string][]string {
	out := map[string][]string{}
	for _, lb := range s.LoadBalancers {
		for _, r := range replicas {
			if r.LB != "" && r.LB != lb.ID {
				continue
			}
			addr := lb.Address
			if r.BindAddress != "" {
				addr = r.BindAddress
			}
			if !slices.Contains(out[lb.ID], addr) {
				out[lb.ID] = append(out[lb.ID], addr)
			}
		}
		slices.Sort(out[lb.ID])
	}
	return out
}
