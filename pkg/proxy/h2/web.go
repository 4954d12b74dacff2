package h2

import (
	"fmt"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/albctl/albctl/pkg/proxy/grpcweb"
	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/proxy/route"
)

// webRequestFields finishes the header list of a gRPC-Web call for its
// server: a gRPC request, whose text body is decoded on the way, so its
// length changes.
func (s *fcall) webRequestFields(out []hpack.HeaderField, acceptText, sawTE, sawEncoding bool) []hpack.HeaderField {
	s.webText = s.web == grpcweb.Text || acceptText
	if s.web == grpcweb.Text {
		kept := out[:0]
		for _, f := range out {
			if f.Name != "content-length" {
				kept = append(kept, f)
			}
		}
		out = kept
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

// webResponseHeaders forwards a server's response headers or trailers to a
// gRPC-Web client: the content type says gRPC-Web, CORS lets the page read
// them, and trailers go at the end of the body.
func (s *fcall) webResponseHeaders(fields []hpack.HeaderField, status int, end bool) error {
	if s.respStarted {
		s.code = grpcStatusOf(fields)
		s.respEnd = true
		s.noteBackendEndLocked()
		s.appendStatusLocked(fields)
		s.sendResponseLocked()
		return nil
	}
	if status != 200 {
		s.failLocked(grpcweb.StatusOf(status), fmt.Sprintf("server %s answered with HTTP status %d, not gRPC", s.u.Addr, status))
		return nil
	}
	s.startResponseLocked()
	s.respLength = -1 // the body changes length on the way
	out := fields[:0]
	for _, f := range fields {
		switch f.Name {
		case "content-length":
			continue
		case "content-type":
			f.Value = grpcweb.ResponseType(s.webText, f.Value)
		}
		out = append(out, f)
	}
	out = s.rt.Web.AppendResponse(out, s.origin)
	s.code = grpcStatusOf(out)
	if end {
		// Trailers-only stays so: the status in the headers, no body.
		s.respEnd = true
		s.noteBackendEndLocked()
		s.fc.headers(s.fl, s.cid, out, true)
		s.completeLocked()
		return nil
	}
	s.fc.headers(s.fl, s.cid, out, false)
	return nil
}

// appendStatusLocked adds the frame with the trailers to the response
// waiting for the client.
func (s *fcall) appendStatusLocked(fields []hpack.HeaderField) {
	if s.respBuf == nil {
		s.respBox = getBuf()
		s.respBuf = *s.respBox
	}
	if s.webText {
		s.respBuf = grpcweb.AppendText(s.respBuf, grpcweb.AppendTrailers(make([]byte, 0, 64), fields))
	} else {
		s.respBuf = grpcweb.AppendTrailers(s.respBuf, fields)
	}
}

// webFailLocked answers a gRPC-Web call with a status the proxy makes: in
// the headers if none were sent, otherwise in a status frame after the
// last whole message.
func (s *fcall) webFailLocked(code int, msg string) {
	if s.respStarted && s.respEnd {
		// The server's answer is complete and waits for the client.
		s.detachLocked()
		return
	}
	s.code = code
	status := []hpack.HeaderField{
		{Name: "grpc-status", Value: statusStrings[code]},
		{Name: "grpc-message", Value: encodeGRPCMessage(msg)},
	}
	if !s.respStarted {
		fields := []hpack.HeaderField{hfStatus200, {Name: "content-type", Value: grpcweb.ResponseType(s.webText, "application/grpc")}}
		fields = s.rt.Web.AppendResponse(append(fields, status...), s.origin)
		s.respBuf = s.respBuf[:0]
		s.fc.headers(s.fl, s.cid, fields, true)
		s.completeLocked()
		return
	}
	if !s.respFrames.Between() {
		// Cut inside a message: nothing can follow it.
		s.fc.rst(s.fl, s.cid, http2.ErrCodeInternal)
		s.abortLocked()
		return
	}
	s.respEnd = true
	s.detachLocked()
	s.appendStatusLocked(status)
	s.sendResponseLocked()
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
