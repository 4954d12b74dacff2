package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	protobuf "google.golang.org/protobuf/proto"

	"github.com/albctl/albctl/pkg/proxy/grpcweb"
)

// The protocols -protocol chooses for the call.
const (
	protocolGRPC        = "grpc"
	protocolGRPCWeb     = "grpc-web"
	protocolGRPCWebText = "grpc-web-text"
	protocolConnect     = "connect"
)

var webProtocols = []string{protocolGRPC, protocolGRPCWeb, protocolGRPCWebText, protocolConnect}

// WebConn makes calls with gRPC-Web or Connect over HTTP/2, as a web page would, in place of a
// gRPC connection: probe's -protocol, and Go code that calls as a page does (the demo). probe's
// reflection still goes over gRPC.
type WebConn struct {
	client   *http.Client
	base     string // scheme://host:port
	protocol string
	origin   string // sent as Origin, if set
	// maxMsgSize bounds a response message, as grpc-go's limit does over gRPC.
	maxMsgSize int
	userAgent  string
}

// WebOptions say how a WebConn calls.
type WebOptions struct {
	// Target is the HOST:PORT the calls name; Dial, if set, the address to connect to instead.
	Target, Dial string
	// Protocol is grpc-web, grpc-web-text or connect.
	Protocol string
	// TLS is the client's TLS configuration; nil for plaintext HTTP/2.
	TLS *tls.Config
	// Origin, if set, is the page's origin the calls are sent from.
	Origin string
	// MaxMsgSize bounds a response message; 0 is 4 MiB.
	MaxMsgSize int
	// UserAgent is the User-Agent header; "" is albctl-probe.
	UserAgent string
}

// NewWebConn returns a connection that calls as o says. Close it when done.
func NewWebConn(o WebOptions) *WebConn {
	protocols := new(http.Protocols)
	scheme := "https"
	if o.TLS == nil {
		protocols.SetUnencryptedHTTP2(true)
		scheme = "http"
	} else {
		protocols.SetHTTP2(true)
	}
	t := &http.Transport{TLSClientConfig: o.TLS, Protocols: protocols}
	if o.Dial != "" {
		t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", o.Dial)
		}
	}
	c := &WebConn{client: &http.Client{Transport: t}, base: scheme + "://" + o.Target, protocol: o.Protocol, origin: o.Origin,
		maxMsgSize: o.MaxMsgSize, userAgent: o.UserAgent}
	if c.maxMsgSize <= 0 {
		c.maxMsgSize = 4 << 20
	}
	if c.userAgent == "" {
		c.userAgent = "albctl-probe"
	}
	return c
}

// webConn is the WebConn of probe's options.
func (r *runner) webConn() *WebConn {
	target := r.opts.target
	if a := r.opts.authority; a != "" {
		target = a
	}
	userAgent := ""
	if r.opts.userAgent != "" {
		userAgent = r.opts.userAgent + " albctl-probe"
	}
	return NewWebConn(WebOptions{Target: target, Dial: r.addr, Protocol: r.opts.protocol, TLS: r.tlsConf, Origin: r.opts.origin,
		MaxMsgSize: r.opts.maxMsgSize, UserAgent: userAgent})
}

// Close ends the connection's idle HTTP/2 connections.
func (c *WebConn) Close() { c.client.CloseIdleConnections() }

// methodPath is the HTTP path of a method named as grpcurl takes it: pkg.Svc/Method or
// pkg.Svc.Method.
func methodPath(symbol string) string {
	symbol = strings.TrimPrefix(symbol, "/")
	if strings.Contains(symbol, "/") {
		return "/" + symbol
	}
	if i := strings.LastIndexByte(symbol, '.'); i >= 0 {
		return "/" + symbol[:i] + "/" + symbol[i+1:]
	}
	return "/" + symbol
}

