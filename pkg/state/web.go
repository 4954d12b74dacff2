package state

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The web protocols a listener can take from browsers: gRPC-Web (binary and text) and
// Connect's protocol (binary).
const (
	WebProtocolGRPCWeb = "grpc-web"
	WebProtocolConnect = "connect"
)

// WebProtocols are the values of a listener's webProtocols.
var WebProtocols = []string{WebProtocolGRPCWeb, WebProtocolConnect}

// Limits of a listener's CORS setting.
const (
	MaxCORSOrigins = 20
	MaxCORSHeaders = 20
	MaxCORSMaxAge  = 24 * time.Hour
)

// CORS says which pages may call a listener that takes gRPC-Web, and what they may send and
// read beyond what gRPC-Web clients need.
type CORS struct {
	// AllowOrigins are "https://app.example.com", "https://*.example.com" or "*".
	AllowOrigins  []string `json:"allowOrigins,omitempty"`
	AllowHeaders  []string `json:"allowHeaders,omitempty"`
	ExposeHeaders []string `json:"exposeHeaders,omitempty"`
	// MaxAge is how long browsers may keep a preflight's answer; 0 leaves it to them.
	MaxAge           Duration `json:"maxAge,omitempty"`
	AllowCredentials bool     `json:"allowCredentials,omitempty"`
}

func (l *Listener) validateWeb(sg *ServerGroup) error {
	if len(l.WebProtocols) == 0 {
		if l.CORS != nil {
			return invalid("cors", "", "CORS applies to gRPC-Web calls: turn them on with --web-protocols "+WebProtocolGRPCWeb)
		}
		return nil
	}
	for i, p := range l.WebProtocols {
		if !slices.Contains(WebProtocols, p) {
			return invalid("webProtocols", p, "must be %s, or both", strings.Join(WebProtocols, " or "))
		}
		if slices.Contains(l.WebProtocols[:i], p) {
			return invalid("webProtocols", p, "listed twice")
		}
	}
	if l.Protocol != ProtocolHTTPS || sg.Protocol != ProtocolGRPC {
		return invalid("webProtocols", strings.Join(l.WebProtocols, ","), "gRPC-Web needs an HTTPS listener in front of a gRPC server group")
	}
	c := l.CORS
	if c == nil {
		return nil
	}
	if len(c.AllowOrigins) > MaxCORSOrigins {
		return invalid("cors.allowOrigins", len(c.AllowOrigins), "at most %d origins", MaxCORSOrigins)
	}
	for i, o := range c.AllowOrigins {
		if err := validateOrigin(o); err != nil {
			return err
		}
		if slices.Contains(c.AllowOrigins[:i], o) {
			return invalid("cors.allowOrigins", o, "listed twice")
		}
	}
	if c.AllowCredentials && slices.Contains(c.AllowOrigins, "*") {
		return invalid("cors.allowCredentials", "true", "browsers send credentials only to a listener that names their page's origin: list origins instead of *")
	}
	for _, hs := range []struct {
		field string
		names []string
	}{{"cors.allowHeaders", c.AllowHeaders}, {"cors.exposeHeaders", c.ExposeHeaders}} {
		if len(hs.names) > MaxCORSHeaders {
			return invalid(hs.field, len(hs.names), "at most %d headers", MaxCORSHeaders)
		}
		for i, h := range hs.names {
			if err := validateHeaderKey(hs.field, h); err != nil {
				return err
			}
			if h != strings.ToLower(h) {
				return invalid(hs.field, h, "must be lowercase, as HTTP/2 sends header names")
			}
			if slices.Contains(hs.names[:i], h) {
				return invalid(hs.field, h, "listed twice")
			}
		}
	}
	return checkDuration("cors.maxAge", c.MaxAge, 0, MaxCORSMaxAge)
}

// validateOrigin accepts what a browser sends as Origin, "scheme://host[:port]", with "*." to
// begin the host for any subdomain, or "*" for any page.
func validateOrigin(o string) error {
	if o == "*" {
		return nil
	}
	const rule = "must be * or an origin such as https://app.example.com, https://*.example.com or http://127.0.0.1:8080, lowercase, without a path"
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || o != strings.ToLower(o) {
		return invalid("cors.allowOrigins", o, rule)
	}
	host := strings.TrimPrefix(u.Hostname(), "*.")
	if strings.Contains(host, "*") || !validHostname(host) && net.ParseIP(strings.Trim(host, "[]")) == nil {
		return invalid("cors.allowOrigins", o, rule)
	}
	return nil
}
