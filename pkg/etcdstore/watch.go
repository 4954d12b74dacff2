package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/albctl/albctl/pkg/state"
)

// Watch hands each good document written after revision after (from LoadRevision) to apply,
// with the revision it was written at, until ctx is done or the store is closed. A document that
// cannot be read, a deleted key, and the loss of etcd go to report instead, and apply is not
// called: whatever serves from it keeps the last good state. etcd's loss is reported once, as an
// *UnreachableError; the watch resumes by itself when etcd is back, and then calls resumed once
// with the revision it has caught up to.
func (s *Store) Watch(ctx context.Context, after int64, apply func(*state.State, int64), report func(error), resumed func(int64)) {
	w := &watch{store: s, apply: apply, report: report, resumed: resumed, rev: after, present: true}
	// Without this, a watch on a member cut off from the others would wait silently.
	ctx = clientv3.WithRequireLeader(ctx)
	for {
		err := w.follow(ctx)
		if errors.Is(err, rpctypes.ErrCompacted) {
			// The revisions the watch needs are gone: read the document afresh instead.
			err = w.resync(ctx)
		}
		if ctx.Err() != nil || s.client.Ctx().Err() != nil {
			return
		}
		if err != nil {
			w.lost(err)
			_ = pause(ctx, s.probeInterval)
		}
	}
}

type watch struct {
	store   *Store
	apply   func(*state.State, int64)
	report  func(error)
	resumed func(int64)
	// rev is the revision up to which the watch has seen every change.
	rev int64
	// present is whether the key held a document when last seen.
	present bool
	// down is set once the loss of etcd has been reported, until etcd answers again.
	down bool
}

// follow watches the key from w.rev+1 and returns why the watch ended.
func (w *watch) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := w.store.client
	events := c.Watch(ctx, w.store.key, clientv3.WithRev(w.rev+1), clientv3.WithProgressNotify())
	// The client reconnects by itself and says nothing meanwhile, so a progress request that
	// brings no answer before the next probe is how a lost etcd shows.
	probe := time.NewTicker(w.store.probeInterval)
	defer probe.Stop()
	answered := true
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-probe.C:
			if !answered {
				w.lost(fmt.Errorf("no answer within %v", w.store.probeInterval))
			}
			answered = false
			probeCtx, cancelProbe := context.WithTimeout(ctx, w.store.probeInterval)
			_ = c.RequestProgress(probeCtx)
			cancelProbe()
		case resp, ok := <-events:
			if !ok {
				return errors.New("watch closed")
			}
			if err := resp.Err(); err != nil {
				return err
			}
			answered = true
			w.handle(resp)
			w.back()
		}
	}
}

// handle takes one answer of the watch: a change of the key, or progress.
func (w *watch) handle(resp clientv3.WatchResponse) {
	if resp.IsProgressNotify() {
		// An answer on the same stream: nothing changed up to its revision.
		w.rev = resp.Header.Revision
		return
	}
	if len(resp.Events) == 0 {
		return
	}
	// Only the newest of a batch matters: it is what the key holds now.
	ev := resp.Events[len(resp.Events)-1]
	w.rev = ev.Kv.ModRevision
	if ev.Type == clientv3.EventTypeDelete {
		w.gone()
		return
	}
	w.deliver(ev.Kv.Value, ev.Kv.ModRevision)
}

// resync reads the document after a compaction and delivers it if it changed since w.rev.
func (w *watch) resync(ctx context.Context) error {
	resp, err := w.store.client.Get(ctx, w.store.key)
	if err != nil {
		return err
	}
	defer w.back()
	rev := w.rev
	w.rev = resp.Header.Revision
	switch {
	case len(resp.Kvs) == 0:
		if w.present {
			w.gone()
		}
	case resp.Kvs[0].ModRevision > rev:
		w.deliver(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	}
	return nil
}

func (w *watch) deliver(data []byte, rev int64) {
	w.present = true
	st, err := w.store.decode(data)
	if err != nil {
		w.report(err)
		return
	}
	w.apply(st, rev)
}

func (w *watch) gone() {
	w.present = false
	w.report(fmt.Errorf("state at %s is gone: key %s holds no document", w.store.location, w.store.key))
}

// UnreachableError is the loss of etcd, as Watch reports it.
type UnreachableError struct {
	Location string
	Err      error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("etcd at %s does not answer; the watch resumes when it does: %v", e.Location, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

func (w *watch) lost(err error) {
	if w.down {
		return
	}
	w.down = true
	w.report(&UnreachableError{Location: w.store.location, Err: err})
}

// back is called after each answer from etcd: the first after a reported loss says so.
func (w *watch) back() {
	if w.down {
		w.down = false
		w.resumed(w.rev)
	}
}
