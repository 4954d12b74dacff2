package proxy

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/albctl/albctl/pkg/probe"
	"github.com/albctl/albctl/pkg/proxy/obs"
)

// BenchmarkGRPCWebVsNative measures 1 KiB unary calls, 50 in flight, through one listener that
// takes gRPC, gRPC-Web and Connect, with the access log on as serve runs it: native gRPC from
// grpc-go and from connect-go, gRPC-Web binary (connect-go) and text (probe's web connection,
// which sends it as browsers' default client does), and Connect (connect-go). The clients take turns for five rounds of a second
// each; it reports each one's median calls/s and the web protocols' ratios to native. Run it
// alone:
//
//	go test -run '^$' -bench GRPCWebVsNative ./pkg/proxy/
func BenchmarkGRPCWebVsNative(b *testing.B) {
	be := startBackend(b, "b1")
	log, err := obs.OpenAccessLog(filepath.Join(b.TempDir(), "access.log"), obs.FormatText, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { log.Close() })
	cfg := testConfig(b, GroupConfig{Servers: servers(100, be)})
	cfg.Listeners[0].Web = &WebConfig{GRPCWeb: true, Connect: true, Origins: []string{pageOrigin}}
	_, addr := startProxy(b, Options{AccessLog: log}, cfg)

	payload := make([]byte, 1024)
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: payload}}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: testCA(b).Pool, ServerName: "localhost"},
		Protocols: protocols((*http.Protocols).SetHTTP2), MaxConnsPerHost: 2}}
	b.Cleanup(hc.CloseIdleConnections)
	connectClient := func(opts ...connect.ClientOption) func() error {
		c := connect.NewClient[testpb.SimpleRequest, testpb.SimpleResponse](hc, "https://"+addr+unaryPath, opts...)
		return func() error {
			_, err := c.CallUnary(context.Background(), connect.NewRequest(req))
			return err
		}
	}
	grpcClient := dial(b, addr)
	web := probe.NewWebConn(probe.WebOptions{Target: addr, Protocol: "grpc-web-text", TLS: &tls.Config{RootCAs: testCA(b).Pool, ServerName: "localhost"}})
	b.Cleanup(web.Close)
	textClient := testpb.NewTestServiceClient(web)
	clients := []struct {
		name string
		call func() error
	}{
		{"grpc-go", func() error { _, err := grpcClient.UnaryCall(context.Background(), req); return err }},
		{"connect-grpc", connectClient(connect.WithGRPC())},
		{"grpc-web", connectClient(connect.WithGRPCWeb())},
		{"grpc-web-text", func() error { _, err := textClient.UnaryCall(context.Background(), req); return err }},
		{"connect", connectClient()},
	}
	rates := make([][]float64, len(clients))
	for range 5 {
		for i, c := range clients {
			r, err := callsPerSecond(50, time.Second, c.call)
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			rates[i] = append(rates[i], r)
		}
	}
	median := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		return v[len(v)/2]
	}
	for i, c := range clients {
		b.ReportMetric(median(rates[i]), c.name+"-calls/s")
	}
	b.ReportMetric(median(rates[2])/median(rates[0]), "grpc-web/grpc-go")
	b.ReportMetric(median(rates[2])/median(rates[1]), "grpc-web/connect-grpc")
	b.ReportMetric(median(rates[3])/median(rates[0]), "grpc-web-text/grpc-go")
	b.ReportMetric(median(rates[4])/median(rates[1]), "connect/connect-grpc")
}

// callsPerSecond runs call from n goroutines for d and returns the rate of calls that ended.
func callsPerSecond(n int, d time.Duration, call func() error) (float64, error) {
	for range 10 {
		if err := call(); err != nil {
			return 0, err
		}
	}
	var calls atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if err := call(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				calls.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(calls.Load()) / d.Seconds(), nil
}
