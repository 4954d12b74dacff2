package h2

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/proxy/grpcweb"
	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/proxy/route"
)

// FuzzFrames writes an arbitrary sequence of frames, after a valid preface
// and an empty SETTINGS frame, on a client connection to a listener in
// front of a real grpc-go server, reads what the proxy sends back and ends
// the connection. Then nothing of the connection may be left: no client
// connection in the server, no call in the recorder or on the backend
// connections, no goroutine; and another client's gRPC calls still work.
//
// An input's first byte is the mode (the fuzzMode* bits). In raw mode the
// rest is written as it is; otherwise it is a sequence of records of four
// bytes, kind, flags, stream and arg, followed by what the kind reads:
//
//   - kind < 0x80: a frame of type kind&15 with those flags; arg is the
//     payload's length, taken from the input, or from 0xF0 on a payload of
//     (arg-0xEF)*2 KiB filled with the flags byte;
//   - otherwise (kind-0x80)%fuzzOps is one of the fuzzOp* operations, which
//     build what a gRPC or gRPC-Web client would send, with mistakes arg
//     asks for.
//
// The fuzzed routes take gRPC-Web. A response to a gRPC-Web call must say
// so in its content type and end with the status in its body, never in
// HTTP trailers; a preflight gets 204 or 403.
//
// The stream byte is the stream ID below 0xF0, an ID at the top of the ID
// space from there, and an ID with the reserved bit set at 0xFF.
func FuzzFrames(f *testing.F) {
	h := startFuzzFront(f)
	for _, s := range fuzzSeeds() {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, in []byte) { h.run(t, in) })
}

const (
	fuzzModeRaw        = 1 << 0
	fuzzModeTimeout    = 3 << 1 // route request timeout: none, 1 ms, 5 ms, 100 ms
	fuzzModeIdle       = 1 << 3 // route idle timeout of 2 ms
	fuzzModeAbrupt     = 1 << 4 // Close instead of CloseWrite at the end
	fuzzModeAutoWindow = 1 << 5 // return every DATA byte the proxy sends to its windows
	fuzzModeNoSettle   = 1 << 6 // end without waiting for the calls
	fuzzModeNoSync     = 1 << 7 // end without waiting for the proxy to read everything

	// Operation kinds, after 0x80.
	fuzzOpHeaders  = 0 // request headers: flags and arg below, one more byte of variants
	fuzzOpTrailers = 1 // request trailers
	fuzzOpData     = 2 // a gRPC message
	fuzzOpSync     = 3 // wait for the proxy to have read everything so far, then arg%4 times 2 ms
	fuzzOpRepeat   = 4 // repeat the last records with higher stream IDs
	fuzzOpPause    = 5 // stop reading for arg%32 ms
	fuzzOpWeb      = 6 // gRPC-Web request headers or a preflight: flags as fuzzOpHeaders', arg below
	fuzzOps        = 7

	fuzzMaxFrames = 2500
	fuzzMaxBytes  = 1 << 20
	fuzzMaxSleep  = 20 * time.Millisecond
	fuzzMaxPause  = 60 * time.Millisecond
	fuzzMaxTime   = 300 * time.Millisecond // to write an input
)

// The flags of fuzzOpHeaders.
const (
	fhEndStream   = 1 << 0
	fhPriority    = 1 << 1
	fhPadded      = 1 << 2
	fhSelfDepend  = 1 << 3
	fhSplit       = 3 << 4 // CONTINUATION frames after the HEADERS frame
	fhNoEndHeader = 1 << 6 // the last fragment lacks END_HEADERS
)

// The first variant byte (arg) of fuzzOpHeaders.
const (
	fvPath       = 3 << 0 // UnaryCall, EmptyCall, FullDuplexCall, an unknown method
	fvLength     = 1 << 2 // content-length: 5
	fvTimeout    = 1 << 3 // grpc-timeout: 1m
	fvNoScheme   = 1 << 4
	fvConnection = 1 << 5 // connection: keep-alive
	fvTEGzip     = 1 << 6
	fvLatePseudo = 1 << 7 // :authority after the regular fields
)

// The second variant byte of fuzzOpHeaders.
const (
	fwGET      = 1 << 0
	fwXFF      = 1 << 1
	fwUpper    = 1 << 2 // a field name with upper case
	fwBadValue = 1 << 3 // a field value with a control character
	fwSleep    = 1 << 4 // x-sleep: 2ms, for the backend
	fwBig      = 3 << 5 // 1, 3 (over the limit) or 8 (beyond decoding) fields of 12 KiB
	fwQuery    = 1 << 7
)

// The arg of fuzzOpWeb.
const (
	fbPath       = 3 << 0 // as fvPath
	fbType       = 3 << 2 // grpc-web, grpc-web+proto, grpc-web-text, grpc-web-text+proto; for a preflight, what it asks
	fbAcceptText = 1 << 4 // for the text types, which need no Accept: Connect, unary or stream
	fbOrigin     = 3 << 5 // none, allowed, allowed by a wildcard, refused
	fbPreflight  = 1 << 7 // OPTIONS
)

// The flags of the other operations.
const (
	fdEndStream = 1 << 0 // fuzzOpData
	fdPadded    = 1 << 1
	fdText      = 3 << 2 // binary, base64 per DATA frame, base64 of the whole cut anywhere, base64 with line breaks
	ftEndStream = 1 << 0 // fuzzOpTrailers
	frMany      = 1 << 2 // fuzzOpRepeat: repeat (arg+1)*8 times, not arg+1
)

// fuzzPingBytes starts the payload of the client's PINGs for fuzzOpSync.
const fuzzPingBytes = "fz"

