// Package echo is the gRPC backend that albctl runs behind its load balancer
// for demos and tests: every reply names the server that sent it, and the
// server can be made slow, flaky or unhealthy on purpose.
package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/albctl/albctl/pkg/echo/echopb"
)

const (
	// ServerHeader is the response header that carries the server's name.
	ServerHeader = "x-echo-server"
	// MetadataPrefix marks request metadata that is sent back to the caller
	// as response headers and trailers.
	MetadataPrefix = "x-echo-"
	// DefaultMaxMessageSize is large enough for tests that push big payloads
	// through the proxy; grpc's own default is 4 MiB.
	DefaultMaxMessageSize = 64 << 20
	// DefaultStreamCount is how many replies ServerStreamingEcho sends when
	// the request's count is 0.
	DefaultStreamCount = 3
)

// Options configure a Server.
type Options struct {
	// Name is sent back with every reply; "echo" when empty.
	Name string
	// Delay is waited before every reply message.
	Delay time.Duration
	// FailRate is the fraction of Echo calls, 0 to 1, that fail with FailCode.
	FailRate float64
	// FailCode is the code of the failed calls; Unavailable when left at OK.
	FailCode codes.Code
	// MaxMessageSize bounds received and sent messages; DefaultMaxMessageSize
	// when 0.
	MaxMessageSize int
}

// Validate reports options that cannot be used.
func (o Options) Validate() error {
	if math.IsNaN(o.FailRate) || o.FailRate < 0 || o.FailRate > 1 {
		return fmt.Errorf("invalid fail rate %v: must be between 0 and 1", o.FailRate)
	}
	if o.Delay < 0 {
		return fmt.Errorf("invalid delay %v: must not be negative", o.Delay)
	}
	if o.MaxMessageSize < 0 {
		return fmt.Errorf("invalid max message size %d: must not be negative", o.MaxMessageSize)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = "echo"
	}
	if o.FailCode == codes.OK {
		o.FailCode = codes.Unavailable
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	return o
}

// Server is a grpc.Server with the Echo service, server reflection and the
// standard health service registered.
type Server struct {
	opts   Options
	grpc   *grpc.Server
	health *health.Server
}

// NewServer returns a server that is ready to Serve. Every health service
// name, the overall "" and the Echo service's, starts SERVING.
func NewServer(opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		opts: opts,
		grpc: grpc.NewServer(
			grpc.MaxRecvMsgSize(opts.MaxMessageSize),
			grpc.MaxSendMsgSize(opts.MaxMessageSize),
		),
		health: health.NewServer(),
	}
	echopb.RegisterEchoServer(s.grpc, &echoService{opts: opts})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.SetServing("", true)
	s.SetServing(echopb.Echo_ServiceDesc.ServiceName, true)
	return s
}

// Name is the name the server puts in its replies.
func (s *Server) Name() string { return s.opts.Name }

// GRPCServer gives access to the underlying server, to register more services.
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// SetServing sets what grpc.health.v1.Health reports for service ("" is the
// server as a whole).
func (s *Server) SetServing(service string, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(service, st)
}

// Serve accepts connections on lis until Stop or GracefulStop.
func (s *Server) Serve(lis net.Listener) error { return s.grpc.Serve(lis) }

// Stop closes every connection and cancels the calls in flight.
func (s *Server) Stop() {
	s.health.Shutdown()
	s.grpc.Stop()
}

// GracefulStop stops accepting calls and waits for those in flight. Health
// watchers are told NOT_SERVING first so that they stop sending calls.
func (s *Server) GracefulStop() {
	s.health.Shutdown()
	s.grpc.GracefulStop()
}

// gracePeriod bounds how long ListenAndServe waits for calls in flight, so
// that a client holding a stream open cannot keep the process alive.
const gracePeriod = 10 * time.Second

