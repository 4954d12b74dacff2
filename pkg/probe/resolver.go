package probe

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// maxCNAMEHops bounds how many CNAME records lookupWithServer follows, so a
// loop in the zone cannot hang the probe.
const maxCNAMEHops = 8

// lookupWithServer resolves host by asking the DNS server at server
// (host:port) directly, following CNAME records. It returns the A and AAAA
// addresses and the records it followed, one per line, for -v.
func lookupWithServer(ctx context.Context, server, host string) (addrs, chain []string, err error) {
	seen := map[string]bool{}
	addLink := func(line string) {
		if !seen[line] {
			seen[line] = true
			chain = append(chain, line)
		}
	}
	notFound := false
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		name := dns.Fqdn(host)
		for hop := 0; hop <= maxCNAMEHops; hop++ {
			answer, err := exchange(ctx, server, name, qtype)
			if err != nil {
				return nil, nil, err
			}
			if answer.Rcode == dns.RcodeNameError {
				notFound = true
				break
			}
			if answer.Rcode != dns.RcodeSuccess {
				return nil, nil, fmt.Errorf("DNS server %s answered %s for %s", server, dns.RcodeToString[answer.Rcode], host)
			}
			var dangling bool
			name, dangling = walkAnswer(answer, name, addLink, func(a string) { addrs = append(addrs, a) })
			if !dangling {
				break
			}
			// The chain stopped at a CNAME whose target had no records in
			// this answer: ask for the target itself.
		}
	}
	if len(addrs) == 0 && notFound {
		return nil, chain, &net.DNSError{Err: "no such host", Name: host, Server: server, IsNotFound: true}
	}
	return addrs, chain, nil
}

// exchange sends one query, retrying over TCP when the UDP answer was
// truncated.
func exchange(ctx context.Context, server, name string, qtype uint16) (*dns.Msg, error) {
	query := new(dns.Msg)
	query.SetQuestion(name, qtype)
	query.RecursionDesired = true
	client := &dns.Client{}
	answer, _, err := client.ExchangeContext(ctx, query, server)
	if err == nil && answer.Truncated {
		client.Net = "tcp"
		answer, _, err = client.ExchangeContext(ctx, query, server)
	}
	if err != nil {
		return nil, fmt.Errorf("asking DNS server %s: %w", server, err)
	}
	return answer, nil
}

// walkAnswer follows the records in one answer from name: CNAMEs to their
// targets, A and AAAA records to addresses. Servers usually put the whole
// chain in one answer but not always in order, hence the map. It returns the
// last name reached and whether that name was a CNAME target with no records.
func walkAnswer(answer *dns.Msg, name string, link, addAddr func(string)) (string, bool) {
	byOwner := map[string][]dns.RR{}
	for _, rr := range answer.Answer {
		owner := strings.ToLower(rr.Header().Name)
		byOwner[owner] = append(byOwner[owner], rr)
	}
	for hop := 0; hop <= maxCNAMEHops; hop++ {
		records := byOwner[strings.ToLower(name)]
		if len(records) == 0 {
			return name, hop > 0
		}
		target := ""
		for _, rr := range records {
			switch rr := rr.(type) {
			case *dns.CNAME:
				link(fmt.Sprintf("%s CNAME %s", trimDot(name), trimDot(rr.Target)))
				target = rr.Target
			case *dns.A:
				link(fmt.Sprintf("%s A %s", trimDot(name), rr.A))
				addAddr(rr.A.String())
			case *dns.AAAA:
				link(fmt.Sprintf("%s AAAA %s", trimDot(name), rr.AAAA))
				addAddr(rr.AAAA.String())
			}
		}
		if target == "" {
			return name, false
		}
		name = target
	}
	return name, false
}

func trimDot(name string) string { return strings.TrimSuffix(name, ".") }
