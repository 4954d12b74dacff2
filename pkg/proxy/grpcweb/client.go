package grpcweb

import (
	"encoding/binary"
	"errors"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// AppendMessage appends msg as one length-prefixed, uncompressed message: a
// request body as a client sends it.
func AppendMessage(dst, msg []byte) []byte {
	return append(AppendPrefix(dst, 0, len(msg)), msg...)
}

// AppendPrefix appends the 5 bytes before a message of n bytes: flag (bit 0 set for a
// compressed message), then n.
func AppendPrefix(dst []byte, flag byte, n int) []byte {
	return binary.BigEndian.AppendUint32(append(dst, flag), uint32(n))
}

// Body is a whole gRPC-Web response body as a client reads it.
type Body struct {
	Messages [][]byte
	// Trailers are the fields of the status frame; nil if the body had
	// none (a trailers-only answer carries its status in the headers).
	Trailers map[string]string
}

// ReadBody splits a whole response body, in text (base64) if text is set,
// into its messages and the status frame that ends it.
func ReadBody(body []byte, text bool) (Body, error) {
	var b Body
	if text {
		var d TextDecoder
		var err error
		if body, err = d.Append(nil, body); err == nil {
			err = d.Close()
		}
		if err != nil {
			return b, err
		}
	}
	for len(body) > 0 {
		if len(body) < 5 || uint32(len(body)-5) < binary.BigEndian.Uint32(body[1:5]) {
			return b, errors.New("the body ends inside a message")
		}
		if b.Trailers != nil {
			return b, errors.New("a message after the status frame")
		}
		n := binary.BigEndian.Uint32(body[1:5])
		flag, payload := body[0], body[5:5+n]
		body = body[5+n:]
		if flag&trailerFlag == 0 {
			b.Messages = append(b.Messages, payload)
			continue
		}
		b.Trailers = map[string]string{}
		for _, f := range ParseTrailers(payload) {
			b.Trailers[f.Name] = f.Value
		}
	}
	return b, nil
}

// ParseTrailers reads the fields of a status frame's payload, "name: value\r\n" each, names
// in lower case.
func ParseTrailers(payload []byte) []hpack.HeaderField {
	var fields []hpack.HeaderField
	for line := range strings.SplitSeq(string(payload), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields = append(fields, hpack.HeaderField{Name: strings.ToLower(strings.TrimSpace(k)), Value: strings.TrimSpace(v)})
		}
	}
	return fields
}
