package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/proxy/grpcweb"
	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/proxy/route"
)

const (
	pageOrigin = "https://app.example.test"
	unaryPath  = "/grpc.testing.TestService/UnaryCall"
	streamPath = "/grpc.testing.TestService/StreamingOutputCall"
)

// webProxy runs a proxy whose listener takes gRPC-Web from pageOrigin in
// front of group, with the access log in log if not nil.
func webProxy(t *testing.T, group GroupConfig, log *obs.AccessLog) (*Proxy, string) {
	t.Helper()
	cfg := testConfig(t, group)
	cfg.Listeners[0].Web = &WebConfig{GRPCWeb: true, Origins: []string{pageOrigin}, AllowHeaders: []string{"x-echo-initial", "x-echo-trailing-bin"}, MaxAge: time.Hour}
	return startProxy(t, Options{AccessLog: log}, cfg)
}

// webClients are HTTP clients of the test CA's listeners: over HTTP/2, and
// over HTTP/1.1 only.
func webClients(t *testing.T) map[string]*http.Client {
	tlsConf := &tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost"}
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf, Protocols: protocols((*http.Protocols).SetHTTP2)}}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf.Clone(), Protocols: protocols((*http.Protocols).SetHTTP1)}}
	t.Cleanup(func() {
		h2.CloseIdleConnections()
		h1.CloseIdleConnections()
	})
	return map[string]*http.Client{"HTTP/2": h2, "HTTP/1.1": h1}
}

// protocols is the set of one HTTP version.
func protocols(set func(*http.Protocols, bool)) *http.Protocols {
	p := new(http.Protocols)
	set(p, true)
	return p
}

// TestGRPCWebEveryKind makes each kind of call with a gRPC-Web client
// (binary) over HTTP/2, and those a browser can over HTTP/1.1, and checks
// metadata both ways, -bin trailers included.
func TestGRPCWebEveryKind(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := webProxy(t, GroupConfig{Servers: servers(1, b)}, nil)
	for version, hc := range webClients(t) {
		t.Run(version, func(t *testing.T) {
			base := "https://" + addr + "/grpc.testing.TestService/"
			opts := []connect.ClientOption{connect.WithGRPCWeb()}
			ctx := ctxTimeout(t, 10*time.Second)

			unary := connect.NewClient[testpb.SimpleRequest, testpb.SimpleResponse](hc, base+"UnaryCall", opts...)
			req := connect.NewRequest(&testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}})
			req.Header().Set("X-Echo-Initial", "first")
			req.Header().Set("X-Echo-Trailing-Bin", connect.EncodeBinaryHeader([]byte{0, 1, 0xfe, 0xff}))
			resp, err := unary.CallUnary(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Msg.ServerId != "b1" || string(resp.Msg.Payload.Body) != "hi" {
				t.Errorf("unary reply %v", resp.Msg)
			}
			if got := resp.Header().Get("X-Echo-Initial"); got != "first" {
				t.Errorf("header x-echo-initial = %q", got)
			}
			bin, err := connect.DecodeBinaryHeader(resp.Trailer().Get("X-Echo-Trailing-Bin"))
			if err != nil || !bytes.Equal(bin, []byte{0, 1, 0xfe, 0xff}) {
				t.Errorf("trailer x-echo-trailing-bin = %x, %v", bin, err)
			}

			server := connect.NewClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse](hc, base+"StreamingOutputCall", opts...)
			sreq := &testpb.StreamingOutputCallRequest{}
			for i := range 10 {
				sreq.ResponseParameters = append(sreq.ResponseParameters, &testpb.ResponseParameters{Size: int32(1000 * (i + 1))})
			}
			stream, err := server.CallServerStream(ctx, connect.NewRequest(sreq))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for stream.Receive() {
				if got := len(stream.Msg().Payload.Body); got != 1000*(n+1) {
					t.Errorf("message %d: %d bytes", n, got)
				}
				n++
			}
			if err := stream.Err(); err != nil || n != 10 {
				t.Errorf("server stream: %d messages, %v", n, err)
			}

			client := connect.NewClient[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse](hc, base+"StreamingInputCall", opts...)
			cs := client.CallClientStream(ctx)
			for range 5 {
				if err := cs.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 3000)}}); err != nil {
					t.Fatal(err)
				}
			}
			cresp, err := cs.CloseAndReceive()
			if err != nil || cresp.Msg.AggregatedPayloadSize != 15000 {
				t.Errorf("client stream: %v, %v", cresp, err)
			}

			if version != "HTTP/2" {
				return // bidi needs both directions at once: HTTP/2
			}
			bidi := connect.NewClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse](hc, base+"FullDuplexCall", opts...)
			bs := bidi.CallBidiStream(ctx)
			for i := range 5 {
				if err := bs.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(10 + i)}}}); err != nil {
					t.Fatal(err)
				}
				msg, err := bs.Receive()
				if err != nil || len(msg.Payload.Body) != 10+i {
					t.Fatalf("bidi reply %d: %v, %v", i, msg, err)
				}
			}
			if err := bs.CloseRequest(); err != nil {
				t.Fatal(err)
			}
			if _, err := bs.Receive(); !errors.Is(err, io.EOF) {
				t.Errorf("bidi end: %v", err)
			}
		})
	}
}

