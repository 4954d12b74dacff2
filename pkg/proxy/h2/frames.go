package h2

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/albctl/albctl/pkg/proxy/sock"
)

// The engine forwards each call as HTTP/2 frames: a reader goroutine
// per connection (client or backend) reads a frame, finds the call it
// belongs to and writes the matching frame on the other connection. DATA
// payloads pass as bytes; header blocks are decoded and encoded again, as
// each hop has its own HPACK state. There is no goroutine per call: a call
// is a struct that the readers act on in turn. Frames are buffered per
// connection and written by the reader that produced them once it has
// read all that was waiting (see h2conn), so the frames of many calls
// leave in one syscall.
//
// Flow control is per hop. Each side gets a stream window of streamWindow;
// bytes a peer sent are returned to its window only once they were passed
// on, so a slow reader on either side holds back its peer and the proxy
// buffers at most one window per call and direction.
//
// Locks are taken in one order only: fcall.mu, then h2conn.wmu, then the
// connection's own lock (frontConn.mu, backConn.mu) or the upstream's pool
// lock.

const (
	// streamWindow is the receive window of every stream, both sides. It
	// bounds what the proxy buffers per call and direction when the other
	// side reads slowly.
	streamWindow = 1 << 20
	// connWindow is the connection-level receive window. Streams are bounded
	// on their own, so the connection window is returned as soon as data
	// arrives and only has to be large enough never to stall a connection.
	connWindow = 16 << 20
	// creditThreshold is how much consumed window is collected before a
	// WINDOW_UPDATE returns it, so that small messages cost no extra frame.
	streamCreditThreshold = streamWindow / 4
	connCreditThreshold   = connWindow / 4
	// backendMaxStreams caps the streams put on one backend connection even
	// if the backend allows more.
	backendMaxStreams = 1000
	// maxRefusals bounds how often one call is sent again after backends
	// refused it (REFUSED_STREAM, or a GOAWAY that excludes it).
	maxRefusals = 3
	// maxReplay bounds how much of a request is kept so that the call can
	// be sent again after a backend refuses it. Unary calls fit; a long
	// upload does not and is simply not retried.
	maxReplay = 64 << 10
	// congestedBytes is how much may wait for a peer that reads slowly
	// before DATA to it stops.
	congestedBytes = 256 << 10
	// closeFlushTimeout bounds how long closing a connection waits to send
	// what is pending (such as a final GOAWAY) to a peer that does not read.
	closeFlushTimeout = time.Second
)

// h2conn is the write side and flow-control state of one HTTP/2 connection.
//
// Frames are appended to out under wmu and reach the socket when a
// goroutine that wrote them flushes: a reader goroutine flushes every
// connection it wrote to before it waits for more input, so the frames of
// everything it read in one go leave in one write per connection, from the
// goroutine that made them, without waking another one.
type h2conn struct {
	nc net.Conn
	fr *http2.Framer // ReadFrame: reader goroutine only; writes: under wmu

	// sc is the socket below nc (and TLS, if any): it keeps writes from
	// blocking on a peer that does not read. resume sends what a call
	// had waiting once a congested connection took its queue.
	sc     *sock.Spill
	resume func(s *fcall, fl *flushList)

	// recvCredit is connection-level window consumed and not yet returned;
	// only the reader goroutine touches it, as it does hr.
	recvCredit uint32
	hr         *headerReader

	keepalive keepalive

	// flushMu orders socket writes; spare is the buffer out is swapped
	// with, only touched under flushMu.
	flushMu sync.Mutex
	spare   []byte

	wmu               sync.Mutex
	out               []byte
	werr              error // sticky: the first failed socket write
	henc              *hpack.Encoder
	hbuf              bytes.Buffer
	sendWindow        int64 // connection-level window the peer granted
	peerInitialWindow int32
	peerMaxFrame      uint32
	// blocked are calls with data waiting for connection-level window, or
	// for a congested connection to drain.
	blocked []*fcall
}

func (c *h2conn) init(nc net.Conn, sc *sock.Spill, r io.Reader, hr *headerReader, resume func(*fcall, *flushList)) {
	c.hr = hr
	c.nc = nc
	c.sc = sc
	c.resume = resume
	sc.SetOnDrain(c.onDrain)
	fr := http2.NewFramer(c, r)
	c.fr = fr
	c.out = make([]byte, 0, 16<<10)
	fr.SetReuseFrames()
	// We announce no SETTINGS_MAX_FRAME_SIZE, so the default applies.
	fr.SetMaxReadFrameSize(16384)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.sendWindow = 65535
	c.peerInitialWindow = 65535
	c.peerMaxFrame = 16384
}

// flushThreshold is how much may be buffered for a connection before the
// writer flushes it at once instead of at the end of its batch.
const flushThreshold = 64 << 10

// Write appends a frame to the output buffer; the Framer calls it under wmu.
func (c *h2conn) Write(p []byte) (int, error) {
	if c.werr != nil {
		return 0, c.werr
	}
	c.out = append(c.out, p...)
	return len(p), nil
}

