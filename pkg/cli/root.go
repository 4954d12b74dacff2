package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Build facts, set by the release build's linker flags.
var (
	Version = "dev"
	Commit  = "none"
	Date    = "unknown"
)

// app holds what every command shares: the streams and the global settings.
type app struct {
	io         IOStreams
	statePath  string
	output     string
	configFile string
	admin      string
	etcdOpts   etcdSettings
	etcd       state.Store // opened on first use of an etcd:// state
	now        func() time.Time
}

// NewRootCmd builds the whole command tree.
func NewRootCmd(streams IOStreams) *cobra.Command {
	root, _ := newRoot(streams)
	return root
}

func newRoot(streams IOStreams) (*cobra.Command, *app) {
	a := &app{io: streams, now: time.Now}
	root := &cobra.Command{
		Use:   "albctl",
		Short: "Run a gRPC-aware application load balancer on one machine",
		Long: `albctl builds and runs an application load balancer the way a cloud does: server groups of
gRPC backends with weights and health checks, HTTPS listeners with HTTP/2 and certificates,
DNS records, and a probe that tests the whole path.

Settings (--state, --output, --admin) come from flags, then ALBCTL_* environment variables
(ALBCTL_STATE, ALBCTL_OUTPUT, ALBCTL_ADMIN), then the config file (keys state, output, admin),
then defaults.`,
		Example: `  albctl lb create --name demo
  albctl servergroup create --name grpc-backends --protocol gRPC --health-check-codes 12
  albctl servergroup add-servers grpc-backends --server 127.0.0.1:50051 --server 127.0.0.1:50052,weight=50
  albctl listener list -o json`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return a.applySettings(cmd)
		},
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &UsageError{Err: err} })

	flags := root.PersistentFlags()
	flags.StringVar(&a.statePath, "state", "", "state file (default $XDG_STATE_HOME/albctl/state.json, else ~/.local/state/albctl/state.json), or etcd://HOST:PORT[,HOST:PORT...]/PREFIX for a state in etcd, which holds the certificates' private keys: use TLS and an etcd role limited to PREFIX")
	flags.StringVar(&a.etcdOpts.cacert, "etcd-cacert", "", "for an etcd state: PEM file with the CA that verifies etcd's certificate")
	flags.StringVar(&a.etcdOpts.cert, "etcd-cert", "", "for an etcd state: PEM file with albctl's client certificate (needs --etcd-key)")
	flags.StringVar(&a.etcdOpts.key, "etcd-key", "", "for an etcd state: PEM file with the client certificate's key")
	flags.StringVar(&a.etcdOpts.user, "etcd-user", "", "for an etcd state: the etcd user; the password comes from ALBCTL_ETCD_PASSWORD")
	flags.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	flags.StringVar(&a.configFile, "config", "", "config file of flag defaults (default $XDG_CONFIG_HOME/albctl/config.yaml, if it exists)")
	flags.StringVar(&a.admin, "admin", "", "admin API of 'albctl serve': where serve listens, and where other commands find it (default: 127.0.0.1 with a free port, recorded beside the state file)")
	markSetting(flags, "state", "output", "admin", "etcd-cacert", "etcd-cert", "etcd-key", "etcd-user")
	_ = root.RegisterFlagCompletionFunc("output", fixedCompletion("table", "json", "yaml"))

	defer rejectUnknownSubcommands(root)
	root.AddCommand(
		newLBCmd(a),
		newServerGroupCmd(a),
		newCertCmd(a),
		newListenerCmd(a),
		newRuleCmd(a),
		newACLCmd(a),
		newTLSPolicyCmd(a),
		newDNSCmd(a),
		newStateCmd(a),
		newServeCmd(a),
		newEchoServerCmd(a),
		newProbeCmd(a),
		newCheckCmd(a),
		newDemoCmd(a),
		newVersionCmd(a),
	)
	return root, a
}

