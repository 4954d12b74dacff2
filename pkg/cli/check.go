package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/albctl/albctl/pkg/check"
	"github.com/albctl/albctl/pkg/etcdstore"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

func newCheckCmd(a *app) *cobra.Command {
	timeout := state.Duration(5 * time.Second)
	var headers []string
	var strict, allReplicas bool
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
step passes.

On an etcd state the servers step asks the oldest live replica that serves the load balancer,
and names it; the call goes to that replica's listener.
--all-replicas runs the checklist for every live replica that serves the load balancer: its
servers step asks that replica and its call goes to that replica's listener. It exits 0 only
when every replica passes, and names those that fail.`,
		Example: `  albctl check grpc.example.test:8443
  albctl check grpc.example.test:8443 albctl.echo.v1.Echo/UnaryEcho
  albctl check grpc.example.test:8443 albctl.echo.v1.Echo/UnaryEcho -H x-canary:1
  albctl check grpc.example.test:8443 --strict -o json
  albctl check www.example.test:80 /healthz
  albctl --state etcd://127.0.0.1:2379/albctl/prod check grpc.example.test:8443 --all-replicas`,
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
			st, onEtcd := a.store().(*etcdstore.Store)
			if allReplicas && (!onEtcd || a.admin != "") {
				return usageErrorf("--all-replicas checks every replica of an etcd state (--state etcd://...), without --admin")
			}
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			in := check.Input{State: s, Store: a.store(), LBAddrs: a.lbAddresses(cmd.Context(), s), Admin: a.admin,
				Host: host, Port: port, Request: request, Header: md, Timeout: timeout.D(), Strict: strict, ClientCert: clientCert}
			if allReplicas {
				return a.checkReplicas(cmd.Context(), st, in)
			}
			if onEtcd && a.admin == "" {
				// One replica, whose health the servers step reads, takes the call too.
				if replicas, err := serve.Replicas(cmd.Context(), st); err == nil {
					in.Replica = check.FirstReplica(in, replicas)
				}
			}
			steps := check.Run(cmd.Context(), in)
			if err := a.print(steps, func() view { return stepsView(steps) }); err != nil {
				return err
			}
			if !a.reportSteps("", steps) {
				return &silentExit{Code: ExitError}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&allReplicas, "all-replicas", false, "on an etcd state: check through every live replica, not one")
	cmd.Flags().Var(durationValue{&timeout}, "timeout", "how long the call may take")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "header field KEY:VALUE sent with the call and matched by rules, as grpcurl's -H (repeatable)")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on any unhealthy server, not only when none of a group's servers takes calls")
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM file with a client certificate, for a listener with mutual TLS (needs --key)")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM file with the client certificate's private key")
	return cmd
}

// checkReplicas runs the checklist through each live replica and fails if any replica fails.
func (a *app) checkReplicas(ctx context.Context, st *etcdstore.Store, in check.Input) error {
	replicas, err := serve.Replicas(ctx, st)
	if err != nil {
		return err
	}
	results := check.RunReplicas(ctx, in, replicas)
	if len(results) == 0 {
		return fmt.Errorf("no live replica of %s serves %s:%d ('albctl lb replicas' lists them): start one with 'albctl serve'", st.Location(), in.Host, in.Port)
	}
	if err := a.print(results, func() view {
		var v views
		for _, r := range results {
			v = append(v, details{{"Replica", r.Replica + " (" + r.Admin + ")"}}, stepsView(r.Steps))
		}
		return v
	}); err != nil {
		return err
	}
	failed := 0
	for _, r := range results {
		if !a.reportSteps("on replica "+r.Replica+" ", r.Steps) {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(a.io.ErrOut, "check failed on %d of %d replicas\n", failed, len(results))
		return &silentExit{Code: ExitError}
	}
	return nil
}

func stepsView(steps []check.Step) view {
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
}

// reportSteps says on stderr where a checklist failed, or its warnings, and reports whether it
// passed; where names the replica, if any ("on replica ID ").
func (a *app) reportSteps(where string, steps []check.Step) bool {
	if last := steps[len(steps)-1]; !last.OK {
		fmt.Fprintf(a.io.ErrOut, "check failed %sat step %q: %s\n", where, last.Name, last.Detail)
		return false
	}
	for _, st := range steps {
		if st.Warning != "" {
			fmt.Fprintf(a.io.ErrOut, "check passed %swith a warning at step %q: %s\n", where, st.Name, st.Warning)
		}
	}
	return true
}
