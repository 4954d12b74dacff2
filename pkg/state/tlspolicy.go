package state

import (
	"crypto/tls"
	"slices"
	"strings"
)

// TLS security policies: the TLS versions and cipher suites an HTTPS listener offers. The
// system policies are the cloud's, mapped to what Go's crypto/tls implements; custom ones are
// the user's.

// DefaultTLSPolicy is the policy of HTTPS listeners that name none. It is the system policy
// closest to what listeners always offered, and offers exactly that: TLS 1.3, and TLS 1.2 with
// Go's default suites (forward-secret ECDHE with AES-GCM, ChaCha20-Poly1305 or AES-CBC-SHA).
const DefaultTLSPolicy = "tls_cipher_policy_1_2_strict_with_1_3"

// TLSPolicy is a custom TLS security policy: the lowest TLS version a listener offers (every
// later one up to TLS 1.3 is offered too) and its cipher suites of TLS 1.2 and below.
type TLSPolicy struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	MinVersion string   `json:"minVersion"`
	Ciphers    []string `json:"ciphers"`
}

// TLSPolicyInfo is a policy, system or custom, as listeners run it.
type TLSPolicyInfo struct {
	// ID is a system policy's name, or a custom policy's ID.
	ID          string `json:"id"`
	Name        string `json:"name"`
	System      bool   `json:"system"`
	Description string `json:"description,omitempty"`
	MinVersion  string `json:"minVersion"`
	MaxVersion  string `json:"maxVersion"`
	// Ciphers are the suites offered, TLS 1.3's last.
	Ciphers []string `json:"ciphers"`
	// Unsupported are suites of the cloud's policy that albctl does not offer.
	Unsupported []string `json:"unsupported,omitempty"`
}

// TLS versions, as the cloud writes them.
const (
	TLS10 = "TLSv1.0"
	TLS11 = "TLSv1.1"
	TLS12 = "TLSv1.2"
	TLS13 = "TLSv1.3"
)

// TLSVersions lists the TLS versions, oldest first.
var TLSVersions = []string{TLS10, TLS11, TLS12, TLS13}

var tlsVersionIDs = map[string]uint16{TLS10: tls.VersionTLS10, TLS11: tls.VersionTLS11, TLS12: tls.VersionTLS12, TLS13: tls.VersionTLS13}

// TLSCipher is a cipher suite by the OpenSSL name the cloud uses, with Go's ID for it.
type TLSCipher struct {
	Name string
	// ID is 0 for the suites Go's TLS does not implement.
	ID uint16
	// TLS13 marks TLS 1.3's suites: Go offers those it implements whenever TLS 1.3 is
	// negotiated, and they cannot be chosen.
	TLS13 bool
}

// TLSCiphers are the suites the system policies name. The two CHACHA20-POLY1305 suites of TLS
// 1.2 are not in the cloud's policies; they are here because listeners always offered them.
var TLSCiphers = []TLSCipher{
	{"ECDHE-ECDSA-AES128-GCM-SHA256", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false},
	{"ECDHE-ECDSA-AES256-GCM-SHA384", tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, false},
	{"ECDHE-ECDSA-AES128-SHA256", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, false},
	{"ECDHE-ECDSA-AES256-SHA384", 0, false},
	{"ECDHE-RSA-AES128-GCM-SHA256", tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, false},
	{"ECDHE-RSA-AES256-GCM-SHA384", tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, false},
	{"ECDHE-RSA-AES128-SHA256", tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, false},
	{"ECDHE-RSA-AES256-SHA384", 0, false},
	{"AES128-GCM-SHA256", tls.TLS_RSA_WITH_AES_128_GCM_SHA256, false},
	{"AES256-GCM-SHA384", tls.TLS_RSA_WITH_AES_256_GCM_SHA384, false},
	{"AES128-SHA256", tls.TLS_RSA_WITH_AES_128_CBC_SHA256, false},
	{"AES256-SHA256", 0, false},
	{"ECDHE-ECDSA-AES128-SHA", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, false},
	{"ECDHE-ECDSA-AES256-SHA", tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, false},
	{"ECDHE-RSA-AES128-SHA", tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, false},
	{"ECDHE-RSA-AES256-SHA", tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, false},
	{"AES128-SHA", tls.TLS_RSA_WITH_AES_128_CBC_SHA, false},
	{"AES256-SHA", tls.TLS_RSA_WITH_AES_256_CBC_SHA, false},
	{"DES-CBC3-SHA", tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA, false},
	{"ECDHE-ECDSA-CHACHA20-POLY1305", tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, false},
	{"ECDHE-RSA-CHACHA20-POLY1305", tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, false},
	{"TLS_AES_128_GCM_SHA256", tls.TLS_AES_128_GCM_SHA256, true},
	{"TLS_AES_256_GCM_SHA384", tls.TLS_AES_256_GCM_SHA384, true},
	{"TLS_CHACHA20_POLY1305_SHA256", tls.TLS_CHACHA20_POLY1305_SHA256, true},
	{"TLS_AES_128_CCM_SHA256", 0, true},
	{"TLS_AES_128_CCM_8_SHA256", 0, true},
}

