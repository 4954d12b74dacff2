package cli

import (
	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

func newLBCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "lb",
		Aliases: []string{"loadbalancer"},
		Short:   "Manage load balancer instances",
		Long: `A load balancer instance has an IP address to listen on and a generated domain name
(alb-<id>.` + state.LBDomainSuffix + `) that albctl's DNS resolves to that address.`,
	}
	cmd.AddCommand(newLBCreateCmd(a), newLBListCmd(a), newLBReplicasCmd(a), newGetCmd(a, "LB", "Show a load balancer, by ID or name", "  albctl lb get demo -o json",
		lbRefs, (*state.State).LoadBalancer, a.printLB),
		newDeleteCmd(a, "LB", "Delete a load balancer that has no listeners", "  albctl lb delete demo",
			lbRefs, (*state.State).DeleteLoadBalancer, a.printLB))
	return cmd
}

func newLBCreateCmd(a *app) *cobra.Command {
	lb := state.LoadBalancer{}
	cmd := &cobra.Command{
		Use:   "create --name NAME [--address IP]",
		Short: "Create a load balancer",
		Example: `  albctl lb create --name demo
  albctl lb create --name v6 --address ::1 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var created *state.LoadBalancer
			_, err := a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				created, err = s.CreateLoadBalancer(lb)
				return err
			})
			if err != nil {
				return err
			}
			return a.printLB(*created)
		},
	}
	cmd.Flags().StringVar(&lb.Name, "name", "", "name (2-128 letters, digits, '.', '_', '-'; starts with a letter)")
	cmd.Flags().StringVar(&lb.Address, "address", state.DefaultAddress, "IP address the listeners bind to")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newLBListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List load balancers",
		Example: "  albctl lb list\n  albctl lb list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(s.LoadBalancers, func() view {
				t := table{header: []string{"ID", "NAME", "ADDRESS", "DNS NAME"}}
				for _, lb := range s.LoadBalancers {
					t.rows = append(t.rows, []string{lb.ID, lb.Name, lb.Address, lb.DNSName})
				}
				return t
			})
		},
	}
}

func (a *app) printLB(lb state.LoadBalancer) error {
	return a.print(lb, func() view {
		return details{{"ID", lb.ID}, {"Name", lb.Name}, {"Address", lb.Address}, {"DNS name", lb.DNSName}}
	})
}
