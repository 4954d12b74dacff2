package state

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestValidateHost(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	tests := []struct {
		host, want, err string
	}{
		{host: "@", want: "@"},
		{host: "grpc", want: "grpc"},
		{host: "GRPC.Dev", want: "grpc.dev"},
		{host: "*", want: "*"},
		{host: "*.dev", want: "*.dev"},
		{host: "_albctl-challenge", want: "_albctl-challenge"},
		{host: "_grpc._tcp", want: "_grpc._tcp"},
		{host: long63, want: long63},
		{host: long63 + "a", err: "labels are 1-63"},
		{host: "", err: "labels are 1-63"},
		{host: "a..b", err: "labels are 1-63"},
		{host: "-a", err: "labels are 1-63"},
		{host: "a-", err: "labels are 1-63"},
		{host: "a b", err: "labels are 1-63"},
		{host: "dev.*", err: "'*' may only be the whole first label"},
		{host: "a*", err: "'*' may only be the whole first label"},
		{host: "grpc.", err: "without a trailing dot"},
		{host: strings.Repeat(long63+".", 3) + strings.Repeat("b", 50), err: "at most 253"},
	}
	for _, tt := range tests {
		got, err := ValidateHost(tt.host, "example.test")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ValidateHost(%q) = %q, %v; want error containing %q", tt.host, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ValidateHost(%q) = %q, %v; want %q", tt.host, got, err, tt.want)
		}
	}
}

