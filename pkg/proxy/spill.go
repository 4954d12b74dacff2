package proxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// spillConn keeps a peer that stops reading from blocking the goroutine that
// writes to it. A write goes straight to the socket; if the socket has not
// taken it within spillAfter, the rest is queued and a goroutine of the
// connection's own writes the queue, while later writes join the queue
// until it is empty again. It sits below TLS, which cannot resume a write
// that timed out.
//
// The frames engine stops forwarding DATA to a connection whose queue holds
// congestedBytes (see h2conn.congestedLocked), so the queue grows past that
// only by control frames and headers; at spillLimit the peer is cut off.
type spillConn struct {
	net.Conn
	spilling atomic.Bool // the queue's goroutine runs
	// stuckTimeout is stuckWriteTimeout; tests shorten it.
	stuckTimeout time.Duration

	mu      sync.Mutex
	queue   []byte
	err     error
	onDrain func() // called when the queue emptied, without mu
}

const (
	// spillAfter is how long a write may block its goroutine.
	spillAfter = 5 * time.Millisecond
	// spillLimit bounds the queue; a peer that lets it fill is cut off.
	spillLimit = 4 << 20
	// congestedBytes is how much may wait for a peer before DATA to it
	// stops.
	congestedBytes = 256 << 10
	// stuckWriteTimeout cuts off a peer that took nothing for this long.
	stuckWriteTimeout = time.Minute
)

var errPeerNotReading = errors.New("peer stopped reading")

func newSpillConn(c net.Conn) *spillConn {
	return &spillConn{Conn: c, stuckTimeout: stuckWriteTimeout}
}

func (c *spillConn) Write(p []byte) (int, error) {
	if c.spilling.Load() {
		c.mu.Lock()
		if c.spilling.Load() {
			defer c.mu.Unlock()
			if c.err != nil {
				return 0, c.err
			}
			if len(c.queue)+len(p) > spillLimit {
				c.err = errPeerNotReading
				c.Conn.Close()
				return 0, c.err
			}
			c.queue = append(c.queue, p...)
			return len(p), nil
		}
		c.mu.Unlock()
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(spillAfter))
	n, err := c.Conn.Write(p)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		return n, err
	}
	c.mu.Lock()
	c.queue = append(c.queue[:0], p[n:]...)
	c.spilling.Store(true)
	c.mu.Unlock()
	go c.writeQueue()
	return len(p), nil
}

// writeQueue writes the queue until it is empty or the peer is cut off.
func (c *spillConn) writeQueue() {
	var buf []byte
	for {
		c.mu.Lock()
		if c.err != nil || len(c.queue) == 0 {
			c.queue = buf[:0]
			c.spilling.Store(false)
			failed := c.err != nil
			c.mu.Unlock()
			if !failed && c.onDrain != nil {
				c.onDrain()
			}
			return
		}
		buf, c.queue = c.queue, buf[:0]
		c.mu.Unlock()
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.stuckTimeout))
		if _, err := c.Conn.Write(buf); err != nil {
			c.mu.Lock()
			if c.err == nil {
				c.err = err
			}
			c.mu.Unlock()
			c.Conn.Close()
		}
	}
}

// queued returns how many bytes wait in the queue.
func (c *spillConn) queued() int {
	if !c.spilling.Load() {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// SetWriteDeadline is ignored: the connection sets its own, and bounds
// blocked writes itself.
func (c *spillConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only, as SetWriteDeadline is ignored.
func (c *spillConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// drain waits up to d for the queue to be written.
func (c *spillConn) drain(d time.Duration) {
	deadline := time.Now().Add(d)
	for c.spilling.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}
