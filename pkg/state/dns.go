package state

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DNS in the model: domains whose ownership the user proves with a TXT record, the records in
// them, and the names of load balancers, which albctl answers for without a record.

// Ownership, TTL and line settings, as the cloud's.
const (
	// VerificationHost is where, relative to the domain, the ownership TXT record goes.
	VerificationHost = "_albctl-challenge"
	DefaultTTL       = 600
	MinTTL           = 1
	MaxTTL           = 86400
	// DefaultLine is the only resolution line albctl has: every client gets the same answer.
	DefaultLine = "default"
	// LBRecordTTL is the TTL of a load balancer's own name: short, as the cloud's, because an
	// instance's address may change.
	LBRecordTTL = 60
	// MaxTXTLength bounds a TXT value; long values are served as several strings of 255 bytes.
	MaxTXTLength = 1024
	// maxChain bounds how many CNAME records a resolution follows.
	maxChain = 16
)

// Record types.
const (
	TypeA     = "A"
	TypeAAAA  = "AAAA"
	TypeCNAME = "CNAME"
	TypeTXT   = "TXT"
	TypeMX    = "MX"
	TypeSRV   = "SRV"
	TypeCAA   = "CAA"
	// TypeANY asks Resolve for every record at a name, without following a CNAME.
	TypeANY = "ANY"
)

// RecordTypes lists the types a record may have.
var RecordTypes = []string{TypeA, TypeAAAA, TypeCNAME, TypeTXT, TypeMX, TypeSRV, TypeCAA}

// UnverifiedError is a record refused because its domain is not verified yet, or a verification
// that did not find the ownership record.
type UnverifiedError struct {
	Domain Domain
	// Verifying is set when the error comes from VerifyDomain.
	Verifying bool
	// Found holds the TXT records at the verification name.
	Found []Answer
}

func (e *UnverifiedError) Error() string {
	name := e.Domain.Verification.Host + "." + e.Domain.Name
	switch {
	case !e.Verifying:
		return fmt.Sprintf("domain %s is not verified: until it is, the only record it takes is the ownership TXT record at %s",
			e.Domain.Name, e.Domain.Verification.Host)
	case len(e.Found) == 0:
		return fmt.Sprintf("domain %s is not verified: there is no TXT record at %s", e.Domain.Name, name)
	default:
		var values []string
		for _, a := range e.Found {
			values = append(values, fmt.Sprintf("%q", a.Value))
		}
		return fmt.Sprintf("domain %s is not verified: the TXT record at %s holds %s, not the token %q",
			e.Domain.Name, name, strings.Join(values, ", "), e.Domain.Verification.Value)
	}
}

// CanonicalName writes a DNS name the way albctl stores and compares it: lower case, without
// the trailing dot.
func CanonicalName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// ValidateDomainName checks a domain a user can add and returns it in canonical form: at least
// two labels of letters, digits and '-', at most 63 characters each and 253 in all.
func ValidateDomainName(name string) (string, error) {
	d := CanonicalName(name)
	labels := strings.Split(d, ".")
	ok := len(d) <= 253 && len(labels) >= 2 && !allDigits(labels[len(labels)-1])
	for _, l := range labels {
		ok = ok && checkLabel(l, false)
	}
	if !ok {
		return "", invalid("domain", name, "must be a domain name such as example.test: two or more labels of letters, digits and '-', each 1-63 characters, 253 in all")
	}
	if d == LBDomainSuffix || strings.HasSuffix(d, "."+LBDomainSuffix) || strings.HasSuffix(LBDomainSuffix, "."+d) {
		return "", invalid("domain", name, "overlaps %s, where albctl keeps the names of load balancers", LBDomainSuffix)
	}
	return d, nil
}

func allDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// checkLabel reports whether l is a label of 1-63 letters, digits and '-' (and '_' when
// underscore is set, as in _albctl-challenge or _grpc._tcp), not starting or ending with '-'.
func checkLabel(l string, underscore bool) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || underscore && c == '_') {
			return false
		}
	}
	return true
}

