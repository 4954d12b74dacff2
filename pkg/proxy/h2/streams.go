package h2

import (
	"errors"

	"golang.org/x/net/http2"
)

// What RFC 9113 says a peer may send, in one place: the reader of each
// connection asks checkState for every frame on a stream, and checkRequest
// or checkResponse for every header block that starts a message. An error
// is an http2.StreamError (the reader resets the stream and ends its call)
// or an http2.ConnectionError (the reader sends GOAWAY and closes the
// connection); nothing refused reaches the other side. x/net's HTTP/2
// server is the reference for what to refuse and with which code.

// streamState is a stream's state as RFC 9113 §5.1 names it, seen by the
// side that reads the frame. "Half-closed (local)" behaves as open for
// what may be received, and "reserved" never occurs: push is off.
type streamState uint8

const (
	stateIdle streamState = iota
	stateOpen
	stateHalfClosedRemote // the peer ended its side of the stream
	stateClosed
)

// checkState says whether a frame of type t may arrive on stream id in
// state st. HEADERS on an idle stream opens it; the caller decides whether
// the peer may open streams.
func checkState(t http2.FrameType, id uint32, st streamState) error {
	switch st {
	case stateIdle:
		if t != http2.FrameHeaders && t != http2.FramePriority {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
	case stateHalfClosedRemote:
		if t != http2.FrameWindowUpdate && t != http2.FramePriority && t != http2.FrameRSTStream {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
		}
	case stateClosed:
		// WINDOW_UPDATE, PRIORITY and RST_STREAM may still be on their
		// way after the stream ended; they are ignored.
		if t == http2.FrameData {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
		}
	}
	return nil
}

// checkPriority refuses a stream that depends on itself (RFC 9113 §5.3.1).
// Priorities are otherwise ignored: each hop schedules its own writes.
func checkPriority(id uint32, p http2.PriorityParam) error {
	if p.StreamDep == id {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	return nil
}

// connErrorCode returns the GOAWAY code for an error that ends a
// connection, if the peer is to be told one.
func connErrorCode(err error) (http2.ErrCode, bool) {
	var ce http2.ConnectionError
	var hpackErr compressionError
	switch {
	case errors.As(err, &ce):
		return http2.ErrCode(ce), true
	case errors.As(err, &hpackErr):
		return http2.ErrCodeCompression, true
	case errors.Is(err, http2.ErrFrameTooLarge):
		return http2.ErrCodeFrameSize, true
	}
	return 0, false
}

// connectionSpecific reports header fields that belong to one HTTP/1
// connection: HTTP/2 messages that carry them are malformed (RFC 9113
// §8.2.2).
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// request is what checkRequest found in a request's header block.
type request struct {
	method, path  string
	contentLength int64 // -1 if absent
}

// checkRequest validates a request's header block (RFC 9113 §8.2, §8.3.1):
// valid names and values, the pseudo-header fields a request has, each
// once and before the others, no connection-specific fields, te only as
// "trailers", and at most one content-length. CONNECT is not forwarded.
func checkRequest(hb *headerBlock) (request, bool) {
	req := request{method: hb.pseudo(":method"), path: hb.pseudo(":path"), contentLength: -1}
	switch {
	case hb.invalid || req.method == "" || hb.pseudo(":scheme") == "" || req.method == "CONNECT":
		return req, false
	case req.path == "" || req.path[0] != '/' && !(req.method == "OPTIONS" && req.path == "*"):
		return req, false
	}
	for _, hf := range hb.regular() {
		switch {
		case connectionSpecific(hf.Name):
			return req, false
		case hf.Name == "te" && hf.Value != "trailers":
			return req, false
		case hf.Name == "content-length":
			n, ok := parseContentLength(hf.Value)
			if !ok || req.contentLength >= 0 && n != req.contentLength {
				return req, false
			}
			req.contentLength = n
		}
	}
	if hb.endStream && req.contentLength > 0 {
		return req, false
	}
	return req, true
}

// checkResponse validates a server's response header block: a three-digit
// :status and nothing a request would carry or an HTTP/2 message may not.
// It returns the status and the content-length (-1 if absent).
func checkResponse(hb *headerBlock) (status int, contentLength int64, ok bool) {
	st := hb.pseudo(":status")
	if hb.invalid || hb.truncated || len(st) != 3 {
		return 0, -1, false
	}
	for i := 0; i < 3; i++ {
		if st[i] < '0' || st[i] > '9' {
			return 0, -1, false
		}
		status = status*10 + int(st[i]-'0')
	}
	if status < 100 {
		return 0, -1, false
	}
	contentLength = -1
	for _, hf := range hb.regular() {
		switch {
		case connectionSpecific(hf.Name):
			return 0, -1, false
		case hf.Name == "content-length":
			n, ok := parseContentLength(hf.Value)
			if !ok || contentLength >= 0 && n != contentLength {
				return 0, -1, false
			}
			contentLength = n
		}
	}
	return status, contentLength, true
}

// checkTrailers validates trailers: they end the stream and hold neither
// pseudo-header nor connection-specific fields (RFC 9113 §8.1).
func checkTrailers(hb *headerBlock) bool {
	if !hb.endStream || hb.invalid || hb.truncated || len(hb.regular()) != len(hb.fields) {
		return false
	}
	for _, hf := range hb.fields {
		if connectionSpecific(hf.Name) {
			return false
		}
	}
	return true
}

// parseContentLength reads a content-length value: decimal digits only.
func parseContentLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
