package h2

import (
	"strconv"
	"strings"
	"time"
)

// gRPC status codes the proxy produces or recognises.
const (
	codeOK                = 0
	codeCanceled          = 1
	codeUnknown           = 2
	codeInvalidArgument   = 3
	codeDeadlineExceeded  = 4
	codePermissionDenied  = 7
	codeResourceExhausted = 8
	codeUnimplemented     = 12
	codeInternal          = 13
	codeUnavailable       = 14
)

// statusStrings are the grpc-status values the proxy sends, by code.
var statusStrings = func() (s [17]string) {
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

// encodeGRPCMessage percent-encodes a grpc-message value as the gRPC HTTP/2
// protocol requires: printable ASCII except '%' passes through.
func encodeGRPCMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < ' ' || c > '~' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	var sb strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < ' ' || c > '~' || c == '%' {
			sb.WriteByte('%')
			sb.WriteByte("0123456789ABCDEF"[c>>4])
			sb.WriteByte("0123456789ABCDEF"[c&15])
		} else {
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// parseStatus reads a grpc-status value; malformed or missing values count as
// UNKNOWN, as a gRPC client would see them.
func parseStatus(s string) int {
	if s == "" || len(s) > 3 {
		return codeUnknown
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return codeUnknown
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// parseTimeout reads a grpc-timeout value: at most 8 digits and a unit.
func parseTimeout(s string) (time.Duration, bool) {
	if len(s) < 2 || len(s) > 9 {
		return 0, false
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	var n int64
	for i := 0; i < len(s)-1; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	const maxHours = int64(1<<63-1) / int64(time.Hour)
	if unit == time.Hour && n > maxHours {
		return 1<<63 - 1, true
	}
	return time.Duration(n) * unit, true
}

// encodeTimeout writes d as a grpc-timeout value in the finest unit that fits
// in 8 digits. Truncation means the backend never sees more time than is
// left.
func encodeTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	const max = 100000000 // 8 digits
	units := [...]struct {
		d time.Duration
		c byte
	}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}, {time.Hour, 'H'}}
	for _, u := range units {
		if v := d / u.d; v < max {
			var buf [12]byte
			b := strconv.AppendInt(buf[:0], int64(v), 10)
			return string(append(b, u.c))
		}
	}
	return "99999999H"
}