func TestValidateDomainName(t *testing.T) {
	for name, want := range map[string]string{"Example.Test.": "example.test", "a.b.c": "a.b.c", "xn--bcher-kva.test": "xn--bcher-kva.test"} {
		if got, err := ValidateDomainName(name); err != nil || got != want {
			t.Errorf("ValidateDomainName(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"", "test", "a..test", "_x.test", "*.example.test", "1.2.3.4", "-a.test",
		strings.Repeat("a", 64) + ".test", LBDomainSuffix, "x." + LBDomainSuffix, "albctl.test"} {
		if _, err := ValidateDomainName(name); !IsInvalid(err) {
			t.Errorf("ValidateDomainName(%q) = %v; want an InvalidError", name, err)
		}
	}
}

func TestNormalizeValue(t *testing.T) {
	tests := []struct {
		rtype, value, want, err string
	}{
		{rtype: TypeA, value: "127.0.0.1", want: "127.0.0.1"},
		{rtype: TypeA, value: "::1", err: "IPv4 address"},
		{rtype: TypeA, value: "::ffff:127.0.0.1", err: "IPv4 address"},
		{rtype: TypeA, value: "127.0.0.01", err: "IPv4 address"},
		{rtype: TypeA, value: "example.test", err: "IPv4 address"},
		{rtype: TypeAAAA, value: "2001:DB8:0:0::1", want: "2001:db8::1"},
		{rtype: TypeAAAA, value: "127.0.0.1", err: "IPv6 address"},
		{rtype: TypeAAAA, value: "::ffff:127.0.0.1", err: "IPv6 address"},
		{rtype: TypeAAAA, value: "fe80::1%eth0", err: "IPv6 address"},
		{rtype: TypeCNAME, value: "ALB-x.Local.alb.albctl.test.", want: "alb-x.local.alb.albctl.test"},
		{rtype: TypeCNAME, value: "127.0.0.1", err: "for an address use an A or AAAA record"},
		{rtype: TypeCNAME, value: "a..b", err: "must be a host name"},
		{rtype: TypeCNAME, value: ".", err: "must be a host name"},
		{rtype: TypeCNAME, value: "", err: "must be a host name"},
		{rtype: TypeTXT, value: `v=spf1 -all "quoted"`, want: `v=spf1 -all "quoted"`},
		{rtype: TypeTXT, value: "", err: "1-1024 printable"},
		{rtype: TypeTXT, value: "tab\there", err: "1-1024 printable"},
		{rtype: TypeTXT, value: strings.Repeat("x", 1025), err: "1-1024 printable"},
		{rtype: TypeMX, value: " 10   Mail.Example.Test. ", want: "10 mail.example.test"},
		{rtype: TypeMX, value: "0 .", want: "0 ."},
		{rtype: TypeMX, value: "mail.example.test", err: "PREFERENCE HOST"},
		{rtype: TypeMX, value: "65536 mail.example.test", err: "PREFERENCE HOST"},
		{rtype: TypeMX, value: "-1 mail.example.test", err: "PREFERENCE HOST"},
		{rtype: TypeSRV, value: "10 60 443 GRPC.example.test", want: "10 60 443 grpc.example.test"},
		{rtype: TypeSRV, value: "10 60 443", err: "PRIORITY WEIGHT PORT TARGET"},
		{rtype: TypeSRV, value: "10 60 70000 grpc.example.test", err: "PRIORITY WEIGHT PORT TARGET"},
		{rtype: TypeCAA, value: `0 issue "letsencrypt.org"`, want: `0 issue "letsencrypt.org"`},
		{rtype: TypeCAA, value: `128 ISSUEWILD ;`, want: `128 issuewild ";"`},
		{rtype: TypeCAA, value: `0 iodef "mailto:sec@example.test"`, want: `0 iodef "mailto:sec@example.test"`},
		{rtype: TypeCAA, value: `0 issue ""`, want: `0 issue ""`},
		{rtype: TypeCAA, value: `256 issue "ca.test"`, err: "FLAGS TAG"},
		{rtype: TypeCAA, value: `0 policy "ca.test"`, err: "FLAGS TAG"},
		{rtype: TypeCAA, value: `0 issue two words`, err: "FLAGS TAG"},
		{rtype: TypeCAA, value: `0 issue "a"b"`, err: "FLAGS TAG"},
		{rtype: "NS", value: "ns.example.test", err: "must be A, AAAA"},
	}
	for _, tt := range tests {
		got, err := NormalizeValue(tt.rtype, tt.value)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("NormalizeValue(%s, %q) = %q, %v; want error containing %q", tt.rtype, tt.value, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeValue(%s, %q) = %q, %v; want %q", tt.rtype, tt.value, got, err, tt.want)
		}
	}
}

// verifiedDomain returns a state with a verified domain example.test and a load balancer.
func verifiedDomain(t *testing.T) (*State, *LoadBalancer) {
	t.Helper()
	s := New()
	lb, err := s.CreateLoadBalancer(LoadBalancer{Name: "demo", Address: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.AddDomain("example.test")
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, Record{Domain: "example.test", Host: VerificationHost, Type: "txt", Value: d.Verification.Value})
	if _, err := s.VerifyDomain("example.test"); err != nil {
		t.Fatal(err)
	}
	return s, lb
}

func mustAdd(t *testing.T, s *State, r Record) *Record {
	t.Helper()
	if r.TTL == 0 {
		r.TTL = DefaultTTL
	}
	if r.Line == "" {
		r.Line = DefaultLine
	}
	added, err := s.AddRecord(r)
	if err != nil {
		t.Fatalf("AddRecord(%+v): %v", r, err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("state invalid after AddRecord(%+v): %v", r, err)
	}
	return added
}

func TestOwnershipFlow(t *testing.T) {
	s := New()
	d, err := s.AddDomain("Example.Test")
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "example.test" || d.Verified || d.Verification.Host != VerificationHost || d.Verification.Type != "TXT" ||
		!strings.HasPrefix(d.Verification.Value, "albctl-verify-") {
		t.Fatalf("AddDomain = %+v", d)
	}
	token := d.Verification.Value
	if _, err := s.AddDomain("example.test"); !isConflict(err) {
		t.Errorf("adding the domain twice: %v; want a conflict", err)
	}

	var ue *UnverifiedError
	_, err = s.AddRecord(Record{Domain: "example.test", Host: "grpc", Type: TypeCNAME, Value: "x.example.test", TTL: 600, Line: DefaultLine})
	if !errors.As(err, &ue) || ue.Verifying {
		t.Fatalf("CNAME on an unverified domain: %v; want an UnverifiedError", err)
	}
	if _, err := s.VerifyDomain("example.test"); !errors.As(err, &ue) || !ue.Verifying || len(ue.Found) != 0 ||
		!strings.Contains(err.Error(), "no TXT record at _albctl-challenge.example.test") {
		t.Fatalf("verify without the record: %v", err)
	}
	wrong := mustAdd(t, s, Record{Domain: "example.test", Host: VerificationHost, Type: TypeTXT, Value: "not-the-token"})
	if _, err := s.VerifyDomain("example.test"); !errors.As(err, &ue) || len(ue.Found) != 1 ||
		!strings.Contains(err.Error(), `holds "not-the-token", not the token`) {
		t.Fatalf("verify with a wrong token: %v", err)
	}
	if _, err := s.UpdateRecord(wrong.ID, func(r *Record) error { r.Value = token; return nil }); err != nil {
		t.Fatal(err)
	}
	if d, err := s.VerifyDomain("example.test"); err != nil || !d.Verified {
		t.Fatalf("VerifyDomain = %+v, %v", d, err)
	}
	mustAdd(t, s, Record{Domain: "example.test", Host: "grpc", Type: TypeCNAME, Value: "x.example.test"})

	if _, _, err := s.DeleteDomain("example.test", false); !isConflict(err) || !strings.Contains(err.Error(), "has 2 record(s)") {
		t.Errorf("DeleteDomain without force: %v", err)
	}
	deleted, records, err := s.DeleteDomain("example.test", true)
	if err != nil || deleted.Name != "example.test" || len(records) != 2 || len(s.Records) != 0 || len(s.Domains) != 0 {
		t.Errorf("DeleteDomain(force) = %+v, %d records, %v; state %+v", deleted, len(records), err, s)
	}
}

func isConflict(err error) bool {
	var c *ConflictError
	return errors.As(err, &c)
}

func TestAddDomainOverlap(t *testing.T) {
	s := New()
	if _, err := s.AddDomain("example.test"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"grpc.example.test", "test"} {
		if _, err := s.AddDomain(name); err == nil {
			t.Errorf("AddDomain(%q) succeeded beside example.test", name)
		}
	}
}

func TestRecordRules(t *testing.T) {
	s, lb := verifiedDomain(t)
	cname := mustAdd(t, s, Record{Domain: "example.test", Host: "grpc", Type: TypeCNAME, Value: lb.DNSName})
	mustAdd(t, s, Record{Domain: "example.test", Host: "a", Type: TypeCNAME, Value: "b.example.test"})
	mustAdd(t, s, Record{Domain: "example.test", Host: "www", Type: TypeA, Value: "127.0.0.1"})

	tests := []struct {
		name string
		r    Record
		err  string
	}{
		{"A beside a CNAME", Record{Host: "grpc", Type: TypeA, Value: "127.0.0.1"}, "a CNAME cannot share its name"},
		{"second CNAME", Record{Host: "grpc", Type: TypeCNAME, Value: "other.example.test"}, "a CNAME cannot share its name"},
		{"CNAME beside an A", Record{Host: "www", Type: TypeCNAME, Value: "grpc.example.test"}, "a CNAME cannot share its name"},
		{"duplicate", Record{Host: "www", Type: TypeA, Value: "127.0.0.1"}, "already has this A record"},
		{"loop", Record{Host: "b", Type: TypeCNAME, Value: "a.example.test"}, "makes a CNAME loop: b.example.test -> a.example.test -> b.example.test"},
		{"self loop", Record{Host: "self", Type: TypeCNAME, Value: "self.example.test"}, "makes a CNAME loop"},
		{"wildcard loop", Record{Host: "*", Type: TypeCNAME, Value: "nothing.example.test"}, "makes a CNAME loop"},
		{"CNAME at apex", Record{Host: "@", Type: TypeCNAME, Value: "x.test"}, "a CNAME cannot be at @"},
		{"SRV host", Record{Host: "grpc2", Type: TypeSRV, Value: "1 1 443 grpc.example.test"}, "_service._protocol"},
		{"TTL too low", Record{Host: "t", Type: TypeA, Value: "127.0.0.1", TTL: -1}, "must be 1-86400"},
		{"TTL too high", Record{Host: "t", Type: TypeA, Value: "127.0.0.1", TTL: 86401}, "must be 1-86400"},
		{"line", Record{Host: "t", Type: TypeA, Value: "127.0.0.1", Line: "unicom"}, "must be default"},
		{"type", Record{Host: "t", Type: "NS", Value: "ns.example.test"}, "must be A, AAAA, CNAME, TXT, MX, SRV, CAA"},
		{"no domain", Record{Domain: "other.test", Host: "t", Type: TypeA, Value: "127.0.0.1"}, `domain "other.test" not found`},
	}
	for _, tt := range tests {
		before := slices.Clone(s.Records)
		r := tt.r
		if r.Domain == "" {
			r.Domain = "example.test"
		}
		if r.TTL == 0 {
			r.TTL = DefaultTTL
		}
		if r.Line == "" {
			r.Line = DefaultLine
		}
		_, err := s.AddRecord(r)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: AddRecord = %v; want error containing %q", tt.name, err, tt.err)
		}
		if !slices.Equal(before, s.Records) {
			t.Errorf("%s: a refused AddRecord changed the records", tt.name)
		}
	}

	// An update that would close a loop is refused and leaves the record as it was.
	b := mustAdd(t, s, Record{Domain: "example.test", Host: "b", Type: TypeA, Value: "127.0.0.2"})
	_, err := s.UpdateRecord(b.ID, func(r *Record) error { r.Type, r.Value = TypeCNAME, "a.example.test"; return nil })
	if err == nil || !strings.Contains(err.Error(), "CNAME loop") {
		t.Errorf("UpdateRecord into a loop: %v", err)
	}
	if got, _ := s.Record(b.ID); got.Type != TypeA || got.Value != "127.0.0.2" {
		t.Errorf("refused update changed the record: %+v", got)
	}
	if _, err := s.DeleteRecord(cname.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(cname.ID); err == nil {
		t.Error("deleted record still found")
	}
}

func TestValidateRefusesHandEditedDNS(t *testing.T) {
	s, _ := verifiedDomain(t)
	good := *s
	cases := map[string]func(s *State){
		"upper-case host":   func(s *State) { s.Records[0].Host = "_ALBCTL-challenge" },
		"bad record ID":     func(s *State) { s.Records[0].ID = "x" },
		"bad value":         func(s *State) { s.Records[0].Value = "" },
		"unknown domain":    func(s *State) { s.Records[0].Domain = "other.test" },
		"duplicate domain":  func(s *State) { s.Domains = append(s.Domains, s.Domains[0]) },
		"empty token":       func(s *State) { s.Domains[0].Verification.Value = "" },
		"upper-case domain": func(s *State) { s.Domains[0].Name = "Example.test" },
		"unverified with a record": func(s *State) {
			s.Domains[0].Verified = false
			s.Records = append(s.Records, Record{ID: "rr-x", Domain: "example.test", Host: "a", Type: TypeA, Value: "127.0.0.1", TTL: 1, Line: DefaultLine})
		},
		"loop": func(s *State) {
			s.Records = append(s.Records,
				Record{ID: "rr-a", Domain: "example.test", Host: "a", Type: TypeCNAME, Value: "b.example.test", TTL: 1, Line: DefaultLine},
				Record{ID: "rr-b", Domain: "example.test", Host: "b", Type: TypeCNAME, Value: "a.example.test", TTL: 1, Line: DefaultLine})
		},
	}
	for name, change := range cases {
		c := good
		c.Domains = slices.Clone(good.Domains)
		c.Records = slices.Clone(good.Records)
		change(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}

func TestResolve(t *testing.T) {
	s, lb := verifiedDomain(t)
	v6, err := s.CreateLoadBalancer(LoadBalancer{Name: "v6", Address: "::1"})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, Record{Domain: "example.test", Host: "grpc", Type: TypeCNAME, Value: lb.DNSName})
	mustAdd(t, s, Record{Domain: "example.test", Host: "hop", Type: TypeCNAME, Value: "grpc.example.test"})
	mustAdd(t, s, Record{Domain: "example.test", Host: "away", Type: TypeCNAME, Value: "grpc.elsewhere.test"})
	mustAdd(t, s, Record{Domain: "example.test", Host: "*.dev", Type: TypeA, Value: "10.0.0.1"})
	mustAdd(t, s, Record{Domain: "example.test", Host: "x.dev", Type: TypeTXT, Value: "explicit"})
	mustAdd(t, s, Record{Domain: "example.test", Host: "deep.ent", Type: TypeA, Value: "10.0.0.2"})
	a := s.Authority()

	type want struct {
		final    string
		chain    int
		answers  []string
		nx, loop bool
		outside  string
		zone     string
	}
	tests := []struct {
		name, rtype string
		want        want
	}{
		{"hop.example.test", TypeA, want{final: lb.DNSName, chain: 2, answers: []string{"127.0.0.1"}, zone: LBDomainSuffix}},
		{"GRPC.Example.Test.", TypeA, want{final: lb.DNSName, chain: 1, answers: []string{"127.0.0.1"}, zone: LBDomainSuffix}},
		{"grpc.example.test", TypeCNAME, want{final: "grpc.example.test", answers: []string{lb.DNSName}, zone: "example.test"}},
		{v6.DNSName, TypeAAAA, want{final: v6.DNSName, answers: []string{"::1"}, zone: LBDomainSuffix}},
		{v6.DNSName, TypeA, want{final: v6.DNSName, zone: LBDomainSuffix}},
		{"alb-nothere." + LBDomainSuffix, TypeA, want{final: "alb-nothere." + LBDomainSuffix, nx: true, zone: LBDomainSuffix}},
		{"away.example.test", TypeA, want{final: "away.example.test", chain: 1, outside: "grpc.elsewhere.test", zone: "example.test"}},
		{"anything.dev.example.test", TypeA, want{final: "anything.dev.example.test", answers: []string{"10.0.0.1"}, zone: "example.test"}},
		{"a.b.dev.example.test", TypeA, want{final: "a.b.dev.example.test", answers: []string{"10.0.0.1"}, zone: "example.test"}},
		{"x.dev.example.test", TypeA, want{final: "x.dev.example.test", zone: "example.test"}},
		{"x.dev.example.test", TypeTXT, want{final: "x.dev.example.test", answers: []string{"explicit"}, zone: "example.test"}},
		{"ent.example.test", TypeA, want{final: "ent.example.test", zone: "example.test"}},
		{"no.ent.example.test", TypeA, want{final: "no.ent.example.test", nx: true, zone: "example.test"}},
		{"nothing.example.test", TypeA, want{final: "nothing.example.test", nx: true, zone: "example.test"}},
		{"example.test", TypeA, want{final: "example.test", zone: "example.test"}},
		{"example.com", TypeA, want{}},
	}
	for _, tt := range tests {
		res := a.Resolve(tt.name, tt.rtype)
		var answers []string
		for _, ans := range res.Answers {
			answers = append(answers, ans.Value)
		}
		got := want{final: res.Final, chain: len(res.Chain), answers: answers, nx: res.NXDomain, loop: res.Loop, outside: res.Outside, zone: res.Zone}
		if got.final != tt.want.final || got.chain != tt.want.chain || !slices.Equal(got.answers, tt.want.answers) ||
			got.nx != tt.want.nx || got.loop != tt.want.loop || got.outside != tt.want.outside || got.zone != tt.want.zone {
			t.Errorf("Resolve(%s, %s) = %+v; want %+v", tt.name, tt.rtype, got, tt.want)
		}
	}
	if res := a.Resolve("anything.dev.example.test", TypeA); res.Answers[0].Name != "anything.dev.example.test" {
		t.Errorf("a wildcard answer is owned by %q, not the name asked", res.Answers[0].Name)
	}
	if got := a.Zones(); !slices.Equal(got, []string{"example.test", LBDomainSuffix}) {
		t.Errorf("Zones() = %v", got)
	}
}

// FuzzNormalizeValue checks that the record value parsers never panic, that what they accept
// is stable (normalizing twice changes nothing) and stays within the model's limits.
func FuzzNormalizeValue(f *testing.F) {
	for _, seed := range []struct{ rtype, value string }{
		{TypeA, "127.0.0.1"}, {TypeAAAA, "::1"}, {TypeCNAME, "alb-x.local.alb.albctl.test."},
		{TypeTXT, "v=spf1 -all"}, {TypeMX, "10 mail.example.test"}, {TypeSRV, "10 60 443 grpc.example.test"},
		{TypeCAA, `0 issue "letsencrypt.org"`}, {TypeCAA, "128 iodef mailto:a@b.test"},
	} {
		f.Add(seed.rtype, seed.value)
	}
	f.Fuzz(func(t *testing.T, rtype, value string) {
		got, err := NormalizeValue(rtype, value)
		if err != nil {
			if !IsInvalid(err) {
				t.Fatalf("NormalizeValue(%q, %q): %v is not an InvalidError", rtype, value, err)
			}
			return
		}
		again, err := NormalizeValue(rtype, got)
		if err != nil || again != got {
			t.Fatalf("NormalizeValue(%q, %q) = %q, but normalizing that gives %q, %v", rtype, value, got, again, err)
		}
		if rtype == TypeCNAME && (len(got) > 253 || strings.HasSuffix(got, ".")) {
			t.Fatalf("CNAME value %q breaks the name limits", got)
		}
	})
}

// FuzzValidateHost checks that accepted hosts are stable and make names within RFC 1035's
// limits.
func FuzzValidateHost(f *testing.F) {
	for _, seed := range []string{"@", "*", "*.dev", "grpc", "_grpc._tcp", "a..b", "dev.*", "grpc."} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, host string) {
		got, err := ValidateHost(host, "example.test")
		if err != nil {
			return
		}
		if again, err := ValidateHost(got, "example.test"); err != nil || again != got {
			t.Fatalf("ValidateHost(%q) = %q, but validating that gives %q, %v", host, got, again, err)
		}
		r := Record{Domain: "example.test", Host: got}
		name := r.FQDN()
		if len(name) > 253 {
			t.Fatalf("host %q makes a name of %d characters", host, len(name))
		}
		for _, label := range strings.Split(name, ".") {
			if label == "" || len(label) > 63 {
				t.Fatalf("host %q makes a name %q with a bad label", host, name)
			}
		}
	})
}
