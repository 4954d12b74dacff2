package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/albctl/albctl/pkg/proxy/grpcweb"
	"github.com/albctl/albctl/pkg/proxy/obs"
)

// BenchmarkGRPCWebVsNative measures 1 KiB unary calls, 50 in flight, through one listener that
// takes gRPC, gRPC-Web and Connect, with the access log on as serve runs it: native gRPC from
// grpc-go and from connect-go, gRPC-Web binary (connect-go) and text (as browsers' default
// client sends it), and Connect (connect-go). The clients take turns for five rounds of a second
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
	textBody := grpcweb.AppendText(nil, grpcweb.AppendMessage(nil, marshal(b, req)))
	clients := []struct {
		name string
		call func() error
	}{
		{"grpc-go", func() error { _, err := grpcClient.UnaryCall(context.Background(), req); return err }},
		{"connect-grpc", connectClient(connect.WithGRPC())},
		{"grpc-web", connectClient(connect.WithGRPCWeb())},
		{"grpc-web-text", func() error { return textCall(hc, addr, textBody) }},
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

// textCall is one grpc-web-text unary call, as browsers' gRPC-Web client makes it.
func textCall(hc *http.Client, addr string, body []byte) error {
	req, err := http.NewRequest("POST", "https://"+addr+unaryPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc-web-text")
	req.Header.Set("Accept", "application/grpc-web-text")
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	read, err := grpcweb.ReadBody(raw, true)
	if err != nil {
		return err
	}
	if read.Trailers["grpc-status"] != "0" || len(read.Messages) != 1 {
		return fmt.Errorf("status %q, %d messages", read.Trailers["grpc-status"], len(read.Messages))
	}
	return nil
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