// ValidateHost checks a host record, the part of a name before its domain, and returns it in
// canonical form: "@" for the domain itself, labels of letters, digits, '-' and '_', "*" as the
// first label for a wildcard, and at most 253 characters once the domain is added.
func ValidateHost(host, domain string) (string, error) {
	h := strings.ToLower(host)
	if h == "@" {
		return h, nil
	}
	if strings.HasSuffix(h, ".") {
		return "", invalid("records.host", host, "give the host relative to the domain, such as grpc or @, without a trailing dot")
	}
	for i, l := range strings.Split(h, ".") {
		if l == "*" && i == 0 {
			continue
		}
		if l == "*" || strings.Contains(l, "*") {
			return "", invalid("records.host", host, "'*' may only be the whole first label, as in * or *.dev")
		}
		if !checkLabel(l, true) {
			return "", invalid("records.host", host, "labels are 1-63 letters, digits, '-' or '_', not starting or ending with '-'; use @ for the domain itself")
		}
	}
	if n := len(h) + 1 + len(domain); n > 253 {
		return "", invalid("records.host", host, "%s.%s would be %d characters: a name has at most 253", h, domain, n)
	}
	return h, nil
}

// validTarget reports whether s (canonical) is a name a CNAME, MX or SRV record may point to.
func validTarget(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !checkLabel(l, true) {
			return false
		}
	}
	return true
}

func parseTarget(v, example string, allowRoot bool) (string, error) {
	if allowRoot && v == "." {
		return ".", nil
	}
	t := CanonicalName(v)
	if !validTarget(t) || allDigits(t[strings.LastIndexByte(t, '.')+1:]) {
		return "", invalid("records.value", v, "must be a host name such as %s (labels of 1-63 letters, digits, '-' or '_'; 253 characters in all)", example)
	}
	return t, nil
}

// FQDN is the record's full name, without the trailing dot.
func (r *Record) FQDN() string {
	if r.Host == "@" {
		return r.Domain
	}
	return r.Host + "." + r.Domain
}

// isVerificationRecord reports whether r is the TXT record that proves its domain's ownership,
// the one record an unverified domain takes.
func (r *Record) isVerificationRecord() bool {
	return r.Type == TypeTXT && r.Host == VerificationHost
}

// Domain returns the domain with the name ref.
func (s *State) Domain(ref string) (*Domain, error) {
	name := CanonicalName(ref)
	for i := range s.Domains {
		if s.Domains[i].Name == name {
			return &s.Domains[i], nil
		}
	}
	return nil, &NotFoundError{Kind: "domain", Ref: ref}
}

// AddDomain adds an unverified domain with a new ownership token.
func (s *State) AddDomain(name string) (*Domain, error) {
	d, err := ValidateDomainName(name)
	if err != nil {
		return nil, err
	}
	if _, err := s.Domain(d); err == nil {
		return nil, conflict("domain %s already exists", d)
	}
	if err := s.checkOverlap(d); err != nil {
		return nil, err
	}
	s.Domains = append(s.Domains, Domain{
		Name:         d,
		Verification: Verification{Host: VerificationHost, Type: TypeTXT, Value: newID("albctl-verify-")},
	})
	return &s.Domains[len(s.Domains)-1], nil
}

// checkOverlap refuses a domain inside another one, or around it: each name has one zone.
func (s *State) checkOverlap(name string) error {
	for _, other := range s.Domains {
		if other.Name == name {
			continue
		}
		if strings.HasSuffix(name, "."+other.Name) {
			return conflict("domain %s is inside domain %s: add its records to %s instead", name, other.Name, other.Name)
		}
		if strings.HasSuffix(other.Name, "."+name) {
			return conflict("domain %s contains domain %s: delete %s first, or keep using it", name, other.Name, other.Name)
		}
	}
	return nil
}

