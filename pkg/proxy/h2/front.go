package h2

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/albctl/albctl/pkg/proxy/grpcweb"
	"github.com/albctl/albctl/pkg/proxy/route"
	"github.com/albctl/albctl/pkg/proxy/sock"
)

// frontConn is a client's HTTP/2 connection. Its reader goroutine (the
// listener's serveConn goroutine) starts calls and forwards the client's
// frames; backend readers write responses into it.
type frontConn struct {
	h2conn
	srv      *Server
	remote   string
	source   string     // the client's IP, as pickers hash it
	sourceIP netip.Addr // the same, for rules
	tls      tls.ConnectionState
	// The client certificate's header fields, made on the reader goroutine
	// for the header names of certFor.
	certFields []route.Field
	certFor    *route.ClientCertHeaders
	maxStreams uint32
	idle       time.Duration
	resets     resetLimiter // reader goroutine only

	mu        sync.Mutex
	calls     map[uint32]*fcall
	maxID     uint32 // highest stream ID the client opened
	goingAway bool
	closing   bool
	idleTimer *time.Timer
	idleSince time.Time

	// Calls waiting for response headers under the listener's request
	// timeout, oldest first: one timer per connection serves them all, set
	// for the earliest expiry, instead of a timer per call.
	waitQueue []*fcall
	waitTimer *time.Timer
	waitAt    time.Time // when waitTimer fires; zero if it is not set
}

// ServeConn runs the engine on an accepted connection that negotiated h2
// (a TLS connection, as the listener hands it over), until the connection
// ends. sc is the socket below TLS.
func (srv *Server) ServeConn(tc net.Conn, sc *sock.Spill) {
	e := srv.e
	br := bufio.NewReaderSize(tc, 16<<10)
	_ = tc.SetReadDeadline(time.Now().Add(e.opts.HandshakeTimeout))
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(br, preface[:]); err != nil || string(preface[:]) != http2.ClientPreface {
		e.log.Debug("bad HTTP/2 preface", "listener", srv.route().ListenerID, "client", tc.RemoteAddr().String())
		return
	}
	_ = tc.SetReadDeadline(time.Time{})

	fc := &frontConn{
		srv:        srv,
		remote:     tc.RemoteAddr().String(),
		maxStreams: e.opts.MaxConcurrentStreams,
		idle:       srv.route().IdleTimeout,
		calls:      map[uint32]*fcall{},
		idleSince:  time.Now(),
	}
	if t, ok := tc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		fc.tls = t.ConnectionState()
	}
	fc.source = route.HostOf(fc.remote)
	fc.sourceIP, _ = netip.ParseAddr(fc.source)
	fc.init(tc, sc, br, newHeaderReader(route.MaxHeaderBytes, requestPseudo), (*fcall).resumeResponse)
	fc.startKeepalive(clientReadIdle, clientPingTimeout, nil)
	defer fc.close()
	fc.wmu.Lock()
	_ = fc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: fc.maxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: route.MaxHeaderBytes},
	)
	_ = fc.fr.WriteWindowUpdate(0, connWindow-65535)
	fc.unlock(nil)

	srv.mu.Lock()
	closing := srv.closing
	srv.conns[fc] = struct{}{}
	srv.mu.Unlock()
	defer func() {
		srv.mu.Lock()
		delete(srv.conns, fc)
		srv.mu.Unlock()
	}()
	if closing {
		fc.goAway()
	}
	fc.mu.Lock()
	fc.idleTimer = time.AfterFunc(fc.idle, fc.checkIdle)
	fc.mu.Unlock()

	fl := &flushList{}
	err := fc.readLoop(br, fl)
	if dead := fc.stopKeepalive(); dead != nil {
		err = dead
	}
	fc.mu.Lock()
	fc.closing = true
	fc.idleTimer.Stop()
	if fc.waitTimer != nil {
		fc.waitTimer.Stop()
	}
	clear(fc.waitQueue)
	calls := make([]*fcall, 0, len(fc.calls))
	for _, s := range fc.calls {
		calls = append(calls, s)
	}
	fc.mu.Unlock()
	for _, s := range calls {
		s.onClientGone(fl)
	}
	fl.flush()
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && err != errTooManyResets {
		e.log.Debug("client connection ended", "listener", srv.route().ListenerID, "client", fc.remote, "err", err)
	}
}