// Preflight asks, as a browser does before a page's first call of method (/pkg.Svc/Method) with
// the headers given as KEY: VALUE, whether the page's origin may call. It returns the verdict.
func (c *WebConn) Preflight(ctx context.Context, method string, headers []string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, c.base+method, nil)
	if err != nil {
		return "", err
	}
	names := []string{"content-type", "x-grpc-web", "x-user-agent"}
	if c.protocol == protocolConnect {
		names = []string{"content-type", "connect-protocol-version", "connect-timeout-ms"}
	}
	for _, h := range headers {
		if name, _, ok := strings.Cut(h, ":"); ok {
			names = append(names, strings.ToLower(strings.TrimSpace(name)))
		}
	}
	req.Header.Set("Origin", c.origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", strings.Join(names, ","))
	resp, err := c.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") == "" {
		why := strings.TrimSpace(string(body))
		if why == "" {
			why = "no Access-Control-Allow-Origin in the answer"
		}
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, why)
	}
	return fmt.Sprintf("allowed (Access-Control-Allow-Origin: %s)", resp.Header.Get("Access-Control-Allow-Origin")), nil
}

func (c *WebConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	s, err := c.NewStream(ctx, &grpc.StreamDesc{}, method, opts...)
	if err != nil {
		return err
	}
	ws := s.(*webStream)
	defer ws.setCallOptions(opts)
	defer ws.cancel()
	if err := ws.SendMsg(args); err != nil {
		return err
	}
	if err := ws.CloseSend(); err != nil {
		return err
	}
	if err := ws.RecvMsg(reply); err != nil {
		return err
	}
	if err := ws.RecvMsg(nil); !errors.Is(err, io.EOF) {
		if err == nil {
			err = grpcstatus.Error(codes.Internal, "a unary call answered with more than one message")
		}
		return err
	}
	return nil
}

func (c *WebConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	reqCtx, cancel := context.WithCancel(ctx)
	s := &webStream{c: c, callCtx: ctx, ctx: reqCtx, cancel: cancel, method: method, got: make(chan struct{}), sends: desc.ClientStreams}
	s.unary = c.protocol == protocolConnect && !desc.ClientStreams && !desc.ServerStreams
	s.text = c.protocol == protocolGRPCWebText
	if s.sends {
		pr, pw := io.Pipe()
		s.body = pw
		go s.send(pr)
	}
	return s, nil
}

// webStream is one call: its request goes out whole at CloseSend, or, for a client stream,
// as the probe sends; its response is read as it receives.
type webStream struct {
	c *WebConn
	// callCtx is the call's; ctx, the request's, is also cancelled once the call has ended.
	callCtx context.Context
	ctx     context.Context
	cancel  context.CancelFunc
	method  string
	unary   bool // a Connect unary call: one bare message each way
	text    bool
	sends   bool // the client streams: its SendMsg errors are its to see

	body    *io.PipeWriter // the request body of a client stream, written as the probe sends
	request []byte         // the whole request body of a call whose client sends one message

	got     chan struct{} // closed once resp or err is set
	resp    *http.Response
	err     error
	header  metadata.MD
	trailer metadata.MD
	in      io.Reader // the response body, decoded from base64 in text mode
	unaryOK bool      // a Connect unary answer's message is still to be read
	checked bool      // the answer was seen to be gRPC-Web's or Connect's

	once     sync.Once // finish
	sendOnce sync.Once // the request of a call whose client sends one message
}

func (s *webStream) contentType() string {
	switch {
	case s.unary:
		return "application/proto"
	case s.c.protocol == protocolConnect:
		return "application/connect+proto"
	case s.text:
		return "application/grpc-web-text"
	}
	return "application/grpc-web+proto"
}

// send makes the request and takes its response.
func (s *webStream) send(body io.Reader) {
	defer close(s.got)
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.c.base+s.method, body)
	if err != nil {
		s.err = err
		return
	}
	md, _ := metadata.FromOutgoingContext(s.ctx)
	for k, vs := range md {
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				v = base64.RawStdEncoding.EncodeToString([]byte(v)) // as gRPC sends binary values
			}
			req.Header.Add(k, v)
		}
	}
	if deadline, ok := s.ctx.Deadline(); ok {
		left := max(time.Until(deadline), time.Millisecond)
		if s.c.protocol == protocolConnect {
			req.Header.Set("Connect-Timeout-Ms", strconv.FormatInt(left.Milliseconds()+1, 10))
		} else if ms := left.Milliseconds() + 1; ms < 1e8 {
			req.Header.Set("Grpc-Timeout", strconv.FormatInt(ms, 10)+"m") // at most 8 digits
		} else {
			req.Header.Set("Grpc-Timeout", strconv.FormatInt(min(ms/1000+1, 1e8-1), 10)+"S")
		}
	}
	req.Header.Set("Content-Type", s.contentType())
	if s.c.protocol == protocolConnect {
		req.Header.Set("Connect-Protocol-Version", "1")
	} else {
		req.Header.Set("X-Grpc-Web", "1")
	}
	if s.text {
		req.Header.Set("Accept", "application/grpc-web-text")
	}
	if s.c.origin != "" {
		req.Header.Set("Origin", s.c.origin)
	}
	req.Header.Set("User-Agent", s.c.userAgent)
	if s.resp, s.err = s.c.client.Do(req); s.err != nil {
		return
	}
	s.header = responseMetadata(s.resp.Header)
	s.in = s.resp.Body
	if s.text {
		s.in = &textReader{r: s.resp.Body}
	}
}

