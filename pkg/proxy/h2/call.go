package h2

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/albctl/albctl/pkg/balancer"
	"github.com/albctl/albctl/pkg/proxy/grpcweb"
	"github.com/albctl/albctl/pkg/proxy/obs"
	"github.com/albctl/albctl/pkg/proxy/route"
)

// fcall is one call: one client stream and one backend stream at a time.
// The client's reader, the backend's reader, the client connection's
// request-timeout timer and, while a backend connection is being dialed, a
// connect goroutine all act on it under mu.
type fcall struct {
	e      *Engine
	fc     *frontConn
	cid    uint32
	rt     *route.Route
	start  time.Time
	method string
	// rule is the rule the call met, or nil; group is where it goes, and
	// pickKey what the group's picker hashes.
	rule    *route.Rule
	group   *route.Group
	pickKey string

	reqHeaders []hpack.HeaderField
	timeout    int // index of grpc-timeout in reqHeaders, or -1
	deadline   time.Time

	// For a gRPC-Web call: how the request's body is carried, whether the
	// response's is in text, and the page's origin ("" if none).
	web     grpcweb.Mode
	webText bool
	origin  string
	textIn  grpcweb.TextDecoder
	// textSlack is the client's window the text decoding still owes (or,
	// below 0, has returned ahead).
	textSlack int
	// respFrames follows the server's messages, so that a status the proxy
	// makes goes out between two of them. In text mode respRaw counts the
	// server's bytes whose base64 waits in respBuf: the server's window is
	// returned in those, not in the longer base64.
	respFrames grpcweb.Frames
	respRaw    int
	// refusal, if set, fails the call before it is sent: a request the
	// listener cannot pass on (Connect's JSON, say), with refusalCode.
	refusal     string
	refusalCode int
	// For a Connect unary call: collecting is set while the server's
	// answer is gathered (its headers in held, its message in respBuf),
	// to go out whole once its status is known.
	collecting bool
	held       []hpack.HeaderField

	// waiting is set while the listener's request timeout runs: until the
	// response headers arrive. waitUntil is when it expires; both are for
	// the connection's timeout queue, which does not take mu.
	waiting   atomic.Bool
	waitUntil time.Time

	mu sync.Mutex
	// fl is the flush list of the goroutine holding mu: frames the call
	// writes leave when that goroutine flushes.
	fl *flushList

	gs        *route.GroupState
	u         *route.Upstream
	pool      *pool // u's
	begun     bool  // u.Backend.Begin was called
	connFails int
	refusals  int
	bc        *backConn
	bid       uint32
	done      bool
	code      int

	// Request: client to backend. reqBuf[:reqSent] went to the backend and
	// is kept while the call may be replayed elsewhere; reqBuf[reqSent:]
	// waits for the backend's window.
	reqBuf    []byte
	reqBox    *[]byte // where reqBuf came from, see getBuf
	reqSent   int
	reqEnd    bool  // the client ended its stream
	reqLength int64 // the request's content-length, or -1
	// clientEnded is reqEnd as the client's reader sees it, without mu:
	// whether the client's side of the stream is half-closed.
	clientEnded bool
	reqEndSent  bool
	// reqPrefix is what the proxy put before the client's bytes in reqBuf:
	// a Connect unary message's 5-byte prefix.
	reqPrefix   int
	replay      bool
	reqWindow   int32 // the backend's window for this stream
	reqCredit   uint32
	reqQueued   bool // in bc.blocked
	backendDone bool // the backend stream is closed (reset or both ends ended)
	bytesIn     int64

	// Response: backend to client.
	respStarted  bool  // headers came from the backend (and went to the client)
	respLength   int64 // the response's content-length, or -1
	respBuf      []byte
	respBox      *[]byte // see reqBox
	respEnd      bool    // the backend ended its stream
	respTrailers []hpack.HeaderField
	respWindow   int32 // the client's window for this stream
	respCredit   uint32
	respQueued   bool // in fc.blocked
	bytesOut     int64
}

// lock takes the call's lock for a goroutine that flushes with fl.
func (s *fcall) lock(fl *flushList) {
	s.mu.Lock()
	s.fl = fl
}

