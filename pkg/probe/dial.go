package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/fullstorydev/grpcurl"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

const defaultConnectTimeout = 10 * time.Second

// dial connects to the target. It first resolves the name, opens a TCP
// connection and runs the TLS handshake (or an HTTP/2 preface exchange for
// -plaintext) itself, so that a failure is reported at once and by cause;
// grpc-go would only retry quietly until the deadline. Once that preflight
// passes, the real gRPC connection is dialed to the same address.
func (r *runner) dial(ctx context.Context) (*grpc.ClientConn, error) {
	timing := r.timing.child("Dial")
	defer timing.done()

	connectTimeout := defaultConnectTimeout
	if r.opts.connectTimeout > 0 {
		connectTimeout = seconds(r.opts.connectTimeout)
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()

	target := r.opts.target
	var tlsConf *tls.Config
	if !r.opts.plaintext {
		conf, err := grpcurl.ClientTLSConfig(r.opts.insecure, r.opts.cacert, r.opts.cert, r.opts.key)
		if err != nil {
			return nil, failed("Failed to create TLS config", err)
		}
		conf.ServerName = r.opts.overrideName()
		tlsConf = conf
	}

	// Targets with a scheme (unix://, dns:///) are left to grpc-go.
	var addr string
	if !strings.Contains(target, "://") {
		host, port, err := net.SplitHostPort(target)
		if err != nil {
			return nil, failed(fmt.Sprintf("Failed to dial target host %q", target), err)
		}
		if tlsConf != nil && tlsConf.ServerName == "" {
			// Verify the certificate against the name the user typed, not
			// the address it resolved to.
			tlsConf.ServerName = host
		}
		preflight := timing.child("Preflight")
		addr, err = r.preflight(ctx, connectTimeout, host, port, tlsConf)
		preflight.done()
		if err != nil {
			return nil, err
		}
	}

	r.tlsConf, r.addr = tlsConf, addr
	var opts []grpc.DialOption
	if addr != "" {
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}))
	}
	if r.opts.keepaliveTime > 0 {
		t := seconds(r.opts.keepaliveTime)
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: t, Timeout: t}))
	}
	if r.opts.maxMsgSize > 0 {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(r.opts.maxMsgSize)))
	}
	// -servername only matters for TLS; -authority always sets :authority.
	authority := r.opts.authority
	if tlsConf != nil {
		authority = r.opts.overrideName()
	}
	if authority != "" {
		opts = append(opts, grpc.WithAuthority(authority))
	}
	userAgent := "albctl-probe"
	if r.opts.userAgent != "" {
		userAgent = r.opts.userAgent + " " + userAgent
	}
	opts = append(opts, grpc.WithUserAgent(userAgent))

	var creds credentials.TransportCredentials
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	blocking := timing.child("BlockingDial")
	cc, err := grpcurl.BlockingDial(ctx, "", target, creds, opts...)
	blocking.done()
	if err != nil {
		return nil, failed(fmt.Sprintf("Failed to dial target host %q", target), err)
	}
	return cc, nil
}

// preflight resolves host, connects to the first address that accepts and
// checks that the server speaks the expected protocol. It returns the
// address that worked.
func (r *runner) preflight(ctx context.Context, connectTimeout time.Duration, host, port string, tlsConf *tls.Config) (string, error) {
	target := r.opts.target
	addrs, err := r.resolve(ctx, host)
	if err != nil {
		return "", err
	}

	var conn net.Conn
	var addr string
	var lastFailure *Failure
	for _, a := range addrs {
		addr = net.JoinHostPort(a, port)
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
		if err == nil {
			break
		}
		lastFailure = classifyConnect(target, addr, connectTimeout, err)
		r.verbosef("* Trying %s: %s\n", addr, unwrapOp(err))
	}
	if conn == nil {
		return "", lastFailure
	}
	defer conn.Close()
	r.verbosef("* Connected to %s\n", addr)

	if tlsConf == nil {
		return addr, checkH2C(ctx, conn, target, addr)
	}

	conf := tlsConf.Clone()
	conf.NextProtos = []string{"h2"}
	// Note whether the server asks for a client certificate: under TLS 1.3 it refuses one
	// only after the client's handshake has ended.
	asked := false
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		asked = true
		if len(tlsConf.Certificates) > 0 {
			return &tlsConf.Certificates[0], nil
		}
		return &tls.Certificate{}, nil
	}
	tlsConn := tls.Client(conn, conf)
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		if asked && isClientCertAlert(err) {
			return "", clientCertRefused(target, addr, len(tlsConf.Certificates) > 0, err)
		}
		return "", classifyTLS(target, addr, conf.ServerName, err)
	}
	defer tlsConn.Close()
	state := tlsConn.ConnectionState()
	r.printTLS(state, conf)
	if state.NegotiatedProtocol != "h2" {
		return "", &Failure{Kind: FailNoH2, Target: target, Addr: addr,
			Detail: fmt.Sprintf("server at %s did not negotiate ALPN h2: it does not offer HTTP/2 over TLS", addr)}
	}
	if asked {
		if err := awaitServerFrame(ctx, tlsConn); err != nil && isClientCertAlert(err) {
			return "", clientCertRefused(target, addr, len(tlsConf.Certificates) > 0, err)
		}
	}
	return addr, nil
}

