package sock

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Spill keeps a peer that stops reading from blocking the goroutine that
// writes to it. A write goes straight to the socket; if the socket has not
// taken it within spillAfter, the rest is queued and a goroutine of the
// connection's own writes the queue, while later writes join the queue
// until it is empty again. It sits below TLS, which cannot resume a write
// that timed out.
//
// A writer should stop sending bulk data to a connection whose queue has
// grown (see Queued), so that the queue grows further only by small control
// messages; at spillLimit the peer is cut off.
type Spill struct {
	net.Conn
	spilling atomic.Bool // the queue's goroutine runs
	// stuckTimeout is stuckWriteTimeout; tests shorten it.
	stuckTimeout time.Duration

	// corkMu orders writes, so that what Uncork sends cannot be overtaken.
	corkMu sync.Mutex
	corked bool
	cork   []byte

	mu      sync.Mutex
	queue   []byte
	err     error
	onDrain func() // see SetOnDrain
}

const (
	// spillAfter is how long a write may block its goroutine.
	spillAfter = 5 * time.Millisecond
	// spillLimit bounds the queue; a peer that lets it fill is cut off.
	spillLimit = 4 << 20
	// stuckWriteTimeout cuts off a peer that took nothing for this long.
	stuckWriteTimeout = time.Minute
)

var errPeerNotReading = errors.New("peer stopped reading")

// NewSpill wraps c.
func NewSpill(c net.Conn) *Spill {
	return &Spill{Conn: c, stuckTimeout: stuckWriteTimeout}
}

// Write writes p, or holds it back while the connection is corked.
func (c *Spill) Write(p []byte) (int, error) {
	c.corkMu.Lock()
	defer c.corkMu.Unlock()
	if c.corked {
		c.cork = append(c.cork, p...)
		return len(p), nil
	}
	return c.write(p)
}

// Cork holds writes back until Uncork sends them in one: TLS writes each
// record on its own, so a flush of many records would otherwise cost a
// system call each. Only one goroutine may cork at a time.
func (c *Spill) Cork() {
	c.corkMu.Lock()
	c.corked = true
	c.corkMu.Unlock()
}

// Uncork writes what Cork held back.
func (c *Spill) Uncork() error {
	c.corkMu.Lock()
	defer c.corkMu.Unlock()
	c.corked = false
	if len(c.cork) == 0 {
		return nil
	}
	_, err := c.write(c.cork)
	c.cork = c.cork[:0]
	if cap(c.cork) > 1<<20 {
		c.cork = nil // do not keep a buffer grown by one burst
	}
	return err
}

func (c *Spill) write(p []byte) (int, error) {
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
	if err == nil || !os.IsTimeout(err) {
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
func (c *Spill) writeQueue() {
	var buf []byte
	for {
		c.mu.Lock()
		if c.err != nil || len(c.queue) == 0 {
			c.queue = buf[:0]
			c.spilling.Store(false)
			failed := c.err != nil
			onDrain := c.onDrain
			c.mu.Unlock()
			if !failed && onDrain != nil {
				onDrain()
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

// NetConn returns the connection below.
func (c *Spill) NetConn() net.Conn { return c.Conn }

// SetOnDrain sets f to be called, from the queue's goroutine, each time the
// queue has been written.
func (c *Spill) SetOnDrain(f func()) {
	c.mu.Lock()
	c.onDrain = f
	c.mu.Unlock()
}

// Spilling reports whether writes are queued rather than going straight to
// the socket.
func (c *Spill) Spilling() bool { return c.spilling.Load() }

// Queued returns how many bytes wait in the queue.
func (c *Spill) Queued() int {
	if !c.spilling.Load() {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// SetWriteDeadline is ignored: the connection sets its own, and bounds
// blocked writes itself.
func (c *Spill) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only, as SetWriteDeadline is ignored.
func (c *Spill) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// Drain waits up to d for the queue to be written.
func (c *Spill) Drain(d time.Duration) {
	deadline := time.Now().Add(d)
	for c.spilling.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}
