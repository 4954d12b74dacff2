package obs

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Format is the layout of access-log lines.
type Format string

const (
	// FormatText is one line of key=value fields per call.
	FormatText Format = "text"
	// FormatJSON is one JSON object per line.
	FormatJSON Format = "json"
)

const (
	// flushInterval bounds how long a line waits in memory.
	flushInterval = 100 * time.Millisecond
	// chunkSize is the unit of the pending output; pending output of one
	// chunk also triggers a write before flushInterval has passed.
	chunkSize = 64 << 10
	// maxPending caps the output waiting for the writer; lines past it are
	// dropped.
	maxPending = 4 << 20
	// maxFree is how many written chunks are kept for reuse, so one burst
	// does not pin maxPending bytes for good.
	maxFree = 4
)

// Record is one access-log entry: one per call.
type Record struct {
	Time     time.Time
	Client   string
	Listener string
	Method   string
	Server   string // "-" in the line when empty
	Rule     string // the rule the call met; "-" in the line when empty
	// Web marks an HTTP request: Code is then its HTTP status. Otherwise
	// Code is the call's grpc-status.
	Web bool
	// Protocol, if set, is how a gRPC call came: "grpc-web",
	// "grpc-web-text" or "connect".
	Protocol string
	Code     int
	Duration time.Duration
	BytesIn  int64
	BytesOut int64
}

// AccessLog writes one line per call. Log formats the line and appends it
// to memory; one goroutine writes it out, at the latest flushInterval after
// it arrived. When the destination cannot keep up and maxPending bytes are
// waiting, lines are dropped and counted.
type AccessLog struct {
	json   bool
	logger *slog.Logger
	path   string // reopened by Reopen; "" for a writer given by the caller

	mu      sync.Mutex
	pending [][]byte // chunks of whole lines; new lines go into the last
	size    int      // bytes in pending
	free    [][]byte // written chunks, for reuse
	closed  bool

	dropped atomic.Uint64
	warned  atomic.Bool

	// wake (buffered 1) tells the writer that lines are pending or that
	// they reached chunkSize.
	wake     chan struct{}
	reopen   chan reopenRequest
	quit     chan struct{}
	stopped  chan struct{}
	closeErr error // set by the writer before it closes stopped

	// Owned by the writer goroutine.
	w       io.Writer
	file    *os.File // w, when the log opened it
	writing [][]byte
	failing bool // a write to w failed and was reported: once per destination
}

type reopenRequest struct {
	file *os.File
	done chan error
}

var errClosed = errors.New("obs: access log closed")

// NewAccessLog returns an access log writing lines in format to w; any
// format but FormatJSON is text. A nil logger discards the log's own
// warnings. The caller must Close it.
func NewAccessLog(w io.Writer, format Format, logger *slog.Logger) *AccessLog {
	return start(w, nil, "", format, logger)
}

// OpenAccessLog returns an access log appending to the file at path,
// created with mode 0640 if missing. See NewAccessLog for format and
// logger.
func OpenAccessLog(path string, format Format, logger *slog.Logger) (*AccessLog, error) {
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	return start(f, f, path, format, logger), nil
}

func openFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

func start(w io.Writer, f *os.File, path string, format Format, logger *slog.Logger) *AccessLog {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &AccessLog{
		json:    format == FormatJSON,
		logger:  logger,
		path:    path,
		wake:    make(chan struct{}, 1),
		reopen:  make(chan reopenRequest),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
		w:       w,
		file:    f,
	}
	go a.run()
	return a
}

