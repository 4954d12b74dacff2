package cli

import (
	"strings"

	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

func newTLSPolicyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "tls-policy",
		Aliases: []string{"tlspolicy"},
		Short:   "Manage TLS security policies: the TLS versions and cipher suites HTTPS listeners offer",
		Long: `A TLS security policy says which TLS versions and cipher suites an HTTPS listener offers
clients. The system policies are the cloud's, tls_cipher_policy_1_0 to
tls_cipher_policy_1_2_strict_with_1_3, the default; custom ones choose a lowest version and
their suites. Give a listener one with 'albctl listener create|update --tls-policy POLICY'; a
change applies to the next handshake, and connections already made keep theirs.

Suites the cloud lists and Go's TLS does not implement are shown as unsupported: no client can
negotiate them.`,
		Example: `  albctl tls-policy list
  albctl tls-policy create --name ecdhe-gcm --min-version TLSv1.2 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256,ECDHE-RSA-AES128-GCM-SHA256
  albctl listener update lsn-0123456789abcdef --tls-policy ecdhe-gcm`,
	}
	cmd.AddCommand(newTLSPolicyCreateCmd(a), newTLSPolicyListCmd(a),
		newGetCmd(a, "POLICY", "Show a TLS policy, by name or ID", "  albctl tls-policy get tls_cipher_policy_1_2_strict\n  albctl tls-policy get ecdhe-gcm -o json",
			tlsPolicyRefs, (*state.State).TLSPolicy, a.printTLSPolicy),
		newDeleteCmd(a, "POLICY", "Delete a custom TLS policy that no listener uses", "  albctl tls-policy delete ecdhe-gcm",
			customTLSPolicyRefs, (*state.State).DeleteTLSPolicy, func(p state.TLSPolicy) error { return a.printTLSPolicy(p.Info()) }))
	return cmd
}

func newTLSPolicyCreateCmd(a *app) *cobra.Command {
	var p state.TLSPolicy
	cmd := &cobra.Command{
		Use:   "create --name NAME --min-version VERSION [--ciphers SUITE,...]",
		Short: "Create a custom TLS policy",
		Long: `Creates a custom TLS policy. A listener with it offers --min-version and every later TLS
version up to TLSv1.3, and below TLS 1.3 only the --ciphers given, by their OpenSSL names
(those 'albctl tls-policy list' shows). TLS 1.3's suites (TLS_AES_128_GCM_SHA256,
TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256) are always on with TLS 1.3 and cannot be
chosen, so a policy of --min-version TLSv1.3 takes no --ciphers.

ECDHE-ECDSA suites need an ECDSA certificate (what 'albctl cert create' makes); ECDHE-RSA
suites and those without ECDHE need an RSA one, such as an imported certificate.`,
		Example: `  albctl tls-policy create --name ecdhe-gcm --min-version TLSv1.2 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256,ECDHE-RSA-AES128-GCM-SHA256
  albctl tls-policy create --name legacy --min-version TLSv1.0 --ciphers ECDHE-ECDSA-AES128-SHA,ECDHE-ECDSA-AES128-GCM-SHA256
  albctl tls-policy create --name tls13-only --min-version TLSv1.3`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := canonical("--min-version", p.MinVersion, state.TLSVersions...)
			if err != nil {
				return err
			}
			p.MinVersion = v
			var created *state.TLSPolicy
			_, err = a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				created, err = s.CreateTLSPolicy(p)
				return err
			})
			if err != nil {
				return err
			}
			return a.printTLSPolicy(created.Info())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&p.Name, "name", "", "name (2-128 letters, digits, '.', '_', '-'; starts with a letter)")
	fs.StringVar(&p.MinVersion, "min-version", "", "lowest TLS version offered, "+strings.Join(state.TLSVersions, ", ")+"; the later ones up to TLSv1.3 are offered too")
	fs.StringSliceVar(&p.Ciphers, "ciphers", nil, "cipher suites of TLS 1.2 and below, by OpenSSL name, comma-separated (none for TLSv1.3)")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("min-version")
	_ = cmd.RegisterFlagCompletionFunc("min-version", fixedCompletion(state.TLSVersions...))
	_ = cmd.RegisterFlagCompletionFunc("ciphers", cipherCompletion)
	return cmd
}

func newTLSPolicyListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List TLS policies, the system ones first",
		Example: "  albctl tls-policy list\n  albctl tls-policy list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			list := s.AllTLSPolicies()
			return a.print(list, func() view {
				t := table{header: []string{"ID", "NAME", "VERSIONS", "CIPHERS", "UNSUPPORTED"}}
				for _, p := range list {
					t.rows = append(t.rows, []string{p.ID, p.Name, tlsVersionRange(p), strings.Join(p.Ciphers, ","),
						orDash(strings.Join(unsupportedNotes(p.Unsupported), ","))})
				}
				return t
			})
		},
	}
}

func (a *app) printTLSPolicy(p state.TLSPolicyInfo) error {
	return a.print(p, func() view {
		kind := "custom"
		if p.System {
			kind = "system"
		}
		d := details{{"ID", p.ID}, {"Name", p.Name}, {"Type", kind}}
		if p.Description != "" {
			d = append(d, [2]string{"Description", p.Description})
		}
		d = append(d, [2]string{"Versions", tlsVersionRange(p)})
		d = appendLines(d, "Ciphers", p.Ciphers)
		return appendLines(d, "Unsupported", unsupportedNotes(p.Unsupported))
	})
}

// appendLines adds a list to details, one item a line.
func appendLines(d details, label string, items []string) details {
	if len(items) == 0 {
		return append(d, [2]string{label, "-"})
	}
	for i, item := range items {
		if i > 0 {
			label = ""
		}
		d = append(d, [2]string{label, item})
	}
	return d
}

func tlsVersionRange(p state.TLSPolicyInfo) string {
	if p.MinVersion == p.MaxVersion {
		return p.MinVersion
	}
	return p.MinVersion + "-" + p.MaxVersion
}

// unsupportedNotes says of each suite albctl does not offer why: Go lacks it, or the default
// leaves it out as listeners always did.
func unsupportedNotes(names []string) []string {
	out := make([]string, len(names))
	for i, name := range names {
		out[i] = name + " (not in Go)"
		if c, ok := state.LookupTLSCipher(name); ok && c.ID != 0 {
			out[i] = name + " (not in the default)"
		}
	}
	return out
}

// listenerTLSPolicy names the policy of an HTTPS listener, the default's when it has none.
func listenerTLSPolicy(s *state.State, l state.Listener) string {
	switch {
	case l.Protocol != state.ProtocolHTTPS:
		return "-"
	case l.TLSPolicy == "":
		return state.DefaultTLSPolicy
	}
	if s != nil {
		if p, err := s.TLSPolicy(l.TLSPolicy); err == nil {
			return p.Name
		}
	}
	return l.TLSPolicy
}

func tlsPolicyRefs(s *state.State) [][2]string {
	var out [][2]string
	for _, p := range state.SystemTLSPolicies {
		out = append(out, [2]string{p.Name, p.Description})
	}
	return append(out, customTLSPolicyRefs(s)...)
}

func customTLSPolicyRefs(s *state.State) [][2]string {
	var out [][2]string
	for _, p := range s.TLSPolicies {
		out = append(out, [2]string{p.ID, p.Name}, [2]string{p.Name, p.ID})
	}
	return out
}

// cipherCompletion offers the suites a custom policy may list.
func cipherCompletion(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	var out []string
	for _, c := range state.TLSCiphers {
		if c.ID != 0 && !c.TLS13 {
			out = append(out, c.Name)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