func (s *fcall) unlock() {
	s.fl = nil
	s.mu.Unlock()
}

// begin picks a backend and opens the call's stream, on a connection at
// hand or, if one has to be dialed, from a connect goroutine.
func (s *fcall) begin(fl *flushList) {
	s.lock(fl)
	defer s.unlock()
	if s.web != grpcweb.Native && !s.rt.Web.Allows(s.origin) {
		origin := s.origin
		s.origin = "" // the refusal gives the page no CORS permission to read it
		s.failLocked(codePermissionDenied, fmt.Sprintf("origin %s is not allowed on listener %s", origin, s.rt.ListenerID))
		return
	}
	if s.refusal != "" {
		s.failLocked(s.refusalCode, s.refusal)
		return
	}
	if r := s.rule; r != nil {
		if r.Limit != nil && !r.Limit.Allow(s.fc.sourceIP) {
			s.failLocked(codeResourceExhausted, fmt.Sprintf("rule %s: over its traffic limit of %d calls per second", r.Label, r.Limit.QPS))
			return
		}
		if r.Fixed != nil {
			s.failLocked(r.Fixed.GRPCStatus, r.Fixed.Message)
			return
		}
	}
	pick, gs, err := s.group.Pick(s.gs, s.pickKey, nil)
	s.gs = gs
	if err != nil {
		s.failLocked(codeUnavailable, "no healthy servers in group "+s.group.ID)
		return
	}
	s.usePickLocked(pick)
	if rt := s.rt.RequestTimeout; rt > 0 && (s.deadline.IsZero() || s.start.Add(rt).Before(s.deadline)) {
		s.waiting.Store(true)
		s.fc.awaitResponse(s, s.start.Add(rt))
	}
	if bc := s.pool.tryAcquire(); bc != nil {
		s.openLocked(bc)
		return
	}
	go s.connect()
}

func (s *fcall) usePickLocked(pick balancer.Result) {
	s.u = s.gs.Upstreams[pick.Index]
	s.pool = s.e.poolOf(s.u)
	if pick.FailOpen {
		s.e.rec.FailOpen()
	}
	s.u.Backend.Begin()
	s.begun = true
}

// connect gets a stream slot, dialing if needed, and opens the call's
// stream. A server that cannot be reached is reported and the call tries
// once more on another server.
func (s *fcall) connect() {
	var fl flushList
	defer fl.flush()
	for {
		s.lock(&fl)
		u, bp := s.u, s.pool
		s.unlock()
		bc, err := bp.acquire()
		s.lock(&fl)
		if s.done || s.respEnd {
			s.unlock()
			if bc != nil {
				bc.release()
			}
			return
		}
		if err == nil {
			s.openLocked(bc)
			s.unlock()
			return
		}
		var ce *route.ConnectError
		if !errors.As(err, &ce) {
			s.failLocked(codeUnavailable, fmt.Sprintf("server %s: %v", u.Addr, err))
			s.unlock()
			return
		}
		u.ConnectFailed(err)
		s.connFails++
		var next balancer.Result
		var perr error
		if s.connFails == 1 {
			next, s.gs, perr = s.group.Pick(s.gs, s.pickKey, u.Backend)
		}
		if s.connFails > 1 || perr != nil {
			s.failLocked(codeUnavailable, ce.Error())
			s.unlock()
			return
		}
		u.Backend.End()
		s.begun = false
		s.usePickLocked(next)
		s.unlock()
	}
}