var fuzzWeb = &grpcweb.Config{GRPCWeb: true, Connect: true, Origins: []string{"https://app.fuzz.test", "https://*.pages.fuzz.test"}, AllowHeaders: []string{"x-fuzz"}, MaxAge: time.Minute}

// fuzzOrigins are what fbOrigin picks.
var fuzzOrigins = [4]string{"", "https://app.fuzz.test", "https://a.pages.fuzz.test", "https://evil.test"}

type fuzzHarness struct {
	srv      *Server
	rec      *obs.Recorder
	upstream *route.Upstream
	addr     string
	normal   *route.Route
	routes   [8]*route.Route
	current  atomic.Pointer[route.Route]

	probe      testpb.TestServiceClient
	probeAddrs sync.Map // local addresses of the probe's connections

	inputs         int
	baseGoroutines int
	baseBackends   int
	baseHeap       int64
}

// startFuzzFront serves a plain TCP listener on 127.0.0.1 in front of one
// grpc-go server, with a gRPC client of its own for probing.
func startFuzzFront(tb testing.TB) *fuzzHarness {
	b := testutil.StartInterop(tb, "b1")
	stopDrain := make(chan struct{})
	go func() {
		for {
			select {
			case <-b.Cancelled:
			case <-stopDrain:
				return
			}
		}
	}()
	rec := obs.NewRecorder(nil)
	e := New(Options{Recorder: rec, MaxConcurrentStreams: 100, HandshakeTimeout: time.Second, DialTimeout: 5 * time.Second})
	g := testGroup("sgp-fuzz", rec, b.Addr)
	h := &fuzzHarness{rec: rec, upstream: g.Upstream(b.Addr)}
	h.normal = &route.Route{ListenerID: "lsn-fuzz", Group: g, IdleTimeout: time.Hour}
	// The fuzzed routes have rules: a fixed answer (OK), and header changes with
	// a traffic limit on every other call.
	fixed, err := route.Compile([]route.Condition{{Type: route.CondPath, Values: []string{"/*/EmptyCall"}}})
	if err != nil {
		tb.Fatal(err)
	}
	every, err := route.Compile([]route.Condition{{Type: route.CondPath, Values: []string{"/*"}}, {Type: route.CondMethod, Values: []string{"POST"}}})
	if err != nil {
		tb.Fatal(err)
	}
	changes := route.NewRule("changes", every, []route.Target{{Group: g, Weight: 100}}, nil)
	changes.Insert, changes.Remove = []route.Field{{Name: "x-fuzz", Value: "1"}}, []string{"user-agent"}
	changes.Limit = route.NewLimiter(1000000, 100000)
	// The fixed answer is OK, the status an answer without a server's message is least
	// expected to carry.
	rules := route.NewRules([]*route.Rule{route.NewRule("fixed", fixed, nil, &route.Fixed{GRPCStatus: codeOK, Message: "fixed"}), changes})
	for i := range h.routes {
		rt := *h.normal
		rt.Rules = rules
		rt.Web = fuzzWeb
		rt.RequestTimeout = [4]time.Duration{0, time.Millisecond, 5 * time.Millisecond, 100 * time.Millisecond}[i&3]
		if i&4 != 0 {
			rt.IdleTimeout = 2 * time.Millisecond
		}
		h.routes[i] = &rt
	}
	h.current.Store(h.normal)
	h.srv = e.NewServer(h.current.Load)

	h.addr = serveListener(tb, h.srv, g, nil)

	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			h.probeAddrs.Store(c.LocalAddr().String(), true)
		}
		return c, err
	}
	cc, err := grpc.NewClient("passthrough:///"+h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dialer))
	if err != nil {
		tb.Fatal(err)
	}
	h.probe = testpb.NewTestServiceClient(cc)

	tb.Cleanup(func() {
		close(stopDrain)
		cc.Close()
	})
	return h
}

func (h *fuzzHarness) probeCall(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.probe.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 10})
	if err != nil || len(resp.GetPayload().GetBody()) != 10 {
		t.Fatalf("another client's call after a fuzzed connection: %v", err)
	}
}

func (h *fuzzHarness) backendConns() []*backConn { return poolConns(h.srv, h.upstream) }

func (h *fuzzHarness) run(t *testing.T, in []byte) {
	if h.inputs == 0 {
		h.probeCall(t)
		h.baseBackends = len(h.backendConns())
		h.baseGoroutines = runtime.NumGoroutine()
	}
	h.inputs++

	mode := byte(0)
	if len(in) > 0 {
		mode, in = in[0], in[1:]
	}
	h.current.Store(h.routes[mode&(fuzzModeTimeout|fuzzModeIdle)>>1])
	// A small receive buffer lets a client that stops reading fill the
	// proxy's socket soon.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		})
	}}
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := newFuzzClient(c.(*net.TCPConn), mode&fuzzModeAutoWindow != 0)
	go cc.readLoop()
	cc.buf = append(cc.buf, http2.ClientPreface...)
	cc.buf = appendFrame(cc.buf, http2.FrameSettings, 0, 0, nil)
	if mode&fuzzModeRaw != 0 {
		cc.buf = append(cc.buf, in[:min(len(in), fuzzMaxBytes)]...)
	} else {
		cc.play(in)
	}
	cc.flush()
	if mode&fuzzModeNoSync == 0 {
		cc.sync(100 * time.Millisecond)
		if mode&fuzzModeNoSettle == 0 {
			h.settle(cc)
		}
	}
	if mode&fuzzModeAbrupt != 0 {
		c.Close()
	} else {
		_ = cc.c.CloseWrite()
	}
	select {
	case <-cc.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("the proxy did not close the connection after the client's EOF\n%s", goroutineDump())
	}
	c.Close()
	if err := cc.failure(); err != nil {
		t.Fatalf("the proxy sent an invalid frame or gRPC-Web response: %v", err)
	}
	h.current.Store(h.normal)
	h.checkGone(t)
	if h.inputs%16 == 1 {
		h.probeCall(t)
	}
	switch {
	case h.inputs == 100:
		h.baseHeap = engineHeap()
	case h.inputs%1000 == 100:
		if n := engineHeap(); n > h.baseHeap+16<<20 {
			t.Fatalf("the engine's memory in use grew from %d to %d bytes", h.baseHeap, n)
		}
	}
}