// ListenAndServe serves on addr until ctx is cancelled, then stops gracefully
// and returns nil. It writes one line to log once it is listening. An empty
// Name defaults to the address listened on.
func ListenAndServe(ctx context.Context, addr string, opts Options, log io.Writer) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if opts.Name == "" {
		opts.Name = lis.Addr().String()
	}
	s := NewServer(opts)
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	fmt.Fprintf(log, "echo server %s listening on %s\n", s.Name(), lis.Addr())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(gracePeriod):
		s.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

type echoService struct {
	echopb.UnimplementedEchoServer
	opts Options
}

// begin sends the response headers every call carries and decides whether
// the call is one of those that fail on purpose.
func (e *echoService) begin(ctx context.Context) error {
	echoed := metadata.MD{}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for key, values := range md {
			if strings.HasPrefix(key, MetadataPrefix) {
				echoed[key] = values
			}
		}
	}
	// The server's own name goes in the headers only, where it replaces any
	// x-echo-server the caller sent.
	if len(echoed) > 0 {
		if err := grpc.SetTrailer(ctx, echoed.Copy()); err != nil {
			return err
		}
	}
	echoed.Set(ServerHeader, e.opts.Name)
	if err := grpc.SetHeader(ctx, echoed); err != nil {
		return err
	}
	if e.opts.FailRate > 0 && rand.Float64() < e.opts.FailRate {
		return status.Errorf(e.opts.FailCode, "echo server %s: failing on purpose (fail rate %v)", e.opts.Name, e.opts.FailRate)
	}
	return nil
}

// wait sleeps for the configured delay, returning early with the context's
// status when the call is cancelled or its deadline passes.
func (e *echoService) wait(ctx context.Context) error {
	if e.opts.Delay <= 0 {
		return nil
	}
	timer := time.NewTimer(e.opts.Delay)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-timer.C:
		return nil
	}
}

func (e *echoService) reply(req *echopb.EchoRequest) *echopb.EchoResponse {
	return &echopb.EchoResponse{Message: req.GetMessage(), Server: e.opts.Name, Payload: req.GetPayload()}
}

func (e *echoService) UnaryEcho(ctx context.Context, req *echopb.EchoRequest) (*echopb.EchoResponse, error) {
	if err := e.begin(ctx); err != nil {
		return nil, err
	}
	if err := e.wait(ctx); err != nil {
		return nil, err
	}
	return e.reply(req), nil
}

func (e *echoService) ServerStreamingEcho(req *echopb.EchoRequest, stream grpc.ServerStreamingServer[echopb.EchoResponse]) error {
	ctx := stream.Context()
	if err := e.begin(ctx); err != nil {
		return err
	}
	count := req.GetCount()
	if count < 0 {
		return status.Errorf(codes.InvalidArgument, "echo server %s: count %d must not be negative", e.opts.Name, count)
	}
	if count == 0 {
		count = DefaultStreamCount
	}
	for range count {
		if err := e.wait(ctx); err != nil {
			return err
		}
		if err := stream.Send(e.reply(req)); err != nil {
			return err
		}
	}
	return nil
}

func (e *echoService) ClientStreamingEcho(stream grpc.ClientStreamingServer[echopb.EchoRequest, echopb.EchoResponse]) error {
	ctx := stream.Context()
	if err := e.begin(ctx); err != nil {
		return err
	}
	var messages []string
	var payload []byte
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		messages = append(messages, req.GetMessage())
		payload = append(payload, req.GetPayload()...)
	}
	if err := e.wait(ctx); err != nil {
		return err
	}
	return stream.SendAndClose(&echopb.EchoResponse{
		Message: fmt.Sprintf("%s (%d messages)", strings.Join(messages, ", "), len(messages)),
		Server:  e.opts.Name,
		Payload: payload,
	})
}

func (e *echoService) BidirectionalStreamingEcho(stream grpc.BidiStreamingServer[echopb.EchoRequest, echopb.EchoResponse]) error {
	ctx := stream.Context()
	if err := e.begin(ctx); err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := e.wait(ctx); err != nil {
			return err
		}
		if err := stream.Send(e.reply(req)); err != nil {
			return err
		}
	}
}
