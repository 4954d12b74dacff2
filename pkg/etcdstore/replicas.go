package etcdstore

import (
	"context"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ReplicaTTL is how long a replica's record outlives a replica that stopped without saying so:
// the TTL of the lease it is written with.
const ReplicaTTL = 10 * time.Second

// Registration is this process's record under PREFIX/replicas/ID, kept while the process runs
// by a lease it renews; when the lease is lost (etcd was away longer than the TTL) the record
// is written again under a new one.
type Registration struct {
	s      *Store
	key    string
	mu     sync.Mutex
	value  []byte
	sess   *concurrency.Session
	closed bool
	done   chan struct{}
}

func (s *Store) prefix() string { return strings.TrimSuffix(s.key, "/state") }

// Register writes the record value for replica id and keeps it alive until Close.
func (s *Store) Register(ctx context.Context, id string, value []byte) (*Registration, error) {
	r := &Registration{s: s, key: s.prefix() + "/replicas/" + id, value: value, done: make(chan struct{})}
	if err := r.put(ctx); err != nil {
		return nil, err
	}
	go r.keep()
	return r, nil
}

// put writes the record under the current session, starting one if there is none.
func (r *Registration) put(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if r.sess == nil {
		sess, err := concurrency.NewSession(r.s.client, concurrency.WithTTL(int(ReplicaTTL/time.Second)), concurrency.WithContext(context.Background()))
		if err != nil {
			return err
		}
		r.sess = sess
	}
	_, err := r.s.client.Put(ctx, r.key, string(r.value), clientv3.WithLease(r.sess.Lease()))
	return err
}

// keep writes the record again whenever its lease is lost, until Close.
func (r *Registration) keep() {
	for {
		r.mu.Lock()
		sess := r.sess
		r.mu.Unlock()
		select {
		case <-r.done:
			return
		case <-sess.Done():
		}
		r.mu.Lock()
		if r.sess == sess {
			r.sess = nil
		}
		r.mu.Unlock()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), ReplicaTTL)
			err := r.put(ctx)
			cancel()
			if err == nil {
				break
			}
			select {
			case <-r.done:
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// Update replaces the record's value.
func (r *Registration) Update(ctx context.Context, value []byte) error {
	r.mu.Lock()
	r.value = value
	r.mu.Unlock()
	return r.put(ctx)
}

// Close removes the record at once by revoking its lease.
func (r *Registration) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	sess := r.sess
	r.mu.Unlock()
	if sess == nil {
		return nil
	}
	return sess.Close()
}

// Replicas returns the records of the live replicas, by ID.
func (s *Store) Replicas(ctx context.Context) (map[string][]byte, error) {
	dir := s.prefix() + "/replicas/"
	res, err := s.client.Get(ctx, dir, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(res.Kvs))
	for _, kv := range res.Kvs {
		out[strings.TrimPrefix(string(kv.Key), dir)] = kv.Value
	}
	return out, nil
}

// WatchReplicas calls changed when a replica's record is written or goes (deregistered, or its
// lease ended), until ctx is done; also at the start and each time the watch is made anew after
// etcd was away, as records may have changed meanwhile.
func (s *Store) WatchReplicas(ctx context.Context, changed func()) {
	dir := s.prefix() + "/replicas/"
	ctx = clientv3.WithRequireLeader(ctx)
	for ctx.Err() == nil && s.client.Ctx().Err() == nil {
		// The first call comes once the watch is in place, so no change falls between the
		// records read then and the watch.
		for resp := range s.client.Watch(ctx, dir, clientv3.WithPrefix(), clientv3.WithCreatedNotify()) {
			if resp.Err() != nil {
				break
			}
			if resp.Created || len(resp.Events) > 0 {
				changed()
			}
		}
		_ = pause(ctx, s.probeInterval)
	}
}