func (s *webStream) wait() error {
	select {
	case <-s.got: // first: once the call has ended, its context may be done too
	default:
		select {
		case <-s.got:
		case <-s.callCtx.Done():
			return grpcstatus.FromContextError(s.callCtx.Err()).Err()
		}
	}
	if s.err != nil {
		if err := s.callCtx.Err(); err != nil {
			return grpcstatus.FromContextError(err).Err()
		}
		return grpcstatus.Error(codes.Unavailable, s.err.Error())
	}
	return nil
}

// answerStatus is the status of an answer that is not gRPC-Web or Connect at all (an HTTP
// error from something in between, say), or nil.
func (s *webStream) answerStatus() *grpcstatus.Status {
	if st := s.corsStatus(); st != nil {
		return st
	}
	ct := s.resp.Header.Get("Content-Type")
	web := strings.HasPrefix(ct, "application/grpc-web") || strings.HasPrefix(ct, "application/connect+")
	if s.resp.StatusCode == http.StatusOK && web {
		return nil
	}
	if s.resp.Header.Get("Grpc-Status") != "" {
		return headerStatus(s.resp.Header)
	}
	body, _ := io.ReadAll(io.LimitReader(s.resp.Body, 256))
	if s.resp.StatusCode == http.StatusOK {
		return grpcstatus.Newf(codes.Unknown, "the answer's content type is %q, not gRPC-Web's or Connect's", ct)
	}
	return grpcstatus.Newf(codes.Code(grpcweb.StatusOf(s.resp.StatusCode)), "HTTP %d: %s", s.resp.StatusCode, strings.TrimSpace(string(body)))
}

func (s *webStream) Header() (metadata.MD, error) {
	if err := s.wait(); err != nil {
		return nil, err
	}
	return s.header, nil
}

func (s *webStream) Trailer() metadata.MD { return s.trailer }

func (s *webStream) Context() context.Context { return s.ctx }

var codec = encoding.GetCodecV2(proto.Name)

func (s *webStream) SendMsg(m any) error {
	data, err := codec.Marshal(m)
	if err != nil {
		return grpcstatus.Error(codes.Internal, err.Error())
	}
	body := data.Materialize() // a Connect unary call's body is the bare message
	if !s.unary {
		body = grpcweb.AppendMessage(nil, body)
	}
	if s.text {
		body = grpcweb.AppendText(nil, body)
	}
	if !s.sends {
		s.request = body
		return nil
	}
	if _, err := s.body.Write(body); err != nil {
		return io.EOF // the answer says why, as RecvMsg tells
	}
	return nil
}

func (s *webStream) CloseSend() error {
	if !s.sends {
		s.sendOnce.Do(func() { go s.send(bytes.NewReader(s.request)) })
		return nil
	}
	return s.body.Close()
}