// grpcFrame is one length-prefixed message.
func grpcFrame(flag byte, payload []byte) []byte {
	return append(grpcweb.AppendPrefix(nil, flag, len(payload)), payload...)
}

// webCall is what a test client got back from a gRPC-Web call.
type webCall struct {
	status   int
	header   http.Header
	messages [][]byte
	trailers map[string]string // the trailer frame's fields; nil if none
}

// chunkedBody sends pieces one by one, each its own write.
type chunkedBody struct{ pieces [][]byte }

func (b *chunkedBody) Read(p []byte) (int, error) {
	if len(b.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.pieces[0])
	if b.pieces[0] = b.pieces[0][n:]; len(b.pieces[0]) == 0 {
		b.pieces = b.pieces[1:]
	}
	return n, nil
}

func (b *chunkedBody) Close() error { return nil }

// callWeb makes one gRPC-Web call with a hand-made body, cut into pieces
// of the sizes given (the rest in one), and reads the whole answer.
func callWeb(t *testing.T, hc *http.Client, addr, path, contentType string, body []byte, cuts []int, header http.Header) webCall {
	t.Helper()
	var pieces [][]byte
	for _, n := range cuts {
		n = min(n, len(body))
		pieces, body = append(pieces, body[:n]), body[n:]
	}
	pieces = append(pieces, body)
	req, err := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "POST", "https://"+addr+path, &chunkedBody{pieces: pieces})
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	read, err := grpcweb.ReadBody(raw, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc-web-text"))
	if err != nil {
		t.Fatalf("the response body: %v", err)
	}
	return webCall{status: resp.StatusCode, header: resp.Header, messages: read.Messages, trailers: read.Trailers}
}

// grpcStatus is the call's status: from the trailer frame, or from the
// headers of a trailers-only answer.
func (call *webCall) grpcStatus() (string, string) {
	if call.trailers != nil {
		return call.trailers["grpc-status"], call.trailers["grpc-message"]
	}
	return call.header.Get("Grpc-Status"), call.header.Get("Grpc-Message")
}