// settle waits a little for the calls to end: those that wait for the
// client's next frames never do.
func (h *fuzzHarness) settle(cc *fuzzClient) {
	start := time.Now()
	for h.rec.Active() > 0 {
		now := time.Now()
		if now.Sub(start) > 15*time.Millisecond || now.Sub(start) > 3*time.Millisecond && now.Sub(cc.lastFrame()) > 3*time.Millisecond {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// checkGone waits for everything the fuzzed connection held to be gone.
func (h *fuzzHarness) checkGone(t *testing.T) {
	t.Helper()
	var why string
	for deadline := time.Now().Add(3 * time.Second); ; {
		if why = h.leftOver(); why == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the connection ended: %s\n%s", why, goroutineDump())
		}
		time.Sleep(100 * time.Microsecond)
	}
	n := 0
	for deadline := time.Now().Add(3 * time.Second); ; {
		if n = runtime.NumGoroutine(); n <= h.baseGoroutines {
			return
		}
		if backends := len(h.backendConns()); backends != h.baseBackends {
			// A backend connection was replaced, and with it the grpc-go
			// server's goroutines for it.
			time.Sleep(100 * time.Millisecond)
			t.Logf("backend connections: %d, were %d", backends, h.baseBackends)
			h.baseBackends = backends
			h.baseGoroutines = runtime.NumGoroutine()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before the connection\n%s", n, h.baseGoroutines, goroutineDump())
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// leftOver says what of a client connection is still there, or "".
func (h *fuzzHarness) leftOver() string {
	h.srv.mu.Lock()
	for fc := range h.srv.conns {
		if _, ok := h.probeAddrs.Load(fc.remote); !ok {
			h.srv.mu.Unlock()
			return "the server still has the client connection " + fc.remote
		}
	}
	h.srv.mu.Unlock()
	if n := h.rec.Active(); n != 0 {
		return "calls still active"
	}
	for _, bc := range h.backendConns() {
		bc.mu.Lock()
		calls := len(bc.calls)
		bc.mu.Unlock()
		bc.wmu.Lock()
		blocked := len(bc.blocked)
		bc.wmu.Unlock()
		bc.pool.mu.Lock()
		active := bc.active
		bc.pool.mu.Unlock()
		if calls != 0 || blocked != 0 || active != 0 {
			return "a backend connection still has calls"
		}
	}
	return ""
}

// engineHeap estimates the bytes in use that the albctl packages other than
// tests allocated, as the heap profile samples them: the fuzzing engine's
// own buffers do not count.
func engineHeap() int64 {
	// The profile lags up to two cycles behind, and sync.Pools empty in two.
	for i := 0; i < 4; i++ {
		runtime.GC()
	}
	recs := make([]runtime.MemProfileRecord, 256)
	for {
		n, ok := runtime.MemProfile(recs, false)
		if ok {
			recs = recs[:n]
			break
		}
		recs = make([]runtime.MemProfileRecord, n+64)
	}
	var total float64
	for _, r := range recs {
		if r.InUseObjects() == 0 || !ownAllocation(r.Stack()) {
			continue
		}
		avg := float64(r.InUseBytes()) / float64(r.InUseObjects())
		total += float64(r.InUseBytes()) / (1 - math.Exp(-avg/float64(runtime.MemProfileRate)))
	}
	return int64(total)
}

// ownAllocation reports whether the innermost albctl function of an
// allocation's stack is outside tests.
func ownAllocation(stack []uintptr) bool {
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, "github.com/albctl/albctl/") {
			return !strings.HasSuffix(f.File, "_test.go") && !strings.Contains(f.Function, "/internal/testutil.")
		}
		if !more {
			return false
		}
	}
}

func goroutineDump() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return b.String()
}

// fuzzClient is the fuzzed side of a connection.
type fuzzClient struct {
	c          *net.TCPConn
	autoWindow bool
	enc        *hpack.Encoder
	hbuf       bytes.Buffer
	buf        []byte // written at the next flush
	frames     int
	pings      uint64
	slept      time.Duration
	paused     time.Duration
	stop       time.Time       // when play stops writing
	dead       bool            // a write failed
	used       map[uint32]bool // stream IDs of the frames written, without the reserved bit

	wmu   sync.Mutex
	acks  chan uint64
	pause chan time.Duration // to the reader: stop reading for that long
	done  chan struct{}
	last  atomic.Int64 // when the last frame arrived, in Unix ns
	mu    sync.Mutex
	bad   error                 // an invalid frame from the proxy
	web   map[uint32]*webStream // the streams gRPC-Web requests opened
}

// webStream is what the client saw of the response to a gRPC-Web call or
// a preflight.
type webStream struct {
	preflight bool
	connect   grpcweb.Mode // ConnectUnary or ConnectStream for a Connect call
	headers   bool
	text      bool // the response is in base64
	data      bool
	body      []byte // nil once too long to keep
}

func newFuzzClient(c *net.TCPConn, autoWindow bool) *fuzzClient {
	cc := &fuzzClient{c: c, autoWindow: autoWindow, acks: make(chan uint64, 16), pause: make(chan time.Duration, 1), done: make(chan struct{}),
		used: make(map[uint32]bool), web: make(map[uint32]*webStream)}
	cc.enc = hpack.NewEncoder(&cc.hbuf)
	cc.last.Store(time.Now().UnixNano())
	return cc
}

func (cc *fuzzClient) lastFrame() time.Time { return time.Unix(0, cc.last.Load()) }

func (cc *fuzzClient) failure() error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.bad
}

// readLoop reads the proxy's frames until the connection ends; HEADERS are
// decoded, so a broken HPACK state shows.
func (cc *fuzzClient) readLoop() {
	defer close(cc.done)
	fr := http2.NewFramer(nil, cc.c)
	fr.SetMaxReadFrameSize(1<<24 - 1)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 20
	for {
		select {
		case d := <-cc.pause:
			time.Sleep(d)
		default:
		}
		f, err := fr.ReadFrame()
		if err != nil {
			var ce http2.ConnectionError
			var se http2.StreamError
			if errors.As(err, &ce) || errors.As(err, &se) {
				cc.mu.Lock()
				cc.bad = err
				cc.mu.Unlock()
			}
			_, _ = io.Copy(io.Discard, cc.c)
			return
		}
		cc.last.Store(time.Now().UnixNano())
		switch f := f.(type) {
		case *http2.PingFrame:
			if f.IsAck() && string(f.Data[:2]) == fuzzPingBytes {
				var n uint64
				for _, b := range f.Data[2:] {
					n = n<<8 | uint64(b)
				}
				select {
				case cc.acks <- n:
				default:
				}
			}
		case *http2.MetaHeadersFrame:
			cc.webHeaders(f)
		case *http2.DataFrame:
			cc.webData(f)
			if n := f.Length; cc.autoWindow && n > 0 {
				var b []byte
				b = appendWindowUpdate(b, 0, n)
				b = appendWindowUpdate(b, f.StreamID, n)
				cc.wmu.Lock()
				_, _ = cc.c.Write(b)
				cc.wmu.Unlock()
			}
		}
	}
}

// webHeaders checks the response headers of a gRPC-Web call or a
// preflight.
func (cc *fuzzClient) webHeaders(f *http2.MetaHeadersFrame) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	ws := cc.web[f.StreamID]
	if ws == nil || cc.bad != nil {
		return
	}
	status, ct := f.PseudoValue("status"), ""
	var sawStatus bool
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "content-type":
			ct = hf.Value
		case "grpc-status":
			sawStatus = true
		}
	}
	switch {
	case ws.headers:
		cc.bad = fmt.Errorf("stream %d: HTTP trailers on a gRPC-Web response", f.StreamID)
	case ws.preflight:
		if status != "204" && status != "403" {
			cc.bad = fmt.Errorf("stream %d: a preflight answered with status %s", f.StreamID, status)
		}
	case ws.connect == grpcweb.ConnectUnary:
		if (status == "200") != (ct == "application/proto") || status != "200" && ct != "application/json" {
			cc.bad = fmt.Errorf("stream %d: a Connect unary call answered with status %s, content-type %q", f.StreamID, status, ct)
		}
	case ws.connect == grpcweb.ConnectStream:
		if status != "200" || ct != "application/connect+proto" || f.StreamEnded() {
			cc.bad = fmt.Errorf("stream %d: a Connect stream answered with status %s, content-type %q, ended %v", f.StreamID, status, ct, f.StreamEnded())
		}
	case status != "200" || !strings.HasPrefix(ct, "application/grpc-web"):
		cc.bad = fmt.Errorf("stream %d: a gRPC-Web call answered with status %s, content-type %q", f.StreamID, status, ct)
	case f.StreamEnded() && !sawStatus:
		cc.bad = fmt.Errorf("stream %d: a trailers-only gRPC-Web response without grpc-status", f.StreamID)
	}
	ws.headers, ws.text = true, strings.HasPrefix(ct, "application/grpc-web-text")
	if !f.StreamEnded() {
		ws.body = []byte{}
	}
}

