package cli

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	albdns "github.com/albctl/albctl/pkg/dns"
	"github.com/albctl/albctl/pkg/state"
	"github.com/miekg/dns"
	"github.com/spf13/cobra"
)

func newDNSCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Manage domains and DNS records, resolve names, and serve them",
		Long: `albctl answers authoritatively for the domains you add and for ` + state.LBDomainSuffix + `,
where every load balancer's name resolves to its address without a record.

A domain starts unverified: prove you own it with the TXT record 'dns domain add' prints, then
'dns domain verify' it. Until then the ownership TXT record is the only record it takes.`,
		Example: `  albctl dns domain add example.test
  albctl dns add --domain example.test --type TXT --host _albctl-challenge --value <token>
  albctl dns domain verify example.test
  albctl dns add --domain example.test --type CNAME --host grpc --value alb-<id>.` + state.LBDomainSuffix + `
  albctl dns resolve grpc.example.test
  albctl dns serve --listen 127.0.0.1:5353`,
	}
	cmd.AddCommand(newDomainCmd(a), newRecordAddCmd(a), newRecordListCmd(a), newRecordUpdateCmd(a), newResolveCmd(a), newDNSServeCmd(a),
		newGetCmd(a, "ID", "Show a DNS record", "  albctl dns get rr-0123456789abcdef -o json",
			recordRefs, (*state.State).Record, a.printRecord),
		newDeleteCmd(a, "ID", "Delete a DNS record", "  albctl dns delete rr-0123456789abcdef",
			recordRefs, (*state.State).DeleteRecord, a.printRecord))
	return cmd
}

func newDomainCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "domain",
		Short: "Add, verify, list and delete domains",
		Long: `A domain is a zone albctl answers for. Adding one gives a TXT record that proves you own it
(host ` + state.VerificationHost + `, a random token as its value); add that record, then
verify the domain to unlock its other records.`,
		Example: "  albctl dns domain add example.test\n  albctl dns domain verify example.test\n  albctl dns domain list",
	}
	cmd.AddCommand(newDomainAddCmd(a), newDomainVerifyCmd(a), newDomainListCmd(a), newDomainGetCmd(a), newDomainDeleteCmd(a))
	return cmd
}

func newDomainAddCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "add DOMAIN",
		Short:   "Add a domain and print the TXT record that proves you own it",
		Example: "  albctl dns domain add example.test\n  albctl dns domain add example.test -o json",
		Args:    needArgs("DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var added state.Domain
			_, err := a.store().Update(cmd.Context(), func(s *state.State) error {
				d, err := s.AddDomain(args[0])
				if err == nil {
					added = *d
				}
				return err
			})
			if err != nil {
				return err
			}
			return a.printDomain(added, 0)
		},
	}
}

func newDomainVerifyCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "verify DOMAIN",
		Short: "Verify a domain by looking up its ownership TXT record",
		Long: `Looks up the TXT record at ` + state.VerificationHost + `.DOMAIN the way albctl's DNS server
answers it, and marks the domain verified when the record holds the domain's token.`,
		Example:           "  albctl dns domain verify example.test",
		Args:              needArgs("DOMAIN"),
		ValidArgsFunction: argCompletion(a.refCompletion(domainRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var verified state.Domain
			s, err := a.store().Update(cmd.Context(), func(s *state.State) error {
				d, err := s.VerifyDomain(args[0])
				if err == nil {
					verified = *d
				}
				return err
			})
			if err != nil {
				return explainDNS(err)
			}
			return a.printDomain(verified, len(s.RecordsIn(verified.Name)))
		},
	}
}

func newDomainListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List domains",
		Example: "  albctl dns domain list\n  albctl dns domain list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(s.Domains, func() view {
				t := table{header: []string{"NAME", "VERIFIED", "RECORDS"}}
				for _, d := range s.Domains {
					t.rows = append(t.rows, []string{d.Name, yesNo(d.Verified), itoa(len(s.RecordsIn(d.Name)))})
				}
				return t
			})
		},
	}
}

func newDomainGetCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:               "get DOMAIN",
		Short:             "Show a domain and its ownership record",
		Example:           "  albctl dns domain get example.test -o json",
		Args:              needArgs("DOMAIN"),
		ValidArgsFunction: argCompletion(a.refCompletion(domainRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			d, err := s.Domain(args[0])
			if err != nil {
				return err
			}
			return a.printDomain(*d, len(s.RecordsIn(d.Name)))
		},
	}
}

