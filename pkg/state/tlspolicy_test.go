package state

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestSystemTLSPolicyTable checks the table against Go: every suite a policy offers is one Go
// implements for the policy's versions, and every one it marks unsupported is one Go lacks,
// or, for the default only, one Go leaves out of its defaults.
func TestSystemTLSPolicyTable(t *testing.T) {
	goSuites := map[uint16]*tls.CipherSuite{}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		goSuites[cs.ID] = cs
	}
	names := map[string]bool{}
	for _, c := range TLSCiphers {
		if names[c.Name] {
			t.Errorf("%s listed twice", c.Name)
		}
		names[c.Name] = true
		cs, inGo := goSuites[c.ID]
		if c.ID != 0 && (!inGo || slices.Contains(cs.SupportedVersions, tls.VersionTLS13) != c.TLS13) {
			t.Errorf("%s: ID %#04x is not a Go suite of its TLS versions", c.Name, c.ID)
		}
	}
	var system []string
	for _, p := range SystemTLSPolicies {
		system = append(system, p.Name)
		if p.ID != p.Name || !p.System || p.Description == "" {
			t.Errorf("%s: ID %q, system %v, description %q", p.Name, p.ID, p.System, p.Description)
		}
		minVersion, maxVersion, suites := p.GoConfig()
		if minVersion == 0 || maxVersion < minVersion {
			t.Errorf("%s: versions %s-%s", p.Name, p.MinVersion, p.MaxVersion)
		}
		if (maxVersion == tls.VersionTLS13) != (p.Name == DefaultTLSPolicy) {
			t.Errorf("%s: up to %s; of the system policies only the default offers TLS 1.3", p.Name, p.MaxVersion)
		}
		offered := 0
		for _, name := range p.Ciphers {
			c, ok := LookupTLSCipher(name)
			if !ok || c.ID == 0 || c.TLS13 && maxVersion < tls.VersionTLS13 {
				t.Errorf("%s offers %s, which it cannot", p.Name, name)
			}
			if !c.TLS13 {
				offered++
			}
		}
		if offered != len(suites) {
			t.Errorf("%s: %d suites below TLS 1.3 listed, %d for Go", p.Name, offered, len(suites))
		}
		for _, name := range p.Unsupported {
			c, ok := LookupTLSCipher(name)
			if !ok || slices.Contains(p.Ciphers, name) || c.ID != 0 && p.Name != DefaultTLSPolicy {
				t.Errorf("%s marks %s unsupported, wrongly", p.Name, name)
			}
		}
	}
	want := []string{"tls_cipher_policy_1_0", "tls_cipher_policy_1_1", "tls_cipher_policy_1_2", "tls_cipher_policy_1_2_strict", "tls_cipher_policy_1_2_strict_with_1_3"}
	if !slices.Equal(system, want) {
		t.Errorf("system policies %v, want the cloud's %v", system, want)
	}
}

