package h2

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/albctl/albctl/pkg/proxy/route"
	"github.com/albctl/albctl/pkg/proxy/sock"
)

// backConn is an h2c connection to a backend. Its reader goroutine forwards
// the backend's frames to the calls' clients.
type backConn struct {
	h2conn
	pool *pool

	// nextID is the next stream ID; under wmu, so IDs reach the wire in
	// order.
	nextID uint32

	mu    sync.Mutex
	calls map[uint32]*fcall

	// Under pool.mu.
	active     int    // calls holding a stream slot
	maxStreams uint32 // the backend's MAX_CONCURRENT_STREAMS, capped
	opened     uint32 // streams ever opened, to retire the connection before IDs run out
	goaway     bool   // no new streams
	closed     bool

	idleSince time.Time   // under pool.mu: when active last fell to 0
	idleTimer *time.Timer // closes the connection after backendIdleTimeout unused

	ready       chan struct{} // closed at the backend's first SETTINGS
	readerDone  chan struct{}
	sawSettings bool // reader goroutine only
}

// hasCalls reports whether calls are on the connection.
func (bc *backConn) hasCalls() bool {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	return len(bc.calls) > 0
}

// backendIdleTimeout closes a backend connection that carried no call for
// this long, as x/net's HTTP/2 transport does.
const backendIdleTimeout = 5 * time.Minute

// pool is a server's set of backend connections.
type pool struct {
	e *Engine
	u *route.Upstream

	mu      sync.Mutex
	conns   []*backConn
	dialing *dialCall

	readers sync.WaitGroup // the connections' reader goroutines
}

// poolOf returns u's pool of backend connections.
func (e *Engine) poolOf(u *route.Upstream) *pool {
	return u.Pool(route.PoolH2, func(u *route.Upstream) route.Pool { return &pool{e: e, u: u} }).(*pool)
}

// Close waits for the reader goroutines; the upstream has closed their
// connections.
func (bp *pool) Close() { bp.readers.Wait() }

// dialCall is a dial in progress that other calls wait for.
type dialCall struct {
	done chan struct{}
	err  error
}

// tryAcquire takes a stream slot on a ready connection, or returns nil if
// that needs a new connection.
func (bp *pool) tryAcquire() *backConn {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	return bp.takeSlot()
}

func (bp *pool) takeSlot() *backConn {
	for _, bc := range bp.conns {
		if !bc.goaway && !bc.closed && bc.active < int(bc.maxStreams) && bc.opened < 1<<29 {
			bc.active++
			bc.opened++
			return bc
		}
	}
	return nil
}

// acquire takes a stream slot, dialing a new connection when every one is
// full. Calls that arrive while a dial runs wait for it and share its
// result.
func (bp *pool) acquire() (*backConn, error) {
	for {
		bp.mu.Lock()
		if bc := bp.takeSlot(); bc != nil {
			bp.mu.Unlock()
			return bc, nil
		}
		if dc := bp.dialing; dc != nil {
			bp.mu.Unlock()
			<-dc.done
			if dc.err != nil {
				return nil, dc.err
			}
			continue
		}
		dc := &dialCall{done: make(chan struct{})}
		bp.dialing = dc
		bp.mu.Unlock()

		bc, err := bp.dial()
		bp.mu.Lock()
		bp.dialing = nil
		dc.err = err
		var got *backConn
		if err == nil {
			bp.conns = append(bp.conns, bc)
			got = bp.takeSlot()
		}
		bp.mu.Unlock()
		close(dc.done)
		if err != nil {
			return nil, err
		}
		if got != nil {
			return got, nil
		}
	}
}

// release returns a call's stream slot. A connection that the backend is
// retiring closes once its last call is done.
func (bc *backConn) release() {
	bp := bc.pool
	bp.mu.Lock()
	bc.active--
	if bc.active == 0 {
		bc.idleSince = time.Now()
	}
	closeNow := bc.goaway && bc.active == 0 && !bc.closed
	bp.mu.Unlock()
	if closeNow {
		bc.nc.Close()
	}
}

