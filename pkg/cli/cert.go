package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/albctl/albctl/pkg/certs"
	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
)

func newCertCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "cert",
		Aliases: []string{"certificate"},
		Short:   "Manage server certificates for HTTPS listeners",
		Long: `Certificates are issued by albctl's local certificate authority (created on first use) or
imported from PEM files. Clients verify listeners with the CA's certificate, whose path
'albctl cert ca' prints: grpcurl -cacert "$(albctl cert ca)" ...`,
	}
	cmd.AddCommand(newCertCreateCmd(a), newCertImportCmd(a), newCertListCmd(a), newCertCACmd(a),
		newGetCmd(a, "CERT", "Show a certificate, by ID or name", "  albctl cert get grpc-example -o json",
			certRefs, (*state.State).Certificate, a.printCert),
		newDeleteCmd(a, "CERT", "Delete a certificate that no listener uses", "  albctl cert delete grpc-example",
			certRefs, (*state.State).DeleteCertificate, a.printCert))
	return cmd
}

// certView is a certificate as albctl shows it: never its private key.
type certView struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Domains  []string  `json:"domains"`
	NotAfter time.Time `json:"notAfter"`
	Issuer   string    `json:"issuer"`
}

func viewOfCert(c state.Certificate) certView {
	return certView{ID: c.ID, Name: c.Name, Domains: c.Domains, NotAfter: c.NotAfter, Issuer: c.Issuer}
}

// Issuers recorded on certificates.
const (
	issuerLocalCA  = "albctl-ca"
	issuerImported = "imported"
)

// caPath is where the CA's certificate is written for clients: beside the state file.
func caPath(statePath string) string {
	return strings.TrimSuffix(statePath, filepath.Ext(statePath)) + "-ca.pem"
}

// ensureCA creates the local CA in s if it has none.
func (a *app) ensureCA(s *state.State) error {
	if s.CA != nil {
		return nil
	}
	certPEM, keyPEM, err := certs.NewCA(a.now())
	if err != nil {
		return fmt.Errorf("create albctl CA: %w", err)
	}
	s.CA = &state.CA{CertPEM: certPEM, KeyPEM: keyPEM}
	return nil
}

// writeCAFile writes the CA's certificate (public) where clients can point -cacert.
func (a *app) writeCAFile(ca *state.CA) (string, error) {
	path := caPath(a.statePath)
	if old, err := os.ReadFile(path); err == nil && string(old) == ca.CertPEM {
		return path, nil
	}
	if err := os.WriteFile(path, []byte(ca.CertPEM), 0o644); err != nil {
		return "", fmt.Errorf("write CA certificate: %w", err)
	}
	return path, nil
}

func newCertCreateCmd(a *app) *cobra.Command {
	var name string
	var domains []string
	cmd := &cobra.Command{
		Use:   "create --name NAME --domain DNSNAME [--domain ...]",
		Short: "Issue a certificate from albctl's local CA",
		Example: `  albctl cert create --name grpc-example --domain grpc.example.test
  albctl cert create --name wild --domain '*.example.test' --domain example.test --domain 127.0.0.1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(domains) == 0 {
				return usageErrorf("give at least one --domain")
			}
			for _, d := range domains {
				if err := state.ValidateCertDomain(d); err != nil {
					return err
				}
			}
			var created *state.Certificate
			s, err := a.store().Update(cmd.Context(), func(s *state.State) error {
				if err := a.ensureCA(s); err != nil {
					return err
				}
				certPEM, keyPEM, notAfter, err := certs.Issue(s.CA.CertPEM, s.CA.KeyPEM, domains, a.now())
				if err != nil {
					return err
				}
				created, err = s.AddCertificate(state.Certificate{
					Name: name, Domains: domains, NotAfter: notAfter.UTC(), Issuer: issuerLocalCA, CertPEM: certPEM, KeyPEM: keyPEM,
				})
				return err
			})
			if err != nil {
				return err
			}
			if _, err := a.writeCAFile(s.CA); err != nil {
				return err
			}
			return a.printCert(*created)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name (2-128 letters, digits, '.', '_', '-'; starts with a letter)")
	cmd.Flags().StringArrayVar(&domains, "domain", nil, "name the certificate covers: host name, *.wildcard or IP (repeatable)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newCertImportCmd(a *app) *cobra.Command {
	var name, certFile, keyFile string
	cmd := &cobra.Command{
		Use:     "import --name NAME --cert FILE --key FILE",
		Short:   "Import a certificate and its private key from PEM files",
		Example: "  albctl cert import --name prod --cert fullchain.pem --key privkey.pem",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			certPEM, err := os.ReadFile(certFile)
			if err != nil {
				return fmt.Errorf("read --cert: %w", err)
			}
			keyPEM, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("read --key: %w", err)
			}
			info, err := certs.Inspect(certPEM, keyPEM)
			if err != nil {
				return fmt.Errorf("cannot import %s with %s: %w", certFile, keyFile, err)
			}
			var created *state.Certificate
			_, err = a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				created, err = s.AddCertificate(state.Certificate{
					Name: name, Domains: info.Domains, NotAfter: info.NotAfter.UTC(), Issuer: issuerImported,
					CertPEM: string(certPEM), KeyPEM: string(keyPEM),
				})
				return err
			})
			if err != nil {
				return err
			}
			if a.now().After(info.NotAfter) {
				fmt.Fprintf(a.io.ErrOut, "Warning: certificate %s expired on %s\n", name, info.NotAfter.UTC().Format(time.RFC3339))
			}
			return a.printCert(*created)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name (2-128 letters, digits, '.', '_', '-'; starts with a letter)")
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM file with the certificate (and any intermediates after it)")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM file with the private key")
	for _, f := range []string{"name", "cert", "key"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newCertListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List certificates",
		Example: "  albctl cert list\n  albctl cert list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			list := make([]certView, len(s.Certificates))
			for i, c := range s.Certificates {
				list[i] = viewOfCert(c)
			}
			return a.print(list, func() view {
				t := table{header: []string{"ID", "NAME", "DOMAINS", "NOT AFTER", "ISSUER"}}
				for _, c := range list {
					t.rows = append(t.rows, []string{c.ID, c.Name, strings.Join(c.Domains, ","), c.NotAfter.Format(time.RFC3339), c.Issuer})
				}
				return t
			})
		},
	}
}

func newCertCACmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "ca",
		Short: "Print the path of albctl's CA certificate, creating the CA if needed",
		Long: `Prints the path of the PEM file holding the certificate of albctl's local CA, which signs the
certificates of 'albctl cert create'. Give it to clients so they verify listeners.`,
		Example: `  albctl probe -cacert "$(albctl cert ca)" grpc.example.test:8443 list
  curl --cacert "$(albctl cert ca)" https://grpc.example.test:8443/`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Update(cmd.Context(), a.ensureCA)
			if err != nil {
				return err
			}
			path, err := a.writeCAFile(s.CA)
			if err != nil {
				return err
			}
			return a.print(map[string]string{"path": path}, func() view { return line(path) })
		},
	}
}

// line is a view of one line of text.
type line string

func (l line) render(w io.Writer, terminal bool) error {
	_, err := fmt.Fprintln(w, string(l))
	return err
}

func (a *app) printCert(c state.Certificate) error {
	v := viewOfCert(c)
	return a.print(v, func() view {
		return details{{"ID", v.ID}, {"Name", v.Name}, {"Domains", strings.Join(v.Domains, ", ")},
			{"Not after", v.NotAfter.Format(time.RFC3339)}, {"Issuer", v.Issuer}}
	})
}