// The suite lists of the system policies.
var (
	// tls_cipher_policy_1_0, 1_1 and 1_2 share the cloud's widest list.
	wideCiphers = []string{
		"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-SHA256",
		"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA256",
		"AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA256",
		"ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA",
		"AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
	}
	wideUnsupported = []string{"ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384", "AES256-SHA256"}

	strictCiphers = []string{
		"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-SHA256",
		"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA256",
		"ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA",
	}
	strictUnsupported = []string{"ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384"}

	// The default keeps the suites listeners always offered, Go's defaults: the cloud's list
	// for this policy has the two ECDHE AES128-SHA256 suites instead of ChaCha20-Poly1305. Go
	// leaves CBC with SHA-256 out of its defaults (its implementation has no countermeasures
	// against Lucky13), and so does the default; tls_cipher_policy_1_2_strict has them.
	defaultCiphers = []string{
		"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
		"ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
		"ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA",
		"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
	}
	defaultUnsupported = []string{
		"ECDHE-ECDSA-AES128-SHA256", "ECDHE-RSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384",
		"TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256",
	}
)

// SystemTLSPolicies are the cloud's system policies as albctl runs them; of these only the
// last, the default, offers TLS 1.3.
var SystemTLSPolicies = []TLSPolicyInfo{
	systemPolicy("tls_cipher_policy_1_0", "TLS 1.0 to 1.2 with every suite, RSA key exchange and 3DES included: for the oldest clients",
		TLS10, TLS12, wideCiphers, wideUnsupported),
	systemPolicy("tls_cipher_policy_1_1", "TLS 1.1 and 1.2 with the suites of tls_cipher_policy_1_0",
		TLS11, TLS12, wideCiphers, wideUnsupported),
	systemPolicy("tls_cipher_policy_1_2", "TLS 1.2 only, with the suites of tls_cipher_policy_1_0",
		TLS12, TLS12, wideCiphers, wideUnsupported),
	systemPolicy("tls_cipher_policy_1_2_strict", "TLS 1.2 only, forward-secret ECDHE suites only",
		TLS12, TLS12, strictCiphers, strictUnsupported),
	systemPolicy(DefaultTLSPolicy, "TLS 1.2 with forward-secret ECDHE suites, and TLS 1.3: the default, what listeners always offered",
		TLS12, TLS13, defaultCiphers, defaultUnsupported),
}

func systemPolicy(name, description, minVersion, maxVersion string, ciphers, unsupported []string) TLSPolicyInfo {
	return TLSPolicyInfo{ID: name, Name: name, System: true, Description: description, MinVersion: minVersion, MaxVersion: maxVersion,
		Ciphers: ciphers, Unsupported: unsupported}
}

