package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/albctl/albctl/pkg/etcdstore"
	"github.com/albctl/albctl/pkg/health"
	"github.com/albctl/albctl/pkg/state"

	"github.com/albctl/albctl/pkg/serve"
	"github.com/spf13/cobra"
)

func newSGHealthCmd(a *app) *cobra.Command {
	var allReplicas bool
	cmd := &cobra.Command{
		Use:   "health SERVERGROUP",
		Short: "Show each server's health as the running serve sees it",
		Long: `health asks the running 'albctl serve' (found through the address it records beside the
state file, or --admin) for the state of each server of the group: healthy, unhealthy, initial
(not yet decided) or unchecked (checks off, or weight 0), the reason of the last check, when it
ran and how long it took, and how many checks in a row passed or failed. When every server is
unhealthy the group fails open, routing by its scheduler anyway, and says so.

On an etcd state any live replica answers, and the output names it; --all-replicas asks every
one, since each checks the servers itself.`,
		Example: `  albctl servergroup health grpc-backends
  albctl servergroup health grpc-backends -o json
  albctl servergroup health grpc-backends --admin 127.0.0.1:9901
  albctl --state etcd://127.0.0.1:2379/albctl/prod servergroup health grpc-backends --all-replicas`,
		Args:              needArgs("SERVERGROUP"),
		ValidArgsFunction: argCompletion(a.refCompletion(sgRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, onEtcd := a.store().(*etcdstore.Store)
			if allReplicas && (!onEtcd || a.admin != "") {
				return usageErrorf("--all-replicas asks every replica of an etcd state (--state etcd://...), without --admin")
			}
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			sg, err := s.ServerGroup(args[0])
			if err != nil {
				return err
			}
			if allReplicas {
				return a.printReplicasHealth(cmd.Context(), st, sg)
			}
			answered, err := serve.Locate(a.store(), a.admin)
			if err != nil {
				return err
			}
			gs, err := serve.GroupHealth(answered.Admin, sg)
			if err != nil {
				return err
			}
			return a.print(gs, func() view {
				v := a.healthView(sg, gs)
				if answered.ID != "" {
					v = append(views{details{{"Answered by", "replica " + answered.ID + " (" + answered.Admin + ")"}}}, v...)
				}
				return v
			})
		},
	}
	cmd.Flags().BoolVar(&allReplicas, "all-replicas", false, "on an etcd state: ask every live replica, not one")
	return cmd
}

// replicaHealth is one replica's view of a group, for --all-replicas.
type replicaHealth struct {
	Replica string              `json:"replica"`
	Admin   string              `json:"admin"`
	Health  *health.GroupStatus `json:"health,omitempty"`
	Error   string              `json:"error,omitempty"`
}

func (a *app) printReplicasHealth(ctx context.Context, st *etcdstore.Store, sg *state.ServerGroup) error {
	replicas, err := serve.Replicas(ctx, st)
	if err != nil {
		return err
	}
	if len(replicas) == 0 {
		return fmt.Errorf("no live replica of %s ('albctl lb replicas' lists them): start one with 'albctl serve'", st.Location())
	}
	out := make([]replicaHealth, 0, len(replicas))
	for _, r := range replicas {
		rh := replicaHealth{Replica: r.ID, Admin: r.Admin}
		gs, err := serve.GroupHealth(r.Admin, sg)
		if err != nil {
			rh.Error = err.Error()
		} else {
			rh.Health = &gs
		}
		out = append(out, rh)
	}
	return a.print(out, func() view {
		var v views
		for _, rh := range out {
			v = append(v, details{{"Replica", rh.Replica + " (" + rh.Admin + ")"}})
			if rh.Health == nil {
				v = append(v, details{{"Error", rh.Error}})
				continue
			}
			v = append(v, a.healthView(sg, *rh.Health)...)
		}
		return v
	})
}

// healthView is a group's health as the table shows it.
func (a *app) healthView(sg *state.ServerGroup, gs health.GroupStatus) views {
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
}
