package serve

import (
	"fmt"

	"github.com/albctl/albctl/pkg/proxy"
	"github.com/albctl/albctl/pkg/state"
)

// ACLConfig is what a listener checks its clients against: the entries of all its ACLs,
// admitted (a white list) or refused (a black list); nil for a listener without ACLs.
func ACLConfig(s *state.State, l state.Listener) (*proxy.ACL, error) {
	if len(l.ACLIDs) == 0 {
		return nil, nil
	}
	acl := &proxy.ACL{Allow: l.ACLType == state.ACLWhite}
	for _, id := range l.ACLIDs {
		a, err := s.ACL(id)
		if err != nil {
			return nil, err
		}
		for _, e := range a.Entries {
			p, err := state.ParseSourcePrefix(e.CIDR)
			if err != nil {
				return nil, fmt.Errorf("ACL %s: entry %q: %w", a.Name, e.CIDR, err)
			}
			acl.Prefixes = append(acl.Prefixes, p)
		}
	}
	return acl, nil
}