func (fc *frontConn) readLoop(br *bufio.Reader, fl *flushList) error {
	waiting := fc.flushBeforeWait(br, fl)
	for first := true; ; first = false {
		waiting()
		f, err := fc.fr.ReadFrame()
		if first && err == nil {
			// The client's preface ends with its SETTINGS; anything else is
			// not an HTTP/2 client.
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				err = http2.ConnectionError(http2.ErrCodeProtocol)
			}
		}
		if err == nil {
			err = fc.process(fl, f)
		}
		if err == nil {
			continue
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			if s := fc.call(se.StreamID); s != nil {
				s.onStreamError(fl)
			}
			fc.rst(fl, se.StreamID, se.Code)
			if se.Code == http2.ErrCodeRefusedStream {
				continue
			}
			// A stream the client broke may have started a call, as a
			// stream it reset does.
			if err = fc.countReset(fl); err == nil {
				continue
			}
		}
		if code, ok := connErrorCode(err); ok {
			fc.wmu.Lock()
			_ = fc.fr.WriteGoAway(fc.lastID(), code, nil)
			fc.unlock(fl)
		}
		return err
	}
}

// countReset counts a call the client ended before its answer, and cuts
// the client off once it did so too often (see resetLimiter).
func (fc *frontConn) countReset(fl *flushList) error {
	if fc.resets.allow(time.Now()) {
		return nil
	}
	fc.srv.e.log.Warn("client reset too many calls: closing its connection",
		"listener", fc.srv.route().ListenerID, "client", fc.remote)
	fc.wmu.Lock()
	_ = fc.fr.WriteGoAway(fc.lastID(), http2.ErrCodeEnhanceYourCalm, nil)
	fc.unlock(fl)
	return errTooManyResets
}

// stream returns the call on stream id, if any, and the stream's state as
// RFC 9113 §5.1 names it. The client opens odd streams only; the proxy
// opens none, so an even stream is always idle.
func (fc *frontConn) stream(id uint32) (*fcall, streamState) {
	fc.mu.Lock()
	s, maxID := fc.calls[id], fc.maxID
	fc.mu.Unlock()
	switch {
	case s != nil && s.clientEnded:
		return s, stateHalfClosedRemote
	case s != nil:
		return s, stateOpen
	case id%2 == 1 && id <= maxID:
		return nil, stateClosed
	}
	return nil, stateIdle
}

// process acts on one frame from the client. It returns an http2.StreamError
// or http2.ConnectionError for what RFC 9113 says to refuse that way, or
// another error that ends the connection.
func (fc *frontConn) process(fl *flushList, f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame, *http2.ContinuationFrame:
		hb, err := fc.hr.read(f)
		if err != nil || hb == nil {
			return err
		}
		return fc.onHeaders(fl, hb)
	case *http2.DataFrame:
		// Connection-level window is spent whatever becomes of the frame.
		if err := fc.consumed(fl, f.Length); err != nil {
			return err
		}
		s, st := fc.stream(f.StreamID)
		if err := checkState(http2.FrameData, f.StreamID, st); err != nil {
			return err
		}
		if f.StreamEnded() {
			s.clientEnded = true
		}
		data := f.Data()
		return s.onRequestData(fl, data, f.StreamEnded(), f.Length-uint32(len(data)))
	case *http2.RSTStreamFrame:
		s, st := fc.stream(f.StreamID)
		if err := checkState(http2.FrameRSTStream, f.StreamID, st); err != nil || s == nil {
			return err
		}
		s.onClientReset(fl)
		return fc.countReset(fl)
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			blocked, err := fc.addSendWindow(f.Increment)
			for _, s := range blocked {
				s.resumeResponse(fl)
			}
			return err
		}
		s, st := fc.stream(f.StreamID)
		if err := checkState(http2.FrameWindowUpdate, f.StreamID, st); err != nil || s == nil {
			return err
		}
		return s.addResponseWindow(fl, int32(f.Increment))
	case *http2.PriorityFrame:
		return checkPriority(f.StreamID, f.PriorityParam)
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		delta, _, _, err := fc.applySettings(fl, f)
		if err != nil || delta == 0 {
			return err
		}
		for _, s := range fc.allCalls() {
			if err := s.addResponseWindow(fl, delta); err != nil {
				// A stream window pushed past 2^31-1 by SETTINGS is a
				// connection error (RFC 9113 §6.9.2).
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			fc.pingAck(fl, f)
		}
	case *http2.GoAwayFrame:
		// The client opens no more streams; its calls carry on.
	case *http2.PushPromiseFrame:
		// Only servers push.
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil
}

