package cli

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/albctl/albctl/pkg/check"
	"github.com/albctl/albctl/pkg/health"
	"github.com/albctl/albctl/pkg/proxy/route"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

// explainOptions describe the call that rule explain matches.
type explainOptions struct {
	listener, path, host, method, source string
	headers                              []string
}

func newRuleExplainCmd(a *app) *cobra.Command {
	var o explainOptions
	cmd := &cobra.Command{
		Use:   "explain --listener LISTENER --path PATH [flags]",
		Short: "Show which rule a call meets, why the rules before it do not, and where it goes",
		Long: `explain describes a call to a listener and tries the listener's rules on it by ascending
priority, with the matcher the data plane runs. For each rule before the one that matches it
prints the first condition the call does not meet (as --match writes it) and what the call
holds for it, such as header x-canary (missing). Then it prints the action: the rule's fixed
response, or the server groups it forwards to with their weights, or the listener's own
server group when no rule matches.

For each server group it lists the servers, with their health if an 'albctl serve' is running
for the state file, and the server the call likely reaches. The sch and uch schedulers are
asked through the data plane's own picker, so their answer holds while weights and health stay
as they are; wrr and wlc depend on the calls before, so explain names the server with the
largest weight.

A gRPC call is a POST of /SERVICE/METHOD; -H gives its metadata.`,
		Example: `  albctl rule explain --listener lsn-0123456789abcdef --path /albctl.echo.v1.Echo/UnaryEcho
  albctl rule explain --listener lsn-0123456789abcdef --path /albctl.echo.v1.Echo/UnaryEcho -H x-canary:1
  albctl rule explain --listener lsn-0123456789abcdef --path /shop/cart --http-method GET --host www.example.test
  albctl rule explain --listener lsn-0123456789abcdef --path /pkg.Billing/Charge --source-ip 10.0.0.7 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return explainRun(cmd.Context(), a, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.listener, "listener", "", "the listener, by ID")
	fs.StringVar(&o.path, "path", "", "the call's path, such as /pkg.Billing/Charge for a gRPC method, a query string included")
	fs.StringVar(&o.host, "host", "", "the call's host (default: the DNS name of the listener's load balancer)")
	fs.StringVar(&o.method, "http-method", "POST", "the call's HTTP method (gRPC calls are POST)")
	fs.StringVar(&o.source, "source-ip", "127.0.0.1", "the address the call comes from")
	fs.StringArrayVarP(&o.headers, "header", "H", nil, "header field KEY:VALUE of the call, as grpcurl's -H (repeatable)")
	_ = cmd.MarkFlagRequired("listener")
	_ = cmd.MarkFlagRequired("path")
	_ = cmd.RegisterFlagCompletionFunc("listener", a.refCompletion(listenerRefs))
	return cmd
}

func explainRun(ctx context.Context, a *app, o explainOptions) error {
	if !strings.HasPrefix(o.path, "/") {
		return usageErrorf("invalid value %q for --path: a path starts with '/', such as /albctl.echo.v1.Echo/UnaryEcho", o.path)
	}
	method := strings.ToUpper(o.method)
	if method == "" || strings.ContainsFunc(method, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		return usageErrorf("invalid value %q for --http-method: an HTTP method such as POST or GET", o.method)
	}
	source, err := netip.ParseAddr(o.source)
	if err != nil {
		return usageErrorf("invalid value %q for --source-ip: an IP address such as 10.0.0.7 or ::1", o.source)
	}
	md, err := check.ParseMetadata(o.headers)
	if err != nil {
		return &UsageError{Err: err}
	}
	s, err := a.store().Load(ctx)
	if err != nil {
		return err
	}
	l, err := s.Listener(o.listener)
	if err != nil {
		return err
	}
	host := o.host
	if host == "" {
		lb, err := s.LoadBalancer(l.LBID)
		if err != nil {
			return err
		}
		host = lb.DNSName
	}
	e, err := check.Explain(s, l, route.Request{Path: o.path, Host: host, Method: method, Source: source, Header: md})
	if err != nil {
		return err
	}
	if len(e.Action.Groups) == 0 {
		e.Health = ""
	} else if addr, err := serve.Discover(a.store(), a.admin); err != nil {
		e.Health = "not known: " + err.Error()
	} else {
		e.AddHealth(func(groupID string) (health.GroupStatus, error) {
			sg, err := s.ServerGroup(groupID)
			if err != nil {
				return health.GroupStatus{}, err
			}
			return serve.GroupHealth(addr, sg)
		})
	}
	return a.print(e, func() view { return explainView(s, l, e) })
}

func explainView(s *state.State, l *state.Listener, e check.Explanation) view {
	c := e.Call
	d := details{
		{"Listener", fmt.Sprintf("%s: %s on port %d, server group %s", l.ID, l.Protocol, l.Port, nameOf(s, l.ServerGroupID))},
		{"Call", fmt.Sprintf("%s %s, host %s, from %s", c.Method, c.Path, c.Host, c.Source)},
	}
	if len(c.Header) > 0 {
		d = append(d, [2]string{"Header", c.Header.String()})
	}
	if len(e.Rules) == 0 {
		d = append(d, [2]string{"Rules", "none on this listener"})
	}
	for _, r := range e.Rules {
		label := r.Name
		if label == "" {
			label = r.ID
		}
		verdict := "matched"
		if !r.Matched {
			verdict = fmt.Sprintf("no match: wants %s, the call has %s", r.Failed, r.Seen)
		}
		d = append(d, [2]string{fmt.Sprintf("Priority %d", r.Priority), label + ": " + verdict})
	}
	act := e.Action
	switch {
	case act.Default:
		d = append(d, [2]string{"Action", "default: no rule matched, the listener's server group " + nameOf(s, l.ServerGroupID)})
	case act.FixedResponse != nil:
		d = append(d, [2]string{"Action", fmt.Sprintf("rule %s (priority %d) answers %s at the load balancer", act.Rule, act.Priority, fixedText(act.FixedResponse))})
	default:
		targets := make([]string, len(act.Groups))
		for i, g := range act.Groups {
			targets[i] = fmt.Sprintf("%s (weight %d)", g.Name, g.Weight)
		}
		d = append(d, [2]string{"Action", fmt.Sprintf("rule %s (priority %d) forwards to %s", act.Rule, act.Priority, strings.Join(targets, ", "))})
	}
	for _, g := range act.Groups {
		d = append(d, [2]string{"Server group", fmt.Sprintf("%s: %s, %s", g.Name, g.Protocol, g.Scheduler)})
		for _, srv := range g.Servers {
			line := fmt.Sprintf("%s weight %d", srv.Addr, srv.Weight)
			if srv.Health != "" {
				line += " " + srv.Health
			}
			d = append(d, [2]string{"", line})
		}
		likely := "none: " + g.Why
		if g.LikelyServer != "" {
			likely = g.LikelyServer + ": " + g.Why
		}
		d = append(d, [2]string{"Likely server", likely})
	}
	if e.Health != "" {
		d = append(d, [2]string{"Health", e.Health})
	}
	return d
}

func fixedText(f *state.FixedResponse) string {
	if f.GRPCStatus != nil {
		text := "grpc-status " + health.CodeText(*f.GRPCStatus)
		if f.Message != "" {
			text += fmt.Sprintf(" %q", f.Message)
		}
		return text
	}
	return fmt.Sprintf("HTTP %d (%s)", f.HTTPCode, f.ContentType)
}
