package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/albctl/albctl/pkg/state"
	"github.com/miekg/dns"
)

// testState builds the cloud flow's end state: a load balancer, a verified example.test with a
// CNAME to the load balancer, and a record of every type.
func testState(t *testing.T) (*state.State, *state.LoadBalancer) {
	t.Helper()
	s := state.New()
	lb, err := s.CreateLoadBalancer(state.LoadBalancer{Name: "demo", Address: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	lbCopy := *lb
	d, err := s.AddDomain("example.test")
	if err != nil {
		t.Fatal(err)
	}
	add := func(host, rtype, value string) {
		t.Helper()
		if _, err := s.AddRecord(state.Record{Domain: "example.test", Host: host, Type: rtype, Value: value, TTL: 300, Line: state.DefaultLine}); err != nil {
			t.Fatalf("add %s %s %s: %v", host, rtype, value, err)
		}
	}
	add(state.VerificationHost, state.TypeTXT, d.Verification.Value)
	if _, err := s.VerifyDomain("example.test"); err != nil {
		t.Fatal(err)
	}
	add("grpc", state.TypeCNAME, lb.DNSName)
	add("alias", state.TypeCNAME, "grpc.example.test")
	add("away", state.TypeCNAME, "www.elsewhere.test")
	add("dangling", state.TypeCNAME, "missing.example.test")
	add("*.dev", state.TypeA, "10.0.0.1")
	add("@", state.TypeTXT, "v=spf1 -all")
	add("@", state.TypeMX, "10 mail.example.test")
	add("_grpc._tcp", state.TypeSRV, "10 60 443 grpc.example.test")
	add("@", state.TypeCAA, `0 issue "letsencrypt.org"`)
	add("v6", state.TypeAAAA, "::1")
	for i := range 12 {
		add("big", state.TypeTXT, fmt.Sprintf("%02d-%s", i, strings.Repeat("x", 100)))
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s, &lbCopy
}

// startServer runs srv on a port of the kernel's choosing until the test ends.
func startServer(t *testing.T, srv *Server) string {
	t.Helper()
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not stop")
		}
	})
	return l.Addr()
}

