package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newServerGroupCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "servergroup",
		Aliases: []string{"sg", "server-group"},
		Short:   "Manage server groups: backends, weights, scheduler and health checks",
		Long: `A server group is a set of backend servers (HOST:PORT with a weight 0-100) that listeners
forward to, a scheduler that picks a server for each call (wrr, wlc, sch, uch), and an active health
check. For gRPC groups the default check is the cloud's: a POST to a method that no service
implements (` + state.DefaultGRPCHealthPath + `), healthy when the server answers with
status 12 (UNIMPLEMENTED), which any live gRPC server does.`,
	}
	cmd.AddCommand(
		newSGCreateCmd(a), newSGListCmd(a), newSGUpdateCmd(a), newSGHealthCmd(a),
		newGetCmd(a, "SERVERGROUP", "Show a server group, by ID or name",
			"  albctl servergroup get grpc-backends\n  albctl servergroup get grpc-backends -o json",
			sgRefs, (*state.State).ServerGroup, a.printSG),
		newDeleteCmd(a, "SERVERGROUP", "Delete a server group that no listener uses", "  albctl servergroup delete grpc-backends",
			sgRefs, (*state.State).DeleteServerGroup, a.printSG),
		newSGServersCmd(a, "add-servers", "Add servers to a server group",
			"  albctl servergroup add-servers grpc-backends --server 127.0.0.1:50051 --server 127.0.0.1:50052,weight=50\n"+
				"  albctl servergroup add-servers grpc-backends --server '[::1]:50053,weight=0,description=standby'",
			"server to add, HOST:PORT[,weight=N][,description=TEXT] (repeatable; weight 0-100, default 100)",
			func(s *state.State, ref string, specs []state.ServerSpec) (*state.ServerGroup, error) {
				return s.AddServers(ref, serversOf(specs))
			}),
		newSGServersCmd(a, "remove-servers", "Remove servers from a server group",
			"  albctl servergroup remove-servers grpc-backends --server 127.0.0.1:50052",
			"server to remove, HOST:PORT (repeatable)",
			func(s *state.State, ref string, specs []state.ServerSpec) (*state.ServerGroup, error) {
				return s.RemoveServers(ref, serversOf(specs))
			}),
		newSGServersCmd(a, "update-servers", "Change the weight or description of servers in a server group",
			"  albctl servergroup update-servers grpc-backends --server 127.0.0.1:50052,weight=0",
			"server to change, HOST:PORT,weight=N[,description=TEXT] (repeatable)",
			func(s *state.State, ref string, specs []state.ServerSpec) (*state.ServerGroup, error) {
				return s.UpdateServers(ref, specs)
			}),
	)
	return cmd
}

// groupFlags are the settings of a server group that create and update share.
type groupFlags struct {
	name, protocol, scheduler, uchKey string
	drainTimeout, slowStart           state.Duration
	health                            healthFlags
}

type healthFlags struct {
	enabled                              bool
	protocol, method, path, codes, svc   string
	interval, timeout                    state.Duration
	healthyThreshold, unhealthyThreshold int
	port                                 int
}

