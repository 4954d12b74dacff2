// Package serve runs albctl's data plane from the state: the proxy's listeners and server
// groups, the DNS server, and the admin API. It follows changes to the state file and keeps the
// last good configuration when a change cannot be applied.
package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"time"

	albdns "github.com/albctl/albctl/pkg/dns"
	"github.com/albctl/albctl/pkg/etcdstore"
	"github.com/albctl/albctl/pkg/health"
	"github.com/albctl/albctl/pkg/proxy"
	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/state"
)

// Options are what serve runs with.
type Options struct {
	// Store is a state file, which one serve follows, or an etcd state, which many may.
	Store state.Store
	// LB limits serving to the listeners of one load balancer (ID or name); empty serves all.
	LB string
	// AdminAddr is where the admin API listens; "" means 127.0.0.1 with a port the kernel picks.
	AdminAddr string
	// DNSAddr, if set, runs albctl's DNS server there (UDP and TCP).
	DNSAddr string
	// Log receives one line per event: start, reloads, state changes, errors.
	Log io.Writer
	// AccessLog receives one line per call, unless AccessLogFile is set; with neither, the
	// access log is off.
	AccessLog io.Writer
	// AccessLogFile is a file the access log is appended to instead; SIGUSR1 reopens it, so
	// that logrotate can move it away.
	AccessLogFile   string
	AccessLogFormat obs.Format
	// ShutdownTimeout bounds how long shutdown waits for calls in flight.
	ShutdownTimeout time.Duration
	// ReloadInterval is how often the state file is checked for changes; 0 means 250 ms.
	ReloadInterval time.Duration
	// Ready, if set, is called once everything listens, with the admin API's address.
	Ready func(adminAddr string)
	// Version is albctl's, for the replica record on an etcd state.
	Version string
	// BindAddress, if set, is the address this serve's listeners bind to in place of their
	// load balancers' own: replicas of an etcd state on one machine each take one.
	BindAddress string
}

// Server is a running data plane.
type Server struct {
	opts   Options
	log    *slog.Logger
	proxy  *proxy.Proxy
	health *health.Checker
	dns    *albdns.Server

	mu      sync.Mutex
	current *state.State // the last state applied

	// On an etcd state: this serve's record, kept by the watch goroutine.
	replica      Replica
	registration *etcdstore.Registration
}

