// Package dns answers DNS questions for albctl's zones — the domains in the state and
// local.alb.albctl.test, where load balancers' names live — and runs the authoritative server
// that serves them over UDP and TCP. The answers come from state.Authority, the same resolution
// that domain verification and the CNAME loop check use.
package dns

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/albctl/albctl/pkg/state"
	"github.com/miekg/dns"
)

// SOA settings of every zone. The name server is albctl itself; the SOA's minimum bounds how
// long resolvers cache a negative answer.
const (
	nameServer = "ns1.albctl.test."
	soaTTL     = 600
	negTTL     = 60
)

// ErrNotAuthoritative is a name outside albctl's zones, or a CNAME chain that leaves them: ask
// another resolver.
var ErrNotAuthoritative = errors.New("not in albctl's zones")

// Zones answers questions from one state snapshot.
type Zones struct {
	auth   *state.Authority
	serial uint32
}

// NewZones indexes a state snapshot, which must not change afterwards. lbAddrs, if not nil,
// gives the addresses load balancers' names answer by ID, as State.AuthorityFor takes them.
func NewZones(s *state.State, lbAddrs map[string][]string) *Zones {
	return newZones(s, uint32(time.Now().Unix()), lbAddrs)
}

func newZones(s *state.State, serial uint32, lbAddrs map[string][]string) *Zones {
	return &Zones{auth: s.AuthorityFor(lbAddrs), serial: serial}
}

// Names lists the zones, sorted.
func (z *Zones) Names() []string { return z.auth.Zones() }

// Result is the answer to one question, as the server sends it.
type Result struct {
	// Rcode is dns.RcodeSuccess, RcodeNameError (NXDOMAIN), RcodeRefused (outside albctl's
	// zones) or RcodeServerFailure.
	Rcode int
	// Answer is the CNAME chain followed, then the records asked for.
	Answer []dns.RR
	// Ns holds the zone's SOA when there is no record to give (NXDOMAIN or NODATA).
	Ns []dns.RR
}

// Resolve answers name and qtype (dns.TypeA, …) as the server does.
func (z *Zones) Resolve(name string, qtype uint16) Result {
	if z.auth.Zone(name) == "" {
		return Result{Rcode: dns.RcodeRefused}
	}
	rtype, ok := dns.TypeToString[qtype]
	if !ok {
		rtype = fmt.Sprintf("TYPE%d", qtype)
	}
	res := z.auth.Resolve(name, rtype)
	if res.Loop {
		return Result{Rcode: dns.RcodeServerFailure}
	}
	var out Result
	for _, a := range append(res.Chain, res.Answers...) {
		rr, err := toRR(a)
		if err != nil {
			return Result{Rcode: dns.RcodeServerFailure}
		}
		out.Answer = append(out.Answer, rr)
	}
	if res.Outside != "" {
		return out // the rest of the chain is for another server
	}
	if res.Final == res.Zone {
		if qtype == dns.TypeSOA || qtype == dns.TypeANY {
			out.Answer = append(out.Answer, z.soa(res.Zone, soaTTL))
		}
		if qtype == dns.TypeNS || qtype == dns.TypeANY {
			out.Answer = append(out.Answer, &dns.NS{Hdr: header(res.Zone, dns.TypeNS, soaTTL), Ns: nameServer})
		}
	}
	if len(out.Answer) == len(res.Chain) {
		out.Ns = []dns.RR{z.soa(res.Zone, negTTL)}
		if res.NXDomain {
			out.Rcode = dns.RcodeNameError
		}
	}
	return out
}

func (z *Zones) soa(zone string, ttl uint32) dns.RR {
	return &dns.SOA{
		Hdr:     header(zone, dns.TypeSOA, ttl),
		Ns:      nameServer,
		Mbox:    "hostmaster." + dns.Fqdn(zone),
		Serial:  z.serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  negTTL,
	}
}

