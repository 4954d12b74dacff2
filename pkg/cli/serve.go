package cli

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/albctl/albctl/pkg/state"
)

func newServeCmd(a *app) *cobra.Command {
	var lbRef, dnsAddr, accessLog, accessLogFile, bindAddress string
	shutdownTimeout := state.Duration(30 * time.Second)
	cmd := &cobra.Command{
		Use:   "serve [--lb LB] [--admin 127.0.0.1:PORT] [--dns 127.0.0.1:5353]",
		Short: "Run the load balancer in the foreground from the state file",
		Long: `serve runs every listener in the state (or those of one load balancer). In front of a gRPC
server group: TLS and HTTP/2 to clients, plaintext HTTP/2 to the servers, balanced per call.
In front of an HTTP or HTTPS server group: a reverse proxy for HTTP/1.1 (and HTTP/2 on an HTTPS
listener with it on), HTTP/1.1 to the servers, balanced per request.
It follows changes to the state within a second, without dropping calls in flight; a state
that cannot be applied is reported and the last good configuration keeps serving. One serve
runs per state file; on an etcd state (--state etcd://...) several may, each recorded as a
replica ('albctl lb replicas'), and each watches the state.

One line per call goes to stderr, or to --access-log-file, which SIGUSR1 reopens so that
logrotate can move it away; lines are written in batches within 100 ms, off the calls' path.
The admin API (/healthz, /status, /metrics) listens on --admin, by default 127.0.0.1 with a
free port, recorded beside the state file so other albctl commands find it. SIGINT or SIGTERM sends GOAWAY to clients, waits for calls in
flight up to --shutdown-timeout and exits 0; a second signal exits at once.`,
		Example: `  albctl serve
  albctl serve --dns 127.0.0.1:5353 --access-log json
  albctl serve --access-log-file /var/log/albctl/access.log
  albctl serve --lb demo --admin 127.0.0.1:9901
  albctl --state etcd://127.0.0.1:2379/albctl/prod serve --bind-address 127.0.0.2`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := netip.ParseAddr(bindAddress); bindAddress != "" && err != nil {
				return usageErrorf("invalid value %q for --bind-address: must be an IP address, such as 127.0.0.2", bindAddress)
			}
			switch obs.Format(accessLog) {
			case obs.FormatText, obs.FormatJSON:
			case "off":
				if accessLogFile != "" {
					return usageErrorf("--access-log-file %s with --access-log off: choose one", accessLogFile)
				}
			default:
				return usageErrorf("invalid value %q for --access-log: must be text, json or off", accessLog)
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			signals := make(chan os.Signal, 2)
			signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(signals)
			go func() {
				select {
				case <-signals:
					cancel()
				case <-ctx.Done():
					return
				}
				<-signals
				fmt.Fprintln(a.io.ErrOut, "albctl: second signal: exiting without waiting for calls in flight")
				os.Exit(ExitError) // the user asked twice: nothing may delay the exit
			}()
			opts := serve.Options{
				Store: a.store(), LB: lbRef, Version: Version, BindAddress: bindAddress, AdminAddr: a.admin, DNSAddr: dnsAddr,
				Log: a.io.ErrOut, AccessLogFormat: obs.Format(accessLog), AccessLogFile: accessLogFile,
				ShutdownTimeout: shutdownTimeout.D(),
			}
			if accessLog != "off" {
				opts.AccessLog = a.io.ErrOut
			}
			return serve.Run(ctx, opts)
		},
	}
	cmd.Flags().StringVar(&lbRef, "lb", "", "serve only this load balancer's listeners, by ID or name")
	cmd.Flags().StringVar(&bindAddress, "bind-address", "", "listen on this IP instead of the load balancers' addresses: one per replica of an etcd state on one machine, such as 127.0.0.2")
	cmd.Flags().StringVar(&dnsAddr, "dns", "", "also answer DNS for albctl's zones on this address, UDP and TCP (such as 127.0.0.1:5353)")
	cmd.Flags().StringVar(&accessLog, "access-log", string(obs.FormatText), "access log format: text, json or off")
	cmd.Flags().StringVar(&accessLogFile, "access-log-file", "", "write the access log to this file (appended, created 0640) instead of stderr")
	cmd.Flags().Var(durationValue{&shutdownTimeout}, "shutdown-timeout", "how long shutdown waits for calls in flight")
	_ = cmd.RegisterFlagCompletionFunc("lb", a.refCompletion(lbRefs))
	_ = cmd.RegisterFlagCompletionFunc("access-log", fixedCompletion("text", "json", "off"))
	return cmd
}