func marshal(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGRPCWebText sends grpc-web-text bodies cut at odd places, padding
// inside the body included, and reads text answers as browsers do.
func TestGRPCWebText(t *testing.T) {
	b := startBackend(t, "b1")
	var log testutil.SyncBuffer
	accessLog := jsonAccessLog(t, &log)
	p, addr := webProxy(t, GroupConfig{Servers: servers(1, b)}, accessLog)
	for version, hc := range webClients(t) {
		t.Run(version, func(t *testing.T) {
			// Two messages' worth of request in one unary body would be
			// refused by the server; one message, encoded in two pieces
			// each padded on its own, is what clients that encode as
			// they write send.
			frame := grpcFrame(0, marshal(t, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello, text")}}))
			text := []byte(base64.StdEncoding.EncodeToString(frame[:7]) + base64.StdEncoding.EncodeToString(frame[7:]))
			call := callWeb(t, hc, addr, unaryPath, "application/grpc-web-text", text, []int{1, 2, 3, 5, 7}, nil)
			if ct := call.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc-web-text") {
				t.Errorf("content type %q", ct)
			}
			if code, msg := call.grpcStatus(); code != "0" || len(call.messages) != 1 {
				t.Fatalf("status %s %q, %d messages", code, msg, len(call.messages))
			}
			var resp testpb.SimpleResponse
			if err := proto.Unmarshal(call.messages[0], &resp); err != nil || string(resp.Payload.Body) != "hello, text" {
				t.Errorf("reply %v, %v", &resp, err)
			}

			sreq := &testpb.StreamingOutputCallRequest{}
			for i := range 10 {
				sreq.ResponseParameters = append(sreq.ResponseParameters, &testpb.ResponseParameters{Size: int32(i*7 + 1)})
			}
			text = []byte(base64.StdEncoding.EncodeToString(grpcFrame(0, marshal(t, sreq))))
			call = callWeb(t, hc, addr, streamPath, "application/grpc-web-text+proto", text, []int{3, 3, 3}, nil)
			if code, msg := call.grpcStatus(); code != "0" || len(call.messages) != 10 {
				t.Fatalf("stream: status %s %q, %d messages", code, msg, len(call.messages))
			}
			for i, m := range call.messages {
				var r testpb.StreamingOutputCallResponse
				if err := proto.Unmarshal(m, &r); err != nil || len(r.Payload.Body) != i*7+1 {
					t.Errorf("message %d: %d bytes, %v", i, len(r.Payload.GetBody()), err)
				}
			}

			// A binary request may ask for a text answer.
			call = callWeb(t, hc, addr, unaryPath, "application/grpc-web", frame, nil, http.Header{"Accept": {"application/grpc-web-text"}})
			if ct := call.header.Get("Content-Type"); ct != "application/grpc-web-text" || len(call.messages) != 1 {
				t.Errorf("accept text: content type %q, %d messages", ct, len(call.messages))
			}

			call = callWeb(t, hc, addr, unaryPath, "application/grpc-web-text", []byte("not base64!"), nil, nil)
			if code, msg := call.grpcStatus(); code != "13" || !strings.Contains(msg, "base64") {
				t.Errorf("bad base64: status %s %q", code, msg)
			}
		})
	}
	if err := p.Shutdown(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	accessLog.Close()
	for _, want := range []string{`"protocol":"grpc-web-text","grpc_status":0`, `"protocol":"grpc-web","grpc_status":0`, `"protocol":"grpc-web-text","grpc_status":13`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("access log lacks %s:\n%s", want, log.String())
		}
	}
	var metrics bytes.Buffer
	p.WriteMetrics(&metrics)
	if !strings.Contains(metrics.String(), `protocol="grpc-web-text",grpc_status="0"`) {
		t.Errorf("metrics lack the grpc-web-text calls:\n%s", metrics.String())
	}
}

// TestGRPCWebCORS checks preflights for allowed and refused origins and
// headers, and that a page can read the status and headers of an answer,
// a trailers-only error's included.
func TestGRPCWebCORS(t *testing.T) {
	b := startBackend(t, "b1")
	_, addr := webProxy(t, GroupConfig{Servers: servers(1, b)}, nil)
	for version, hc := range webClients(t) {
		t.Run(version, func(t *testing.T) {
			preflight := func(origin, headers string) (*http.Response, string) {
				req, _ := http.NewRequest("OPTIONS", "https://"+addr+unaryPath, nil)
				req.Header.Set("Origin", origin)
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", headers)
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp, string(body)
			}
			resp, _ := preflight(pageOrigin, "content-type,x-grpc-web,x-user-agent,x-echo-initial")
			if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != pageOrigin ||
				resp.Header.Get("Access-Control-Allow-Methods") != "POST" || resp.Header.Get("Access-Control-Max-Age") != "3600" ||
				!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "x-echo-initial") {
				t.Errorf("allowed preflight: %d %v", resp.StatusCode, resp.Header)
			}
			resp, body := preflight("https://evil.example.test", "content-type")
			if resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" || !strings.Contains(body, "origin https://evil.example.test is not allowed on listener lsn-test") {
				t.Errorf("refused origin: %d %v %q", resp.StatusCode, resp.Header, body)
			}
			resp, body = preflight(pageOrigin, "content-type,authorization")
			if resp.StatusCode != 403 || !strings.Contains(body, "request header authorization is not allowed") {
				t.Errorf("refused header: %d %q", resp.StatusCode, body)
			}

			frame := grpcFrame(0, marshal(t, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: 5, Message: "no such thing"}}))
			page := http.Header{"Origin": {pageOrigin}}
			call := callWeb(t, hc, addr, unaryPath, "application/grpc-web+proto", frame, nil, page)
			if code, msg := call.grpcStatus(); call.trailers != nil || len(call.messages) != 0 || code != "5" || msg != "no such thing" {
				t.Errorf("trailers-only error: trailers %v, %d messages, status %s %q", call.trailers, len(call.messages), code, msg)
			}
			wantExposed(t, call, "grpc-status", "grpc-message", "grpc-status-details-bin")
			if got := call.header.Get("Access-Control-Allow-Origin"); got != pageOrigin || call.header.Get("Content-Type") != "application/grpc-web+proto" {
				t.Errorf("allow-origin %q, content type %q", got, call.header.Get("Content-Type"))
			}
			page.Set("X-Echo-Initial", "v")
			call = callWeb(t, hc, addr, unaryPath, "application/grpc-web+proto", grpcFrame(0, nil), nil, page)
			if code, _ := call.grpcStatus(); code != "0" || call.header.Get("X-Echo-Initial") != "v" {
				t.Errorf("status %s, x-echo-initial %q", code, call.header.Get("X-Echo-Initial"))
			}
			wantExposed(t, call, "grpc-status", "x-echo-initial")

			call = callWeb(t, hc, addr, unaryPath, "application/grpc-web", frame, nil, http.Header{"Origin": {"https://evil.example.test"}})
			if code, msg := call.grpcStatus(); code != "7" || !strings.Contains(msg, "not allowed") || b.Calls.Load() > 3 {
				t.Errorf("call from a refused origin: status %s %q, %d calls reached the server", code, msg, b.Calls.Load())
			}
			b.Calls.Store(0)
		})
	}
}