// VerifyDomain looks up the domain's ownership TXT record the way albctl's DNS server answers,
// and marks the domain verified when it holds the token.
func (s *State) VerifyDomain(ref string) (*Domain, error) {
	d, err := s.Domain(ref)
	if err != nil {
		return nil, err
	}
	if d.Verified {
		return d, nil
	}
	res := s.Authority().Resolve(d.Verification.Host+"."+d.Name, TypeTXT)
	for _, a := range res.Answers {
		if a.Value == d.Verification.Value {
			d.Verified = true
			return d, nil
		}
	}
	return nil, &UnverifiedError{Domain: *d, Verifying: true, Found: res.Answers}
}

// DeleteDomain removes a domain. A domain with records is refused unless force is set, which
// deletes its records too; the records deleted are returned.
func (s *State) DeleteDomain(ref string, force bool) (*Domain, []Record, error) {
	d, err := s.Domain(ref)
	if err != nil {
		return nil, nil, err
	}
	deleted := *d
	records := s.RecordsIn(d.Name)
	if len(records) > 0 && !force {
		return nil, nil, conflict("domain %s has %d record(s): delete them first, or delete the domain with --force", d.Name, len(records))
	}
	s.Records = slices.DeleteFunc(s.Records, func(r Record) bool { return r.Domain == deleted.Name })
	s.Domains = slices.DeleteFunc(s.Domains, func(x Domain) bool { return x.Name == deleted.Name })
	return &deleted, records, nil
}

// RecordsIn returns the records of a domain, or all records when domain is empty.
func (s *State) RecordsIn(domain string) []Record {
	domain = CanonicalName(domain)
	out := []Record{}
	for _, r := range s.Records {
		if domain == "" || r.Domain == domain {
			out = append(out, r)
		}
	}
	return out
}

// Record returns the record with the ID ref.
func (s *State) Record(ref string) (*Record, error) {
	for i := range s.Records {
		if s.Records[i].ID == ref {
			return &s.Records[i], nil
		}
	}
	return nil, &NotFoundError{Kind: "DNS record", Ref: ref}
}

// AddRecord adds a record with a new ID. Its host and value are stored in canonical form.
func (s *State) AddRecord(r Record) (*Record, error) {
	r.ID = newID(prefixRecord)
	if err := s.normalizeRecord(&r); err != nil {
		return nil, err
	}
	s.Records = append(s.Records, r)
	if err := s.checkRecordInContext(len(s.Records)-1, s.Authority()); err != nil {
		s.Records = s.Records[:len(s.Records)-1]
		return nil, err
	}
	return &s.Records[len(s.Records)-1], nil
}

// UpdateRecord applies change to a record and checks the result as AddRecord does. The domain
// and ID cannot change.
func (s *State) UpdateRecord(ref string, change func(*Record) error) (*Record, error) {
	r, err := s.Record(ref)
	if err != nil {
		return nil, err
	}
	updated := *r
	if err := change(&updated); err != nil {
		return nil, err
	}
	updated.ID, updated.Domain = r.ID, r.Domain
	if err := s.normalizeRecord(&updated); err != nil {
		return nil, err
	}
	old := *r
	*r = updated
	i := slices.IndexFunc(s.Records, func(x Record) bool { return x.ID == old.ID })
	if err := s.checkRecordInContext(i, s.Authority()); err != nil {
		s.Records[i] = old
		return nil, err
	}
	return &s.Records[i], nil
}

// DeleteRecord removes a record.
func (s *State) DeleteRecord(ref string) (*Record, error) {
	r, err := s.Record(ref)
	if err != nil {
		return nil, err
	}
	deleted := *r
	s.Records = slices.DeleteFunc(s.Records, func(x Record) bool { return x.ID == deleted.ID })
	return &deleted, nil
}

