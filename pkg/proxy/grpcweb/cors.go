package grpcweb

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2/hpack"
)

// Config is a listener's gRPC-Web setting; a listener without one takes
// no gRPC-Web calls.
type Config struct {
	// Origins are the pages allowed to call: "https://app.example.com",
	// "https://*.example.com" (any subdomain), or "*" (any page).
	Origins []string
	// AllowHeaders are request headers a page may send beyond those
	// gRPC-Web clients send themselves; lower case.
	AllowHeaders []string
	// ExposeHeaders are response headers a page may read beyond the gRPC
	// status fields and those of the response itself; lower case.
	ExposeHeaders []string
	// MaxAge is how long a browser may keep a preflight's answer; 0
	// leaves it to the browser.
	MaxAge time.Duration
	// Credentials lets pages send cookies and HTTP authentication.
	Credentials bool
	// GRPCWeb and Connect say which protocols the listener takes: gRPC-Web
	// (binary and text), Connect's (binary).
	GRPCWeb, Connect bool
}

// clientHeaders are the request headers gRPC-Web and Connect clients send
// themselves, always allowed.
var clientHeaders = []string{
	"content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "grpc-accept-encoding",
	"connect-protocol-version", "connect-timeout-ms",
}

// statusHeaders are what a page needs to read a call's status: exposed on
// every response, as trailers-only answers carry the status in headers.
var statusHeaders = []string{"grpc-status", "grpc-message", "grpc-status-details-bin"}

// Allows reports whether a page of origin may call. A request without an
// Origin header does not come from a page and needs no permission.
func (c *Config) Allows(origin string) bool {
	if origin == "" {
		return true
	}
	for _, o := range c.Origins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
		scheme, host, ok := strings.Cut(o, "://*.")
		if ok && len(origin) > len(scheme)+len("://.")+len(host) &&
			strings.EqualFold(origin[:len(scheme)+3], scheme+"://") &&
			strings.HasSuffix(strings.ToLower(origin), "."+strings.ToLower(host)) {
			return true
		}
	}
	return false
}

// Preflight answers a CORS preflight (OPTIONS) from origin for a call with
// the method and headers it names. Refused, it returns 403 and why.
func (c *Config) Preflight(listener, origin, method, headers string) (status int, fields []hpack.HeaderField, why string) {
	switch {
	case origin == "":
		return 403, nil, "a CORS preflight without an Origin header"
	case !c.Allows(origin):
		return 403, nil, "origin " + origin + " is not allowed on listener " + listener + " (see --cors-allow-origin)"
	case method != "POST":
		return 403, nil, "method " + method + " is not allowed: gRPC-Web calls are POST"
	}
	var allowed []string
	for h := range strings.SplitSeq(headers, ",") {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		if !slices.Contains(clientHeaders, h) && !slices.Contains(c.AllowHeaders, h) {
			return 403, nil, "request header " + h + " is not allowed on listener " + listener + " (see --cors-allow-header)"
		}
		allowed = append(allowed, h)
	}
	fields = c.appendOrigin(fields, origin)
	fields = append(fields,
		hpack.HeaderField{Name: "access-control-allow-methods", Value: "POST"},
		hpack.HeaderField{Name: "vary", Value: "origin, access-control-request-method, access-control-request-headers"})
	if len(allowed) > 0 {
		fields = append(fields, hpack.HeaderField{Name: "access-control-allow-headers", Value: strings.Join(allowed, ", ")})
	}
	if c.MaxAge > 0 {
		fields = append(fields, hpack.HeaderField{Name: "access-control-max-age", Value: strconv.Itoa(int(c.MaxAge / time.Second))})
	}
	return 204, fields, ""
}

func (c *Config) appendOrigin(fields []hpack.HeaderField, origin string) []hpack.HeaderField {
	value := origin
	if !c.Credentials && slices.Contains(c.Origins, "*") {
		value = "*"
	}
	fields = append(fields, hpack.HeaderField{Name: "access-control-allow-origin", Value: value})
	if c.Credentials {
		fields = append(fields, hpack.HeaderField{Name: "access-control-allow-credentials", Value: "true"})
	}
	return fields
}

// AppendResponse adds to a response's fields what lets the page of origin
// read it: the allowed origin, and every header of the response exposed
// with the gRPC status fields and the configured ones. The server's own
// access-control-* fields are dropped: the listener answers for CORS, and
// a browser refuses a response with two allowed origins. Nothing changes
// for a request without an origin.
func (c *Config) AppendResponse(fields []hpack.HeaderField, origin string) []hpack.HeaderField {
	if origin == "" {
		return fields
	}
	fields = slices.DeleteFunc(fields, func(f hpack.HeaderField) bool {
		return strings.HasPrefix(f.Name, "access-control-")
	})
	expose := make([]byte, 0, 128)
	add := func(name string) {
		if len(expose) > 0 {
			expose = append(expose, ", "...)
		}
		expose = append(expose, name...)
	}
	for _, h := range statusHeaders {
		add(h)
	}
	for _, f := range fields {
		if !strings.HasPrefix(f.Name, ":") && !slices.Contains(statusHeaders, f.Name) {
			add(f.Name)
		}
	}
	for _, h := range c.ExposeHeaders {
		add(h)
	}
	fields = c.appendOrigin(fields, origin)
	return append(fields,
		hpack.HeaderField{Name: "access-control-expose-headers", Value: string(expose)},
		hpack.HeaderField{Name: "vary", Value: "origin"})
}
