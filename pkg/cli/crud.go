package cli

import (
	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

// newGetCmd builds "get REF" for a kind of resource: find it by ID or name and print it.
func newGetCmd[T any](a *app, arg, short, example string, refs func(*state.State) [][2]string,
	find func(s *state.State, ref string) (*T, error), print func(T) error) *cobra.Command {
	return &cobra.Command{
		Use:               "get " + arg,
		Short:             short,
		Example:           example,
		Args:              needArgs(arg),
		ValidArgsFunction: argCompletion(a.refCompletion(refs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			v, err := find(s, args[0])
			if err != nil {
				return err
			}
			return print(*v)
		},
	}
}

// newDeleteCmd builds "delete REF" for a kind of resource and prints what it deleted.
func newDeleteCmd[T any](a *app, arg, short, example string, refs func(*state.State) [][2]string,
	remove func(s *state.State, ref string) (*T, error), print func(T) error) *cobra.Command {
	return &cobra.Command{
		Use:               "delete " + arg,
		Aliases:           []string{"rm"},
		Short:             short,
		Example:           example,
		Args:              needArgs(arg),
		ValidArgsFunction: argCompletion(a.refCompletion(refs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var deleted *T
			_, err := a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				deleted, err = remove(s, args[0])
				return err
			})
			if err != nil {
				return err
			}
			return print(*deleted)
		},
	}
}