// dial connects to the server and waits for its SETTINGS, so the first
// calls already respect its MAX_CONCURRENT_STREAMS.
func (bp *pool) dial() (*backConn, error) {
	u := bp.u
	ctx, cancel := context.WithTimeout(context.Background(), bp.e.opts.DialTimeout)
	defer cancel()
	nc, err := u.Dial(ctx)
	if err != nil {
		return nil, err
	}
	bc := &backConn{
		pool:       bp,
		nextID:     1,
		calls:      map[uint32]*fcall{},
		maxStreams: 100, // until the backend's SETTINGS say otherwise
		ready:      make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	sc := sock.NewSpill(nc)
	br := bufio.NewReaderSize(sc, 64<<10)
	bc.init(sc, sc, br, newHeaderReader(1<<20, responsePseudo), (*fcall).resumeRequest)
	bc.wmu.Lock()
	bc.out = append(bc.out, http2.ClientPreface...)
	_ = bc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
	)
	_ = bc.fr.WriteWindowUpdate(0, connWindow-65535)
	bc.unlock(nil)

	if !u.WhileOpen(func() { bp.readers.Add(1) }) {
		nc.Close()
		return nil, &route.ConnectError{Addr: u.Addr, Err: route.ErrRemoved}
	}
	bc.idleSince = time.Now()
	bc.idleTimer = time.AfterFunc(backendIdleTimeout, bc.checkIdle)
	bc.startKeepalive(backendReadIdle, backendPingTimeout, bc.hasCalls)
	go bc.readLoop(br)

	select {
	case <-bc.ready:
		return bc, nil
	case <-bc.readerDone:
		return nil, &route.ConnectError{Addr: u.Addr, Err: errors.New("connection closed before HTTP/2 settings")}
	case <-ctx.Done():
		nc.Close()
		return nil, &route.ConnectError{Addr: u.Addr, Err: ctx.Err()}
	}
}

func (bc *backConn) call(id uint32) *fcall {
	bc.mu.Lock()
	s := bc.calls[id]
	bc.mu.Unlock()
	return s
}

func (bc *backConn) removeCall(id uint32) {
	bc.mu.Lock()
	delete(bc.calls, id)
	bc.mu.Unlock()
}

func (bc *backConn) readLoop(br *bufio.Reader) {
	bp := bc.pool
	defer bp.readers.Done()
	defer close(bc.readerDone)
	var err error
	fl := &flushList{}
	defer fl.flush()
	waiting := bc.flushBeforeWait(br, fl)
	for {
		waiting()
		var f http2.Frame
		f, err = bc.fr.ReadFrame()
		if err == nil {
			err = bc.process(fl, f)
		}
		if err == nil {
			continue
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			if s := bc.call(se.StreamID); s != nil {
				s.onBackendReset(fl, http2.ErrCodeInternal)
			}
			bc.rst(fl, se.StreamID, se.Code)
			continue
		}
		if code, ok := connErrorCode(err); ok {
			bc.wmu.Lock()
			_ = bc.fr.WriteGoAway(0, code, nil)
			bc.unlock(fl)
		}
		break
	}

	// The connection is gone: calls still on it fail.
	bc.idleTimer.Stop()
	if dead := bc.stopKeepalive(); dead != nil {
		err = dead
	}
	bc.nc.Close()
	bp.mu.Lock()
	bc.closed = true
	for i, c := range bp.conns {
		if c == bc {
			bp.conns = append(bp.conns[:i], bp.conns[i+1:]...)
			break
		}
	}
	bp.mu.Unlock()
	if errors.Is(err, net.ErrClosed) {
		err = io.EOF
	}
	for _, s := range bc.allCalls() {
		s.onBackendLost(fl, bc, err)
	}
}

// stream returns the call on stream id, if any, and the stream's state.
// The proxy opens odd streams and the backend none (push is off), so a
// stream the proxy has not opened yet, or an even one, is idle.
func (bc *backConn) stream(id uint32) (*fcall, streamState) {
	if s := bc.call(id); s != nil {
		return s, stateOpen
	}
	bc.wmu.Lock()
	next := bc.nextID
	bc.wmu.Unlock()
	if id%2 == 1 && id < next {
		return nil, stateClosed
	}
	return nil, stateIdle
}

