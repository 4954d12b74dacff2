package cli

import (
	"crypto/tls"
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
	var headers []string
	var strict bool
	var certFile, keyFile string
	cmd := &cobra.Command{
		Use:   "check DOMAIN:PORT [SERVICE/METHOD | PATH] [-H KEY:VALUE]...",
		Short: "Check the whole path to a listener, step by step, for CI smoke tests",
		Long: `check walks the configuration for DOMAIN:PORT end to end and prints a checklist:

  dns            the record chain in albctl's zones (CNAME → ... → address)
  load balancer  the one at that address
  listener       on that port (HTTPS with HTTP/2 for a gRPC group)
  rule           the listener's rule the call meets, or none: then its own server group
  certificate    covers DOMAIN and is valid now
  server group   each group the call goes to, with servers that take calls
  servers        their health in the running 'albctl serve'
  call           one real call through the listener, TLS verified

For a gRPC group the call is SERVICE/METHOD with an empty request, which must return OK;
without it, the call goes to the gRPC health-check path of the listener's server group and
must return one of its codes. For an HTTP or HTTPS group it is a GET of PATH, which must not
answer 5xx; without it, the group's HTTP health check (method, path, codes).

Rules are matched as the data plane matches them: on the path, DOMAIN as the host, the method
(POST for gRPC), each -H field (sent with the call as gRPC metadata or HTTP header fields) and
the source address, which is the local address the kernel picks to reach the listener
(127.0.0.1 for a listener on 127.0.0.1). The server group and servers steps are repeated for
each group the rule forwards to (a group of weight 0 is skipped). A rule that answers with a
fixed response has no groups: the call must get that status.

The servers step passes with a warning when some of a group's servers are unhealthy and the
others take the calls; it fails when none can take the call, and with --strict when any is
unhealthy. check stops at the first failing step and says why. It exits 0 only when every
step passes.`,
		Example: `  albctl check grpc.example.test:8443
  albctl check grpc.example.test:8443 albctl.echo.v1.Echo/UnaryEcho
  albctl check grpc.example.test:8443 albctl.echo.v1.Echo/UnaryEcho -H x-canary:1
  albctl check grpc.example.test:8443 --strict -o json
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
			md, err := check.ParseMetadata(headers)
			if err != nil {
				return &UsageError{Err: err}
			}
			var clientCert *tls.Certificate
			if (certFile == "") != (keyFile == "") {
				return usageErrorf("--cert and --key go together: the client certificate and its key")
			}
			if certFile != "" {
				pair, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return usageErrorf("invalid --cert %s with --key %s: %v", certFile, keyFile, err)
				}
				clientCert = &pair
			}
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			steps := check.Run(cmd.Context(), check.Input{State: s, Store: a.store(), LBAddrs: a.lbAddresses(cmd.Context(), s), Admin: a.admin,
				Host: host, Port: port, Request: request, Header: md, Timeout: timeout.D(), Strict: strict, ClientCert: clientCert})
			if err := a.print(steps, func() view {
				t := table{header: []string{"RESULT", "STEP", "DETAIL"}}
				for _, st := range steps {
					result, detail := "PASS", st.Detail
					if !st.OK {
						result = "FAIL"
					}
					if st.Warning != "" {
						detail += "; WARNING: " + st.Warning
					}
					t.rows = append(t.rows, []string{result, st.Name, detail})
				}
				return t
			}); err != nil {
				return err
			}
			if last := steps[len(steps)-1]; !last.OK {
				fmt.Fprintf(a.io.ErrOut, "check failed at step %q: %s\n", last.Name, last.Detail)
				return &silentExit{Code: ExitError}
			}
			for _, st := range steps {
				if st.Warning != "" {
					fmt.Fprintf(a.io.ErrOut, "check passed with a warning at step %q: %s\n", st.Name, st.Warning)
				}
			}
			return nil
		},
	}
	cmd.Flags().Var(durationValue{&timeout}, "timeout", "how long the call may take")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "header field KEY:VALUE sent with the call and matched by rules, as grpcurl's -H (repeatable)")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on any unhealthy server, not only when none of a group's servers takes calls")
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM file with a client certificate, for a listener with mutual TLS (needs --key)")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM file with the client certificate's private key")
	return cmd
}