// unlock releases wmu after frames were written and records that the
// connection needs a flush. With no flush list it flushes at once; callers
// without one hold no call's lock.
func (c *h2conn) unlock(fl *flushList) {
	big := len(c.out) >= flushThreshold
	c.wmu.Unlock()
	if fl == nil {
		c.flush()
		return
	}
	fl.add(c)
	if big {
		fl.big = true
	}
}

// flush writes what is buffered to the socket. A peer that does not take
// it at once holds up the flushing goroutine for spillAfter at most (see
// spillConn); back-pressure comes from the DATA that congestedLocked holds
// back, not from blocked readers.
func (c *h2conn) flush() {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	for {
		c.wmu.Lock()
		buf := c.out
		if len(buf) == 0 || c.werr != nil {
			c.wmu.Unlock()
			return
		}
		c.out = c.spare[:0]
		c.wmu.Unlock()
		err := c.write(buf)
		if cap(buf) > 4*flushThreshold {
			buf = nil // do not keep a buffer grown by one burst
		}
		c.spare = buf[:0]
		if err != nil {
			c.wmu.Lock()
			c.werr = err
			c.out = nil
			c.wmu.Unlock()
			return
		}
	}
}

// write sends buf on the connection. Through TLS, whose records would
// each be a system call, the records leave in one.
func (c *h2conn) write(buf []byte) error {
	if c.nc == net.Conn(c.sc) {
		_, err := c.nc.Write(buf)
		return err
	}
	c.sc.Cork()
	_, err := c.nc.Write(buf)
	if uerr := c.sc.Uncork(); err == nil {
		err = uerr
	}
	return err
}

// close flushes, for at most closeFlushTimeout, and closes the connection.
func (c *h2conn) close() {
	c.flush()
	c.sc.Drain(closeFlushTimeout)
	c.nc.Close()
}

// congestedLocked reports whether the peer has so much waiting that no more
// DATA should go to it. wmu must be held.
func (c *h2conn) congestedLocked() bool {
	return c.sc.Spilling() && len(c.out)+c.sc.Queued() >= congestedBytes
}

// onDrain resumes the calls that waited for a congested connection; the
// spillConn calls it from its own goroutine once its queue is written.
func (c *h2conn) onDrain() {
	c.wmu.Lock()
	blocked := c.blocked
	c.blocked = nil
	c.wmu.Unlock()
	var fl flushList
	for _, s := range blocked {
		c.resume(s, &fl)
	}
	fl.flush()
}

// flushList is what one goroutine wrote to and has to flush before it
// blocks.
type flushList struct {
	conns []*h2conn
	// big is set when a connection has flushThreshold bytes waiting: the
	// reader flushes before its next frame rather than at the end of its
	// batch, never while it holds a call's lock.
	big bool
}

func (fl *flushList) add(c *h2conn) {
	for _, x := range fl.conns {
		if x == c {
			return
		}
	}
	fl.conns = append(fl.conns, c)
}

func (fl *flushList) flush() {
	for i, c := range fl.conns {
		c.flush()
		fl.conns[i] = nil
	}
	fl.conns = fl.conns[:0]
	fl.big = false
}

// flushBeforeWait makes the reader flush what it wrote, and stamp the
// keepalive, whenever it is about to wait for the peer: then the frames of
// everything that was waiting in the socket leave together. Where the
// socket cannot say so (it is not a connection from sock.Raw), the reader
// flushes when br holds no whole frame. The reader calls the function
// returned before each frame.
func (c *h2conn) flushBeforeWait(br *bufio.Reader, fl *flushList) func() {
	if sock.BeforeWait(c.nc, func() { fl.flush(); c.noteRead() }) {
		return func() {
			if fl.big {
				fl.flush()
			}
		}
	}
	return func() {
		if fl.big || !frameBuffered(br) {
			fl.flush()
			c.noteRead()
		}
	}
}

// frameBuffered reports whether br holds a whole frame, so that reading it
// cannot block.
func frameBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n < 9 {
		return false
	}
	h, _ := br.Peek(9)
	return n >= 9+(int(h[0])<<16|int(h[1])<<8|int(h[2]))
}

// writeHeaders encodes fields with this connection's HPACK encoder and
// writes them as HEADERS plus CONTINUATION frames. wmu must be held: the
// encoder's state must follow the order of the frames on the wire.
func (c *h2conn) writeHeaders(id uint32, fields []hpack.HeaderField, endStream bool) {
	c.hbuf.Reset()
	for _, f := range fields {
		_ = c.henc.WriteField(f)
	}
	block := c.hbuf.Bytes()
	max := int(c.peerMaxFrame)
	first := true
	for first || len(block) > 0 {
		chunk := block
		if len(chunk) > max {
			chunk = chunk[:max]
		}
		block = block[len(chunk):]
		if first {
			_ = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: chunk, EndStream: endStream, EndHeaders: len(block) == 0})
			first = false
		} else {
			_ = c.fr.WriteContinuation(id, len(block) == 0, chunk)
		}
	}
}

func (c *h2conn) headers(fl *flushList, id uint32, fields []hpack.HeaderField, endStream bool) {
	c.wmu.Lock()
	c.writeHeaders(id, fields, endStream)
	c.unlock(fl)
}

