package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/echo/echopb"
	"github.com/albctl/albctl/pkg/state"
)

// startCodeServer runs a gRPC server that answers every call with code.
func startCodeServer(t *testing.T, code codes.Code) string {
	t.Helper()
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(code, "chosen by the test")
	}))
	return testutil.StartGRPC(t, srv)
}

// silentServer accepts connections and never answers; it counts them.
type silentServer struct {
	addr     string
	accepted atomic.Int64
}

func startSilent(t *testing.T) *silentServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{addr: lis.Addr().String()}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return s
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// fastCheck is a check with the model's shortest interval and thresholds.
func fastCheck(protocol string) state.HealthCheck {
	hc := state.DefaultHealthCheck(protocol)
	hc.Interval = state.Duration(time.Second)
	hc.Timeout = state.Duration(time.Second)
	hc.HealthyThreshold = 2
	hc.UnhealthyThreshold = 2
	return hc
}

func runProbe(t *testing.T, hc state.HealthCheck, addr string) result {
	t.Helper()
	p, err := newProbe(hc)
	if err != nil {
		t.Fatal(err)
	}
	return p.run(context.Background(), addr)
}

func wantResult(t *testing.T, got result, ok bool, reason string) {
	t.Helper()
	if got.ok != ok || got.reason != reason {
		t.Errorf("got ok=%v reason %q, want ok=%v reason %q", got.ok, got.reason, ok, reason)
	}
}

func TestGRPCCheck(t *testing.T) {
	t.Parallel()
	_, echoAddr := testutil.StartEcho(t, echo.Options{Name: "b1"})
	unavailable := startCodeServer(t, codes.Unavailable)
	silent := startSilent(t)
	refused := testutil.ClosedAddr(t)

	withCodes := func(codes, path string, port int) state.HealthCheck {
		hc := fastCheck(state.ProtocolGRPC)
		hc.Codes = codes
		if path != "" {
			hc.Path = path
		}
		hc.Port = port
		return hc
	}
	tests := []struct {
		name   string
		check  state.HealthCheck
		addr   string
		ok     bool
		reason string
	}{
		{"unimplemented method answers 12", withCodes("12", "", 0), echoAddr, true, "grpc-status 12 (UNIMPLEMENTED)"},
		{"code outside the set", withCodes("0", "", 0), echoAddr, false, "grpc-status 12 (UNIMPLEMENTED) not in 0"},
		{"ranges", withCodes("0-5,12", "", 0), echoAddr, true, "grpc-status 12 (UNIMPLEMENTED)"},
		{"status in trailers after a reply", withCodes("0", echopb.Echo_UnaryEcho_FullMethodName, 0), echoAddr, true, "grpc-status 0 (OK)"},
		{"trailers-only 14", withCodes("12", "", 0), unavailable, false, "grpc-status 14 (UNAVAILABLE) not in 12"},
		{"refused", withCodes("12", "", 0), refused, false, "connection refused"},
		{"silent server", withCodes("12", "", 0), silent.addr, false, "timeout after 1s"},
		{"check port overrides the server's", withCodes("12", "", portOf(t, echoAddr)), refused, true, "grpc-status 12 (UNIMPLEMENTED)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantResult(t, runProbe(t, tt.check, tt.addr), tt.ok, tt.reason)
		})
	}
}

func TestGRPCCheckNotGRPC(t *testing.T) {
	t.Parallel()
	// An HTTP/2 server that is not a gRPC server.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusNotFound)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	got := runProbe(t, fastCheck(state.ProtocolGRPC), srv.Listener.Addr().String())
	wantResult(t, got, false, "HTTP 404 without grpc-status: not a gRPC answer")
}