// openLocked opens the backend stream on bc, whose slot the call holds,
// and sends what the client has sent so far.
func (s *fcall) openLocked(bc *backConn) {
	if s.done || s.respEnd {
		// Ended, or answered by the proxy while its answer waits for the client.
		bc.release()
		return
	}
	s.bc = bc
	s.reqSent = 0
	s.reqEndSent = false
	s.backendDone = false
	s.reqQueued = false
	if s.timeout >= 0 {
		// Forward the time left, not the time the client asked for.
		s.reqHeaders[s.timeout].Value = encodeTimeout(time.Until(s.deadline))
	}
	endNow := s.reqEnd && len(s.reqBuf) == 0
	bc.wmu.Lock()
	s.bid = bc.nextID
	bc.nextID += 2
	bc.mu.Lock()
	bc.calls[s.bid] = s
	bc.mu.Unlock()
	s.reqWindow = bc.peerInitialWindow
	bc.writeHeaders(s.bid, s.reqHeaders, endNow)
	bc.unlock(s.fl)
	if endNow {
		s.reqEndSent = true
	} else {
		s.sendRequestLocked()
	}
}

// backendID returns the call's stream ID on bc, or 0.
func (s *fcall) backendID(bc *backConn) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bc != bc {
		return 0
	}
	return s.bid
}

// sendRequestLocked sends waiting request bytes as the backend's windows
// allow and returns the forwarded amount to the client's window.
func (s *fcall) sendRequestLocked() {
	bc := s.bc
	if bc == nil || s.done || s.reqEndSent || s.backendDone {
		return
	}
	n, ended := bc.writeData(s.fl, s, s.bid, &s.reqWindow, s.reqBuf[s.reqSent:], s.reqEnd, &s.reqQueued)
	s.reqSent += n
	if ended {
		s.reqEndSent = true
	}
	s.reqCredit += uint32(n)
	if s.reqCredit >= streamCreditThreshold && !s.reqEnd {
		s.fc.windowUpdate(s.fl, s.cid, s.reqCredit)
		s.reqCredit = 0
	}
	if s.replay && s.reqSent > maxReplay {
		s.replay = false
	}
	if !s.replay && s.reqSent > 0 {
		n := copy(s.reqBuf, s.reqBuf[s.reqSent:])
		s.reqBuf = s.reqBuf[:n]
		s.reqSent = 0
	}
}

// onRequestData takes a DATA frame (or the end of the stream) from the
// client. pad is flow-controlled padding, returned at once. A stream error
// ends the call; the reader resets the client's stream.
func (s *fcall) onRequestData(fl *flushList, data []byte, end bool, pad uint32) error {
	s.lock(fl)
	defer s.unlock()
	if s.done || s.reqEnd {
		return nil
	}
	if len(s.reqBuf)-s.reqSent+len(data) > streamWindow+s.reqPrefix {
		// More than the window we granted: the client broke flow control.
		s.code = codeInternal
		s.abortLocked()
		return http2.StreamError{StreamID: s.cid, Code: http2.ErrCodeFlowControl}
	}
	if n := s.bytesIn + int64(len(data)); s.reqLength >= 0 && (n > s.reqLength || end && n != s.reqLength) {
		// The body does not match its content-length: a malformed
		// request, whose end must not reach the server (RFC 9113 §8.1.1).
		s.code = codeInternal
		s.abortLocked()
		return http2.StreamError{StreamID: s.cid, Code: http2.ErrCodeProtocol}
	}
	s.bytesIn += int64(len(data))
	s.reqCredit += pad
	s.reqEnd = end
	if len(data) > 0 && s.reqBuf == nil {
		s.reqBox = getBuf()
		s.reqBuf = *s.reqBox
	}
	if s.web == grpcweb.Text {
		n := len(s.reqBuf)
		var err error
		if s.reqBuf, err = s.textIn.Append(s.reqBuf, data); err == nil && end {
			err = s.textIn.Close()
		}
		if err != nil {
			s.failLocked(codeInternal, err.Error())
			return nil
		}
		// The client's window is returned in the bytes forwarded; what
		// decoding took off, at once. A piece that completes a group held
		// from the one before decodes to more than it is: that is made up
		// from the next.
		if s.textSlack += len(data) - (len(s.reqBuf) - n); s.textSlack > 0 {
			s.reqCredit += uint32(s.textSlack)
			s.textSlack = 0
		}
	} else {
		s.reqBuf = append(s.reqBuf, data...)
	}
	s.sendRequestLocked()
	return nil
}

