package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

func newStateCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Export or import the whole configuration document",
		Long: `The state is one versioned document: load balancers, server groups, certificates with their
private keys, listeners, rules, ACLs, TLS policies, DNS. export prints it as albctl stores it;
import replaces it with a document from a file, validated first. Together they move a
configuration from one state location to another. The document holds private keys: keep
exported files where only their owner can read them.`,
	}
	cmd.AddCommand(newStateExportCmd(a), newStateImportCmd(a))
	return cmd
}

func newStateExportCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "export",
		Short: "Print the whole state document (JSON), private keys included",
		Example: `  albctl state export > albctl-state.json
  albctl --state ./prod.json state export | albctl --state ./copy.json state import -`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			data, err := state.Encode(s)
			if err != nil {
				return err
			}
			_, err = a.io.Out.Write(data)
			return err
		},
	}
}

func newStateImportCmd(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Replace the state with the document in FILE ('-' for standard input)",
		Long: `import reads a document as 'albctl state export' writes it, checks it as albctl checks its own
state (the version, no unknown fields, every resource and reference valid) and replaces the
state with it. A state that already holds anything is replaced only with --force. A document
that does not pass leaves the state as it was.`,
		Example: `  albctl --state ./copy.json state import albctl-state.json
  albctl state import --force albctl-state.json`,
		Args:              needArgs("FILE"),
		ValidArgsFunction: cobra.FixedCompletions(nil, cobra.ShellCompDirectiveDefault),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(a.io.In)
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", args[0], err)
			}
			imported, err := state.Decode(args[0], data)
			var corrupt *state.CorruptError
			if errors.As(err, &corrupt) {
				return fmt.Errorf("%s cannot be imported: %v", args[0], corrupt.Err)
			}
			if err != nil {
				return err
			}
			_, err = a.store().Update(cmd.Context(), func(s *state.State) error {
				if !force && !s.Empty() {
					return usageErrorf("%s already holds a configuration: give --force to replace it ('albctl state export' first keeps a copy)", a.store().Location())
				}
				*s = *imported
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.io.Out, "imported %s into %s\n", args[0], a.store().Location())
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace a state that is not empty")
	return cmd
}
