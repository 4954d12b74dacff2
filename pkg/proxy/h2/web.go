package h2

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/albctl/albctl/pkg/proxy/grpcweb"
	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/proxy/route"
)

// maxConnectUnary bounds the answer a Connect unary call gathers before it can go out.
const maxConnectUnary = 4 << 20

// webContentType notes a gRPC-Web or Connect call by its content type, and
// sets the gRPC one in its place.
func (s *fcall) webContentType(hf *hpack.HeaderField) {
	if mode, ct := grpcweb.Parse(hf.Value); mode != grpcweb.Native && s.rt.Web.GRPCWeb {
		s.web, hf.Value = mode, ct
		return
	}
	if !s.rt.Web.Connect {
		return
	}
	mode, ct, json := grpcweb.ParseConnect(hf.Value)
	if mode == grpcweb.Native {
		return
	}
	s.web = mode
	if json {
		s.refusal, s.refusalCode = fmt.Sprintf("listener %s passes Connect's binary form (application/proto) only: JSON needs the service's schema", s.rt.ListenerID), codeUnimplemented
		return
	}
	hf.Value = ct
}

// webRequestFields finishes the header list of a gRPC-Web or Connect call
// for its server: a gRPC request. A text body is decoded on the way and a
// Connect unary message gets gRPC's prefix, so their length changes.
func (s *fcall) webRequestFields(out []hpack.HeaderField, acceptText, sawTE, sawEncoding bool) []hpack.HeaderField {
	s.webText = s.web == grpcweb.Text || acceptText && s.web == grpcweb.Binary
	kept := out[:0]
	compressed := false
	for _, f := range out {
		switch {
		case f.Name == "content-length" && (s.web == grpcweb.Text || s.web == grpcweb.ConnectUnary):
			continue
		case !s.web.Connect():
			// gRPC-Web's other fields pass as they are.
		case f.Name == "connect-protocol-version":
			continue
		case f.Name == "connect-timeout-ms":
			ms, err := strconv.ParseInt(f.Value, 10, 64)
			if err != nil || ms <= 0 || len(f.Value) > 10 {
				s.refusal, s.refusalCode = "invalid connect-timeout-ms "+strconv.Quote(f.Value), codeInvalidArgument
				continue
			}
			d := time.Duration(ms) * time.Millisecond
			s.deadline = s.start.Add(d)
			f = hpack.HeaderField{Name: "grpc-timeout", Value: encodeTimeout(d)}
		case f.Name == "connect-content-encoding" || s.web == grpcweb.ConnectUnary && f.Name == "content-encoding":
			compressed = f.Value != "identity"
			f.Name = "grpc-encoding"
		case f.Name == "connect-accept-encoding":
			f.Name, sawEncoding = "grpc-accept-encoding", true
		case f.Name == "accept-encoding" && s.web == grpcweb.ConnectUnary:
			continue // the answer's message is passed as the server compressed it, or not
		}
		kept = append(kept, f)
	}
	out = kept
	if s.web == grpcweb.ConnectUnary && s.refusal == "" {
		s.prefixUnaryLocked(compressed)
	}
	if !sawTE {
		out = append(out, hpack.HeaderField{Name: "te", Value: "trailers"})
	}
	if !sawEncoding {
		// Pages cannot decompress what a server might compress.
		out = append(out, hpack.HeaderField{Name: "grpc-accept-encoding", Value: "identity"})
	}
	return out
}

// prefixUnaryLocked starts a Connect unary request's body with gRPC's
// message prefix, which needs the message's length.
func (s *fcall) prefixUnaryLocked(compressed bool) {
	length := s.reqLength
	if s.reqEnd {
		length = max(length, 0) // no body: an empty message
	}
	if length < 0 || length > 1<<31 {
		s.refusal, s.refusalCode = "a Connect unary request needs a content-length", codeInvalidArgument
		return
	}
	flag := byte(0)
	if compressed {
		flag = 1
	}
	s.reqBox = getBuf()
	s.reqBuf = grpcweb.AppendPrefix(*s.reqBox, flag, int(length))
	s.reqPrefix = 5
}