func wantExposed(t *testing.T, call webCall, names ...string) {
	t.Helper()
	expose := call.header.Get("Access-Control-Expose-Headers")
	for _, h := range names {
		if !strings.Contains(expose, h) {
			t.Errorf("access-control-expose-headers %q lacks %s", expose, h)
		}
	}
}

// TestGRPCWebProxyErrors checks the statuses the proxy makes for web
// clients: no server, a server that resets its stream between messages,
// the request timeout and a rule's fixed answer, and that native gRPC over HTTP/1.1 is still refused while
// native gRPC over HTTP/2 works beside gRPC-Web.
func TestGRPCWebProxyErrors(t *testing.T) {
	resetter := startResetter(t)
	b := startBackend(t, "b1")
	p, addr := webProxy(t, GroupConfig{Servers: []ServerConfig{{Addr: resetter, Weight: 1}}}, nil)
	hcs := webClients(t)
	for version, hc := range hcs {
		t.Run(version, func(t *testing.T) {
			call := callWeb(t, hc, addr, streamPath, "application/grpc-web-text", []byte(base64.StdEncoding.EncodeToString(grpcFrame(0, nil))), nil, nil)
			code, msg := call.grpcStatus()
			if len(call.messages) != 2 || call.trailers == nil || code != "14" || !strings.Contains(msg, "reset the stream") {
				t.Errorf("reset mid-stream: %d messages, trailers %v", len(call.messages), call.trailers)
			}
		})
	}

	cfg := testConfig(t, GroupConfig{})
	cfg.Listeners[0].Web = &WebConfig{GRPCWeb: true}
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	addr = p.ListenerAddr("lsn-test")
	call := callWeb(t, hcs["HTTP/2"], addr, unaryPath, "application/grpc-web", grpcFrame(0, nil), nil, nil)
	if code, msg := call.grpcStatus(); code != "14" || !strings.Contains(msg, "no healthy servers") || call.header.Get("Content-Type") != "application/grpc-web" {
		t.Errorf("no servers: status %s %q, content type %q", code, msg, call.header.Get("Content-Type"))
	}

	cfg = testConfig(t, GroupConfig{Servers: servers(1, b)})
	cfg.Listeners[0].Addr = addr
	cfg.Listeners[0].Web = &WebConfig{GRPCWeb: true}
	cfg.Listeners[0].RequestTimeout = 100 * time.Millisecond
	cfg.Listeners[0].Rules = []RuleConfig{{ID: "rule-1", Label: "closed",
		Conditions: []Condition{{Type: route.CondPath, Values: []string{streamPath}}},
		Fixed:      &FixedResponse{GRPCStatus: 9, Message: "closed for the night"}}}
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	call = callWeb(t, hcs["HTTP/2"], addr, unaryPath, "application/grpc-web", grpcFrame(0, nil), nil, http.Header{"X-Sleep": {"1s"}})
	if code, msg := call.grpcStatus(); code != "4" || !strings.Contains(msg, "request timeout") {
		t.Errorf("request timeout: status %s %q", code, msg)
	}
	call = callWeb(t, hcs["HTTP/2"], addr, streamPath, "application/grpc-web-text", []byte(base64.StdEncoding.EncodeToString(grpcFrame(0, nil))), nil, nil)
	if code, msg := call.grpcStatus(); code != "9" || msg != "closed for the night" || !strings.HasPrefix(call.header.Get("Content-Type"), "application/grpc-web-text") {
		t.Errorf("a rule's fixed answer: status %s %q, content type %q", code, msg, call.header.Get("Content-Type"))
	}
	if _, err := dial(t, addr).UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Errorf("native gRPC beside gRPC-Web: %v", err)
	}
	req, _ := http.NewRequest("POST", "https://"+addr+unaryPath, bytes.NewReader(grpcFrame(0, nil)))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := hcs["HTTP/1.1"].Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusHTTPVersionNotSupported || !strings.Contains(string(body), "gRPC over HTTP/2 only") {
		t.Errorf("native gRPC over HTTP/1.1: %d %q", resp.StatusCode, body)
	}
}