func TestCustomTLSPolicy(t *testing.T) {
	s := scenario(t)
	p, err := s.CreateTLSPolicy(TLSPolicy{Name: "ecdhe-gcm", MinVersion: "tlsv1.2", Ciphers: []string{"ecdhe-ecdsa-aes128-gcm-sha256", " ECDHE-RSA-AES128-GCM-SHA256"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.ID, "tlsp-") || p.MinVersion != TLS12 || !slices.Equal(p.Ciphers, []string{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"}) {
		t.Fatalf("stored as %+v", p)
	}
	id := p.ID
	if _, err := s.CreateTLSPolicy(TLSPolicy{Name: "tls13-only", MinVersion: TLS13}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"ecdhe-gcm", id} {
		info, err := s.TLSPolicy(ref)
		if err != nil || info.ID != id || info.System || info.MaxVersion != TLS13 ||
			!slices.Equal(info.Ciphers, []string{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}) {
			t.Fatalf("TLSPolicy(%s): %+v, %v", ref, info, err)
		}
	}
	if all := s.AllTLSPolicies(); len(all) != len(SystemTLSPolicies)+2 || all[len(all)-2].Name != "ecdhe-gcm" {
		t.Fatalf("AllTLSPolicies: %+v", all)
	}

	l := &s.Listeners[0]
	if p, err := s.ListenerTLSPolicy(l); err != nil || p.Name != DefaultTLSPolicy {
		t.Fatalf("a listener without a policy runs %+v, %v", p, err)
	}
	if _, err := s.UpdateListener(l.ID, func(l *Listener) error { l.TLSPolicy = "ecdhe-gcm"; return nil }); err != nil {
		t.Fatal(err)
	}
	if l.TLSPolicy != id {
		t.Fatalf("stored as %q, want the ID %s", l.TLSPolicy, id)
	}
	info, err := s.ListenerTLSPolicy(l)
	if err != nil {
		t.Fatal(err)
	}
	minVersion, maxVersion, suites := info.GoConfig()
	if minVersion != tls.VersionTLS12 || maxVersion != tls.VersionTLS13 ||
		!slices.Equal(suites, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}) {
		t.Fatalf("Go config %x %x %x", minVersion, maxVersion, suites)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}

	var conflicting *ConflictError
	if _, err := s.DeleteTLSPolicy("ecdhe-gcm"); !errors.As(err, &conflicting) || !strings.Contains(err.Error(), "TLS policy ecdhe-gcm is used by listeners "+l.ID) {
		t.Fatalf("delete while used: %v", err)
	}
	if _, err := s.DeleteTLSPolicy(DefaultTLSPolicy); !errors.As(err, &conflicting) || !strings.Contains(err.Error(), "is a system policy") {
		t.Fatalf("delete a system policy: %v", err)
	}
	var notFound *NotFoundError
	if _, err := s.DeleteTLSPolicy("nope"); !errors.As(err, &notFound) {
		t.Fatalf("delete an unknown policy: %v", err)
	}
	if _, err := s.UpdateListener(l.ID, func(l *Listener) error { l.TLSPolicy = "tls_cipher_policy_1_0"; return nil }); err != nil || l.TLSPolicy != "tls_cipher_policy_1_0" {
		t.Fatalf("system policy: %v, stored as %q", err, l.TLSPolicy)
	}
	if deleted, err := s.DeleteTLSPolicy(id); err != nil || deleted.Name != "ecdhe-gcm" || len(s.TLSPolicies) != 1 {
		t.Fatalf("delete: %+v, %v", deleted, err)
	}
}

func TestTLSPolicyRefused(t *testing.T) {
	create := func(minVersion string, ciphers ...string) func(s *State) error {
		return func(s *State) error {
			_, err := s.CreateTLSPolicy(TLSPolicy{Name: "custom", MinVersion: minVersion, Ciphers: ciphers})
			return err
		}
	}
	tests := []struct {
		name   string
		change func(s *State) error
		field  string // the InvalidError field, or "" for a conflict
		want   string
	}{
		{"unknown version", create("TLSv1.4", "AES128-SHA"), "minVersion", "must be TLSv1.0, TLSv1.1, TLSv1.2, TLSv1.3"},
		{"unknown cipher", create(TLS12, "ECDHE-RSA-AES128-GCM-SHA256", "RC4-MD5"), "ciphers", "unknown cipher suite"},
		{"cipher Go lacks", create(TLS12, "ECDHE-RSA-AES256-SHA384"), "ciphers", "Go's TLS does not implement this suite"},
		{"TLS 1.3 cipher", create(TLS12, "TLS_AES_128_GCM_SHA256"), "ciphers",
			"a suite of TLS 1.3: Go always offers TLS 1.3's suites (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256) with TLS 1.3, and they cannot be chosen"},
		{"TLS 1.3 with ciphers", create(TLS13, "ECDHE-RSA-AES128-GCM-SHA256"), "ciphers", "a TLSv1.3-only policy takes no ciphers"},
		{"no ciphers", create(TLS10), "ciphers", "a policy that offers TLSv1.0 needs at least one suite"},
		{"cipher twice", create(TLS12, "AES128-SHA", "aes128-sha"), "ciphers", "the suite is listed twice"},
		{"system name", func(s *State) error {
			_, err := s.CreateTLSPolicy(TLSPolicy{Name: "tls_cipher_policy_1_2", MinVersion: TLS13})
			return err
		}, "", "tls_cipher_policy_1_2 is the name of a system policy"},
		{"name like an ID", func(s *State) error {
			_, err := s.CreateTLSPolicy(TLSPolicy{Name: "tlsp-mine", MinVersion: TLS13})
			return err
		}, "name", `must not start with "tlsp-"`},
		{"name taken", func(s *State) error {
			if err := create(TLS13)(s); err != nil {
				return err
			}
			return create(TLS13)(s)
		}, "", `a TLS policy named "custom" already exists`},
		{"policy on an HTTP listener", func(s *State) error {
			if _, err := s.CreateServerGroup(NewServerGroup("web", ProtocolHTTP)); err != nil {
				return err
			}
			_, err := s.CreateListener(Listener{LBID: "demo", Protocol: ProtocolHTTP, Port: 8080, ServerGroupID: "web", TLSPolicy: "tls_cipher_policy_1_2",
				IdleTimeout: Duration(DefaultIdleTimeout), RequestTimeout: Duration(DefaultRequestTimeout)})
			return err
		}, "tlsPolicy", "only HTTPS listeners take a TLS policy"},
		{"listener turned HTTP keeps its policy", func(s *State) error {
			if _, err := s.CreateServerGroup(NewServerGroup("web", ProtocolHTTP)); err != nil {
				return err
			}
			if _, err := s.UpdateListener(s.Listeners[0].ID, func(l *Listener) error { l.TLSPolicy = "tls_cipher_policy_1_2"; return nil }); err != nil {
				return err
			}
			_, err := s.UpdateListener(s.Listeners[0].ID, func(l *Listener) error {
				l.Protocol, l.HTTP2, l.CertificateID, l.ServerGroupID = ProtocolHTTP, false, "", "web"
				return nil
			})
			return err
		}, "tlsPolicy", `invalid tlsPolicy "tls_cipher_policy_1_2": only HTTPS listeners take a TLS policy`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := scenario(t)
			err := tt.change(s)
			if err == nil {
				t.Fatal("the change was accepted")
			}
			wantRefusal(t, err, tt.field, tt.want)
		})
	}

	s := scenario(t)
	var notFound *NotFoundError
	_, err := s.UpdateListener(s.Listeners[0].ID, func(l *Listener) error { l.TLSPolicy = "nope"; return nil })
	if !errors.As(err, &notFound) || err.Error() != `TLS policy "nope" not found` || s.Listeners[0].TLSPolicy != "" {
		t.Fatalf("unknown policy: %v", err)
	}
}

// TestStoreTLSPolicies: a document without policies is written as before, and the file's
// policies are validated like those made by commands.
func TestStoreTLSPolicies(t *testing.T) {
	old, err := json.MarshalIndent(scenario(t), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Decode("old.json", old)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := json.MarshalIndent(s, "", "  ")
	if !bytes.Equal(old, again) || bytes.Contains(old, []byte("tlsPolic")) {
		t.Fatalf("a document without policies changed:\n%s\n%s", old, again)
	}

	s.TLSPolicies = []TLSPolicy{{ID: "tlsp-a", Name: "custom", MinVersion: TLS12, Ciphers: []string{"AES256-SHA256"}}}
	doc, _ := json.Marshal(s)
	var corrupt *CorruptError
	if _, err := Decode("bad.json", doc); !errors.As(err, &corrupt) || !strings.Contains(err.Error(), `invalid ciphers "AES256-SHA256": Go's TLS does not implement this suite`) {
		t.Fatalf("a policy with a suite Go lacks: %v", err)
	}
	s.TLSPolicies[0].Ciphers = []string{"AES256-SHA"}
	s.Listeners[0].TLSPolicy = "tlsp-b"
	doc, _ = json.Marshal(s)
	if _, err := Decode("bad.json", doc); !errors.As(err, &corrupt) || !strings.Contains(err.Error(), `invalid tlsPolicy "tlsp-b": no such TLS policy`) {
		t.Fatalf("a listener with a policy that does not exist: %v", err)
	}
	s.Listeners[0].TLSPolicy = "tlsp-a"
	doc, _ = json.Marshal(s)
	if _, err := Decode("good.json", doc); err != nil {
		t.Fatal(err)
	}
}
