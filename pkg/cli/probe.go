package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	albdns "github.com/albctl/albctl/pkg/dns"
	"github.com/albctl/albctl/pkg/probe"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

func newProbeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "probe [flags] ADDRESS [list [SERVICE] | describe [SYMBOL] | SERVICE/METHOD]",
		Short: "Call a gRPC server or listener, as grpcurl does, and explain failures",
		Long: `probe takes grpcurl's flags, arguments, output and exit codes (0 ok, 1 error, 2 usage,
64+code for a call that returns a gRPC error), so a grpcurl line can be pasted after
'albctl'. Flags take one dash or two: -insecure and --insecure are the same.

Host names that albctl's DNS records define (a CNAME to a load balancer's domain name, that
name, an A record) resolve from the state file first, then from the system resolver;
--resolver HOST:PORT asks a DNS server instead. TLS checks the certificate against the name
as given. With -v, the resolution chain and the TLS facts come first, on stderr.

Unlike grpcurl it fails at once on a refused port and says why a connection failed:
unknown name, refused, TLS (unknown authority, name mismatch, expired), no HTTP/2.
The state file comes from ALBCTL_STATE or the default; run 'albctl probe -help' for every flag.`,
		Example: `  albctl probe -insecure -v grpc.example.test:8443 albctl.echo.v1.Echo/UnaryEcho
  albctl probe -cacert "$(albctl cert ca)" -d '{"message": "hi"}' grpc.example.test:8443 albctl.echo.v1.Echo/UnaryEcho
  albctl probe -plaintext 127.0.0.1:50051 list
  albctl probe -plaintext 127.0.0.1:50051 describe albctl.echo.v1.Echo`,
		// grpcurl's single-dash flags are not cobra's: the probe parses its own.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			args, err := a.takeGlobalFlags(args)
			if err != nil {
				return err
			}
			// A missing or unreadable state only means no albctl names and no hints.
			s, _ := a.store().Load(cmd.Context())
			env := probe.Env{Stdin: a.io.In, Stdout: a.io.Out, Stderr: a.io.ErrOut}
			if s != nil {
				zones := albdns.NewZones(s, a.lbAddresses(cmd.Context(), s))
				env.Resolve = func(ctx context.Context, host string) ([]string, []string, error) {
					addrs, chain, err := zones.LookupHost(host)
					if errors.Is(err, albdns.ErrNotAuthoritative) {
						return nil, nil, nil // not albctl's name: the system resolver answers
					}
					return addrs, chain, err
				}
				env.Hint = func(f probe.Failure) string { return a.probeHint(s, f) }
			}
			code := probe.Main(cmd.Context(), args, env)
			if code != ExitOK {
				return &silentExit{Code: code}
			}
			return nil
		},
	}
}

// takeGlobalFlags applies albctl's own flags that lead args: with its flag parsing off, the probe
// receives them as given (albctl --state s.json probe ...). grpcurl has none of these flags.
func (a *app) takeGlobalFlags(args []string) ([]string, error) {
	targets := map[string]*string{"--state": &a.statePath, "--admin": &a.admin, "--output": &a.output, "-o": &a.output, "--config": &a.configFile}
	for len(args) > 0 {
		name, value, hasValue := strings.Cut(args[0], "=")
		target, ok := targets[name]
		if !ok {
			break
		}
		if !hasValue {
			if len(args) < 2 {
				return nil, usageErrorf("flag needs an argument: %s", name)
			}
			value, args = args[1], args[1:]
		}
		*target, args = value, args[1:]
	}
	return args, nil
}

// probeHint adds what albctl knows about a failure: which listener should be on that port,
// whether serve runs, and where albctl's CA is.
func (a *app) probeHint(s *state.State, f probe.Failure) string {
	switch f.Kind {
	case probe.FailRefused:
		port, err := strconv.Atoi(f.Port())
		if err != nil {
			return ""
		}
		for _, l := range s.Listeners {
			if l.Port == port {
				if _, err := serve.Discover(a.store(), a.admin); err != nil {
					return fmt.Sprintf("listener %s is on port %d, but no albctl serve runs for %s: start 'albctl serve'", l.ID, port, a.statePath)
				}
				return fmt.Sprintf("listener %s is on port %d and albctl serve runs: does its load balancer's address match?", l.ID, port)
			}
		}
		if len(s.Listeners) > 0 {
			return fmt.Sprintf("no albctl listener is on port %d ('albctl listener list' shows them)", port)
		}
	case probe.FailTLSHandshake:
		if l := listenerOnPort(s, f.Port()); l != nil && l.Protocol == state.ProtocolHTTPS {
			if p, err := s.ListenerTLSPolicy(l); err == nil {
				return fmt.Sprintf("listener %s's TLS policy %s allows %s to %s with %s; probe offers TLS 1.2 and 1.3 with Go's default suites", l.ID, p.Name, p.MinVersion, p.MaxVersion, strings.Join(p.Ciphers, ", "))
			}
		}
	case probe.FailTLSClientCert:
		if l := listenerOnPort(s, f.Port()); l != nil && l.ClientCAID != "" {
			return fmt.Sprintf("listener %s verifies client certificates with %s (%s): pass -cert FILE -key FILE with one it issued ('albctl cert create --client --name NAME' for %s)", l.ID, l.ClientCAID, l.ClientAuth, state.LocalCA)
		}
	case probe.FailTLSUnknownAuthority:
		if s.CA != nil {
			return fmt.Sprintf("if the listener's certificate is albctl's, use -cacert %s (the path 'albctl cert ca' prints), or -insecure to skip verification", a.caPath())
		}
	}
	return ""
}

// listenerOnPort returns the first listener on the port, or nil.
func listenerOnPort(s *state.State, port string) *state.Listener {
	for i, l := range s.Listeners {
		if strconv.Itoa(l.Port) == port {
			return &s.Listeners[i]
		}
	}
	return nil
}
