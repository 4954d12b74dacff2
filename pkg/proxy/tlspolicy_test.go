package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/albctl/albctl/pkg/state"
)

var versions = []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13}

var (
	rsaOnce sync.Once
	rsaPair tls.Certificate
	rsaLeaf *x509.Certificate
)

// rsaCert is a self-signed RSA certificate for rsa.localhost: the ECDHE-RSA
// suites and those of RSA key exchange need an RSA key, and the test CA's
// certificates have ECDSA ones.
func rsaCert(t *testing.T) (tls.Certificate, *x509.Certificate) {
	rsaOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "rsa.localhost"},
			DNSNames:     []string{"rsa.localhost"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		rsaLeaf, _ = x509.ParseCertificate(der)
		rsaPair = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return rsaPair, rsaLeaf
}

// systemPolicy is a system policy as serve hands it to the proxy.
func systemPolicy(t *testing.T, name string) TLSPolicy {
	t.Helper()
	p, err := state.New().TLSPolicy(name)
	if err != nil {
		t.Fatal(err)
	}
	minVersion, maxVersion, suites := p.GoConfig()
	return TLSPolicy{MinVersion: minVersion, MaxVersion: maxVersion, CipherSuites: suites}
}

// policyConfig is listener lsn-test in front of a gRPC group, with an ECDSA
// certificate for localhost and an RSA one for rsa.localhost, under policy.
func policyConfig(t *testing.T, policy TLSPolicy) Config {
	cfg := testConfig(t, GroupConfig{})
	pair, _ := rsaCert(t)
	cfg.Listeners[0].Certificates = append(cfg.Listeners[0].Certificates, pair)
	cfg.Listeners[0].TLS = policy
	return cfg
}

// clientTLS verifies the listener's certificates of both kinds.
func clientTLS(t *testing.T, serverName string) *tls.Config {
	_, leaf := rsaCert(t)
	roots := testCA(t).Pool.Clone()
	roots.AddCert(leaf)
	return &tls.Config{RootCAs: roots, ServerName: serverName}
}

// handshake connects with cfg and returns what was negotiated.
func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// suitesBelowTLS13 are all the suites Go implements for TLS 1.2 and below.
func suitesBelowTLS13() []*tls.CipherSuite {
	var out []*tls.CipherSuite
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if !slices.Equal(cs.SupportedVersions, []uint16{tls.VersionTLS13}) {
			out = append(out, cs)
		}
	}
	return out
}

func ids(suites []*tls.CipherSuite) []uint16 {
	out := make([]uint16, len(suites))
	for i, cs := range suites {
		out[i] = cs.ID
	}
	return out
}

// certFor names the certificate a suite needs: only ECDHE-ECDSA suites take
// an ECDSA key.
func certFor(cs *tls.CipherSuite) string {
	if strings.Contains(cs.Name, "_ECDSA_") {
		return "localhost"
	}
	return "rsa.localhost"
}

// offers reports which versions and suites a listener completes handshakes
// with: each version with every suite, and each suite alone at each version
// it supports.
func offers(t *testing.T, addr string) (map[uint16]bool, map[[2]uint16]bool) {
	t.Helper()
	gotVersions, gotSuites := map[uint16]bool{}, map[[2]uint16]bool{}
	all := suitesBelowTLS13()
	for _, v := range versions {
		cfg := clientTLS(t, "localhost")
		cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = v, v, ids(all)
		st, err := handshake(addr, cfg)
		if err == nil && st.Version != v {
			t.Fatalf("asked for %s only, got %s", tls.VersionName(v), tls.VersionName(st.Version))
		}
		gotVersions[v] = err == nil
	}
	for _, cs := range all {
		for _, v := range cs.SupportedVersions {
			cfg := clientTLS(t, certFor(cs))
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = v, v, []uint16{cs.ID}
			st, err := handshake(addr, cfg)
			if err == nil && st.CipherSuite != cs.ID {
				t.Fatalf("asked for %s only, got %s", cs.Name, tls.CipherSuiteName(st.CipherSuite))
			}
			gotSuites[[2]uint16{v, cs.ID}] = err == nil
		}
	}
	return gotVersions, gotSuites
}

