// Package etcdstore keeps albctl's document in etcd, so that albctl processes on several machines
// share one configuration. The whole document lives in one key, PREFIX/state, as the same bytes
// the file store writes, so that validation and references stay atomic without multi-key
// transactions. Update commits only if the key has not changed since it was read; Watch follows
// the key. The document holds private keys, which etcd keeps as they are: reach it over TLS, as a
// user whose role covers only the prefix.
package etcdstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/albctl/albctl/pkg/state"
)

// maxAttempts bounds Update's read-modify-write rounds. Each failed round means another writer
// committed, so it is enough for that many concurrent writers.
const maxAttempts = 20

// defaultDialTimeout bounds Open's first request when Options.DialTimeout is zero.
const defaultDialTimeout = 5 * time.Second

// reconnectBackoff spaces the attempts to reach etcd again after it was lost. gRPC's default
// grows to two minutes, which would keep a serve on an old configuration that long after etcd
// came back; a few clients of one etcd can afford to try every 2 s.
var reconnectBackoff = backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second}

// Options say where the store is and how to reach it.
type Options struct {
	Endpoints []string // HOST:PORT
	Prefix    string   // such as /albctl/prod; the document is PREFIX/state
	// CACert verifies etcd's certificate; Cert and Key are the client certificate etcd may ask
	// for. All are PEM file paths; setting any of them turns TLS on.
	CACert, Cert, Key string
	User, Password    string
	// DialTimeout bounds how long Open waits for etcd's first answer; 0 means 5 s.
	DialTimeout time.Duration
}

// Store is a state.Store in etcd. While etcd is unreachable its calls wait, until their context
// ends.
type Store struct {
	client   *clientv3.Client
	key      string
	location string
	// probeInterval is how often Watch checks that etcd still answers.
	probeInterval time.Duration
}

var _ state.Store = (*Store)(nil)

// Open connects to etcd and checks that it answers, so that an unreachable etcd or a refused
// login or TLS handshake fails here rather than stalling a later call.
func Open(opts Options) (*Store, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints")
	}
	if err := checkPrefix(opts.Prefix); err != nil {
		return nil, fmt.Errorf("etcd store: %w", err)
	}
	s := &Store{
		key:           opts.Prefix + "/state",
		location:      scheme + strings.Join(opts.Endpoints, ",") + opts.Prefix,
		probeInterval: 2 * time.Second,
	}
	if (opts.User == "") != (opts.Password == "") {
		return nil, fmt.Errorf("connect to %s: a user name and a password go together", s.location)
	}
	if (opts.Cert == "") != (opts.Key == "") {
		return nil, fmt.Errorf("connect to %s: a client certificate needs both its certificate file and its key file", s.location)
	}
	timeout := opts.DialTimeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	cfg := clientv3.Config{
		Endpoints:   opts.Endpoints,
		Username:    opts.User,
		Password:    opts.Password,
		DialTimeout: timeout,
		// The store's own errors say what failed; the client's retry logs would only add noise.
		Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: reconnectBackoff, MinConnectTimeout: defaultDialTimeout,
		})},
	}
	if opts.CACert != "" || opts.Cert != "" {
		tlsConfig, err := tlsConfig(opts)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", s.location, err)
		}
		cfg.TLS = tlsConfig
	}
	client, err := connect(cfg, s.key)
	if errors.Is(err, context.DeadlineExceeded) {
		// The client reports only the deadline; dialing again without it finds the cause.
		if cause := diagnose(opts.Endpoints, cfg.TLS, timeout); cause != nil {
			err = cause
		}
		return nil, fmt.Errorf("connect to %s: no answer within %v: %w", s.location, timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.location, err)
	}
	s.client = client
	return s, nil
}

// tlsConfig reads the PEM files the options name. etcd's loader takes a CA file without a
// certificate in it as an empty pool, which then refuses every server: that is said here instead.
func tlsConfig(opts Options) (*tls.Config, error) {
	if opts.CACert != "" {
		data, err := os.ReadFile(opts.CACert)
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("CA certificate %s holds no PEM certificate", opts.CACert)
		}
	}
	cfg, err := transport.TLSInfo{CertFile: opts.Cert, KeyFile: opts.Key, TrustedCAFile: opts.CACert}.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return cfg, nil
}

// connect returns a client once etcd has answered it; the client alone connects lazily.
func connect(cfg clientv3.Config, key string) (*clientv3.Client, error) {
	client, err := clientv3.New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	if _, err := client.Get(ctx, key, clientv3.WithCountOnly()); err != nil {
		_ = client.Close()
		return nil, err
	}
	return client, nil
}