// awaitServerFrame sends the HTTP/2 preface and reads the server's first bytes, which a server
// that refuses the client's certificate answers with its alert instead.
func awaitServerFrame(ctx context.Context, conn *tls.Conn) error {
	deadline := time.Now().Add(2 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		return err
	}
	_, err := conn.Read(make([]byte, 1))
	return err
}

// printTLS writes the handshake facts for -v.
func (r *runner) printTLS(state tls.ConnectionState, conf *tls.Config) {
	if r.verbosity == 0 {
		return
	}
	alpn := state.NegotiatedProtocol
	if alpn == "" {
		alpn = "none"
	}
	r.verbosef("* %s handshake done, server name %s, ALPN %s\n", tls.VersionName(state.Version), conf.ServerName, alpn)
	if len(state.PeerCertificates) == 0 {
		return
	}
	leaf := state.PeerCertificates[0]
	r.verbosef("* Server certificate: subject %q, names %s\n", leaf.Subject.String(), certNames(leaf))
	verified := "verified against the system roots"
	switch {
	case conf.InsecureSkipVerify:
		verified = "NOT verified (-insecure)"
	case r.opts.cacert != "":
		verified = "verified against -cacert"
	}
	r.verbosef("* Certificate issuer %q, expires %s, %s\n",
		leaf.Issuer.String(), leaf.NotAfter.UTC().Format(time.RFC3339), verified)
}

// checkH2C sends the HTTP/2 client preface and an empty SETTINGS frame and
// reads the first bytes of the reply. A plaintext HTTP/2 server answers with
// a SETTINGS frame; anything else tells what the server really is.
func checkH2C(ctx context.Context, conn net.Conn, target, addr string) error {
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return err
		}
	}
	hello := append([]byte(http2.ClientPreface), 0, 0, 0, 0x4, 0, 0, 0, 0, 0)
	_, err := conn.Write(hello)
	head := make([]byte, 9)
	n := 0
	if err == nil {
		n, err = io.ReadFull(conn, head)
	}
	got := head[:n]
	fail := func(kind FailureKind, format string, args ...any) error {
		return &Failure{Kind: kind, Target: target, Addr: addr, Detail: fmt.Sprintf(format, args...), Err: err}
	}
	switch {
	case n >= 2 && (got[0] == 0x15 || got[0] == 0x16) && got[1] == 0x03:
		// 0x16 is a TLS handshake record, 0x15 an alert, both version 3.x.
		return fail(FailTLSServer, "server at %s answered with TLS, not plaintext HTTP/2", addr)
	case strings.HasPrefix(string(got), "HTTP/") && answersHTTPS(conn):
		return fail(FailTLSServer, "server at %s says it is an HTTPS port: it expects TLS, not plaintext", addr)
	case strings.HasPrefix(string(got), "HTTP/"):
		return fail(FailNoH2, "server at %s answered with HTTP/1.x, not plaintext HTTP/2 (h2c)", addr)
	case n == 0 && err != nil && isClosed(err):
		// A TLS server reads the preface as a broken ClientHello and hangs
		// up without a word; that is by far the most common cause.
		return fail(FailTLSServer, "server at %s closed the connection instead of answering the HTTP/2 preface; it probably expects TLS", addr)
	case err != nil && isTimeout(err):
		return fail(FailNoH2, "server at %s did not answer the HTTP/2 preface in time", addr)
	case err != nil:
		return fail(FailConnect, "reading from %s failed: %v", addr, unwrapOp(err))
	case got[3] != 0x4:
		return fail(FailNoH2, "server at %s did not open with an HTTP/2 SETTINGS frame (first bytes % x)", addr, got)
	}
	return nil
}

// resolve maps host to addresses: an IP literal as is, then --resolver if
// given, else Env.Resolve and the system resolver.
func (r *runner) resolve(ctx context.Context, host string) ([]string, error) {
	if net.ParseIP(host) != nil {
		return []string{host}, nil
	}
	var addrs, chain []string
	var err error
	source := ""
	switch {
	case r.opts.resolver != "":
		source = " (DNS server " + r.opts.resolver + ")"
		addrs, chain, err = lookupWithServer(ctx, r.opts.resolver, host)
	case r.env.Resolve != nil:
		addrs, chain, err = r.env.Resolve(ctx, host)
	}
	if err == nil && len(addrs) == 0 && r.opts.resolver == "" {
		source = " (system resolver)"
		chain = nil
		addrs, err = net.DefaultResolver.LookupHost(ctx, host)
	}
	if err != nil {
		return nil, classifyDNS(r.opts.target, host, err)
	}
	if len(addrs) == 0 {
		return nil, &Failure{Kind: FailResolve, Target: r.opts.target,
			Detail: fmt.Sprintf("unknown host %q: no addresses", host)}
	}
	r.verbosef("* Resolving %s%s\n", host, source)
	if len(chain) == 0 {
		chain = []string{host + " -> " + strings.Join(addrs, ", ")}
	}
	for _, line := range chain {
		r.verbosef("*   %s\n", line)
	}
	return addrs, nil
}

// answersHTTPS reads a little more of an HTTP/1.x answer and reports whether it is the refusal
// of a TLS port: albctl's listeners say "expects TLS", Go's HTTPS servers "an HTTPS server".
func answersHTTPS(conn net.Conn) bool {
	_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	rest, _ := io.ReadAll(io.LimitReader(conn, 512))
	return strings.Contains(string(rest), "expects TLS") || strings.Contains(string(rest), "an HTTPS server")
}
