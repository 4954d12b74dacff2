// Package check walks albctl's configuration for one DOMAIN:PORT end to end, as a checklist:
// DNS record chain, load balancer, listener, certificate, server group, the servers' health in
// the running serve, and one real call (a gRPC call, or an HTTP request for an HTTP server
// group) through the listener. It stops at the first failing step,
// so a CI smoke test learns what broke and where.
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
	"github.com/albctl/albctl/pkg/serve"
	"github.com/albctl/albctl/pkg/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Step is one line of the checklist.
type Step struct {
	Name   string `json:"step"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Input is what to check and with what.
type Input struct {
	State     *state.State
	StatePath string
	// Admin overrides where the running serve's admin API is.
	Admin string
	Host  string
	Port  int
	// Request is what to send: SERVICE/METHOD (or SERVICE.METHOD) for a gRPC group, a path
	// such as /healthz for an HTTP group; "" sends the group's health check.
	Request string
	Timeout time.Duration
}

// walk carries what earlier steps found to later ones.
type walk struct {
	in       Input
	addrs    []string
	lb       *state.LoadBalancer
	listener *state.Listener
	leaf     *x509.Certificate // the listener's certificate
	group    *state.ServerGroup
}

// Run performs the steps in order and returns them, ending with the first that failed.
func Run(ctx context.Context, in Input) []Step {
	w := &walk{in: in}
	steps := []struct {
		name string
		run  func(context.Context) (string, error)
	}{
		{"dns", w.resolve},
		{"load balancer", w.loadBalancer},
		{"listener", w.findListener},
		{"certificate", w.certificate},
		{"server group", w.serverGroup},
		{"servers", w.servers},
		{"call", w.call},
	}
	var out []Step
	for _, s := range steps {
		detail, err := s.run(ctx)
		if err != nil {
			return append(out, Step{Name: s.name, Detail: err.Error()})
		}
		out = append(out, Step{Name: s.name, OK: true, Detail: detail})
	}
	return out
}

func (w *walk) resolve(context.Context) (string, error) {
	if ip, err := netip.ParseAddr(w.in.Host); err == nil {
		w.addrs = []string{ip.String()}
		return w.in.Host + " is an address: no DNS needed", nil
	}
	addrs, chain, err := albdns.NewZones(w.in.State).LookupHost(w.in.Host)
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
		if slices.ContainsFunc(w.addrs, func(a string) bool { return state.SameAddress(a, lb.Address) }) {
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
			return fmt.Sprintf("%s: %s %s on port %d", l.ID, l.Protocol, http2, l.Port), nil
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

func (w *walk) serverGroup(context.Context) (string, error) {
	sg := w.group
	active := 0
	for _, s := range sg.Servers {
		if s.Weight > 0 {
			active++
		}
	}
	if active == 0 {
		return "", fmt.Errorf("server group %s has no server with a weight above 0 ('albctl servergroup add-servers %s --server HOST:PORT')", sg.Name, sg.Name)
	}
	return fmt.Sprintf("%s: %s, %s, %d of %d servers take calls", sg.Name, sg.Protocol, sg.Scheduler, active, len(sg.Servers)), nil
}

// servers reads the servers' health from the running serve.
func (w *walk) servers(context.Context) (string, error) {
	addr, err := serve.Discover(w.in.StatePath, w.in.Admin)
	if err != nil {
		return "", err
	}
	gs, err := serve.GroupHealth(addr, w.group)
	if err != nil {
		return "", err
	}
	var parts, bad []string
	for _, s := range gs.Servers {
		if s.Weight == 0 {
			continue
		}
		parts = append(parts, s.Addr+" "+s.State)
		if s.State == health.StateUnhealthy {
			bad = append(bad, s.Addr+" ("+s.Reason+")")
		}
	}
	if len(bad) > 0 {
		return "", fmt.Errorf("unhealthy: %s", strings.Join(bad, ", "))
	}
	return strings.Join(parts, ", "), nil
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

// call makes one real call through the listener, TLS verified.
func (w *walk) call(ctx context.Context) (string, error) {
	if w.group.Protocol != state.ProtocolGRPC {
		return w.request(ctx)
	}
	want := func(err error) bool { return err == nil }
	wantText, method := "OK", ""
	if w.in.Request != "" {
		var err error
		if method, err = MethodPath(w.in.Request); err != nil {
			return "", err
		}
	} else {
		hc := w.group.HealthCheck
		if hc.Protocol != state.ProtocolGRPC {
			return "skipped: give SERVICE/METHOD to make a call (the group's health check is not a gRPC method call)", nil
		}
		codes, err := state.ParseGRPCCodes(hc.Codes)
		if err != nil {
			return "", err
		}
		method, wantText = hc.Path, "a status in "+hc.Codes
		want = func(err error) bool { return codes.Contains(int(status.Code(err))) }
	}
	target := net.JoinHostPort(w.addrs[0], strconv.Itoa(w.in.Port))
	creds := credentials.NewTLS(&tls.Config{RootCAs: w.roots(), ServerName: w.in.Host})
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return "", err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, w.in.Timeout)
	defer cancel()
	start := time.Now()
	in, out := []byte{}, []byte{}
	err = cc.Invoke(ctx, method, &in, &out)
	took := time.Since(start).Round(100 * time.Microsecond)
	if !want(err) {
		st := status.Convert(err)
		return "", fmt.Errorf("%s through %s: grpc-status %s: %s, want %s", method, target, health.CodeText(int(st.Code())), st.Message(), wantText)
	}
	return fmt.Sprintf("%s → grpc-status %s in %v", method, health.CodeText(int(status.Code(err))), took), nil
}

// request sends one HTTP request through the listener of an HTTP group: GET of the given path,
// which must not answer 5xx, or else the group's health check, which must answer one of its
// codes.
func (w *walk) request(ctx context.Context) (string, error) {
	hc := w.group.HealthCheck
	method, path := http.MethodGet, w.in.Request
	wantText, want := "no 5xx", func(code int) bool { return code < 500 }
	if path == "" {
		if hc.Protocol != state.ProtocolHTTP {
			return "skipped: give a PATH to request (the group's health check is not an HTTP request)", nil
		}
		method, path, wantText = hc.Method, hc.Path, hc.Codes
		want = func(code int) bool { return state.HTTPCodeAllowed(hc.Codes, code) }
	}
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("invalid path %q: the listener forwards to HTTP group %s, give a path such as /healthz", path, w.group.Name)
	}
	target := net.JoinHostPort(w.addrs[0], strconv.Itoa(w.in.Port))
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
		transport.TLSClientConfig = &tls.Config{RootCAs: w.roots(), ServerName: w.in.Host}
	}
	ctx, cancel := context.WithTimeout(ctx, w.in.Timeout)
	defer cancel()
	url := scheme + "://" + net.JoinHostPort(w.in.Host, strconv.Itoa(w.in.Port)) + path
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return "", err
	}
	start := time.Now()
	res, err := transport.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("%s %s through %s: %v", method, path, target, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	took := time.Since(start).Round(100 * time.Microsecond)
	if !want(res.StatusCode) {
		return "", fmt.Errorf("%s %s through %s: %s, want %s", method, path, target, res.Status, wantText)
	}
	return fmt.Sprintf("%s %s → %s (%s) in %v", method, path, res.Status, res.Proto, took), nil
}
