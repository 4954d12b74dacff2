// Package grpcweb is what a listener needs to take gRPC-Web calls from
// browsers to gRPC servers without decoding their messages: the content
// types, the text mode's base64, the frame that carries the trailers in the
// body, and the listener's CORS answers.
package grpcweb

import (
	"bytes"
	"encoding/base64"
	"errors"
	"slices"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// Mode is how a call's body is carried.
type Mode uint8

const (
	// Native is plain gRPC.
	Native Mode = iota
	// Binary is application/grpc-web: gRPC's frames as they are.
	Binary
	// Text is application/grpc-web-text: the same frames in base64.
	Text
	// ConnectUnary is a Connect unary call, application/proto: the bare
	// message, and the status as the HTTP status and a JSON error.
	ConnectUnary
	// ConnectStream is a Connect stream, application/connect+proto: gRPC's
	// frames, ended by one with the status in JSON.
	ConnectStream
)

// Protocol names the mode as the access log and the metrics do.
func (m Mode) Protocol() string {
	switch m {
	case Binary:
		return "grpc-web"
	case Text:
		return "grpc-web-text"
	case ConnectUnary, ConnectStream:
		return "connect"
	}
	return "grpc"
}

// Connect reports whether the mode is one of Connect's.
func (m Mode) Connect() bool { return m == ConnectUnary || m == ConnectStream }

// IsWeb reports whether a request of this content type is for the listener's web protocols
// (gRPC-Web or Connect) rather than native gRPC.
func IsWeb(contentType string) bool {
	if m, _ := Parse(contentType); m != Native {
		return true
	}
	m, _, _ := ParseConnect(contentType)
	return m != Native
}

// Parse reads a request's content type. For a gRPC-Web one it returns the
// mode and the content type to send the server in its place:
// application/grpc-web-text+proto becomes application/grpc+proto. Native
// means the request is not gRPC-Web.
func Parse(contentType string) (Mode, string) {
	ct, _, _ := strings.Cut(contentType, ";")
	ct = strings.TrimSpace(ct)
	const prefix = "application/grpc-web"
	if len(ct) < len(prefix) || !strings.EqualFold(ct[:len(prefix)], prefix) {
		return Native, ""
	}
	rest := ct[len(prefix):]
	mode := Binary
	if len(rest) >= 5 && strings.EqualFold(rest[:5], "-text") {
		mode, rest = Text, rest[5:]
	}
	switch {
	case rest == "":
		return mode, "application/grpc"
	case rest[0] == '+' && len(rest) > 1:
		return mode, "application/grpc" + strings.ToLower(rest)
	}
	return Native, ""
}

// WantsText reports whether a client's Accept header asks for a text
// response, which it gets even for a binary request.
func WantsText(accept string) bool {
	for a := range strings.SplitSeq(accept, ",") {
		a, _, _ = strings.Cut(a, ";")
		if m, _ := Parse(a); m == Text {
			return true
		}
	}
	return false
}

// ResponseType is the content type that tells the client how the response
// is carried, for the server's gRPC content type.
func ResponseType(text bool, serverType string) string {
	ct, _, _ := strings.Cut(serverType, ";")
	sub := ""
	if i := strings.IndexByte(ct, '+'); i >= 0 {
		sub = strings.TrimSpace(ct[i:])
	}
	if text {
		return "application/grpc-web-text" + sub
	}
	return "application/grpc-web" + sub
}

// trailerFlag marks the frame that holds the trailers, uncompressed.
const trailerFlag = 0x80

// AppendTrailers appends the frame that ends a gRPC-Web response: flag
// 0x80, the length, then each field as "name: value\r\n". Pseudo-header
// fields are left out.
func AppendTrailers(dst []byte, fields []hpack.HeaderField) []byte {
	start := len(dst)
	dst = append(dst, trailerFlag, 0, 0, 0, 0)
	for _, f := range fields {
		if strings.HasPrefix(f.Name, ":") {
			continue
		}
		dst = append(dst, f.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, f.Value...)
		dst = append(dst, "\r\n"...)
	}
	n := len(dst) - start - 5
	dst[start+1], dst[start+2], dst[start+3], dst[start+4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return dst
}

// AppendText appends src in base64, padded: each piece of a text response
// is encoded on its own, as it arrives, so that a stream's messages reach
// the client without waiting for the next one.
func AppendText(dst, src []byte) []byte {
	return base64.StdEncoding.AppendEncode(dst, src)
}

// ErrText is a grpc-web-text body that is not base64.
var ErrText = errors.New("the grpc-web-text body is not valid base64")

// TextDecoder decodes a grpc-web-text request body as it arrives, in
// pieces cut anywhere. Clients encode each piece they send on its own, so
// padding may end any group of four characters, not only the last. Line
// breaks are refused: base64.StdEncoding would skip them, which shifts the
// groups of four, so a body would decode differently as it is cut.
type TextDecoder struct {
	quad [4]byte
	n    int
}

// Append decodes src, appending the bytes to dst. Characters of an
// incomplete group wait for the next call.
func (d *TextDecoder) Append(dst, src []byte) ([]byte, error) {
	if bytes.ContainsAny(src, "\r\n") {
		return dst, ErrText
	}
	for len(src) > 0 {
		if d.n > 0 || len(src) < 4 {
			c := copy(d.quad[d.n:], src)
			d.n += c
			src = src[c:]
			if d.n < 4 {
				break
			}
			var err error
			if dst, err = decode(dst, d.quad[:]); err != nil {
				return dst, err
			}
			d.n = 0
			continue
		}
		// Whole groups at once, up to the end of the first padded one.
		end := len(src) &^ 3
		if i := bytes.IndexByte(src[:end], '='); i >= 0 {
			end = (i/4 + 1) * 4
		}
		var err error
		if dst, err = decode(dst, src[:end]); err != nil {
			return dst, err
		}
		src = src[end:]
	}
	return dst, nil
}

// Close reports a body that ended inside a group of four characters.
func (d *TextDecoder) Close() error {
	if d.n != 0 {
		return ErrText
	}
	return nil
}

func decode(dst, src []byte) ([]byte, error) {
	n := len(dst)
	dst = slices.Grow(dst, base64.StdEncoding.DecodedLen(len(src)))
	m, err := base64.StdEncoding.Decode(dst[n:cap(dst)], src)
	if err != nil {
		return dst, ErrText
	}
	return dst[:n+m], nil
}

// Frames follows gRPC's length-prefixed messages through a body that
// arrives in pieces cut anywhere, to tell whether it stops between two of
// them: only there can a status frame follow.
type Frames struct {
	prefix int    // bytes of the current message's 5-byte prefix seen
	length uint32 // its length, as far as seen
	left   uint32 // bytes of its message still to come
}

// Add follows p, the next piece of the body.
func (f *Frames) Add(p []byte) {
	for len(p) > 0 {
		if f.left > 0 {
			n := uint32(min(len(p), int(min(f.left, 1<<30))))
			f.left -= n
			p = p[n:]
			continue
		}
		if f.prefix > 0 {
			f.length = f.length<<8 | uint32(p[0])
		}
		f.prefix++
		p = p[1:]
		if f.prefix == 5 {
			f.left, f.prefix, f.length = f.length, 0, 0
		}
	}
}

// Between reports whether the body so far ends on a message boundary.
func (f *Frames) Between() bool { return f.prefix == 0 && f.left == 0 }

// StatusOf maps the HTTP status of a server's answer that is not gRPC to
// the gRPC status a client sees, as gRPC's HTTP mapping says.
func StatusOf(httpStatus int) int {
	switch httpStatus {
	case 400:
		return 13 // internal
	case 401:
		return 16 // unauthenticated
	case 403:
		return 7 // permission denied
	case 404:
		return 12 // unimplemented
	case 429, 502, 503, 504:
		return 14 // unavailable
	}
	return 2 // unknown
}
