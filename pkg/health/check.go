package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/albctl/albctl/pkg/state"
)

// userAgent names the checker in the servers' logs.
const userAgent = "albctl-health-check"

// Fallbacks for settings left at zero by hand-made groups; the state's
// validation never lets them through.
const (
	fallbackInterval  = 2 * time.Second
	fallbackTimeout   = 5 * time.Second
	fallbackThreshold = 3
)

// result is the outcome of one check.
type result struct {
	ok     bool
	reason string
}

// probe is a group's health check prepared once per configuration: codes
// parsed, defaults filled in.
type probe struct {
	settings           state.HealthCheck
	interval, timeout  time.Duration
	healthyThreshold   int
	unhealthyThreshold int
	grpcCodes          state.CodeSet
}

func newProbe(hc state.HealthCheck) (*probe, error) {
	p := &probe{
		settings:           hc,
		interval:           hc.Interval.D(),
		timeout:            hc.Timeout.D(),
		healthyThreshold:   hc.HealthyThreshold,
		unhealthyThreshold: hc.UnhealthyThreshold,
	}
	if p.interval <= 0 {
		p.interval = fallbackInterval
	}
	if p.timeout <= 0 {
		p.timeout = fallbackTimeout
	}
	if p.healthyThreshold < 1 {
		p.healthyThreshold = fallbackThreshold
	}
	if p.unhealthyThreshold < 1 {
		p.unhealthyThreshold = fallbackThreshold
	}
	switch hc.Protocol {
	case state.ProtocolGRPC:
		set, err := state.ParseGRPCCodes(hc.Codes)
		if err != nil {
			return nil, fmt.Errorf("health-check codes %q: %v", hc.Codes, err)
		}
		p.grpcCodes = set
	case state.ProtocolHTTP:
		if _, err := state.ParseHTTPCodes(hc.Codes); err != nil {
			return nil, fmt.Errorf("health-check codes %q: %v", hc.Codes, err)
		}
	case state.HealthGRPCHealth, state.ProtocolTCP:
	default:
		return nil, fmt.Errorf("unknown health-check protocol %q", hc.Protocol)
	}
	return p, nil
}

// target returns the address to check: the server's own, or its host with
// the check's port when one is set.
func (p *probe) target(addr string) string {
	if p.settings.Port == 0 {
		return addr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(p.settings.Port))
}

// run performs one check of the server at addr, bounded by the timeout.
func (p *probe) run(ctx context.Context, addr string) result {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	addr = p.target(addr)
	var res result
	switch p.settings.Protocol {
	case state.ProtocolGRPC:
		res = p.checkGRPC(ctx, addr)
	case state.HealthGRPCHealth:
		res = p.checkGRPCHealth(ctx, addr)
	case state.ProtocolHTTP:
		res = p.checkHTTP(ctx, addr)
	default:
		res = p.checkTCP(ctx, addr)
	}
	// A check cut short by its deadline says so, whatever error surfaced.
	if !res.ok && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.reason = p.timeoutReason()
	}
	return res
}

func (p *probe) timeoutReason() string {
	return "timeout after " + state.Duration(p.timeout).String()
}

// emptyGRPCMessage is a gRPC frame holding an empty, uncompressed message.
var emptyGRPCMessage = []byte{0, 0, 0, 0, 0}

// h2cTransport opens the gRPC checks' connections: plaintext HTTP/2 with
// prior knowledge, as the proxy speaks to backends. Connections come from
// NewClientConn, so none is pooled or shared between checks.
var h2cTransport = newTransport(func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) })

// http1Transport opens the HTTP checks' connections.
var http1Transport = newTransport(func(p *http.Protocols) { p.SetHTTP1(true) })

func newTransport(protocols func(*http.Protocols)) *http.Transport {
	var p http.Protocols
	protocols(&p)
	return &http.Transport{
		Protocols:          &p,
		DialContext:        (&net.Dialer{}).DialContext,
		DisableCompression: true,
	}
}

