package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// FailureKind names a class of connection failure that the probe recognises.
// The values are stable: the CLI switches on them to add its own hints.
type FailureKind string

const (
	FailResolve             FailureKind = "resolve"               // the host name did not resolve
	FailRefused             FailureKind = "refused"               // nothing listens on the port
	FailConnect             FailureKind = "connect"               // other TCP connect errors, timeouts
	FailTLSUnknownAuthority FailureKind = "tls-unknown-authority" // certificate not signed by a trusted CA
	FailTLSNameMismatch     FailureKind = "tls-name-mismatch"     // certificate is for other names
	FailTLSExpired          FailureKind = "tls-expired"           // certificate expired or not yet valid
	FailTLSHandshake        FailureKind = "tls-handshake"         // any other TLS handshake failure
	FailTLSClientCert       FailureKind = "tls-client-cert"       // the server wants a client certificate, or refused ours
	FailNoH2                FailureKind = "no-h2"                 // the server does not speak HTTP/2 (no ALPN h2, HTTP/1.x)
	FailNotTLS              FailureKind = "not-tls"               // a TLS dial reached a plaintext server
	FailTLSServer           FailureKind = "tls-server"            // a -plaintext dial reached a TLS server
	FailNoReflection        FailureKind = "no-reflection"         // the server lacks the reflection service
)

// Failure is a classified failure to reach a gRPC server. Main prints it as
// one "ERROR: ..." line followed by an optional "  hint: ..." line.
type Failure struct {
	Kind FailureKind
	// Target is the address as the user gave it, e.g. "grpc.example.test:443".
	Target string
	// Addr is the resolved address that was dialed, e.g. "127.0.0.1:443";
	// empty when the failure happened before dialing.
	Addr string
	// Detail is the human readable cause.
	Detail string
	// Err is the underlying error, if any.
	Err error
}

func (f *Failure) Error() string { return f.Detail }

func (f *Failure) Unwrap() error { return f.Err }

// Port returns the port of the target, or "" if it has none.
func (f *Failure) Port() string {
	_, port, err := net.SplitHostPort(f.Target)
	if err != nil {
		return ""
	}
	return port
}

// defaultHint is used when Env.Hint has nothing to add.
func defaultHint(f *Failure) string {
	switch f.Kind {
	case FailResolve:
		return "check the name, or ask a specific DNS server with --resolver HOST:PORT"
	case FailRefused:
		return "is the server running and listening on port " + f.Port() + "?"
	case FailTLSUnknownAuthority:
		return "pass the CA certificate with -cacert FILE, or skip verification with -insecure"
	case FailTLSNameMismatch:
		return "connect with a name the certificate covers, or set the expected name with -servername"
	case FailTLSExpired:
		return "renew the server certificate, or skip verification with -insecure"
	case FailNoH2:
		return "gRPC needs HTTP/2: enable HTTP/2 (h2) on the server or listener"
	case FailNotTLS:
		return "the server speaks plaintext HTTP/2: use -plaintext"
	case FailTLSServer:
		return "the server expects TLS: drop -plaintext (add -cacert FILE or -insecure as needed)"
	case FailTLSClientCert:
		return "pass -cert FILE -key FILE with a certificate the listener's client CA issued ('albctl cert create --client --name NAME' writes one that a listener with --client-ca albctl-ca accepts)"
	case FailNoReflection:
		return "describe the service with -proto FILE or -protoset FILE instead"
	}
	return ""
}

// classifyDNS turns a resolver error into a Failure.
func classifyDNS(target, host string, err error) *Failure {
	f := &Failure{Kind: FailResolve, Target: target, Err: err}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		f.Detail = fmt.Sprintf("unknown host %q: no such host", host)
	} else {
		f.Detail = fmt.Sprintf("cannot resolve %q: %v", host, err)
	}
	return f
}

// classifyConnect turns a TCP dial error into a Failure.
func classifyConnect(target, addr string, timeout time.Duration, err error) *Failure {
	f := &Failure{Kind: FailConnect, Target: target, Addr: addr, Err: err}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		f.Kind = FailRefused
		f.Detail = fmt.Sprintf("connection refused by %s", addr)
	case isTimeout(err):
		f.Detail = fmt.Sprintf("connecting to %s timed out after %s", addr, timeout)
	default:
		f.Detail = fmt.Sprintf("cannot connect to %s: %v", addr, unwrapOp(err))
	}
	return f
}