func TestSystemTLSPolicies(t *testing.T) {
	for _, sp := range state.SystemTLSPolicies {
		t.Run(sp.Name, func(t *testing.T) {
			policy := systemPolicy(t, sp.Name)
			_, addr := startProxy(t, Options{}, policyConfig(t, policy))
			gotVersions, gotSuites := offers(t, addr)
			for _, v := range versions {
				if want := v >= policy.MinVersion && v <= policy.MaxVersion; gotVersions[v] != want {
					t.Errorf("%s: handshake succeeded %v, want %v", tls.VersionName(v), gotVersions[v], want)
				}
			}
			for _, cs := range suitesBelowTLS13() {
				for _, v := range cs.SupportedVersions {
					want := slices.Contains(policy.CipherSuites, cs.ID) && v >= policy.MinVersion && v <= policy.MaxVersion
					if got := gotSuites[[2]uint16{v, cs.ID}]; got != want {
						t.Errorf("%s at %s: handshake succeeded %v, want %v", cs.Name, tls.VersionName(v), got, want)
					}
				}
			}
			// Every suite the policy lists below TLS 1.3 is one a client can
			// negotiate, at TLS 1.2 at least.
			for _, id := range policy.CipherSuites {
				if !gotSuites[[2]uint16{tls.VersionTLS12, id}] {
					t.Errorf("%s listed but not negotiated", tls.CipherSuiteName(id))
				}
			}
			if policy.MaxVersion == tls.VersionTLS13 {
				cfg := clientTLS(t, "localhost")
				cfg.MinVersion = tls.VersionTLS13
				st, err := handshake(addr, cfg)
				if err != nil || !slices.Contains(sp.Ciphers, tls.CipherSuiteName(st.CipherSuite)) {
					t.Errorf("TLS 1.3: %v, suite %s, want one of %v", err, tls.CipherSuiteName(st.CipherSuite), sp.Ciphers)
				}
			}
		})
	}
}

// TestDefaultTLSPolicyIsWhatListenersAlwaysOffered compares the default
// policy with a listener that has none, as every listener had before
// policies: the same versions and suites, handshake by handshake.
func TestDefaultTLSPolicyIsWhatListenersAlwaysOffered(t *testing.T) {
	_, before := startProxy(t, Options{}, policyConfig(t, TLSPolicy{}))
	_, withDefault := startProxy(t, Options{}, policyConfig(t, systemPolicy(t, state.DefaultTLSPolicy)))
	wantVersions, wantSuites := offers(t, before)
	gotVersions, gotSuites := offers(t, withDefault)
	for _, v := range versions {
		if gotVersions[v] != wantVersions[v] {
			t.Errorf("%s: the default policy accepts %v, a listener without a policy %v", tls.VersionName(v), gotVersions[v], wantVersions[v])
		}
	}
	for key, want := range wantSuites {
		if gotSuites[key] != want {
			t.Errorf("%s at %s: the default policy accepts %v, a listener without a policy %v",
				tls.CipherSuiteName(key[1]), tls.VersionName(key[0]), gotSuites[key], want)
		}
	}
}

// TestTLSPolicyChangeAppliesToNextHandshake changes the policy of a running
// listener: new handshakes follow it, and a connection made before stays.
func TestTLSPolicyChangeAppliesToNextHandshake(t *testing.T) {
	b := startBackend(t, "b1")
	cfg := policyConfig(t, systemPolicy(t, state.DefaultTLSPolicy))
	cfg.Groups["sgp-test"] = GroupConfig{ID: "sgp-test", Servers: servers(100, b)}
	p, addr := startProxy(t, Options{}, cfg)

	// A gRPC client that speaks TLS 1.3 only: once the policy stops
	// offering it, the client could not connect again.
	tls13 := clientTLS(t, "localhost")
	tls13.MinVersion = tls.VersionTLS13
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tls13)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := testpb.NewTestServiceClient(cc)
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}

	tls10 := clientTLS(t, "localhost")
	tls10.MinVersion, tls10.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	if _, err := handshake(addr, tls10); err == nil {
		t.Fatal("TLS 1.0 accepted under the default policy")
	}
	cfg.Listeners[0].TLS = systemPolicy(t, "tls_cipher_policy_1_0")
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(addr, tls10); err != nil {
		t.Fatalf("TLS 1.0 under tls_cipher_policy_1_0: %v", err)
	}
	if _, err := handshake(addr, tls13); err == nil {
		t.Fatal("TLS 1.3 accepted under tls_cipher_policy_1_0")
	}
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("the connection made before the change: %v", err)
	}

	cfg.Listeners[0].TLS = systemPolicy(t, state.DefaultTLSPolicy)
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(addr, tls10); err == nil {
		t.Fatal("TLS 1.0 still accepted after the change back to the default")
	}
	if _, err := handshake(addr, tls13); err != nil {
		t.Fatalf("TLS 1.3 after the change back: %v", err)
	}
}

// TestTLSPolicyChangeAppliesToResumedSessions: session tickets outlive a
// change of policy, but a session resumes only with a version and a suite
// the new policy allows.
func TestTLSPolicyChangeAppliesToResumedSessions(t *testing.T) {
	cbc, gcm := tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
	cfg := policyConfig(t, TLSPolicy{CipherSuites: []uint16{cbc}})
	p, addr := startProxy(t, Options{}, cfg)
	client := clientTLS(t, "localhost")
	client.MaxVersion, client.CipherSuites = tls.VersionTLS12, []uint16{cbc, gcm}
	client.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	for i, wantResumed := range []bool{false, true} {
		if st, err := handshake(addr, client); err != nil || st.DidResume != wantResumed || st.CipherSuite != cbc {
			t.Fatalf("handshake %d: %v, resumed %v, suite %s", i, err, st.DidResume, tls.CipherSuiteName(st.CipherSuite))
		}
	}
	cfg.Listeners[0].TLS.CipherSuites = []uint16{gcm}
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if st, err := handshake(addr, client); err != nil || st.DidResume || st.CipherSuite != gcm {
		t.Fatalf("after the change: %v, resumed %v, suite %s", err, st.DidResume, tls.CipherSuiteName(st.CipherSuite))
	}
}