// normalizeRecord checks a record's own fields and writes them in canonical form; the domain
// must exist and, unless this is the ownership record, be verified.
func (s *State) normalizeRecord(r *Record) error {
	d, err := s.Domain(r.Domain)
	if err != nil {
		return &NotFoundError{Kind: "domain", Ref: r.Domain}
	}
	r.Domain = d.Name
	t := strings.ToUpper(r.Type)
	if !slices.Contains(RecordTypes, t) {
		return invalid("records.type", r.Type, "must be %s", strings.Join(RecordTypes, ", "))
	}
	r.Type = t
	if r.Host, err = ValidateHost(r.Host, d.Name); err != nil {
		return err
	}
	if !d.Verified && !r.isVerificationRecord() {
		ue := &UnverifiedError{Domain: *d}
		for _, o := range s.Records {
			if o.Domain == d.Name && o.isVerificationRecord() {
				ue.Found = append(ue.Found, Answer{Name: o.FQDN(), Type: o.Type, TTL: o.TTL, Value: o.Value, RecordID: o.ID})
			}
		}
		return ue
	}
	if r.Value, err = NormalizeValue(r.Type, r.Value); err != nil {
		return err
	}
	if err := checkRange("records.ttl", r.TTL, MinTTL, MaxTTL); err != nil {
		return invalid("records.ttl", r.TTL, "must be %d-%d seconds (default %d)", MinTTL, MaxTTL, DefaultTTL)
	}
	if r.Line != DefaultLine {
		return invalid("records.line", r.Line, "must be %s: albctl answers every client the same", DefaultLine)
	}
	if r.Type == TypeCNAME && r.Host == "@" {
		return invalid("records.host", r.Host, "a CNAME cannot be at @: the domain itself holds its SOA and NS records; use a host such as www")
	}
	if r.Type == TypeSRV && !srvHost(r.Host) {
		return invalid("records.host", r.Host, "an SRV record's host starts with _service._protocol, such as _grpc._tcp")
	}
	return nil
}

func srvHost(h string) bool {
	labels := strings.Split(h, ".")
	return len(labels) >= 2 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_")
}

// checkRecordInContext checks what record i may not do beside the others: share its name with a
// CNAME, repeat another record, or close a CNAME loop.
func (s *State) checkRecordInContext(i int, auth *Authority) error {
	r := &s.Records[i]
	for j := range s.Records {
		o := &s.Records[j]
		if j == i || o.Domain != r.Domain || o.Host != r.Host {
			continue
		}
		switch {
		case r.Type == TypeCNAME || o.Type == TypeCNAME:
			return conflict("%s already has record %s (%s %s): a CNAME cannot share its name with another record",
				r.FQDN(), o.ID, o.Type, o.Value)
		case r.Type == o.Type && r.Value == o.Value:
			return conflict("%s already has this %s record: %s", r.FQDN(), r.Type, o.ID)
		}
	}
	if r.Type == TypeCNAME {
		if res := auth.Resolve(r.FQDN(), TypeA); res.Loop {
			names := []string{res.Name}
			for _, c := range res.Chain {
				names = append(names, c.Value)
			}
			return invalid("records.value", r.Value, "makes a CNAME loop: %s", strings.Join(names, " -> "))
		}
	}
	return nil
}

// validateDNS checks domains and records as a whole document.
func (s *State) validateDNS() error {
	seen := map[string]bool{}
	for _, d := range s.Domains {
		name, err := ValidateDomainName(d.Name)
		if err != nil {
			return err
		}
		if name != d.Name {
			return invalid("domain", d.Name, "must be written in lower case without a trailing dot")
		}
		if seen[name] {
			return conflict("domain %s appears twice", name)
		}
		seen[name] = true
		if err := s.checkOverlap(name); err != nil {
			return err
		}
		v := d.Verification
		if v.Host != VerificationHost || v.Type != TypeTXT || v.Value == "" {
			return invalid("domain", d.Name, "its verification must be a %s record at %s with a token", TypeTXT, VerificationHost)
		}
	}
	ids := map[string]bool{}
	for i := range s.Records {
		r := s.Records[i]
		if !strings.HasPrefix(r.ID, prefixRecord) || ids[r.ID] {
			return conflict("DNS record ID %q is not a unique %s ID", r.ID, prefixRecord)
		}
		ids[r.ID] = true
		if err := s.normalizeRecord(&r); err != nil {
			return err
		}
		if r != s.Records[i] {
			return invalid("records.value", s.Records[i].Value, "record %s must be stored in canonical form: host %q, type %q, value %q",
				r.ID, r.Host, r.Type, r.Value)
		}
	}
	auth := s.Authority()
	for i := range s.Records {
		if err := s.checkRecordInContext(i, auth); err != nil {
			return err
		}
	}
	return nil
}

