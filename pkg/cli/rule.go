package cli

import (
	"fmt"
	"strings"

	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newRuleCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rule",
		Short: "Manage forwarding rules: send a listener's calls by host, path, gRPC method, header and more",
		Long: `A forwarding rule sends the calls of a listener that meet its conditions somewhere other than
the listener's own server group: to server groups by weight, or to a fixed answer. A listener
tries its rules by ascending priority and the first that matches wins; a call no rule matches
goes to the listener's server group.`,
		Example: `  albctl rule create --listener lsn-0123456789abcdef --priority 10 --match grpc-service=pkg.Billing --forward billing
  albctl rule list --listener lsn-0123456789abcdef`,
	}
	// get and delete print the rule with the names of its server groups, from the state they
	// found it in.
	var found *state.State
	keep := func(lookup func(*state.State, string) (*state.Rule, error)) func(*state.State, string) (*state.Rule, error) {
		return func(s *state.State, ref string) (*state.Rule, error) {
			found = s
			return lookup(s, ref)
		}
	}
	printFound := func(r state.Rule) error { return a.printRule(found, r) }
	cmd.AddCommand(newRuleCreateCmd(a), newRuleListCmd(a), newRuleUpdateCmd(a), newRuleExplainCmd(a),
		newGetCmd(a, "RULE", "Show a rule, by ID or name", "  albctl rule get canary-split\n  albctl rule get canary-split -o json",
			ruleRefs, keep((*state.State).Rule), printFound),
		newDeleteCmd(a, "RULE", "Delete a rule", "  albctl rule delete canary-split",
			ruleRefs, keep((*state.State).DeleteRule), printFound))
	return cmd
}

// ruleFlags are the settings of a rule that create and update share.
type ruleFlags struct {
	listener, name, forward, fixedResponse, trafficLimit string
	priority                                             int
	match, insertHeaders, removeHeaders                  []string
	clearHeaders, clearTrafficLimit                      bool
}

func (rf *ruleFlags) register(a *app, cmd *cobra.Command, forCreate bool) {
	fs := cmd.Flags()
	repeatable := func(list string) string {
		if forCreate {
			return " (repeatable)"
		}
		return " (repeatable; replaces the rule's " + list + ")"
	}
	fs.StringVar(&rf.name, "name", "", "name (2-128 letters, digits, '.', '_', '-'; starts with a letter)")
	fs.IntVar(&rf.priority, "priority", 0, "1-10000, one per rule of a listener: rules are tried from the lowest")
	fs.StringArrayVar(&rf.match, "match", nil, "condition TYPE[:KEY]=VALUE[,VALUE...]: a call meets it if any value matches, and the rule if it meets every --match"+repeatable("conditions"))
	fs.StringVar(&rf.forward, "forward", "", "forward to server groups: SG, or SG=WEIGHT,SG=WEIGHT... (up to 5, weights 0-100)")
	fs.StringVar(&rf.fixedResponse, "fixed-response", "", "answer at the load balancer: grpc-status=CODE[,message=TEXT] on a gRPC listener, code=NNN[,content-type=TYPE][,body=TEXT] on an HTTP one")
	fs.StringArrayVar(&rf.insertHeaders, "insert-header", nil, "add a request header KEY=VALUE to forwarded calls"+repeatable("inserted headers"))
	fs.StringArrayVar(&rf.removeHeaders, "remove-header", nil, "remove a request header from forwarded calls"+repeatable("removed headers"))
	fs.StringVar(&rf.trafficLimit, "traffic-limit", "", "admit at most qps=N calls per second (1-1000000), and per-ip=M from each client IP (less than N)")
	if forCreate {
		fs.StringVar(&rf.listener, "listener", "", "listener the rule belongs to, by ID")
		_ = cmd.RegisterFlagCompletionFunc("listener", a.refCompletion(listenerRefs))
	} else {
		fs.BoolVar(&rf.clearHeaders, "clear-headers", false, "drop the headers the rule inserts and removes")
		fs.BoolVar(&rf.clearTrafficLimit, "clear-traffic-limit", false, "drop the rule's traffic limit")
	}
	_ = cmd.RegisterFlagCompletionFunc("match", matchCompletion)
	_ = cmd.RegisterFlagCompletionFunc("forward", a.refCompletion(sgNames))
}

