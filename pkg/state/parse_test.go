package state

import (
	"strings"
	"testing"
	"time"
)

func TestParseGRPCCodes(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "12", want: "12"},
		{in: "0,12", want: "0,12"},
		{in: "0-5,12", want: "0-5,12"},
		{in: " 12 , 0 ", want: "0,12"},
		{in: "0,1,2,3,12", want: "0-3,12"},
		{in: "99", want: "99"},
		{in: "0-99", want: "0-99"},
		{in: "", err: "no codes"},
		{in: "100", err: "code 100 out of range 0-99"},
		{in: "-1", err: `"" is not a whole number`},
		{in: "5-2", err: "range runs backwards"},
		{in: "a", err: `"a" is not a whole number`},
		{in: "+3", err: `"+3" is not a whole number`},
		{in: "1-200", err: `in range "1-200": code 200 out of range`},
		{in: strings.Repeat("1,", 20) + "1", err: "21 items: at most 20"},
	}
	for _, tt := range tests {
		set, err := ParseGRPCCodes(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseGRPCCodes(%q) error = %v, want it to contain %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || set.String() != tt.want {
			t.Errorf("ParseGRPCCodes(%q) = %q, %v; want %q", tt.in, set.String(), err, tt.want)
		}
	}
}

func TestCodeSetContains(t *testing.T) {
	set, err := ParseGRPCCodes("0-2,12,99")
	if err != nil {
		t.Fatal(err)
	}
	for code := -1; code <= 100; code++ {
		want := code >= 0 && code <= 2 || code == 12 || code == 99
		if set.Contains(code) != want {
			t.Errorf("Contains(%d) = %v, want %v", code, !want, want)
		}
	}
}

func TestParseHTTPCodes(t *testing.T) {
	got, err := ParseHTTPCodes("http_3xx, HTTP_2xx,http_3xx")
	if err != nil || got != "http_2xx,http_3xx" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := ParseHTTPCodes("http_6xx"); err == nil || !strings.Contains(err.Error(), "is not one of http_2xx") {
		t.Fatalf("http_6xx: %v", err)
	}
	if !HTTPCodeAllowed("http_2xx,http_3xx", 204) || HTTPCodeAllowed("http_2xx", 404) {
		t.Fatal("HTTPCodeAllowed is wrong")
	}
}

func TestParseServerSpec(t *testing.T) {
	tests := []struct {
		in   string
		want ServerSpec
		err  string
	}{
		{in: "127.0.0.1:50051", want: ServerSpec{Server: Server{Address: "127.0.0.1", Port: 50051, Weight: 100}}},
		{in: "127.0.0.1:50052,weight=50", want: ServerSpec{Server: Server{Address: "127.0.0.1", Port: 50052, Weight: 50}, HasWeight: true}},
		{in: "[::1]:50051,weight=0", want: ServerSpec{Server: Server{Address: "::1", Port: 50051, Weight: 0}, HasWeight: true}},
		{in: "backend.local:80,description=a, b", want: ServerSpec{Server: Server{Address: "backend.local", Port: 80, Weight: 100, Description: "a, b"}, HasDescription: true}},
		{in: "h:1,weight=7,description=x=y", want: ServerSpec{Server: Server{Address: "h", Port: 1, Weight: 7, Description: "x=y"}, HasWeight: true, HasDescription: true}},
		{in: "::1:50051", err: "is not HOST:PORT"},
		{in: "127.0.0.1", err: "is not HOST:PORT"},
		{in: "127.0.0.1:http", err: `port "http" is not a number`},
		{in: "127.0.0.1:1,weight=x", err: `weight "x" is not a whole number`},
		{in: "127.0.0.1:1,weight=1,weight=2", err: "weight given twice"},
		{in: "127.0.0.1:1,color=red", err: `unknown key "color"`},
		{in: "127.0.0.1:1,heavy", err: `"heavy" is not key=value`},
	}
	for _, tt := range tests {
		got, err := ParseServerSpec(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseServerSpec(%q) error = %v, want it to contain %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseServerSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := map[string]time.Duration{"5": 5 * time.Second, "2s": 2 * time.Second, "1m30s": 90 * time.Second, "0.5": 500 * time.Millisecond}
	for in, want := range tests {
		if got, err := ParseDuration(in); err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseDuration("soon"); err == nil {
		t.Error("ParseDuration(soon) succeeded")
	}
	if got := Duration(300 * time.Second).String(); got != "300s" {
		t.Errorf("String() = %q, want 300s", got)
	}
	if got := Duration(1500 * time.Millisecond).String(); got != "1.5s" {
		t.Errorf("String() = %q, want 1.5s", got)
	}
}

func FuzzParseGRPCCodes(f *testing.F) {
	for _, seed := range []string{"12", "0,12", "0-5,12", "99", "0-99", "", "5-2", "1,,2", "-", "007"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		set, err := ParseGRPCCodes(in)
		if err != nil {
			return
		}
		// The shortest form must read back as the same set.
		again, err := ParseGRPCCodes(set.String())
		if err != nil || again != set {
			t.Fatalf("%q: String() = %q reads back as %q, %v", in, set.String(), again.String(), err)
		}
	})
}

func FuzzParseServerSpec(f *testing.F) {
	for _, seed := range []string{"127.0.0.1:50051", "[::1]:1,weight=0", "h:1,description=a,b", "h:1,weight=1,weight=2", ":", "[::1", "a:b:c"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		spec, err := ParseServerSpec(in)
		if err != nil {
			return
		}
		// Whatever parses must name a host and port that read back the same way.
		again, err := ParseServerSpec(spec.HostPort())
		if err != nil || again.Address != spec.Address || again.Port != spec.Port {
			t.Fatalf("%q: HostPort %q reads back as %+v, %v", in, spec.HostPort(), again, err)
		}
	})
}