// Run serves until ctx is done, then shuts down gracefully: clients get GOAWAY and calls in
// flight may finish within ShutdownTimeout. It returns an error if the first configuration
// cannot be served.
func Run(ctx context.Context, opts Options) error {
	if opts.ReloadInterval == 0 {
		opts.ReloadInterval = 250 * time.Millisecond
	}
	if _, ok := opts.Store.(*state.FileStore); ok {
		if addr, err := Discover(opts.Store, ""); err == nil {
			return fmt.Errorf("albctl serve is already running for %s (admin API %s); stop it first", opts.Store.Location(), addr)
		}
	}
	log := slog.New(slog.NewTextHandler(opts.Log, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				a.Value = slog.StringValue(a.Value.Time().UTC().Format(time.RFC3339))
			}
			return a
		},
	}))
	srv := &Server{opts: opts, log: log, health: health.New(health.Options{Logger: log})}
	defer srv.health.Close()
	accessLog, closeAccessLog, err := openAccessLog(opts, log)
	if err != nil {
		return err
	}
	// Deferred before the proxy's shutdown, so it runs after it: the last calls are logged.
	defer closeAccessLog()
	srv.proxy = proxy.New(proxy.Options{
		Logger:    log,
		AccessLog: accessLog,
		// A call that could not connect counts as a failed health check.
		OnConnectFailure: srv.health.ReportFailure,
	})

	s, rev, follow, err := load(ctx, opts.Store, opts.ReloadInterval)
	if err != nil {
		return err
	}
	if err := srv.apply(s); err != nil {
		_ = srv.proxy.Shutdown(context.Background())
		return err
	}

	var wg sync.WaitGroup
	runCtx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()
	if opts.DNSAddr != "" {
		l, err := albdns.Listen(opts.DNSAddr)
		if err != nil {
			_ = srv.proxy.Shutdown(context.Background())
			return fmt.Errorf("DNS server: %w", err)
		}
		srv.dns = albdns.NewServer(s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.dns.Serve(runCtx, l); err != nil {
				log.Error("DNS server stopped", "err", err)
			}
		}()
		log.Info("DNS server listening", "addr", l.Addr(), "zones", fmt.Sprint(srv.dns.Zones().Names()))
	}
	admin, err := srv.startAdmin(runCtx, &wg)
	if err != nil {
		_ = srv.proxy.Shutdown(context.Background())
		return err
	}

	if st, ok := opts.Store.(*etcdstore.Store); ok {
		if err := srv.register(runCtx, st, admin, rev); err != nil {
			_ = srv.proxy.Shutdown(context.Background())
			return fmt.Errorf("register as a replica of %s: %w", st.Location(), err)
		}
		defer srv.deregister()
		if srv.dns != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.answerReplicas(runCtx, st)
			}()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		follow(runCtx, func(s *state.State, rev int64) {
			if err := srv.apply(s); err != nil {
				log.Error("state not applied; still serving the last good configuration", "err", err)
				return
			}
			srv.applied(runCtx, rev)
			if srv.dns != nil {
				srv.dns.Update(s)
			}
			log.Info("state reloaded", "state", opts.Store.Location())
		}, func(err error) {
			var lost *etcdstore.UnreachableError
			if errors.As(err, &lost) {
				log.Error("etcd unreachable; still serving the last configuration", "err", err)
				return
			}
			log.Error("state unreadable; still serving the last good configuration", "err", err)
		}, func(rev int64) {
			log.Info("etcd answers again; caught up", "state", opts.Store.Location(), "revision", rev)
		})
	}()

	log.Info("admin API listening", "addr", admin)
	if opts.Ready != nil {
		opts.Ready(admin)
	}

	<-ctx.Done()
	log.Info("shutting down: GOAWAY sent, waiting for calls in flight", "timeout", opts.ShutdownTimeout.String())
	shutdownCtx, done := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer done()
	if err := srv.proxy.Shutdown(shutdownCtx); err != nil {
		log.Warn("calls were still in flight at the shutdown timeout and were cut", "err", err)
	}
	log.Info("stopped")
	return nil
}

// followFunc follows a state's changes until ctx is done: each good document goes to apply
// with its revision, what cannot be read to report, and resumed is called when an etcd state
// answers again after its loss was reported.
type followFunc func(ctx context.Context, apply func(*state.State, int64), report func(error), resumed func(int64))

// load reads the state and returns the function that follows its changes: a state file is
// checked every interval, an etcd state is watched. Revisions are etcd's, 0 for a file.
func load(ctx context.Context, store state.Store, interval time.Duration) (*state.State, int64, followFunc, error) {
	switch st := store.(type) {
	case *state.FileStore:
		seen := st.Stat()
		s, err := st.Load(ctx)
		return s, 0, func(ctx context.Context, apply func(*state.State, int64), report func(error), _ func(int64)) {
			st.Watch(ctx, seen, interval, func(s *state.State) { apply(s, 0) }, report)
		}, err
	case *etcdstore.Store:
		s, rev, err := st.LoadRevision(ctx)
		return s, rev, func(ctx context.Context, apply func(*state.State, int64), report func(error), resumed func(int64)) {
			st.Watch(ctx, rev, apply, report, resumed)
		}, err
	}
	return nil, 0, nil, fmt.Errorf("serve cannot follow the state at %s", store.Location())
}

// apply turns a state into the proxy's configuration and applies it; on error the running
// configuration stays.
func (srv *Server) apply(s *state.State) error {
	cfg, err := proxyConfig(s, srv.opts.LB, srv.opts.BindAddress)
	if err != nil {
		return err
	}
	before := map[string]proxy.ListenerStatus{}
	for _, l := range srv.proxy.Status().Listeners {
		before[l.ID] = l
	}
	if err := srv.proxy.Apply(cfg); err != nil {
		return err
	}
	for _, l := range srv.proxy.Status().Listeners {
		if old, ok := before[l.ID]; !ok || old.Addr != l.Addr || old.GroupID != l.GroupID {
			srv.log.Info("listener serving", "listener", l.ID, "addr", l.Addr, "serverGroup", l.GroupID)
		}
		delete(before, l.ID)
	}
	for id, l := range before {
		srv.log.Info("listener stopped", "listener", id, "addr", l.Addr)
	}
	groups := make([]health.Group, 0, len(cfg.Groups))
	for id := range cfg.Groups {
		sg, err := s.ServerGroup(id)
		if err != nil {
			return err
		}
		groups = append(groups, health.FromServerGroup(*sg, srv.proxy.Backend))
	}
	srv.health.Apply(groups)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.current = s
	return nil
}

