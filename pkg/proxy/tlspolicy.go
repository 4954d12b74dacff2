package proxy

import (
	"crypto/tls"
	"fmt"
	"slices"
)

// TLSPolicy is what a listener's TLS security policy allows. The zero value
// is TLS 1.2 and 1.3 with Go's default cipher suites.
type TLSPolicy struct {
	MinVersion, MaxVersion uint16
	// CipherSuites for TLS 1.2 and below; TLS 1.3's are not configurable.
	CipherSuites []uint16
}

// apply sets the policy on a listener's TLS configuration. crypto/tls serves
// TLS 1.0 and 1.1 once MinVersion asks for them; no GODEBUG is needed.
func (p TLSPolicy) apply(cfg *tls.Config) {
	cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = p.MinVersion, p.MaxVersion, p.CipherSuites
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
}

// validate refuses what crypto/tls would only find out at each handshake:
// versions it does not know or out of order, and suites it does not offer
// below TLS 1.3.
func (p TLSPolicy) validate() error {
	for _, v := range []uint16{p.MinVersion, p.MaxVersion} {
		if v != 0 && (v < tls.VersionTLS10 || v > tls.VersionTLS13) {
			return fmt.Errorf("unknown TLS version %#04x", v)
		}
	}
	if p.MaxVersion != 0 && p.MinVersion > p.MaxVersion {
		return fmt.Errorf("the lowest version, %s, is above the highest, %s", tls.VersionName(p.MinVersion), tls.VersionName(p.MaxVersion))
	}
	belowTLS13 := map[uint16]bool{}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		belowTLS13[cs.ID] = !slices.Equal(cs.SupportedVersions, []uint16{tls.VersionTLS13})
	}
	for _, id := range p.CipherSuites {
		if !belowTLS13[id] {
			return fmt.Errorf("cipher suite %s is not one of Go's for TLS 1.2 and below", tls.CipherSuiteName(id))
		}
	}
	return nil
}
