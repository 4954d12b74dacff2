// Package route is where the data plane's calls go: per listener, the
// server group and the limits Apply last set; per group, the picker over its
// servers; per server, its connections. Engines ask it once per call and
// get an immutable answer; Apply swaps the answers as a whole.
package route

import (
	"strings"
	"time"

	"github.com/albctl/albctl/pkg/proxy/grpcweb"
)

// Route is what Apply last set for one listener. Engines load it once per
// call (or per connection, for the idle timeout) and never change it.
type Route struct {
	ListenerID string
	// Group takes the calls no rule matches.
	Group *Group
	// Rules are tried in order; the first a call meets decides where it
	// goes. Nil if the listener has none.
	Rules *Rules
	// RequestTimeout bounds the wait for a server's response headers; 0
	// means no limit.
	RequestTimeout time.Duration
	// IdleTimeout closes client connections without calls for this long.
	IdleTimeout time.Duration
	// ForwardedPort is the x-forwarded-port value: the listener's port.
	ForwardedPort []string
	// ClientCert, if set, names the headers that pass a client
	// certificate's details to the servers.
	ClientCert *ClientCertHeaders
	// Web, if set, takes gRPC-Web calls from browsers and answers their
	// CORS preflights.
	Web *grpcweb.Config
}

// HostOf returns the IP of "ip:port" or "[ip]:port" without allocating:
// the client's address as the pickers hash it.
func HostOf(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr
	}
	host := addr[:i]
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}

// MaxHeaderBytes is the largest request header block a listener accepts
// (32 KiB, as the listener model documents).
const MaxHeaderBytes = 32 << 10