// proxyConfig builds the proxy's configuration from the state: every listener (of one load
// balancer, if lbRef is set) and the server groups they forward to.
func proxyConfig(s *state.State, lbRef, bindAddress string) (cfg proxy.Config, err error) {
	var only *state.LoadBalancer
	if lbRef != "" {
		if only, err = s.LoadBalancer(lbRef); err != nil {
			return cfg, err
		}
	}
	cfg.Groups = map[string]proxy.GroupConfig{}
	for _, l := range s.Listeners {
		if only != nil && l.LBID != only.ID {
			continue
		}
		lb, err := s.LoadBalancer(l.LBID)
		if err != nil {
			return cfg, err
		}
		var pairs []tls.Certificate
		var ids []string
		if l.Protocol == state.ProtocolHTTPS {
			ids = append([]string{l.CertificateID}, l.AdditionalCertificateIDs...)
		}
		for _, id := range ids {
			c, err := s.Certificate(id)
			if err != nil {
				return cfg, err
			}
			pair, err := tls.X509KeyPair([]byte(c.CertPEM), []byte(c.KeyPEM))
			if err != nil {
				return cfg, fmt.Errorf("certificate %s: %w", c.Name, err)
			}
			pairs = append(pairs, pair)
		}
		sg, err := s.ServerGroup(l.ServerGroupID)
		if err != nil {
			return cfg, err
		}
		addr := lb.Address
		if bindAddress != "" {
			addr = bindAddress
		}
		lc := proxy.ListenerConfig{
			ID:             l.ID,
			Addr:           net.JoinHostPort(addr, strconv.Itoa(l.Port)),
			Certificates:   pairs,
			HTTP2:          l.HTTP2,
			GroupID:        sg.ID,
			IdleTimeout:    l.IdleTimeout.D(),
			RequestTimeout: l.RequestTimeout.D(),
		}
		if lc.ACL, err = ACLConfig(s, l); err != nil {
			return cfg, err
		}
		lc.Web = webConfig(l)
		if err := clientAuthConfig(s, &l, &lc); err != nil {
			return cfg, err
		}
		if l.Protocol == state.ProtocolHTTPS {
			if lc.TLS, err = tlsPolicy(s, &l); err != nil {
				return cfg, err
			}
		}
		cfg.Groups[sg.ID] = groupConfig(sg)
		for _, r := range s.ListenerRules(l.ID) {
			rc := RuleConfig(r)
			for _, wg := range rc.Forward {
				target, err := s.ServerGroup(wg.GroupID)
				if err != nil {
					return cfg, err
				}
				cfg.Groups[target.ID] = groupConfig(target)
			}
			lc.Rules = append(lc.Rules, rc)
		}
		cfg.Listeners = append(cfg.Listeners, lc)
	}
	return cfg, nil
}

// webConfig is the listener's gRPC-Web setting as the proxy runs it; nil when it takes none.
func webConfig(l state.Listener) *proxy.WebConfig {
	if len(l.WebProtocols) == 0 {
		return nil
	}
	wc := &proxy.WebConfig{GRPCWeb: slices.Contains(l.WebProtocols, state.WebProtocolGRPCWeb), Connect: slices.Contains(l.WebProtocols, state.WebProtocolConnect)}
	if c := l.CORS; c != nil {
		wc.Origins, wc.AllowHeaders, wc.ExposeHeaders = c.AllowOrigins, c.AllowHeaders, c.ExposeHeaders
		wc.MaxAge, wc.Credentials = c.MaxAge.D(), c.AllowCredentials
	}
	return wc
}