// webResponseHeaders forwards a server's response headers or trailers to a
// web client: the content type says gRPC-Web or Connect, CORS lets the page
// read them, and trailers become the end of the body (or, for a Connect
// unary call, wait with the rest of the answer for the status).
func (s *fcall) webResponseHeaders(fields []hpack.HeaderField, status int, end bool) error {
	if s.respStarted {
		s.code = grpcStatusOf(fields)
		s.respEnd = true
		s.noteBackendEndLocked()
		s.finishLocked(fields)
		return nil
	}
	if status != 200 {
		s.failLocked(grpcweb.StatusOf(status), fmt.Sprintf("server %s answered with HTTP status %d, not gRPC", s.u.Addr, status))
		return nil
	}
	s.startResponseLocked()
	s.respLength = -1 // the body changes length on the way
	s.code = grpcStatusOf(fields)
	if s.web == grpcweb.ConnectUnary {
		s.collecting = true
		if end {
			// Trailers-only: the headers are the status and its metadata.
			s.respEnd = true
			s.noteBackendEndLocked()
			s.finishLocked(fields)
			return nil
		}
		s.held = append([]hpack.HeaderField(nil), fields...)
		return nil
	}
	out := s.webHeaders(fields, end && s.web == grpcweb.ConnectStream)
	if end && s.web != grpcweb.ConnectStream {
		// Trailers-only stays so: the status in the headers, no body.
		s.respEnd = true
		s.noteBackendEndLocked()
		s.fc.headers(s.fl, s.cid, out, true)
		s.completeLocked()
		return nil
	}
	s.fc.headers(s.fl, s.cid, out, false)
	if end {
		// A Connect stream carries its status in the body, always.
		s.respEnd = true
		s.noteBackendEndLocked()
		s.finishLocked(fields)
	}
	return nil
}

// webHeaders are the response headers a web client gets for the server's:
// its content type, the encoding names of its protocol, CORS. Without
// status, the gRPC status fields are left out: they go in the body.
func (s *fcall) webHeaders(fields []hpack.HeaderField, withoutStatus bool) []hpack.HeaderField {
	out := make([]hpack.HeaderField, 0, len(fields)+3)
	for _, f := range fields {
		switch f.Name {
		case "content-length":
			continue
		case "grpc-status", "grpc-message", "grpc-status-details-bin":
			if withoutStatus {
				continue
			}
		case "content-type":
			if s.web == grpcweb.ConnectStream {
				f.Value = "application/connect+proto"
			} else {
				f.Value = grpcweb.ResponseType(s.webText, f.Value)
			}
		case "grpc-encoding":
			if s.web == grpcweb.ConnectStream {
				f.Name = "connect-content-encoding"
			}
		case "grpc-accept-encoding":
			if s.web == grpcweb.ConnectStream {
				f.Name = "connect-accept-encoding"
			}
		}
		out = append(out, f)
	}
	return s.rt.Web.AppendResponse(out, s.origin)
}

// collectLocked gathers a Connect unary call's answer, returning the
// server's window as it comes: nothing goes out before the status.
func (s *fcall) collectLocked(data []byte, end bool, pad uint32) error {
	if s.respEnd {
		return http2.StreamError{StreamID: s.bid, Code: http2.ErrCodeStreamClosed}
	}
	s.respCredit += pad
	if len(s.respBuf)+len(data) > maxConnectUnary {
		s.failLocked(codeResourceExhausted, fmt.Sprintf("the answer of server %s is over %d MiB, more than a Connect unary call through albctl carries", s.u.Addr, maxConnectUnary>>20))
		return nil
	}
	if s.respBuf == nil {
		s.respBox = getBuf()
		s.respBuf = *s.respBox
	}
	s.respBuf = append(s.respBuf, data...)
	s.respCredit += uint32(len(data))
	if end {
		s.respEnd = true
		s.noteBackendEndLocked()
		s.finishLocked(nil)
		return nil
	}
	if s.respCredit >= streamCreditThreshold {
		s.bc.windowUpdate(s.fl, s.bid, s.respCredit)
		s.respCredit = 0
	}
	return nil
}

