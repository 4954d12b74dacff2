package state

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ID prefixes, as the cloud's.
const (
	prefixLB       = "alb-"
	prefixSG       = "sgp-"
	prefixListener = "lsn-"
	prefixCert     = "cert-"
	prefixRecord   = "rr-"
	prefixRule     = "rule-"
	prefixACL      = "acl-"
	// prefixTLSPolicy is albctl's: the cloud's system policies have names for IDs.
	prefixTLSPolicy = "tlsp-"
)

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newID returns the prefix and 16 random lowercase letters and digits.
func newID(prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return prefix + string(b)
}

// New returns an empty document of the current version.
func New() *State {
	return &State{
		Version:       Version,
		LoadBalancers: []LoadBalancer{},
		ServerGroups:  []ServerGroup{},
		Certificates:  []Certificate{},
		Listeners:     []Listener{},
		Domains:       []Domain{},
		Records:       []Record{},
	}
}

// find returns the index of the item whose ID or name is ref, or -1.
func find[T any](items []T, ref string, idName func(*T) (string, string)) int {
	for i := range items {
		if id, _ := idName(&items[i]); id == ref {
			return i
		}
	}
	for i := range items {
		if _, name := idName(&items[i]); name == ref {
			return i
		}
	}
	return -1
}

func lbIDName(lb *LoadBalancer) (string, string)  { return lb.ID, lb.Name }
func sgIDName(sg *ServerGroup) (string, string)   { return sg.ID, sg.Name }
func certIDName(c *Certificate) (string, string)  { return c.ID, c.Name }
func listenerIDName(l *Listener) (string, string) { return l.ID, l.ID }

// LoadBalancer returns the load balancer with the ID or name ref.
func (s *State) LoadBalancer(ref string) (*LoadBalancer, error) {
	if i := find(s.LoadBalancers, ref, lbIDName); i >= 0 {
		return &s.LoadBalancers[i], nil
	}
	return nil, &NotFoundError{Kind: "load balancer", Ref: ref}
}

// ServerGroup returns the server group with the ID or name ref.
func (s *State) ServerGroup(ref string) (*ServerGroup, error) {
	if i := find(s.ServerGroups, ref, sgIDName); i >= 0 {
		return &s.ServerGroups[i], nil
	}
	return nil, &NotFoundError{Kind: "server group", Ref: ref}
}

// Certificate returns the certificate with the ID or name ref.
func (s *State) Certificate(ref string) (*Certificate, error) {
	if i := find(s.Certificates, ref, certIDName); i >= 0 {
		return &s.Certificates[i], nil
	}
	return nil, &NotFoundError{Kind: "certificate", Ref: ref}
}

// Listener returns the listener with the ID ref.
func (s *State) Listener(ref string) (*Listener, error) {
	if i := find(s.Listeners, ref, listenerIDName); i >= 0 {
		return &s.Listeners[i], nil
	}
	return nil, &NotFoundError{Kind: "listener", Ref: ref}
}

// CreateLoadBalancer adds a load balancer with a new ID and domain name.
func (s *State) CreateLoadBalancer(lb LoadBalancer) (*LoadBalancer, error) {
	lb.ID = newID(prefixLB)
	lb.DNSName = lb.ID + "." + LBDomainSuffix
	if err := lb.validate(); err != nil {
		return nil, err
	}
	if _, err := s.LoadBalancer(lb.Name); err == nil {
		return nil, conflict("a load balancer named %q already exists", lb.Name)
	}
	s.LoadBalancers = append(s.LoadBalancers, lb)
	return &s.LoadBalancers[len(s.LoadBalancers)-1], nil
}

// DeleteLoadBalancer removes a load balancer that no listener uses.
func (s *State) DeleteLoadBalancer(ref string) (*LoadBalancer, error) {
	lb, err := s.LoadBalancer(ref)
	if err != nil {
		return nil, err
	}
	if users := s.listenersWhere(func(l *Listener) bool { return l.LBID == lb.ID }); users != "" {
		return nil, conflict("load balancer %s has listeners %s: delete them first", lb.Name, users)
	}
	deleted := *lb
	s.LoadBalancers = remove(s.LoadBalancers, lb.ID, lbIDName)
	return &deleted, nil
}

// CreateServerGroup adds a server group with a new ID.
func (s *State) CreateServerGroup(sg ServerGroup) (*ServerGroup, error) {
	sg.ID = newID(prefixSG)
	if sg.Servers == nil {
		sg.Servers = []Server{}
	}
	sg.HealthCheck.normalize()
	if err := sg.validate(); err != nil {
		return nil, err
	}
	if _, err := s.ServerGroup(sg.Name); err == nil {
		return nil, conflict("a server group named %q already exists", sg.Name)
	}
	s.ServerGroups = append(s.ServerGroups, sg)
	return &s.ServerGroups[len(s.ServerGroups)-1], nil
}

