// Package check walks albctl's configuration for one DOMAIN:PORT end to end, as a checklist:
// DNS record chain, load balancer, listener, certificate, server group, the servers' health in
// the running serve, and one real call through the listener. It stops at the first failing step,
// so a CI smoke test learns what broke and where.
package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
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
	// Method is "/package.Service/Method" to call, or "" to call the group's health-check path.
	Method  string
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
			if l.Protocol != state.ProtocolHTTPS || !l.HTTP2 {
				return "", fmt.Errorf("listener %s on port %d is %s without HTTP/2: gRPC needs HTTPS with HTTP/2", l.ID, l.Port, l.Protocol)
			}
			return fmt.Sprintf("%s: HTTPS with HTTP/2 on port %d", l.ID, l.Port), nil
		}
	}
	return "", fmt.Errorf("load balancer %s has no listener on port %d ('albctl listener create --lb %s --port %d ...')", w.lb.Name, w.in.Port, w.lb.Name, w.in.Port)
}

func (w *walk) certificate(context.Context) (string, error) {
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
	sg, err := w.in.State.ServerGroup(w.listener.ServerGroupID)
	if err != nil {
		return "", err
	}
	w.group = sg
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

// call makes one real call through the listener, verifying TLS against the listener's own
// certificate, so only albctl's listener can pass.
func (w *walk) call(ctx context.Context) (string, error) {
	method, want := w.in.Method, func(err error) bool { return err == nil }
	wantText := "OK"
	if method == "" {
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
	roots := x509.NewCertPool()
	roots.AddCert(w.leaf)
	if w.in.State.CA != nil {
		roots.AppendCertsFromPEM([]byte(w.in.State.CA.CertPEM))
	}
	target := net.JoinHostPort(w.addrs[0], strconv.Itoa(w.in.Port))
	creds := credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: w.in.Host})
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