// finishLocked ends a web call's answer with its status: the server's
// trailers, or the proxy's own status fields.
func (s *fcall) finishLocked(status []hpack.HeaderField) {
	switch s.web {
	case grpcweb.ConnectUnary:
		s.answerUnaryLocked(status, true)
		return
	case grpcweb.ConnectStream:
		s.appendBodyLocked(grpcweb.AppendConnectEnd(nil, status))
	default:
		s.appendBodyLocked(grpcweb.AppendTrailers(make([]byte, 0, 64), status))
	}
	s.sendResponseLocked()
}

// appendBodyLocked adds the frame that ends the body to the response
// waiting for the client.
func (s *fcall) appendBodyLocked(frame []byte) {
	if s.respBuf == nil {
		s.respBox = getBuf()
		s.respBuf = *s.respBox
	}
	if s.webText {
		s.respBuf = grpcweb.AppendText(s.respBuf, frame)
	} else {
		s.respBuf = append(s.respBuf, frame...)
	}
}

// answerUnaryLocked sends a Connect unary call's whole answer: on success
// the message alone, otherwise the HTTP status of the code and the error in
// JSON; trailers as trailer- headers either way. fromServer is false for a
// status the proxy makes, which has no message (an OK one from a rule's
// fixed answer, say).
func (s *fcall) answerUnaryLocked(status []hpack.HeaderField, fromServer bool) {
	s.collecting = false
	// Answered: no server may take the call from here on, nor another answer go out.
	s.respStarted = true
	s.waiting.Store(false)
	code := grpcStatusOf(status)
	var body []byte
	contentEncoding := "" // the message's, if the server compressed it
	if code == codeOK && fromServer {
		flag, n := byte(0), uint32(0)
		if len(s.respBuf) >= 5 {
			flag, n = s.respBuf[0], binary.BigEndian.Uint32(s.respBuf[1:5])
		}
		why := ""
		if flag&1 != 0 {
			for _, f := range s.held {
				if f.Name == "grpc-encoding" {
					contentEncoding = f.Value
				}
			}
		}
		switch {
		case len(s.respBuf) < 5 || uint32(len(s.respBuf)-5) != n:
			why = "answered a unary call with other than one message"
		case flag&1 != 0 && (contentEncoding == "" || contentEncoding == "identity"):
			why = "compressed its answer without naming the encoding"
		}
		if why != "" {
			code, contentEncoding = codeInternal, ""
			status = []hpack.HeaderField{{Name: "grpc-status", Value: statusStrings[codeInternal]},
				{Name: "grpc-message", Value: fmt.Sprintf("server %s %s", s.u.Addr, why)}}
		} else {
			body = s.respBuf[5:]
		}
	}
	s.code = code
	out := []hpack.HeaderField{{Name: ":status", Value: strconv.Itoa(grpcweb.ConnectHTTPStatus(code))}}
	if code == codeOK {
		out = append(out, hpack.HeaderField{Name: "content-type", Value: "application/proto"})
	} else {
		out = append(out, hpack.HeaderField{Name: "content-type", Value: "application/json"})
		body = grpcweb.ConnectError(status)
	}
	for _, f := range s.held {
		if grpcweb.IsMetadata(f.Name) {
			out = append(out, f)
		}
	}
	if contentEncoding != "" {
		out = append(out, hpack.HeaderField{Name: "content-encoding", Value: contentEncoding})
	}
	for _, f := range status {
		if grpcweb.IsMetadata(f.Name) {
			out = append(out, hpack.HeaderField{Name: "trailer-" + f.Name, Value: f.Value})
		}
	}
	out = s.rt.Web.AppendResponse(out, s.origin)
	if len(body) == 0 {
		s.respBuf = s.respBuf[:0]
		s.fc.headers(s.fl, s.cid, out, true)
		s.completeLocked()
		return
	}
	s.fc.headers(s.fl, s.cid, out, false)
	if s.respBuf == nil {
		s.respBox = getBuf()
		s.respBuf = *s.respBox
	}
	s.respBuf = append(s.respBuf[:0], body...) // body may be respBuf's own tail: append copies forward
	s.respEnd = true
	s.sendResponseLocked()
}