// rejectUnknownSubcommands makes every command that only groups others treat an unknown word
// as a usage error with suggestions; by default cobra would print the group's help and exit 0.
func rejectUnknownSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		rejectUnknownSubcommands(c)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() || !cmd.HasParent() {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.SuggestionsMinimumDistance = 2 // cobra's own default, which SuggestionsFor does not apply
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if suggestions := cmd.SuggestionsFor(args[0]); len(suggestions) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(suggestions, "\n\t")
		}
		return usageErrorf("%s", msg)
	}
}

// settingAnnotation marks the flags that ALBCTL_* variables and the config file may set. Only
// settings qualify: a variable such as ALBCTL_NAME must never rename what an update touches.
const settingAnnotation = "albctl-setting"

func markSetting(fs *pflag.FlagSet, names ...string) {
	for _, name := range names {
		_ = fs.SetAnnotation(name, settingAnnotation, []string{"true"})
	}
}

// applySettings fills the settings the user did not give as flags from ALBCTL_* environment
// variables and the config file, then checks them. A fresh viper per run keeps runs apart.
func (a *app) applySettings(cmd *cobra.Command) error {
	v := viper.New()
	v.SetEnvPrefix("ALBCTL")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	configFile := a.configFile
	if configFile == "" {
		configFile = os.Getenv("ALBCTL_CONFIG")
	}
	if configFile == "" {
		if dir, err := os.UserConfigDir(); err == nil {
			if candidate := filepath.Join(dir, "albctl", "config.yaml"); fileExists(candidate) {
				configFile = candidate
			}
		}
	}
	if configFile != "" {
		v.SetConfigFile(configFile)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("read config file %s: %w", configFile, err)
		}
		for _, key := range v.AllKeys() {
			if f := cmd.Flags().Lookup(key); f == nil || f.Annotations[settingAnnotation] == nil {
				if cmd.Root().PersistentFlags().Lookup(key) == nil || key == "config" {
					return usageErrorf("config file %s: unknown key %q (keys: state, output, admin)", configFile, key)
				}
			}
		}
	}
	fromSetting := map[string]bool{}
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Annotations[settingAnnotation] == nil || !v.IsSet(f.Name) {
			return
		}
		fromSetting[f.Name] = true
		for _, value := range settingValues(v.Get(f.Name)) {
			if err := f.Value.Set(value); err != nil {
				errs = append(errs, usageErrorf("invalid value %q for --%s from ALBCTL_%s or the config file: %v",
					value, f.Name, strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")), err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	switch a.output {
	case "table", "json", "yaml":
	default:
		source := ""
		if fromSetting["output"] {
			source = " (from ALBCTL_OUTPUT or the config file)"
		}
		return usageErrorf("invalid value %q for --output%s: must be table, json or yaml", a.output, source)
	}
	if a.statePath == "" {
		a.statePath = defaultStatePath()
	}
	return nil
}

// settingValues turns a value from the environment or the config file into flag values; a list
// sets a repeatable flag once per item.
func settingValues(v any) []string {
	if list, ok := v.([]any); ok {
		out := make([]string, len(list))
		for i, item := range list {
			out[i] = fmt.Sprint(item)
		}
		return out
	}
	return []string{fmt.Sprint(v)}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// defaultStatePath follows the XDG base directory convention for state on Unix systems and the
// local application data folder elsewhere.
func defaultStatePath() string {
	if dir := os.Getenv("XDG_STATE_HOME"); dir != "" {
		return filepath.Join(dir, "albctl", "state.json")
	}
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		if dir, err := os.UserConfigDir(); err == nil {
			return filepath.Join(dir, "albctl", "state.json")
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "albctl", "state.json")
	}
	return "albctl-state.json"
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print albctl's version",
		Example: "  albctl version\n  albctl version -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			info := map[string]string{"version": Version, "commit": Commit, "date": Date, "go": runtime.Version()}
			return a.print(info, func() view {
				return details{{"Version", Version}, {"Commit", Commit}, {"Built", Date}, {"Go", runtime.Version()}}
			})
		},
	}
}