// TestTLSPolicyOnHTTPListener: a listener in front of an HTTP group takes
// the policy too.
func TestTLSPolicyOnHTTPListener(t *testing.T) {
	cfg := policyConfig(t, systemPolicy(t, "tls_cipher_policy_1_0"))
	cfg.Groups["sgp-test"] = GroupConfig{ID: "sgp-test", Protocol: GroupHTTP}
	p, addr := startProxy(t, Options{}, cfg)
	tls10 := clientTLS(t, "localhost")
	tls10.MinVersion, tls10.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	if _, err := handshake(addr, tls10); err != nil {
		t.Fatalf("TLS 1.0 under tls_cipher_policy_1_0: %v", err)
	}
	cfg.Listeners[0].TLS = systemPolicy(t, "tls_cipher_policy_1_2")
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(addr, tls10); err == nil {
		t.Fatal("TLS 1.0 accepted under tls_cipher_policy_1_2")
	}
}

func TestTLSPolicyRefused(t *testing.T) {
	for _, tt := range []struct {
		policy TLSPolicy
		err    string
	}{
		{TLSPolicy{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}, "the lowest version, TLS 1.3, is above the highest, TLS 1.2"},
		{TLSPolicy{MinVersion: 0x0300}, "unknown TLS version 0x0300"},
		{TLSPolicy{CipherSuites: []uint16{tls.TLS_AES_128_GCM_SHA256}}, "cipher suite TLS_AES_128_GCM_SHA256 is not one of Go's for TLS 1.2 and below"},
		{TLSPolicy{CipherSuites: []uint16{0xc024}}, "cipher suite 0xC024 is not one of Go's for TLS 1.2 and below"},
	} {
		err := New(Options{}).Apply(policyConfig(t, tt.policy))
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%+v: %v, want %q", tt.policy, err, tt.err)
		}
	}
}

// TestTLSPolicyOpenSSL connects with openssl s_client, a TLS stack other
// than Go's, at each old version. OpenSSL 3 allows TLS 1.0 and 1.1 only at
// security level 0, which permits their SHA-1 signatures.
func TestTLSPolicyOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		const msg = "openssl not installed; run scripts/install-test-deps.sh (Debian package openssl)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cfg := policyConfig(t, TLSPolicy{})
	p, addr := startProxy(t, Options{}, cfg)
	sClient := func(args ...string) (string, bool) {
		cmd := exec.Command(bin, append([]string{"s_client", "-brief", "-connect", addr, "-servername", "localhost"}, args...)...)
		cmd.Stdin = bytes.NewReader(nil)
		out, err := cmd.CombinedOutput()
		return string(out), err == nil
	}
	legacy := []string{"-cipher", "DEFAULT@SECLEVEL=0"}
	for _, tt := range []struct {
		policy string
		args   []string
		want   string // the version openssl reports, or "" for a refused handshake
	}{
		{"tls_cipher_policy_1_0", append([]string{"-tls1"}, legacy...), "TLSv1"},
		{"tls_cipher_policy_1_0", append([]string{"-tls1_1"}, legacy...), "TLSv1.1"},
		{"tls_cipher_policy_1_0", []string{"-tls1_3"}, ""},
		{"tls_cipher_policy_1_1", append([]string{"-tls1"}, legacy...), ""},
		{"tls_cipher_policy_1_1", append([]string{"-tls1_1"}, legacy...), "TLSv1.1"},
		{"tls_cipher_policy_1_2", append([]string{"-tls1"}, legacy...), ""},
		{"tls_cipher_policy_1_2", append([]string{"-tls1_1"}, legacy...), ""},
		{"tls_cipher_policy_1_2", []string{"-tls1_2"}, "TLSv1.2"},
		// A suite the cloud lists for the policy and Go lacks.
		{"tls_cipher_policy_1_2_strict", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA384"}, ""},
		{"tls_cipher_policy_1_2_strict", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"}, "TLSv1.2"},
		{state.DefaultTLSPolicy, []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"}, ""},
		{state.DefaultTLSPolicy, append([]string{"-tls1_1"}, legacy...), ""},
		{state.DefaultTLSPolicy, []string{"-tls1_3"}, "TLSv1.3"},
	} {
		cfg.Listeners[0].TLS = systemPolicy(t, tt.policy)
		if err := p.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		out, ok := sClient(tt.args...)
		if connected := ok && strings.Contains(out, "CONNECTION ESTABLISHED"); connected != (tt.want != "") {
			t.Errorf("%s, openssl s_client %s: connected %v, want %v\n%s", tt.policy, strings.Join(tt.args, " "), connected, tt.want != "", out)
		} else if connected && !strings.Contains(out, "Protocol version: "+tt.want+"\n") {
			t.Errorf("%s, openssl s_client %s: want %s\n%s", tt.policy, strings.Join(tt.args, " "), tt.want, out)
		}
	}
}
