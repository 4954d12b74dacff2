package web

import (
	"errors"
	"io"
	"sync"
)

// maxReplay bounds how much of a request body is kept so that a call can be
// sent again after a backend refuses it (a stream above a GOAWAY's last
// stream ID, or REFUSED_STREAM). Unary calls fit; a long upload does not and
// is simply not retried.
const maxReplay = 64 << 10

var (
	errBodyReplaced   = errors.New("proxy: request body handed to a retry")
	errBodyLost       = errors.New("proxy: request body too large to replay")
	errNotReplayable  = errors.New("proxy: request body can no longer be replayed")
	errBodyReaderDone = errors.New("proxy: request body reader closed")
)

// replayBody wraps the client's request body. The HTTP/2 transport reads it
// through a replayReader; when the transport retries a request it asks for a
// new reader (http.Request.GetBody), which first replays the recorded bytes
// and then continues with the client's stream. The transport may still be
// reading through the previous reader when it retries, so reads of the
// client's body are serialised and any bytes a stale reader receives are
// recorded for the current one.
type replayBody struct {
	src io.ReadCloser

	mu         sync.Mutex
	cond       sync.Cond
	rec        []byte
	replayable bool
	reading    bool
	err        error
	gen        int
	total      int64
}

func newReplayBody(src io.ReadCloser) *replayBody {
	b := &replayBody{src: src, replayable: true}
	b.cond.L = &b.mu
	return b
}

// reader returns the next generation's reader. It fails once the body can
// no longer be replayed.
func (b *replayBody) reader() (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.replayable {
		return nil, errNotReplayable
	}
	b.gen++
	b.cond.Broadcast()
	return &replayReader{body: b, gen: b.gen}, nil
}

type replayReader struct {
	body   *replayBody
	gen    int
	off    int
	closed bool
}

func (r *replayReader) Read(p []byte) (int, error) {
	b := r.body
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if r.closed {
			return 0, errBodyReaderDone
		}
		if r.gen != b.gen {
			return 0, errBodyReplaced
		}
		if r.off < len(b.rec) {
			n := copy(p, b.rec[r.off:])
			r.off += n
			return n, nil
		}
		if !b.replayable {
			b.rec = nil // the current reader caught up; nothing left to replay
			r.off = 0
		}
		if b.err != nil {
			return 0, b.err
		}
		if !b.reading {
			break
		}
		b.cond.Wait()
	}

	b.reading = true
	b.mu.Unlock()
	n, err := b.src.Read(p)
	b.mu.Lock()
	b.reading = false
	b.cond.Broadcast()
	b.total += int64(n)
	if err != nil {
		b.err = err
	}
	if b.replayable {
		if len(b.rec)+n <= maxReplay {
			b.rec = append(b.rec, p[:n]...)
		} else {
			b.replayable = false
		}
	}
	if r.gen != b.gen || r.closed {
		// A retry took over while this read was blocked. The bytes are in
		// rec for the new reader, unless recording had to stop.
		if !b.replayable && n > 0 {
			b.err = errBodyLost
		}
		return 0, errBodyReplaced
	}
	if b.replayable {
		r.off = len(b.rec)
	}
	return n, err
}

// Close ends this reader only. The client's body stays open for a retry; the
// HTTP/2 server closes it when the handler returns.
func (r *replayReader) Close() error {
	r.body.mu.Lock()
	r.closed = true
	r.body.cond.Broadcast()
	r.body.mu.Unlock()
	return nil
}
