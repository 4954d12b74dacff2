// Package check walks albctl's configuration for one DOMAIN:PORT end to end, as a checklist:
// DNS record chain, load balancer, listener, the rule the call meets, certificate, the server
// groups the call goes to, their servers' health in the running serve, and one real call (a
// gRPC call, or an HTTP request for an HTTP server group) through the listener. It stops at
// the first failing step, so a CI smoke test learns what broke and where. Explain tells which
// rule a described call meets, and why the rules before it do not.
package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	albdns "github.com/albctl/albctl/pkg/dns"
	"github.com/albctl/albctl/pkg/health"
	"github.com/albctl/albctl/pkg/proxy/route"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/albctl/albctl/pkg/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Step is one line of the checklist. A step that passes may carry a warning, such as a group
// with some servers unhealthy.
type Step struct {
	Name    string `json:"step"`
	OK      bool   `json:"ok"`
	Detail  string `json:"detail"`
	Warning string `json:"warning,omitempty"`
}

// Input is what to check and with what.
type Input struct {
	State *state.State
	// Store is where the state lives: where the running serve is found.
	Store state.Store
	// LBAddrs are the addresses load balancers' names resolve to by ID, those of an etcd
	// state's live replicas; nil answers each load balancer's own.
	LBAddrs map[string][]string
	// Admin overrides where the running serve's admin API is.
	Admin string
	// Replica, if set, is the replica of an etcd state to check: the servers step asks it, and
	// the call goes to its listener.
	Replica *serve.Replica
	Host    string
	Port    int
	// Request is what to send: SERVICE/METHOD (or SERVICE.METHOD) for a gRPC group, a path
	// such as /healthz for an HTTP group; "" sends the health check of the listener's group.
	Request string
	// Header is sent with the call, as gRPC metadata or HTTP header fields, and rules match on
	// it.
	Header  Metadata
	Timeout time.Duration
	// Strict fails the servers step on any unhealthy server, not only when none takes calls.
	Strict bool
	// ClientCert is presented to a listener with mutual TLS.
	ClientCert *tls.Certificate
}

// walk carries what earlier steps found to later ones.
type walk struct {
	in       Input
	addrs    []string
	lb       *state.LoadBalancer
	listener *state.Listener
	leaf     *x509.Certificate  // the listener's certificate
	group    *state.ServerGroup // the listener's: its protocol is the calls', its health check the default call

	// The call, as the rule step plans it.
	method, path string
	skip         string // why no call is made, if none is
	want         func(code int) bool
	wantText     string
	fixed        *state.FixedResponse // the matched rule's answer
	targets      []target

	admin    string // the running serve's admin API, once found
	adminErr error
	replica  string // the etcd state's replica that answered, if one did
}

