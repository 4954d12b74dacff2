package state

import (
	"slices"
	"strings"
)

// Client certificate requirements of a listener with mutual TLS.
const (
	ClientAuthRequire       = "require"
	ClientAuthVerifyIfGiven = "verify-if-given"
)

// LocalCA names albctl's own CA where a listener's client CA is given.
const LocalCA = "albctl-ca"

// Certificate usages: a server certificate with its key (the default), a client certificate
// with its key, or a CA certificate without one, which verifies client certificates.
const (
	UsageServer = ""
	UsageClient = "client"
	UsageCA     = "ca"
)

// ClientCertHeaders name the request headers that carry a verified client certificate's
// details to the servers.
type ClientCertHeaders struct {
	Subject     string `json:"subject"`
	Issuer      string `json:"issuer"`
	Fingerprint string `json:"fingerprint"`
	Verify      string `json:"verify"`
}

// DefaultClientCertHeaders are the cloud's names, lowercase as HTTP/2 sends them.
var DefaultClientCertHeaders = ClientCertHeaders{
	Subject:     "x-forwarded-clientcert-subjectdn",
	Issuer:      "x-forwarded-clientcert-issuerdn",
	Fingerprint: "x-forwarded-clientcert-fingerprint",
	Verify:      "x-forwarded-clientcert-clientverify",
}

// resolveClientCA stores the listener's client CA as an ID: albctl's own CA keeps its name.
func (s *State) resolveClientCA(l *Listener) error {
	if l.ClientCAID == "" || l.ClientCAID == LocalCA {
		return nil
	}
	c, err := s.Certificate(l.ClientCAID)
	if err != nil {
		return err
	}
	l.ClientCAID = c.ID
	return nil
}

// ClientCAPEM returns the PEM certificates that verify the listener's clients, or "" without
// mutual TLS.
func (s *State) ClientCAPEM(l *Listener) string {
	if l.ClientCAID == LocalCA && s.CA != nil {
		return s.CA.CertPEM
	}
	if c, err := s.Certificate(l.ClientCAID); err == nil && l.ClientCAID != "" {
		return c.CertPEM
	}
	return ""
}

func (l *Listener) validateClientAuth(s *State) error {
	if l.ClientCAID == "" {
		if l.ClientAuth != "" || l.ForwardClientCert != nil {
			return invalid("clientAuth", l.ClientAuth, "client authentication needs a client CA (--client-ca)")
		}
		return nil
	}
	if l.Protocol != ProtocolHTTPS {
		return invalid("clientCaId", l.ClientCAID, "only HTTPS listeners verify client certificates")
	}
	switch {
	case l.ClientCAID == LocalCA && s.CA == nil:
		return invalid("clientCaId", l.ClientCAID, "albctl's CA does not exist yet: 'albctl cert ca' creates it")
	case l.ClientCAID != LocalCA:
		c, err := s.Certificate(l.ClientCAID)
		if err != nil {
			return invalid("clientCaId", l.ClientCAID, "no such certificate")
		}
		if c.Usage != UsageCA {
			return invalid("clientCaId", c.Name, "certificate %s is not a CA certificate: import one with 'albctl cert import --ca', or give %s for albctl's own CA", c.Name, LocalCA)
		}
	}
	if l.ClientAuth != ClientAuthRequire && l.ClientAuth != ClientAuthVerifyIfGiven {
		return invalid("clientAuth", l.ClientAuth, "must be %s or %s", ClientAuthRequire, ClientAuthVerifyIfGiven)
	}
	if h := l.ForwardClientCert; h != nil {
		names := []string{h.Subject, h.Issuer, h.Fingerprint, h.Verify}
		for i, name := range names {
			if err := ValidateHeaderChange("forwardClientCert", name); err != nil {
				return err
			}
			if slices.Contains(names[:i], name) {
				return invalid("forwardClientCert", name, "each detail needs a header of its own")
			}
		}
	}
	return nil
}

func (c *Certificate) validateUsage() error {
	switch c.Usage {
	case UsageServer:
		return nil
	case UsageClient:
		if c.KeyPEM == "" {
			return invalid("certPEM", c.Name, "a client certificate needs its key")
		}
	case UsageCA:
		if c.KeyPEM != "" {
			return invalid("keyPEM", c.Name, "a CA certificate is kept without its key")
		}
	default:
		return invalid("usage", c.Usage, "must be empty (server), %s or %s", UsageClient, UsageCA)
	}
	if strings.EqualFold(c.Name, LocalCA) {
		return invalid("name", c.Name, "%s names albctl's own CA", LocalCA)
	}
	return nil
}