// startResetter runs an HTTP/2 server that answers every call with two
// messages, then resets the stream.
func startResetter(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(200)
		for i := range 2 {
			w.Write(grpcFrame(0, []byte(fmt.Sprint(i))))
		}
		w.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond)
		panic(http.ErrAbortHandler)
	})
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols), ErrorLog: nil}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestGRPCWebFollowsChangesAndDrains makes gRPC-Web calls over HTTP/2 and HTTP/1.1 while the
// listener's group and CORS setting change, then shuts the proxy down during a server stream,
// which finishes.
func TestGRPCWebFollowsChangesAndDrains(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	p, addr := webProxy(t, GroupConfig{Servers: servers(1, b1)}, nil)
	hcs := webClients(t)
	clients := map[string]*connect.Client[testpb.SimpleRequest, testpb.SimpleResponse]{}
	for version, hc := range hcs {
		clients[version] = connect.NewClient[testpb.SimpleRequest, testpb.SimpleResponse](hc, "https://"+addr+unaryPath, connect.WithGRPCWeb())
	}
	l := startLoad(4, func() error {
		for _, c := range clients {
			req := connect.NewRequest(&testpb.SimpleRequest{})
			req.Header().Set("Origin", pageOrigin)
			if _, err := c.CallUnary(context.Background(), req); err != nil {
				return err
			}
		}
		return nil
	})
	for i := range 20 {
		cfg := testConfig(t, GroupConfig{Servers: servers(1, [][]*backend{{b1}, {b2}, {b1, b2}}[i%3]...)})
		cfg.Listeners[0].Addr = addr
		cfg.Listeners[0].Web = &WebConfig{GRPCWeb: true, Origins: []string{pageOrigin, fmt.Sprintf("https://other%d.example.test", i)}}
		if err := p.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.stop()
	if l.failed.Load() > 0 || b1.Calls.Load() == 0 || b2.Calls.Load() == 0 {
		t.Fatalf("%d of %d rounds failed (first: %v); calls b1 %d, b2 %d", l.failed.Load(), l.calls.Load(), l.firstErr.Load(), b1.Calls.Load(), b2.Calls.Load())
	}

	req := &testpb.StreamingOutputCallRequest{}
	for range 10 {
		req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: 10, IntervalUs: 50_000})
	}
	type result struct {
		version string
		n       int
		err     error
	}
	results := make(chan result, len(hcs))
	started := make(chan struct{}, len(hcs))
	for version, hc := range hcs {
		go func() {
			c := connect.NewClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse](hc, "https://"+addr+streamPath, connect.WithGRPCWeb())
			stream, err := c.CallServerStream(context.Background(), connect.NewRequest(req))
			n := 0
			for err == nil && stream.Receive() {
				if n++; n == 1 {
					started <- struct{}{}
				}
			}
			if err == nil {
				err = stream.Err()
			}
			results <- result{version, n, err}
		}()
	}
	for range hcs {
		<-started
	}
	if err := p.Shutdown(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for range hcs {
		r := <-results
		if r.err != nil || r.n != 10 {
			t.Errorf("%s: a stream during shutdown got %d of 10 messages, then %v", r.version, r.n, r.err)
		}
	}
}

