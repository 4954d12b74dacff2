package h2

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/albctl/albctl/internal/testutil"
)

// rawClient is an HTTP/2 client connection to a listener that writes
// frames as a test gives them.
type rawClient struct {
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: testutil.TestCA(t).Pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c := &rawClient{fr: http2.NewFramer(tc, tc)}
	c.enc = hpack.NewEncoder(&c.buf)
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c
}

// unaryRequest is a valid gRPC request's header fields, with extra ones
// appended.
func unaryRequest(extra ...hpack.HeaderField) []hpack.HeaderField {
	return append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"},
		{Name: ":path", Value: "/grpc.testing.TestService/UnaryCall"}, {Name: ":authority", Value: "localhost"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}, extra...)
}

// emptyMessage is a gRPC message frame holding an empty SimpleRequest.
var emptyMessage = []byte{0, 0, 0, 0, 0}

func (c *rawClient) headers(t *testing.T, id uint32, fields []hpack.HeaderField, end bool) {
	t.Helper()
	c.buf.Reset()
	for _, f := range fields {
		_ = c.enc.WriteField(f)
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.buf.Bytes(), EndHeaders: true, EndStream: end}); err != nil {
		t.Fatal(err)
	}
}

// outcome reads until stream id is reset or answered, or the connection
// ends, and says which: "RST_STREAM <code>", "GOAWAY <code>", "grpc-status
// <n>" or "closed".
func (c *rawClient) outcome(t *testing.T, id uint32) string {
	t.Helper()
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return "closed"
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return "RST_STREAM " + f.ErrCode.String()
			}
		case *http2.GoAwayFrame:
			return "GOAWAY " + f.ErrCode.String()
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, hf := range fields {
				if hf.Name == "grpc-status" && f.StreamID == id {
					return "grpc-status " + hf.Value
				}
			}
		}
	}
}

// Malformed requests are reset with PROTOCOL_ERROR and never reach the
// server; a valid one on the same connection does.
func TestMalformedRequestsNeverReachTheServer(t *testing.T) {
	b := testutil.StartInterop(t, "b1")
	tf := startFront(t, b.Addr)
	cases := []struct {
		name   string
		fields []hpack.HeaderField
		body   []byte // sent with END_STREAM; nil: the HEADERS end the stream
	}{
		{"connection header", unaryRequest(hpack.HeaderField{Name: "connection", Value: "keep-alive"}), emptyMessage},
		{"transfer-encoding", unaryRequest(hpack.HeaderField{Name: "transfer-encoding", Value: "chunked"}), emptyMessage},
		{"te other than trailers", unaryRequest(hpack.HeaderField{Name: "te", Value: "gzip"}), emptyMessage},
		{"upper-case name", unaryRequest(hpack.HeaderField{Name: "X-Upper", Value: "1"}), emptyMessage},
		{"pseudo-header after a regular one", append(unaryRequest(), hpack.HeaderField{Name: ":method", Value: "POST"}), emptyMessage},
		{"unknown pseudo-header", unaryRequest(hpack.HeaderField{Name: ":protocol", Value: "x"})[:7], emptyMessage},
		{"response pseudo-header", append([]hpack.HeaderField{{Name: ":status", Value: "200"}}, unaryRequest()...), emptyMessage},
		{"no :path", unaryRequest()[:2], emptyMessage},
		{"content-length above the body", unaryRequest(hpack.HeaderField{Name: "content-length", Value: "6"}), emptyMessage},
		{"content-length below the body", unaryRequest(hpack.HeaderField{Name: "content-length", Value: "4"}), emptyMessage},
		{"content-length without a body", unaryRequest(hpack.HeaderField{Name: "content-length", Value: "5"}), nil},
	}
	c := dialRaw(t, tf.addr)
	id := uint32(1)
	for _, tc := range cases {
		c.headers(t, id, tc.fields, tc.body == nil)
		if tc.body != nil {
			if err := c.fr.WriteData(id, true, tc.body); err != nil {
				t.Fatal(err)
			}
		}
		if got := c.outcome(t, id); got != "RST_STREAM PROTOCOL_ERROR" {
			t.Errorf("%s: got %s, want RST_STREAM PROTOCOL_ERROR", tc.name, got)
		}
		id += 2
	}
	if n := b.Calls.Load(); n != 0 {
		t.Fatalf("the server saw %d of the malformed calls", n)
	}
	c.headers(t, id, unaryRequest(hpack.HeaderField{Name: "content-length", Value: "5"}), false)
	if err := c.fr.WriteData(id, true, emptyMessage); err != nil {
		t.Fatal(err)
	}
	if got := c.outcome(t, id); got != "grpc-status 0" || b.Calls.Load() != 1 {
		t.Fatalf("valid call after them: %s, %d calls at the server", got, b.Calls.Load())
	}
}