// clientAuthConfig sets the listener's mutual TLS: the CA pool, whether a certificate is
// required, and the headers that pass it on.
func clientAuthConfig(s *state.State, l *state.Listener, lc *proxy.ListenerConfig) error {
	caPEM := s.ClientCAPEM(l)
	if caPEM == "" {
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return fmt.Errorf("listener %s: client CA %s holds no PEM certificate", l.ID, l.ClientCAID)
	}
	lc.ClientCAs, lc.RequireClientCert = pool, l.ClientAuth == state.ClientAuthRequire
	if h := l.ForwardClientCert; h != nil {
		lc.ClientCertHeaders = &proxy.ClientCertHeaders{Subject: h.Subject, Issuer: h.Issuer, Fingerprint: h.Fingerprint, Verify: h.Verify}
	}
	return nil
}

// RuleConfig is a rule as the proxy runs it.
func RuleConfig(r state.Rule) proxy.RuleConfig {
	rc := proxy.RuleConfig{ID: r.ID, Label: r.Label(), Remove: r.RemoveHeaders}
	for _, c := range r.Conditions {
		cond := proxy.Condition{Type: c.Type, Key: c.Key, Values: c.Values}
		if c.Type == state.CondSourceIP {
			for _, v := range c.Values {
				if p, err := state.ParseSourcePrefix(v); err == nil { // validated with the state
					cond.Sources = append(cond.Sources, p)
				}
			}
		}
		rc.Conditions = append(rc.Conditions, cond)
	}
	for _, t := range r.Forward {
		rc.Forward = append(rc.Forward, proxy.WeightedGroup{GroupID: t.ServerGroupID, Weight: t.Weight})
	}
	if f := r.FixedResponse; f != nil {
		rc.Fixed = &proxy.FixedResponse{Message: f.Message, HTTPCode: f.HTTPCode, ContentType: f.ContentType, Body: f.Body}
		if f.GRPCStatus != nil {
			rc.Fixed.GRPCStatus = *f.GRPCStatus
		}
	}
	for _, h := range r.InsertHeaders {
		rc.Insert = append(rc.Insert, proxy.Field{Name: h.Key, Value: h.Value})
	}
	if tl := r.TrafficLimit; tl != nil {
		rc.QPS, rc.PerIPQPS = tl.QPS, tl.PerIPQPS
	}
	return rc
}

func groupConfig(sg *state.ServerGroup) proxy.GroupConfig {
	g := proxy.GroupConfig{ID: sg.ID, Protocol: sg.Protocol, Scheduler: sg.Scheduler, DrainTimeout: sg.DrainTimeout.D(), SlowStart: sg.SlowStart.D()}
	if uch := sg.UCHConfig; uch != nil {
		g.HashKey = &proxy.HashKey{Header: uch.Type == state.UCHHeader, Name: uch.Key}
	}
	for _, srv := range sg.Servers {
		g.Servers = append(g.Servers, proxy.ServerConfig{Addr: srv.HostPort(), Weight: srv.Weight})
	}
	return g
}

// errNotRunning says that no serve answers for a state file.
var errNotRunning = errors.New("no albctl serve is running for this state file")

// openAccessLog starts the access log the options ask for, if any, and returns it with the
// function that closes it. A log to a file is reopened on SIGUSR1 until then.
func openAccessLog(opts Options, log *slog.Logger) (*obs.AccessLog, func(), error) {
	if opts.AccessLogFile == "" {
		if opts.AccessLog == nil {
			return nil, func() {}, nil
		}
		accessLog := obs.NewAccessLog(opts.AccessLog, opts.AccessLogFormat, log)
		return accessLog, func() { accessLog.Close() }, nil
	}
	accessLog, err := obs.OpenAccessLog(opts.AccessLogFile, opts.AccessLogFormat, log)
	if err != nil {
		return nil, nil, fmt.Errorf("access log: %w", err)
	}
	reopen := make(chan os.Signal, 1)
	notifyReopen(reopen)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range reopen {
			if err := accessLog.Reopen(); err != nil {
				log.Error("access log not reopened; still writing to the old file", "file", opts.AccessLogFile, "err", err)
				continue
			}
			log.Info("access log reopened", "file", opts.AccessLogFile)
		}
	}()
	return accessLog, func() {
		signal.Stop(reopen)
		close(reopen)
		<-done
		accessLog.Close()
	}, nil
}