// TestConnectEveryKind makes each kind of call with connect-go's own protocol (binary), over
// HTTP/2 and, for those it can, HTTP/1.1: metadata both ways, errors with their codes, the
// client's deadline, and Connect's JSON refused.
func TestConnectEveryKind(t *testing.T) {
	b := startBackend(t, "b1")
	cfg := testConfig(t, GroupConfig{Servers: servers(1, b)})
	cfg.Listeners[0].Web = &WebConfig{Connect: true, Origins: []string{pageOrigin}}
	p, addr := startProxy(t, Options{}, cfg)
	for version, hc := range webClients(t) {
		t.Run(version, func(t *testing.T) {
			base := "https://" + addr + "/grpc.testing.TestService/"
			ctx := ctxTimeout(t, 10*time.Second)
			unary := connect.NewClient[testpb.SimpleRequest, testpb.SimpleResponse](hc, base+"UnaryCall")
			req := connect.NewRequest(&testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}})
			req.Header().Set("X-Echo-Initial", "first")
			req.Header().Set("X-Echo-Trailing-Bin", connect.EncodeBinaryHeader([]byte{0, 0xff}))
			resp, err := unary.CallUnary(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Msg.ServerId != "b1" || string(resp.Msg.Payload.Body) != "hi" || resp.Header().Get("X-Echo-Initial") != "first" {
				t.Errorf("unary: %v, header %v", resp.Msg, resp.Header())
			}
			if bin, err := connect.DecodeBinaryHeader(resp.Trailer().Get("X-Echo-Trailing-Bin")); err != nil || !bytes.Equal(bin, []byte{0, 0xff}) {
				t.Errorf("trailer: %x, %v (trailers %v)", bin, err, resp.Trailer())
			}

			_, err = unary.CallUnary(ctx, connect.NewRequest(&testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: 5, Message: "no such thing"}}))
			if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "no such thing") {
				t.Errorf("unary error: %v", err)
			}
			slow := connect.NewRequest(&testpb.SimpleRequest{})
			slow.Header().Set("X-Sleep", "2s")
			short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			_, err = unary.CallUnary(short, slow)
			cancel()
			if code := connect.CodeOf(err); code != connect.CodeDeadlineExceeded && code != connect.CodeCanceled {
				t.Errorf("past the client's deadline: %v", err)
			}
			jsonClient := connect.NewClient[testpb.SimpleRequest, testpb.SimpleResponse](hc, base+"UnaryCall", connect.WithProtoJSON())
			if _, err := jsonClient.CallUnary(ctx, connect.NewRequest(&testpb.SimpleRequest{})); connect.CodeOf(err) != connect.CodeUnimplemented || !strings.Contains(err.Error(), "JSON needs the service's schema") {
				t.Errorf("Connect JSON: %v", err)
			}

			server := connect.NewClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse](hc, base+"StreamingOutputCall")
			sreq := &testpb.StreamingOutputCallRequest{}
			for i := range 10 {
				sreq.ResponseParameters = append(sreq.ResponseParameters, &testpb.ResponseParameters{Size: int32(100 * (i + 1))})
			}
			stream, err := server.CallServerStream(ctx, connect.NewRequest(sreq))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for stream.Receive() {
				if len(stream.Msg().Payload.Body) != 100*(n+1) {
					t.Errorf("message %d: %d bytes", n, len(stream.Msg().Payload.Body))
				}
				n++
			}
			if err := stream.Err(); err != nil || n != 10 {
				t.Errorf("server stream: %d messages, %v", n, err)
			}

			client := connect.NewClient[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse](hc, base+"StreamingInputCall")
			cs := client.CallClientStream(ctx)
			for range 4 {
				if err := cs.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 500)}}); err != nil {
					t.Fatal(err)
				}
			}
			if cresp, err := cs.CloseAndReceive(); err != nil || cresp.Msg.AggregatedPayloadSize != 2000 {
				t.Errorf("client stream: %v, %v", cresp, err)
			}
			if version != "HTTP/2" {
				return
			}
			bidi := connect.NewClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse](hc, base+"FullDuplexCall")
			bs := bidi.CallBidiStream(ctx)
			for i := range 3 {
				if err := bs.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(5 + i)}}}); err != nil {
					t.Fatal(err)
				}
				if msg, err := bs.Receive(); err != nil || len(msg.Payload.Body) != 5+i {
					t.Fatalf("bidi reply %d: %v, %v", i, msg, err)
				}
			}
			bs.CloseRequest()
			if _, err := bs.Receive(); !errors.Is(err, io.EOF) {
				t.Errorf("bidi end: %v", err)
			}
		})
	}

	cfg = testConfig(t, GroupConfig{})
	cfg.Listeners[0].Addr = addr
	cfg.Listeners[0].Web = &WebConfig{Connect: true}
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	hc := webClients(t)["HTTP/2"]
	_, err := connect.NewClient[testpb.SimpleRequest, testpb.SimpleResponse](hc, "https://"+addr+unaryPath).CallUnary(ctxTimeout(t, 5*time.Second), connect.NewRequest(&testpb.SimpleRequest{}))
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "no healthy servers") {
		t.Errorf("unary without servers: %v", err)
	}
	stream, err := connect.NewClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse](hc, "https://"+addr+streamPath).
		CallServerStream(ctxTimeout(t, 5*time.Second), connect.NewRequest(&testpb.StreamingOutputCallRequest{}))
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
	}
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "no healthy servers") {
		t.Errorf("stream without servers: %v", err)
	}
}

