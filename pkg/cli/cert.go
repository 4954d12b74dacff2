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
		Short:   "Manage certificates: server certificates for HTTPS listeners, client and CA certificates for mutual TLS",
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
	// Usage is server, client or ca.
	Usage string `json:"usage"`
	// Files are where 'cert create --client' wrote the certificate and key.
	Files []string `json:"files,omitempty"`
}

func viewOfCert(c state.Certificate) certView {
	usage := c.Usage
	if usage == state.UsageServer {
		usage = "server"
	}
	return certView{ID: c.ID, Name: c.Name, Domains: c.Domains, NotAfter: c.NotAfter, Issuer: c.Issuer, Usage: usage}
}

// Issuers recorded on certificates.
const (
	issuerLocalCA  = "albctl-ca"
	issuerImported = "imported"
)

// caPath is where the CA's certificate is written for clients: beside the state file.
func (a *app) caPath() string { return a.localBase() + "-ca.pem" }

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
	path := a.caPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("write CA certificate: %w", err)
	}
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
	var client bool
	var certFile, keyFile string
	cmd := &cobra.Command{
		Use:   "create --name NAME (--domain DNSNAME [--domain ...] | --client)",
		Short: "Issue a server or client certificate from albctl's local CA",
		Long: `create issues a server certificate for the domains given, for HTTPS listeners, or with --client
a client certificate for mutual TLS (its subject's common name is NAME), which a listener with
--client-ca albctl-ca accepts. A client certificate and its key are written to PEM files
(beside the state file unless --cert-file and --key-file say where), for clients such as
'albctl probe -cert FILE -key FILE'.`,
		Example: `  albctl cert create --name grpc-example --domain grpc.example.test
  albctl cert create --name wild --domain '*.example.test' --domain example.test --domain 127.0.0.1
  albctl cert create --name ci-client --client`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if client {
				if len(domains) > 0 {
					return usageErrorf("--client certificates name their client by --name, not --domain")
				}
				return a.createClientCert(cmd, name, certFile, keyFile)
			}
			if cmd.Flags().Changed("cert-file") || cmd.Flags().Changed("key-file") {
				return usageErrorf("--cert-file and --key-file are for --client certificates")
			}
			if len(domains) == 0 {
				return usageErrorf("give at least one --domain, or --client for a client certificate")
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
	cmd.Flags().BoolVar(&client, "client", false, "a client certificate, for mutual TLS")
	cmd.Flags().StringVar(&certFile, "cert-file", "", "with --client: where to write the certificate (default STATE-NAME.pem beside the state file)")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "with --client: where to write the private key, mode 0600 (default STATE-NAME-key.pem)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// createClientCert issues a client certificate, stores it and writes it and its key to files.
func (a *app) createClientCert(cmd *cobra.Command, name, certFile, keyFile string) error {
	base := a.localBase() + "-" + name
	if certFile == "" {
		certFile = base + ".pem"
	}
	if keyFile == "" {
		keyFile = base + "-key.pem"
	}
	var created *state.Certificate
	s, err := a.store().Update(cmd.Context(), func(s *state.State) error {
		if err := a.ensureCA(s); err != nil {
			return err
		}
		certPEM, keyPEM, notAfter, err := certs.IssueClient(s.CA.CertPEM, s.CA.KeyPEM, name, a.now())
		if err != nil {
			return err
		}
		created, err = s.AddCertificate(state.Certificate{
			Name: name, Domains: []string{}, NotAfter: notAfter.UTC(), Issuer: issuerLocalCA, CertPEM: certPEM, KeyPEM: keyPEM, Usage: state.UsageClient,
		})
		return err
	})
	if err != nil {
		return err
	}
	if _, err := a.writeCAFile(s.CA); err != nil {
		return err
	}
	if err := os.WriteFile(certFile, []byte(created.CertPEM), 0o644); err != nil {
		return fmt.Errorf("write --cert-file: %w", err)
	}
	if err := os.WriteFile(keyFile, []byte(created.KeyPEM), 0o600); err != nil {
		return fmt.Errorf("write --key-file: %w", err)
	}
	v := viewOfCert(*created)
	v.Files = []string{certFile, keyFile}
	return a.printCertView(v)
}

func newCertImportCmd(a *app) *cobra.Command {
	var name, certFile, keyFile string
	var ca bool
	cmd := &cobra.Command{
		Use:   "import --name NAME --cert FILE (--key FILE | --ca)",
		Short: "Import a certificate and its private key, or a CA certificate, from PEM files",
		Long: `import stores a server certificate with its private key, for HTTPS listeners, or with --ca a
CA certificate without a key, which verifies the client certificates of a listener with mutual
TLS (listener --client-ca).`,
		Example: "  albctl cert import --name prod --cert fullchain.pem --key privkey.pem\n  albctl cert import --name partners-ca --cert partners-ca.pem --ca",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ca == (keyFile != "") {
				return usageErrorf("give --key FILE for a server certificate, or --ca for a CA certificate (which has no key here)")
			}
			certPEM, err := os.ReadFile(certFile)
			if err != nil {
				return fmt.Errorf("read --cert: %w", err)
			}
			if ca {
				return a.importCA(cmd, name, certFile, certPEM)
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
	cmd.Flags().BoolVar(&ca, "ca", false, "the file holds CA certificates that verify client certificates (mutual TLS); no key")
	for _, f := range []string{"name", "cert"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

// importCA stores CA certificates for verifying clients.
func (a *app) importCA(cmd *cobra.Command, name, certFile string, certPEM []byte) error {
	subject, notAfter, err := certs.InspectCA(certPEM)
	if err != nil {
		return fmt.Errorf("cannot import %s as a CA: %w", certFile, err)
	}
	var created *state.Certificate
	_, err = a.store().Update(cmd.Context(), func(s *state.State) (err error) {
		created, err = s.AddCertificate(state.Certificate{
			Name: name, Domains: []string{}, NotAfter: notAfter.UTC(), Issuer: subject, CertPEM: string(certPEM), Usage: state.UsageCA,
		})
		return err
	})
	if err != nil {
		return err
	}
	return a.printCert(*created)
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
				t := table{header: []string{"ID", "NAME", "USAGE", "DOMAINS", "NOT AFTER", "ISSUER"}}
				for _, c := range list {
					t.rows = append(t.rows, []string{c.ID, c.Name, c.Usage, orDash(strings.Join(c.Domains, ",")), c.NotAfter.Format(time.RFC3339), c.Issuer})
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

func (a *app) printCert(c state.Certificate) error { return a.printCertView(viewOfCert(c)) }

func (a *app) printCertView(v certView) error {
	return a.print(v, func() view {
		d := details{{"ID", v.ID}, {"Name", v.Name}, {"Usage", v.Usage}, {"Domains", orDash(strings.Join(v.Domains, ", "))},
			{"Not after", v.NotAfter.Format(time.RFC3339)}, {"Issuer", v.Issuer}}
		if len(v.Files) > 0 {
			d = append(d, [2]string{"Files", strings.Join(v.Files, ", ")})
		}
		return d
	})
}