// checkGRPC is the cloud's check: POST an empty message to the path on a
// fresh connection and judge the gRPC status, from the trailers or from a
// trailers-only response.
func (p *probe) checkGRPC(ctx context.Context, addr string) result {
	resp, err := roundTrip(ctx, h2cTransport, addr, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+p.settings.Path, bytes.NewReader(emptyGRPCMessage))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.Header.Set("User-Agent", userAgent)
		return req, nil
	})
	if err != nil {
		return result{reason: describe(err)}
	}
	text := resp.Trailer.Get("Grpc-Status")
	if text == "" {
		text = resp.Header.Get("Grpc-Status")
	}
	if text == "" {
		return result{reason: fmt.Sprintf("HTTP %d without grpc-status: not a gRPC answer", resp.StatusCode)}
	}
	code, err := strconv.Atoi(text)
	if err != nil || code < 0 {
		return result{reason: fmt.Sprintf("invalid grpc-status %q", text)}
	}
	if !p.grpcCodes.Contains(code) {
		return result{reason: fmt.Sprintf("grpc-status %s not in %s", CodeText(code), p.grpcCodes)}
	}
	return result{ok: true, reason: "grpc-status " + CodeText(code)}
}

// checkHTTP sends the method to the path on a fresh HTTP/1.1 connection and
// judges the status class.
func (p *probe) checkHTTP(ctx context.Context, addr string) result {
	method := p.settings.Method
	if method == "" {
		method = http.MethodHead
	}
	resp, err := roundTrip(ctx, http1Transport, addr, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+p.settings.Path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", userAgent)
		return req, nil
	})
	if err != nil {
		return result{reason: describe(err)}
	}
	if !state.HTTPCodeAllowed(p.settings.Codes, resp.StatusCode) {
		return result{reason: fmt.Sprintf("HTTP %d not in %s", resp.StatusCode, p.settings.Codes)}
	}
	return result{ok: true, reason: fmt.Sprintf("HTTP %d", resp.StatusCode)}
}

// maxBodyRead bounds what a check reads of an answer it does not need.
const maxBodyRead = 64 << 10

// roundTrip opens a new connection to addr, sends one request and reads the
// answer to its end (trailers come after the body), then closes the
// connection. The response's body is closed.
func roundTrip(ctx context.Context, t *http.Transport, addr string, newRequest func() (*http.Request, error)) (*http.Response, error) {
	req, err := newRequest()
	if err != nil {
		return nil, err
	}
	cc, err := t.NewClientConn(ctx, "http", addr)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxBodyRead)); err != nil {
		return nil, err
	}
	return resp, nil
}

// checkGRPCHealth calls grpc.health.v1.Health/Check on a fresh connection
// and wants SERVING.
func (p *probe) checkGRPCHealth(ctx context.Context, addr string) result {
	var (
		mu      sync.Mutex
		dialErr error
	)
	dial := func(ctx context.Context, target string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
		mu.Lock()
		dialErr = err
		mu.Unlock()
		return conn, err
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dial),
		grpc.WithUserAgent(userAgent),
	)
	if err != nil {
		return result{reason: err.Error()}
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: p.settings.Service})
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		if dialErr != nil {
			return result{reason: describe(dialErr)}
		}
		st := status.Convert(err)
		reason := "grpc-status " + CodeText(int(st.Code()))
		if st.Message() != "" {
			reason += ": " + st.Message()
		}
		return result{reason: reason}
	}
	serving := resp.GetStatus()
	if serving != healthpb.HealthCheckResponse_SERVING {
		return result{reason: serving.String()}
	}
	return result{ok: true, reason: serving.String()}
}

// checkTCP connects and hangs up.
func (p *probe) checkTCP(ctx context.Context, addr string) result {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return result{reason: describe(err)}
	}
	conn.Close()
	return result{ok: true, reason: "connected"}
}

// describe puts a failed connection or request in a few words.
func describe(err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return "connection closed by the server"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	}
	return err.Error()
}

// CodeText writes a gRPC status code with its name when it has one: "14 (UNAVAILABLE)".
func CodeText(code int) string {
	if name, ok := rpccode.Code_name[int32(code)]; ok {
		return fmt.Sprintf("%d (%s)", code, name)
	}
	return strconv.Itoa(code)
}