func ask(t *testing.T, addr, network, name string, qtype uint16, edns bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if edns {
		m.SetEdns0(4096, false)
	}
	c := &dns.Client{Net: network, Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

// rrs writes records as "name TYPE value", for comparison.
func rrs(records []dns.RR) []string {
	var out []string
	for _, rr := range records {
		h := rr.Header()
		out = append(out, fmt.Sprintf("%s %s %s", h.Name, dns.TypeToString[h.Rrtype], strings.TrimPrefix(rr.String(), h.String())))
	}
	return out
}

func TestServer(t *testing.T) {
	s, lb := testState(t)
	addr := startServer(t, NewServer(s))
	lbName := lb.DNSName + "."
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		soa    bool
	}{
		{"grpc.example.test", dns.TypeA, dns.RcodeSuccess, []string{"grpc.example.test. CNAME " + lbName, lbName + " A 127.0.0.1"}, false},
		{"ALIAS.example.test", dns.TypeA, dns.RcodeSuccess, []string{"alias.example.test. CNAME grpc.example.test.", "grpc.example.test. CNAME " + lbName, lbName + " A 127.0.0.1"}, false},
		{"grpc.example.test", dns.TypeCNAME, dns.RcodeSuccess, []string{"grpc.example.test. CNAME " + lbName}, false},
		{lb.DNSName, dns.TypeA, dns.RcodeSuccess, []string{lbName + " A 127.0.0.1"}, false},
		{lb.DNSName, dns.TypeAAAA, dns.RcodeSuccess, nil, true},
		{"alb-none." + state.LBDomainSuffix, dns.TypeA, dns.RcodeNameError, nil, true},
		{"grpc.example.test", dns.TypeAAAA, dns.RcodeSuccess, []string{"grpc.example.test. CNAME " + lbName}, true},
		{"away.example.test", dns.TypeA, dns.RcodeSuccess, []string{"away.example.test. CNAME www.elsewhere.test."}, false},
		{"dangling.example.test", dns.TypeA, dns.RcodeNameError, []string{"dangling.example.test. CNAME missing.example.test."}, true},
		{"host.dev.example.test", dns.TypeA, dns.RcodeSuccess, []string{"host.dev.example.test. A 10.0.0.1"}, false},
		{"host.dev.example.test", dns.TypeTXT, dns.RcodeSuccess, nil, true},
		{"dev.example.test", dns.TypeA, dns.RcodeSuccess, nil, true},
		{"nothing.example.test", dns.TypeA, dns.RcodeNameError, nil, true},
		{"example.test", dns.TypeA, dns.RcodeSuccess, nil, true},
		{"example.test", dns.TypeTXT, dns.RcodeSuccess, []string{`example.test. TXT "v=spf1 -all"`}, false},
		{"example.test", dns.TypeMX, dns.RcodeSuccess, []string{"example.test. MX 10 mail.example.test."}, false},
		{"_grpc._tcp.example.test", dns.TypeSRV, dns.RcodeSuccess, []string{"_grpc._tcp.example.test. SRV 10 60 443 grpc.example.test."}, false},
		{"example.test", dns.TypeCAA, dns.RcodeSuccess, []string{`example.test. CAA 0 issue "letsencrypt.org"`}, false},
		{"v6.example.test", dns.TypeAAAA, dns.RcodeSuccess, []string{"v6.example.test. AAAA ::1"}, false},
		{"example.test", dns.TypeNS, dns.RcodeSuccess, []string{"example.test. NS " + nameServer}, false},
		{"www.elsewhere.test", dns.TypeA, dns.RcodeRefused, nil, false},
		{"albctl.test", dns.TypeA, dns.RcodeRefused, nil, false},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			r := ask(t, addr, network, tt.name, tt.qtype, false)
			what := fmt.Sprintf("%s %s %s", network, tt.name, dns.TypeToString[tt.qtype])
			if r.Rcode != tt.rcode {
				t.Errorf("%s: rcode %s, want %s", what, dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			if got := rrs(r.Answer); !slices.Equal(got, tt.answer) {
				t.Errorf("%s: answer\n%s\nwant\n%s", what, strings.Join(got, "\n"), strings.Join(tt.answer, "\n"))
			}
			if tt.soa != (len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA) {
				t.Errorf("%s: authority %v, want an SOA: %v", what, r.Ns, tt.soa)
			}
			if r.Authoritative != (tt.rcode != dns.RcodeRefused) || r.RecursionAvailable {
				t.Errorf("%s: aa=%v ra=%v", what, r.Authoritative, r.RecursionAvailable)
			}
		}
	}

	soa := ask(t, addr, "udp", "nothing.example.test", dns.TypeA, false).Ns[0].(*dns.SOA)
	if soa.Hdr.Name != "example.test." || soa.Hdr.Ttl != negTTL || soa.Minttl != negTTL {
		t.Errorf("negative answer SOA = %v", soa)
	}
	if ttl := ask(t, addr, "udp", "grpc.example.test", dns.TypeA, false).Answer; ttl[0].Header().Ttl != 300 || ttl[1].Header().Ttl != state.LBRecordTTL {
		t.Errorf("TTLs = %d, %d; want 300 and %d", ttl[0].Header().Ttl, ttl[1].Header().Ttl, state.LBRecordTTL)
	}
}

func TestServerTruncatesLargeAnswersOverUDP(t *testing.T) {
	s, _ := testState(t)
	addr := startServer(t, NewServer(s))
	udp := ask(t, addr, "udp", "big.example.test", dns.TypeTXT, false)
	if !udp.Truncated || len(udp.Answer) >= 12 {
		t.Errorf("UDP answer without EDNS: truncated=%v with %d records; want TC and fewer than 12", udp.Truncated, len(udp.Answer))
	}
	udp.Compress = true // as it came over the wire
	if size := udp.Len(); size > dns.MinMsgSize {
		t.Errorf("UDP answer is %d bytes, over %d", size, dns.MinMsgSize)
	}
	edns := ask(t, addr, "udp", "big.example.test", dns.TypeTXT, true)
	edns.Compress = true
	if !edns.Truncated || edns.Len() > maxUDPSize || edns.IsEdns0() == nil {
		t.Errorf("UDP answer with EDNS 4096: truncated=%v, %d bytes, OPT %v; want TC within %d bytes", edns.Truncated, edns.Len(), edns.IsEdns0(), maxUDPSize)
	}
	tcp := ask(t, addr, "tcp", "big.example.test", dns.TypeTXT, false)
	if tcp.Truncated || len(tcp.Answer) != 12 {
		t.Errorf("TCP answer: truncated=%v with %d records; want all 12", tcp.Truncated, len(tcp.Answer))
	}
	// The client library retries truncated answers over TCP as dig and stub resolvers do.
	c := &dns.Client{Timeout: 3 * time.Second}
	m := new(dns.Msg).SetQuestion("big.example.test.", dns.TypeTXT)
	r, _, err := c.Exchange(m, addr)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.Exchange(m, addr)
	}
	if err != nil || len(r.Answer) != 12 {
		t.Errorf("UDP then TCP: %v, %v", r, err)
	}
}

func TestServerFollowsUpdates(t *testing.T) {
	s, lb := testState(t)
	srv := NewServer(s)
	addr := startServer(t, srv)
	before := ask(t, addr, "udp", "example.test", dns.TypeSOA, false).Answer[0].(*dns.SOA).Serial

	next, _ := testState(t)
	next.LoadBalancers[0] = *lb
	next.LoadBalancers[0].Address = "127.0.0.9"
	if _, err := next.AddRecord(state.Record{Domain: "example.test", Host: "new", Type: state.TypeA, Value: "10.1.1.1", TTL: 60, Line: state.DefaultLine}); err != nil {
		t.Fatal(err)
	}
	srv.Update(next)
	if got := rrs(ask(t, addr, "udp", "new.example.test", dns.TypeA, false).Answer); !slices.Equal(got, []string{"new.example.test. A 10.1.1.1"}) {
		t.Errorf("after update: %v", got)
	}
	if got := rrs(ask(t, addr, "tcp", lb.DNSName, dns.TypeA, false).Answer); !slices.Equal(got, []string{lb.DNSName + ". A 127.0.0.9"}) {
		t.Errorf("load balancer after update: %v", got)
	}
	if after := ask(t, addr, "udp", "example.test", dns.TypeSOA, false).Answer[0].(*dns.SOA).Serial; after <= before {
		t.Errorf("SOA serial %d after an update, was %d", after, before)
	}
	srv.Update(state.New())
	if r := ask(t, addr, "udp", "new.example.test", dns.TypeA, false); r.Rcode != dns.RcodeRefused {
		t.Errorf("after the domain went away: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestServerOddQueries(t *testing.T) {
	s, _ := testState(t)
	addr := startServer(t, NewServer(s))
	c := &dns.Client{Timeout: 3 * time.Second}
	m := new(dns.Msg).SetQuestion("example.test.", dns.TypeA)
	m.Question[0].Qclass = dns.ClassCHAOS
	if r, _, err := c.Exchange(m, addr); err != nil || r.Rcode != dns.RcodeRefused {
		t.Errorf("CHAOS class: %v, %v", r, err)
	}
	m = new(dns.Msg).SetNotify("example.test.")
	if r, _, err := c.Exchange(m, addr); err != nil || r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("NOTIFY: %v, %v", r, err)
	}
}

func TestLookupHost(t *testing.T) {
	s, lb := testState(t)
	z := NewZones(s, nil)
	addrs, chain, err := z.LookupHost("grpc.example.test")
	wantChain := []string{"grpc.example.test CNAME " + lb.DNSName, lb.DNSName + " A 127.0.0.1"}
	if err != nil || !slices.Equal(addrs, []string{"127.0.0.1"}) || !slices.Equal(chain, wantChain) {
		t.Errorf("LookupHost(grpc.example.test) = %v, %v, %v", addrs, chain, err)
	}
	if _, _, err := z.LookupHost("www.elsewhere.test"); !errors.Is(err, ErrNotAuthoritative) {
		t.Errorf("outside the zones: %v", err)
	}
	if _, chain, err := z.LookupHost("away.example.test"); !errors.Is(err, ErrNotAuthoritative) || len(chain) != 1 {
		t.Errorf("chain leaving the zones: %v, %v", chain, err)
	}
	var dnsErr *net.DNSError
	if _, _, err := z.LookupHost("nothing.example.test"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("no such name: %v", err)
	}
}

// TestDig asks the real dig, as a user would after the TXT → verify → CNAME flow.
func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig is not installed (Debian package dnsutils; scripts/install-test-deps.sh installs it)")
	}
	s, lb := testState(t)
	addr := startServer(t, NewServer(s))
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, transport := range []string{"+notcp", "+tcp"} {
		out, err := exec.CommandContext(ctx, dig, "@"+host, "-p", port, "grpc.example.test", transport, "+norecurse", "+time=2", "+tries=1").CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", transport, err, out)
		}
		text := string(out)
		for _, want := range []string{`status: NOERROR`, `flags: qr aa;`,
			`grpc\.example\.test\.\s+300\s+IN\s+CNAME\s+` + regexp.QuoteMeta(lb.DNSName) + `\.\n`,
			regexp.QuoteMeta(lb.DNSName) + `\.\s+60\s+IN\s+A\s+127\.0\.0\.1\n`} {
			if !regexp.MustCompile(want).MatchString(text) {
				t.Errorf("dig %s output lacks %q:\n%s", transport, want, text)
			}
		}
	}
}

