package grpcweb_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/albctl/albctl/pkg/proxy/grpcweb"
)

func TestAllows(t *testing.T) {
	tests := []struct {
		origins []string
		origin  string
		want    bool
	}{
		{nil, "", true},
		{nil, "https://app.example.com", false},
		{[]string{"https://app.example.com"}, "https://app.example.com", true},
		{[]string{"https://app.example.com"}, "HTTPS://App.Example.com", true},
		{[]string{"https://app.example.com"}, "http://app.example.com", false},
		{[]string{"https://app.example.com"}, "https://app.example.com:8443", false},
		{[]string{"https://app.example.com"}, "https://other.example.com", false},
		{[]string{"https://app.example.com"}, "", true},
		{[]string{"*"}, "https://anything.test", true},
		{[]string{"*"}, "null", true},
		{[]string{"https://*.example.com"}, "https://a.example.com", true},
		{[]string{"https://*.example.com"}, "https://a.b.example.com", true},
		{[]string{"https://*.example.com"}, "https://A.Example.COM", true},
		{[]string{"https://*.example.com"}, "https://example.com", false},
		{[]string{"https://*.example.com"}, "https://.example.com", false},
		{[]string{"https://*.example.com"}, "http://a.example.com", false},
		{[]string{"https://*.example.com"}, "https://a.example.com.evil.test", false},
		{[]string{"https://*.example.com"}, "https://aexample.com", false},
		{[]string{"https://*.example.com"}, "https://a.example.com:8443", false},
		{[]string{"https://*.example.com:8443"}, "https://a.example.com:8443", true},
		{[]string{"https://x.test", "https://*.example.com"}, "https://a.example.com", true},
	}
	for _, tt := range tests {
		c := grpcweb.Config{Origins: tt.origins}
		if got := c.Allows(tt.origin); got != tt.want {
			t.Errorf("%q allows %q: %v, want %v", tt.origins, tt.origin, got, tt.want)
		}
	}
}

// fieldMap turns fields into a map, failing on a name given twice.
func fieldMap(t *testing.T, fields []hpack.HeaderField) map[string]string {
	t.Helper()
	m := make(map[string]string)
	for _, f := range fields {
		if _, ok := m[f.Name]; ok {
			t.Errorf("%s twice in %v", f.Name, fields)
		}
		m[f.Name] = f.Value
	}
	return m
}