// UpdateServerGroup applies change to the group ref and validates the result, and the listeners
// that use it (a group turned gRPC needs HTTPS listeners with HTTP/2).
func (s *State) UpdateServerGroup(ref string, change func(*ServerGroup) error) (*ServerGroup, error) {
	sg, err := s.ServerGroup(ref)
	if err != nil {
		return nil, err
	}
	updated := *sg
	updated.Servers = append([]Server(nil), sg.Servers...)
	if err := change(&updated); err != nil {
		return nil, err
	}
	updated.HealthCheck.normalize()
	if err := updated.validate(); err != nil {
		return nil, err
	}
	if updated.Name != sg.Name {
		if other, err := s.ServerGroup(updated.Name); err == nil && other.ID != sg.ID {
			return nil, conflict("a server group named %q already exists", updated.Name)
		}
	}
	old := *sg
	*sg = updated
	for i := range s.Listeners {
		if s.Listeners[i].ServerGroupID == sg.ID {
			if err := s.Listeners[i].validate(s); err != nil {
				*sg = old
				return nil, err
			}
		}
	}
	if err := s.checkRulesStillFit("server group "+sg.Name, func(r *Rule) bool {
		l, err := s.Listener(r.ListenerID)
		return r.forwardsTo(sg.ID) || err == nil && l.ServerGroupID == sg.ID
	}); err != nil {
		*sg = old
		return nil, err
	}
	return sg, nil
}

// checkRulesStillFit validates the rules a change to what touches them: a rule that no longer
// fits is the change's fault, so the error names the rule rather than the rule's own flags.
func (s *State) checkRulesStillFit(what string, touched func(*Rule) bool) error {
	for i := range s.Rules {
		r := &s.Rules[i]
		if !touched(r) {
			continue
		}
		if err := r.validate(s); err != nil {
			var ie *InvalidError
			if errors.As(err, &ie) {
				err = errors.New(ie.Rule)
			}
			return conflict("rule %s would no longer fit after this change to %s: %v ('albctl rule update %s' or 'albctl rule delete %s' first)", r.Label(), what, err, r.Label(), r.Label())
		}
	}
	return nil
}

// AddServers adds servers to a group; a server already in the group is refused.
func (s *State) AddServers(ref string, servers []Server) (*ServerGroup, error) {
	return s.UpdateServerGroup(ref, func(sg *ServerGroup) error {
		sg.Servers = append(sg.Servers, servers...)
		return nil
	})
}

// RemoveServers removes servers, named by HOST:PORT, from a group.
func (s *State) RemoveServers(ref string, servers []Server) (*ServerGroup, error) {
	return s.UpdateServerGroup(ref, func(sg *ServerGroup) error {
		for _, srv := range servers {
			i := sg.serverIndex(srv)
			if i < 0 {
				return &NotFoundError{Kind: "server", Ref: srv.HostPort(), In: "server group " + sg.Name}
			}
			sg.Servers = append(sg.Servers[:i], sg.Servers[i+1:]...)
		}
		return nil
	})
}

// UpdateServers changes the weight and description of servers already in a group.
func (s *State) UpdateServers(ref string, specs []ServerSpec) (*ServerGroup, error) {
	return s.UpdateServerGroup(ref, func(sg *ServerGroup) error {
		for _, spec := range specs {
			i := sg.serverIndex(spec.Server)
			if i < 0 {
				return &NotFoundError{Kind: "server", Ref: spec.HostPort(), In: "server group " + sg.Name}
			}
			if !spec.HasWeight && !spec.HasDescription {
				return invalid("servers", spec.HostPort(), "say what to change: HOST:PORT,weight=N or HOST:PORT,description=TEXT")
			}
			if spec.HasWeight {
				sg.Servers[i].Weight = spec.Weight
			}
			if spec.HasDescription {
				sg.Servers[i].Description = spec.Description
			}
		}
		return nil
	})
}

// normalize writes the codes in their shortest form ("0,1,2,12" becomes "0-2,12"); codes that do
// not parse are left for validation to report as the user wrote them.
func (hc *HealthCheck) normalize() {
	switch hc.Protocol {
	case ProtocolGRPC:
		if set, err := ParseGRPCCodes(hc.Codes); err == nil {
			hc.Codes = set.String()
		}
	case ProtocolHTTP:
		if codes, err := ParseHTTPCodes(hc.Codes); err == nil {
			hc.Codes = codes
		}
	}
}

func (sg *ServerGroup) serverIndex(srv Server) int {
	key := srv.key()
	for i, s := range sg.Servers {
		if s.key() == key {
			return i
		}
	}
	return -1
}

// DeleteServerGroup removes a group that no listener uses.
func (s *State) DeleteServerGroup(ref string) (*ServerGroup, error) {
	sg, err := s.ServerGroup(ref)
	if err != nil {
		return nil, err
	}
	if users := s.listenersWhere(func(l *Listener) bool { return l.ServerGroupID == sg.ID }); users != "" {
		return nil, conflict("server group %s is used by listeners %s: delete them or point them elsewhere first", sg.Name, users)
	}
	if users := s.rulesWhere(func(r *Rule) bool { return r.forwardsTo(sg.ID) }); users != "" {
		return nil, conflict("server group %s is used by rules %s: delete them or forward them elsewhere first", sg.Name, users)
	}
	deleted := *sg
	s.ServerGroups = remove(s.ServerGroups, sg.ID, sgIDName)
	return &deleted, nil
}