func (fc *frontConn) call(id uint32) *fcall {
	fc.mu.Lock()
	s := fc.calls[id]
	fc.mu.Unlock()
	return s
}

func (fc *frontConn) allCalls() []*fcall {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	out := make([]*fcall, 0, len(fc.calls))
	for _, s := range fc.calls {
		out = append(out, s)
	}
	return out
}

func (fc *frontConn) lastID() uint32 {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.maxID
}

// A client that cancels calls faster than a backend could serve them (the
// HTTP/2 "rapid reset" attack) makes the proxy start backend work for
// nothing. resetLimiter is a leaky bucket of the calls a client reset
// before they finished: it holds resetBurst and drains resetRate a second,
// so a client may cancel 1,000 calls at once and 100 a second for ever,
// far more than gRPC clients cancel, while an attacker gets at most that
// many backend calls out of each TLS handshake.
const (
	resetBurst = 1000
	resetRate  = 100 // per second
)

var errTooManyResets = errors.New("client reset too many calls")

type resetLimiter struct {
	level float64 // resets in the bucket
	last  time.Time
}

// allow counts a reset at now and reports whether the bucket still holds
// it.
func (r *resetLimiter) allow(now time.Time) bool {
	if !r.last.IsZero() {
		r.level = max(0, r.level-now.Sub(r.last).Seconds()*resetRate)
	}
	r.last = now
	r.level++
	return r.level <= resetBurst
}

var status431 = []hpack.HeaderField{{Name: ":status", Value: "431"}}