// LookupTLSCipher finds a suite by name, in any case.
func LookupTLSCipher(name string) (TLSCipher, bool) {
	for _, c := range TLSCiphers {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return TLSCipher{}, false
}

// tls13Ciphers are the TLS 1.3 suites Go offers.
func tls13Ciphers() []string {
	var out []string
	for _, c := range TLSCiphers {
		if c.TLS13 && c.ID != 0 {
			out = append(out, c.Name)
		}
	}
	return out
}

// Info is the custom policy as listeners run it: TLS 1.3, with its suites, is always offered.
func (p *TLSPolicy) Info() TLSPolicyInfo {
	return TLSPolicyInfo{ID: p.ID, Name: p.Name, MinVersion: p.MinVersion, MaxVersion: TLS13,
		Ciphers: append(slices.Clone(p.Ciphers), tls13Ciphers()...)}
}

// GoConfig is the policy in crypto/tls's terms: the range of versions, and the suites of TLS
// 1.2 and below.
func (p *TLSPolicyInfo) GoConfig() (minVersion, maxVersion uint16, suites []uint16) {
	for _, name := range p.Ciphers {
		if c, ok := LookupTLSCipher(name); ok && !c.TLS13 && c.ID != 0 {
			suites = append(suites, c.ID)
		}
	}
	return tlsVersionIDs[p.MinVersion], tlsVersionIDs[p.MaxVersion], suites
}

func tlsPolicyIDName(p *TLSPolicy) (string, string) { return p.ID, p.Name }

// TLSPolicy returns the policy with the ID or name ref: a system policy by its name, a custom
// one by its ID or name.
func (s *State) TLSPolicy(ref string) (*TLSPolicyInfo, error) {
	for _, p := range SystemTLSPolicies {
		if p.Name == ref {
			p.Ciphers, p.Unsupported = slices.Clone(p.Ciphers), slices.Clone(p.Unsupported)
			return &p, nil
		}
	}
	if i := find(s.TLSPolicies, ref, tlsPolicyIDName); i >= 0 {
		info := s.TLSPolicies[i].Info()
		return &info, nil
	}
	return nil, &NotFoundError{Kind: "TLS policy", Ref: ref}
}

// AllTLSPolicies lists the system policies, then the custom ones.
func (s *State) AllTLSPolicies() []TLSPolicyInfo {
	var out []TLSPolicyInfo
	for _, p := range SystemTLSPolicies {
		p.Ciphers, p.Unsupported = slices.Clone(p.Ciphers), slices.Clone(p.Unsupported)
		out = append(out, p)
	}
	for i := range s.TLSPolicies {
		out = append(out, s.TLSPolicies[i].Info())
	}
	return out
}

// ListenerTLSPolicy returns the policy a listener runs with.
func (s *State) ListenerTLSPolicy(l *Listener) (*TLSPolicyInfo, error) {
	if l.TLSPolicy == "" {
		return s.TLSPolicy(DefaultTLSPolicy)
	}
	return s.TLSPolicy(l.TLSPolicy)
}

// CreateTLSPolicy adds a custom policy with a new ID. Versions and suites may be written in any
// case; they are stored as the cloud spells them.
func (s *State) CreateTLSPolicy(p TLSPolicy) (*TLSPolicy, error) {
	p.ID = newID(prefixTLSPolicy)
	p.Ciphers = slices.Clone(p.Ciphers)
	if p.Ciphers == nil {
		p.Ciphers = []string{}
	}
	p.normalize()
	if err := p.validate(); err != nil {
		return nil, err
	}
	if i := find(s.TLSPolicies, p.Name, tlsPolicyIDName); i >= 0 {
		return nil, conflict("a TLS policy named %q already exists", p.Name)
	}
	s.TLSPolicies = append(s.TLSPolicies, p)
	return &s.TLSPolicies[len(s.TLSPolicies)-1], nil
}

// DeleteTLSPolicy removes a custom policy that no listener uses.
func (s *State) DeleteTLSPolicy(ref string) (*TLSPolicy, error) {
	i := find(s.TLSPolicies, ref, tlsPolicyIDName)
	if i < 0 {
		if p, err := s.TLSPolicy(ref); err == nil && p.System {
			return nil, conflict("%s is a system policy: only custom policies can be deleted", p.Name)
		}
		return nil, &NotFoundError{Kind: "TLS policy", Ref: ref}
	}
	p := s.TLSPolicies[i]
	if users := s.listenersWhere(func(l *Listener) bool { return l.TLSPolicy == p.ID }); users != "" {
		return nil, conflict("TLS policy %s is used by listeners %s: give them another with 'albctl listener update LISTENER --tls-policy POLICY' first", p.Name, users)
	}
	s.TLSPolicies = remove(s.TLSPolicies, p.ID, tlsPolicyIDName)
	return &p, nil
}

// normalize writes the version and the suites as the cloud spells them; names that match none
// are left for validation to report as the user wrote them.
func (p *TLSPolicy) normalize() {
	for _, v := range TLSVersions {
		if strings.EqualFold(v, p.MinVersion) {
			p.MinVersion = v
		}
	}
	for i, name := range p.Ciphers {
		if c, ok := LookupTLSCipher(strings.TrimSpace(name)); ok {
			p.Ciphers[i] = c.Name
		}
	}
}

func (p *TLSPolicy) validate() error {
	if err := validateName(p.Name, prefixTLSPolicy); err != nil {
		return err
	}
	for _, sp := range SystemTLSPolicies {
		if sp.Name == p.Name {
			return conflict("%s is the name of a system policy: choose another", p.Name)
		}
	}
	if _, ok := tlsVersionIDs[p.MinVersion]; !ok {
		return invalid("minVersion", p.MinVersion, "must be %s", strings.Join(TLSVersions, ", "))
	}
	tls13 := "Go always offers TLS 1.3's suites (" + strings.Join(tls13Ciphers(), ", ") + ") with TLS 1.3, and they cannot be chosen"
	if p.MinVersion == TLS13 {
		if len(p.Ciphers) > 0 {
			return invalid("ciphers", strings.Join(p.Ciphers, ","), "a TLSv1.3-only policy takes no ciphers: %s", tls13)
		}
		return nil
	}
	if len(p.Ciphers) == 0 {
		return invalid("ciphers", "", "a policy that offers %s needs at least one suite of TLS 1.2 and below, such as ECDHE-ECDSA-AES128-GCM-SHA256", p.MinVersion)
	}
	seen := map[string]bool{}
	for _, name := range p.Ciphers {
		c, ok := LookupTLSCipher(name)
		switch {
		case !ok:
			return invalid("ciphers", name, "unknown cipher suite: use the OpenSSL names that 'albctl tls-policy list' shows, such as ECDHE-ECDSA-AES128-GCM-SHA256")
		case c.TLS13:
			return invalid("ciphers", name, "a suite of TLS 1.3: %s", tls13)
		case c.ID == 0:
			return invalid("ciphers", name, "Go's TLS does not implement this suite, so albctl cannot offer it")
		case seen[c.Name]:
			return invalid("ciphers", name, "the suite is listed twice")
		}
		seen[c.Name] = true
	}
	return nil
}

// resolveTLSPolicyRef stores a listener's policy by ID: a system policy's name, a custom one's
// ID.
func (s *State) resolveTLSPolicyRef(l *Listener) error {
	if l.TLSPolicy == "" {
		return nil
	}
	p, err := s.TLSPolicy(l.TLSPolicy)
	if err != nil {
		return err
	}
	l.TLSPolicy = p.ID
	return nil
}

// validateListenerTLSPolicy checks that only an HTTPS listener has a policy, and one that exists.
func (s *State) validateListenerTLSPolicy(l *Listener) error {
	if l.TLSPolicy == "" {
		return nil
	}
	p, err := s.TLSPolicy(l.TLSPolicy)
	if err != nil {
		return invalid("tlsPolicy", l.TLSPolicy, "no such TLS policy")
	}
	if l.Protocol != ProtocolHTTPS {
		return invalid("tlsPolicy", p.Name, "only HTTPS listeners take a TLS policy")
	}
	return nil
}