func TestGRPCHealthCheck(t *testing.T) {
	t.Parallel()
	_, serving := testutil.StartEcho(t, echo.Options{Name: "serving"})
	notServing, notServingAddr := testutil.StartEcho(t, echo.Options{Name: "not-serving"})
	notServing.SetServing("", false)
	refused := testutil.ClosedAddr(t)

	withService := func(service string) state.HealthCheck {
		hc := fastCheck(state.HealthGRPCHealth)
		hc.Service = service
		return hc
	}
	tests := []struct {
		name   string
		check  state.HealthCheck
		addr   string
		ok     bool
		reason string
	}{
		{"whole server serving", withService(""), serving, true, "SERVING"},
		{"named service serving", withService("albctl.echo.v1.Echo"), serving, true, "SERVING"},
		{"not serving though the call is OK", withService(""), notServingAddr, false, "NOT_SERVING"},
		{"unknown service", withService("no.Such"), serving, false, "grpc-status 5 (NOT_FOUND): unknown service"},
		{"refused", withService(""), refused, false, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantResult(t, runProbe(t, tt.check, tt.addr), tt.ok, tt.reason)
		})
	}
	// The cloud's check does not see NOT_SERVING: the server's gRPC stack answers.
	wantResult(t, runProbe(t, fastCheck(state.ProtocolGRPC), notServingAddr), true, "grpc-status 12 (UNIMPLEMENTED)")
}

func TestGRPCHealthCheckTimeout(t *testing.T) {
	t.Parallel()
	silent := startSilent(t)
	wantResult(t, runProbe(t, fastCheck(state.HealthGRPCHealth), silent.addr), false, "timeout after 1s")
}

func TestHTTPCheck(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		methods []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusOK)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	check := func(method, path, codes string) state.HealthCheck {
		hc := fastCheck(state.ProtocolHTTP)
		hc.Method, hc.Path, hc.Codes = method, path, codes
		return hc
	}
	tests := []struct {
		name   string
		check  state.HealthCheck
		addr   string
		ok     bool
		reason string
	}{
		{"HEAD 200", check("HEAD", "/ok", "http_2xx"), addr, true, "HTTP 200"},
		{"GET 200", check("GET", "/ok", "http_2xx"), addr, true, "HTTP 200"},
		{"POST 200", check("POST", "/ok", "http_2xx"), addr, true, "HTTP 200"},
		{"redirect not followed, 3xx allowed", check("GET", "/moved", "http_2xx,http_3xx"), addr, true, "HTTP 302"},
		{"redirect not allowed", check("GET", "/moved", "http_2xx"), addr, false, "HTTP 302 not in http_2xx"},
		{"503", check("GET", "/down", "http_2xx,http_3xx"), addr, false, "HTTP 503 not in http_2xx,http_3xx"},
		{"503 allowed", check("GET", "/down", "http_5xx"), addr, true, "HTTP 503"},
		{"refused", check("GET", "/ok", "http_2xx"), testutil.ClosedAddr(t), false, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantResult(t, runProbe(t, tt.check, tt.addr), tt.ok, tt.reason)
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(methods[:3], ","); got != "HEAD,GET,POST" {
		t.Errorf("methods received %s, want HEAD,GET,POST", got)
	}
}

func TestTCPCheck(t *testing.T) {
	t.Parallel()
	silent := startSilent(t)
	wantResult(t, runProbe(t, fastCheck(state.ProtocolTCP), silent.addr), true, "connected")
	wantResult(t, runProbe(t, fastCheck(state.ProtocolTCP), testutil.ClosedAddr(t)), false, "connection refused")
}

func TestNewProbeRejects(t *testing.T) {
	t.Parallel()
	for _, hc := range []state.HealthCheck{
		{Enabled: true, Protocol: "UDP"},
		{Enabled: true, Protocol: state.ProtocolGRPC, Codes: "abc"},
		{Enabled: true, Protocol: state.ProtocolHTTP, Codes: "http_6xx"},
	} {
		if _, err := newProbe(hc); err == nil {
			t.Errorf("newProbe(%+v) = nil error", hc)
		}
	}
}

func TestCodeText(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]string{0: "0 (OK)", 1: "1 (CANCELLED)", 14: "14 (UNAVAILABLE)", 16: "16 (UNAUTHENTICATED)", 17: "17", 99: "99"} {
		if got := CodeText(code); got != want {
			t.Errorf("CodeText(%d) = %q, want %q", code, got, want)
		}
	}
}