// NormalizeValue checks a record's value for its type and returns it in canonical form:
// addresses as Go writes them, names in lower case without the trailing dot, MX as
// "PREFERENCE HOST", SRV as "PRIORITY WEIGHT PORT TARGET", CAA as `FLAGS TAG "VALUE"`.
func NormalizeValue(rtype, value string) (string, error) {
	switch rtype {
	case TypeA, TypeAAAA:
		addr, err := netip.ParseAddr(value)
		if rtype == TypeA && (err != nil || !addr.Is4()) {
			return "", invalid("records.value", value, "an A record's value is an IPv4 address such as 127.0.0.1")
		}
		if rtype == TypeAAAA && (err != nil || !addr.Is6() || addr.Is4In6() || addr.Zone() != "") {
			return "", invalid("records.value", value, "an AAAA record's value is an IPv6 address such as ::1")
		}
		return addr.String(), nil
	case TypeCNAME:
		if _, err := netip.ParseAddr(value); err == nil {
			return "", invalid("records.value", value, "a CNAME points to a name; for an address use an A or AAAA record")
		}
		return parseTarget(value, "alb-xxxx."+LBDomainSuffix, false)
	case TypeTXT:
		if value == "" || len(value) > MaxTXTLength || !printable(value) {
			return "", invalid("records.value", value, "a TXT record's value is 1-%d printable ASCII characters", MaxTXTLength)
		}
		return value, nil
	case TypeMX:
		mx, err := ParseMX(value)
		return mx.String(), err
	case TypeSRV:
		srv, err := ParseSRV(value)
		return srv.String(), err
	case TypeCAA:
		caa, err := ParseCAA(value)
		return caa.String(), err
	}
	return "", invalid("records.type", rtype, "must be %s", strings.Join(RecordTypes, ", "))
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// MX is the value of an MX record.
type MX struct {
	Preference uint16
	Host       string // "." for a domain that takes no mail
}

func (m MX) String() string { return fmt.Sprintf("%d %s", m.Preference, m.Host) }

// ParseMX reads "PREFERENCE HOST", such as "10 mail.example.test".
func ParseMX(v string) (MX, error) {
	const form = `an MX record's value is "PREFERENCE HOST", such as "10 mail.example.test", with PREFERENCE 0-65535`
	f := strings.Fields(v)
	if len(f) != 2 {
		return MX{}, invalid("records.value", v, form)
	}
	pref, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return MX{}, invalid("records.value", v, form)
	}
	host, err := parseTarget(f[1], "mail.example.test", true)
	if err != nil {
		return MX{}, invalid("records.value", v, form)
	}
	return MX{Preference: uint16(pref), Host: host}, nil
}

// SRV is the value of an SRV record.
type SRV struct {
	Priority, Weight, Port uint16
	Target                 string // "." when the service is not offered
}

func (s SRV) String() string {
	return fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, s.Target)
}

// ParseSRV reads "PRIORITY WEIGHT PORT TARGET", such as "10 60 443 grpc.example.test".
func ParseSRV(v string) (SRV, error) {
	const form = `an SRV record's value is "PRIORITY WEIGHT PORT TARGET", such as "10 60 443 grpc.example.test", with numbers 0-65535`
	f := strings.Fields(v)
	if len(f) != 4 {
		return SRV{}, invalid("records.value", v, form)
	}
	var n [3]uint16
	for i := range n {
		x, err := strconv.ParseUint(f[i], 10, 16)
		if err != nil {
			return SRV{}, invalid("records.value", v, form)
		}
		n[i] = uint16(x)
	}
	target, err := parseTarget(f[3], "grpc.example.test", true)
	if err != nil {
		return SRV{}, invalid("records.value", v, form)
	}
	return SRV{Priority: n[0], Weight: n[1], Port: n[2], Target: target}, nil
}