// Frames that break the stream states of RFC 9113 §5.1 get the answer it
// names.
func TestStreamStates(t *testing.T) {
	b := testutil.StartInterop(t, "b1")
	tf := startFront(t, b.Addr)
	cases := []struct {
		name string
		send func(t *testing.T, c *rawClient) uint32 // returns the stream to watch
		want string
	}{
		{"DATA on an idle stream", func(t *testing.T, c *rawClient) uint32 {
			_ = c.fr.WriteData(1, true, emptyMessage)
			return 1
		}, "GOAWAY PROTOCOL_ERROR"},
		{"an even stream", func(t *testing.T, c *rawClient) uint32 {
			c.headers(t, 2, unaryRequest(), true)
			return 2
		}, "GOAWAY PROTOCOL_ERROR"},
		{"a stream ID below one used", func(t *testing.T, c *rawClient) uint32 {
			c.headers(t, 5, unaryRequest(), false)
			c.headers(t, 3, unaryRequest(), false)
			return 3
		}, "GOAWAY PROTOCOL_ERROR"},
		{"DATA after END_STREAM", func(t *testing.T, c *rawClient) uint32 {
			c.headers(t, 1, append(unaryRequest(), hpack.HeaderField{Name: "x-sleep", Value: "1s"}), false)
			_ = c.fr.WriteData(1, true, emptyMessage)
			_ = c.fr.WriteData(1, true, emptyMessage)
			return 1
		}, "RST_STREAM STREAM_CLOSED"},
		{"trailers without END_STREAM", func(t *testing.T, c *rawClient) uint32 {
			c.headers(t, 1, unaryRequest(), false)
			c.headers(t, 1, []hpack.HeaderField{{Name: "x-trailer", Value: "1"}}, false)
			return 1
		}, "RST_STREAM PROTOCOL_ERROR"},
		{"a stream that depends on itself", func(t *testing.T, c *rawClient) uint32 {
			c.headers(t, 1, unaryRequest(), false)
			_ = c.fr.WritePriority(1, http2.PriorityParam{StreamDep: 1})
			return 1
		}, "RST_STREAM PROTOCOL_ERROR"},
		{"a stream window past 2^31-1", func(t *testing.T, c *rawClient) uint32 {
			c.headers(t, 1, unaryRequest(), false)
			_ = c.fr.WriteWindowUpdate(1, 1<<31-1)
			return 1
		}, "RST_STREAM FLOW_CONTROL_ERROR"},
		{"SETTINGS_MAX_FRAME_SIZE out of range", func(t *testing.T, c *rawClient) uint32 {
			_ = c.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 24})
			return 0
		}, "GOAWAY PROTOCOL_ERROR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, tf.addr)
			id := tc.send(t, c)
			if got := c.outcome(t, id); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	// The listener still serves.
	if _, err := dial(t, tf.addr).UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
}

// rawBackend is an h2c server that answers every request with the frames
// answer writes, on a connection of its own per client.
func rawBackend(t *testing.T, answer func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte, id uint32)) (addr string, resets chan http2.ErrCode) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	resets = make(chan http2.ErrCode, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go func() {
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(c, preface); err != nil {
					return
				}
				fr := http2.NewFramer(c, c)
				var buf bytes.Buffer
				henc := hpack.NewEncoder(&buf)
				enc := func(fields ...hpack.HeaderField) []byte {
					buf.Reset()
					for _, f := range fields {
						_ = henc.WriteField(f)
					}
					return append([]byte(nil), buf.Bytes()...)
				}
				_ = fr.WriteSettings()
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() {
							_ = fr.WriteSettingsAck()
						}
					case *http2.HeadersFrame:
						answer(fr, enc, f.StreamID)
					case *http2.RSTStreamFrame:
						resets <- f.ErrCode
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), resets
}

// A server that breaks HTTP/2 on a call's stream gets RST_STREAM
// PROTOCOL_ERROR and the client a gRPC INTERNAL that says why; nothing of
// the bad answer reaches the client.
func TestMalformedResponsesFailTheCall(t *testing.T) {
	ok := []hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"}}
	grpcOK := []hpack.HeaderField{{Name: "grpc-status", Value: "0"}}
	message := []byte{0, 0, 0, 0, 0}
	cases := []struct {
		name   string
		answer func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte, id uint32)
		why    string
	}{
		{"a connection header", func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte, id uint32) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(append(ok, hpack.HeaderField{Name: "connection", Value: "close"})...), EndHeaders: true})
		}, "invalid response header fields"},
		{"no :status", func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte, id uint32) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(ok[1:]...), EndHeaders: true})
		}, "invalid response header fields"},
		{"DATA before the headers", func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte, id uint32) {
			_ = fr.WriteData(id, false, message)
		}, "DATA before the response headers"},
		{"pseudo-headers in the trailers", func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte, id uint32) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(ok...), EndHeaders: true})
			_ = fr.WriteData(id, false, message)
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(append([]hpack.HeaderField{{Name: ":status", Value: "200"}}, grpcOK...)...), EndHeaders: true, EndStream: true})
		}, "invalid trailers"},
		{"content-length above the body", func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte, id uint32) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(append(ok, hpack.HeaderField{Name: "content-length", Value: "9"})...), EndHeaders: true})
			_ = fr.WriteData(id, false, message)
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(grpcOK...), EndHeaders: true, EndStream: true})
		}, "body length differs from content-length"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, resets := rawBackend(t, tc.answer)
			tf := startFront(t, addr)
			_, err := dial(t, tf.addr).UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{})
			wantCode(t, err, codes.Internal, "server "+addr+" sent a malformed response: "+tc.why)
			select {
			case code := <-resets:
				if code != http2.ErrCodeProtocol {
					t.Fatalf("the server's stream was reset with %v, want PROTOCOL_ERROR", code)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the server's stream was not reset")
			}
		})
	}
}
