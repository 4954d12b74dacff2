package state

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

var nameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{1,127}$`)

// validateName checks a resource name: 2-128 characters, letters, digits, '.', '_', '-',
// starting with a letter, and not starting with the ID prefix of its kind, so that a name can
// never be mistaken for an ID of what it names.
func validateName(name, idPrefix string) error {
	if !nameRE.MatchString(name) {
		return invalid("name", name, "use 2-128 letters, digits, '.', '_' or '-', starting with a letter")
	}
	if strings.HasPrefix(name, idPrefix) {
		return invalid("name", name, "must not start with %q, which IDs use", idPrefix)
	}
	return nil
}

func checkRange(field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return invalid(field, v, "must be %d-%d", lo, hi)
	}
	return nil
}

func checkDuration(field string, d Duration, lo, hi time.Duration) error {
	if d.D() < lo || d.D() > hi {
		return invalid(field, d, "must be %s-%s", fmtSeconds(lo), fmtSeconds(hi))
	}
	return nil
}

func fmtSeconds(d time.Duration) string { return fmt.Sprintf("%gs", d.Seconds()) }

// validHostname reports whether s is a DNS host name (RFC 1123 labels).
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !validLabel(label) {
			return false
		}
	}
	return true
}

func validLabel(label string) bool {
	if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	for _, r := range label {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func (lb *LoadBalancer) validate() error {
	if err := validateName(lb.Name, prefixLB); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(lb.Address); err != nil {
		return invalid("address", lb.Address, "must be an IP address, such as 127.0.0.1 or ::1")
	}
	return nil
}

func (sg *ServerGroup) validate() error {
	if err := validateName(sg.Name, prefixSG); err != nil {
		return err
	}
	switch sg.Protocol {
	case ProtocolGRPC, ProtocolHTTP, ProtocolHTTPS:
	default:
		return invalid("protocol", sg.Protocol, "must be gRPC, HTTP or HTTPS")
	}
	if err := sg.validateScheduler(); err != nil {
		return err
	}
	if err := checkDuration("drainTimeout", sg.DrainTimeout, 0, 900*time.Second); err != nil {
		return err
	}
	if err := sg.validateSlowStart(); err != nil {
		return err
	}
	if err := sg.HealthCheck.validate(sg.Protocol); err != nil {
		return err
	}
	if len(sg.Servers) > MaxServersPerGroup {
		return conflict("server group %s would have %d servers: at most %d", sg.Name, len(sg.Servers), MaxServersPerGroup)
	}
	seen := make(map[string]bool, len(sg.Servers))
	for _, srv := range sg.Servers {
		if err := srv.validate(); err != nil {
			return err
		}
		key := srv.key()
		if seen[key] {
			return conflict("server %s is already in server group %s", srv.HostPort(), sg.Name)
		}
		seen[key] = true
	}
	return nil
}

// validateSlowStart checks slow start: 0 (off) or 30-900 s, as the cloud allows, and only with a
// scheduler that weighs each call.
func (sg *ServerGroup) validateSlowStart() error {
	if sg.SlowStart == 0 {
		return nil
	}
	if sg.SlowStart.D() < MinSlowStart || sg.SlowStart.D() > MaxSlowStart {
		return invalid("slowStart", sg.SlowStart, "must be 0 (off) or %s-%s", fmtSeconds(MinSlowStart), fmtSeconds(MaxSlowStart))
	}
	if sg.Scheduler == SchedulerSCH || sg.Scheduler == SchedulerUCH {
		return invalid("slowStart", sg.SlowStart, "needs the wrr or wlc scheduler: %s keeps each client on the server its key hashes to, so it cannot ramp a server up", sg.Scheduler)
	}
	return nil
}

// validateScheduler checks the scheduler, and the hash key that uch, and only uch, needs.
func (sg *ServerGroup) validateScheduler() error {
	if !slices.Contains(Schedulers, sg.Scheduler) {
		return invalid("scheduler", sg.Scheduler, "must be wrr, wlc, sch or uch")
	}
	uch := sg.UCHConfig
	switch {
	case sg.Scheduler != SchedulerUCH && uch != nil:
		return invalid("uchConfig", FormatUCHKey(uch), "a hash key applies only to the uch scheduler")
	case sg.Scheduler != SchedulerUCH:
		return nil
	case uch == nil:
		return invalid("uchConfig", "", "the uch scheduler needs a key to hash: query:KEY or header:KEY")
	}
	switch uch.Type {
	case UCHHeader:
		if err := validateHeaderKey("uchConfig", uch.Key); err != nil {
			return err
		}
		if uch.Key != strings.ToLower(uch.Key) {
			return invalid("uchConfig", uch.Key, "write header names in lowercase, as HTTP/2 sends them")
		}
	case UCHQueryString:
		if len(uch.Key) < 1 || len(uch.Key) > MaxQueryOrCookieKey || !matchValueChars(uch.Key, CondQueryString, true) {
			return invalid("uchConfig", uch.Key, "a query key is 1-%d printable characters without uppercase letters, spaces or %s", MaxQueryOrCookieKey, bannedChars(CondQueryString, true))
		}
	default:
		return invalid("uchConfig", uch.Type, "the key is a query parameter or a header: query:KEY or header:KEY")
	}
	return nil
}

// key identifies a server within a group: its address in canonical form and its port.
func (s Server) key() string {
	if ip, err := netip.ParseAddr(s.Address); err == nil {
		return Server{Address: ip.Unmap().String(), Port: s.Port}.HostPort()
	}
	return Server{Address: strings.ToLower(strings.TrimSuffix(s.Address, ".")), Port: s.Port}.HostPort()
}

func (s Server) validate() error {
	if _, err := netip.ParseAddr(s.Address); err != nil && !validHostname(s.Address) {
		return invalid("servers.address", s.Address, "must be an IP address or a host name")
	}
	if err := checkRange("servers.port", s.Port, 1, 65535); err != nil {
		return err
	}
	if err := checkRange("servers.weight", s.Weight, 0, 100); err != nil {
		return err
	}
	if len(s.Description) > 256 {
		return invalid("servers.description", s.Description[:20]+"...", "must be at most 256 characters")
	}
	return nil
}

// healthProtocols lists the health-check protocols each server group protocol allows.
var healthProtocols = map[string][]string{
	ProtocolGRPC:  {ProtocolGRPC, HealthGRPCHealth, ProtocolTCP},
	ProtocolHTTP:  {ProtocolHTTP, ProtocolTCP},
	ProtocolHTTPS: {ProtocolHTTP, ProtocolTCP},
}

func (hc *HealthCheck) validate(groupProtocol string) error {
	allowed := healthProtocols[groupProtocol]
	ok := false
	for _, p := range allowed {
		ok = ok || hc.Protocol == p
	}
	if !ok {
		return invalid("healthCheck.protocol", hc.Protocol, "a %s server group allows %s", groupProtocol, strings.Join(allowed, ", "))
	}
	if err := checkDuration("healthCheck.interval", hc.Interval, time.Second, 50*time.Second); err != nil {
		return err
	}
	if err := checkDuration("healthCheck.timeout", hc.Timeout, time.Second, 300*time.Second); err != nil {
		return err
	}
	if err := checkRange("healthCheck.healthyThreshold", hc.HealthyThreshold, 2, 10); err != nil {
		return err
	}
	if err := checkRange("healthCheck.unhealthyThreshold", hc.UnhealthyThreshold, 2, 10); err != nil {
		return err
	}
	if err := checkRange("healthCheck.port", hc.Port, 0, 65535); err != nil {
		return err
	}
	if hc.Service != "" && hc.Protocol != HealthGRPCHealth {
		return invalid("healthCheck.service", hc.Service, "a service name applies only to grpc-health checks")
	}
	switch hc.Protocol {
	case ProtocolTCP, HealthGRPCHealth:
		if hc.Codes != "" {
			return invalid("healthCheck.codes", hc.Codes, "%s health checks take no codes: codes apply to gRPC and HTTP checks", hc.Protocol)
		}
	}
	switch hc.Protocol {
	case ProtocolTCP:
		return nil
	case ProtocolHTTP:
		if hc.Method != "GET" && hc.Method != "POST" && hc.Method != "HEAD" {
			return invalid("healthCheck.method", hc.Method, "must be GET, POST or HEAD")
		}
		if _, err := ParseHTTPCodes(hc.Codes); err != nil {
			return invalid("healthCheck.codes", hc.Codes, "%v", err)
		}
	case ProtocolGRPC:
		if hc.Method != "POST" {
			return invalid("healthCheck.method", hc.Method, "gRPC health checks use POST")
		}
		if _, err := ParseGRPCCodes(hc.Codes); err != nil {
			return invalid("healthCheck.codes", hc.Codes, "%v", err)
		}
	case HealthGRPCHealth:
		if len(hc.Service) > 256 {
			return invalid("healthCheck.service", hc.Service, "must be at most 256 characters")
		}
		return nil
	}
	if len(hc.Path) < 1 || len(hc.Path) > 80 || hc.Path[0] != '/' {
		return invalid("healthCheck.path", hc.Path, "must be 1-80 characters starting with /")
	}
	if hc.Protocol == ProtocolGRPC && !grpcMethodPathRE.MatchString(hc.Path) {
		return invalid("healthCheck.path", hc.Path, "must be a gRPC method path, /package.Service/Method")
	}
	return nil
}

var grpcMethodPathRE = regexp.MustCompile(`^/[A-Za-z_][A-Za-z0-9_.]*/[A-Za-z_][A-Za-z0-9_]*$`)

func (c *Certificate) validate() error {
	if err := validateName(c.Name, prefixCert); err != nil {
		return err
	}
	if c.Usage != UsageServer {
		if c.CertPEM == "" {
			return invalid("certPEM", c.Name, "a certificate needs its PEM certificate")
		}
		return c.validateUsage()
	}
	if len(c.Domains) == 0 {
		return invalid("domains", "", "a certificate needs at least one domain")
	}
	for _, d := range c.Domains {
		if err := ValidateCertDomain(d); err != nil {
			return err
		}
	}
	if c.CertPEM == "" || c.KeyPEM == "" {
		return invalid("certPEM", c.Name, "a certificate needs its PEM certificate and key")
	}
	return c.validateUsage()
}

// ValidateCertDomain checks a name a certificate may cover: a host name, a wildcard such as
// *.example.test, or an IP address.
func ValidateCertDomain(d string) error {
	if _, err := netip.ParseAddr(d); err == nil {
		return nil
	}
	if !validHostname(strings.TrimPrefix(d, "*.")) || strings.Contains(d, "_") {
		return invalid("domains", d, "must be a DNS name such as grpc.example.test, a wildcard *.example.test, or an IP address")
	}
	return nil
}

func (l *Listener) validate(s *State) error {
	lb, err := s.LoadBalancer(l.LBID)
	if err != nil {
		return invalid("lbId", l.LBID, "no such load balancer")
	}
	if err := checkRange("port", l.Port, 1, 65535); err != nil {
		return err
	}
	switch l.Protocol {
	case ProtocolHTTPS:
		if l.CertificateID == "" {
			return invalid("certificateId", "", "an HTTPS listener needs a certificate")
		}
		if c, err := s.Certificate(l.CertificateID); err != nil {
			return invalid("certificateId", l.CertificateID, "no such certificate")
		} else if c.Usage != UsageServer {
			return invalid("certificateId", c.Name, "certificate %s is a %s certificate: a listener serves a server certificate", c.Name, c.Usage)
		}
		seen := map[string]bool{l.CertificateID: true}
		for _, id := range l.AdditionalCertificateIDs {
			if c, err := s.Certificate(id); err != nil {
				return invalid("additionalCertificateIds", id, "no such certificate")
			} else if c.Usage != UsageServer {
				return invalid("additionalCertificateIds", c.Name, "certificate %s is a %s certificate: a listener serves server certificates", c.Name, c.Usage)
			}
			if seen[id] {
				return invalid("additionalCertificateIds", id, "the listener has this certificate already")
			}
			seen[id] = true
		}
	case ProtocolHTTP:
		if l.CertificateID != "" || len(l.AdditionalCertificateIDs) > 0 {
			return invalid("certificateId", l.CertificateID, "only HTTPS listeners take a certificate")
		}
		if l.HTTP2 {
			return invalid("http2", "true", "HTTP/2 can be turned on only for HTTPS listeners")
		}
	default:
		return invalid("protocol", l.Protocol, "must be HTTPS or HTTP")
	}
	if err := s.validateListenerTLSPolicy(l); err != nil {
		return err
	}
	sg, err := s.ServerGroup(l.ServerGroupID)
	if err != nil {
		return invalid("serverGroupId", l.ServerGroupID, "no such server group")
	}
	if sg.Protocol == ProtocolGRPC && l.Protocol != ProtocolHTTPS {
		return invalid("protocol", l.Protocol, "server group %s is gRPC: only an HTTPS listener with HTTP/2 on can forward to it", sg.Name)
	}
	if sg.Protocol == ProtocolGRPC && !l.HTTP2 {
		return invalid("http2", "false", "server group %s is gRPC, which needs HTTP/2", sg.Name)
	}
	if err := l.validateClientAuth(s); err != nil {
		return err
	}
	if err := l.validateWeb(sg); err != nil {
		return err
	}
	if err := checkDuration("idleTimeout", l.IdleTimeout, time.Second, 60*time.Second); err != nil {
		return err
	}
	if err := checkDuration("requestTimeout", l.RequestTimeout, time.Second, 600*time.Second); err != nil {
		return err
	}
	if err := l.validateACLs(s); err != nil {
		return err
	}
	for _, other := range s.Listeners {
		if other.ID == l.ID || other.Port != l.Port {
			continue
		}
		if otherLB, err := s.LoadBalancer(other.LBID); err == nil && SameAddress(otherLB.Address, lb.Address) {
			return conflict("port %d on %s is already used by listener %s", l.Port, lb.Address, other.ID)
		}
	}
	return nil
}

// SameAddress reports whether two IP addresses are the same, an IPv4 address and its IPv4-mapped
// IPv6 form included.
func SameAddress(a, b string) bool {
	x, errX := netip.ParseAddr(a)
	y, errY := netip.ParseAddr(b)
	return errX == nil && errY == nil && x.Unmap() == y.Unmap()
}

// Validate checks the whole document: every resource, unique IDs and names, and references.
func (s *State) Validate() error {
	if s.Version != Version {
		return fmt.Errorf("version %d: this albctl reads version %d", s.Version, Version)
	}
	names := map[string]bool{}
	unique := func(kind, id, name string) error {
		if names[kind+"\x00id\x00"+id] {
			return conflict("%s ID %s appears twice", kind, id)
		}
		if names[kind+"\x00name\x00"+name] {
			return conflict("%s named %q already exists", withArticle(kind), name)
		}
		names[kind+"\x00id\x00"+id], names[kind+"\x00name\x00"+name] = true, true
		return nil
	}
	for i := range s.LoadBalancers {
		lb := &s.LoadBalancers[i]
		if err := firstError(unique("load balancer", lb.ID, lb.Name), lb.validate()); err != nil {
			return err
		}
	}
	for i := range s.ServerGroups {
		sg := &s.ServerGroups[i]
		if err := firstError(unique("server group", sg.ID, sg.Name), sg.validate()); err != nil {
			return err
		}
	}
	for i := range s.Certificates {
		c := &s.Certificates[i]
		if err := firstError(unique("certificate", c.ID, c.Name), c.validate()); err != nil {
			return err
		}
	}
	for i := range s.ACLs {
		a := &s.ACLs[i]
		if err := firstError(unique("ACL", a.ID, a.Name), a.validate()); err != nil {
			return err
		}
	}
	for i := range s.TLSPolicies {
		p := &s.TLSPolicies[i]
		if err := firstError(unique("TLS policy", p.ID, p.Name), p.validate()); err != nil {
			return err
		}
	}
	for i := range s.Listeners {
		l := &s.Listeners[i]
		if err := firstError(unique("listener", l.ID, l.ID), l.validate(s)); err != nil {
			return err
		}
	}
	for i := range s.Rules {
		r := &s.Rules[i]
		if err := firstError(unique("rule", r.ID, r.Label()), r.validate(s)); err != nil {
			return err
		}
	}
	return s.validateDNS()
}

// withArticle puts "a" or "an" before a kind of resource.
func withArticle(kind string) string {
	if strings.ContainsRune("aeiouAEIO", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