// CAA is the value of a CAA record.
type CAA struct {
	Flags uint8
	Tag   string // issue, issuewild or iodef
	Value string
}

func (c CAA) String() string { return fmt.Sprintf("%d %s %q", c.Flags, c.Tag, c.Value) }

// ParseCAA reads `FLAGS TAG VALUE`, such as `0 issue "letsencrypt.org"`; the quotes are optional
// for a value without spaces.
func ParseCAA(v string) (CAA, error) {
	const form = `a CAA record's value is FLAGS TAG "VALUE", such as 0 issue "letsencrypt.org", with FLAGS 0-255, TAG issue, issuewild or iodef, and VALUE up to 255 printable characters without '"'`
	flags, rest := nextField(v)
	tag, rest := nextField(rest)
	value := strings.TrimSpace(rest)
	f, err := strconv.ParseUint(flags, 10, 8)
	if err != nil {
		return CAA{}, invalid("records.value", v, form)
	}
	tag = strings.ToLower(tag)
	if tag != "issue" && tag != "issuewild" && tag != "iodef" {
		return CAA{}, invalid("records.value", v, form)
	}
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
	} else if value == "" || strings.ContainsAny(value, " \t") {
		return CAA{}, invalid("records.value", v, form)
	}
	if len(value) > 255 || !printable(value) || strings.Contains(value, `"`) {
		return CAA{}, invalid("records.value", v, form)
	}
	return CAA{Flags: uint8(f), Tag: tag, Value: value}, nil
}

