package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/albctl/albctl/pkg/certs"
)

// clientPKI is a CA for client certificates, with a certificate of each kind the tests need.
type clientPKI struct {
	pool                   *x509.CertPool
	good, expired, foreign tls.Certificate
}

func newClientPKI(t *testing.T) clientPKI {
	t.Helper()
	issue := func(caCert, caKey string, now time.Time) tls.Certificate {
		certPEM, keyPEM, _, err := certs.IssueClient(caCert, caKey, "dev", now)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
	caCert, caKey, err := certs.NewCA(time.Now().Add(-3 * 365 * 24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey, err := certs.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p := clientPKI{pool: x509.NewCertPool(),
		good:    issue(caCert, caKey, time.Now()),
		expired: issue(caCert, caKey, time.Now().Add(-2*365*24*time.Hour)),
		foreign: issue(otherCert, otherKey, time.Now()),
	}
	p.pool.AppendCertsFromPEM([]byte(caCert))
	return p
}

var testCertHeaders = &ClientCertHeaders{Subject: "x-client-subject", Issuer: "x-client-issuer", Fingerprint: "x-client-fingerprint", Verify: "x-client-verify"}

// dialWithCert dials the listener with grpc-go, presenting certs.
func dialWithCert(t *testing.T, addr string, certs ...tls.Certificate) testpb.TestServiceClient {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost", Certificates: certs})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func TestMutualTLS(t *testing.T) {
	pki := newClientPKI(t)
	b := startBackend(t, "b1")
	cfg := testConfig(t, GroupConfig{Servers: servers(100, b)})
	cfg.Listeners[0].ClientCAs, cfg.Listeners[0].RequireClientCert = pki.pool, true
	cfg.Listeners[0].ClientCertHeaders = testCertHeaders
	p, addr := startProxy(t, Options{}, cfg)

	for _, c := range []struct {
		name  string
		certs []tls.Certificate
	}{{"no certificate", nil}, {"another CA's", []tls.Certificate{pki.foreign}}, {"expired", []tls.Certificate{pki.expired}}} {
		_, err := dialWithCert(t, addr, c.certs...).UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{})
		if err == nil {
			t.Fatalf("%s: the call passed", c.name)
		}
	}
	if n := b.Calls.Load(); n != 0 {
		t.Fatalf("refused clients made %d calls", n)
	}

	// A good certificate: the server learns who called, and a client cannot say it itself.
	client := dialWithCert(t, addr, pki.good)
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 5*time.Second), "x-client-subject", "CN=admin", "x-client-verify", "SUCCESS")
	if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	md, _ := b.Seen()
	sum := sha256.Sum256(pki.good.Certificate[0])
	for name, want := range map[string]string{
		"x-client-subject": "CN=dev,O=albctl", "x-client-issuer": "CN=albctl local CA,O=albctl",
		"x-client-fingerprint": hex.EncodeToString(sum[:]), "x-client-verify": "SUCCESS",
	} {
		if got := md.Get(name); len(got) != 1 || got[0] != want {
			t.Errorf("server saw %s %q, want only %q", name, got, want)
		}
	}

	// Client certificates become optional: a client without one is admitted and said to be so;
	// the connection admitted before the change keeps working.
	cfg.Listeners[0].RequireClientCert = false
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("admitted connection after the change: %v", err)
	}
	if _, err := dialWithCert(t, addr).UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("verify-if-given without a certificate: %v", err)
	}
	md, _ = b.Seen()
	if got := md.Get("x-client-verify"); len(got) != 1 || got[0] != "NONE" || len(md.Get("x-client-subject")) != 0 {
		t.Fatalf("server saw %v for a client without a certificate", md)
	}
}

func TestMutualTLSForHTTPGroups(t *testing.T) {
	pki := newClientPKI(t)
	b := webBackendEchoingHeaders(t)
	cfg := webConfig(t, true, GroupConfig{Servers: []ServerConfig{{Addr: hostPort(b), Weight: 100}}})
	cfg.Listeners[0].ClientCAs, cfg.Listeners[0].RequireClientCert = pki.pool, true
	cfg.Listeners[0].ClientCertHeaders = testCertHeaders
	_, addr := startProxy(t, Options{}, cfg)

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost", Certificates: []tls.Certificate{pki.good}}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "https://"+addr+"/", nil)
	req.Header.Set("X-Client-Subject", "CN=admin")
	res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := res.Header.Values("Seen-X-Client-Subject"); len(got) != 1 || got[0] != "CN=dev,O=albctl" {
		t.Fatalf("server saw subject %q", got)
	}
	bare := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost"}}
	t.Cleanup(bare.CloseIdleConnections)
	if _, err := (&http.Client{Transport: bare, Timeout: 10 * time.Second}).Get("https://" + addr + "/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client without a certificate: %v", err)
	}
}

// webBackendEchoingHeaders is an HTTP server that returns each request header X as Seen-X.
func webBackendEchoingHeaders(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for name, values := range r.Header {
			for _, v := range values {
				w.Header().Add("Seen-"+name, v)
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}
