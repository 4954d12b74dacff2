package cli

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/albctl/albctl/pkg/check"
	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

func newCheckCmd(a *app) *cobra.Command {
	timeout := state.Duration(5 * time.Second)
	cmd := &cobra.Command{
		Use:   "check DOMAIN:PORT [SERVICE/METHOD | PATH]",
		Short: "Check the whole path to a listener, step by step, for CI smoke tests",
		Long: `check walks the configuration for DOMAIN:PORT end to end and prints a checklist:

  dns            the record chain in albctl's zones (CNAME → ... → address)
  load balancer  the one at that address
  listener       on that port (HTTPS with HTTP/2 for a gRPC group)
  certificate    covers DOMAIN and is valid now
  server group   the listener's, with servers that take calls
  servers        their health in the running 'albctl serve'
  call           one real call through the listener, TLS verified

For a gRPC group the call is SERVICE/METHOD with an empty request, which must return OK;
without it, the call goes to the group's gRPC health-check path and must return one of its
codes. For an HTTP or HTTPS group it is a GET of PATH, which must not answer 5xx; without it,
the group's HTTP health check (method, path, codes). check
stops at the first failing step and says why. It exits 0 only when every step passes.`,
		Example: `  albctl check grpc.example.test:8443
  albctl check grpc.example.test:8443 albctl.echo.v1.Echo/UnaryEcho
  albctl check grpc.example.test:8443 -o json
  albctl check www.example.test:80 /healthz`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageErrorf("%s needs DOMAIN:PORT and optionally SERVICE/METHOD or PATH", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			host, portText, err := net.SplitHostPort(args[0])
			port, perr := strconv.Atoi(portText)
			if err != nil || perr != nil || port < 1 || port > 65535 {
				return usageErrorf("invalid DOMAIN:PORT %q: such as grpc.example.test:8443", args[0])
			}
			request := ""
			if len(args) == 2 {
				request = args[1]
			}
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			steps := check.Run(cmd.Context(), check.Input{State: s, StatePath: a.statePath, Admin: a.admin,
				Host: host, Port: port, Request: request, Timeout: timeout.D()})
			if err := a.print(steps, func() view {
				t := table{header: []string{"RESULT", "STEP", "DETAIL"}}
				for _, st := range steps {
					result := "PASS"
					if !st.OK {
						result = "FAIL"
					}
					t.rows = append(t.rows, []string{result, st.Name, st.Detail})
				}
				return t
			}); err != nil {
				return err
			}
			if last := steps[len(steps)-1]; !last.OK {
				fmt.Fprintf(a.io.ErrOut, "check failed at step %q: %s\n", last.Name, last.Detail)
				return &silentExit{Code: ExitError}
			}
			return nil
		},
	}
	cmd.Flags().Var(durationValue{&timeout}, "timeout", "how long the call may take")
	return cmd
}
