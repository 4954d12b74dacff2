package probe

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/albctl/albctl/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testService implements the four call kinds of grpc.testing.TestService.
// The methods it leaves out answer UNIMPLEMENTED.
type testService struct {
	testpb.UnimplementedTestServiceServer
}

func (testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// UnaryCall echoes the payload, or fails with the requested status.
func (testService) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if s := req.GetResponseStatus(); s.GetCode() != 0 {
		return nil, status.Error(codes.Code(s.GetCode()), s.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}

// StreamingOutputCall sends one response per ResponseParameters entry with
// a body of the requested size.
func (testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	for _, p := range req.GetResponseParameters() {
		body := bytes.Repeat([]byte("x"), int(p.GetSize()))
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
	return nil
}

// StreamingInputCall answers with the total size of the bodies received.
func (testService) StreamingInputCall(stream testpb.TestService_StreamingInputCallServer) error {
	total := 0
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

// FullDuplexCall echoes each request's payload as it arrives.
func (testService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// startGRPC serves the test service on a kernel-chosen 127.0.0.1 port and
// returns the address. tlsConf nil means plaintext.
func startGRPC(t *testing.T, tlsConf *tls.Config, withReflection bool) string {
	t.Helper()
	var opts []grpc.ServerOption
	if tlsConf != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
	}
	srv := grpc.NewServer(opts...)
	testpb.RegisterTestServiceServer(srv, testService{})
	if withReflection {
		reflection.Register(srv)
	}
	return testutil.StartGRPC(t, srv)
}

// startTLSOnly runs a bare TLS server that completes handshakes and then
// hangs up; nextProtos sets what it offers for ALPN.
func startTLSOnly(t *testing.T, cert tls.Certificate, nextProtos []string) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: nextProtos})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_ = conn.(*tls.Conn).Handshake()
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
	return lis.Addr().String()
}

// startRaw runs a TCP server that writes reply to every connection after
// reading the first bytes, then hangs up.
func startRaw(t *testing.T, reply string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 512)
				_, _ = conn.Read(buf)
				_, _ = conn.Write([]byte(reply))
			}()
		}
	}()
	return lis.Addr().String()
}

// testPKI is a throwaway CA and server certificates signed by it. The
// validity dates are fixed so that -v output is stable across runs.
type testPKI struct {
	caFile  string
	valid   tls.Certificate // grpc.example.test, valid until 2099
	expired tls.Certificate // grpc.example.test, expired in 2021
}

const testServerName = "grpc.example.test"

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "albctl test CA"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, notAfter time.Time) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: testServerName},
			DNSNames:     []string{testServerName},
			NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:     notAfter,
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testPKI{
		caFile:  caFile,
		valid:   leaf(2, time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)),
		expired: leaf(3, time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
}

func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// startDNS serves a tiny zone on a kernel-chosen UDP port:
// grpc.example.test is a CNAME for alb-x.local.alb.albctl.test, which has
// an A record for 127.0.0.1. Other names get NXDOMAIN.
func startDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(req)
		q := req.Question[0]
		switch strings.ToLower(q.Name) {
		case "grpc.example.test.":
			cname, _ := dns.NewRR("grpc.example.test. 600 IN CNAME alb-x.local.alb.albctl.test.")
			resp.Answer = append(resp.Answer, cname)
			if q.Qtype == dns.TypeA {
				a, _ := dns.NewRR("alb-x.local.alb.albctl.test. 600 IN A 127.0.0.1")
				resp.Answer = append(resp.Answer, a)
			}
		case "alb-x.local.alb.albctl.test.":
			if q.Qtype == dns.TypeA {
				a, _ := dns.NewRR("alb-x.local.alb.albctl.test. 600 IN A 127.0.0.1")
				resp.Answer = append(resp.Answer, a)
			}
		default:
			resp.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(resp)
	})
	srv := &dns.Server{PacketConn: pc, Handler: handler}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// fakeResolve maps grpc.example.test to 127.0.0.1 the way albctl's own
// DNS zone would, with a CNAME in between.
func fakeResolve(_ context.Context, host string) ([]string, []string, error) {
	if host != testServerName {
		return nil, nil, nil
	}
	return []string{"127.0.0.1"}, []string{
		"grpc.example.test CNAME alb-x.local.alb.albctl.test",
		"alb-x.local.alb.albctl.test A 127.0.0.1",
	}, nil
}

type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// probe runs Main with env (whose writers it replaces) and args.
func probe(t *testing.T, env Env, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	env.Stdout, env.Stderr = &stdout, &stderr
	start := time.Now()
	code := Main(ctx, args, env)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code, elapsed: time.Since(start)}
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test -update to accept)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// normalise replaces the variable port of addr with PORT.
func normalise(s, addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return strings.ReplaceAll(s, ":"+port, ":PORT")
}