// addRequestWindow takes the backend's WINDOW_UPDATE (or SETTINGS change)
// for the call's stream. A window pushed past its maximum is a stream error
// on the backend's connection.
func (s *fcall) addRequestWindow(fl *flushList, bc *backConn, n int32) error {
	s.lock(fl)
	defer s.unlock()
	if s.done || s.bc != bc {
		return nil
	}
	if !addStreamWindow(&s.reqWindow, n) {
		return s.malformedResponseLocked("flow-control window above 2^31-1")
	}
	s.sendRequestLocked()
	return nil
}

func (s *fcall) resumeRequest(fl *flushList) {
	s.lock(fl)
	s.reqQueued = false
	s.sendRequestLocked()
	s.unlock()
}

// responseFields re-encodes a backend's header block, which checkResponse
// or checkTrailers passed, for the client: :status and the regular fields.
func responseFields(hb *headerBlock, out []hpack.HeaderField) []hpack.HeaderField {
	if st := hb.pseudo(":status"); st != "" {
		out = append(out, hpack.HeaderField{Name: ":status", Value: st})
	}
	return append(out, hb.regular()...)
}

// malformedResponseLocked fails a call whose server broke HTTP/2 on its
// stream; the backend's reader resets that stream.
func (s *fcall) malformedResponseLocked(why string) error {
	id := s.bid
	s.backendDone = true // the reader's RST_STREAM ends it
	s.failLocked(codeInternal, fmt.Sprintf("server %s sent a malformed response: %s", s.u.Addr, why))
	return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
}

func grpcStatusOf(fields []hpack.HeaderField) int {
	for _, hf := range fields {
		if hf.Name == "grpc-status" {
			return parseStatus(hf.Value)
		}
	}
	return codeUnknown
}

// onResponseHeaders forwards the backend's response headers or trailers.
func (s *fcall) onResponseHeaders(fl *flushList, bc *backConn, hb *headerBlock) error {
	s.lock(fl)
	defer s.unlock()
	if s.done || s.bc != bc {
		return nil
	}
	if s.respEnd {
		return http2.StreamError{StreamID: s.bid, Code: http2.ErrCodeStreamClosed}
	}
	var status int
	if !s.respStarted {
		var length int64
		var ok bool
		status, length, ok = checkResponse(hb)
		switch {
		case !ok:
			return s.malformedResponseLocked("invalid response header fields")
		case status < 200 && hb.endStream:
			return s.malformedResponseLocked("an informational response ended the stream")
		case status < 200:
			// Informational (1xx): gRPC clients have no use for it, and
			// the final response follows.
			return nil
		}
		s.respLength = length
	} else if !checkTrailers(hb) {
		return s.malformedResponseLocked("invalid trailers")
	}
	var buf [16]hpack.HeaderField
	fields := responseFields(hb, buf[:0])
	if s.web != grpcweb.Native {
		return s.webResponseHeaders(fields, status, hb.endStream)
	}
	if !s.respStarted {
		s.startResponseLocked()
		if hb.endStream {
			// Trailers-only: one HEADERS frame that ends the stream.
			s.code = grpcStatusOf(fields)
			s.respEnd = true
			s.noteBackendEndLocked()
			s.fc.headers(s.fl, s.cid, fields, true)
			s.completeLocked()
			return nil
		}
		s.code = grpcStatusOf(fields)
		s.fc.headers(s.fl, s.cid, fields, false)
		return nil
	}
	if s.respLength >= 0 && s.bytesOut+int64(len(s.respBuf)) != s.respLength {
		return s.malformedResponseLocked("body length differs from content-length")
	}
	s.code = grpcStatusOf(fields)
	s.respEnd = true
	s.noteBackendEndLocked()
	if len(s.respBuf) == 0 {
		s.fc.headers(s.fl, s.cid, fields, true)
		s.completeLocked()
		return nil
	}
	s.respTrailers = append([]hpack.HeaderField(nil), fields...)
	return nil
}

// startResponseLocked notes that the response began: the call can no
// longer go to another server.
func (s *fcall) startResponseLocked() {
	s.respStarted = true
	s.waiting.Store(false)
	s.replay = false
	if s.reqSent > 0 {
		n := copy(s.reqBuf, s.reqBuf[s.reqSent:])
		s.reqBuf = s.reqBuf[:n]
		s.reqSent = 0
	}
}