func header(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

// toRR turns a record of the model into its wire form.
func toRR(a state.Answer) (dns.RR, error) {
	ttl := uint32(a.TTL)
	switch a.Type {
	case state.TypeA, state.TypeAAAA:
		ip := net.ParseIP(a.Value)
		if ip == nil {
			return nil, fmt.Errorf("bad address %q", a.Value)
		}
		if a.Type == state.TypeA {
			return &dns.A{Hdr: header(a.Name, dns.TypeA, ttl), A: ip.To4()}, nil
		}
		return &dns.AAAA{Hdr: header(a.Name, dns.TypeAAAA, ttl), AAAA: ip}, nil
	case state.TypeCNAME:
		return &dns.CNAME{Hdr: header(a.Name, dns.TypeCNAME, ttl), Target: dns.Fqdn(a.Value)}, nil
	case state.TypeTXT:
		return &dns.TXT{Hdr: header(a.Name, dns.TypeTXT, ttl), Txt: splitTXT(a.Value)}, nil
	case state.TypeMX:
		mx, err := state.ParseMX(a.Value)
		if err != nil {
			return nil, err
		}
		return &dns.MX{Hdr: header(a.Name, dns.TypeMX, ttl), Preference: mx.Preference, Mx: dns.Fqdn(mx.Host)}, nil
	case state.TypeSRV:
		srv, err := state.ParseSRV(a.Value)
		if err != nil {
			return nil, err
		}
		return &dns.SRV{Hdr: header(a.Name, dns.TypeSRV, ttl), Priority: srv.Priority, Weight: srv.Weight,
			Port: srv.Port, Target: dns.Fqdn(srv.Target)}, nil
	case state.TypeCAA:
		caa, err := state.ParseCAA(a.Value)
		if err != nil {
			return nil, err
		}
		return &dns.CAA{Hdr: header(a.Name, dns.TypeCAA, ttl), Flag: caa.Flags, Tag: caa.Tag, Value: caa.Value}, nil
	}
	return nil, fmt.Errorf("record type %q", a.Type)
}

// splitTXT cuts a value into the strings of at most 255 bytes a TXT record is made of.
// miekg/dns escapes quotes and backslashes itself when it writes them in zone-file form.
func splitTXT(v string) []string {
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}

// LookupHost resolves name to its A and AAAA addresses from albctl's zones. chain describes the
// records followed, one per line ("grpc.example.test CNAME alb-….local.alb.albctl.test",
// "alb-….local.alb.albctl.test A 127.0.0.1"). A name with no address is a *net.DNSError with
// IsNotFound; a name outside albctl's zones, or a chain that leaves them, is
// ErrNotAuthoritative, which tells the caller to ask the system resolver instead.
func (z *Zones) LookupHost(name string) (addrs, chain []string, err error) {
	seen := map[string]bool{}
	link := func(line string) {
		if !seen[line] {
			seen[line] = true
			chain = append(chain, line)
		}
	}
	outside := ""
	for _, rtype := range []string{state.TypeA, state.TypeAAAA} {
		res := z.auth.Resolve(name, rtype)
		if res.Zone == "" {
			return nil, nil, fmt.Errorf("%s: %w", name, ErrNotAuthoritative)
		}
		if res.Loop {
			return nil, chain, fmt.Errorf("%s: CNAME loop in albctl's zones", name)
		}
		for _, c := range res.Chain {
			link(c.Name + " CNAME " + c.Value)
		}
		for _, a := range res.Answers {
			link(a.Name + " " + a.Type + " " + a.Value)
			addrs = append(addrs, a.Value)
		}
		if res.Outside != "" {
			outside = res.Outside
		}
	}
	switch {
	case len(addrs) > 0:
		return addrs, chain, nil
	case outside != "":
		return nil, chain, fmt.Errorf("%s leads to %s: %w", name, outside, ErrNotAuthoritative)
	default:
		return nil, chain, &net.DNSError{Err: "no such host", Name: strings.TrimSuffix(name, "."), IsNotFound: true}
	}
}
