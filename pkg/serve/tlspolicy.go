package serve

import (
	"github.com/albctl/albctl/pkg/proxy"
	"github.com/albctl/albctl/pkg/state"
)

// tlsPolicy is the TLS policy of an HTTPS listener as the proxy runs it.
func tlsPolicy(s *state.State, l *state.Listener) (proxy.TLSPolicy, error) {
	p, err := s.ListenerTLSPolicy(l)
	if err != nil {
		return proxy.TLSPolicy{}, err
	}
	minVersion, maxVersion, suites := p.GoConfig()
	return proxy.TLSPolicy{MinVersion: minVersion, MaxVersion: maxVersion, CipherSuites: suites}, nil
}
