package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/albctl/albctl/pkg/etcdstore"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/albctl/albctl/pkg/state"
)

// etcdSettings are how albctl reaches an etcd state.
type etcdSettings struct {
	cacert, cert, key, user string
}

// store returns where the state lives: the file --state names, or etcd for an etcd:// location.
// An etcd client is opened once per command and closed by Main.
func (a *app) store() state.Store {
	if !etcdstore.IsLocation(a.statePath) {
		return state.NewFileStore(a.statePath)
	}
	if a.etcd == nil {
		a.etcd = a.openEtcd()
	}
	return a.etcd
}

func (a *app) openEtcd() state.Store {
	endpoints, prefix, err := etcdstore.ParseLocation(a.statePath)
	if err != nil {
		return failedStore{loc: a.statePath, err: usageErrorf("invalid value %q for --state: %v", a.statePath, err)}
	}
	s, err := etcdstore.Open(etcdstore.Options{
		Endpoints: endpoints, Prefix: prefix,
		CACert: a.etcdOpts.cacert, Cert: a.etcdOpts.cert, Key: a.etcdOpts.key,
		User: a.etcdOpts.user, Password: os.Getenv("ALBCTL_ETCD_PASSWORD"),
	})
	if err != nil {
		return failedStore{loc: a.statePath, err: err}
	}
	return s
}

// closeStore closes an etcd client the command opened.
func (a *app) closeStore() {
	if s, ok := a.etcd.(*etcdstore.Store); ok {
		_ = s.Close()
	}
}

// failedStore is a state location albctl could not open: every use says why.
type failedStore struct {
	loc string
	err error
}

func (f failedStore) Load(context.Context) (*state.State, error) { return nil, f.err }
func (f failedStore) Update(context.Context, func(*state.State) error) (*state.State, error) {
	return nil, f.err
}
func (f failedStore) Location() string { return f.loc }

// localBase is the path, without an extension, of the files albctl writes for the state's
// users, such as the CA's certificate: beside a state file, or in the user's cache for an
// etcd state.
func (a *app) localBase() string {
	if !etcdstore.IsLocation(a.statePath) {
		return strings.TrimSuffix(a.statePath, filepath.Ext(a.statePath))
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, strings.TrimPrefix(a.statePath, "etcd://"))
	return filepath.Join(dir, "albctl", "etcd-"+name)
}

// lbAddresses returns what load balancers' names resolve to for an etcd state: the addresses
// of its live replicas, by load balancer ID. It is nil for a state file, or when the replicas
// cannot be read, and names then answer each load balancer's own address.
func (a *app) lbAddresses(ctx context.Context, s *state.State) map[string][]string {
	st, ok := a.store().(*etcdstore.Store)
	if !ok {
		return nil
	}
	replicas, err := serve.Replicas(ctx, st)
	if err != nil || len(replicas) == 0 {
		return nil
	}
	return serve.LBAddresses(s, replicas)
}