// webData follows the body of a gRPC-Web response: it must end with the
// frame that holds the status.
func (cc *fuzzClient) webData(f *http2.DataFrame) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	ws := cc.web[f.StreamID]
	if ws == nil || cc.bad != nil {
		return
	}
	ws.data = true
	switch {
	case !ws.headers:
		cc.bad = fmt.Errorf("stream %d: DATA before the response headers", f.StreamID)
		return
	case ws.preflight || ws.body == nil || ws.connect == grpcweb.ConnectUnary:
		return
	case len(ws.body)+len(f.Data()) > 4<<20:
		ws.body = nil
		return
	}
	ws.body = append(ws.body, f.Data()...)
	if f.StreamEnded() {
		if err := checkWebBody(ws.body, ws.text, ws.connect == grpcweb.ConnectStream); err != nil {
			cc.bad = fmt.Errorf("stream %d: %v", f.StreamID, err)
		}
	}
}

// checkWebBody checks that a gRPC-Web body, or a Connect stream's, is whole
// messages ending with one status frame.
func checkWebBody(body []byte, text, connect bool) error {
	statusFlag := byte(0x80)
	if connect {
		statusFlag = 0x02
	}
	if text {
		var d grpcweb.TextDecoder
		var err error
		if body, err = d.Append(nil, body); err == nil {
			err = d.Close()
		}
		if err != nil {
			return err
		}
	}
	for len(body) >= 5 {
		n := uint64(body[1])<<24 | uint64(body[2])<<16 | uint64(body[3])<<8 | uint64(body[4])
		if uint64(len(body)-5) < n {
			break
		}
		last := body[0]&statusFlag != 0
		body = body[5+n:]
		if last && len(body) > 0 {
			return errors.New("a gRPC-Web body goes on after its status frame")
		}
		if last {
			return nil
		}
	}
	return fmt.Errorf("a gRPC-Web body ends without a status frame, %d bytes cut", len(body))
}

