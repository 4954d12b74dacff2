package cli

import (
	"fmt"
	"strings"

	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// clientAuthFlags are a listener's mutual TLS settings.
type clientAuthFlags struct {
	clientCA, clientAuth, headers string
	forward, clear                bool
}

func (cf *clientAuthFlags) register(a *app, cmd *cobra.Command, forUpdate bool) {
	fs := cmd.Flags()
	fs.StringVar(&cf.clientCA, "client-ca", "", "mutual TLS: verify client certificates with this CA, a certificate imported with 'cert import --ca' or "+state.LocalCA+" for albctl's own")
	fs.StringVar(&cf.clientAuth, "client-auth", state.ClientAuthRequire, "with --client-ca: "+state.ClientAuthRequire+" (a client without an accepted certificate fails the handshake) or "+state.ClientAuthVerifyIfGiven)
	fs.BoolVar(&cf.forward, "forward-client-cert", false, "with --client-ca: pass the client certificate's subject, issuer, SHA-256 fingerprint and verdict to the servers in request headers (a client's own such headers are removed)")
	fs.StringVar(&cf.headers, "client-cert-headers", "", "header names for --forward-client-cert, subject=H,issuer=H,fingerprint=H,verify=H (default the cloud's x-forwarded-clientcert-subjectdn, -issuerdn, -fingerprint, -clientverify)")
	if forUpdate {
		fs.BoolVar(&cf.clear, "clear-client-ca", false, "turn mutual TLS off")
	}
	_ = cmd.RegisterFlagCompletionFunc("client-ca", a.refCompletion(func(s *state.State) [][2]string {
		refs := [][2]string{{state.LocalCA, "albctl's own CA"}}
		for _, c := range s.Certificates {
			if c.Usage == state.UsageCA {
				refs = append(refs, [2]string{c.Name, "CA certificate " + c.ID})
			}
		}
		return refs
	}))
	_ = cmd.RegisterFlagCompletionFunc("client-auth", fixedCompletion(state.ClientAuthRequire, state.ClientAuthVerifyIfGiven))
}

// apply writes the mutual TLS flags the user set onto l. A client CA given alone requires
// certificates.
func (cf *clientAuthFlags) apply(fs *pflag.FlagSet, l *state.Listener) error {
	if cf.clear {
		if fs.Changed("client-ca") || fs.Changed("client-auth") || fs.Changed("forward-client-cert") || fs.Changed("client-cert-headers") {
			return usageErrorf("--clear-client-ca turns mutual TLS off: give it without the other client certificate flags")
		}
		l.ClientCAID, l.ClientAuth, l.ForwardClientCert = "", "", nil
		return nil
	}
	if fs.Changed("client-ca") {
		l.ClientCAID = cf.clientCA
		if l.ClientAuth == "" || fs.Changed("client-auth") {
			l.ClientAuth = cf.clientAuth
		}
	} else if fs.Changed("client-auth") {
		l.ClientAuth = cf.clientAuth
	}
	if fs.Changed("forward-client-cert") || fs.Changed("client-cert-headers") {
		if fs.Changed("forward-client-cert") && !cf.forward {
			if fs.Changed("client-cert-headers") {
				return usageErrorf("--client-cert-headers names the headers of --forward-client-cert, which is off")
			}
			l.ForwardClientCert = nil
			return nil
		}
		h := state.DefaultClientCertHeaders
		if l.ForwardClientCert != nil {
			h = *l.ForwardClientCert
		}
		if fs.Changed("client-cert-headers") {
			if err := parseClientCertHeaders(cf.headers, &h); err != nil {
				return usageErrorf("invalid value %q for --client-cert-headers: %v", cf.headers, err)
			}
		}
		l.ForwardClientCert = &h
	}
	return nil
}

func parseClientCertHeaders(s string, h *state.ClientCertHeaders) error {
	for _, item := range strings.Split(s, ",") {
		key, name, ok := strings.Cut(item, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" {
			return fmt.Errorf("%q is not DETAIL=HEADER (details: subject, issuer, fingerprint, verify)", item)
		}
		switch strings.TrimSpace(key) {
		case "subject":
			h.Subject = name
		case "issuer":
			h.Issuer = name
		case "fingerprint":
			h.Fingerprint = name
		case "verify":
			h.Verify = name
		default:
			return fmt.Errorf("unknown detail %q (details: subject, issuer, fingerprint, verify)", key)
		}
	}
	return nil
}

// clientAuthRows describe a listener's mutual TLS for listener get.
func clientAuthRows(l state.Listener) details {
	if l.ClientCAID == "" {
		return details{{"Client certificates", "not asked for"}}
	}
	rows := details{{"Client certificates", l.ClientAuth + ", verified with " + l.ClientCAID}}
	if h := l.ForwardClientCert; h != nil {
		rows = append(rows, [2]string{"Forwarded as", strings.Join([]string{h.Subject, h.Issuer, h.Fingerprint, h.Verify}, ", ")})
	}
	return rows
}
