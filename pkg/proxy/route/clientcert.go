package route

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
)

// ClientCertHeaders name the request headers (lowercase) that carry a
// verified client certificate's details to the servers; an engine removes
// any of them a client sent itself.
type ClientCertHeaders struct {
	Subject, Issuer, Fingerprint, Verify string
}

// Client certificate verdicts, as the Verify header carries them.
const (
	ClientVerifySuccess = "SUCCESS" // a certificate was given and verified
	ClientVerifyNone    = "NONE"    // none was given (client auth verify-if-given)
)

// Fields returns the header fields for a connection's client certificate:
// the verdict always, the subject, issuer and SHA-256 fingerprint (hex) of
// a verified certificate.
func (h *ClientCertHeaders) Fields(cs *tls.ConnectionState) []Field {
	if len(cs.PeerCertificates) == 0 || len(cs.VerifiedChains) == 0 {
		return []Field{{h.Verify, ClientVerifyNone}}
	}
	leaf := cs.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	return []Field{
		{h.Subject, leaf.Subject.String()},
		{h.Issuer, leaf.Issuer.String()},
		{h.Fingerprint, hex.EncodeToString(sum[:])},
		{h.Verify, ClientVerifySuccess},
	}
}

// Has reports whether name is one of the headers.
func (h *ClientCertHeaders) Has(name string) bool {
	return name == h.Subject || name == h.Issuer || name == h.Fingerprint || name == h.Verify
}