// AddCertificate adds a certificate with a new ID.
func (s *State) AddCertificate(c Certificate) (*Certificate, error) {
	c.ID = newID(prefixCert)
	if err := c.validate(); err != nil {
		return nil, err
	}
	if _, err := s.Certificate(c.Name); err == nil {
		return nil, conflict("a certificate named %q already exists", c.Name)
	}
	s.Certificates = append(s.Certificates, c)
	return &s.Certificates[len(s.Certificates)-1], nil
}

// DeleteCertificate removes a certificate that no listener uses.
func (s *State) DeleteCertificate(ref string) (*Certificate, error) {
	c, err := s.Certificate(ref)
	if err != nil {
		return nil, err
	}
	if users := s.listenersWhere(func(l *Listener) bool {
		return l.CertificateID == c.ID || slices.Contains(l.AdditionalCertificateIDs, c.ID) || l.ClientCAID == c.ID
	}); users != "" {
		return nil, conflict("certificate %s is used by listeners %s: delete them, give them another certificate, or take it off with 'albctl listener remove-certs'", c.Name, users)
	}
	deleted := *c
	s.Certificates = remove(s.Certificates, c.ID, certIDName)
	return &deleted, nil
}

// CreateListener adds a listener with a new ID. References may be IDs or names; they are stored
// as IDs.
func (s *State) CreateListener(l Listener) (*Listener, error) {
	l.ID = newID(prefixListener)
	if err := s.resolveListenerRefs(&l); err != nil {
		return nil, err
	}
	if err := l.validate(s); err != nil {
		return nil, err
	}
	s.Listeners = append(s.Listeners, l)
	return &s.Listeners[len(s.Listeners)-1], nil
}

// UpdateListener applies change to a listener, resolves its references and validates it.
func (s *State) UpdateListener(ref string, change func(*Listener) error) (*Listener, error) {
	l, err := s.Listener(ref)
	if err != nil {
		return nil, err
	}
	updated := *l
	updated.AdditionalCertificateIDs = slices.Clone(l.AdditionalCertificateIDs)
	updated.ACLIDs = slices.Clone(l.ACLIDs)
	if err := change(&updated); err != nil {
		return nil, err
	}
	if err := s.resolveListenerRefs(&updated); err != nil {
		return nil, err
	}
	if err := updated.validate(s); err != nil {
		return nil, err
	}
	old := *l
	*l = updated
	if err := s.checkRulesStillFit("listener "+l.ID, func(r *Rule) bool { return r.ListenerID == l.ID }); err != nil {
		*l = old
		return nil, err
	}
	return l, nil
}

func (s *State) resolveListenerRefs(l *Listener) error {
	lb, err := s.LoadBalancer(l.LBID)
	if err != nil {
		return err
	}
	l.LBID = lb.ID
	sg, err := s.ServerGroup(l.ServerGroupID)
	if err != nil {
		return err
	}
	l.ServerGroupID = sg.ID
	if l.CertificateID != "" {
		c, err := s.Certificate(l.CertificateID)
		if err != nil {
			return err
		}
		l.CertificateID = c.ID
	}
	for i, ref := range l.AdditionalCertificateIDs {
		c, err := s.Certificate(ref)
		if err != nil {
			return err
		}
		l.AdditionalCertificateIDs[i] = c.ID
	}
	for i, ref := range l.ACLIDs {
		a, err := s.ACL(ref)
		if err != nil {
			return err
		}
		l.ACLIDs[i] = a.ID
	}
	if err := s.resolveTLSPolicyRef(l); err != nil {
		return err
	}
	return s.resolveClientCA(l)
}

// DeleteListener removes a listener.
func (s *State) DeleteListener(ref string) (*Listener, error) {
	l, err := s.Listener(ref)
	if err != nil {
		return nil, err
	}
	if users := s.rulesWhere(func(r *Rule) bool { return r.ListenerID == l.ID }); users != "" {
		return nil, conflict("listener %s has rules %s: delete them first", l.ID, users)
	}
	deleted := *l
	s.Listeners = remove(s.Listeners, l.ID, listenerIDName)
	return &deleted, nil
}

// listenersWhere lists the IDs (and ports) of the listeners that match, for error messages.
func (s *State) listenersWhere(match func(*Listener) bool) string {
	var users []string
	for i := range s.Listeners {
		if match(&s.Listeners[i]) {
			users = append(users, fmt.Sprintf("%s (port %d)", s.Listeners[i].ID, s.Listeners[i].Port))
		}
	}
	return strings.Join(users, ", ")
}

func remove[T any](items []T, id string, idName func(*T) (string, string)) []T {
	out := items[:0]
	for i := range items {
		if itemID, _ := idName(&items[i]); itemID != id {
			out = append(out, items[i])
		}
	}
	return out
}