// TestConnectUnaryEncodingFollowsTheFlag: a server may name an encoding and still send its
// message uncompressed (grpc-go does for empty messages); a Connect client then gets the
// message as it is, not labelled compressed.
func TestConnectUnaryEncodingFollowsTheFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reply := marshal(t, &testpb.SimpleResponse{ServerId: "plain"})
	srv := &http.Server{Protocols: new(http.Protocols), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Encoding", "gzip")
		w.Header().Set("Trailer", "Grpc-Status")
		w.Write(grpcweb.AppendMessage(nil, reply))
		w.Header().Set("Grpc-Status", "0")
	})}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	cfg := testConfig(t, GroupConfig{Servers: []ServerConfig{{Addr: ln.Addr().String(), Weight: 1}}})
	cfg.Listeners[0].Web = &WebConfig{Connect: true}
	_, addr := startProxy(t, Options{}, cfg)
	for version, hc := range webClients(t) {
		resp, err := connect.NewClient[testpb.SimpleRequest, testpb.SimpleResponse](hc, "https://"+addr+unaryPath).
			CallUnary(ctxTimeout(t, 5*time.Second), connect.NewRequest(&testpb.SimpleRequest{}))
		if err != nil || resp.Msg.ServerId != "plain" {
			t.Errorf("%s: %v, %v", version, resp, err)
		}
	}
}