func TestPreflight(t *testing.T) {
	const page = "https://app.example.com"
	base := grpcweb.Config{Origins: []string{page}, AllowHeaders: []string{"x-custom"}}
	withAll := base
	withAll.Credentials, withAll.MaxAge = true, 90*time.Minute
	star := grpcweb.Config{Origins: []string{"*"}}
	starCredentials := grpcweb.Config{Origins: []string{"*"}, Credentials: true}
	tests := []struct {
		name    string
		config  grpcweb.Config
		origin  string
		method  string
		headers string
		status  int
		want    map[string]string // for 204
		why     string            // for 403, a part of it
	}{
		{"allowed", base, page, "POST", "Content-Type, x-grpc-web,x-user-agent, x-custom", 204, map[string]string{
			"access-control-allow-origin":  page,
			"access-control-allow-methods": "POST",
			"access-control-allow-headers": "content-type, x-grpc-web, x-user-agent, x-custom",
			"vary":                         "origin, access-control-request-method, access-control-request-headers",
		}, ""},
		{"no headers", base, page, "POST", "", 204, map[string]string{
			"access-control-allow-origin":  page,
			"access-control-allow-methods": "POST",
			"vary":                         "origin, access-control-request-method, access-control-request-headers",
		}, ""},
		{"credentials and max age", withAll, page, "POST", "content-type", 204, map[string]string{
			"access-control-allow-origin":      page,
			"access-control-allow-credentials": "true",
			"access-control-allow-methods":     "POST",
			"access-control-allow-headers":     "content-type",
			"access-control-max-age":           "5400",
			"vary":                             "origin, access-control-request-method, access-control-request-headers",
		}, ""},
		{"star", star, page, "POST", "content-type", 204, map[string]string{
			"access-control-allow-origin":  "*",
			"access-control-allow-methods": "POST",
			"access-control-allow-headers": "content-type",
			"vary":                         "origin, access-control-request-method, access-control-request-headers",
		}, ""},
		{"star with credentials", starCredentials, page, "POST", "", 204, map[string]string{
			"access-control-allow-origin":      page,
			"access-control-allow-credentials": "true",
			"access-control-allow-methods":     "POST",
			"vary":                             "origin, access-control-request-method, access-control-request-headers",
		}, ""},
		{"refused origin", base, "https://evil.test", "POST", "content-type", 403, nil, "origin https://evil.test is not allowed on listener lsn-1"},
		{"no origin", base, "", "POST", "content-type", 403, nil, "without an Origin header"},
		{"refused method", base, page, "GET", "content-type", 403, nil, "method GET is not allowed"},
		{"refused header", base, page, "POST", "content-type, authorization", 403, nil, "request header authorization is not allowed on listener lsn-1"},
	}
	for _, tt := range tests {
		status, fields, why := tt.config.Preflight("lsn-1", tt.origin, tt.method, tt.headers)
		if status != tt.status {
			t.Errorf("%s: status %d, want %d (%s)", tt.name, status, tt.status, why)
			continue
		}
		if status != 204 {
			if fields != nil || !strings.Contains(why, tt.why) {
				t.Errorf("%s: %v, %q; want no fields and a reason with %q", tt.name, fields, why, tt.why)
			}
			continue
		}
		got := fieldMap(t, fields)
		if why != "" || len(got) != len(tt.want) {
			t.Errorf("%s: %v, %q; want %v", tt.name, got, why, tt.want)
			continue
		}
		for name, value := range tt.want {
			if got[name] != value {
				t.Errorf("%s: %s = %q, want %q", tt.name, name, got[name], value)
			}
		}
	}
}

func TestAppendResponse(t *testing.T) {
	const page = "https://app.example.com"
	response := func() []hpack.HeaderField {
		return []hpack.HeaderField{
			{Name: ":status", Value: "200"},
			{Name: "content-type", Value: "application/grpc-web+proto"},
			{Name: "x-echo-initial", Value: "a"},
			{Name: "access-control-allow-origin", Value: "https://server.test"},
			{Name: "grpc-status", Value: "0"},
		}
	}
	c := grpcweb.Config{Origins: []string{page}, ExposeHeaders: []string{"x-extra"}}

	if got := c.AppendResponse(response(), ""); !slices.Equal(got, response()) {
		t.Errorf("without an origin: %v", got)
	}

	got := fieldMap(t, c.AppendResponse(response(), page))
	want := map[string]string{
		":status":                       "200",
		"content-type":                  "application/grpc-web+proto",
		"x-echo-initial":                "a",
		"grpc-status":                   "0",
		"access-control-allow-origin":   page,
		"access-control-expose-headers": "grpc-status, grpc-message, grpc-status-details-bin, content-type, x-echo-initial, x-extra",
		"vary":                          "origin",
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for name, value := range want {
		if got[name] != value {
			t.Errorf("%s = %q, want %q", name, got[name], value)
		}
	}

	c.Credentials = true
	got = fieldMap(t, c.AppendResponse(nil, page))
	if got["access-control-allow-origin"] != page || got["access-control-allow-credentials"] != "true" ||
		got["access-control-expose-headers"] != "grpc-status, grpc-message, grpc-status-details-bin, x-extra" {
		t.Errorf("with credentials: %v", got)
	}

	star := grpcweb.Config{Origins: []string{"*"}}
	got = fieldMap(t, star.AppendResponse(nil, page))
	if _, ok := got["access-control-allow-credentials"]; got["access-control-allow-origin"] != "*" || ok {
		t.Errorf("for *: %v", got)
	}
}