func (g *groupFlags) register(fs *pflag.FlagSet, forCreate bool) {
	defaults := state.NewServerGroup("", state.ProtocolHTTP)
	fs.StringVar(&g.name, "name", "", "name (2-128 letters, digits, '.', '_', '-'; starts with a letter)")
	protocolHelp := "backend protocol: gRPC, HTTP or HTTPS"
	if !forCreate {
		protocolHelp += " (the health check follows unless --health-check-protocol is given)"
	}
	fs.StringVar(&g.protocol, "protocol", state.ProtocolHTTP, protocolHelp)
	fs.StringVar(&g.scheduler, "scheduler", state.SchedulerWRR, "wrr (weighted round robin), wlc (weighted least calls), sch (hash of the client's IP) or uch (consistent hash of a request value: --uch-key)")
	fs.StringVar(&g.uchKey, "uch-key", "", "what uch hashes: query:KEY (a query parameter) or header:KEY (a header, such as gRPC metadata)")
	g.drainTimeout = defaults.DrainTimeout
	fs.Var(durationValue{&g.drainTimeout}, "drain-timeout", "how long a removed server may finish its calls (0-900s)")
	g.slowStart = defaults.SlowStart
	fs.Var(durationValue{&g.slowStart}, "slow-start", "ramp a server that joins the group or comes back healthy up to its weight over this long: 0 (off) or 30-900s; wrr and wlc only")
	h := &g.health
	hc := state.DefaultHealthCheck(state.ProtocolGRPC)
	fs.BoolVar(&h.enabled, "health-check", true, "turn active health checks on or off")
	fs.StringVar(&h.protocol, "health-check-protocol", "", "gRPC, grpc-health (grpc.health.v1 Check, wants SERVING) or TCP for gRPC groups; HTTP or TCP for HTTP(S) groups (default: the group's protocol)")
	fs.StringVar(&h.method, "health-check-method", "", "POST for gRPC; GET, POST or HEAD for HTTP (default POST for gRPC, HEAD for HTTP)")
	fs.StringVar(&h.path, "health-check-path", "", "path to check, 1-80 characters starting with / (default "+state.DefaultGRPCHealthPath+" for gRPC, / for HTTP)")
	fs.StringVar(&h.codes, "health-check-codes", "", "healthy statuses: gRPC codes 0-99 as lists and ranges (12, 0,12, 0-5,12), or HTTP classes (http_2xx,http_3xx) (default 12 for gRPC, http_2xx,http_3xx for HTTP)")
	fs.StringVar(&h.svc, "health-check-service", "", "service name for grpc-health checks (empty: the whole server)")
	h.interval, h.timeout = hc.Interval, hc.Timeout
	fs.Var(durationValue{&h.interval}, "health-check-interval", "time between checks, 1-50s (5 means 5s)")
	fs.Var(durationValue{&h.timeout}, "health-check-timeout", "time a check may take, 1-300s (5 means 5s)")
	fs.IntVar(&h.healthyThreshold, "healthy-threshold", hc.HealthyThreshold, "successes in a row that make a server healthy, 2-10")
	fs.IntVar(&h.unhealthyThreshold, "unhealthy-threshold", hc.UnhealthyThreshold, "failures in a row that make a server unhealthy, 2-10")
	fs.IntVar(&h.port, "health-check-port", 0, "port to check, 0-65535 (0: the server's own port)")
}

// apply writes the flags the user set onto sg. A changed group protocol resets the health check
// to that protocol's defaults unless the health-check protocol is given too.
func (g *groupFlags) apply(fs *pflag.FlagSet, sg *state.ServerGroup) error {
	if fs.Changed("name") {
		sg.Name = g.name
	}
	if fs.Changed("protocol") {
		p, err := canonical("--protocol", g.protocol, state.ProtocolGRPC, state.ProtocolHTTP, state.ProtocolHTTPS)
		if err != nil {
			return err
		}
		if p != sg.Protocol && !fs.Changed("health-check-protocol") {
			sg.HealthCheck.SetProtocolDefaults(p)
		}
		sg.Protocol = p
	}
	if fs.Changed("scheduler") {
		s, err := canonical("--scheduler", g.scheduler, state.Schedulers...)
		if err != nil {
			return err
		}
		sg.Scheduler = s
		if s != state.SchedulerUCH {
			sg.UCHConfig = nil
		}
	}
	if fs.Changed("uch-key") {
		key, err := state.ParseUCHKey(g.uchKey)
		if err != nil {
			return usageErrorf("invalid value %q for --uch-key: %v", g.uchKey, err)
		}
		sg.UCHConfig = &key
	}
	setIfChanged(fs, "drain-timeout", &sg.DrainTimeout, g.drainTimeout)
	setIfChanged(fs, "slow-start", &sg.SlowStart, g.slowStart)
	h, hc := &g.health, &sg.HealthCheck
	if fs.Changed("health-check") {
		hc.Enabled = h.enabled
	}
	if fs.Changed("health-check-protocol") {
		p, err := canonical("--health-check-protocol", h.protocol, state.ProtocolGRPC, state.HealthGRPCHealth, state.ProtocolHTTP, state.ProtocolTCP)
		if err != nil {
			return err
		}
		if p != hc.Protocol {
			hc.SetProtocolDefaults(p)
		}
	}
	if fs.Changed("health-check-method") {
		hc.Method = strings.ToUpper(h.method)
	}
	setIfChanged(fs, "health-check-path", &hc.Path, h.path)
	setIfChanged(fs, "health-check-codes", &hc.Codes, h.codes)
	setIfChanged(fs, "health-check-service", &hc.Service, h.svc)
	setIfChanged(fs, "health-check-interval", &hc.Interval, h.interval)
	setIfChanged(fs, "health-check-timeout", &hc.Timeout, h.timeout)
	setIfChanged(fs, "healthy-threshold", &hc.HealthyThreshold, h.healthyThreshold)
	setIfChanged(fs, "unhealthy-threshold", &hc.UnhealthyThreshold, h.unhealthyThreshold)
	setIfChanged(fs, "health-check-port", &hc.Port, h.port)
	return nil
}