// webFailLocked answers a web call with a status the proxy makes: in the
// headers if none were sent (or, for Connect, as its protocol says),
// otherwise after the last whole message.
func (s *fcall) webFailLocked(code int, msg string) {
	if s.respStarted && s.respEnd && !s.collecting {
		// The server's answer is complete and waits for the client.
		s.detachLocked()
		return
	}
	s.code = code
	status := []hpack.HeaderField{
		{Name: "grpc-status", Value: statusStrings[code]},
		{Name: "grpc-message", Value: encodeGRPCMessage(msg)},
	}
	switch {
	case s.web == grpcweb.ConnectUnary:
		s.respEnd = true
		s.detachLocked()
		s.respBuf = s.respBuf[:0]
		s.held = nil
		s.answerUnaryLocked(status, false)
		return
	case !s.respStarted && s.web == grpcweb.ConnectStream:
		fields := []hpack.HeaderField{hfStatus200, {Name: "content-type", Value: "application/connect+proto"}}
		s.respStarted = true
		s.waiting.Store(false)
		s.fc.headers(s.fl, s.cid, s.rt.Web.AppendResponse(fields, s.origin), false)
	case !s.respStarted:
		fields := []hpack.HeaderField{hfStatus200, {Name: "content-type", Value: grpcweb.ResponseType(s.webText, "application/grpc")}}
		fields = s.rt.Web.AppendResponse(append(fields, status...), s.origin)
		s.respBuf = s.respBuf[:0]
		s.fc.headers(s.fl, s.cid, fields, true)
		s.completeLocked()
		return
	case !s.respFrames.Between():
		// Cut inside a message: nothing can follow it.
		s.fc.rst(s.fl, s.cid, http2.ErrCodeInternal)
		s.abortLocked()
		return
	}
	s.respEnd = true
	s.detachLocked()
	s.finishLocked(status)
}

// preflight answers a CORS preflight for a listener that takes gRPC-Web.
func (fc *frontConn) preflight(fl *flushList, hb *headerBlock, rt *route.Route, path string) {
	start := time.Now()
	origin, _ := hb.Value("origin", 0)
	method, _ := hb.Value("access-control-request-method", 0)
	headers, _ := hb.Value("access-control-request-headers", 0)
	status, fields, why := rt.Web.Preflight(rt.ListenerID, origin, method, headers)
	out := append([]hpack.HeaderField{{Name: ":status", Value: strconv.Itoa(status)}}, fields...)
	body := ""
	if why != "" {
		out = append(out, hpack.HeaderField{Name: "content-type", Value: "text/plain; charset=utf-8"})
		body = why + "\n"
	}
	fc.wmu.Lock()
	withBody := body != "" && len(body) <= int(fc.peerInitialWindow) && int64(len(body)) <= fc.sendWindow && len(body) <= int(fc.peerMaxFrame)
	fc.writeHeaders(hb.streamID, out, !withBody)
	if withBody {
		_ = fc.fr.WriteData(hb.streamID, true, []byte(body))
		fc.sendWindow -= int64(len(body))
	}
	if !hb.endStream {
		_ = fc.fr.WriteRSTStream(hb.streamID, http2.ErrCodeNo)
	}
	fc.unlock(fl)
	rec := fc.srv.e.rec
	rec.Started()
	rec.Finished(&obs.Call{Web: true, Listener: rt.ListenerID, Client: fc.remote, Method: "OPTIONS " + path, Code: status, Start: start})
}
