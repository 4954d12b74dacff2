package cli

import (
	"github.com/albctl/albctl/pkg/probe"
	"github.com/spf13/cobra"
)

func newProbeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "probe [flags] ADDRESS [list [SERVICE] | describe [SYMBOL] | SERVICE/METHOD]",
		Short: "Call a gRPC server or listener, as grpcurl does, and explain failures",
		Long: `probe takes grpcurl's flags, arguments, output and exit codes (0 ok, 1 error, 2 usage,
64+code for a call that returns a gRPC error), so a grpcurl line can be pasted after
'albctl'. Flags take one dash or two: -insecure and --insecure are the same.

Unlike grpcurl it fails at once on a refused port and says why a connection failed:
unknown name, refused, TLS (unknown authority, name mismatch, expired), no HTTP/2.
Run 'albctl probe -help' for every flag.`,
		Example: `  albctl probe -insecure -v grpc.example.test:8443 albctl.echo.v1.Echo/UnaryEcho
  albctl probe -cacert "$(albctl cert ca)" -d '{"message": "hi"}' grpc.example.test:8443 albctl.echo.v1.Echo/UnaryEcho
  albctl probe -plaintext 127.0.0.1:50051 list
  albctl probe -plaintext 127.0.0.1:50051 describe albctl.echo.v1.Echo`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			code := probe.Main(cmd.Context(), args, probe.Env{Stdin: a.io.In, Stdout: a.io.Out, Stderr: a.io.ErrOut})
			if code != ExitOK {
				return &silentExit{Code: code}
			}
			return nil
		},
	}
}