// FuzzWireForm checks that every value the model accepts makes a record that packs.
func FuzzWireForm(f *testing.F) {
	for _, seed := range []struct{ rtype, value string }{
		{state.TypeA, "127.0.0.1"}, {state.TypeAAAA, "::1"}, {state.TypeCNAME, "a.example.test"},
		{state.TypeTXT, strings.Repeat("y", 600)}, {state.TypeMX, "0 ."}, {state.TypeSRV, "1 2 3 t.example.test"},
		{state.TypeCAA, `0 issue ";"`},
	} {
		f.Add(seed.rtype, seed.value)
	}
	f.Fuzz(func(t *testing.T, rtype, value string) {
		v, err := state.NormalizeValue(rtype, value)
		if err != nil {
			return
		}
		rr, err := toRR(state.Answer{Name: "x.example.test", Type: rtype, TTL: 1, Value: v})
		if err != nil {
			t.Fatalf("toRR(%s %q): %v", rtype, v, err)
		}
		m := new(dns.Msg).SetQuestion("x.example.test.", dns.TypeANY)
		m.Answer = []dns.RR{rr}
		packed, err := m.Pack()
		if err != nil {
			t.Fatalf("pack %v: %v", rr, err)
		}
		var back dns.Msg
		if err := back.Unpack(packed); err != nil || len(back.Answer) != 1 {
			t.Fatalf("unpack %v: %v", rr, err)
		}
	})
}
