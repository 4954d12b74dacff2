// Package certs issues server certificates from albctl's local certificate authority and checks
// certificates that users import, so that clients can verify listeners instead of skipping
// verification.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Validity periods of what albctl issues.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 397 * 24 * time.Hour // the longest that browsers and most clients accept
)

// NewCA creates a certificate authority and returns its certificate and key, PEM.
func NewCA(now time.Time) (certPEM, keyPEM string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "albctl local CA", Organization: []string{"albctl"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	return encode(der, key)
}

// Issue signs a server certificate for domains (host names, wildcards or IP addresses) with the
// CA. The first domain becomes the subject's common name.
func Issue(caCertPEM, caKeyPEM string, domains []string, now time.Time) (certPEM, keyPEM string, notAfter time.Time, err error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: domains[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, d := range domains {
		if ip := net.ParseIP(d); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, d)
		}
	}
	return sign(caCertPEM, caKeyPEM, tmpl, now)
}

// IssueClient signs a client certificate, for mutual TLS, whose subject's common name is name.
func IssueClient(caCertPEM, caKeyPEM, name string, now time.Time) (certPEM, keyPEM string, notAfter time.Time, err error) {
	return sign(caCertPEM, caKeyPEM, &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"albctl"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, now)
}

// sign completes a leaf template (serial, validity, key usage) and signs it with the CA.
func sign(caCertPEM, caKeyPEM string, tmpl *x509.Certificate, now time.Time) (certPEM, keyPEM string, notAfter time.Time, err error) {
	ca, err := tls.X509KeyPair([]byte(caCertPEM), []byte(caKeyPEM))
	if err != nil {
		return "", "", time.Time{}, fmt.Errorf("albctl CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return "", "", time.Time{}, fmt.Errorf("albctl CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", time.Time{}, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(LeafValidity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return "", "", time.Time{}, err
	}
	certPEM, keyPEM, err = encode(der, key)
	return certPEM, keyPEM, tmpl.NotAfter, err
}

// InspectCA checks that certPEM holds CA certificates, which can verify client certificates,
// and returns the first one's subject and expiry.
func InspectCA(certPEM []byte) (subject string, notAfter time.Time, err error) {
	rest := certPEM
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return "", time.Time{}, err
		}
		if !c.IsCA {
			return "", time.Time{}, fmt.Errorf("%s is not a CA certificate (its basic constraints do not say CA), so it cannot verify client certificates", c.Subject)
		}
		if n == 0 {
			subject, notAfter = c.Subject.String(), c.NotAfter
		}
		n++
	}
	if n == 0 {
		return "", time.Time{}, errors.New("no PEM certificate")
	}
	return subject, notAfter, nil
}

// Info is what albctl records of a certificate.
type Info struct {
	Domains  []string
	NotAfter time.Time
}

// Inspect checks that the key matches the certificate and returns the names the certificate
// covers (its DNS and IP subject alternative names, or its common name when it has none).
func Inspect(certPEM, keyPEM []byte) (Info, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return Info{}, describePairError(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return Info{}, err
	}
	info := Info{NotAfter: leaf.NotAfter, Domains: append([]string(nil), leaf.DNSNames...)}
	for _, ip := range leaf.IPAddresses {
		info.Domains = append(info.Domains, ip.String())
	}
	if len(info.Domains) == 0 && leaf.Subject.CommonName != "" {
		info.Domains = []string{leaf.Subject.CommonName}
	}
	if len(info.Domains) == 0 {
		return Info{}, errors.New("the certificate names no domain (no subject alternative names, no common name)")
	}
	return info, nil
}

func describePairError(err error) error {
	if err.Error() == "tls: private key does not match public key" {
		return errors.New("the private key does not match the certificate")
	}
	return err
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

func encode(der []byte, key crypto.Signer) (certPEM, keyPEM string, err error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certPEM, keyPEM, nil
}
