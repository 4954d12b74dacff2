package proxy

// TLSPolicy is what a listener's TLS security policy allows. The zero value
// is TLS 1.2 and 1.3 with Go's default cipher suites.
type TLSPolicy struct {
	MinVersion, MaxVersion uint16
	// CipherSuites for TLS 1.2 and below; TLS 1.3's are not configurable.
	CipherSuites []uint16
}
