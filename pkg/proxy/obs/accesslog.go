package obs

import (
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// Access log formats.
const (
	FormatText = "text"
	FormatJSON = "json"
)

func NewAccessLog(w io.Writer, format string, _ *slog.Logger) *AccessLog {
	return &AccessLog{w: w, json: format == FormatJSON}
}

func (a *AccessLog) Dropped() uint64 { return 0 }
func (a *AccessLog) Close() error    { return nil }

// Record is one access-log entry: one per call.
type Record struct {
	Time       time.Time     `json:"time"`
	Client     string        `json:"client"`
	Listener   string        `json:"listener"`
	Method     string        `json:"method"`
	Server     string        `json:"server"`
	GRPCStatus *int          `json:"grpc_status,omitempty"` // gRPC calls
	HTTPStatus int           `json:"http_status,omitempty"` // HTTP requests
	Duration   time.Duration `json:"-"`
	DurationMs float64       `json:"duration_ms"`
	BytesIn    int64         `json:"bytes_in"`
	BytesOut   int64         `json:"bytes_out"`
}

// accessLog serialises records to one writer.
type AccessLog struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
	buf  []byte
}

func (a *AccessLog) Log(r *Record) {
	r.DurationMs = float64(r.Duration.Microseconds()) / 1000
	if r.Server == "" {
		r.Server = "-"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.buf[:0]
	if a.json {
		js, err := json.Marshal(r)
		if err != nil {
			return
		}
		b = append(append(b, js...), '\n')
	} else {
		b = r.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
		b = appendField(b, "client", r.Client)
		b = appendField(b, "listener", r.Listener)
		b = appendField(b, "method", r.Method)
		b = appendField(b, "server", r.Server)
		if r.GRPCStatus != nil {
			b = append(b, " grpc_status="...)
			b = strconv.AppendInt(b, int64(*r.GRPCStatus), 10)
		} else {
			b = append(b, " http_status="...)
			b = strconv.AppendInt(b, int64(r.HTTPStatus), 10)
		}
		b = append(b, " duration_ms="...)
		b = strconv.AppendFloat(b, r.DurationMs, 'f', 3, 64)
		b = append(b, " bytes_in="...)
		b = strconv.AppendInt(b, r.BytesIn, 10)
		b = append(b, " bytes_out="...)
		b = strconv.AppendInt(b, r.BytesOut, 10)
		b = append(b, '\n')
	}
	a.buf = b
	_, _ = a.w.Write(b)
}

// appendField writes " key=value", quoting the value if it could be
// mistaken for more fields.
func appendField(b []byte, key, value string) []byte {
	b = append(append(append(b, ' '), key...), '=')
	for i := 0; i < len(value); i++ {
		if c := value[i]; c <= ' ' || c > '~' || c == '"' || c == '=' {
			return strconv.AppendQuote(b, value)
		}
	}
	if value == "" {
		return append(b, `""`...)
	}
	return append(b, value...)
}
