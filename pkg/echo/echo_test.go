package echo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/albctl/albctl/pkg/echo/echopb"
)

const echoServiceName = "albctl.echo.v1.Echo"

// start serves opts on a kernel-chosen 127.0.0.1 port and returns the server
// and a client connection to it, both closed when the test ends.
func start(t *testing.T, opts Options) (*Server, *grpc.ClientConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(opts)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(DefaultMaxMessageSize),
			grpc.MaxCallSendMsgSize(DefaultMaxMessageSize),
		),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return srv, conn
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != want {
		t.Fatalf("got error %v, want code %v", err, want)
	}
	return st
}

func TestUnaryEcho(t *testing.T) {
	_, conn := start(t, Options{Name: "b1"})
	var header metadata.MD
	resp, err := echopb.NewEchoClient(conn).UnaryEcho(testContext(t),
		&echopb.EchoRequest{Message: "hello", Payload: []byte{1, 2, 3}}, grpc.Header(&header))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetMessage() != "hello" || resp.GetServer() != "b1" || !bytes.Equal(resp.GetPayload(), []byte{1, 2, 3}) {
		t.Errorf("got %v, want message hello, server b1, payload 010203", resp)
	}
	if got := header.Get(ServerHeader); !slices.Equal(got, []string{"b1"}) {
		t.Errorf("header %s = %q, want [b1]", ServerHeader, got)
	}
}

