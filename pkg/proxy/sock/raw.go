package sock

import (
	"io"
	"net"
	"sync"
	"syscall"
	"unsafe"
)

// rawConn reads and writes a TCP connection with raw system calls.
//
// The socket is non-blocking, so a read or write returns at once; waiting
// for it to become ready still goes through the runtime's poller (RawConn),
// deadlines included. What the raw calls skip is the scheduler's bookkeeping
// around an ordinary system call, which on a proxy with one call in flight
// costs more than the I/O itself: each call wakes the runtime's monitor
// thread from its idle sleep and may hand the processor to another thread,
// two or three extra context switches per proxied call.
type rawConn struct {
	*net.TCPConn
	rc         syscall.RawConn
	beforeWait func() // see BeforeWait

	// The functions the poller calls and what they work on, made once:
	// closures made per call would each cost an allocation. Reads come
	// from one goroutine at a time; wmu orders writes.
	readFn, writeFn func(fd uintptr) bool
	rbuf            []byte
	rn              int
	rerrno          syscall.Errno
	wmu             sync.Mutex
	wbuf            []byte
	wn              int
	werrno          syscall.Errno
}

// Raw wraps c when it is a TCP connection and returns it unchanged
// otherwise.
func Raw(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &rawConn{TCPConn: tc, rc: rc}
	rw.readFn, rw.writeFn = rw.readFD, rw.writeFD
	return rw
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf = p
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errno}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) readFD(fd uintptr) bool {
	p := c.rbuf
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e == syscall.EAGAIN && c.beforeWait != nil {
			// Nothing to read: the reader finishes its work (such as
			// writing what it forwarded) before it waits. What arrives
			// meanwhile wakes the wait at once.
			c.beforeWait()
		}
		c.rn, c.rerrno = int(r), e
		return e != syscall.EAGAIN
	}
}

func (c *rawConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werrno
	c.wbuf = nil
	if err == nil && errno != 0 {
		err = &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errno}
	}
	return n, err
}

func (c *rawConn) writeFD(fd uintptr) bool {
	p := c.wbuf
	for c.wn < len(p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[c.wn])), uintptr(len(p)-c.wn))
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// BeforeWait arranges for f to be called each time a read from c finds
// nothing to read and is about to wait for the peer, if c is a connection
// from Raw or wraps one (through NetConn methods, as tls.Conn and Spill
// do). It reports whether it could; it must be called before the reads it
// applies to start. f runs on the reading goroutine.
func BeforeWait(c net.Conn, f func()) bool {
	for {
		switch cc := c.(type) {
		case *rawConn:
			cc.beforeWait = f
			return true
		case interface{ NetConn() net.Conn }:
			c = cc.NetConn()
		default:
			return false
		}
	}
}