func (cc *fuzzClient) flush() {
	if len(cc.buf) == 0 || cc.dead {
		cc.buf = cc.buf[:0]
		return
	}
	cc.wmu.Lock()
	_ = cc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := cc.c.Write(cc.buf)
	cc.wmu.Unlock()
	cc.buf = cc.buf[:0]
	if err != nil {
		cc.dead = true
	}
}

// sync sends a PING and waits for its ACK: the proxy has then read and
// handled everything before it.
func (cc *fuzzClient) sync(timeout time.Duration) {
	cc.pings++
	data := [8]byte{fuzzPingBytes[0], fuzzPingBytes[1]}
	for i := 0; i < 6; i++ {
		data[7-i] = byte(cc.pings >> (8 * i))
	}
	cc.buf = appendFrame(cc.buf, http2.FramePing, 0, 0, data[:])
	cc.flush()
	if cc.dead {
		return
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case n := <-cc.acks:
			if n >= cc.pings {
				return
			}
		case <-cc.done:
			return
		case <-timer.C:
			return
		}
	}
}

type fuzzRecord struct {
	kind, flags, arg byte
	sid              uint32
	payload          []byte // raw frames' payload, or fuzzOpHeaders' second variant byte
}

func fuzzStreamID(b byte) uint32 {
	switch {
	case b < 0xF0:
		return uint32(b)
	case b == 0xFF:
		return 1<<31 | 1
	}
	return 1<<31 - 1 - 2*uint32(b-0xF0)
}

// play writes the records of in.
func (cc *fuzzClient) play(in []byte) {
	var recs []fuzzRecord
	cc.stop = time.Now().Add(fuzzMaxTime)
	for len(in) >= 4 && cc.more() {
		r := fuzzRecord{kind: in[0], flags: in[1], sid: fuzzStreamID(in[2]), arg: in[3]}
		in = in[4:]
		op := -1
		if r.kind >= 0x80 {
			op = int(r.kind-0x80) % fuzzOps
		}
		switch {
		case op < 0 && r.arg >= 0xF0:
			r.payload = bytes.Repeat([]byte{r.flags}, int(r.arg-0xEF)*2048)
		case op < 0:
			n := min(int(r.arg), len(in))
			r.payload, in = in[:n], in[n:]
		case op == fuzzOpHeaders && len(in) > 0:
			r.payload, in = in[:1], in[1:]
		case op == fuzzOpRepeat:
			k := min(int(r.flags&3)+1, len(recs))
			times := int(r.arg) + 1
			if r.flags&frMany != 0 {
				times *= 8
			}
			for i := 1; i <= times && cc.more(); i++ {
				for _, p := range recs[len(recs)-k:] {
					p.sid = (p.sid + uint32(2*i)) & (1<<31 - 1)
					cc.emit(p)
				}
			}
			continue
		}
		recs = append(recs, r)
		cc.emit(r)
	}
}

func (cc *fuzzClient) more() bool {
	return cc.frames < fuzzMaxFrames && !cc.dead && time.Now().Before(cc.stop)
}

func (cc *fuzzClient) emit(r fuzzRecord) {
	if r.kind < 0x80 {
		cc.frame(http2.FrameType(r.kind&15), http2.Flags(r.flags), r.sid, r.payload)
	} else {
		switch (r.kind - 0x80) % fuzzOps {
		case fuzzOpHeaders:
			var v2 byte
			if len(r.payload) > 0 {
				v2 = r.payload[0]
			}
			cc.requestHeaders(r.flags, r.sid, r.arg, v2)
		case fuzzOpTrailers:
			cc.trailers(r.flags, r.sid, r.arg)
		case fuzzOpData:
			cc.message(r.flags, r.sid, r.arg)
		case fuzzOpSync:
			cc.frames++
			cc.sync(20 * time.Millisecond)
			if d := time.Duration(r.arg%4) * 2 * time.Millisecond; cc.slept < fuzzMaxSleep {
				time.Sleep(d)
				cc.slept += d
			}
		case fuzzOpWeb:
			cc.webRequest(r.flags, r.sid, r.arg)
		case fuzzOpPause:
			if d := time.Duration(r.arg%32) * time.Millisecond; cc.paused < fuzzMaxPause {
				cc.flush()
				select {
				case cc.pause <- d:
					cc.paused += d
				default:
				}
			}
		}
	}
	if len(cc.buf) >= 64<<10 {
		cc.flush()
	}
}

func (cc *fuzzClient) frame(t http2.FrameType, flags http2.Flags, sid uint32, payload []byte) {
	if cc.frames >= fuzzMaxFrames {
		return
	}
	cc.frames++
	cc.used[sid&(1<<31-1)] = true
	cc.buf = appendFrame(cc.buf, t, flags, sid, payload)
}

func appendFrame(b []byte, t http2.FrameType, flags http2.Flags, sid uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), byte(t), byte(flags), byte(sid>>24), byte(sid>>16), byte(sid>>8), byte(sid))
	return append(b, payload...)
}