// Log queues the line for r. It never waits for the destination, and does
// not retain r. It is safe for concurrent use; after Close it does nothing.
func (a *AccessLog) Log(r *Record) {
	// The line is formatted on the stack, outside the lock.
	var stack [512]byte
	var line []byte
	if a.json {
		var ok bool
		if line, ok = appendJSON(stack[:0], r); !ok {
			return
		}
	} else {
		line = appendText(stack[:0], r)
	}

	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	size := a.size
	if size+len(line) > maxPending {
		a.mu.Unlock()
		a.drop()
		return
	}
	last := len(a.pending) - 1
	if last < 0 || len(a.pending[last])+len(line) > cap(a.pending[last]) {
		a.pending = append(a.pending, a.chunk(len(line)))
		last++
	}
	a.pending[last] = append(a.pending[last], line...)
	a.size += len(line)
	a.mu.Unlock()

	if size == 0 || size < chunkSize && size+len(line) >= chunkSize {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// chunk returns an empty chunk for at least n bytes. a.mu must be held.
func (a *AccessLog) chunk(n int) []byte {
	if n > chunkSize {
		return make([]byte, 0, n)
	}
	if k := len(a.free); k > 0 {
		c := a.free[k-1]
		a.free = a.free[:k-1]
		return c
	}
	return make([]byte, 0, chunkSize)
}

func (a *AccessLog) drop() {
	a.dropped.Add(1)
	if !a.warned.Load() && a.warned.CompareAndSwap(false, true) {
		// In its own goroutine: the logger may write to the same stuck
		// destination, and Log must not wait.
		go a.logger.Warn("access log writer falling behind, dropping lines",
			"metric", "albctl_proxy_access_log_dropped_total")
	}
}

// Dropped returns how many lines were dropped because the destination
// could not keep up.
func (a *AccessLog) Dropped() uint64 {
	return a.dropped.Load()
}

// Reopen makes a log opened by OpenAccessLog write to a fresh file at its
// path, for log rotation: lines logged before the call go to the old file,
// which is then closed; Reopen waits for that. If the path cannot be opened,
// the log keeps writing to the old file. For a log from NewAccessLog, Reopen
// does nothing.
func (a *AccessLog) Reopen() error {
	if a.path == "" {
		return nil
	}
	f, err := openFile(a.path)
	if err != nil {
		return err
	}
	req := reopenRequest{file: f, done: make(chan error, 1)}
	select {
	case a.reopen <- req:
		return <-req.done
	case <-a.stopped:
		f.Close()
		return errClosed
	}
}

// Close writes out what is queued, stops the writer and closes the file the
// log opened. It waits for the destination to take the last lines. Calling
// it again does nothing.
func (a *AccessLog) Close() error {
	a.mu.Lock()
	already := a.closed
	a.closed = true
	a.mu.Unlock()
	if already {
		<-a.stopped
		return nil
	}
	close(a.quit)
	<-a.stopped
	return a.closeErr
}

// run is the writer goroutine. It sleeps until a line arrives, then lets
// lines gather for up to flushInterval (less if they fill a chunk) and
// writes them in one go.
func (a *AccessLog) run() {
	defer close(a.stopped)
	timer := time.NewTimer(flushInterval)
	timer.Stop()
	for {
		select {
		case <-a.wake:
		case req := <-a.reopen:
			a.switchTo(req)
			continue
		case <-a.quit:
			a.stop()
			return
		}
		timer.Reset(flushInterval)
	gather:
		for !a.full() {
			select {
			case <-timer.C:
				break gather
			case <-a.wake:
			case req := <-a.reopen:
				a.switchTo(req)
				break gather
			case <-a.quit:
				timer.Stop()
				a.stop()
				return
			}
		}
		timer.Stop()
		a.flush()
	}
}

func (a *AccessLog) full() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.size >= chunkSize
}

func (a *AccessLog) flush() {
	a.mu.Lock()
	chunks := a.pending
	a.pending, a.size = a.writing, 0
	a.mu.Unlock()
	if len(chunks) == 0 {
		a.writing = chunks
		return
	}
	for _, c := range chunks {
		if _, err := a.w.Write(c); err != nil && !a.failing {
			a.failing = true
			a.logger.Warn("access log write failed, lines are lost", "err", err)
		}
	}
	a.mu.Lock()
	for i, c := range chunks {
		if cap(c) == chunkSize && len(a.free) < maxFree {
			a.free = append(a.free, c[:0])
		}
		chunks[i] = nil
	}
	a.mu.Unlock()
	a.writing = chunks[:0]
}

func (a *AccessLog) switchTo(req reopenRequest) {
	a.flush()
	var err error
	if a.file != nil {
		err = a.file.Close()
	}
	a.w, a.file, a.failing = req.file, req.file, false
	req.done <- err
}

func (a *AccessLog) stop() {
	a.flush()
	if a.file != nil {
		a.closeErr = a.file.Close()
	}
}

// appendText appends r's text line:
//
//	2006-01-02T15:04:05.000Z client=… listener=… method=… server=… rule=… grpc_status=N duration_ms=1.234 bytes_in=N bytes_out=N
//
// with protocol=… after rule for gRPC-Web calls, and http_status=N in
// place of grpc_status for HTTP requests.
func appendText(b []byte, r *Record) []byte {
	b = appendTime(b, r.Time)
	b = appendField(b, " client=", r.Client)
	b = appendField(b, " listener=", r.Listener)
	b = appendField(b, " method=", r.Method)
	b = appendField(b, " server=", orDash(r.Server))
	b = appendField(b, " rule=", orDash(r.Rule))
	if r.Protocol != "" {
		b = appendField(b, " protocol=", r.Protocol)
	}
	if r.Web {
		b = append(b, " http_status="...)
	} else {
		b = append(b, " grpc_status="...)
	}
	b = strconv.AppendInt(b, int64(r.Code), 10)
	b = append(b, " duration_ms="...)
	b = appendMs(b, r.Duration, false)
	b = append(b, " bytes_in="...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, " bytes_out="...)
	b = strconv.AppendInt(b, r.BytesOut, 10)
	return append(b, '\n')
}

// appendTime appends t in UTC as 2006-01-02T15:04:05.000Z.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z")
	}
	hour, minute, second := t.Clock()
	ms := t.Nanosecond() / 1e6
	return append(b,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+second/10), byte('0'+second%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// mustQuote marks the bytes that make a text value quoted: it could
// otherwise be mistaken for more fields.
var mustQuote = func() (q [256]bool) {
	for c := range q {
		q[c] = c <= ' ' || c > '~' || c == '"' || c == '='
	}
	return q
}()

// appendField appends key (" name=") and value, quoted if need be.
func appendField(b []byte, key, value string) []byte {
	b = append(b, key...)
	for i := 0; i < len(value); i++ {
		if mustQuote[value[i]] {
			return strconv.AppendQuote(b, value)
		}
	}
	if value == "" {
		return append(b, `""`...)
	}
	return append(b, value...)
}

// appendJSON appends r's JSON line, byte for byte what encoding/json makes
// of
//
//	struct {
//		Time       time.Time `json:"time"`
//		Client     string    `json:"client"`
//		Listener   string    `json:"listener"`
//		Method     string    `json:"method"`
//		Server     string    `json:"server"`
//		Rule       string    `json:"rule"`
//		Protocol   string    `json:"protocol,omitempty"`
//		GRPCStatus *int      `json:"grpc_status,omitempty"`
//		HTTPStatus int       `json:"http_status,omitempty"`
//		DurationMs float64   `json:"duration_ms"`
//		BytesIn    int64     `json:"bytes_in"`
//		BytesOut   int64     `json:"bytes_out"`
//	}
//
// It reports false, where json.Marshal fails, for a time RFC 3339 cannot
// hold: a year outside 0-9999 or a zone offset of 24 hours or more.
func appendJSON(b []byte, r *Record) ([]byte, bool) {
	n := len(b)
	b = append(b, `{"time":"`...)
	t, err := r.Time.AppendText(b)
	if err != nil {
		return b[:n], false
	}
	b = append(t, `","client":`...)
	b = appendJSONString(b, r.Client)
	b = append(b, `,"listener":`...)
	b = appendJSONString(b, r.Listener)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"server":`...)
	b = appendJSONString(b, orDash(r.Server))
	b = append(b, `,"rule":`...)
	b = appendJSONString(b, orDash(r.Rule))
	if r.Protocol != "" {
		b = append(b, `,"protocol":`...)
		b = appendJSONString(b, r.Protocol)
	}
	if !r.Web {
		b = append(b, `,"grpc_status":`...)
		b = strconv.AppendInt(b, int64(r.Code), 10)
	} else if r.Code != 0 {
		b = append(b, `,"http_status":`...)
		b = strconv.AppendInt(b, int64(r.Code), 10)
	}
	b = append(b, `,"duration_ms":`...)
	b = appendMs(b, r.Duration, true)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, r.BytesOut, 10)
	return append(b, "}\n"...), true
}

const hex = "0123456789abcdef"

// jsonSafe marks the ASCII bytes encoding/json writes as they are.
var jsonSafe = func() (safe [utf8.RuneSelf]bool) {
	for c := range safe {
		safe[c] = c >= ' ' && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return safe
}()

// appendJSONString quotes s as encoding/json does, HTML escaping included.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendMs appends d in milliseconds, truncated to the microsecond, as
// strconv.AppendFloat(b, ms, 'f', 3, 64) does or, for JSON, as
// encoding/json does: 1.500 or 1.5.
func appendMs(b []byte, d time.Duration, json bool) []byte {
	us := d.Microseconds()
	// Below 1e15 µs a float64 holds ms to well within 0.0005, so the
	// decimal digits of us are the digits the float formats to.
	if us <= -1e15 || us >= 1e15 {
		ms := float64(us) / 1000
		if json {
			return appendJSONFloat(b, ms)
		}
		return strconv.AppendFloat(b, ms, 'f', 3, 64)
	}
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	if json {
		if frac == 0 {
			return b
		}
		b = append(b, '.', byte('0'+frac/100))
		if frac%100 != 0 {
			b = append(b, byte('0'+frac/10%10))
			if frac%10 != 0 {
				b = append(b, byte('0'+frac%10))
			}
		}
		return b
	}
	return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

// appendJSONFloat formats f as encoding/json does.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// orDash writes an empty value as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