func TestDefaultName(t *testing.T) {
	_, conn := start(t, Options{})
	resp, err := echopb.NewEchoClient(conn).UnaryEcho(testContext(t), &echopb.EchoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetServer() != "echo" {
		t.Errorf("server = %q, want echo", resp.GetServer())
	}
}

func TestServerStreamingEcho(t *testing.T) {
	_, conn := start(t, Options{Name: "b1"})
	client := echopb.NewEchoClient(conn)
	for _, tc := range []struct {
		count int32
		want  int
	}{{0, 3}, {1, 1}, {5, 5}} {
		stream, err := client.ServerStreamingEcho(testContext(t), &echopb.EchoRequest{Message: "hi", Count: tc.count})
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("count %d: %v", tc.count, err)
			}
			if resp.GetMessage() != "hi" || resp.GetServer() != "b1" {
				t.Errorf("count %d: got %v", tc.count, resp)
			}
			got++
		}
		if got != tc.want {
			t.Errorf("count %d: got %d replies, want %d", tc.count, got, tc.want)
		}
	}

	stream, err := client.ServerStreamingEcho(testContext(t), &echopb.EchoRequest{Count: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantCode(t, err, codes.InvalidArgument)
}

func TestClientStreamingEcho(t *testing.T) {
	_, conn := start(t, Options{Name: "b1"})
	stream, err := echopb.NewEchoClient(conn).ClientStreamingEcho(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "b", "c"} {
		if err := stream.Send(&echopb.EchoRequest{Message: m, Payload: []byte(m)}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetMessage() != "a, b, c (3 messages)" || resp.GetServer() != "b1" || string(resp.GetPayload()) != "abc" {
		t.Errorf("got %v, want message %q, server b1, payload abc", resp, "a, b, c (3 messages)")
	}
}

func TestBidirectionalStreamingEcho(t *testing.T) {
	_, conn := start(t, Options{Name: "b1"})
	stream, err := echopb.NewEchoClient(conn).BidirectionalStreamingEcho(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	// One request at a time proves the server replies to each request as it
	// comes rather than after the client closes.
	for _, m := range []string{"one", "two", "three"} {
		if err := stream.Send(&echopb.EchoRequest{Message: m}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetMessage() != m || resp.GetServer() != "b1" {
			t.Errorf("got %v, want message %q from b1", resp, m)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Errorf("after CloseSend got %v, want io.EOF", err)
	}
}

func TestLargePayload(t *testing.T) {
	_, conn := start(t, Options{Name: "b1"})
	client := echopb.NewEchoClient(conn)
	payload := make([]byte, 16<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	resp, err := client.UnaryEcho(testContext(t), &echopb.EchoRequest{Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp.GetPayload(), payload) {
		t.Errorf("unary: payload of %d bytes came back as %d different bytes", len(payload), len(resp.GetPayload()))
	}

	stream, err := client.BidirectionalStreamingEcho(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&echopb.EchoRequest{Payload: payload}); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp.GetPayload(), payload) {
		t.Errorf("bidi: payload of %d bytes came back as %d different bytes", len(payload), len(resp.GetPayload()))
	}
}

func TestMaxMessageSize(t *testing.T) {
	_, conn := start(t, Options{MaxMessageSize: 1024})
	_, err := echopb.NewEchoClient(conn).UnaryEcho(testContext(t), &echopb.EchoRequest{Payload: make([]byte, 2048)})
	wantCode(t, err, codes.ResourceExhausted)
}

func TestDelay(t *testing.T) {
	const delay = 200 * time.Millisecond
	_, conn := start(t, Options{Delay: delay})
	client := echopb.NewEchoClient(conn)
	began := time.Now()
	if _, err := client.UnaryEcho(testContext(t), &echopb.EchoRequest{}); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(began); elapsed < delay {
		t.Errorf("unary call took %v, want at least %v", elapsed, delay)
	}

	began = time.Now()
	stream, err := client.ServerStreamingEcho(testContext(t), &echopb.EchoRequest{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if elapsed := time.Since(began); elapsed < 2*delay {
		t.Errorf("stream of 2 took %v, want at least %v", elapsed, 2*delay)
	}
}

func TestDelayRespectsCancellation(t *testing.T) {
	srv, conn := start(t, Options{Delay: time.Hour})
	client := echopb.NewEchoClient(conn)

	ctx, cancel := context.WithTimeout(testContext(t), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := client.UnaryEcho(ctx, &echopb.EchoRequest{})
	wantCode(t, err, codes.DeadlineExceeded)
	if elapsed := time.Since(began); elapsed > 5*time.Second {
		t.Errorf("deadline of 100ms returned after %v", elapsed)
	}

	ctx, cancel = context.WithCancel(testContext(t))
	stream, err := client.BidirectionalStreamingEcho(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&echopb.EchoRequest{}); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = stream.Recv()
	wantCode(t, err, codes.Canceled)

	// The server's handlers must have returned too, or GracefulStop would
	// wait for the hour-long delay.
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("GracefulStop still waiting: a delayed handler ignored cancellation")
	}
}

func TestFailRate(t *testing.T) {
	for _, tc := range []struct {
		code, want codes.Code
	}{{codes.OK, codes.Unavailable}, {codes.PermissionDenied, codes.PermissionDenied}} {
		_, conn := start(t, Options{Name: "b1", FailRate: 1, FailCode: tc.code})
		client := echopb.NewEchoClient(conn)
		ctx := testContext(t)

		var header metadata.MD
		_, err := client.UnaryEcho(ctx, &echopb.EchoRequest{}, grpc.Header(&header))
		st := wantCode(t, err, tc.want)
		if !strings.Contains(st.Message(), "b1") {
			t.Errorf("message %q does not name the server", st.Message())
		}
		if got := header.Get(ServerHeader); !slices.Equal(got, []string{"b1"}) {
			t.Errorf("failed call: header %s = %q, want [b1]", ServerHeader, got)
		}

		serverStream, err := client.ServerStreamingEcho(ctx, &echopb.EchoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = serverStream.Recv()
		wantCode(t, err, tc.want)

		clientStream, err := client.ClientStreamingEcho(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = clientStream.CloseAndRecv()
		wantCode(t, err, tc.want)

		bidi, err := client.BidirectionalStreamingEcho(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = bidi.Recv()
		wantCode(t, err, tc.want)
	}
}

func TestFailRateFraction(t *testing.T) {
	_, conn := start(t, Options{FailRate: 0.5})
	client := echopb.NewEchoClient(conn)
	ctx := testContext(t)
	failed := 0
	const calls = 200
	for range calls {
		if _, err := client.UnaryEcho(ctx, &echopb.EchoRequest{}); err != nil {
			wantCode(t, err, codes.Unavailable)
			failed++
		}
	}
	// Far from 100 only with a probability below one in a billion.
	if failed < 40 || failed > 160 {
		t.Errorf("%d of %d calls failed with fail rate 0.5", failed, calls)
	}
}

func TestMetadataEcho(t *testing.T) {
	_, conn := start(t, Options{Name: "b1"})
	client := echopb.NewEchoClient(conn)
	binary := string([]byte{0, 1, 0xfe, 0xff})
	ctx := metadata.AppendToOutgoingContext(testContext(t),
		"x-echo-color", "blue",
		"x-echo-color", "green",
		"x-echo-data-bin", binary,
		"x-echo-server", "impostor",
		"x-other", "not echoed",
	)
	check := func(kind string, header, trailer metadata.MD) {
		t.Helper()
		for name, md := range map[string]metadata.MD{"header": header, "trailer": trailer} {
			if got := md.Get("x-echo-color"); !slices.Equal(got, []string{"blue", "green"}) {
				t.Errorf("%s %s x-echo-color = %q, want [blue green]", kind, name, got)
			}
			if got := md.Get("x-echo-data-bin"); !slices.Equal(got, []string{binary}) {
				t.Errorf("%s %s x-echo-data-bin = %q, want [%q]", kind, name, got, binary)
			}
			if got := md.Get("x-other"); len(got) != 0 {
				t.Errorf("%s %s x-other = %q, want nothing", kind, name, got)
			}
		}
		if got := header.Get(ServerHeader); !slices.Equal(got, []string{"b1"}) {
			t.Errorf("%s header %s = %q, want [b1]", kind, ServerHeader, got)
		}
	}

	var header, trailer metadata.MD
	if _, err := client.UnaryEcho(ctx, &echopb.EchoRequest{}, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	check("unary", header, trailer)

	stream, err := client.BidirectionalStreamingEcho(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&echopb.EchoRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
	header, err = stream.Header()
	if err != nil {
		t.Fatal(err)
	}
	check("bidi", header, stream.Trailer())
}

func TestHealth(t *testing.T) {
	srv, conn := start(t, Options{})
	client := healthpb.NewHealthClient(conn)
	ctx := testContext(t)
	wantStatus := func(service string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		if resp.GetStatus() != want {
			t.Errorf("Check(%q) = %v, want %v", service, resp.GetStatus(), want)
		}
	}

	wantStatus("", healthpb.HealthCheckResponse_SERVING)
	wantStatus(echoServiceName, healthpb.HealthCheckResponse_SERVING)
	_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	wantCode(t, err, codes.NotFound)

	srv.SetServing("", false)
	wantStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	wantStatus(echoServiceName, healthpb.HealthCheckResponse_SERVING)
	srv.SetServing(echoServiceName, false)
	wantStatus(echoServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	srv.SetServing("", true)
	wantStatus("", healthpb.HealthCheckResponse_SERVING)
}

// listServices asks the reflection service at method for its services. The
// v1 and v1alpha protocols share one wire format, so v1 messages serve both.
func listServices(ctx context.Context, t *testing.T, conn *grpc.ClientConn, method string) []string {
	t.Helper()
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
	if err != nil {
		t.Fatal(err)
	}
	req := &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}
	if err := stream.SendMsg(req); err != nil {
		t.Fatal(err)
	}
	var resp reflectionv1.ServerReflectionResponse
	if err := stream.RecvMsg(&resp); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	var services []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	slices.Sort(services)
	return services
}

func TestReflection(t *testing.T) {
	_, conn := start(t, Options{})
	ctx := testContext(t)
	want := []string{echoServiceName, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}
	for _, method := range []string{
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
	} {
		if got := listServices(ctx, t, conn, method); !slices.Equal(got, want) {
			t.Errorf("%s: services = %q, want %q", method, got, want)
		}
	}

	// A client such as grpcurl needs the descriptor, not only the name.
	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{
		MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: echoServiceName},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	files := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(files) == 0 {
		t.Fatalf("no file descriptor for the Echo service: %v", resp)
	}
	var file descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(files[0], &file); err != nil {
		t.Fatal(err)
	}
	if file.GetPackage() != "albctl.echo.v1" || len(file.GetService()) != 1 || len(file.GetService()[0].GetMethod()) != 4 {
		t.Errorf("descriptor %s: package %q, services %v", file.GetName(), file.GetPackage(), file.GetService())
	}
}

// The load balancer's default health check calls a method nobody implements
// and counts UNIMPLEMENTED as healthy, so the echo server must not answer it.
func TestUnimplementedMethod(t *testing.T) {
	_, conn := start(t, Options{FailRate: 1})
	for _, method := range []string{
		"/AWS.ALB/healthcheck",
		"/albctl.echo.v1.Echo/NoSuchMethod",
		"/grpc.health.v1.Health/NoSuchMethod",
	} {
		err := conn.Invoke(testContext(t), method, &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("%s: got %v, want code Unimplemented (12)", method, err)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		opts    Options
		wantErr string
	}{
		{Options{}, ""},
		{Options{FailRate: 1, Delay: time.Second}, ""},
		{Options{FailRate: 1.5}, "invalid fail rate 1.5: must be between 0 and 1"},
		{Options{FailRate: -0.1}, "invalid fail rate -0.1: must be between 0 and 1"},
		{Options{Delay: -time.Second}, "invalid delay -1s: must not be negative"},
		{Options{MaxMessageSize: -1}, "invalid max message size -1: must not be negative"},
	} {
		err := tc.opts.Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.wantErr {
			t.Errorf("Validate(%+v) = %q, want %q", tc.opts, got, tc.wantErr)
		}
	}
}

func TestListenAndServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logR, logW := io.Pipe()
	t.Cleanup(func() { logR.Close() })
	done := make(chan error, 1)
	go func() { done <- ListenAndServe(ctx, "127.0.0.1:0", Options{Name: "b1"}, logW) }()

	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(logR).ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case err := <-done:
		t.Fatalf("ListenAndServe returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no log line after 10s")
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "echo server b1 listening on ")
	if !ok {
		t.Fatalf("log line %q", line)
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	resp, err := echopb.NewEchoClient(conn).UnaryEcho(testContext(t), &echopb.EchoRequest{Message: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetServer() != "b1" {
		t.Errorf("server = %q, want b1", resp.GetServer())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ListenAndServe after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("ListenAndServe did not return after cancel")
	}
}

func TestListenAndServeErrors(t *testing.T) {
	ctx := testContext(t)
	if err := ListenAndServe(ctx, "127.0.0.1:0", Options{FailRate: 2}, io.Discard); err == nil {
		t.Error("fail rate 2 accepted")
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	err = ListenAndServe(ctx, lis.Addr().String(), Options{}, io.Discard)
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("listening on a taken port: got %v, want a *net.OpError", err)
	}
}
