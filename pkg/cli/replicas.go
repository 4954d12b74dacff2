package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/albctl/albctl/pkg/etcdstore"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/spf13/cobra"
)

func newLBReplicasCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "replicas [LB]",
		Short: "List the albctl serve replicas of an etcd state that are alive (those serving LB)",
		Long: `Every 'albctl serve' on an etcd state records itself there under a lease of 10 s: its admin API,
the addresses it serves, its version and the state revision it has applied. A replica that
stops removes its record; one that dies drops out when its lease ends. A state file has no
replicas: one serve runs for it.`,
		Example: "  albctl --state etcd://127.0.0.1:2379/albctl/prod lb replicas\n  albctl lb replicas demo -o json",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("%s takes at most one load balancer, got %q", cmd.CommandPath(), strings.Join(args, " "))
			}
			return nil
		},
		ValidArgsFunction: argCompletion(a.refCompletion(lbRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !etcdstore.IsLocation(a.statePath) {
				return usageErrorf("replicas are recorded in an etcd state (--state etcd://HOST:PORT/PREFIX); %s is a state file, which one serve runs for", a.statePath)
			}
			st, ok := a.store().(*etcdstore.Store)
			if !ok {
				_, err := a.store().Load(cmd.Context()) // says why the store could not be opened
				return err
			}
			replicas, err := serve.Replicas(cmd.Context(), st)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				s, err := st.Load(cmd.Context())
				if err != nil {
					return err
				}
				lb, err := s.LoadBalancer(args[0])
				if err != nil {
					return err
				}
				replicas = slices.DeleteFunc(replicas, func(r serve.Replica) bool { return r.LB != "" && r.LB != lb.ID })
			}
			return a.print(replicas, func() view {
				t := table{header: []string{"ID", "ADMIN", "LISTENERS", "REVISION", "AGE", "VERSION"}}
				for _, r := range replicas {
					age := a.now().Sub(r.Since).Round(time.Second)
					t.rows = append(t.rows, []string{r.ID, r.Admin, orDash(strings.Join(r.Listeners, ",")),
						strconv.FormatInt(r.AppliedRevision, 10), fmt.Sprint(age), r.Version})
				}
				return t
			})
		},
	}
}