// callAddr is the listener's address the call goes to: at the first address DOMAIN resolves to,
// or the replica's.
func (w *walk) callAddr() string {
	host := w.addrs[0]
	if r := w.in.Replica; r != nil {
		host = w.lb.Address
		if r.BindAddress != "" {
			host = r.BindAddress
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(w.in.Port))
}

// target is a server group the call goes to, and its health in the running serve.
type target struct {
	group     *state.ServerGroup
	weight    int
	health    health.GroupStatus
	healthErr error
}

// Run performs the steps in order and returns them, ending with the first that failed.
func Run(ctx context.Context, in Input) []Step {
	w := &walk{in: in}
	var out []Step
	record := func(name, detail, warning string, err error) bool {
		if err != nil {
			out = append(out, Step{Name: name, Detail: err.Error()})
			return false
		}
		out = append(out, Step{Name: name, OK: true, Detail: detail, Warning: warning})
		return true
	}
	steps := []struct {
		name string
		run  func(context.Context) (string, error)
	}{
		{"dns", w.resolve},
		{"load balancer", w.loadBalancer},
		{"listener", w.findListener},
		{"rule", w.rule},
		{"certificate", w.certificate},
	}
	for _, s := range steps {
		detail, err := s.run(ctx)
		if !record(s.name, detail, "", err) {
			return out
		}
	}
	for i := range w.targets {
		t := &w.targets[i]
		detail, err := w.serverGroup(t)
		if !record("server group", detail, "", err) {
			return out
		}
		detail, warning, err := w.servers(t)
		if !record("servers", detail, warning, err) {
			return out
		}
	}
	detail, err := w.call(ctx)
	record("call", detail, "", err)
	return out
}

// ReplicaResult is the checklist as one replica of an etcd state serves DOMAIN:PORT.
type ReplicaResult struct {
	Replica string `json:"replica"`
	Admin   string `json:"admin"`
	OK      bool   `json:"ok"`
	Steps   []Step `json:"steps"`
}

// RunReplicas runs the checklist once for each replica that serves the load balancer DOMAIN
// leads to (every replica, if the walk does not get that far): the servers step asks that
// replica and the call goes to its listener.
func RunReplicas(ctx context.Context, in Input, replicas []serve.Replica) []ReplicaResult {
	var out []ReplicaResult
	for _, r := range serving(in, replicas) {
		in.Replica = &r
		steps := Run(ctx, in)
		out = append(out, ReplicaResult{Replica: r.ID, Admin: r.Admin, OK: steps[len(steps)-1].OK, Steps: steps})
	}
	return out
}

// FirstReplica is the first of replicas (the oldest, as serve.Replicas lists them) that serves
// the load balancer in's call goes to and answers, or nil: the one a check without
// --all-replicas asks and calls through.
func FirstReplica(in Input, replicas []serve.Replica) *serve.Replica {
	for _, r := range serving(in, replicas) {
		if serve.Get(r.Admin, "/healthz", nil) == nil {
			return &r
		}
	}
	return nil
}

// serving are the replicas that serve the load balancer of in's call.
func serving(in Input, replicas []serve.Replica) []serve.Replica {
	lbID := ""
	if w := (&walk{in: in}); w.resolveLB() == nil {
		lbID = w.lb.ID
	}
	var out []serve.Replica
	for _, r := range replicas {
		if r.LB == "" || lbID == "" || r.LB == lbID {
			out = append(out, r)
		}
	}
	return out
}

// resolveLB finds the load balancer as the dns and load balancer steps do.
func (w *walk) resolveLB() error {
	if _, err := w.resolve(context.Background()); err != nil {
		return err
	}
	_, err := w.loadBalancer(context.Background())
	return err
}

func (w *walk) resolve(context.Context) (string, error) {
	if ip, err := netip.ParseAddr(w.in.Host); err == nil {
		w.addrs = []string{ip.String()}
		return w.in.Host + " is an address: no DNS needed", nil
	}
	addrs, chain, err := albdns.NewZones(w.in.State, w.in.LBAddrs).LookupHost(w.in.Host)
	if errors.Is(err, albdns.ErrNotAuthoritative) {
		return "", fmt.Errorf("%s is not in albctl's DNS zones: add the domain and a CNAME to the load balancer's name ('albctl dns domain add', 'albctl dns add')", w.in.Host)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return "", fmt.Errorf("%s has no address in albctl's zones (NXDOMAIN or no A/AAAA record): 'albctl dns resolve %s' shows the chain", w.in.Host, w.in.Host)
	}
	if err != nil {
		return "", fmt.Errorf("%s does not resolve in albctl's zones: %v", w.in.Host, err)
	}
	w.addrs = addrs
	return strings.Join(chain, " → "), nil
}

func (w *walk) loadBalancer(context.Context) (string, error) {
	for i := range w.in.State.LoadBalancers {
		lb := &w.in.State.LoadBalancers[i]
		serves := append([]string{lb.Address}, w.in.LBAddrs[lb.ID]...)
		if slices.ContainsFunc(w.addrs, func(a string) bool {
			return slices.ContainsFunc(serves, func(b string) bool { return state.SameAddress(a, b) })
		}) {
			w.lb = lb
			return fmt.Sprintf("%s (%s) at %s", lb.Name, lb.ID, lb.Address), nil
		}
	}
	return "", fmt.Errorf("no load balancer has the address %s resolves to (%s)", w.in.Host, strings.Join(w.addrs, ", "))
}

func (w *walk) findListener(context.Context) (string, error) {
	for i := range w.in.State.Listeners {
		l := &w.in.State.Listeners[i]
		if l.LBID == w.lb.ID && l.Port == w.in.Port {
			w.listener = l
			sg, err := w.in.State.ServerGroup(l.ServerGroupID)
			if err != nil {
				return "", err
			}
			w.group = sg
			if sg.Protocol == state.ProtocolGRPC && (l.Protocol != state.ProtocolHTTPS || !l.HTTP2) {
				return "", fmt.Errorf("listener %s on port %d is %s without HTTP/2: gRPC needs HTTPS with HTTP/2", l.ID, l.Port, l.Protocol)
			}
			http2 := "with HTTP/2"
			if !l.HTTP2 {
				http2 = "HTTP/1.1 only"
			}
			mtls, err := w.clientAuth()
			if err != nil {
				return "", err
			}
			acl, err := w.aclVerdict()
			if err != nil {
				return "", err
			}
			policy := ""
			if l.Protocol == state.ProtocolHTTPS {
				p, err := w.in.State.ListenerTLSPolicy(l)
				if err != nil {
					return "", err
				}
				policy = fmt.Sprintf(", TLS policy %s (%s-%s)", p.Name, p.MinVersion, p.MaxVersion)
			}
			web := ""
			if len(l.WebProtocols) > 0 {
				web = ", takes " + strings.Join(l.WebProtocols, ", ") + " from pages"
			}
			served := ""
			if r := w.in.Replica; r != nil {
				if !slices.Contains(r.Listeners, w.callAddr()) {
					return "", fmt.Errorf("replica %s does not serve listener %s at %s: it serves %s", r.ID, l.ID, w.callAddr(), strings.Join(r.Listeners, ", "))
				}
				served = ", served by replica " + r.ID + " at " + w.callAddr()
			}
			return fmt.Sprintf("%s: %s %s on port %d%s%s%s%s%s", l.ID, l.Protocol, http2, l.Port, policy, mtls, acl, web, served), nil
		}
	}
	return "", fmt.Errorf("load balancer %s has no listener on port %d ('albctl listener create --lb %s --port %d ...')", w.lb.Name, w.in.Port, w.lb.Name, w.in.Port)
}

func (w *walk) certificate(context.Context) (string, error) {
	if w.listener.Protocol == state.ProtocolHTTP {
		return "none: the listener is plaintext HTTP", nil
	}
	c, err := w.in.State.Certificate(w.listener.CertificateID)
	if err != nil {
		return "", err
	}
	leaf, err := parseLeaf(c.CertPEM)
	if err != nil {
		return "", fmt.Errorf("certificate %s: %v", c.Name, err)
	}
	w.leaf = leaf
	if err := leaf.VerifyHostname(w.in.Host); err != nil {
		return "", fmt.Errorf("certificate %s covers %s, not %s", c.Name, strings.Join(c.Domains, ", "), w.in.Host)
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return "", fmt.Errorf("certificate %s expired on %s", c.Name, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return "", fmt.Errorf("certificate %s is not valid before %s", c.Name, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s covers %s, valid until %s", c.Name, w.in.Host, leaf.NotAfter.UTC().Format("2006-01-02")), nil
}

func parseLeaf(certPEM string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// rule plans the call and finds the rule it meets, with the matcher the data plane runs.
func (w *walk) rule(context.Context) (string, error) {
	if err := w.planCall(); err != nil {
		return "", err
	}
	rules := w.in.State.ListenerRules(w.listener.ID)
	if w.skip != "" || len(rules) == 0 {
		w.targets = []target{{group: w.group, weight: state.MaxForwardWeight}}
		if len(rules) == 0 {
			return fmt.Sprintf("default: the listener has no rules, its server group %s takes every call", w.group.Name), nil
		}
		return fmt.Sprintf("not matched: no call to match the listener's %d rules against; checking the listener's server group %s", len(rules), w.group.Name), nil
	}
	req := route.Request{Path: w.path, Host: w.in.Host, Method: w.method,
		Source: LocalSource(w.callAddr()), Header: w.in.Header}
	e, err := Explain(w.in.State, w.listener, req)
	if err != nil {
		return "", err
	}
	a := e.Action
	var forward []string
	for _, g := range a.Groups {
		forward = append(forward, fmt.Sprintf("%s=%d", g.Name, g.Weight))
		if g.Weight == 0 {
			continue
		}
		sg, err := w.in.State.ServerGroup(g.ID)
		if err != nil {
			return "", err
		}
		w.targets = append(w.targets, target{group: sg, weight: g.Weight})
	}
	if a.Default {
		return fmt.Sprintf("default: no rule matched (%d tried), the listener's server group %s", len(e.Rules), w.group.Name), nil
	}
	label := fmt.Sprintf("rule %s (priority %d): %s", a.Rule, a.Priority, strings.Join(a.Conditions, " AND "))
	f := a.FixedResponse
	switch {
	case f != nil && f.GRPCStatus != nil:
		code := *f.GRPCStatus
		w.fixed, w.want = f, func(c int) bool { return c == code }
		w.wantText = "grpc-status " + health.CodeText(code) + ", the fixed response of rule " + a.Rule
		return label + " answers grpc-status " + health.CodeText(code) + " at the load balancer", nil
	case f != nil:
		w.fixed, w.want = f, func(c int) bool { return c == f.HTTPCode }
		w.wantText = fmt.Sprintf("%d, the fixed response of rule %s", f.HTTPCode, a.Rule)
		return fmt.Sprintf("%s answers %d at the load balancer", label, f.HTTPCode), nil
	case len(a.Groups) == 1:
		return label + " → " + a.Groups[0].Name, nil
	}
	return label + " → " + strings.Join(forward, ","), nil
}

// planCall decides what the call step sends and what it must get: for a gRPC listener a method
// that must return OK, for an HTTP one a GET that must not answer 5xx, or else the health
// check of the listener's group.
func (w *walk) planCall() error {
	hc := w.group.HealthCheck
	if w.group.Protocol == state.ProtocolGRPC {
		w.method, w.wantText = http.MethodPost, "OK"
		w.want = func(code int) bool { return code == 0 }
		if w.in.Request != "" {
			var err error
			w.path, err = MethodPath(w.in.Request)
			return err
		}
		if hc.Protocol != state.ProtocolGRPC {
			w.skip = "skipped: give SERVICE/METHOD to make a call (the group's health check is not a gRPC method call)"
			return nil
		}
		codes, err := state.ParseGRPCCodes(hc.Codes)
		if err != nil {
			return err
		}
		w.path, w.wantText = hc.Path, "a status in "+hc.Codes
		w.want = func(code int) bool { return codes.Contains(code) }
		return nil
	}
	w.method, w.path = http.MethodGet, w.in.Request
	w.wantText, w.want = "no 5xx", func(code int) bool { return code < 500 }
	if w.path == "" {
		if hc.Protocol != state.ProtocolHTTP {
			w.skip = "skipped: give a PATH to request (the group's health check is not an HTTP request)"
			return nil
		}
		w.method, w.path, w.wantText = hc.Method, hc.Path, hc.Codes
		w.want = func(code int) bool { return state.HTTPCodeAllowed(hc.Codes, code) }
	}
	if !strings.HasPrefix(w.path, "/") {
		return fmt.Errorf("invalid path %q: the listener forwards to HTTP group %s, give a path such as /healthz", w.path, w.group.Name)
	}
	return nil
}

func (w *walk) serverGroup(t *target) (string, error) {
	sg := t.group
	weighted := 0
	for _, s := range sg.Servers {
		if s.Weight > 0 {
			weighted++
		}
	}
	if weighted == 0 {
		return "", fmt.Errorf("server group %s has no server with a weight above 0 ('albctl servergroup add-servers %s --server HOST:PORT')", sg.Name, sg.Name)
	}
	name := sg.Name
	if len(w.targets) > 1 {
		name = fmt.Sprintf("%s (weight %d)", sg.Name, t.weight)
	}
	t.health, t.healthErr = w.groupHealth(sg)
	if t.healthErr != nil {
		return fmt.Sprintf("%s: %s, %s, %d of %d servers with weight above 0 (health not known)", name, sg.Protocol, sg.Scheduler, weighted, len(sg.Servers)), nil
	}
	taking := 0
	for _, s := range t.health.Servers {
		if s.Weight > 0 && s.State != health.StateUnhealthy {
			taking++
		}
	}
	return fmt.Sprintf("%s: %s, %s, %d of %d servers take calls", name, sg.Protocol, sg.Scheduler, taking, len(t.health.Servers)), nil
}

// groupHealth reads a group's health from the running serve, found once per walk.
func (w *walk) groupHealth(sg *state.ServerGroup) (health.GroupStatus, error) {
	if w.admin == "" && w.adminErr == nil {
		r := w.in.Replica
		if r == nil {
			var found serve.Replica
			found, w.adminErr = serve.Locate(w.in.Store, w.in.Admin)
			r = &found
		}
		w.admin, w.replica = r.Admin, r.ID
	}
	if w.adminErr != nil {
		return health.GroupStatus{}, w.adminErr
	}
	return serve.GroupHealth(w.admin, sg)
}

// servers judges a group's servers by their health in the running serve: it passes while some
// take calls, with a warning if others do not, and fails when none does (or, with Strict, when
// any does not).
func (w *walk) servers(t *target) (detail, warning string, err error) {
	if t.healthErr != nil {
		return "", "", t.healthErr
	}
	var parts, bad []string
	weighted := 0
	for _, s := range t.health.Servers {
		if s.Weight == 0 {
			continue
		}
		weighted++
		parts = append(parts, s.Addr+" "+s.State)
		if s.State == health.StateUnhealthy {
			bad = append(bad, s.Addr+" ("+s.Reason+")")
		}
	}
	name := t.group.Name
	switch {
	case weighted == 0:
		return "", "", fmt.Errorf("the running serve has no server with a weight above 0 in %s", name)
	case len(bad) == weighted:
		return "", "", fmt.Errorf("no server of %s can take the call: unhealthy: %s", name, strings.Join(bad, ", "))
	case len(bad) > 0 && w.in.Strict:
		return "", "", fmt.Errorf("%d of %d servers of %s unhealthy (strict): %s", len(bad), weighted, name, strings.Join(bad, ", "))
	case len(bad) > 0:
		warning = fmt.Sprintf("%d of %d servers of %s unhealthy, the other %d take the calls: %s", len(bad), weighted, name, weighted-len(bad), strings.Join(bad, ", "))
	}
	detail = strings.Join(parts, ", ")
	if w.replica != "" {
		detail += " (as replica " + w.replica + " sees them)"
	}
	return detail, warning, nil
}

// rawCodec sends and receives messages as bytes, so a call needs no descriptors: the empty
// message is valid for every protobuf request type.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "albctl-raw" }

// MethodPath turns grpcurl's SERVICE/METHOD or SERVICE.METHOD into a call path.
func MethodPath(s string) (string, error) {
	s = strings.TrimPrefix(s, "/")
	if i := strings.LastIndex(s, "/"); i > 0 && i < len(s)-1 {
		return "/" + s, nil
	}
	if i := strings.LastIndex(s, "."); i > 0 && i < len(s)-1 {
		return "/" + s[:i] + "/" + s[i+1:], nil
	}
	return "", fmt.Errorf("invalid method %q: give SERVICE/METHOD, such as albctl.echo.v1.Echo/UnaryEcho", s)
}

// tlsConfig is how the call's client does TLS: verifying the listener, and with the client
// certificate given, if any.
func (w *walk) tlsConfig() *tls.Config {
	cfg := &tls.Config{RootCAs: w.roots(), ServerName: w.in.Host}
	if w.in.ClientCert != nil {
		cfg.Certificates = []tls.Certificate{*w.in.ClientCert}
	}
	return cfg
}

// clientAuth describes the listener's mutual TLS for its step, and fails when the listener
// requires a certificate that check was not given.
func (w *walk) clientAuth() (string, error) {
	l := w.listener
	if l.ClientCAID == "" {
		return "", nil
	}
	if l.ClientAuth == state.ClientAuthRequire && w.in.ClientCert == nil {
		return "", fmt.Errorf("listener %s requires a client certificate (mutual TLS, CA %s): pass --cert FILE --key FILE", l.ID, l.ClientCAID)
	}
	return fmt.Sprintf(", client certificates %s (CA %s)", l.ClientAuth, l.ClientCAID), nil
}

// aclVerdict says whether the listener's ACLs admit the address check calls from, and fails
// when they do not.
func (w *walk) aclVerdict() (string, error) {
	l := w.listener
	if len(l.ACLIDs) == 0 {
		return "", nil
	}
	acl, err := serve.ACLConfig(w.in.State, *l)
	if err != nil {
		return "", err
	}
	src := LocalSource(w.callAddr())
	if !acl.Admits(src) {
		return "", fmt.Errorf("listener %s's %s list ACL refuses %s, the address check calls from ('albctl acl get' shows the entries)", l.ID, l.ACLType, src)
	}
	return fmt.Sprintf(", %s list ACL admits %s", l.ACLType, src), nil
}

// roots trusts the listener's own certificate and albctl's CA, so only albctl's listener can
// pass.
func (w *walk) roots() *x509.CertPool {
	roots := x509.NewCertPool()
	roots.AddCert(w.leaf)
	if w.in.State.CA != nil {
		roots.AppendCertsFromPEM([]byte(w.in.State.CA.CertPEM))
	}
	return roots
}

// call makes one real call through the listener, TLS verified, with the planned method or path.
func (w *walk) call(ctx context.Context) (string, error) {
	if w.skip != "" {
		return w.skip, nil
	}
	if w.group.Protocol != state.ProtocolGRPC {
		return w.request(ctx)
	}
	target := w.callAddr()
	creds := credentials.NewTLS(w.tlsConfig())
	// The TLS server name is the call's authority too, so host rules see DOMAIN.
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return "", err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, w.in.Timeout)
	defer cancel()
	for key, values := range w.in.Header {
		for _, v := range values {
			ctx = metadata.AppendToOutgoingContext(ctx, key, v)
		}
	}
	start := time.Now()
	in, out := []byte{}, []byte{}
	err = cc.Invoke(ctx, w.path, &in, &out)
	took := time.Since(start).Round(100 * time.Microsecond)
	st := status.Convert(err)
	if !w.want(int(st.Code())) {
		return "", fmt.Errorf("%s through %s: grpc-status %s: %s, want %s", w.path, target, health.CodeText(int(st.Code())), st.Message(), w.wantText)
	}
	detail := fmt.Sprintf("%s → grpc-status %s in %v", w.path, health.CodeText(int(st.Code())), took)
	if w.fixed != nil {
		detail += ", the rule's fixed response"
	}
	return detail, nil
}

// request sends one HTTP request through the listener of an HTTP group.
func (w *walk) request(ctx context.Context) (string, error) {
	target := w.callAddr()
	scheme := "http"
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, target)
		},
		ForceAttemptHTTP2: true,
	}
	defer transport.CloseIdleConnections()
	if w.listener.Protocol == state.ProtocolHTTPS {
		scheme = "https"
		transport.TLSClientConfig = w.tlsConfig()
	}
	ctx, cancel := context.WithTimeout(ctx, w.in.Timeout)
	defer cancel()
	url := scheme + "://" + net.JoinHostPort(w.in.Host, strconv.Itoa(w.in.Port)) + w.path
	req, err := http.NewRequestWithContext(ctx, w.method, url, nil)
	if err != nil {
		return "", err
	}
	for key, values := range w.in.Header {
		for _, v := range values {
			req.Header.Add(key, v)
		}
	}
	start := time.Now()
	res, err := transport.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("%s %s through %s: %v", w.method, w.path, target, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	took := time.Since(start).Round(100 * time.Microsecond)
	if !w.want(res.StatusCode) {
		return "", fmt.Errorf("%s %s through %s: %s, want %s", w.method, w.path, target, res.Status, w.wantText)
	}
	detail := fmt.Sprintf("%s %s → %s (%s) in %v", w.method, w.path, res.Status, res.Proto, took)
	if w.fixed != nil {
		detail += ", the rule's fixed response"
	}
	return detail, nil
}
