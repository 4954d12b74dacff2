package state

// DefaultTLSPolicy is the policy of listeners that name none: TLS 1.2 and 1.3 with
// forward-secret AEAD suites, what listeners always did.
const DefaultTLSPolicy = "tls_cipher_policy_1_2_strict_with_1_3"

// TLSPolicy is a custom TLS security policy: the lowest TLS version and the cipher suites a
// listener offers.
type TLSPolicy struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	MinVersion string   `json:"minVersion"`
	Ciphers    []string `json:"ciphers"`
}