func newDomainDeleteCmd(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:               "delete DOMAIN [--force]",
		Aliases:           []string{"rm"},
		Short:             "Delete a domain that has no records, or with --force its records too",
		Example:           "  albctl dns domain delete example.test\n  albctl dns domain delete example.test --force",
		Args:              needArgs("DOMAIN"),
		ValidArgsFunction: argCompletion(a.refCompletion(domainRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var deleted state.Domain
			var records []state.Record
			_, err := a.store().Update(cmd.Context(), func(s *state.State) error {
				d, rs, err := s.DeleteDomain(args[0], force)
				if err == nil {
					deleted, records = *d, rs
				}
				return err
			})
			if err != nil {
				return err
			}
			return a.print(deleted, func() view {
				return append(domainDetails(deleted, len(records)), [2]string{"Deleted", fmt.Sprintf("the domain and %d record(s)", len(records))})
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete the domain's records too")
	return cmd
}

func (a *app) printDomain(d state.Domain, records int) error {
	return a.print(d, func() view { return domainDetails(d, records) })
}

func domainDetails(d state.Domain, records int) details {
	v := d.Verification
	out := details{
		{"Name", d.Name},
		{"Verified", yesNo(d.Verified)},
		{"Records", itoa(records)},
		{"Ownership record", fmt.Sprintf("%s %s %s", v.Host, v.Type, v.Value)},
	}
	if !d.Verified {
		out = append(out,
			[2]string{"To verify", verificationAddCommand(d)},
			[2]string{"", "albctl dns domain verify " + d.Name})
	}
	return out
}

func verificationAddCommand(d state.Domain) string {
	v := d.Verification
	return fmt.Sprintf("albctl dns add --domain %s --type %s --host %s --value %s", d.Name, v.Type, v.Host, v.Value)
}

// explainDNS adds to an unverified domain's error the commands that fix it.
func explainDNS(err error) error {
	var ue *state.UnverifiedError
	if !errors.As(err, &ue) {
		return err
	}
	d := ue.Domain
	verify := "albctl dns domain verify " + d.Name
	switch {
	case len(ue.Found) > 0 && ue.Found[0].Value != d.Verification.Value:
		return fmt.Errorf("%w\nPut the token in the record, then verify the domain:\n  albctl dns update %s --value %s\n  %s",
			err, ue.Found[0].RecordID, d.Verification.Value, verify)
	case len(ue.Found) > 0:
		return fmt.Errorf("%w\nThe ownership record is in place: verify the domain:\n  %s", err, verify)
	default:
		return fmt.Errorf("%w\nAdd the ownership record, then verify the domain:\n  %s\n  %s", err, verificationAddCommand(d), verify)
	}
}

// recordFlags are the fields of a record that add and update share.
type recordFlags struct {
	domain, host, rtype, value, line string
	ttl                              int
}

func (f *recordFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.host, "host", "", "host record, relative to the domain: @ for the domain itself, * for a wildcard, or labels such as grpc or _grpc._tcp")
	fs.StringVar(&f.rtype, "type", "", "record type: "+strings.Join(state.RecordTypes, ", "))
	fs.StringVar(&f.value, "value", "", `value for the type: an IPv4 (A) or IPv6 (AAAA) address, a host name (CNAME), text (TXT), "10 mail.example.test" (MX), "10 60 443 grpc.example.test" (SRV), '0 issue "ca.example"' (CAA)`)
	fs.IntVar(&f.ttl, "ttl", state.DefaultTTL, fmt.Sprintf("time to live in seconds, %d-%d", state.MinTTL, state.MaxTTL))
	fs.StringVar(&f.line, "line", state.DefaultLine, "resolution line; only "+state.DefaultLine+" for now")
	_ = cmd.RegisterFlagCompletionFunc("type", fixedCompletion(state.RecordTypes...))
	_ = cmd.RegisterFlagCompletionFunc("line", fixedCompletion(state.DefaultLine))
}

func newRecordAddCmd(a *app) *cobra.Command {
	var f recordFlags
	cmd := &cobra.Command{
		Use:   "add --domain DOMAIN --type TYPE --host HOST --value VALUE [--ttl 600] [--line default]",
		Short: "Add a DNS record",
		Example: `  albctl dns add --domain example.test --type TXT --host _albctl-challenge --value albctl-verify-0123456789abcdef
  albctl dns add --domain example.test --type CNAME --host grpc --value alb-0123456789abcdef.` + state.LBDomainSuffix + `
  albctl dns add --domain example.test --type A --host @ --value 127.0.0.1 --ttl 60
  albctl dns add --domain example.test --type MX --host @ --value "10 mail.example.test"
  albctl dns add --domain example.test --type SRV --host _grpc._tcp --value "10 60 443 grpc.example.test"
  albctl dns add --domain example.test --type CAA --host @ --value '0 issue "letsencrypt.org"'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r := state.Record{Domain: f.domain, Host: f.host, Type: f.rtype, Value: f.value, TTL: f.ttl, Line: f.line}
			var added state.Record
			_, err := a.store().Update(cmd.Context(), func(s *state.State) error {
				rec, err := s.AddRecord(r)
				if err == nil {
					added = *rec
				}
				return err
			})
			if err != nil {
				return explainDNS(err)
			}
			return a.printRecord(added)
		},
	}
	cmd.Flags().StringVar(&f.domain, "domain", "", "domain the record belongs to")
	f.register(cmd)
	for _, name := range []string{"domain", "type", "host", "value"} {
		_ = cmd.MarkFlagRequired(name)
	}
	_ = cmd.RegisterFlagCompletionFunc("domain", a.refCompletion(domainRefs))
	return cmd
}

func newRecordListCmd(a *app) *cobra.Command {
	var domain string
	cmd := &cobra.Command{
		Use:     "list [--domain DOMAIN]",
		Aliases: []string{"ls"},
		Short:   "List DNS records, of every domain or of one",
		Example: "  albctl dns list\n  albctl dns list --domain example.test -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			if domain != "" {
				if _, err := s.Domain(domain); err != nil {
					return err
				}
			}
			records := s.RecordsIn(domain)
			return a.print(records, func() view {
				t := table{header: []string{"ID", "DOMAIN", "HOST", "TYPE", "VALUE", "TTL", "LINE"}}
				for _, r := range records {
					t.rows = append(t.rows, []string{r.ID, r.Domain, r.Host, r.Type, r.Value, itoa(r.TTL), r.Line})
				}
				return t
			})
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "only the records of this domain")
	_ = cmd.RegisterFlagCompletionFunc("domain", a.refCompletion(domainRefs))
	return cmd
}

func newRecordUpdateCmd(a *app) *cobra.Command {
	var f recordFlags
	cmd := &cobra.Command{
		Use:               "update ID [--host HOST] [--type TYPE] [--value VALUE] [--ttl N] [--line default]",
		Short:             "Change a DNS record; its domain stays",
		Example:           "  albctl dns update rr-0123456789abcdef --value 127.0.0.2 --ttl 60\n  albctl dns update rr-0123456789abcdef --type CNAME --value alb-0123456789abcdef." + state.LBDomainSuffix,
		Args:              needArgs("ID"),
		ValidArgsFunction: argCompletion(a.refCompletion(recordRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			if !fs.Changed("host") && !fs.Changed("type") && !fs.Changed("value") && !fs.Changed("ttl") && !fs.Changed("line") {
				return usageErrorf("say what to change: --host, --type, --value, --ttl or --line")
			}
			var updated state.Record
			_, err := a.store().Update(cmd.Context(), func(s *state.State) error {
				rec, err := s.UpdateRecord(args[0], func(r *state.Record) error {
					setIfChanged(fs, "host", &r.Host, f.host)
					setIfChanged(fs, "type", &r.Type, f.rtype)
					setIfChanged(fs, "value", &r.Value, f.value)
					setIfChanged(fs, "ttl", &r.TTL, f.ttl)
					setIfChanged(fs, "line", &r.Line, f.line)
					return nil
				})
				if err == nil {
					updated = *rec
				}
				return err
			})
			if err != nil {
				return explainDNS(err)
			}
			return a.printRecord(updated)
		},
	}
	f.register(cmd)
	return cmd
}

func (a *app) printRecord(r state.Record) error {
	return a.print(r, func() view {
		return details{{"ID", r.ID}, {"Domain", r.Domain}, {"Host", r.Host}, {"Name", r.FQDN()}, {"Type", r.Type},
			{"Value", r.Value}, {"TTL", itoa(r.TTL)}, {"Line", r.Line}}
	})
}

func domainRefs(s *state.State) [][2]string {
	var out [][2]string
	for _, d := range s.Domains {
		out = append(out, [2]string{d.Name, "verified: " + yesNo(d.Verified)})
	}
	return out
}

func recordRefs(s *state.State) [][2]string {
	var out [][2]string
	for _, r := range s.Records {
		out = append(out, [2]string{r.ID, r.FQDN() + " " + r.Type + " " + r.Value})
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// resolvedRR is one record of a resolution in the output of `dns resolve`.
type resolvedRR struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	TTL   uint32 `json:"ttl"`
	Value string `json:"value"`
}

type resolution struct {
	Name      string       `json:"name"`
	Type      string       `json:"type"`
	Status    string       `json:"status"`
	Answer    []resolvedRR `json:"answer"`
	Authority []resolvedRR `json:"authority"`
}

func resolvedRRs(rrs []dns.RR) []resolvedRR {
	out := []resolvedRR{}
	for _, rr := range rrs {
		h := rr.Header()
		out = append(out, resolvedRR{
			Name:  strings.TrimSuffix(h.Name, "."),
			Type:  dns.TypeToString[h.Rrtype],
			TTL:   h.Ttl,
			Value: strings.TrimPrefix(rr.String(), h.String()),
		})
	}
	return out
}

func newResolveCmd(a *app) *cobra.Command {
	var qtype string
	cmd := &cobra.Command{
		Use:   "resolve NAME [--type A]",
		Short: "Resolve a name from albctl's zones, showing the CNAME chain to the answer",
		Long: `Answers NAME as albctl's DNS server would: CNAME records are followed within albctl's zones,
load balancers' names resolve to their addresses, wildcards apply. The exit status is 1 when
there is no record of the type (NODATA), no such name (NXDOMAIN), or the name is outside
albctl's zones.`,
		Example: "  albctl dns resolve grpc.example.test\n  albctl dns resolve example.test --type MX -o json",
		Args:    needArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, ok := dns.StringToType[strings.ToUpper(qtype)]
			if !ok {
				return usageErrorf("invalid value %q for --type: must be a DNS type such as %s, SOA, NS or ANY", qtype, strings.Join(state.RecordTypes, ", "))
			}
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			zones := albdns.NewZones(s, a.lbAddresses(cmd.Context(), s))
			name := state.CanonicalName(args[0])
			res := zones.Resolve(name, t)
			out := resolution{Name: name, Type: dns.TypeToString[t], Status: dns.RcodeToString[res.Rcode],
				Answer: resolvedRRs(res.Answer), Authority: resolvedRRs(res.Ns)}
			if res.Rcode == dns.RcodeSuccess && len(res.Ns) > 0 {
				out.Status = "NODATA"
			}
			err = a.print(out, func() view {
				t := table{header: []string{"NAME", "TTL", "TYPE", "VALUE"}}
				for _, rr := range out.Answer {
					t.rows = append(t.rows, []string{rr.Name, strconv.FormatUint(uint64(rr.TTL), 10), rr.Type, rr.Value})
				}
				return t
			})
			if err != nil {
				return err
			}
			last := name
			if n := len(out.Answer); n > 0 && out.Answer[n-1].Type == "CNAME" {
				last = state.CanonicalName(out.Answer[n-1].Value)
			}
			switch out.Status {
			case "NOERROR":
				return nil
			case "NXDOMAIN":
				return fmt.Errorf("%s: no such name in zone %s (NXDOMAIN)", last, out.Authority[0].Name)
			case "NODATA":
				return fmt.Errorf("%s: no %s record (NODATA)", last, out.Type)
			case "REFUSED":
				return fmt.Errorf("%s is not in albctl's zones (%s)", name, strings.Join(zones.Names(), ", "))
			default:
				return fmt.Errorf("%s: %s", name, out.Status)
			}
		},
	}
	cmd.Flags().StringVar(&qtype, "type", "A", "record type to ask for: "+strings.Join(state.RecordTypes, ", ")+", SOA, NS or ANY")
	_ = cmd.RegisterFlagCompletionFunc("type", fixedCompletion(append(state.RecordTypes, "SOA", "NS", "ANY")...))
	return cmd
}

// stateReloadInterval is how often a server checks the state file for changes.
const stateReloadInterval = 250 * time.Millisecond

func newDNSServeCmd(a *app) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve [--listen 127.0.0.1:5353]",
		Short: "Run albctl's DNS server alone, in the foreground",
		Long: `Answers authoritatively, over UDP and TCP, for the domains in the state and for
` + state.LBDomainSuffix + `; other names are REFUSED. The server follows changes to the state
file as they happen. A state file that cannot be read while serving is reported here and the
last good one keeps being served. Interrupt (Ctrl-C) or SIGTERM stops it.`,
		Example: "  albctl dns serve --listen 127.0.0.1:5353\n  dig @127.0.0.1 -p 5353 grpc.example.test",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			store := state.NewFileStore(a.statePath)
			seen := store.Stat()
			s, err := store.Load(ctx)
			if err != nil {
				return err
			}
			srv := albdns.NewServer(s)
			l, err := albdns.Listen(listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.io.Out, "DNS server on %s (UDP and TCP) for %s\n", l.Addr(), strings.Join(srv.Zones().Names(), ", "))
			go store.Watch(ctx, seen, stateReloadInterval, func(s *state.State) {
				srv.Update(s)
				fmt.Fprintf(a.io.ErrOut, "albctl: state reloaded from %s\n", a.statePath)
			}, a.reportStateError)
			return srv.Serve(ctx, l)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:5353", "address to answer on, HOST:PORT (port 0 picks a free one)")
	return cmd
}

// reportStateError tells a running server's user that the state file could not be read.
func (a *app) reportStateError(err error) {
	fmt.Fprintf(a.io.ErrOut, "albctl: %s; still serving the last good state\n", a.describe(err))
}