// onHeaders starts a call, or ends a request that sent trailers.
func (fc *frontConn) onHeaders(fl *flushList, hb *headerBlock) error {
	id := hb.streamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	s, st := fc.stream(id)
	switch st {
	case stateOpen:
		// Trailers: they must end the stream and hold no pseudo-header
		// fields (RFC 9113 §8.1). gRPC requests have none to forward; the
		// end of the stream counts.
		s.clientEnded = true
		if !checkTrailers(hb) {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
		}
		return s.onRequestData(fl, nil, true, 0)
	case stateHalfClosedRemote:
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	case stateClosed:
		// Stream IDs that went down, or a stream that ended: x/net's
		// server treats both as PROTOCOL_ERROR, as §5.1.1 says of the
		// first.
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}

	fc.mu.Lock()
	fc.maxID = id
	refuse := fc.goingAway || uint32(len(fc.calls)) >= fc.maxStreams
	fc.mu.Unlock()
	if hb.priority != nil {
		return hb.priority
	}
	if refuse {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	if hb.truncated {
		// Request headers over 32 KiB, refused as net/http's HTTP/2 server
		// does.
		fc.headers(fl, id, status431, true)
		if !hb.endStream {
			fc.rst(fl, id, http2.ErrCodeNo)
		}
		return nil
	}
	req, ok := checkRequest(hb)
	if !ok {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	rt := fc.srv.route()
	if rt.Web != nil && req.method == "OPTIONS" {
		fc.preflight(fl, hb, rt, req.path)
		return nil
	}
	s = &fcall{
		e:           fc.srv.e,
		fc:          fc,
		cid:         id,
		rt:          rt,
		start:       time.Now(),
		code:        codeOK,
		reqEnd:      hb.endStream,
		clientEnded: hb.endStream,
		reqLength:   req.contentLength,
		replay:      true,
		timeout:     -1,
	}
	s.method = req.path
	if i := strings.IndexByte(req.path, '?'); i >= 0 {
		s.method = req.path[:i]
	}
	s.choose(hb, req.method, req.path)
	s.buildRequestHeaders(hb, req.method, req.path)
	fc.wmu.Lock()
	s.respWindow = fc.peerInitialWindow
	fc.wmu.Unlock()

	fc.mu.Lock()
	fc.calls[id] = s
	fc.mu.Unlock()
	s.e.rec.Started()
	s.begin(fl)
	return nil
}

// buildRequestHeaders prepares the header list sent to backends: the
// client's fields without hop-by-hop ones, scheme http, x-forwarded-* set,
// and a slot for grpc-timeout that each attempt fills with the time left.
func (s *fcall) buildRequestHeaders(hb *headerBlock, method, path string) {
	out := make([]hpack.HeaderField, 0, len(hb.fields)+4)
	out = append(out, hpack.HeaderField{Name: ":method", Value: method},
		hpack.HeaderField{Name: ":scheme", Value: "http"},
		hpack.HeaderField{Name: ":path", Value: path})
	if a := hb.pseudo(":authority"); a != "" {
		out = append(out, hpack.HeaderField{Name: ":authority", Value: a})
	}
	var xff []string
	var acceptText, sawTE, sawEncoding bool
	cc := s.rt.ClientCert
	web := s.rt.Web != nil
	for _, hf := range hb.regular() {
		if cc != nil && cc.Has(hf.Name) {
			continue // only the listener says who the client is
		}
		switch hf.Name {
		case "x-forwarded-proto", "x-forwarded-port":
			continue
		case "x-forwarded-for":
			xff = append(xff, hf.Value)
			continue
		case "grpc-timeout":
			if d, ok := parseTimeout(hf.Value); ok {
				s.deadline = s.start.Add(d)
			}
		case "content-type":
			if web {
				s.webContentType(&hf)
			}
		case "accept":
			acceptText = acceptText || web && grpcweb.WantsText(hf.Value)
		case "origin":
			s.origin = hf.Value
		case "te":
			sawTE = true
		case "grpc-accept-encoding":
			sawEncoding = true
		}
		out = append(out, hf)
	}
	if s.web != grpcweb.Native {
		out = s.webRequestFields(out, acceptText, sawTE, sawEncoding)
	}
	if r := s.rule; r != nil && len(r.Insert)+len(r.Remove) > 0 {
		out = changeFields(out, r.Insert, r.Remove)
	}
	if !s.deadline.IsZero() {
		// The slot each attempt fills with the time left, found once the
		// fields have stopped moving.
		s.timeout = slices.IndexFunc(out, func(f hpack.HeaderField) bool { return f.Name == "grpc-timeout" })
	}
	if cc != nil {
		fc := s.fc
		if fc.certFor != cc {
			fc.certFields, fc.certFor = cc.Fields(&fc.tls), cc
		}
		for _, f := range fc.certFields {
			out = append(out, hpack.HeaderField{Name: f.Name, Value: f.Value})
		}
	}
	source := s.fc.source
	if len(xff) > 0 {
		out = append(out, hpack.HeaderField{Name: "x-forwarded-for", Value: strings.Join(xff, ", ") + ", " + source})
	} else {
		out = append(out, hpack.HeaderField{Name: "x-forwarded-for", Value: source})
	}
	out = append(out, hpack.HeaderField{Name: "x-forwarded-proto", Value: "https"})
	if s.rt.ForwardedPort != nil {
		out = append(out, hpack.HeaderField{Name: "x-forwarded-port", Value: s.rt.ForwardedPort[0]})
	}
	s.reqHeaders = out
}

// choose finds the rule the call meets, if any, and the server group it
// goes to, and what that group's picker hashes.
func (s *fcall) choose(hb *headerBlock, method, path string) {
	g := s.rt.Group
	req := route.Request{Path: path, Host: hb.pseudo(":authority"), Method: method, Source: s.fc.sourceIP, Header: hb}
	if s.rt.Rules != nil {
		if s.rule = s.rt.Rules.Match(&req); s.rule != nil && s.rule.Fixed == nil {
			g = s.rule.Group()
		}
	}
	s.group = g
	s.gs = g.State()
	s.pickKey = s.gs.PickKey(&req, s.fc.source)
}

// changeFields removes the fields named in remove and those insert sets,
// then appends insert's: a rule's header changes.
func changeFields(fields []hpack.HeaderField, insert []route.Field, remove []string) []hpack.HeaderField {
	out := fields[:0]
	for _, f := range fields {
		drop := slices.Contains(remove, f.Name)
		for _, in := range insert {
			drop = drop || in.Name == f.Name
		}
		if !drop {
			out = append(out, f)
		}
	}
	for _, in := range insert {
		out = append(out, hpack.HeaderField{Name: in.Name, Value: in.Value})
	}
	return out
}

// removeCall forgets a finished call; a connection that is going away
// closes once its last call is gone.
func (fc *frontConn) removeCall(id uint32) {
	fc.mu.Lock()
	delete(fc.calls, id)
	last := len(fc.calls) == 0
	if last {
		fc.idleSince = time.Now()
	}
	closeNow := last && fc.goingAway && !fc.closing
	if closeNow {
		fc.closing = true
	}
	fc.mu.Unlock()
	if closeNow {
		fc.closeAsync()
	}
}

// closeAsync closes the connection without holding up the caller: Close
// first sends what is pending (such as the last trailers), which may take a
// while with a client that does not read.
func (fc *frontConn) closeAsync() {
	fc.srv.wg.Add(1) // ServeConn still runs, so Wait cannot be waiting yet
	go func() {
		defer fc.srv.wg.Done()
		fc.close()
	}()
}

// goAway tells the client to open no more streams; the connection closes
// when its calls are done.
func (fc *frontConn) goAway() {
	fc.mu.Lock()
	if fc.goingAway || fc.closing {
		fc.mu.Unlock()
		return
	}
	fc.goingAway = true
	last := fc.maxID
	closeNow := len(fc.calls) == 0
	if closeNow {
		fc.closing = true
	}
	fc.srv.wg.Add(1) // not closing: ServeConn still runs, so Wait cannot be waiting yet
	fc.mu.Unlock()
	fc.wmu.Lock()
	_ = fc.fr.WriteGoAway(last, http2.ErrCodeNo, nil)
	fc.wmu.Unlock()
	// The caller (Apply, Shutdown, the idle timer) must not wait for a
	// client that does not read, so the GOAWAY leaves from a goroutine.
	go func() {
		defer fc.srv.wg.Done()
		if closeNow {
			fc.close()
		} else {
			fc.flush()
		}
	}()
}

// checkIdle closes the connection once it has had no calls for the idle
// timeout; otherwise it checks again later.
func (fc *frontConn) checkIdle() {
	fc.mu.Lock()
	if fc.closing {
		fc.mu.Unlock()
		return
	}
	wait := fc.idle
	if len(fc.calls) == 0 {
		if idleFor := time.Since(fc.idleSince); idleFor >= fc.idle {
			fc.mu.Unlock()
			fc.goAway()
			return
		} else {
			wait = fc.idle - idleFor
		}
	}
	fc.idleTimer.Reset(wait)
	fc.mu.Unlock()
}

// awaitResponse queues s, which waits for response headers until at. Calls
// mostly finish in the order they came, so finished calls are dropped from
// the front as new ones arrive; the queue is compacted whenever finished
// calls make up most of it.
func (fc *frontConn) awaitResponse(s *fcall, at time.Time) {
	s.waitUntil = at
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.closing {
		return
	}
	q := fc.waitQueue
	head := 0
	for head < len(q) && !q[head].waiting.Load() {
		head++
	}
	if head > 0 {
		n := copy(q, q[head:])
		clear(q[n:])
		q = q[:n]
	}
	if len(q) > 2*len(fc.calls)+64 {
		q = compactWaits(q, time.Time{}, nil)
	}
	fc.waitQueue = append(q, s)
	if fc.waitAt.IsZero() || at.Before(fc.waitAt) {
		fc.waitAt = at
		d := time.Until(at)
		if fc.waitTimer == nil {
			fc.waitTimer = time.AfterFunc(d, fc.expireWaits)
		} else {
			fc.waitTimer.Reset(d)
		}
	}
}

// compactWaits keeps the calls still waiting; those whose wait ends by now
// (if now is set) go to expired instead.
func compactWaits(q []*fcall, now time.Time, expired *[]*fcall) []*fcall {
	kept := q[:0]
	for _, s := range q {
		switch {
		case !s.waiting.Load():
		case !now.IsZero() && !s.waitUntil.After(now):
			*expired = append(*expired, s)
		default:
			kept = append(kept, s)
		}
	}
	clear(q[len(kept):])
	return kept
}

// expireWaits answers the calls whose request timeout ran out and sets the
// timer for the next expiry.
func (fc *frontConn) expireWaits() {
	var expired []*fcall
	fc.mu.Lock()
	if fc.closing {
		fc.mu.Unlock()
		return
	}
	now := time.Now()
	fc.waitQueue = compactWaits(fc.waitQueue, now, &expired)
	fc.waitAt = time.Time{}
	for _, s := range fc.waitQueue {
		if fc.waitAt.IsZero() || s.waitUntil.Before(fc.waitAt) {
			fc.waitAt = s.waitUntil
		}
	}
	if !fc.waitAt.IsZero() {
		fc.waitTimer.Reset(time.Until(fc.waitAt))
	}
	fc.mu.Unlock()
	for _, s := range expired {
		s.onRequestTimeout()
	}
}