func (c *h2conn) rst(fl *flushList, id uint32, code http2.ErrCode) {
	c.wmu.Lock()
	_ = c.fr.WriteRSTStream(id, code)
	c.unlock(fl)
}

func (c *h2conn) windowUpdate(fl *flushList, id, n uint32) {
	c.wmu.Lock()
	_ = c.fr.WriteWindowUpdate(id, n)
	c.unlock(fl)
}

// consumed counts a received DATA frame against the connection window and
// returns the window in batches. Reader goroutine only. A peer that sent
// more than the window allows has broken flow control.
func (c *h2conn) consumed(fl *flushList, n uint32) error {
	if n == 0 {
		return nil
	}
	if c.recvCredit+n > connWindow {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvCredit += n
	if c.recvCredit >= connCreditThreshold {
		c.windowUpdate(fl, 0, c.recvCredit)
		c.recvCredit = 0
	}
	return nil
}

// writeData sends as much of p as the stream window *win, the connection
// window and the peer's frame size allow, under wmu. If the connection
// window is what stops it, s is queued to be resumed by the next
// connection-level WINDOW_UPDATE. endStream is set on the frame that
// carries the last byte of p (or on an empty frame if p is empty). It
// returns the bytes sent and whether END_STREAM went out.
func (c *h2conn) writeData(fl *flushList, s *fcall, id uint32, win *int32, p []byte, endStream bool, queued *bool) (int, bool) {
	c.wmu.Lock()
	defer c.unlock(fl)
	sent := 0
	for {
		rest := p[sent:]
		if len(rest) == 0 {
			if endStream {
				_ = c.fr.WriteData(id, true, nil)
				return sent, true
			}
			return sent, false
		}
		if c.congestedLocked() {
			if !*queued {
				*queued = true
				c.blocked = append(c.blocked, s)
			}
			return sent, false
		}
		n := min(len(rest), int(c.peerMaxFrame))
		if w := int(*win); n > w {
			n = w
		}
		if w := c.sendWindow; int64(n) > w {
			n = int(w)
		}
		if n <= 0 {
			if c.sendWindow <= 0 && *win > 0 && !*queued {
				*queued = true
				c.blocked = append(c.blocked, s)
			}
			return sent, false
		}
		end := endStream && n == len(rest)
		_ = c.fr.WriteData(id, end, rest[:n])
		*win -= int32(n)
		c.sendWindow -= int64(n)
		sent += n
		if end {
			return sent, true
		}
	}
}

// maxWindow is the largest flow-control window (RFC 9113 §6.9.1).
const maxWindow = 1<<31 - 1

// addSendWindow applies a connection-level WINDOW_UPDATE and returns the
// calls that were waiting for it; a window pushed past maxWindow is a
// connection error.
func (c *h2conn) addSendWindow(n uint32) ([]*fcall, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.sendWindow+int64(n) > maxWindow {
		return nil, http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.sendWindow += int64(n)
	blocked := c.blocked
	c.blocked = nil
	return blocked, nil
}

// addStreamWindow adds n (negative after SETTINGS lowered the initial
// window) to a stream's send window, refusing to push it past maxWindow.
func addStreamWindow(win *int32, n int32) bool {
	if int64(*win)+int64(n) > maxWindow {
		return false
	}
	*win += n
	return true
}

// applySettings takes the peer's SETTINGS and acknowledges them. It returns
// the change of the initial stream window, which the caller applies to its
// streams, and the peer's MAX_CONCURRENT_STREAMS if it was set. A value out
// of range is a connection error, and nothing of the frame is applied.
func (c *h2conn) applySettings(fl *flushList, f *http2.SettingsFrame) (delta int32, maxStreams uint32, hasMax bool, err error) {
	if err := f.ForeachSetting(func(s http2.Setting) error { return s.Valid() }); err != nil {
		return 0, 0, false, err
	}
	c.wmu.Lock()
	defer c.unlock(fl)
	_ = f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta += int32(s.Val) - c.peerInitialWindow
			c.peerInitialWindow = int32(s.Val)
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = s.Val
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingMaxConcurrentStreams:
			maxStreams, hasMax = s.Val, true
		}
		return nil
	})
	_ = c.fr.WriteSettingsAck()
	return delta, maxStreams, hasMax, nil
}

func (c *h2conn) pingAck(fl *flushList, f *http2.PingFrame) {
	c.wmu.Lock()
	_ = c.fr.WritePing(true, f.Data)
	c.unlock(fl)
}

// bufPool recycles the per-call buffers that hold bytes waiting for a peer's
// window (and a request's bytes kept for a retry). It holds *[]byte, so
// that putting one back allocates nothing; a call keeps that pointer beside
// its buffer.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4<<10)
	return &b
}}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

// putBuf returns b, which may have grown since getBuf returned box.
func putBuf(box *[]byte, b []byte) {
	if box == nil || cap(b) > 2*maxReplay {
		return
	}
	*box = b[:0]
	bufPool.Put(box)
}
