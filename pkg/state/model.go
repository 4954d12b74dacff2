// Package state holds albctl's model: load balancers, server groups, certificates, listeners and
// DNS, their defaults and validation, and the store that keeps them in one versioned document.
// Every writer goes through the model's validation, so the file never holds what the data plane
// cannot run.
package state

import "time"

// Version is the document version this albctl reads and writes.
const Version = 1

// State is the whole document.
type State struct {
	Version       int            `json:"version"`
	LoadBalancers []LoadBalancer `json:"loadBalancers"`
	ServerGroups  []ServerGroup  `json:"serverGroups"`
	Certificates  []Certificate  `json:"certificates"`
	Listeners     []Listener     `json:"listeners"`
	Domains       []Domain       `json:"domains"`
	Records       []Record       `json:"records"`
	// Rules are the listeners' forwarding rules; older documents have none.
	Rules []Rule `json:"rules,omitempty"`
	// ACLs are access control lists listeners admit or refuse clients by.
	ACLs []ACL `json:"acls,omitempty"`
	// TLSPolicies are the user's own TLS security policies, beside the system ones.
	TLSPolicies []TLSPolicy `json:"tlsPolicies,omitempty"`
	// CA is albctl's local certificate authority, created on first use by `cert create`.
	CA *CA `json:"ca,omitempty"`
}

// Empty reports whether the document holds no resources (albctl's CA aside).
func (s *State) Empty() bool {
	return len(s.LoadBalancers)+len(s.ServerGroups)+len(s.Certificates)+len(s.Listeners)+len(s.Domains)+
		len(s.Records)+len(s.Rules)+len(s.ACLs)+len(s.TLSPolicies) == 0
}

// LoadBalancer is an instance with an address and a generated domain name.
type LoadBalancer struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address"`
	DNSName string `json:"dnsName"`
}

// Server group protocols, schedulers and health-check protocols.
const (
	ProtocolGRPC  = "gRPC"
	ProtocolHTTP  = "HTTP"
	ProtocolHTTPS = "HTTPS"
	ProtocolTCP   = "TCP"
	// HealthGRPCHealth calls grpc.health.v1.Health/Check and wants SERVING.
	HealthGRPCHealth = "grpc-health"

	SchedulerWRR = "wrr"
	SchedulerWLC = "wlc"
	SchedulerSCH = "sch"
	SchedulerUCH = "uch"
)

// Schedulers lists the server group schedulers.
var Schedulers = []string{SchedulerWRR, SchedulerWLC, SchedulerSCH, SchedulerUCH}

// Where a uch scheduler finds its hash key.
const (
	UCHQueryString = "QueryString"
	UCHHeader      = "Header"
)

// UCHConfig names the request value a uch scheduler hashes: a query parameter, as the cloud
// has it, or a header (gRPC metadata), albctl's addition.
type UCHConfig struct {
	Type string `json:"type"`
	Key  string `json:"key"`
}

// DefaultGRPCHealthPath is a well-formed method that no real service implements: a live gRPC
// server answers it with status 12 (UNIMPLEMENTED), which the default codes count as healthy.
const DefaultGRPCHealthPath = "/albctl.healthcheck.v1.Unimplemented/Check"

// ServerGroup is a set of backends with a scheduler and a health check.
type ServerGroup struct {
	ID           string      `json:"id"`
	Name         string      `json:"name"`
	Protocol     string      `json:"protocol"`
	Scheduler    string      `json:"scheduler"`
	HealthCheck  HealthCheck `json:"healthCheck"`
	DrainTimeout Duration    `json:"drainTimeout"`
	SlowStart    Duration    `json:"slowStart"` // 0 (the default; older state files lack it) is off
	// UCHConfig is set for the uch scheduler only.
	UCHConfig *UCHConfig `json:"uchConfig,omitempty"`
	Servers   []Server   `json:"servers"`
}

