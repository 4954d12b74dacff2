package cli

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
)

func newEchoServerCmd(a *app) *cobra.Command {
	var listen, name string
	var failRate float64
	var failCode uint32
	var delay state.Duration
	cmd := &cobra.Command{
		Use:   "echo-server --listen 127.0.0.1:50051 [--name b1]",
		Short: "Run a plaintext gRPC echo backend for trying load balancers",
		Long: `echo-server serves albctl.echo.v1.Echo (UnaryEcho, ServerStreamingEcho, ClientStreamingEcho,
BidirectionalStreamingEcho) over plaintext HTTP/2, with server reflection and grpc.health.v1.
Every reply names the server that produced it (field "server" and header x-echo-server), so
balancing can be seen. --delay and --fail-rate exercise timeouts and health checks.
Interrupt (Ctrl-C) or SIGTERM stops it.`,
		Example: `  albctl echo-server --listen 127.0.0.1:50051 --name b1
  albctl echo-server --listen 127.0.0.1:50052 --name slow --delay 2s
  albctl echo-server --listen 127.0.0.1:50053 --name flaky --fail-rate 0.5 --fail-code 14
  albctl probe -plaintext -d '{"message": "hi"}' 127.0.0.1:50051 albctl.echo.v1.Echo/UnaryEcho`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if failRate < 0 || failRate > 1 {
				return usageErrorf("invalid value \"%g\" for --fail-rate: must be 0-1", failRate)
			}
			if failCode < 1 || failCode > 16 {
				return usageErrorf("invalid value \"%d\" for --fail-code: must be a gRPC error code, 1-16", failCode)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts := echo.Options{Name: name, Delay: delay.D(), FailRate: failRate, FailCode: codes.Code(failCode)}
			return echo.ListenAndServe(ctx, listen, opts, a.io.ErrOut)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:50051", "address to serve on, HOST:PORT (port 0 picks a free one)")
	cmd.Flags().StringVar(&name, "name", "", "name that replies carry (default: the listen address)")
	cmd.Flags().Var(durationValue{&delay}, "delay", "wait this long before each reply")
	cmd.Flags().Float64Var(&failRate, "fail-rate", 0, "fraction of echo calls to fail, 0-1")
	cmd.Flags().Uint32Var(&failCode, "fail-code", uint32(codes.Unavailable), "gRPC status code of failed calls")
	return cmd
}