func appendWindowUpdate(b []byte, sid, n uint32) []byte {
	return appendFrame(b, http2.FrameWindowUpdate, 0, sid, []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

var fuzzPaths = [4]string{
	"/grpc.testing.TestService/UnaryCall",
	"/grpc.testing.TestService/EmptyCall",
	"/grpc.testing.TestService/FullDuplexCall",
	"/grpc.testing.TestService/NoSuchMethod",
}

func (cc *fuzzClient) requestHeaders(flags byte, sid uint32, v, v2 byte) {
	method, path := "POST", fuzzPaths[v&fvPath]
	if v2&fwGET != 0 {
		method = "GET"
	}
	if v2&fwQuery != 0 {
		path += "?q=1"
	}
	fields := []hpack.HeaderField{{Name: ":method", Value: method}}
	if v&fvNoScheme == 0 {
		fields = append(fields, hpack.HeaderField{Name: ":scheme", Value: "https"})
	}
	fields = append(fields, hpack.HeaderField{Name: ":path", Value: path})
	if v&fvLatePseudo == 0 {
		fields = append(fields, hpack.HeaderField{Name: ":authority", Value: "localhost"})
	}
	fields = append(fields, hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
	if v&fvTEGzip != 0 {
		fields = append(fields, hpack.HeaderField{Name: "te", Value: "gzip"})
	} else {
		fields = append(fields, hpack.HeaderField{Name: "te", Value: "trailers"})
	}
	add := func(name, value string) { fields = append(fields, hpack.HeaderField{Name: name, Value: value}) }
	if v&fvLength != 0 {
		add("content-length", "5")
	}
	if v&fvTimeout != 0 {
		add("grpc-timeout", "1m")
	}
	if v&fvConnection != 0 {
		add("connection", "keep-alive")
	}
	if v2&fwXFF != 0 {
		add("x-forwarded-for", "192.0.2.1")
	}
	if v2&fwUpper != 0 {
		add("X-Upper", "1")
	}
	if v2&fwBadValue != 0 {
		add("x-bad", "a\x01b")
	}
	if v2&fwSleep != 0 {
		add("x-sleep", "2ms")
	}
	for i := 0; i < [4]int{0, 1, 3, 8}[v2&fwBig>>5]; i++ {
		add("x-big", strings.Repeat("!", 12<<10))
	}
	if v&fvLatePseudo != 0 {
		add(":authority", "localhost")
	}
	cc.headerFrames(flags, sid, fields)
}

// webRequest writes a gRPC-Web call's request headers, or a preflight's.
func (cc *fuzzClient) webRequest(flags byte, sid uint32, v byte) {
	fields := []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"},
		{Name: ":path", Value: fuzzPaths[v&fbPath]}, {Name: ":authority", Value: "localhost"}}
	add := func(name, value string) { fields = append(fields, hpack.HeaderField{Name: name, Value: value}) }
	var connect grpcweb.Mode
	if v&fbPreflight != 0 {
		fields[0].Value = "OPTIONS"
		ask := [4][2]string{{"POST", "content-type,x-grpc-web"}, {"POST", "x-fuzz, authorization"}, {"PUT", ""}, {"", ""}}[v&fbType>>2]
		if ask[0] != "" {
			add("access-control-request-method", ask[0])
		}
		if ask[1] != "" {
			add("access-control-request-headers", ask[1])
		}
	} else {
		typ := v & fbType >> 2
		switch {
		case v&fbAcceptText != 0 && typ >= 2:
			connect = [2]grpcweb.Mode{grpcweb.ConnectUnary, grpcweb.ConnectStream}[typ-2]
			add("content-type", [2]string{"application/proto", "application/connect+proto"}[typ-2])
			add("connect-protocol-version", "1")
			add("connect-timeout-ms", "5000")
		default:
			add("content-type", [4]string{"application/grpc-web", "application/grpc-web+proto", "application/grpc-web-text", "application/grpc-web-text+proto"}[typ])
			add("x-grpc-web", "1")
			if v&fbAcceptText != 0 {
				add("accept", "application/grpc-web-text")
			}
		}
	}
	if o := fuzzOrigins[v&fbOrigin>>5]; o != "" {
		add("origin", o)
	}
	// Only a stream this request opens answers as gRPC-Web.
	if id := sid & (1<<31 - 1); !cc.used[id] {
		cc.mu.Lock()
		cc.web[id] = &webStream{preflight: v&fbPreflight != 0, connect: connect}
		cc.mu.Unlock()
	}
	cc.headerFrames(flags, sid, fields)
}

// headerFrames writes fields as a HEADERS frame and any CONTINUATION
// frames, as flags (the fh* bits) ask.
func (cc *fuzzClient) headerFrames(flags byte, sid uint32, fields []hpack.HeaderField) {
	cc.hbuf.Reset()
	for _, f := range fields {
		_ = cc.enc.WriteField(f)
	}
	block := cc.hbuf.Bytes()

	var first []byte
	hflags := http2.Flags(0)
	if flags&fhEndStream != 0 {
		hflags |= http2.FlagHeadersEndStream
	}
	pad := 0
	if flags&fhPadded != 0 {
		hflags |= http2.FlagHeadersPadded
		pad = 7
		first = append(first, byte(pad))
	}
	if flags&fhPriority != 0 {
		hflags |= http2.FlagHeadersPriority
		dep := sid - 2
		if flags&fhSelfDepend != 0 || sid < 2 {
			dep = sid
		}
		first = append(first, byte(dep>>24), byte(dep>>16), byte(dep>>8), byte(dep), 15)
	}
	pieces := max(int(flags&fhSplit>>4)+1, (len(block)+16383-len(first)-pad)/(16384-len(first)-pad))
	size := (len(block) + pieces - 1) / pieces
	for i := 0; i < pieces; i++ {
		frag := block[min(i*size, len(block)):min((i+1)*size, len(block))]
		fl := http2.Flags(0)
		if i == pieces-1 && flags&fhNoEndHeader == 0 {
			fl = http2.FlagHeadersEndHeaders
		}
		if i == 0 {
			p := append(append(first, frag...), make([]byte, pad)...)
			cc.frame(http2.FrameHeaders, hflags|fl, sid, p)
		} else {
			cc.frame(http2.FrameContinuation, fl, sid, frag)
		}
	}
}

func (cc *fuzzClient) trailers(flags byte, sid uint32, v byte) {
	var fields []hpack.HeaderField
	switch v % 4 {
	case 0:
		fields = []hpack.HeaderField{{Name: "x-trailer", Value: "1"}}
	case 1:
		fields = []hpack.HeaderField{{Name: ":path", Value: "/x"}, {Name: "x-trailer", Value: "1"}}
	case 2:
		fields = []hpack.HeaderField{{Name: "connection", Value: "close"}}
	}
	cc.hbuf.Reset()
	for _, f := range fields {
		_ = cc.enc.WriteField(f)
	}
	fl := http2.FlagHeadersEndHeaders
	if flags&ftEndStream != 0 {
		fl |= http2.FlagHeadersEndStream
	}
	cc.frame(http2.FrameHeaders, fl, sid, cc.hbuf.Bytes())
}

// message writes a gRPC message as DATA frames; arg picks the sizes, the
// message type and how it is framed.
func (cc *fuzzClient) message(flags byte, sid uint32, arg byte) {
	respSize := [4]int32{0, 10, 2000, 100000}[arg&3]
	body := make([]byte, [4]int{0, 100, 20000, 70000}[arg>>2&3])
	var msg []byte
	switch arg >> 6 {
	case 0:
		msg, _ = proto.Marshal(&testpb.SimpleRequest{ResponseSize: respSize, Payload: &testpb.Payload{Body: body}})
	case 1:
		msg, _ = proto.Marshal(&testpb.StreamingOutputCallRequest{
			ResponseParameters: []*testpb.ResponseParameters{{Size: respSize}}, Payload: &testpb.Payload{Body: body}})
	case 2:
		msg = []byte{0xff, 0xff, 0xff}
	}
	var data []byte
	if arg>>6 != 3 {
		n := len(msg)
		framing := arg >> 4 & 3
		if framing == 2 {
			n++
		}
		compressed := byte(0)
		if framing == 1 {
			compressed = 1
		}
		data = append([]byte{compressed, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, msg...)
	}
	text := flags & fdText >> 2
	switch text {
	case 2:
		data = base64.StdEncoding.AppendEncode(nil, data)
	case 3:
		enc := base64.StdEncoding.AppendEncode(nil, data)
		half := len(enc) / 2
		data = append(append(enc[:half:half], '\n'), enc[half:]...)
	}
	chunk := 16384
	if flags&fdPadded != 0 {
		chunk -= 8
	}
	if text == 1 {
		chunk = chunk / 4 * 3
	}
	if arg>>4&3 == 3 {
		chunk = min(chunk, max(1, len(data)/2))
	}
	for first := true; first || len(data) > 0; first = false {
		part := data[:min(chunk, len(data))]
		data = data[len(part):]
		if text == 1 {
			part = base64.StdEncoding.AppendEncode(nil, part)
		}
		fl := http2.Flags(0)
		if len(data) == 0 && flags&fdEndStream != 0 {
			fl |= http2.FlagDataEndStream
		}
		if flags&fdPadded != 0 {
			fl |= http2.FlagDataPadded
			part = append(append([]byte{7}, part...), make([]byte, 7)...)
		}
		cc.frame(http2.FrameData, fl, sid, part)
	}
}

type fuzzSeed struct {
	name string
	data []byte
}

// fuzzSeeds are the inputs testdata/fuzz/FuzzFrames holds, each as a file
// of its name; the files also hold inputs the fuzzer found that once failed.
func fuzzSeeds() []fuzzSeed {
	op := func(kind int) byte { return byte(0x80 + kind) }
	raw := func(t http2.FrameType, flags byte, sid byte, payload ...byte) []byte {
		return append([]byte{byte(t), flags, sid, byte(len(payload))}, payload...)
	}
	headers := func(flags, sid, v, v2 byte) []byte { return []byte{op(fuzzOpHeaders), flags, sid, v, v2} }
	data := func(flags, sid, arg byte) []byte { return []byte{op(fuzzOpData), flags, sid, arg} }
	web := func(flags, sid, v byte) []byte { return []byte{op(fuzzOpWeb), flags, sid, v} }
	seq := func(mode byte, recs ...[]byte) []byte { return append([]byte{mode}, bytes.Join(recs, nil)...) }
	u32 := func(n uint32) []byte { return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }
	setting := func(id http2.SettingID, v uint32) []byte { return append([]byte{byte(id >> 8), byte(id)}, u32(v)...) }
	const unary, small = 0, 1 | 1<<2 // UnaryCall; response of 10 bytes, request body of 100
	const allowed, wildcard, refused = 1 << 5, 2 << 5, 3 << 5
	const proto, text, textProto = 1 << 2, 2 << 2, 3 << 2
	return []fuzzSeed{
		{"unary-call", seq(fuzzModeAutoWindow, headers(0, 1, unary, 0), data(fdEndStream, 1, small))},
		{"continuation", seq(fuzzModeAutoWindow,
			headers(fhSplit, 1, unary, 1<<5), data(fdEndStream|fdPadded, 1, small),
			[]byte{op(fuzzOpSync), 0, 0, 1}, headers(fhNoEndHeader, 3, unary, 0), raw(http2.FrameData, 0, 3, 'x'))},
		{"data-on-idle-stream", seq(0, raw(http2.FrameData, 1, 3, 'h', 'e', 'l', 'l', 'o'))},
		{"rst-stream-flood", seq(0, headers(0, 1, unary, 0), raw(http2.FrameRSTStream, 0, 1, u32(uint32(http2.ErrCodeCancel))...),
			[]byte{op(fuzzOpRepeat), 1 | frMany, 0, 137})},
		{"window-update-overflow", seq(0, headers(0, 1, unary, 0), raw(http2.FrameWindowUpdate, 0, 1, u32(1<<31-1)...),
			headers(0, 3, unary, 0), data(fdEndStream, 3, small), []byte{op(fuzzOpSync), 0, 0, 0},
			raw(http2.FrameWindowUpdate, 0, 0, u32(1<<31-1)...), raw(http2.FrameWindowUpdate, 0, 0, u32(1<<31-1)...))},
		{"settings-bad-values", seq(0, raw(http2.FrameSettings, 0, 0, append(setting(http2.SettingEnablePush, 2),
			setting(http2.SettingInitialWindowSize, 1<<31)...)...), raw(http2.FrameSettings, 0, 0, setting(http2.SettingMaxFrameSize, 100)...))},
		{"settings-window", seq(0, raw(http2.FrameSettings, 0, 0, append(setting(http2.SettingInitialWindowSize, 0),
			setting(http2.SettingMaxFrameSize, 1<<20)...)...), headers(0, 1, unary, 0), data(fdEndStream, 1, 2|1<<2),
			[]byte{op(fuzzOpSync), 0, 0, 0}, raw(http2.FrameSettings, 0, 0, setting(http2.SettingInitialWindowSize, 1<<30)...),
			raw(http2.FrameWindowUpdate, 0, 0, u32(1<<20)...))},
		{"headers-priority-on-itself", seq(0, headers(fhPriority|fhSelfDepend|fhEndStream, 1, unary, 0),
			headers(fhPriority|fhPadded, 3, unary, 0), data(fdEndStream, 3, small), raw(http2.FramePriority, 0, 5, 0, 0, 0, 5, 0))},
		{"trailers-with-pseudo", seq(fuzzModeAutoWindow, headers(0, 1, unary, 0), data(0, 1, small),
			[]byte{op(fuzzOpTrailers), ftEndStream, 1, 1}, headers(0, 3, unary, 0), data(0, 3, small),
			[]byte{op(fuzzOpTrailers), ftEndStream, 3, 0})},
		{"big-header-block", seq(0, headers(fhEndStream, 1, unary, 2<<5), headers(0, 3, unary, 0), data(fdEndStream, 3, small),
			[]byte{op(fuzzOpSync), 0, 0, 1}, headers(fhEndStream, 5, unary, 3<<5))},
		{"full-duplex-flow-control", seq(0, headers(0, 1, 2, 0), data(0, 1, 1<<6|3),
			[]byte{op(fuzzOpSync), 0, 0, 0}, raw(http2.FrameWindowUpdate, 0, 1, u32(1<<20)...),
			raw(http2.FrameWindowUpdate, 0, 0, u32(1<<20)...), data(fdEndStream, 1, 1<<6))},
		{"client-gone-mid-call", seq(fuzzModeAutoWindow, headers(0, 1, 2, 0), data(0, 1, 1<<6|1), headers(0, 3, unary, 0))},
		{"slow-reader", seq(0, raw(http2.FrameSettings, 0, 0, setting(http2.SettingInitialWindowSize, 1<<30)...),
			raw(http2.FrameWindowUpdate, 0, 0, u32(1<<30)...), []byte{op(fuzzOpPause), 0, 0, 31},
			headers(0, 1, unary, 0), data(fdEndStream, 1, 3), []byte{op(fuzzOpRepeat), 1, 0, 49})},
		{"request-timeout", seq(1<<1, headers(0, 1, unary, fwSleep), data(fdEndStream, 1, small), headers(fhEndStream, 3, 1, 0))},
		{"idle-goaway-with-call", seq(fuzzModeIdle|fuzzModeAutoWindow, headers(0, 1, unary, fwSleep), data(fdEndStream, 1, small),
			[]byte{op(fuzzOpSync), 0, 0, 3})},
		{"malformed-requests", seq(fuzzModeAbrupt, headers(fhEndStream, 1, fvNoScheme, 0), headers(fhEndStream, 3, fvTEGzip|fvConnection, 0),
			headers(0, 5, fvLength, fwUpper), data(fdEndStream, 5, small), headers(fhEndStream, 7, fvLatePseudo, fwBadValue),
			headers(0, 9, fvTimeout|3, fwXFF|fwQuery), data(fdEndStream, 9, 1<<4))},
		{"web-unary", seq(fuzzModeAutoWindow, web(0, 1, unary|allowed), data(fdEndStream, 1, small),
			web(0, 3, unary|proto|fbAcceptText|wildcard), data(fdEndStream, 3, small))},
		{"web-text", seq(fuzzModeAutoWindow, web(0, 1, unary|text|allowed), data(fdEndStream|1<<2, 1, small),
			web(0, 3, unary|textProto), data(fdEndStream|2<<2, 3, 2|2<<2), web(0, 5, unary|text|allowed), data(fdEndStream|3<<2, 5, small))},
		{"web-stream-fixed-refused", seq(fuzzModeAutoWindow, web(0, 1, 2|allowed), data(0, 1, 1<<6|1), data(fdEndStream, 1, 1<<6|2),
			web(fhEndStream, 3, 1|allowed), web(0, 5, unary|refused), data(fdEndStream, 5, small))},
		{"web-preflight", seq(0, web(fhEndStream, 1, fbPreflight|allowed), web(0, 3, fbPreflight|proto|allowed),
			web(fhEndStream, 5, fbPreflight|refused), web(fhEndStream, 7, fbPreflight|text|wildcard), web(fhEndStream, 9, fbPreflight|textProto))},
		{"connect", seq(fuzzModeAutoWindow, web(fhEndStream, 1, unary|text|fbAcceptText|allowed),
			web(0, 3, 2|textProto|fbAcceptText|allowed), data(fdEndStream, 3, small),
			web(0, 5, unary|text|fbAcceptText), data(fdEndStream, 5, small), web(fhEndStream, 7, fbPreflight|allowed))},
		{"raw-bytes", append([]byte{fuzzModeRaw}, appendFrame(appendFrame(nil, http2.FramePing, 0, 0, []byte("12345678")),
			http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, []byte{0x82, 0x87, 0x84, 0xff})...)},
	}
}
