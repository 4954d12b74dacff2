package proxy

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/proxy/route"
)

// The benchmarks run each workload directly against a grpc-go server (h2c)
// and through the proxy (TLS to the proxy, h2c behind it), in one process.
// Besides ns/op and allocs/op (client, proxy and server together) they report
// cpu-us/op, the process's user+system CPU time per call: the proxy's own
// cost is roughly the difference between the proxy and direct sub-benchmarks.
//
//	go test -run '^$' -bench . -benchtime 2s ./pkg/proxy/

// BenchmarkUnary is a small (100 B) unary call from 8 goroutines per core.
func BenchmarkUnary(b *testing.B) {
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 100)}}
	benchBoth(b, func(b *testing.B, client testpb.TestServiceClient) {
		b.SetParallelism(8)
		runParallel(b, func() error {
			_, err := client.UnaryCall(context.Background(), req)
			return err
		})
	})
}

// BenchmarkUnary1KiBC50 is the load test's main workload: 1 KiB unary calls
// with about 50 in flight.
func BenchmarkUnary1KiBC50(b *testing.B) {
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 1024)}}
	benchBoth(b, func(b *testing.B, client testpb.TestServiceClient) {
		b.SetParallelism(max(1, 50/procs()))
		runParallel(b, func() error {
			_, err := client.UnaryCall(context.Background(), req)
			return err
		})
	})
}

// BenchmarkUnarySerial is one call at a time: ns/op is the round-trip
// latency.
func BenchmarkUnarySerial(b *testing.B) {
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 1024)}}
	benchBoth(b, func(b *testing.B, client testpb.TestServiceClient) {
		runSerial(b, func() error {
			_, err := client.UnaryCall(context.Background(), req)
			return err
		})
	})
}

// BenchmarkServerStream is a server-streaming call of 10 messages of 1 KiB,
// with 8 calls per core in flight. One op is one whole call.
func BenchmarkServerStream(b *testing.B) {
	params := make([]*testpb.ResponseParameters, 10)
	for i := range params {
		params[i] = &testpb.ResponseParameters{Size: 1024}
	}
	req := &testpb.StreamingOutputCallRequest{ResponseParameters: params}
	benchBoth(b, func(b *testing.B, client testpb.TestServiceClient) {
		b.SetParallelism(8)
		runParallel(b, func() error {
			stream, err := client.StreamingOutputCall(context.Background(), req)
			if err != nil {
				return err
			}
			for {
				if _, err := stream.Recv(); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
			}
		})
	})
}

// BenchmarkBidiPingPong sends 1 KiB messages on one long bidirectional
// stream and waits for each answer: one op is one message each way.
func BenchmarkBidiPingPong(b *testing.B) {
	req := &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 1024}},
		Payload:            &testpb.Payload{Body: make([]byte, 1024)},
	}
	benchBoth(b, func(b *testing.B, client testpb.TestServiceClient) {
		stream, err := client.FullDuplexCall(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		runSerial(b, func() error {
			if err := stream.Send(req); err != nil {
				return err
			}
			_, err := stream.Recv()
			return err
		})
		stream.CloseSend()
		if _, err := stream.Recv(); err != io.EOF {
			b.Fatal(err)
		}
	})
}

// benchBoth runs fn against a backend directly, then through a proxy.
func benchBoth(b *testing.B, fn func(*testing.B, testpb.TestServiceClient)) {
	be := startBackend(b, "b1")
	b.Run("direct", func(b *testing.B) {
		cc, err := grpc.NewClient(be.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		fn(b, testpb.NewTestServiceClient(cc))
	})
	b.Run("proxy", func(b *testing.B) {
		_, addr := startProxy(b, Options{}, testConfig(b, GroupConfig{Servers: servers(100, be)}))
		fn(b, dial(b, addr))
	})
}

func runParallel(b *testing.B, call func() error) {
	warmUp(b, call)
	b.ReportAllocs()
	cpu := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := call(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportCPU(b, cpu)
}

func runSerial(b *testing.B, call func() error) {
	warmUp(b, call)
	b.ReportAllocs()
	cpu := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCPU(b, cpu)
}

// warmUp opens the connections before the clock starts.
func warmUp(b *testing.B, call func() error) {
	for i := 0; i < 10; i++ {
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
}

func reportCPU(b *testing.B, before time.Duration) {
	b.ReportMetric(float64(processCPU()-before)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func procs() int { return runtime.GOMAXPROCS(0) }

// BenchmarkRules is BenchmarkUnary1KiBC50 through a listener without rules
// and through one with 100, each a service and a header, of which the calls
// meet the last: the data plane's cost of rules.
func BenchmarkRules(b *testing.B) {
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 1024)}}
	be := startBackend(b, "b1")
	for _, n := range []int{0, 100} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			cfg := testConfig(b, GroupConfig{Servers: servers(100, be)})
			for i := 1; i <= n; i++ {
				svc := fmt.Sprintf("/bench.Service%d/*", i)
				if i == n {
					svc = "/grpc.testing.TestService/*"
				}
				cfg.Listeners[0].Rules = append(cfg.Listeners[0].Rules, RuleConfig{ID: fmt.Sprint("rule-", i), Label: fmt.Sprint("rule-", i),
					Conditions: []Condition{{Type: route.CondPath, Values: []string{svc}}, {Type: route.CondHeader, Key: "te", Values: []string{"trailers"}}},
					Forward:    []WeightedGroup{{GroupID: "sgp-test", Weight: 100}}})
			}
			// The access log on, as serve runs by default.
			log, err := obs.OpenAccessLog(filepath.Join(b.TempDir(), "access.log"), obs.FormatText, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { log.Close() })
			_, addr := startProxy(b, Options{AccessLog: log}, cfg)
			client := dial(b, addr)
			b.SetParallelism(max(1, 50/procs()))
			runParallel(b, func() error {
				_, err := client.UnaryCall(context.Background(), req)
				return err
			})
		})
	}
}
