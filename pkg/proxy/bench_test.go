package proxy

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// BenchmarkUnary compares a small unary call made directly to a grpc-go
// server (h2c) with the same call through the proxy (TLS to the proxy, h2c
// behind it). allocs/op count the whole process: client, proxy and server.
func BenchmarkUnary(b *testing.B) {
	be := startBackend(b, "b1")
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 100)}}
	run := func(b *testing.B, client testpb.TestServiceClient) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := client.UnaryCall(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("direct", func(b *testing.B) {
		cc, err := grpc.NewClient(be.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		run(b, testpb.NewTestServiceClient(cc))
	})
	b.Run("proxy", func(b *testing.B) {
		_, addr := startProxy(b, Options{}, testConfig(b, GroupConfig{Servers: servers(100, be)}))
		run(b, dial(b, addr))
	})
}