// parse reads the flags into a rule, so that every mistake in them is found before the state
// file is touched.
func (rf *ruleFlags) parse(fs *pflag.FlagSet) (state.Rule, error) {
	r := state.Rule{ListenerID: rf.listener, Name: rf.name, Priority: rf.priority}
	if fs.Changed("forward") && fs.Changed("fixed-response") {
		return r, usageErrorf("give --forward or --fixed-response, not both: a rule either forwards or answers itself")
	}
	if rf.clearTrafficLimit && fs.Changed("traffic-limit") {
		return r, usageErrorf("give --traffic-limit or --clear-traffic-limit, not both")
	}
	for _, text := range rf.match {
		c, err := state.ParseMatch(text)
		if err != nil {
			return r, usageErrorf("invalid value %q for --match: %v", text, err)
		}
		r.Conditions = append(r.Conditions, c)
	}
	if fs.Changed("forward") {
		targets, err := state.ParseForward(rf.forward)
		if err != nil {
			return r, usageErrorf("invalid value %q for --forward: %v", rf.forward, err)
		}
		r.Forward = targets
	}
	if fs.Changed("fixed-response") {
		f, err := state.ParseFixedResponse(rf.fixedResponse)
		if err != nil {
			return r, usageErrorf("invalid value %q for --fixed-response: %v", rf.fixedResponse, err)
		}
		r.FixedResponse = &f
	}
	for _, text := range rf.insertHeaders {
		h, err := state.ParseInsertHeader(text)
		if err != nil {
			return r, usageErrorf("invalid value %q for --insert-header: %v", text, err)
		}
		r.InsertHeaders = append(r.InsertHeaders, h)
	}
	for _, key := range rf.removeHeaders {
		r.RemoveHeaders = append(r.RemoveHeaders, strings.ToLower(strings.TrimSpace(key)))
	}
	if fs.Changed("traffic-limit") {
		tl, err := state.ParseTrafficLimit(rf.trafficLimit)
		if err != nil {
			return r, usageErrorf("invalid value %q for --traffic-limit: %v", rf.trafficLimit, err)
		}
		r.TrafficLimit = &tl
	}
	return r, nil
}

// apply writes the settings the user gave onto r. A new final action replaces the old one.
func (rf *ruleFlags) apply(fs *pflag.FlagSet, from state.Rule, r *state.Rule) {
	setIfChanged(fs, "name", &r.Name, from.Name)
	setIfChanged(fs, "priority", &r.Priority, from.Priority)
	setIfChanged(fs, "match", &r.Conditions, from.Conditions)
	if fs.Changed("forward") {
		r.Forward, r.FixedResponse = from.Forward, nil
	}
	if fs.Changed("fixed-response") {
		r.Forward, r.FixedResponse = nil, from.FixedResponse
	}
	if rf.clearHeaders {
		r.InsertHeaders, r.RemoveHeaders = nil, nil
	}
	setIfChanged(fs, "insert-header", &r.InsertHeaders, from.InsertHeaders)
	setIfChanged(fs, "remove-header", &r.RemoveHeaders, from.RemoveHeaders)
	if rf.clearTrafficLimit {
		r.TrafficLimit = nil
	}
	setIfChanged(fs, "traffic-limit", &r.TrafficLimit, from.TrafficLimit)
}