func (s *webStream) RecvMsg(m any) error {
	if err := s.wait(); err != nil {
		return err
	}
	if s.unary {
		return s.recvUnary(m)
	}
	if !s.checked {
		s.checked = true
		if st := s.answerStatus(); st != nil {
			return s.finish(st)
		}
	}
	var prefix [5]byte
	if _, err := io.ReadFull(s.in, prefix[:]); err != nil {
		return s.end(err)
	}
	n := binary.BigEndian.Uint32(prefix[1:])
	if int64(n) > int64(s.c.maxMsgSize) {
		return s.finish(grpcstatus.Newf(codes.ResourceExhausted, "a message of %d bytes, over the limit of %d (-max-msg-sz)", n, s.c.maxMsgSize))
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(s.in, payload); err != nil {
		return s.end(err)
	}
	switch {
	case s.c.protocol == protocolConnect && prefix[0]&0x02 != 0:
		return s.finish(connectEnd(payload, &s.trailer))
	case s.c.protocol != protocolConnect && prefix[0]&0x80 != 0:
		return s.finish(trailerStatus(payload, &s.trailer))
	case m == nil:
		return grpcstatus.Error(codes.Internal, "a message where the call should have ended")
	}
	return codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(payload)}, m)
}

// end is the response body's end before its status frame: a trailers-only answer carries the
// status in its headers; anything else was cut.
func (s *webStream) end(err error) error {
	if cerr := s.callCtx.Err(); cerr != nil {
		return s.finish(grpcstatus.FromContextError(cerr))
	}
	if code := s.resp.Header.Get("Grpc-Status"); code != "" && errors.Is(err, io.EOF) {
		return s.finish(headerStatus(s.resp.Header))
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return s.finish(grpcstatus.New(codes.Internal, fmt.Sprintf("the answer ended without a status (HTTP %d)", s.resp.StatusCode)))
	}
	return s.finish(grpcstatus.New(codes.Unavailable, err.Error()))
}

func (s *webStream) finish(st *grpcstatus.Status) error {
	s.once.Do(func() {
		s.resp.Body.Close()
		s.cancel()
	})
	if st.Code() == codes.OK {
		return io.EOF
	}
	return st.Err()
}

// corsStatus fails a call sent from a page's origin whose answer the page could not read: one
// without Access-Control-Allow-Origin for it. nil if there is no origin or the answer allows it.
func (s *webStream) corsStatus() *grpcstatus.Status {
	if s.c.origin == "" {
		return nil
	}
	if allowed := s.resp.Header.Get("Access-Control-Allow-Origin"); allowed != s.c.origin && allowed != "*" {
		return grpcstatus.Newf(codes.PermissionDenied, "the answer has no Access-Control-Allow-Origin for %s (%q): a page there could not read it", s.c.origin, allowed)
	}
	return nil
}

// recvUnary reads a Connect unary answer: the bare message with the status in the HTTP status,
// or a JSON error.
func (s *webStream) recvUnary(m any) error {
	if s.trailer == nil {
		if st := s.corsStatus(); st != nil {
			return s.finish(st)
		}
		s.trailer = metadata.MD{}
		for k, vs := range s.resp.Header {
			if name, ok := strings.CutPrefix(strings.ToLower(k), "trailer-"); ok {
				for _, v := range vs {
					s.trailer.Append(name, binaryValue(name, v))
				}
				delete(s.header, strings.ToLower(k))
			}
		}
		s.unaryOK = s.resp.StatusCode == http.StatusOK
		if !s.unaryOK {
			body, _ := io.ReadAll(io.LimitReader(s.resp.Body, 1<<20))
			return s.finish(connectError(s.resp.StatusCode, body))
		}
	}
	if !s.unaryOK {
		return s.finish(grpcstatus.New(codes.OK, ""))
	}
	s.unaryOK = false
	body, err := io.ReadAll(io.LimitReader(s.resp.Body, int64(s.c.maxMsgSize)+1))
	if len(body) > s.c.maxMsgSize {
		return s.finish(grpcstatus.Newf(codes.ResourceExhausted, "a message over the limit of %d bytes (-max-msg-sz)", s.c.maxMsgSize))
	}
	if err != nil {
		return s.finish(grpcstatus.New(codes.Unavailable, err.Error()))
	}
	if m == nil {
		return grpcstatus.Error(codes.Internal, "a message where the call should have ended")
	}
	return codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(body)}, m)
}

// setCallOptions gives a unary call's headers and trailers to the options that ask for them.
func (s *webStream) setCallOptions(opts []grpc.CallOption) {
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = s.header
		case grpc.TrailerCallOption:
			*o.TrailerAddr = s.trailer
		}
	}
}

