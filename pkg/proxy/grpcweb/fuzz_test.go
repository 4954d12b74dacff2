package grpcweb_test

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/albctl/albctl/pkg/proxy/grpcweb"
)

// cutter hands out the lengths of a body's pieces, from fuzzed bytes, in
// turn; pieces may be empty. Without lengths, or with only zeros, one
// piece takes everything.
type cutter struct {
	lengths []byte
	next    int
}

func newCutter(lengths []byte) *cutter {
	if bytes.Count(lengths, []byte{0}) == len(lengths) {
		lengths = nil
	}
	return &cutter{lengths: lengths}
}

func (c *cutter) cut(b []byte) (piece, rest []byte) {
	if len(c.lengths) == 0 {
		return b, nil
	}
	n := min(int(c.lengths[c.next%len(c.lengths)]), len(b))
	c.next++
	return b[:n], b[n:]
}

// everyOther cuts with every other byte of cuts, from the first or the
// second.
func everyOther(cuts []byte, odd int) *cutter {
	var lengths []byte
	for i := odd; i < len(cuts); i += 2 {
		lengths = append(lengths, cuts[i])
	}
	return newCutter(lengths)
}

// decodeText feeds text to a TextDecoder in pieces cut by c.
func decodeText(text []byte, c *cutter) ([]byte, error) {
	var d grpcweb.TextDecoder
	var out []byte
	for rest := text; ; {
		var piece []byte
		piece, rest = c.cut(rest)
		var err error
		if out, err = d.Append(out, piece); err != nil {
			return out, err
		}
		if len(rest) == 0 {
			return out, d.Close()
		}
	}
}

// referenceText decodes text one group of four characters at a time.
func referenceText(text []byte) ([]byte, bool) {
	if len(text)%4 != 0 {
		return nil, false
	}
	var out []byte
	for i := 0; i < len(text); i += 4 {
		b, err := base64.StdEncoding.DecodeString(string(text[i : i+4]))
		if err != nil {
			return nil, false
		}
		out = append(out, b...)
	}
	return out, true
}

func FuzzTextDecoder(f *testing.F) {
	f.Add([]byte("hello"), []byte{})
	f.Add([]byte{}, []byte{})
	f.Add([]byte("hi, hello"), []byte{2, 1, 3, 5})
	f.Add([]byte("aGk=aGVsbG8="), []byte{0, 3, 1, 0})
	f.Add([]byte("\x00\x00\x00\x00\x05hello\x80\x00\x00\x00\x10grpc-status: 0\r\n"), []byte{5, 2, 10, 7, 1, 4})
	f.Add([]byte("QUJ\nDQUJDQUJD\n\n\n"), []byte{4, 4, 12, 12})
	f.Add([]byte("QQ==QQ="), []byte{7, 1})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		// The pieces of data encoded each with padding, decoded in
		// other pieces: data again.
		var text []byte
		for rest, c := data, everyOther(cuts, 0); len(rest) > 0; {
			var piece []byte
			piece, rest = c.cut(rest)
			text = base64.StdEncoding.AppendEncode(text, piece)
		}
		got, err := decodeText(text, everyOther(cuts, 1))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%q decoded to %q, %v; want %q", text, got, err, data)
		}

		// data as text: what decodes is what the groups decode to, and
		// what the groups decode to decodes, unless it has line breaks.
		got, err = decodeText(data, everyOther(cuts, 1))
		want, ok := referenceText(data)
		switch {
		case err == nil && (!ok || !bytes.Equal(got, want)):
			t.Fatalf("%q decoded to %q; the groups decode to %q (%v)", data, got, want, ok)
		case err != nil && ok && !bytes.ContainsAny(data, "\r\n"):
			t.Fatalf("%q: %v; the groups decode to %q", data, err, want)
		}
	})
}

// referenceBetween parses a whole body of gRPC messages.
func referenceBetween(body []byte) bool {
	for len(body) > 0 {
		if len(body) < 5 {
			return false
		}
		n := uint64(body[1])<<24 | uint64(body[2])<<16 | uint64(body[3])<<8 | uint64(body[4])
		if uint64(len(body)-5) < n {
			return false
		}
		body = body[5+n:]
	}
	return true
}

func FuzzMessageFrames(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte("\x00\x00\x00\x00\x05hello"), []byte{2, 3})
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01z"), []byte{1, 1, 1, 1, 1, 1})
	f.Add([]byte("\x00\x00\x00\x00\x05hello\x80\x00\x00\x00\x10grpc-status: 0\r\n"), []byte{0, 5, 4, 0})
	f.Add([]byte("\x00\xff\xff\xff\xffabc"), []byte{3})
	f.Add([]byte("\x00\x00\x00\x00\x03ab"), []byte{})
	f.Fuzz(func(t *testing.T, body, cuts []byte) {
		var fr grpcweb.Frames
		c := newCutter(cuts)
		for rest := body; len(rest) > 0; {
			var piece []byte
			piece, rest = c.cut(rest)
			fr.Add(piece)
		}
		if got, want := fr.Between(), referenceBetween(body); got != want {
			t.Fatalf("Between() = %v after %x cut by %v, want %v", got, body, cuts, want)
		}
	})
}
