package cli

import (
	"context"

	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

type completionFunc = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective)

func fixedCompletion(values ...string) completionFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// refCompletion completes the IDs and names of one kind of resource from the state file, each
// with a short description the shell can show.
func (a *app) refCompletion(refs func(*state.State) [][2]string) completionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if err := a.applySettings(cmd); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		s, err := a.store().Load(context.Background())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, ref := range refs(s) {
			out = append(out, ref[0]+"\t"+ref[1])
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// argCompletion completes the first positional argument only.
func argCompletion(complete completionFunc) completionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return complete(cmd, args, toComplete)
	}
}

func lbRefs(s *state.State) [][2]string {
	var out [][2]string
	for _, lb := range s.LoadBalancers {
		out = append(out, [2]string{lb.ID, lb.Name}, [2]string{lb.Name, lb.ID})
	}
	return out
}

func sgRefs(s *state.State) [][2]string {
	var out [][2]string
	for _, sg := range s.ServerGroups {
		out = append(out, [2]string{sg.ID, sg.Name}, [2]string{sg.Name, sg.ID})
	}
	return out
}

func certRefs(s *state.State) [][2]string {
	var out [][2]string
	for _, c := range s.Certificates {
		out = append(out, [2]string{c.ID, c.Name}, [2]string{c.Name, c.ID})
	}
	return out
}

func listenerRefs(s *state.State) [][2]string {
	var out [][2]string
	for _, l := range s.Listeners {
		out = append(out, [2]string{l.ID, l.Protocol + " port " + itoa(l.Port)})
	}
	return out
}
