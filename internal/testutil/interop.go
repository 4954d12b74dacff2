package testutil

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

// PKI is a test CA whose certificates are valid for "localhost", 127.0.0.1
// and the names given.
type PKI struct {
	Pool *x509.CertPool
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
}

var (
	pkiOnce sync.Once
	pki     *PKI
	serial  atomic.Int64
)

// TestCA returns the CA that every test of the process shares.
func TestCA(t testing.TB) *PKI {
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
		pki = &PKI{Pool: pool, ca: ca, key: key}
	})
	return pki
}

// Cert issues a server certificate for names (the first is also its common
// name) and 127.0.0.1.
func (p *PKI) Cert(t testing.TB, names ...string) tls.Certificate {
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

// Interop is a real grpc-go server implementing the interop TestService.
// Metadata steers it:
//   - x-echo-*: returned as response headers and trailers;
//   - x-sleep: a duration to wait before answering (stops early if the
//     call is cancelled, which is recorded in Cancelled);
//   - x-forever: StreamingOutputCall sends until the call ends.
type Interop struct {
	testpb.UnimplementedTestServiceServer
	Name      string
	Addr      string
	Srv       *grpc.Server
	Calls     atomic.Int64
	Sent      atomic.Int64 // bytes sent by x-forever streams
	Cancelled chan struct{}

	mu       sync.Mutex
	lastMD   metadata.MD
	deadline time.Duration // time left when the last call arrived; 0 = none
}

// StartInterop runs an interop server on a 127.0.0.1 port the kernel picks
// until the test ends; opts are added to its grpc-go server options.
func StartInterop(t testing.TB, name string, opts ...grpc.ServerOption) *Interop {
	t.Helper()
	ln := listen(t)
	b := &Interop{Name: name, Addr: ln.Addr().String(), Cancelled: make(chan struct{}, 16)}
	b.Srv = grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(64 << 20), grpc.MaxSendMsgSize(64 << 20)}, opts...)...)
	testpb.RegisterTestServiceServer(b.Srv, b)
	go b.Srv.Serve(ln)
	t.Cleanup(b.Srv.Stop)
	return b
}

func (b *Interop) arrive(ctx context.Context) metadata.MD {
	b.Calls.Add(1)
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
			b.Cancelled <- struct{}{}
		}
	}
	return md
}

// Seen returns the metadata of the last call and the time it had left.
func (b *Interop) Seen() (metadata.MD, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastMD, b.deadline
}

func (b *Interop) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	b.arrive(ctx)
	if s := req.GetResponseStatus(); s != nil && s.Code != 0 {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	body := req.GetPayload().GetBody()
	if req.ResponseSize > 0 {
		body = make([]byte, req.ResponseSize)
	}
	return &testpb.SimpleResponse{ServerId: b.Name, Payload: &testpb.Payload{Body: body}}, ctx.Err()
}

func (b *Interop) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	md := b.arrive(stream.Context())
	if len(md.Get("x-forever")) > 0 {
		size := int(req.ResponseParameters[0].Size)
		msg := &testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, size)}}
		for {
			if err := stream.Send(msg); err != nil {
				return err
			}
			b.Sent.Add(int64(size))
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

func (b *Interop) StreamingInputCall(stream testpb.TestService_StreamingInputCallServer) error {
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

func (b *Interop) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
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

// DialInterop opens one real gRPC client connection over TLS to addr (a
// listener with a TestCA certificate for "localhost") until the test ends.
func DialInterop(t testing.TB, addr string) testpb.TestServiceClient {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{RootCAs: TestCA(t).Pool, ServerName: "localhost"})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// CtxTimeout returns a context that ends after d or with the test.
func CtxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// WantCode fails the test unless err is a gRPC status with code and a
// message containing msgPart.
func WantCode(t testing.TB, err error, code codes.Code, msgPart string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msgPart) {
		t.Fatalf("got %v, want code %v with message containing %q", err, code, msgPart)
	}
}

// WaitFor polls cond until it holds, failing the test after 5 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for " + what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
