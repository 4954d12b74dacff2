package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testPKI is a CA and a server certificate for "localhost", 127.0.0.1 and
// the names given.
type testPKI struct {
	pool *x509.CertPool
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

func testCA(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "albctl test CA"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			IsCA:                  true,
			KeyUsage:              x509.KeyUsageCertSign,
			BasicConstraintsValid: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		ca, _ := x509.ParseCertificate(der)
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		pki = &testPKI{pool: pool, ca: ca, key: key}
	})
	return pki
}

var serial atomic.Int64

func (p *testPKI) cert(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// backend is a real grpc-go server implementing the interop TestService.
// Metadata steers it:
//   - x-echo-*: returned as response headers and trailers;
//   - x-sleep: a duration to wait before answering (stops early if the
//     call is cancelled, which is recorded);
//   - x-forever: StreamingOutputCall sends until the call ends.
type backend struct {
	testpb.UnimplementedTestServiceServer
	name  string
	addr  string
	srv   *grpc.Server
	calls atomic.Int64
	sent  atomic.Int64 // bytes sent by x-forever streams

	mu        sync.Mutex
	lastMD    metadata.MD
	deadline  time.Duration // time left when the last call arrived; 0 = none
	cancelled chan struct{}
}

func startBackend(t testing.TB, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: ln.Addr().String(), cancelled: make(chan struct{}, 16)}
	b.srv = grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	testpb.RegisterTestServiceServer(b.srv, b)
	go b.srv.Serve(ln)
	t.Cleanup(b.srv.Stop)
	return b
}

func (b *backend) arrive(ctx context.Context) metadata.MD {
	b.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	b.mu.Lock()
	b.lastMD = md
	b.deadline = 0
	if d, ok := ctx.Deadline(); ok {
		b.deadline = time.Until(d)
	}
	b.mu.Unlock()
	echo := metadata.MD{}
	for k, v := range md {
		if strings.HasPrefix(k, "x-echo") {
			echo[k] = v
		}
	}
	if len(echo) > 0 {
		grpc.SetHeader(ctx, echo)
		grpc.SetTrailer(ctx, echo)
	}
	if v := md.Get("x-sleep"); len(v) > 0 {
		d, _ := time.ParseDuration(v[0])
		select {
		case <-time.After(d):
		case <-ctx.Done():
			b.cancelled <- struct{}{}
		}
	}
	return md
}

func (b *backend) seen() (metadata.MD, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastMD, b.deadline
}

func (b *backend) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	b.arrive(ctx)
	if s := req.GetResponseStatus(); s != nil && s.Code != 0 {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	body := req.GetPayload().GetBody()
	if req.ResponseSize > 0 {
		body = make([]byte, req.ResponseSize)
	}
	return &testpb.SimpleResponse{ServerId: b.name, Payload: &testpb.Payload{Body: body}}, ctx.Err()
}

func (b *backend) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	md := b.arrive(stream.Context())
	if len(md.Get("x-forever")) > 0 {
		size := int(req.ResponseParameters[0].Size)
		msg := &testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, size)}}
		for {
			if err := stream.Send(msg); err != nil {
				return err
			}
			b.sent.Add(int64(size))
		}
	}
	for _, p := range req.ResponseParameters {
		time.Sleep(time.Duration(p.IntervalUs) * time.Microsecond)
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.Size)}}); err != nil {
			return err
		}
	}
	return nil
}

func (b *backend) StreamingInputCall(stream testpb.TestService_StreamingInputCallServer) error {
	b.arrive(stream.Context())
	total := 0
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

func (b *backend) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	b.arrive(stream.Context())
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range req.ResponseParameters {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.Size)}}); err != nil {
				return err
			}
		}
	}
}

// servers builds a group's server list from backends with one weight each.
func servers(weight int, bs ...*backend) []ServerConfig {
	out := make([]ServerConfig, len(bs))
	for i, b := range bs {
		out[i] = ServerConfig{Addr: b.addr, Weight: weight}
	}
	return out
}

// testConfig is one listener on 127.0.0.1:0 forwarding to group "sgp-test".
func testConfig(t testing.TB, group GroupConfig) Config {
	group.ID = "sgp-test"
	return Config{
		Listeners: []ListenerConfig{{
			ID: "lsn-test", Addr: "127.0.0.1:0", HTTP2: true, GroupID: "sgp-test",
			Certificates: []tls.Certificate{testCA(t).cert(t, "localhost")},
		}},
		Groups: map[string]GroupConfig{"sgp-test": group},
	}
}

// startProxy applies cfg to a new proxy and returns it with the address of
// listener "lsn-test".
//
// ALBCTL_PROXY_ENGINE, if set, picks the engine for every test that does not
// choose one itself, so the whole suite runs against either engine.
func startProxy(t testing.TB, opts Options, cfg Config) (*Proxy, string) {
	t.Helper()
	p := New(withTestEngine(opts))
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	return p, p.ListenerAddr("lsn-test")
}

// withTestEngine sets opts.Engine from ALBCTL_PROXY_ENGINE unless set.
func withTestEngine(opts Options) Options {
	if opts.Engine == "" {
		opts.Engine = os.Getenv("ALBCTL_PROXY_ENGINE")
	}
	return opts
}

// dial opens one real gRPC client connection through the proxy's TLS port.
func dial(t testing.TB, addr string) testpb.TestServiceClient {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{RootCAs: testCA(t).pool, ServerName: "localhost"})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t testing.TB, err error, code codes.Code, msgPart string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msgPart) {
		t.Fatalf("got %v, want code %v with message containing %q", err, code, msgPart)
	}
}
