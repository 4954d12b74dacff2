package cli

import (
	"strconv"
	"time"

	"github.com/albctl/albctl/pkg/serve"
	"github.com/spf13/cobra"
)

func newSGHealthCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "health SERVERGROUP",
		Short: "Show each server's health as the running serve sees it",
		Long: `health asks the running 'albctl serve' (found through the address it records beside the
state file, or --admin) for the state of each server of the group: healthy, unhealthy, initial
(not yet decided) or unchecked (checks off, or weight 0), the reason of the last check, when it
ran and how long it took, and how many checks in a row passed or failed. When every server is
unhealthy the group fails open, routing by its scheduler anyway, and says so.`,
		Example: `  albctl servergroup health grpc-backends
  albctl servergroup health grpc-backends -o json
  albctl servergroup health grpc-backends --admin 127.0.0.1:9901`,
		Args:              needArgs("SERVERGROUP"),
		ValidArgsFunction: argCompletion(a.refCompletion(sgRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			sg, err := s.ServerGroup(args[0])
			if err != nil {
				return err
			}
			addr, err := serve.Discover(a.store(), a.admin)
			if err != nil {
				return err
			}
			gs, err := serve.GroupHealth(addr, sg)
			if err != nil {
				return err
			}
			return a.print(gs, func() view {
				d := details{{"Server group", gs.Name + " (" + gs.ID + ")"}, {"Health check", healthSummary(sg.HealthCheck)}}
				if gs.Message != "" {
					d = append(d, [2]string{"Status", gs.Message})
				}
				t := table{header: []string{"ADDRESS", "WEIGHT", "STATE", "REASON", "LAST CHECK", "LATENCY", "PASSED", "FAILED"}}
				for _, srv := range gs.Servers {
					last, latency := "-", "-"
					if !srv.LastCheck.IsZero() {
						last = a.now().Sub(srv.LastCheck).Round(100*time.Millisecond).String() + " ago"
						latency = srv.Latency.D().Round(10 * time.Microsecond).String()
					}
					t.rows = append(t.rows, []string{srv.Addr, strconv.Itoa(srv.Weight), srv.State, srv.Reason, last, latency,
						strconv.Itoa(srv.ConsecutiveSuccesses), strconv.Itoa(srv.ConsecutiveFailures)})
				}
				return views{d, t}
			})
		},
	}
}