// TestConnectAnswerWaitingForTheClient: the request timeout answers a Connect unary call while
// the server's connection is still being made and the client's window holds the answer's body
// back. The call must then reach no server, and the client must get that one answer, whole.
func TestConnectAnswerWaitingForTheClient(t *testing.T) {
	b := startBackend(t, "b1")
	slow, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() })
	go func() {
		for {
			c, err := slow.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				time.Sleep(400 * time.Millisecond) // the server's connection takes its time
				s, err := net.Dial("tcp", b.Addr)
				if err != nil {
					return
				}
				defer s.Close()
				go io.Copy(s, c)
				io.Copy(c, s)
			}()
		}
	}()
	cfg := testConfig(t, GroupConfig{Servers: []ServerConfig{{Addr: slow.Addr().String(), Weight: 1}}})
	cfg.Listeners[0].Web = &WebConfig{Connect: true}
	cfg.Listeners[0].RequestTimeout = 100 * time.Millisecond
	_, addr := startProxy(t, Options{}, cfg)

	fr := rawH2(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	block := headerBlock([2]string{":method", "POST"}, [2]string{":scheme", "https"}, [2]string{":path", unaryPath}, [2]string{":authority", "localhost"},
		[2]string{"content-type", "application/proto"}, [2]string{"connect-protocol-version", "1"}, [2]string{"content-length", "0"})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true, EndStream: true})
	var headers []string
	var body []byte
	opened := false
	for done := false; !done; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after headers %v and body %q: %v", headers, body, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			headers = append(headers, f.PseudoValue("status"))
			if !opened {
				// Let the server's connection be made while the body waits, then open the window.
				time.Sleep(600 * time.Millisecond)
				_ = fr.WriteWindowUpdate(1, 1<<20)
				opened = true
			}
			done = f.StreamEnded()
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			done = f.StreamEnded()
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset: %v", f.ErrCode)
		}
	}
	if len(headers) != 1 || headers[0] != "504" || !strings.Contains(string(body), `"code":"deadline_exceeded"`) || b.Calls.Load() != 0 {
		t.Fatalf("headers %v, body %q, calls that reached the server: %d", headers, body, b.Calls.Load())
	}
}

// TestConnectFixedAnswers: a rule's fixed answer reaches Connect clients as its status, OK
// included, which then carries an empty message.
func TestConnectFixedAnswers(t *testing.T) {
	b := startBackend(t, "b1")
	cfg := testConfig(t, GroupConfig{Servers: servers(1, b)})
	cfg.Listeners[0].Web = &WebConfig{Connect: true}
	cfg.Listeners[0].Rules = []RuleConfig{
		{ID: "rule-1", Label: "ok", Conditions: []Condition{header("x-answer", "ok")}, Fixed: &FixedResponse{GRPCStatus: 0}},
		{ID: "rule-2", Label: "closed", Conditions: []Condition{header("x-answer", "closed")}, Fixed: &FixedResponse{GRPCStatus: 9, Message: "closed"}},
	}
	_, addr := startProxy(t, Options{}, cfg)
	for version, hc := range webClients(t) {
		unary := connect.NewClient[testpb.SimpleRequest, testpb.SimpleResponse](hc, "https://"+addr+unaryPath)
		stream := connect.NewClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse](hc, "https://"+addr+streamPath)
		for _, answer := range []string{"ok", "closed"} {
			req := connect.NewRequest(&testpb.SimpleRequest{})
			req.Header().Set("X-Answer", answer)
			resp, err := unary.CallUnary(ctxTimeout(t, 5*time.Second), req)
			if answer == "ok" && (err != nil || resp.Msg.ServerId != "") || answer == "closed" && connect.CodeOf(err) != connect.CodeFailedPrecondition {
				t.Errorf("%s: unary, fixed %s: %v, %v", version, answer, resp, err)
			}
			sreq := connect.NewRequest(&testpb.StreamingOutputCallRequest{})
			sreq.Header().Set("X-Answer", answer)
			s, err := stream.CallServerStream(ctxTimeout(t, 5*time.Second), sreq)
			if err == nil {
				for s.Receive() {
				}
				err = s.Err()
			}
			if answer == "ok" && err != nil || answer == "closed" && connect.CodeOf(err) != connect.CodeFailedPrecondition {
				t.Errorf("%s: stream, fixed %s: %v", version, answer, err)
			}
		}
	}
	if b.Calls.Load() != 0 {
		t.Errorf("%d calls reached the server", b.Calls.Load())
	}
}
