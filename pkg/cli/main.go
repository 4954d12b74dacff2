// Package cli is albctl's command line: a thin shell of cobra commands over the domain packages.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/albctl/albctl/pkg/etcdstore"
	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

// Exit codes that scripts can rely on.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// IOStreams are where commands read and write, so tests can capture them.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// isTerminal reports whether w is a terminal (a character device), where tables get headers
// and aligned columns.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// Main runs albctl with the arguments after the program name and returns the exit code.
func Main(ctx context.Context, args []string, io IOStreams) int {
	root, a := newRoot(io)
	defer a.closeStore()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var exit *silentExit
	if errors.As(err, &exit) {
		return exit.Code
	}
	code := exitCode(err)
	fmt.Fprintf(io.ErrOut, "Error: %s\n", a.describe(err))
	if code == ExitUsage {
		fmt.Fprintf(io.ErrOut, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// UsageError is a bad command line: a wrong flag, flag value or argument.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// silentExit ends the command with a code after the command has said why itself.
type silentExit struct{ Code int }

func (e *silentExit) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

func exitCode(err error) int {
	var usage *UsageError
	// cobra reports these two itself, as plain errors.
	cobraUsage := strings.HasPrefix(err.Error(), "unknown command ") || strings.HasPrefix(err.Error(), "required flag(s) ")
	if errors.As(err, &usage) || state.IsInvalid(err) || cobraUsage {
		return ExitUsage
	}
	return ExitError
}

// flagForField names the flag that sets each field of the model, so that the model's
// validation errors can speak of flags.
var flagForField = map[string]string{
	"name":                           "--name",
	"address":                        "--address",
	"protocol":                       "--protocol",
	"scheduler":                      "--scheduler",
	"drainTimeout":                   "--drain-timeout",
	"slowStart":                      "--slow-start",
	"healthCheck.protocol":           "--health-check-protocol",
	"healthCheck.method":             "--health-check-method",
	"healthCheck.path":               "--health-check-path",
	"healthCheck.codes":              "--health-check-codes",
	"healthCheck.service":            "--health-check-service",
	"healthCheck.interval":           "--health-check-interval",
	"healthCheck.timeout":            "--health-check-timeout",
	"healthCheck.healthyThreshold":   "--healthy-threshold",
	"healthCheck.unhealthyThreshold": "--unhealthy-threshold",
	"healthCheck.port":               "--health-check-port",
	"servers":                        "--server",
	"servers.address":                "--server",
	"servers.port":                   "--server",
	"servers.weight":                 "--server",
	"servers.description":            "--server",
	"domains":                        "--domain",
	"lbId":                           "--lb",
	"port":                           "--port",
	"http2":                          "--http2",
	"certificateId":                  "--cert",
	"additionalCertificateIds":       "--cert",
	"serverGroupId":                  "--server-group",
	"idleTimeout":                    "--idle-timeout",
	"requestTimeout":                 "--request-timeout",
	"clientCaId":                     "--client-ca",
	"clientAuth":                     "--client-auth",
	"forwardClientCert":              "--client-cert-headers",
	"records.domain":                 "--domain",
	"records.host":                   "--host",
	"records.type":                   "--type",
	"records.value":                  "--value",
	"records.ttl":                    "--ttl",
	"records.line":                   "--line",
	"uchConfig":                      "--uch-key",
	"listenerId":                     "--listener",
	"priority":                       "--priority",
	"conditions":                     "--match",
	"conditions.Host":                "--match",
	"conditions.Path":                "--match",
	"conditions.Header":              "--match",
	"conditions.Method":              "--match",
	"conditions.QueryString":         "--match",
	"conditions.Cookie":              "--match",
	"conditions.SourceIp":            "--match",
	"forward":                        "--forward",
	"forward.weight":                 "--forward",
	"fixedResponse":                  "--fixed-response",
	"fixedResponse.grpcStatus":       "--fixed-response",
	"fixedResponse.message":          "--fixed-response",
	"fixedResponse.httpCode":         "--fixed-response",
	"fixedResponse.contentType":      "--fixed-response",
	"fixedResponse.body":             "--fixed-response",
	"insertHeaders":                  "--insert-header",
	"removeHeaders":                  "--remove-header",
	"trafficLimit.qps":               "--traffic-limit",
	"trafficLimit.perIpQps":          "--traffic-limit",
	"aclType":                        "--acl-type",
	"aclIds":                         "--acl",
	"entries.cidr":                   "--entry",
	"entries.description":            "--entry",
	"tlsPolicy":                      "--tls-policy",
	"minVersion":                     "--min-version",
	"ciphers":                        "--ciphers",
	"webProtocols":                   "--web-protocols",
	"cors":                           "--cors-allow-origin",
	"cors.allowOrigins":              "--cors-allow-origin",
	"cors.allowHeaders":              "--cors-allow-header",
	"cors.exposeHeaders":             "--cors-expose-header",
	"cors.maxAge":                    "--cors-max-age",
	"cors.allowCredentials":          "--cors-allow-credentials",
}

// listCommands tell the user where to see what exists when a reference is not found.
var listCommands = map[string]string{
	"load balancer": "albctl lb list",
	"server group":  "albctl servergroup list",
	"certificate":   "albctl cert list",
	"listener":      "albctl listener list",
	"domain":        "albctl dns domain list",
	"DNS record":    "albctl dns list",
	"rule":          "albctl rule list",
	"ACL":           "albctl acl list",
	"TLS policy":    "albctl tls-policy list",
}

// describe turns the model's errors into the terms of the command line.
func (a *app) describe(err error) string {
	var notFound *state.NotFoundError
	if errors.As(err, &notFound) && notFound.In == "" {
		msg := err.Error()
		if etcdstore.IsLocation(a.statePath) {
			// A mistyped prefix is an empty state: naming the state shows the mistake.
			msg += " in " + a.statePath
		}
		if list, ok := listCommands[notFound.Kind]; ok {
			return fmt.Sprintf("%s ('%s' shows them)", msg, list)
		}
		return msg
	}
	var invalid *state.InvalidError
	if !errors.As(err, &invalid) {
		return err.Error()
	}
	flag, ok := flagForField[invalid.Field]
	if !ok {
		return err.Error()
	}
	if sub, isServer := strings.CutPrefix(invalid.Field, "servers."); isServer {
		return fmt.Sprintf("invalid value %q for %s %s: %s", invalid.Value, flag, sub, invalid.Rule)
	}
	return fmt.Sprintf("invalid value %q for %s: %s", invalid.Value, flag, invalid.Rule)
}

// needArgs checks that a command got exactly the named arguments.
func needArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		if len(args) < len(names) {
			return usageErrorf("%s needs %s", cmd.CommandPath(), strings.Join(names[len(args):], " "))
		}
		return usageErrorf("%s takes %d argument(s), got %d: %s", cmd.CommandPath(), len(names), len(args), strings.Join(args, " "))
	}
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q", cmd.CommandPath(), strings.Join(args, " "))
	}
	return nil
}