// onResponseData forwards the backend's DATA, straight from the frame when
// nothing is waiting before it.
func (s *fcall) onResponseData(fl *flushList, bc *backConn, data []byte, end bool, pad uint32) error {
	s.lock(fl)
	defer s.unlock()
	if s.done || s.bc != bc {
		return nil
	}
	if s.collecting {
		return s.collectLocked(data, end, pad)
	}
	pending := len(s.respBuf)
	if s.webText {
		pending = s.respRaw
	}
	switch n := s.bytesOut + int64(len(s.respBuf)+len(data)); {
	case s.respEnd:
		return http2.StreamError{StreamID: s.bid, Code: http2.ErrCodeStreamClosed}
	case !s.respStarted:
		return s.malformedResponseLocked("DATA before the response headers")
	case pending+len(data) > streamWindow:
		id := s.bid
		s.backendDone = true
		s.code = codeInternal
		s.fc.rst(s.fl, s.cid, http2.ErrCodeInternal)
		s.abortLocked()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	case s.respLength >= 0 && (n > s.respLength || end && n != s.respLength):
		return s.malformedResponseLocked("body length differs from content-length")
	}
	s.respCredit += pad
	if end {
		s.respEnd = true
		s.noteBackendEndLocked()
	}
	if s.web != grpcweb.Native {
		s.respFrames.Add(data)
	}
	if s.webText {
		if s.respBuf == nil {
			s.respBox = getBuf()
			s.respBuf = *s.respBox
		}
		s.respRaw += len(data)
		s.respBuf = grpcweb.AppendText(s.respBuf, data)
		s.sendResponseLocked()
		return nil
	}
	if len(s.respBuf) == 0 {
		n, ended := s.fc.writeData(s.fl, s, s.cid, &s.respWindow, data, end, &s.respQueued)
		s.bytesOut += int64(n)
		s.respCredit += uint32(n)
		if ended {
			s.completeLocked()
			return nil
		}
		data = data[n:]
	}
	if len(data) > 0 {
		if s.respBuf == nil {
			s.respBox = getBuf()
			s.respBuf = *s.respBox
		}
		s.respBuf = append(s.respBuf, data...)
	}
	s.sendResponseLocked()
	return nil
}

// sendResponseLocked sends waiting response bytes, then any trailers, as
// the client's windows allow, and returns the forwarded amount to the
// backend's window.
func (s *fcall) sendResponseLocked() {
	if s.done || s.collecting {
		return
	}
	if len(s.respBuf) > 0 {
		endWithData := s.respEnd && s.respTrailers == nil
		n, ended := s.fc.writeData(s.fl, s, s.cid, &s.respWindow, s.respBuf, endWithData, &s.respQueued)
		s.bytesOut += int64(n)
		rest := copy(s.respBuf, s.respBuf[n:])
		s.respBuf = s.respBuf[:rest]
		switch {
		case !s.webText:
			s.respCredit += uint32(n)
		case rest == 0:
			s.respCredit += uint32(s.respRaw)
			s.respRaw = 0
		}
		if ended {
			s.completeLocked()
			return
		}
	}
	if len(s.respBuf) == 0 && s.respTrailers != nil {
		s.fc.headers(s.fl, s.cid, s.respTrailers, true)
		s.completeLocked()
		return
	}
	if s.respCredit >= streamCreditThreshold && !s.respEnd && s.bc != nil && !s.backendDone {
		s.bc.windowUpdate(s.fl, s.bid, s.respCredit)
		s.respCredit = 0
	}
}

// addResponseWindow takes the client's WINDOW_UPDATE (or SETTINGS change)
// for the call's stream. A window pushed past its maximum is a stream
// error; the reader resets the client's stream.
func (s *fcall) addResponseWindow(fl *flushList, n int32) error {
	s.lock(fl)
	defer s.unlock()
	if s.done {
		return nil
	}
	if !addStreamWindow(&s.respWindow, n) {
		s.code = codeInternal
		s.abortLocked()
		return http2.StreamError{StreamID: s.cid, Code: http2.ErrCodeFlowControl}
	}
	s.sendResponseLocked()
	return nil
}