// classifyTLS turns a client handshake error into a Failure. serverName is
// the name the certificate was checked against.
func classifyTLS(target, addr, serverName string, err error) *Failure {
	f := &Failure{Kind: FailTLSHandshake, Target: target, Addr: addr, Err: err}
	var (
		unknownCA x509.UnknownAuthorityError
		wrongName x509.HostnameError
		invalid   x509.CertificateInvalidError
		notTLS    tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknownCA):
		f.Kind = FailTLSUnknownAuthority
		issuer := ""
		if unknownCA.Cert != nil {
			issuer = fmt.Sprintf(" (issuer %q)", unknownCA.Cert.Issuer.String())
		}
		f.Detail = fmt.Sprintf("TLS handshake with %s failed: certificate signed by unknown authority%s", addr, issuer)
	case errors.As(err, &wrongName):
		f.Kind = FailTLSNameMismatch
		f.Detail = fmt.Sprintf("TLS handshake with %s failed: certificate is valid for %s, not %s",
			addr, certNames(wrongName.Certificate), serverName)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		f.Kind = FailTLSExpired
		if time.Now().Before(invalid.Cert.NotBefore) {
			f.Detail = fmt.Sprintf("TLS handshake with %s failed: certificate is not valid before %s",
				addr, invalid.Cert.NotBefore.UTC().Format(time.RFC3339))
		} else {
			f.Detail = fmt.Sprintf("TLS handshake with %s failed: certificate expired at %s",
				addr, invalid.Cert.NotAfter.UTC().Format(time.RFC3339))
		}
	case errors.As(err, &notTLS):
		f.Kind = FailNotTLS
		f.Detail = fmt.Sprintf("server at %s answered in plaintext, not TLS (%s)", addr, describeFirstBytes(notTLS.RecordHeader[:]))
	case isClientCertAlert(err):
		f.Kind = FailTLSClientCert
		f.Detail = fmt.Sprintf("server at %s refused the TLS handshake: %v", addr, unwrapOp(err))
	case isRemoteAlert(err, "no application protocol"):
		f.Kind = FailNoH2
		f.Detail = fmt.Sprintf("server at %s refused ALPN h2: it does not offer HTTP/2 over TLS", addr)
	case isClosed(err):
		f.Detail = fmt.Sprintf("server at %s closed the connection during the TLS handshake", addr)
	case isTimeout(err):
		f.Detail = fmt.Sprintf("TLS handshake with %s timed out", addr)
	default:
		f.Detail = fmt.Sprintf("TLS handshake with %s failed: %v", addr, unwrapOp(err))
	}
	return f
}

// describeFirstBytes guesses what a non-TLS server sent from its first bytes.
func describeFirstBytes(b []byte) string {
	switch {
	case strings.HasPrefix(string(b), "HTTP/"):
		return "it looks like HTTP/1.x"
	case len(b) >= 4 && b[3] == 0x4:
		// An HTTP/2 frame header has the frame type in its fourth byte;
		// servers open with a SETTINGS frame (type 4).
		return "it looks like an HTTP/2 SETTINGS frame"
	}
	return fmt.Sprintf("first bytes % x", b)
}

// certNames lists the names a certificate is valid for.
func certNames(c *x509.Certificate) string {
	if c == nil {
		return "other names"
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	if len(names) == 0 {
		return "no names"
	}
	return strings.Join(names, ", ")
}

// isRemoteAlert reports whether err is a TLS alert sent by the peer whose
// text contains want. crypto/tls does not export the alert type it returns,
// so the text is all there is to go on.
func isRemoteAlert(err error, want string) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && strings.Contains(op.Err.Error(), want)
}

// isClientCertAlert reports whether the peer refused the handshake over the client's
// certificate: none was given, or it did not verify.
func isClientCertAlert(err error) bool {
	for _, alert := range []string{"certificate required", "bad certificate", "unknown certificate authority", "certificate expired", "unsupported certificate"} {
		if isRemoteAlert(err, alert) {
			return true
		}
	}
	return false
}

// clientCertRefused describes a server that asked for a client certificate and refused the
// one given, or none.
func clientCertRefused(target, addr string, gave bool, err error) *Failure {
	what := "requires a client certificate (mutual TLS) and none was given"
	if gave {
		what = "did not accept the client certificate given"
	}
	return &Failure{Kind: FailTLSClientCert, Target: target, Addr: addr, Err: err,
		Detail: fmt.Sprintf("server at %s %s: %v", addr, what, unwrapOp(err))}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isClosed reports whether the peer closed or reset the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// unwrapOp drops the "dial tcp 1.2.3.4:5:" prefix that net.OpError adds,
// because the Failure text already names the address.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
