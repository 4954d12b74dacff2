package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// maxPendingWrite bounds the bytes a batchConn holds for its writer: past
// it, Write blocks until the socket takes them, which keeps back-pressure
// from a slow peer intact.
const maxPendingWrite = 256 << 10

// closeFlushTimeout bounds how long Close waits to send what is pending
// (such as a final GOAWAY) to a peer that does not read.
const closeFlushTimeout = time.Second

var errConnClosed = errors.New("proxy: connection closed")

// batchConn gathers the writes of every goroutine that shares a connection
// into as few syscalls (and TLS records) as possible.
//
// The HTTP/2 server and transport flush after almost every frame: the
// response headers, each DATA frame, the trailers, the request's END_STREAM.
// A call would cost three to five write syscalls per side. Here Write only
// appends to a buffer and wakes a writer goroutine; by the time that
// goroutine runs (the scheduler runs it once the current goroutine blocks,
// typically waiting for the response), the frames of this call and of
// other calls in flight are waiting together and leave in one write.
type batchConn struct {
	net.Conn

	mu      sync.Mutex
	full    sync.Cond // signalled when pending shrinks or err is set
	pending []byte
	spare   []byte
	err     error // sticky: the first write error, or errConnClosed
	wake    chan struct{}
	done    chan struct{} // closed when the writer has exited
	closing bool
}

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{
		Conn:    c,
		pending: make([]byte, 0, 16<<10),
		spare:   make([]byte, 0, 16<<10),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	b.full.L = &b.mu
	go b.writeLoop()
	return b
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	for b.err == nil && len(b.pending) >= maxPendingWrite {
		b.full.Wait()
	}
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	idle := len(b.pending) == 0
	b.pending = append(b.pending, p...)
	b.mu.Unlock()
	if idle {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (b *batchConn) writeLoop() {
	defer close(b.done)
	for range b.wake {
		b.mu.Lock()
		buf := b.pending
		b.pending = b.spare[:0]
		closing := b.closing
		b.mu.Unlock()

		var err error
		if len(buf) > 0 {
			_, err = b.Conn.Write(buf)
		}
		if cap(buf) > 4*maxPendingWrite {
			buf = nil // do not keep a buffer grown by one burst
		}

		b.mu.Lock()
		b.spare = buf[:0]
		if err != nil && b.err == nil {
			b.err = err
		}
		more := len(b.pending) > 0
		if closing && !more && b.err == nil {
			b.err = errConnClosed
		}
		stop := b.err != nil
		b.full.Broadcast()
		b.mu.Unlock()
		if stop {
			return
		}
		if more {
			select {
			case b.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Close sends what is pending, for at most closeFlushTimeout, then closes
// the connection.
func (b *batchConn) Close() error {
	b.mu.Lock()
	first := !b.closing
	b.closing = true
	b.mu.Unlock()
	if first {
		_ = b.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		select {
		case b.wake <- struct{}{}:
		default:
		}
		<-b.done
	}
	return b.Conn.Close()
}

// ConnectionState lets the HTTP/2 server see the TLS state (it checks the
// version and cipher suite, and fills in Request.TLS) through the wrapper.
func (b *batchConn) ConnectionState() tls.ConnectionState {
	if tc, ok := b.Conn.(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}