func (s *fcall) resumeResponse(fl *flushList) {
	s.lock(fl)
	s.respQueued = false
	s.sendResponseLocked()
	s.unlock()
}

// noteBackendEndLocked marks the backend stream closed if both of its ends
// are done.
func (s *fcall) noteBackendEndLocked() {
	if s.respEnd && s.reqEndSent {
		s.backendDone = true
	}
}

// onBackendReset handles RST_STREAM from the backend.
func (s *fcall) onBackendReset(fl *flushList, code http2.ErrCode) {
	s.lock(fl)
	defer s.unlock()
	if s.done {
		return
	}
	s.backendDone = true
	if !s.respStarted && code == http2.ErrCodeRefusedStream {
		s.retryLocked()
		return
	}
	if code == http2.ErrCodeCancel && !s.deadline.IsZero() && time.Until(s.deadline) < 100*time.Millisecond {
		// The backend's timer for the grpc-timeout we forwarded fired
		// just before ours would.
		if s.respStarted {
			s.failLocked(codeDeadlineExceeded, "deadline exceeded")
		} else {
			s.failLocked(codeDeadlineExceeded, "deadline exceeded waiting for server "+s.u.Addr)
		}
		return
	}
	if !s.respStarted && s.reqEnd && code == http2.ErrCodeNo {
		// Closed without an answer.
		s.failLocked(codeUnavailable, fmt.Sprintf("server %s: stream closed without a response", s.u.Addr))
		return
	}
	if s.web != grpcweb.Native && s.respFrames.Between() {
		// A page cannot see a reset stream's cause; a status it can.
		s.failLocked(codeUnavailable, fmt.Sprintf("server %s reset the stream (%v)", s.u.Addr, code))
		return
	}
	// The server reset the stream: reset the client's stream too.
	s.code = codeInternal
	s.fc.rst(s.fl, s.cid, http2.ErrCodeInternal)
	s.abortLocked()
}

// onRefused sends the call again (on this or another connection of the
// same server) after the backend said it did not process it.
func (s *fcall) onRefused(fl *flushList, bc *backConn) {
	s.lock(fl)
	defer s.unlock()
	if s.done || s.bc != bc {
		return
	}
	s.backendDone = true
	s.retryLocked()
}

func (s *fcall) retryLocked() {
	s.detachLocked()
	if !s.replay || s.refusals >= maxRefusals {
		s.failLocked(codeUnavailable, fmt.Sprintf("server %s refused the call", s.u.Addr))
		return
	}
	s.refusals++
	go s.connect()
}

// detachLocked leaves the backend stream, releasing its slot.
func (s *fcall) detachLocked() {
	bc := s.bc
	if bc == nil {
		return
	}
	if !s.backendDone {
		bc.rst(s.fl, s.bid, http2.ErrCodeCancel)
		s.backendDone = true
	}
	bc.wmu.Lock()
	if s.reqQueued {
		for i, q := range bc.blocked {
			if q == s {
				bc.blocked = append(bc.blocked[:i], bc.blocked[i+1:]...)
				break
			}
		}
		s.reqQueued = false
	}
	bc.wmu.Unlock()
	bc.removeCall(s.bid)
	bc.release()
	s.bc = nil
}

// onBackendLost fails a call whose backend connection ended.
func (s *fcall) onBackendLost(fl *flushList, bc *backConn, err error) {
	s.lock(fl)
	defer s.unlock()
	if s.done || s.bc != bc {
		return
	}
	s.backendDone = true
	if s.respStarted {
		s.failLocked(codeUnavailable, fmt.Sprintf("connection to server %s lost: %v", s.u.Addr, err))
	} else {
		s.failLocked(codeUnavailable, fmt.Sprintf("server %s: %v", s.u.Addr, err))
	}
}

