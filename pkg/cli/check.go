package cli

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/albctl/albctl/pkg/check"
	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

func newCheckCmd(a *app) *cobra.Command {
	timeout := state.Duration(5 * time.Second)
	cmd := &cobra.Command{
		Use:   "check DOMAIN:PORT [SERVICE/METHOD]",
		Short: "Check the whole path to a listener, step by step, for CI smoke tests",
		Long: `check walks the configuration for DOMAIN:PORT end to end and prints a checklist:

  dns            the record chain in albctl's zones (CNAME → ... → address)
  load balancer  the one at that address
  listener       on that port, HTTPS with HTTP/2
  certificate    covers DOMAIN and is valid now
  server group   the listener's, with servers that take calls
  servers        their health in the running 'albctl serve'
  call           one real call through the listener, TLS verified

The call is SERVICE/METHOD with an empty request, which must return OK; without it, the
call goes to the group's gRPC health-check path and must return one of its codes. check
stops at the first failing step and says why. It exits 0 only when every step passes.`,
		Example: `  albctl check grpc.example.test:8443
  albctl check grpc.example.test:8443 albctl.echo.v1.Echo/UnaryEcho
  albctl check grpc.example.test:8443 -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageErrorf("%s needs DOMAIN:PORT and optionally SERVICE/METHOD", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			host, portText, err := net.SplitHostPort(args[0])
			port, perr := strconv.Atoi(portText)
			if err != nil || perr != nil || port < 1 || port > 65535 {
				return usageErrorf("invalid DOMAIN:PORT %q: such as grpc.example.test:8443", args[0])
			}
			method := ""
			if len(args) == 2 {
				if method, err = methodPath(args[1]); err != nil {
					return err
				}
			}
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			steps := check.Run(cmd.Context(), check.Input{State: s, StatePath: a.statePath, Admin: a.admin,
				Host: host, Port: port, Method: method, Timeout: timeout.D()})
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

// methodPath turns grpcurl's SERVICE/METHOD or SERVICE.METHOD into a call path.
func methodPath(s string) (string, error) {
	s = strings.TrimPrefix(s, "/")
	if i := strings.LastIndex(s, "/"); i > 0 && i < len(s)-1 {
		return "/" + s, nil
	}
	if i := strings.LastIndex(s, "."); i > 0 && i < len(s)-1 {
		return "/" + s[:i] + "/" + s[i+1:], nil
	}
	return "", usageErrorf("invalid method %q: give SERVICE/METHOD, such as albctl.echo.v1.Echo/UnaryEcho", s)
}
