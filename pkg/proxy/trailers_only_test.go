package proxy

import (
	"crypto/tls"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/emptypb"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// A backend's trailers-only answer (a status with no response message, as grpc-go sends for
// a method it does not implement) must reach the client as that status. The cloud's default
// gRPC health check relies on exactly this answer, status 12.
func TestTrailersOnlyAnswersPassThrough(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: servers(100, b)}))
	client := dial(t, addr)

	_, err := client.UnimplementedCall(ctxTimeout(t, 5*time.Second), &testpb.Empty{})
	wantCode(t, err, codes.Unimplemented, "")

	creds := credentials.NewTLS(&tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost"})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for range 20 { // the answer races the request body; repeat to catch both orders
		err = cc.Invoke(ctxTimeout(t, 5*time.Second), "/albctl.healthcheck.v1.Unimplemented/Check", &emptypb.Empty{}, &emptypb.Empty{})
		wantCode(t, err, codes.Unimplemented, "unknown service albctl.healthcheck.v1.Unimplemented")
	}
}