func newRuleCreateCmd(a *app) *cobra.Command {
	var rf ruleFlags
	cmd := &cobra.Command{
		Use:   "create --listener LISTENER --priority N --match TYPE[:KEY]=VALUE[,VALUE...] [--match ...] (--forward SG[=WEIGHT][,SG=WEIGHT...] | --fixed-response SPEC) [flags]",
		Short: "Create a forwarding rule on a listener",
		Long: `Creates a rule on a listener. The listener tries its rules by ascending --priority (1-10000,
one rule per priority) and the first whose conditions all match wins; a call that no rule
matches goes to the listener's own server group.

Each --match is one condition, TYPE[:KEY]=VALUE[,VALUE...]; a call meets it if any of its
values matches, and the rule matches if the call meets every condition (up to 10, with up to
20 values each). The types:

    host=NAME             the host the client asked for (:authority), such as *.example.test
    path=PATH             the request path, such as /pkg.Billing/*
    header:KEY=VALUE      a request header (gRPC metadata), such as header:x-canary=1
    method=METHOD         the HTTP method: GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS
    query:KEY=VALUE       a query parameter
    cookie:KEY=VALUE      a cookie
    source-ip=CIDR        the client's address: an IP or a range (up to 5)
    grpc-service=SERVICE  a gRPC service's calls: grpc-service=pkg.Billing is path=/pkg.Billing/*
    grpc-method=METHOD    one method, pkg.Billing/Charge, or */Charge in any service

In values, * matches any run of characters and ? matches one.

The rule then forwards the call (--forward) to up to 5 server groups, each taking a share of
the calls by its weight (0-100), or answers it at the load balancer (--fixed-response): with a
gRPC status on a listener that carries gRPC, with an HTTP status on an HTTP one. Before
forwarding it may insert and remove request headers and admit only so many calls per second
(--traffic-limit); a rule has at most 5 actions, counting the forward or fixed response, each
header and the traffic limit.`,
		Example: `  # Send a gRPC service's calls to its own server group
  albctl rule create --listener lsn-0123456789abcdef --priority 10 --name billing --match grpc-service=pkg.Billing --forward billing

  # A canary: 90% of the Orders calls to stable, 10% to canary
  albctl rule create --listener lsn-0123456789abcdef --priority 20 --name canary-split --match grpc-service=pkg.Orders --forward stable=90,canary=10

  # Calls with the header x-canary: 1 always reach the canary (priority 15 is tried before 20)
  albctl rule create --listener lsn-0123456789abcdef --priority 15 --name canary-pin --match grpc-service=pkg.Orders --match header:x-canary=1 --forward canary

  # Answer a retired method at the load balancer
  albctl rule create --listener lsn-0123456789abcdef --priority 5 --match grpc-method=pkg.Orders/ListV1 --fixed-response 'grpc-status=UNIMPLEMENTED,message=use pkg.Orders/List'

  # Admit at most 500 calls per second to Export in any service, 20 from each client
  albctl rule create --listener lsn-0123456789abcdef --priority 30 --match 'grpc-method=*/Export' --forward export --traffic-limit qps=500,per-ip=20`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("forward") && !cmd.Flags().Changed("fixed-response") {
				return usageErrorf("give --forward or --fixed-response: what the rule does with the calls it matches")
			}
			r, err := rf.parse(cmd.Flags())
			if err != nil {
				return err
			}
			var created *state.Rule
			s, err := a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				created, err = s.CreateRule(r)
				return err
			})
			if err != nil {
				return err
			}
			return a.printRule(s, *created)
		},
	}
	rf.register(a, cmd, true)
	for _, f := range []string{"listener", "priority", "match"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newRuleUpdateCmd(a *app) *cobra.Command {
	var rf ruleFlags
	cmd := &cobra.Command{
		Use:   "update RULE [flags]",
		Short: "Change a rule's settings",
		Long: `Changes only what the flags given set. --match replaces all the rule's conditions,
--forward or --fixed-response its final action, and --insert-header and --remove-header those
lists; --clear-headers and --clear-traffic-limit drop them. A rule stays on its listener: to
move one, create it on the other listener and delete it here.`,
		Example: `  albctl rule update canary-split --forward stable=50,canary=50
  albctl rule update canary-pin --match grpc-service=pkg.Orders --match header:x-canary=1,true
  albctl rule update billing --insert-header x-route=billing --traffic-limit qps=1000
  albctl rule update billing --clear-headers --clear-traffic-limit`,
		Args:              needArgs("RULE"),
		ValidArgsFunction: argCompletion(a.refCompletion(ruleRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !anyLocalFlag(cmd) {
				return usageErrorf("nothing to change: give at least one setting, such as --forward or --match")
			}
			from, err := rf.parse(cmd.Flags())
			if err != nil {
				return err
			}
			var updated *state.Rule
			s, err := a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				updated, err = s.UpdateRule(args[0], func(r *state.Rule) error {
					rf.apply(cmd.Flags(), from, r)
					return nil
				})
				return err
			})
			if err != nil {
				return err
			}
			return a.printRule(s, *updated)
		},
	}
	rf.register(a, cmd, false)
	return cmd
}