// nextField splits off the first field of s, as strings.Fields would find it.
func nextField(s string) (field, rest string) {
	s = strings.TrimLeft(s, " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// Answer is a record as albctl's DNS serves it.
type Answer struct {
	// Name is the owner name, without the trailing dot; for a wildcard match, the name asked.
	Name  string `json:"name"`
	Type  string `json:"type"`
	TTL   int    `json:"ttl"`
	Value string `json:"value"`
	// RecordID is the record that supplies the answer; empty for a load balancer's name.
	RecordID string `json:"recordId,omitempty"`
}

// Resolution is what albctl's zones hold for a name and a type, CNAME records followed.
type Resolution struct {
	Name string
	Type string
	// Zone holds Final; empty when Name is outside albctl's zones.
	Zone string
	// Final is the name the resolution ended at: Name, or the last CNAME target within the zones.
	Final string
	// Chain is the CNAME records followed, in order.
	Chain []Answer
	// Answers are Final's records of the type asked for.
	Answers []Answer
	// NXDomain says that Final does not exist: no record, no record below it, no wildcard.
	NXDomain bool
	// Outside is the CNAME target, outside albctl's zones, where the chain left them.
	Outside string
	// Loop says the chain never ends: it comes back to a name, or is longer than 16 records.
	Loop bool
}

// Authority is what albctl answers for, indexed from one state: the domains' records and the
// load balancers' names. It is the one resolution albctl has; the DNS server, `dns resolve`,
// domain verification and the CNAME loop check all go through it.
type Authority struct {
	zones  map[string]bool
	names  map[string][]Answer
	exists map[string]bool // names with records, their ancestors in the zone, and the apexes
}

// Authority indexes the state's DNS data. The state must not change while the result is used.
func (s *State) Authority() *Authority { return s.AuthorityFor(nil) }

// AuthorityFor is Authority with the addresses a load balancer's name answers given by ID, as
// the live replicas of an etcd state serve it; a load balancer without any answers its own.
func (s *State) AuthorityFor(lbAddrs map[string][]string) *Authority {
	a := &Authority{zones: map[string]bool{LBDomainSuffix: true}, names: map[string][]Answer{}, exists: map[string]bool{}}
	for _, d := range s.Domains {
		a.zones[d.Name] = true
	}
	for zone := range a.zones {
		a.exists[zone] = true
	}
	add := func(zone string, ans Answer) {
		a.names[ans.Name] = append(a.names[ans.Name], ans)
		for n := ans.Name; n != zone && n != ""; n = parent(n) {
			a.exists[n] = true
		}
	}
	for _, lb := range s.LoadBalancers {
		name := CanonicalName(lb.DNSName)
		if !strings.HasSuffix(name, "."+LBDomainSuffix) {
			continue
		}
		addrs := lbAddrs[lb.ID]
		if len(addrs) == 0 {
			addrs = []string{lb.Address}
		}
		for _, a := range addrs {
			addr, err := netip.ParseAddr(a)
			if err != nil {
				continue
			}
			addr = addr.Unmap()
			rtype := TypeA
			if addr.Is6() {
				rtype = TypeAAAA
			}
			add(LBDomainSuffix, Answer{Name: name, Type: rtype, TTL: LBRecordTTL, Value: addr.String()})
		}
	}
	for _, r := range s.Records {
		if a.zones[r.Domain] {
			add(r.Domain, Answer{Name: r.FQDN(), Type: r.Type, TTL: r.TTL, Value: r.Value, RecordID: r.ID})
		}
	}
	return a
}

func parent(name string) string {
	_, rest, _ := strings.Cut(name, ".")
	return rest
}

// Zones lists the zones albctl is authoritative for, sorted.
func (a *Authority) Zones() []string {
	out := make([]string, 0, len(a.zones))
	for z := range a.zones {
		out = append(out, z)
	}
	slices.Sort(out)
	return out
}

// Zone returns the zone name belongs to, or "" when it is outside albctl's zones.
func (a *Authority) Zone(name string) string {
	for n := CanonicalName(name); n != ""; n = parent(n) {
		if a.zones[n] {
			return n
		}
	}
	return ""
}

// lookup returns the records at name, synthesized from a wildcard when name does not exist
// (RFC 4592: the wildcard at the closest existing ancestor), and whether the name exists.
func (a *Authority) lookup(name, zone string) ([]Answer, bool) {
	if a.exists[name] {
		return a.names[name], true
	}
	encloser := parent(name)
	for encloser != zone && encloser != "" && !a.exists[encloser] {
		encloser = parent(encloser)
	}
	wild := a.names["*."+encloser]
	if len(wild) == 0 {
		return nil, false
	}
	out := make([]Answer, len(wild))
	for i, w := range wild {
		w.Name = name
		out[i] = w
	}
	return out, true
}

// Resolve answers a name and a record type (TypeANY for all) from albctl's zones, following
// CNAME records, across zones too, unless the type asked is CNAME or ANY.
func (a *Authority) Resolve(name, rtype string) Resolution {
	res := Resolution{Name: CanonicalName(name), Type: strings.ToUpper(rtype)}
	seen := map[string]bool{}
	for cur := res.Name; ; {
		zone := a.Zone(cur)
		if zone == "" {
			if cur != res.Name {
				res.Outside = cur
			}
			return res
		}
		res.Zone, res.Final = zone, cur
		if seen[cur] || len(res.Chain) > maxChain {
			res.Loop = true
			return res
		}
		seen[cur] = true
		answers, exists := a.lookup(cur, zone)
		res.NXDomain = !exists
		if res.Type != TypeCNAME && res.Type != TypeANY {
			if i := slices.IndexFunc(answers, func(x Answer) bool { return x.Type == TypeCNAME }); i >= 0 {
				res.Chain = append(res.Chain, answers[i])
				cur = answers[i].Value
				continue
			}
		}
		for _, ans := range answers {
			if res.Type == TypeANY || ans.Type == res.Type {
				res.Answers = append(res.Answers, ans)
			}
		}
		return res
	}
}
