package state

// Client certificate requirements of a listener with mutual TLS.
const (
	ClientAuthRequire       = "require"
	ClientAuthVerifyIfGiven = "verify-if-given"
)

// ClientCertHeaders name the request headers that carry a verified client certificate's
// details to the servers.
type ClientCertHeaders struct {
	Subject     string `json:"subject"`
	Issuer      string `json:"issuer"`
	Fingerprint string `json:"fingerprint"`
	Verify      string `json:"verify"`
}