func newRuleListCmd(a *app) *cobra.Command {
	var listenerRef string
	cmd := &cobra.Command{
		Use:     "list [--listener LISTENER]",
		Aliases: []string{"ls"},
		Short:   "List rules, each listener's in the order it tries them",
		Example: "  albctl rule list\n  albctl rule list --listener lsn-0123456789abcdef -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			listeners := s.Listeners
			if listenerRef != "" {
				l, err := s.Listener(listenerRef)
				if err != nil {
					return err
				}
				listeners = []state.Listener{*l}
			}
			rules := []state.Rule{}
			for _, l := range listeners {
				rules = append(rules, s.ListenerRules(l.ID)...)
			}
			return a.print(rules, func() view {
				t := table{header: []string{"ID", "NAME", "LISTENER", "PRIORITY", "MATCH", "ACTION"}}
				for _, r := range rules {
					t.rows = append(t.rows, []string{r.ID, orDash(r.Name), r.ListenerID, itoa(r.Priority), matchSummary(r), ruleAction(s, r)})
				}
				return t
			})
		},
	}
	cmd.Flags().StringVar(&listenerRef, "listener", "", "only the rules of this listener, by ID")
	_ = cmd.RegisterFlagCompletionFunc("listener", a.refCompletion(listenerRefs))
	return cmd
}

func matchSummary(r state.Rule) string {
	conds := make([]string, len(r.Conditions))
	for i, c := range r.Conditions {
		conds[i] = state.FormatMatch(c)
	}
	return strings.Join(conds, " AND ")
}

// ruleAction is the rule's final action, with the names of the groups it forwards to.
func ruleAction(s *state.State, r state.Rule) string {
	if f := r.FixedResponse; f != nil {
		if f.GRPCStatus != nil {
			return fmt.Sprintf("grpc-status %d %s", *f.GRPCStatus, state.GRPCCodeName(*f.GRPCStatus))
		}
		return "http " + itoa(f.HTTPCode)
	}
	targets := make([]string, len(r.Forward))
	for i, t := range r.Forward {
		targets[i] = nameOf(s, t.ServerGroupID)
		if len(r.Forward) > 1 {
			targets[i] += "=" + itoa(t.Weight)
		}
	}
	return "forward " + strings.Join(targets, ",")
}

func (a *app) printRule(s *state.State, r state.Rule) error {
	return a.print(r, func() view {
		d := details{{"ID", r.ID}, {"Name", orDash(r.Name)}, {"Listener", r.ListenerID}, {"Priority", itoa(r.Priority)}}
		for i, c := range r.Conditions {
			label := ""
			if i == 0 {
				label = "Match"
			}
			d = append(d, [2]string{label, state.FormatMatch(c)})
		}
		d = append(d, [2]string{"Action", ruleAction(s, r)})
		if f := r.FixedResponse; f != nil && f.GRPCStatus != nil {
			d = append(d, [2]string{"Message", quoteOrDash(f.Message)})
		} else if f != nil {
			d = append(d, [2]string{"Content type", f.ContentType}, [2]string{"Body", quoteOrDash(f.Body)})
		}
		inserted := make([]string, len(r.InsertHeaders))
		for i, h := range r.InsertHeaders {
			inserted[i] = h.Key + "=" + h.Value
		}
		limit := "-"
		if tl := r.TrafficLimit; tl != nil {
			limit = "qps=" + itoa(tl.QPS)
			if tl.PerIPQPS != 0 {
				limit += ",per-ip=" + itoa(tl.PerIPQPS)
			}
		}
		return append(d, [2]string{"Insert headers", orDash(strings.Join(inserted, ", "))},
			[2]string{"Remove headers", orDash(strings.Join(r.RemoveHeaders, ", "))}, [2]string{"Traffic limit", limit})
	})
}

// quoteOrDash quotes a message or body, which may hold spaces, tabs and newlines.
func quoteOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return fmt.Sprintf("%q", s)
}

func ruleRefs(s *state.State) [][2]string {
	var out [][2]string
	for _, r := range s.Rules {
		out = append(out, [2]string{r.ID, "priority " + itoa(r.Priority) + " on " + r.ListenerID})
		if r.Name != "" {
			out = append(out, [2]string{r.Name, r.ID})
		}
	}
	return out
}

// sgNames completes --forward with the server groups' names and protocols: a rule forwards
// only to groups of its listener's protocol.
func sgNames(s *state.State) [][2]string {
	var out [][2]string
	for _, sg := range s.ServerGroups {
		out = append(out, [2]string{sg.Name, sg.Protocol})
	}
	return out
}

// matchCompletion offers the condition types, ready for their key or value.
func matchCompletion(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	out := make([]string, len(state.MatchTypes))
	for i, t := range state.MatchTypes {
		if typ, hasKey := strings.CutSuffix(t, ":KEY"); hasKey {
			out[i] = typ + ":"
		} else {
			out[i] = t + "="
		}
	}
	return out, cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
}