// responseMetadata is the call's metadata among a response's headers.
func responseMetadata(h http.Header) metadata.MD {
	md := metadata.MD{}
	for k, vs := range h {
		k = strings.ToLower(k)
		if grpcweb.IsMetadata(k) && !strings.HasPrefix(k, "access-control-") && k != "vary" && k != "date" {
			for _, v := range vs {
				md.Append(k, binaryValue(k, v))
			}
		}
	}
	return md
}

// binaryValue is the bytes of a -bin field's base64 value, as gRPC hands them to the caller.
func binaryValue(name, value string) string {
	if !strings.HasSuffix(name, "-bin") {
		return value
	}
	if b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(value, "=")); err == nil {
		return string(b)
	}
	return value
}

func headerStatus(h http.Header) *grpcstatus.Status {
	fields := map[string]string{}
	for _, k := range []string{"grpc-status", "grpc-message", "grpc-status-details-bin"} {
		fields[k] = h.Get(k)
	}
	return statusOf(fields)
}

// trailerStatus reads a gRPC-Web status frame into the call's trailers and status.
func trailerStatus(payload []byte, trailer *metadata.MD) *grpcstatus.Status {
	*trailer = metadata.MD{}
	fields := map[string]string{}
	for _, f := range grpcweb.ParseTrailers(payload) {
		fields[f.Name] = f.Value
		if grpcweb.IsMetadata(f.Name) {
			trailer.Append(f.Name, binaryValue(f.Name, f.Value))
		}
	}
	return statusOf(fields)
}

func statusOf(fields map[string]string) *grpcstatus.Status {
	code := codes.Unknown
	if n, err := strconv.Atoi(fields["grpc-status"]); err == nil {
		code = codes.Code(n)
	}
	msg := grpcweb.DecodeMessage(fields["grpc-message"])
	if d := fields["grpc-status-details-bin"]; d != "" {
		if raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(d, "=")); err == nil {
			var sp status.Status
			if protobuf.Unmarshal(raw, &sp) == nil {
				return grpcstatus.FromProto(&sp)
			}
		}
	}
	return grpcstatus.New(code, msg)
}

// connectEnd reads the JSON of a Connect stream's end frame: its status, and its metadata
// into the call's trailers.
func connectEnd(payload []byte, trailer *metadata.MD) *grpcstatus.Status {
	var end struct {
		Error    *connectErr         `json:"error"`
		Metadata map[string][]string `json:"metadata"`
	}
	if err := json.Unmarshal(payload, &end); err != nil {
		return grpcstatus.New(codes.Internal, "an end frame that is not JSON: "+err.Error())
	}
	*trailer = metadata.MD{}
	for k, vs := range end.Metadata {
		for _, v := range vs {
			trailer.Append(strings.ToLower(k), binaryValue(k, v))
		}
	}
	if end.Error == nil {
		return grpcstatus.New(codes.OK, "")
	}
	return end.Error.status()
}

type connectErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *connectErr) status() *grpcstatus.Status {
	return grpcstatus.New(codes.Code(grpcweb.ConnectCode(e.Code)), e.Message)
}

// connectError reads a failed Connect unary call's JSON error.
func connectError(httpStatus int, body []byte) *grpcstatus.Status {
	var e connectErr
	if err := json.Unmarshal(body, &e); err != nil || e.Code == "" {
		return grpcstatus.New(codes.Unknown, fmt.Sprintf("HTTP %d: %s", httpStatus, strings.TrimSpace(string(body))))
	}
	return e.status()
}

// textReader decodes a grpc-web-text body as it arrives.
type textReader struct {
	r   io.Reader
	dec grpcweb.TextDecoder
	buf []byte
	raw [4096]byte
}

func (t *textReader) Read(p []byte) (int, error) {
	for len(t.buf) == 0 {
		n, err := t.r.Read(t.raw[:])
		if n > 0 {
			var derr error
			if t.buf, derr = t.dec.Append(t.buf[:0], t.raw[:n]); derr != nil {
				return 0, derr
			}
		}
		if err != nil {
			if len(t.buf) > 0 {
				break
			}
			if errors.Is(err, io.EOF) {
				if cerr := t.dec.Close(); cerr != nil {
					return 0, cerr
				}
			}
			return 0, err
		}
	}
	n := copy(p, t.buf)
	t.buf = t.buf[n:]
	return n, nil
}
