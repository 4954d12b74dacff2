package proxy

import "net/netip"

// ACL decides at accept, before TLS, which clients may connect: with Allow,
// only those in Prefixes (a white list); without, all but those (a black
// list).
type ACL struct {
	Allow    bool
	Prefixes []netip.Prefix
}
