package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

func newDemoCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Run the tutorial's steps with the real commands, printing each one",
		Long: `demo builds the tutorial's load balancer in a temporary state file (or the one --state
names): a load balancer, a gRPC server group with two weighted servers and gRPC health checks,
a certificate from albctl's CA, and an HTTPS listener with HTTP/2. Each command is printed
before it runs and can be pasted into a shell with ALBCTL_STATE set to the state file shown.`,
		Example: "  albctl demo\n  albctl demo --state ./demo.json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("state") && os.Getenv("ALBCTL_STATE") == "" {
				dir, err := os.MkdirTemp("", "albctl-demo-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				a.statePath = filepath.Join(dir, "state.json")
			}
			fmt.Fprintf(a.io.Out, "# state file: %s\n# to paste the commands below: export ALBCTL_STATE=%s\n", a.statePath, a.statePath)
			steps := [][]string{
				{"lb", "create", "--name", "demo"},
				{"servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC", "--health-check-codes", "12"},
				{"servergroup", "add-servers", "grpc-backends", "--server", "127.0.0.1:50051", "--server", "127.0.0.1:50052,weight=50"},
				{"cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test"},
				{"listener", "create", "--lb", "demo", "--protocol", "HTTPS", "--port", "8443", "--cert", "grpc-example", "--server-group", "grpc-backends"},
				{"listener", "list", "-o", "json"},
			}
			for _, step := range steps {
				fmt.Fprintf(a.io.Out, "\n$ albctl %s\n", strings.Join(step, " "))
				if code := Main(cmd.Context(), append([]string{"--state", a.statePath}, step...), a.io); code != ExitOK {
					return fmt.Errorf("demo step failed (exit %d): albctl %s", code, strings.Join(step, " "))
				}
			}
			fmt.Fprintln(a.io.Out, "\ndemo finished: every step succeeded")
			return nil
		},
	}
}