func (s *fcall) onRequestTimeout() {
	var fl flushList
	defer fl.flush()
	s.lock(&fl)
	defer s.unlock()
	if s.done || s.respStarted {
		return
	}
	s.failLocked(codeDeadlineExceeded, fmt.Sprintf("request timeout of %v expired waiting for server %s", s.rt.RequestTimeout, s.u.Addr))
}

// onClientReset handles RST_STREAM from the client (or a stream error).
func (s *fcall) onClientReset(fl *flushList) {
	s.lock(fl)
	defer s.unlock()
	if s.done {
		return
	}
	s.code = codeCanceled
	s.abortLocked()
}

func (s *fcall) onClientGone(fl *flushList) { s.onClientReset(fl) }

// onStreamError ends a call whose client broke HTTP/2 on its stream; the
// reader resets the stream.
func (s *fcall) onStreamError(fl *flushList) {
	s.lock(fl)
	defer s.unlock()
	if !s.done {
		s.code = codeInternal
		s.abortLocked()
	}
}

var (
	hfStatus200   = hpack.HeaderField{Name: ":status", Value: "200"}
	hfContentType = hpack.HeaderField{Name: "content-type", Value: "application/grpc"}
)

// failLocked answers the call with a gRPC status the proxy makes:
// trailers-only if no response headers were sent, trailers otherwise.
func (s *fcall) failLocked(code int, msg string) {
	if s.done {
		return
	}
	if s.web != grpcweb.Native {
		s.webFailLocked(code, msg)
		return
	}
	s.code = code
	s.respBuf = s.respBuf[:0]
	s.respTrailers = nil
	var fields []hpack.HeaderField
	if !s.respStarted {
		fields = append(fields, hfStatus200, hfContentType)
	}
	fields = append(fields,
		hpack.HeaderField{Name: "grpc-status", Value: statusStrings[code]},
		hpack.HeaderField{Name: "grpc-message", Value: encodeGRPCMessage(msg)})
	s.fc.headers(s.fl, s.cid, fields, true)
	s.completeLocked()
}

// protocol names the call's protocol for the access log and metrics; ""
// for plain gRPC.
func (s *fcall) protocol() string {
	if s.web == grpcweb.Native {
		return ""
	}
	return s.web.Protocol()
}

// completeLocked ends a call whose response has fully gone to the client.
func (s *fcall) completeLocked() {
	if !s.reqEnd {
		// The client is still sending; its stream is of no more use.
		s.fc.rst(s.fl, s.cid, http2.ErrCodeNo)
	}
	s.abortLocked()
}

// abortLocked ends the call: the backend stream is reset if still open, the
// call leaves both connections and is recorded.
func (s *fcall) abortLocked() {
	if s.done {
		return
	}
	s.done = true
	s.waiting.Store(false)
	if s.bc != nil && !s.backendDone && !(s.respEnd && s.reqEndSent) {
		s.bc.rst(s.fl, s.bid, http2.ErrCodeCancel)
		s.backendDone = true
	}
	s.detachLocked()
	fc := s.fc
	if s.respQueued {
		fc.wmu.Lock()
		for i, q := range fc.blocked {
			if q == s {
				fc.blocked = append(fc.blocked[:i], fc.blocked[i+1:]...)
				break
			}
		}
		fc.wmu.Unlock()
		s.respQueued = false
	}
	fc.removeCall(s.cid)
	if s.begun {
		s.u.Backend.End()
		s.begun = false
	}
	server, rule := "", ""
	if s.u != nil {
		server = s.u.Addr
	}
	if s.rule != nil {
		rule = s.rule.Label
	}
	s.e.rec.Finished(&obs.Call{
		Listener: s.rt.ListenerID, Client: s.fc.remote, Method: s.method, Server: server, Rule: rule, Protocol: s.protocol(),
		Code: s.code, Start: s.start, BytesIn: s.bytesIn, BytesOut: s.bytesOut,
	})
	putBuf(s.reqBox, s.reqBuf)
	putBuf(s.respBox, s.respBuf)
	s.reqBuf, s.respBuf, s.reqBox, s.respBox = nil, nil, nil, nil
}
