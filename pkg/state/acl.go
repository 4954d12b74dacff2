package state

import (
	"fmt"
	"slices"
	"strings"
)

// ACL types of a listener, as the cloud names them.
const (
	ACLWhite = "white"
	ACLBlack = "black"
)

// Limits of ACLs, as the cloud's.
const (
	MaxACLEntries          = 500
	MaxListenerACLs        = 3
	MaxACLEntryDescription = 256
)

// ACL is an access control list: addresses and CIDR ranges a listener admits (a white list)
// or refuses (a black list).
type ACL struct {
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	Entries []ACLEntry `json:"entries"`
}

// ACLEntry is one range of an ACL.
type ACLEntry struct {
	CIDR        string `json:"cidr"`
	Description string `json:"description,omitempty"`
}

func aclIDName(a *ACL) (string, string) { return a.ID, a.Name }

// ACL returns the ACL with the ID or name ref.
func (s *State) ACL(ref string) (*ACL, error) {
	if i := find(s.ACLs, ref, aclIDName); i >= 0 {
		return &s.ACLs[i], nil
	}
	return nil, &NotFoundError{Kind: "ACL", Ref: ref}
}

// CreateACL adds an ACL with a new ID; its entries are stored in canonical form.
func (s *State) CreateACL(a ACL) (*ACL, error) {
	a.ID = newID(prefixACL)
	a.Entries = append([]ACLEntry{}, a.Entries...)
	a.normalize()
	if err := a.validate(); err != nil {
		return nil, err
	}
	if _, err := s.ACL(a.Name); err == nil {
		return nil, conflict("an ACL named %q already exists", a.Name)
	}
	s.ACLs = append(s.ACLs, a)
	return &s.ACLs[len(s.ACLs)-1], nil
}

// AddACLEntries adds entries to an ACL; an entry already in it is refused.
func (s *State) AddACLEntries(ref string, entries []ACLEntry) (*ACL, error) {
	return s.updateACL(ref, func(a *ACL) error {
		a.Entries = append(a.Entries, entries...)
		return nil
	})
}

// RemoveACLEntries removes entries, named by their CIDR, from an ACL.
func (s *State) RemoveACLEntries(ref string, cidrs []string) (*ACL, error) {
	return s.updateACL(ref, func(a *ACL) error {
		for _, cidr := range cidrs {
			canonical, err := canonicalCIDR(cidr)
			if err != nil {
				return err
			}
			i := slices.IndexFunc(a.Entries, func(e ACLEntry) bool { return e.CIDR == canonical })
			if i < 0 {
				return &NotFoundError{Kind: "entry", Ref: canonical, In: "ACL " + a.Name}
			}
			a.Entries = slices.Delete(a.Entries, i, i+1)
		}
		return nil
	})
}

func (s *State) updateACL(ref string, change func(*ACL) error) (*ACL, error) {
	a, err := s.ACL(ref)
	if err != nil {
		return nil, err
	}
	updated := *a
	updated.Entries = slices.Clone(a.Entries)
	if err := change(&updated); err != nil {
		return nil, err
	}
	updated.normalize()
	if err := updated.validate(); err != nil {
		return nil, err
	}
	*a = updated
	return a, nil
}

// DeleteACL removes an ACL that no listener uses.
func (s *State) DeleteACL(ref string) (*ACL, error) {
	a, err := s.ACL(ref)
	if err != nil {
		return nil, err
	}
	if users := s.listenersWhere(func(l *Listener) bool { return slices.Contains(l.ACLIDs, a.ID) }); users != "" {
		return nil, conflict("ACL %s is used by listeners %s: give them other ACLs, or none with 'albctl listener update LISTENER --clear-acls', first", a.Name, users)
	}
	deleted := *a
	s.ACLs = remove(s.ACLs, a.ID, aclIDName)
	return &deleted, nil
}

// normalize writes the entries' ranges in canonical form: a bare address as /32 or /128,
// host bits cleared. Ranges that do not parse are left for validation to report as written.
func (a *ACL) normalize() {
	for i, e := range a.Entries {
		if canonical, err := canonicalCIDR(e.CIDR); err == nil {
			a.Entries[i].CIDR = canonical
		}
	}
}

func canonicalCIDR(cidr string) (string, error) {
	p, err := ParseSourcePrefix(strings.TrimSpace(cidr))
	if err != nil {
		return "", invalid("entries.cidr", cidr, "an entry is an IP address or a CIDR range, such as 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32")
	}
	return p.String(), nil
}

func (a *ACL) validate() error {
	if err := validateName(a.Name, prefixACL); err != nil {
		return err
	}
	if len(a.Entries) > MaxACLEntries {
		return conflict("ACL %s would have %d entries: at most %d", a.Name, len(a.Entries), MaxACLEntries)
	}
	seen := make(map[string]bool, len(a.Entries))
	for _, e := range a.Entries {
		canonical, err := canonicalCIDR(e.CIDR)
		if err != nil {
			return err
		}
		if len(e.Description) > MaxACLEntryDescription || !printable(e.Description) {
			return invalid("entries.description", e.Description, "a description is at most %d printable ASCII characters", MaxACLEntryDescription)
		}
		if seen[canonical] {
			return conflict("entry %s is already in ACL %s", canonical, a.Name)
		}
		seen[canonical] = true
	}
	return nil
}

// validateACLs checks a listener's ACLs: up to MaxListenerACLs that exist, each once, with a
// type when there are any and none when there are not.
func (l *Listener) validateACLs(s *State) error {
	if len(l.ACLIDs) == 0 {
		if l.ACLType != "" {
			return invalid("aclType", l.ACLType, "an ACL type applies only to a listener with ACLs")
		}
		return nil
	}
	if l.ACLType != ACLWhite && l.ACLType != ACLBlack {
		return invalid("aclType", l.ACLType, "must be white (admit only the clients the ACLs list) or black (refuse them)")
	}
	if len(l.ACLIDs) > MaxListenerACLs {
		return invalid("aclIds", fmt.Sprintf("%d ACLs", len(l.ACLIDs)), "a listener uses at most %d ACLs", MaxListenerACLs)
	}
	seen := map[string]bool{}
	for _, id := range l.ACLIDs {
		a, err := s.ACL(id)
		if err != nil {
			return invalid("aclIds", id, "no such ACL")
		}
		if seen[a.ID] {
			return invalid("aclIds", a.Name, "the listener has this ACL already")
		}
		seen[a.ID] = true
	}
	return nil
}

// ParseACLEntry reads an entry as given on the command line, "CIDR[,description=TEXT]". The
// description, if any, comes last, since it may hold commas.
func ParseACLEntry(s string) (ACLEntry, error) {
	cidr, rest, hasRest := strings.Cut(s, ",")
	e := ACLEntry{CIDR: strings.TrimSpace(cidr)}
	if !hasRest {
		return e, nil
	}
	key, value, ok := strings.Cut(rest, "=")
	if !ok || strings.TrimSpace(key) != "description" {
		return e, fmt.Errorf("%q is not description=TEXT: an entry is CIDR[,description=TEXT]", rest)
	}
	e.Description = value
	return e, nil
}
