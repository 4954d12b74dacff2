package route

// ClientCertHeaders name the request headers (lowercase) that carry a
// verified client certificate's details to the servers; an engine removes
// any of them a client sent itself.
type ClientCertHeaders struct {
	Subject, Issuer, Fingerprint, Verify string
}