// Close ends the connection to etcd.
func (s *Store) Close() error { return s.client.Close() }

// Location returns the store as etcd://ENDPOINTS/PREFIX.
func (s *Store) Location() string { return s.location }

// Load reads the document; a missing key is an empty document.
func (s *Store) Load(ctx context.Context) (*state.State, error) {
	st, _, err := s.LoadRevision(ctx)
	return st, err
}

// LoadRevision reads the document and returns the revision it was written at, from which Watch
// can follow later changes; with no document, etcd's revision at the time of reading. Every
// reader of one document gets the same revision, whatever else etcd holds.
func (s *Store) LoadRevision(ctx context.Context) (*state.State, int64, error) {
	resp, err := s.client.Get(ctx, s.key)
	if err != nil {
		return nil, 0, fmt.Errorf("read state from %s: %w", s.location, err)
	}
	if len(resp.Kvs) == 0 {
		return state.New(), resp.Header.Revision, nil
	}
	st, err := s.decode(resp.Kvs[0].Value)
	if err != nil {
		return nil, 0, err
	}
	return st, resp.Kvs[0].ModRevision, nil
}

// decode reads the document the key holds.
func (s *Store) decode(data []byte) (*state.State, error) {
	st, err := state.Decode(s.location, data)
	var corrupt *state.CorruptError
	if errors.As(err, &corrupt) {
		corrupt.Where = "etcd state " + s.location + " (key " + s.key + ")"
		corrupt.Fix = "fix the key, or delete it to start afresh"
	}
	return st, err
}

// ConflictError is an Update that found the document changed by other writers every time it was
// about to commit. Nothing was written; trying again is safe.
type ConflictError struct {
	Location string
	Attempts int
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("state at %s changed under this update %d times in a row; nothing was written, try again", e.Location, e.Attempts)
}

// Update reads the document, applies change, validates, and commits the result only if the key
// still holds what was read; otherwise it starts again from what it finds there, up to 20
// times. change may therefore run more than once, each time on a fresh copy. If change or the
// validation fails, or the document cannot be read, nothing is written.
func (s *Store) Update(ctx context.Context, change func(*state.State) error) (*state.State, error) {
	resp, err := s.client.Get(ctx, s.key)
	if err != nil {
		return nil, fmt.Errorf("read state from %s: %w", s.location, err)
	}
	kvs := resp.Kvs
	for attempt := 1; ; attempt++ {
		var old []byte
		var rev int64 // 0 while the key does not exist, which is what the comparison then wants
		if len(kvs) > 0 {
			old, rev = kvs[0].Value, kvs[0].ModRevision
		}
		st, data, err := s.apply(old, change)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(data, old) {
			return st, nil
		}
		txn, err := s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(s.key), "=", rev)).
			Then(clientv3.OpPut(s.key, string(data))).
			Else(clientv3.OpGet(s.key)).
			Commit()
		if err != nil {
			return nil, s.writeError(err, len(data))
		}
		if txn.Succeeded {
			return st, nil
		}
		if attempt == maxAttempts {
			return nil, &ConflictError{Location: s.location, Attempts: attempt}
		}
		// The failed comparison's Else read what the other writer committed.
		kvs = txn.Responses[0].GetResponseRange().Kvs
		if err := pause(ctx, rand.N(time.Duration(attempt)*time.Millisecond)); err != nil {
			return nil, err
		}
	}
}

// apply decodes old (an empty document if nil), changes and validates it, and encodes it.
func (s *Store) apply(old []byte, change func(*state.State) error) (*state.State, []byte, error) {
	st := state.New()
	if old != nil {
		var err error
		if st, err = s.decode(old); err != nil {
			return nil, nil, err
		}
	}
	if err := change(st); err != nil {
		return nil, nil, err
	}
	if err := st.Validate(); err != nil {
		return nil, nil, err
	}
	data, err := state.Encode(st)
	return st, data, err
}

func (s *Store) writeError(err error, size int) error {
	// etcd refuses requests over its --max-request-bytes; the client refuses to send more than
	// its own limit (2 MiB) and says so with ResourceExhausted.
	if errors.Is(err, rpctypes.ErrRequestTooLarge) || status.Code(err) == codes.ResourceExhausted {
		return fmt.Errorf("write state to %s: the document is %d bytes, more than etcd takes in one request (its --max-request-bytes, 1.5 MiB by default): %w", s.location, size, err)
	}
	return fmt.Errorf("write state to %s: %w", s.location, err)
}

// pause waits for d or until ctx is done.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
