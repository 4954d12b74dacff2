package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestACLLifecycle(t *testing.T) {
	s := scenario(t)
	a, err := s.CreateACL(ACL{Name: "office", Entries: []ACLEntry{
		{CIDR: "10.1.2.3/8", Description: "office, floor 2"}, {CIDR: "192.168.1.7"}, {CIDR: "2001:DB8::1/32"}, {CIDR: "::ffff:172.16.0.0/108"}, {CIDR: "::1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.ID, "acl-") {
		t.Fatalf("ID %q", a.ID)
	}
	want := []ACLEntry{{CIDR: "10.0.0.0/8", Description: "office, floor 2"}, {CIDR: "192.168.1.7/32"}, {CIDR: "2001:db8::/32"}, {CIDR: "172.16.0.0/12"}, {CIDR: "::1/128"}}
	if !reflect.DeepEqual(a.Entries, want) {
		t.Fatalf("entries %v, want %v", a.Entries, want)
	}
	id := a.ID

	if _, err := s.AddACLEntries("office", []ACLEntry{{CIDR: "10.9.9.9/8"}}); err == nil || err.Error() != "entry 10.0.0.0/8 is already in ACL office" {
		t.Fatalf("duplicate after canonical form: %v", err)
	}
	if _, err := s.AddACLEntries(id, []ACLEntry{{CIDR: "127.0.0.2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveACLEntries("office", []string{"192.168.1.7", "10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	var nf *NotFoundError
	if _, err := s.RemoveACLEntries("office", []string{"10.0.0.0/8"}); !errors.As(err, &nf) || err.Error() != "entry 10.0.0.0/8 is not in ACL office" {
		t.Fatalf("removing an entry not there: %v", err)
	}
	got, _ := s.ACL("office")
	if want := []ACLEntry{{CIDR: "2001:db8::/32"}, {CIDR: "172.16.0.0/12"}, {CIDR: "::1/128"}, {CIDR: "127.0.0.2/32"}}; !reflect.DeepEqual(got.Entries, want) {
		t.Fatalf("entries %v, want %v", got.Entries, want)
	}

	if _, err := s.CreateACL(ACL{Name: "office"}); err == nil || err.Error() != `an ACL named "office" already exists` {
		t.Fatalf("same name: %v", err)
	}
	empty, err := s.CreateACL(ACL{Name: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := json.Marshal(empty); !strings.Contains(string(data), `"entries":[]`) {
		t.Fatalf("an empty ACL is stored as %s", data)
	}

	l, err := s.UpdateListener(s.Listeners[0].ID, func(l *Listener) error {
		l.ACLType, l.ACLIDs = ACLWhite, []string{"office", empty.ID}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{id, empty.ID}; !reflect.DeepEqual(l.ACLIDs, want) {
		t.Fatalf("listener ACLs %v, want IDs %v", l.ACLIDs, want)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	var ce *ConflictError
	if _, err := s.DeleteACL("office"); !errors.As(err, &ce) || !strings.Contains(err.Error(), "ACL office is used by listeners "+l.ID+" (port 8443)") {
		t.Fatalf("delete while used: %v", err)
	}
	if _, err := s.UpdateListener(l.ID, func(l *Listener) error {
		l.ACLType, l.ACLIDs = "", nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteACL("office"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ACL(id); !errors.As(err, &nf) {
		t.Fatalf("deleted ACL still found: %v", err)
	}
}

func TestACLRefused(t *testing.T) {
	s := scenario(t)
	many := make([]ACLEntry, MaxACLEntries+1)
	for i := range many {
		many[i].CIDR = fmt.Sprintf("10.0.%d.%d", i/256, i%256)
	}
	tests := []struct {
		acl ACL
		err string
	}{
		{ACL{Name: "x"}, `invalid name "x"`},
		{ACL{Name: "acl-office"}, `invalid name "acl-office": must not start with "acl-", which IDs use`},
		{ACL{Name: "a1", Entries: []ACLEntry{{CIDR: "10.0.0.0/33"}}}, `invalid entries.cidr "10.0.0.0/33"`},
		{ACL{Name: "a1", Entries: []ACLEntry{{CIDR: "fe80::1%eth0"}}}, `invalid entries.cidr "fe80::1%eth0"`},
		{ACL{Name: "a1", Entries: []ACLEntry{{CIDR: "example.test"}}}, `invalid entries.cidr "example.test"`},
		{ACL{Name: "a1", Entries: []ACLEntry{{CIDR: ""}}}, `invalid entries.cidr ""`},
		{ACL{Name: "a1", Entries: []ACLEntry{{CIDR: "10.0.0.1", Description: strings.Repeat("d", 257)}}}, "invalid entries.description"},
		{ACL{Name: "a1", Entries: []ACLEntry{{CIDR: "10.0.0.1", Description: "tab\there"}}}, "invalid entries.description"},
		{ACL{Name: "a1", Entries: []ACLEntry{{CIDR: "10.0.0.1"}, {CIDR: "10.0.0.1/32"}}}, "entry 10.0.0.1/32 is already in ACL a1"},
		{ACL{Name: "a1", Entries: []ACLEntry{{CIDR: "::ffff:10.0.0.1"}, {CIDR: "10.0.0.1"}}}, "entry 10.0.0.1/32 is already in ACL a1"},
		{ACL{Name: "a1", Entries: many}, "ACL a1 would have 501 entries: at most 500"},
	}
	for _, tt := range tests {
		if _, err := s.CreateACL(tt.acl); err == nil || !strings.HasPrefix(err.Error(), tt.err) {
			t.Errorf("CreateACL(%.60v) = %v, want %q", tt.acl, err, tt.err)
		}
	}
	if len(s.ACLs) != 0 {
		t.Fatalf("refused ACLs were stored: %v", s.ACLs)
	}
	if _, err := s.CreateACL(ACL{Name: "full", Entries: many[:MaxACLEntries]}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddACLEntries("full", []ACLEntry{{CIDR: "192.0.2.1"}}); err == nil || err.Error() != "ACL full would have 501 entries: at most 500" {
		t.Fatalf("501st entry: %v", err)
	}
	if a, _ := s.ACL("full"); len(a.Entries) != MaxACLEntries {
		t.Fatalf("a refused change kept %d entries", len(a.Entries))
	}
	if _, err := s.RemoveACLEntries("full", []string{"10.0.0.0", "nope"}); err == nil || !strings.HasPrefix(err.Error(), `invalid entries.cidr "nope"`) {
		t.Fatalf("remove a bad CIDR: %v", err)
	}
	if a, _ := s.ACL("full"); len(a.Entries) != MaxACLEntries {
		t.Fatalf("a refused removal took entries: %d left", len(a.Entries))
	}
}

func TestListenerACLsRefused(t *testing.T) {
	s := scenario(t)
	var ids []string
	for _, name := range []string{"a1", "a2", "a3", "a4"} {
		a, err := s.CreateACL(ACL{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	lsn := s.Listeners[0].ID
	tests := []struct {
		aclType string
		acls    []string
		err     string
	}{
		{ACLWhite, []string{"a1", "a2", "a3", "a4"}, `invalid aclIds "4 ACLs": a listener uses at most 3 ACLs`},
		{ACLWhite, []string{"a1", ids[0]}, `invalid aclIds "a1": the listener has this ACL already`},
		{ACLWhite, []string{"nope"}, `ACL "nope" not found`},
		{"", []string{"a1"}, `invalid aclType "": must be white (admit only the clients the ACLs list) or black (refuse them)`},
		{"grey", []string{"a1"}, `invalid aclType "grey"`},
		{ACLBlack, nil, `invalid aclType "black": an ACL type applies only to a listener with ACLs`},
	}
	for _, tt := range tests {
		_, err := s.UpdateListener(lsn, func(l *Listener) error {
			l.ACLType, l.ACLIDs = tt.aclType, tt.acls
			return nil
		})
		if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
			t.Errorf("%s %v: %v, want %q", tt.aclType, tt.acls, err, tt.err)
		}
	}
	if l := s.Listeners[0]; l.ACLType != "" || l.ACLIDs != nil {
		t.Fatalf("refused changes were kept: %+v", l)
	}

	// A document with an ACL the listener names but that is not there.
	s.Listeners[0].ACLType, s.Listeners[0].ACLIDs = ACLBlack, []string{"acl-0123456789abcdef"}
	if err := s.Validate(); err == nil || !strings.HasPrefix(err.Error(), `invalid aclIds "acl-0123456789abcdef": no such ACL`) {
		t.Fatalf("Validate: %v", err)
	}
	s.Listeners[0].ACLIDs = []string{ids[0]}
	s.ACLs = append(s.ACLs, ACL{ID: "acl-0123456789abcdef", Name: "a1", Entries: []ACLEntry{}})
	if err := s.Validate(); err == nil || err.Error() != `an ACL named "a1" already exists` {
		t.Fatalf("Validate with two ACLs of one name: %v", err)
	}
}

func TestOlderDocumentWithoutACLs(t *testing.T) {
	s := scenario(t)
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), `"acl`) {
		t.Fatalf("a state without ACLs mentions them:\n%s", data)
	}
	back, err := Decode("state.json", data)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := json.MarshalIndent(back, "", "  ")
	if string(again) != string(data) {
		t.Fatalf("round trip changed the document:\n%s\nwant:\n%s", again, data)
	}
}

func TestParseACLEntry(t *testing.T) {
	tests := []struct {
		in   string
		want ACLEntry
		err  string
	}{
		{in: "10.0.0.0/8", want: ACLEntry{CIDR: "10.0.0.0/8"}},
		{in: " 10.0.0.1 ", want: ACLEntry{CIDR: "10.0.0.1"}},
		{in: "::1,description=the host, itself", want: ACLEntry{CIDR: "::1", Description: "the host, itself"}},
		{in: "10.0.0.0/8,description=", want: ACLEntry{CIDR: "10.0.0.0/8"}},
		{in: "10.0.0.0/8,weight=1", err: `"weight=1" is not description=TEXT: an entry is CIDR[,description=TEXT]`},
		{in: "10.0.0.0/8,office", err: `"office" is not description=TEXT`},
	}
	for _, tt := range tests {
		got, err := ParseACLEntry(tt.in)
		if tt.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Errorf("ParseACLEntry(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseACLEntry(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}