// process acts on one frame from the backend; its errors are as for
// frontConn.process.
func (bc *backConn) process(fl *flushList, f http2.Frame) error {
	bp := bc.pool
	switch f := f.(type) {
	case *http2.HeadersFrame, *http2.ContinuationFrame:
		hb, err := bc.hr.read(f)
		if err != nil || hb == nil {
			return err
		}
		return bc.onHeaders(fl, hb)
	case *http2.DataFrame:
		if err := bc.consumed(fl, f.Length); err != nil {
			return err
		}
		s, st := bc.stream(f.StreamID)
		if err := checkState(http2.FrameData, f.StreamID, st); err != nil || s == nil {
			return err
		}
		data := f.Data()
		return s.onResponseData(fl, bc, data, f.StreamEnded(), f.Length-uint32(len(data)))
	case *http2.RSTStreamFrame:
		s, st := bc.stream(f.StreamID)
		if err := checkState(http2.FrameRSTStream, f.StreamID, st); err != nil || s == nil {
			return err
		}
		s.onBackendReset(fl, f.ErrCode)
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			blocked, err := bc.addSendWindow(f.Increment)
			for _, s := range blocked {
				s.resumeRequest(fl)
			}
			return err
		}
		s, st := bc.stream(f.StreamID)
		if err := checkState(http2.FrameWindowUpdate, f.StreamID, st); err != nil || s == nil {
			return err
		}
		return s.addRequestWindow(fl, bc, int32(f.Increment))
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		delta, maxStreams, hasMax, err := bc.applySettings(fl, f)
		if err != nil {
			return err
		}
		first := !bc.sawSettings
		bc.sawSettings = true
		bp.mu.Lock()
		if hasMax {
			bc.maxStreams = min(maxStreams, backendMaxStreams)
		} else if first {
			bc.maxStreams = backendMaxStreams
		}
		bp.mu.Unlock()
		if delta != 0 {
			for _, s := range bc.allCalls() {
				if err := s.addRequestWindow(fl, bc, delta); err != nil {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		}
		if first {
			close(bc.ready)
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			bc.pingAck(fl, f)
		}
	case *http2.GoAwayFrame:
		bc.onGoAway(fl, f.LastStreamID)
	case *http2.PushPromiseFrame:
		// Push is off in our SETTINGS.
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil
}

// onHeaders forwards a response's header block to its call.
func (bc *backConn) onHeaders(fl *flushList, hb *headerBlock) error {
	s, st := bc.stream(hb.streamID)
	switch {
	case st == stateIdle:
		// A server cannot open streams.
		return http2.ConnectionError(http2.ErrCodeProtocol)
	case s == nil:
		return nil // a stream the proxy reset: its block was decoded for the HPACK state
	}
	return s.onResponseHeaders(fl, bc, hb)
}

func (bc *backConn) allCalls() []*fcall {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	out := make([]*fcall, 0, len(bc.calls))
	for _, s := range bc.calls {
		out = append(out, s)
	}
	return out
}

// onGoAway retires the connection: no new streams, and the streams the
// backend says it did not process go elsewhere.
func (bc *backConn) onGoAway(fl *flushList, lastID uint32) {
	bp := bc.pool
	bp.mu.Lock()
	bc.goaway = true
	closeNow := bc.active == 0 && !bc.closed
	bp.mu.Unlock()
	for _, s := range bc.allCalls() {
		if s.backendID(bc) > lastID {
			s.onRefused(fl, bc)
		}
	}
	if closeNow {
		bc.nc.Close()
	}
}

// checkIdle retires the connection if it has been unused for
// backendIdleTimeout, and otherwise looks again when it could be.
func (bc *backConn) checkIdle() {
	bp := bc.pool
	bp.mu.Lock()
	if bc.closed {
		bp.mu.Unlock()
		return
	}
	idleFor := time.Since(bc.idleSince)
	if bc.active == 0 && idleFor >= backendIdleTimeout {
		bc.goaway = true // no new calls; the reader removes it from the pool
		bp.mu.Unlock()
		bc.nc.Close()
		return
	}
	wait := backendIdleTimeout
	if bc.active == 0 {
		wait -= idleFor
	}
	bc.idleTimer.Reset(wait)
	bp.mu.Unlock()
}
