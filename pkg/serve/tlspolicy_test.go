package serve

import (
	"context"
	"crypto/tls"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/echo/echopb"
	"github.com/albctl/albctl/pkg/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// TestServeFollowsTheTLSPolicy changes a running listener's policy in the state file: new
// handshakes follow it, and a connection made before keeps working.
func TestServeFollowsTheTLSPolicy(t *testing.T) {
	_, b1 := testutil.StartEcho(t, echo.Options{Name: "b1"})
	f := startServe(t, server(t, b1, 100))
	addr := "127.0.0.1:" + strconv.Itoa(f.port)
	wantConfig(t, f, tls.VersionTLS12, tls.VersionTLS13, 10)
	handshake := func(minVersion, maxVersion uint16, suites ...uint16) (tls.ConnectionState, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: f.caPool, ServerName: "grpc.example.test",
			MinVersion: minVersion, MaxVersion: maxVersion, CipherSuites: suites})
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		return c.ConnectionState(), nil
	}
	setPolicy := func(change func(s *state.State) error) {
		t.Helper()
		if _, err := f.store.Update(context.Background(), change); err != nil {
			t.Fatal(err)
		}
	}

	// A client that speaks only TLS 1.3, which tls_cipher_policy_1_2 will not offer.
	creds := credentials.NewTLS(&tls.Config{RootCAs: f.caPool, ServerName: "grpc.example.test", MinVersion: tls.VersionTLS13})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := echopb.NewEchoClient(cc)
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.UnaryEcho(ctx, &echopb.EchoRequest{Message: "hi"})
		return err
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(tls.VersionTLS10, tls.VersionTLS10); err == nil {
		t.Fatal("TLS 1.0 accepted by the default policy")
	}

	setPolicy(func(s *state.State) error {
		if _, err := s.CreateTLSPolicy(state.TLSPolicy{Name: "legacy-cbc", MinVersion: state.TLS10, Ciphers: []string{"ECDHE-ECDSA-AES128-SHA"}}); err != nil {
			return err
		}
		_, err := s.UpdateListener(s.Listeners[0].ID, func(l *state.Listener) error { l.TLSPolicy = "legacy-cbc"; return nil })
		return err
	})
	testutil.WaitFor(t, "the custom policy to apply", func() bool {
		_, err := handshake(tls.VersionTLS10, tls.VersionTLS10)
		return err == nil
	})
	if st, err := handshake(tls.VersionTLS12, tls.VersionTLS12); err != nil || st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA {
		t.Fatalf("TLS 1.2 under legacy-cbc: %v, suite %s", err, tls.CipherSuiteName(st.CipherSuite))
	}
	if _, err := handshake(tls.VersionTLS12, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); err == nil {
		t.Fatal("a suite legacy-cbc does not list was accepted")
	}
	if st, err := handshake(tls.VersionTLS13, tls.VersionTLS13); err != nil || !slices.Contains([]uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}, st.CipherSuite) {
		t.Fatalf("TLS 1.3 under legacy-cbc: %v, suite %s", err, tls.CipherSuiteName(st.CipherSuite))
	}

	setPolicy(func(s *state.State) error {
		_, err := s.UpdateListener(s.Listeners[0].ID, func(l *state.Listener) error { l.TLSPolicy = "tls_cipher_policy_1_2"; return nil })
		return err
	})
	testutil.WaitFor(t, "tls_cipher_policy_1_2 to apply", func() bool {
		_, err := handshake(tls.VersionTLS13, tls.VersionTLS13)
		return err != nil
	})
	if _, err := handshake(tls.VersionTLS10, tls.VersionTLS10); err == nil {
		t.Fatal("TLS 1.0 accepted by tls_cipher_policy_1_2")
	}
	if err := call(); err != nil {
		t.Fatalf("the connection made before the changes: %v", err)
	}

	wantConfig(t, f, tls.VersionTLS12, tls.VersionTLS12, 16)
}

// wantConfig checks the policy serve hands the proxy for the listener.
func wantConfig(t *testing.T, f *fixture, minVersion, maxVersion uint16, suites int) {
	t.Helper()
	s, err := f.store.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := proxyConfig(s, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if tp := cfg.Listeners[0].TLS; tp.MinVersion != minVersion || tp.MaxVersion != maxVersion || len(tp.CipherSuites) != suites {
		t.Fatalf("TLS policy %+v, want %s-%s with %d suites", tp, tls.VersionName(minVersion), tls.VersionName(maxVersion), suites)
	}
}
