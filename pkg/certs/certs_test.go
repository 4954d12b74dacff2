package certs

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func TestIssuedCertificatesVerifyAgainstTheCA(t *testing.T) {
	now := time.Now()
	caCert, caKey, err := NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, notAfter, err := Issue(caCert, caKey, []string{"grpc.example.test", "*.api.example.test", "127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if d := notAfter.Sub(now); d < LeafValidity-time.Minute || d > LeafValidity+time.Minute {
		t.Fatalf("certificate valid for %v, want %v", d, LeafValidity)
	}
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(caCert))
	for _, name := range []string{"grpc.example.test", "x.api.example.test", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"other.example.test", "api.example.test", "127.0.0.2"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err == nil {
			t.Errorf("%s verified, but the certificate does not cover it", name)
		}
	}
	// Another CA's clients must not trust it.
	otherCA, _, _ := NewCA(now)
	others := x509.NewCertPool()
	others.AppendCertsFromPEM([]byte(otherCA))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: others, DNSName: "grpc.example.test"}); err == nil {
		t.Error("verified against a CA that did not sign it")
	}
}

func TestInspect(t *testing.T) {
	caCert, caKey, _ := NewCA(time.Now())
	certPEM, keyPEM, notAfter, err := Issue(caCert, caKey, []string{"a.example.test", "::1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	info, err := Inspect([]byte(certPEM), []byte(keyPEM))
	if err != nil || strings.Join(info.Domains, ",") != "a.example.test,::1" || !info.NotAfter.Equal(notAfter.Truncate(time.Second)) {
		t.Fatalf("Inspect = %+v, %v; want a.example.test,::1 until %v", info, err, notAfter)
	}
	_, otherKey, _, _ := Issue(caCert, caKey, []string{"b.example.test"}, time.Now())
	if _, err := Inspect([]byte(certPEM), []byte(otherKey)); err == nil || err.Error() != "the private key does not match the certificate" {
		t.Fatalf("mismatched key: %v", err)
	}
	if _, err := Inspect([]byte("not pem"), []byte(keyPEM)); err == nil {
		t.Fatal("garbage accepted")
	}
}