func setIfChanged[T any](fs *pflag.FlagSet, name string, field *T, value T) {
	if fs.Changed(name) {
		*field = value
	}
}

// canonical returns the allowed spelling of value, matched without regard to case.
func canonical(flag, value string, allowed ...string) (string, error) {
	for _, a := range allowed {
		if strings.EqualFold(a, value) {
			return a, nil
		}
	}
	return "", usageErrorf("invalid value %q for %s: must be %s", value, flag, strings.Join(allowed, ", "))
}

func registerGroupCompletions(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("protocol", fixedCompletion(state.ProtocolGRPC, state.ProtocolHTTP, state.ProtocolHTTPS))
	_ = cmd.RegisterFlagCompletionFunc("scheduler", fixedCompletion(state.Schedulers...))
	_ = cmd.RegisterFlagCompletionFunc("health-check-protocol", fixedCompletion(state.ProtocolGRPC, state.HealthGRPCHealth, state.ProtocolHTTP, state.ProtocolTCP))
	_ = cmd.RegisterFlagCompletionFunc("health-check-method", fixedCompletion("POST", "GET", "HEAD"))
}

func newSGCreateCmd(a *app) *cobra.Command {
	var g groupFlags
	cmd := &cobra.Command{
		Use:   "create --name NAME --protocol gRPC|HTTP|HTTPS [flags]",
		Short: "Create a server group",
		Example: `  albctl servergroup create --name grpc-backends --protocol gRPC --health-check-codes 12
  albctl servergroup create --name strict --protocol gRPC --health-check-protocol grpc-health --health-check-interval 1 --healthy-threshold 2
  albctl servergroup create --name web --protocol HTTP --scheduler wlc --health-check-path /healthz
  albctl servergroup create --name sessions --protocol gRPC --scheduler uch --uch-key header:x-user-id`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			protocol, err := canonical("--protocol", g.protocol, state.ProtocolGRPC, state.ProtocolHTTP, state.ProtocolHTTPS)
			if err != nil {
				return err
			}
			sg := state.NewServerGroup(g.name, protocol)
			if err := g.apply(cmd.Flags(), &sg); err != nil {
				return err
			}
			var created *state.ServerGroup
			_, err = a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				created, err = s.CreateServerGroup(sg)
				return err
			})
			if err != nil {
				return err
			}
			return a.printSG(*created)
		},
	}
	g.register(cmd.Flags(), true)
	_ = cmd.MarkFlagRequired("name")
	registerGroupCompletions(cmd)
	return cmd
}

func newSGUpdateCmd(a *app) *cobra.Command {
	var g groupFlags
	cmd := &cobra.Command{
		Use:   "update SERVERGROUP [flags]",
		Short: "Change a server group's settings",
		Example: `  albctl servergroup update grpc-backends --health-check-codes 0,12 --health-check-interval 1
  albctl servergroup update grpc-backends --scheduler wlc
  albctl servergroup update grpc-backends --scheduler uch --uch-key header:x-user-id
  albctl servergroup update grpc-backends --slow-start 60s
  albctl servergroup update grpc-backends --health-check-protocol grpc-health --health-check-service albctl.echo.v1.Echo`,
		Args:              needArgs("SERVERGROUP"),
		ValidArgsFunction: argCompletion(a.refCompletion(sgRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !anyLocalFlag(cmd) {
				return usageErrorf("nothing to change: give at least one setting, such as --scheduler or --health-check-codes")
			}
			var updated *state.ServerGroup
			_, err := a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				updated, err = s.UpdateServerGroup(args[0], func(sg *state.ServerGroup) error {
					return g.apply(cmd.Flags(), sg)
				})
				return err
			})
			if err != nil {
				return err
			}
			return a.printSG(*updated)
		},
	}
	g.register(cmd.Flags(), false)
	registerGroupCompletions(cmd)
	return cmd
}

// anyLocalFlag reports whether the user gave one of the command's own flags, not only global
// settings such as --state or --admin.
func anyLocalFlag(cmd *cobra.Command) bool {
	given := false
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) { given = given || f.Changed })
	return given
}

func newSGListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List server groups",
		Example: "  albctl servergroup list\n  albctl servergroup list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(s.ServerGroups, func() view {
				t := table{header: []string{"ID", "NAME", "PROTOCOL", "SCHEDULER", "SLOW START", "SERVERS", "HEALTH CHECK"}}
				for _, sg := range s.ServerGroups {
					t.rows = append(t.rows, []string{sg.ID, sg.Name, sg.Protocol, schedulerSummary(sg), slowStartSummary(sg.SlowStart), strconv.Itoa(len(sg.Servers)), healthSummary(sg.HealthCheck)})
				}
				return t
			})
		},
	}
}

// newSGServersCmd builds add-servers, remove-servers and update-servers, which differ only in
// what they do with the --server values.
func newSGServersCmd(a *app, use, short, example, serverHelp string,
	change func(s *state.State, ref string, specs []state.ServerSpec) (*state.ServerGroup, error)) *cobra.Command {
	var servers []string
	cmd := &cobra.Command{
		Use:               use + " SERVERGROUP --server HOST:PORT[,weight=N] [--server ...]",
		Short:             short,
		Example:           example,
		Args:              needArgs("SERVERGROUP"),
		ValidArgsFunction: argCompletion(a.refCompletion(sgRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(servers) == 0 {
				return usageErrorf("give at least one --server")
			}
			specs := make([]state.ServerSpec, len(servers))
			for i, text := range servers {
				spec, err := state.ParseServerSpec(text)
				if err != nil {
					return usageErrorf("invalid value %q for --server: %v", text, err)
				}
				specs[i] = spec
			}
			var updated *state.ServerGroup
			_, err := a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				updated, err = change(s, args[0], specs)
				return err
			})
			if err != nil {
				return err
			}
			return a.printSG(*updated)
		},
	}
	cmd.Flags().StringArrayVar(&servers, "server", nil, serverHelp)
	return cmd
}

func serversOf(specs []state.ServerSpec) []state.Server {
	servers := make([]state.Server, len(specs))
	for i, spec := range specs {
		servers[i] = spec.Server
	}
	return servers
}

func healthSummary(hc state.HealthCheck) string {
	if !hc.Enabled {
		return "off"
	}
	parts := []string{hc.Protocol}
	switch hc.Protocol {
	case state.ProtocolGRPC, state.ProtocolHTTP:
		parts = append(parts, hc.Method, hc.Path, "codes "+hc.Codes)
	case state.HealthGRPCHealth:
		if hc.Service != "" {
			parts = append(parts, "service "+hc.Service)
		}
	}
	if hc.Port != 0 {
		parts = append(parts, "port "+strconv.Itoa(hc.Port))
	}
	return strings.Join(parts, " ")
}

// schedulerSummary is the scheduler with the key that uch hashes, as --uch-key takes it.
func schedulerSummary(sg state.ServerGroup) string {
	if sg.UCHConfig == nil {
		return sg.Scheduler
	}
	return sg.Scheduler + " " + state.FormatUCHKey(sg.UCHConfig)
}

func slowStartSummary(d state.Duration) string {
	if d == 0 {
		return "off"
	}
	return d.String()
}

func (a *app) printSG(sg state.ServerGroup) error {
	return a.print(sg, func() view {
		hc := sg.HealthCheck
		d := details{
			{"ID", sg.ID}, {"Name", sg.Name}, {"Protocol", sg.Protocol}, {"Scheduler", schedulerSummary(sg)},
			{"Health check", healthSummary(hc)},
		}
		if hc.Enabled {
			d = append(d, [2]string{"", fmt.Sprintf("every %s, timeout %s, healthy after %d, unhealthy after %d",
				hc.Interval, hc.Timeout, hc.HealthyThreshold, hc.UnhealthyThreshold)})
		}
		d = append(d, [2]string{"Drain timeout", sg.DrainTimeout.String()}, [2]string{"Slow start", slowStartSummary(sg.SlowStart)},
			[2]string{"Servers", strconv.Itoa(len(sg.Servers))})
		if len(sg.Servers) == 0 {
			return d
		}
		servers := table{header: []string{"  ADDRESS", "PORT", "WEIGHT", "DESCRIPTION"}}
		for _, srv := range sg.Servers {
			servers.rows = append(servers.rows, []string{"  " + srv.Address, strconv.Itoa(srv.Port), strconv.Itoa(srv.Weight), srv.Description})
		}
		return views{d, servers}
	})
}

// durationValue is a flag holding a state.Duration; "5" means five seconds.
type durationValue struct{ d *state.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := state.ParseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func (v durationValue) Type() string { return "duration" }

func itoa(n int) string { return strconv.Itoa(n) }