// HealthCheck holds a server group's active health-check settings.
type HealthCheck struct {
	Enabled  bool   `json:"enabled"`
	Protocol string `json:"protocol"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	// Codes are gRPC status codes ("0-5,12") for gRPC checks, HTTP classes ("http_2xx,http_3xx")
	// for HTTP checks, and empty for TCP and grpc-health.
	Codes              string   `json:"codes"`
	Service            string   `json:"service,omitempty"`
	Interval           Duration `json:"interval"`
	Timeout            Duration `json:"timeout"`
	HealthyThreshold   int      `json:"healthyThreshold"`
	UnhealthyThreshold int      `json:"unhealthyThreshold"`
	Port               int      `json:"port"`
}

// Server is one backend of a server group.
type Server struct {
	Address     string `json:"address"`
	Port        int    `json:"port"`
	Weight      int    `json:"weight"`
	Description string `json:"description"`
}

// Certificate is a server certificate with its private key, both PEM.
type Certificate struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Domains  []string  `json:"domains"`
	NotAfter time.Time `json:"notAfter"`
	// Issuer is "albctl-ca" for certificates issued by the local CA, "imported" otherwise.
	Issuer  string `json:"issuer"`
	CertPEM string `json:"certPEM"`
	KeyPEM  string `json:"keyPEM"`
	// Usage is UsageServer (older documents), UsageClient or UsageCA.
	Usage string `json:"usage,omitempty"`
}

// CA is albctl's local certificate authority.
type CA struct {
	CertPEM string `json:"certPEM"`
	KeyPEM  string `json:"keyPEM"`
}

// Listener accepts clients on a load balancer's port and forwards to a server group.
type Listener struct {
	ID            string `json:"id"`
	LBID          string `json:"lbId"`
	Protocol      string `json:"protocol"`
	Port          int    `json:"port"`
	HTTP2         bool   `json:"http2"`
	CertificateID string `json:"certificateId"`
	// AdditionalCertificateIDs are served by SNI to clients that ask for a name the default
	// certificate does not cover.
	AdditionalCertificateIDs []string `json:"additionalCertificateIds,omitempty"`
	ServerGroupID            string   `json:"serverGroupId"`
	IdleTimeout              Duration `json:"idleTimeout"`
	RequestTimeout           Duration `json:"requestTimeout"`
	// TLSPolicy names the HTTPS listener's TLS security policy, a system or a custom one;
	// empty (older documents) is DefaultTLSPolicy.
	TLSPolicy string `json:"tlsPolicy,omitempty"`
	// ACLType (ACLWhite or ACLBlack) says whether the listener admits only the clients its
	// ACLs list or refuses them; set with ACLIDs (at most MaxListenerACLs).
	ACLType string   `json:"aclType,omitempty"`
	ACLIDs  []string `json:"aclIds,omitempty"`
	// ClientCAID names the CA certificate that client certificates must chain to, for mutual
	// TLS; ClientAuth is ClientAuthRequire or ClientAuthVerifyIfGiven then.
	ClientCAID string `json:"clientCaId,omitempty"`
	ClientAuth string `json:"clientAuth,omitempty"`
	// ForwardClientCert, if set, passes the verified client certificate's details to the
	// servers in these request headers.
	ForwardClientCert *ClientCertHeaders `json:"forwardClientCert,omitempty"`
	// WebProtocols are the protocols browsers may call the listener's gRPC servers with
	// (WebProtocolGRPCWeb); CORS says which pages may.
	WebProtocols []string `json:"webProtocols,omitempty"`
	CORS         *CORS    `json:"cors,omitempty"`
}

// Domain is a DNS zone the user claims, proven by a TXT record.
type Domain struct {
	Name         string       `json:"name"`
	Verified     bool         `json:"verified"`
	Verification Verification `json:"verification"`
}

// Verification is the TXT record that proves ownership of a domain.
type Verification struct {
	Host  string `json:"host"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Record is one DNS record in a domain.
type Record struct {
	ID     string `json:"id"`
	Domain string `json:"domain"`
	Host   string `json:"host"`
	Type   string `json:"type"`
	Value  string `json:"value"`
	TTL    int    `json:"ttl"`
	Line   string `json:"line"`
}

// Defaults and limits, as the cloud's.
const (
	DefaultAddress        = "127.0.0.1"
	DefaultWeight         = 100
	MaxServersPerGroup    = 1000
	DefaultDrainTimeout   = 300 * time.Second
	MinSlowStart          = 30 * time.Second
	MaxSlowStart          = 900 * time.Second
	DefaultIdleTimeout    = 15 * time.Second
	DefaultRequestTimeout = 60 * time.Second
	LBDomainSuffix        = "local.alb.albctl.test"
)

// NewServerGroup returns a group with the defaults for its protocol.
func NewServerGroup(name, protocol string) ServerGroup {
	return ServerGroup{
		Name:         name,
		Protocol:     protocol,
		Scheduler:    SchedulerWRR,
		HealthCheck:  DefaultHealthCheck(protocol),
		DrainTimeout: Duration(DefaultDrainTimeout),
		Servers:      []Server{},
	}
}

// DefaultHealthCheck returns the health check a new group of the protocol gets.
func DefaultHealthCheck(protocol string) HealthCheck {
	hc := HealthCheck{
		Enabled:            true,
		Interval:           Duration(2 * time.Second),
		Timeout:            Duration(5 * time.Second),
		HealthyThreshold:   3,
		UnhealthyThreshold: 3,
	}
	hc.SetProtocolDefaults(protocol)
	return hc
}

// SetProtocolDefaults sets the method, path and codes that suit a health-check protocol
// (a server group protocol maps to its natural check: gRPC → gRPC, HTTP/HTTPS → HTTP), and
// clears the service name, which only grpc-health checks use.
func (hc *HealthCheck) SetProtocolDefaults(protocol string) {
	hc.Service = ""
	switch protocol {
	case ProtocolGRPC:
		hc.Protocol, hc.Method, hc.Path, hc.Codes = ProtocolGRPC, "POST", DefaultGRPCHealthPath, "12"
	case ProtocolHTTP, ProtocolHTTPS:
		hc.Protocol, hc.Method, hc.Path, hc.Codes = ProtocolHTTP, "HEAD", "/", "http_2xx,http_3xx"
	case HealthGRPCHealth:
		hc.Protocol, hc.Method, hc.Path, hc.Codes = HealthGRPCHealth, "POST", "/grpc.health.v1.Health/Check", ""
	case ProtocolTCP:
		hc.Protocol, hc.Method, hc.Path, hc.Codes = ProtocolTCP, "", "", ""
	default:
		hc.Protocol = protocol
	}
}
