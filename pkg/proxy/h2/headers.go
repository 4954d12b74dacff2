package h2

import (
	"errors"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// headerBlock is a decoded header block: the fields of one HEADERS frame
// and its CONTINUATION frames. Its fields slice belongs to the connection's
// headerReader and is reused for the next block; the strings in it are not.
type headerBlock struct {
	streamID  uint32
	endStream bool
	fields    []hpack.HeaderField
	// truncated is set when the block was larger than the limit; fields is
	// then incomplete.
	truncated bool
	// invalid is set for a field name or value that HTTP/2 forbids, or
	// misplaced, repeated or unknown pseudo-header fields.
	invalid bool
	// priority is checkPriority's verdict on the HEADERS frame's
	// priority, if it had one.
	priority error
}

// pseudo returns the value of pseudo-header field name (with its colon).
func (hb *headerBlock) pseudo(name string) string {
	for _, f := range hb.fields {
		if len(f.Name) == 0 || f.Name[0] != ':' {
			break // pseudo-header fields come first
		}
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// Value returns the i-th value of the regular field name (lowercase, as
// HTTP/2 requires), for route's matching.
func (hb *headerBlock) Value(name string, i int) (string, bool) {
	for _, f := range hb.regular() {
		if f.Name == name {
			if i == 0 {
				return f.Value, true
			}
			i--
		}
	}
	return "", false
}

// regular returns the fields after the pseudo-header fields.
func (hb *headerBlock) regular() []hpack.HeaderField {
	for i, f := range hb.fields {
		if len(f.Name) == 0 || f.Name[0] != ':' {
			return hb.fields[i:]
		}
	}
	return nil
}

// headerReader decodes a connection's header blocks with its HPACK
// decoder, into a field slice reused from block to block: the Framer's own
// merging allocates a frame and a growing slice for every block.
type headerReader struct {
	dec   *hpack.Decoder
	max   uint32 // header list size limit
	block headerBlock
	size  uint32 // decoded list size so far
	frag  int    // encoded bytes so far
	// pseudo is which pseudo-header fields were seen, by pseudoBit.
	pseudo      uint8
	sawRegular  bool
	inBlock     bool
	allowPseudo func(string) uint8
}

// Pseudo-header fields a request or a response may carry.
func requestPseudo(name string) uint8 {
	switch name {
	case ":method":
		return 1
	case ":scheme":
		return 2
	case ":path":
		return 4
	case ":authority":
		return 8
	}
	return 0
}

func responsePseudo(name string) uint8 {
	if name == ":status" {
		return 1
	}
	return 0
}

func newHeaderReader(max uint32, allowPseudo func(string) uint8) *headerReader {
	hr := &headerReader{max: max, allowPseudo: allowPseudo}
	hr.dec = hpack.NewDecoder(4096, hr.emit)
	hr.dec.SetMaxStringLength(int(max))
	return hr
}

var errHeaderBlockTooLarge = compressionError{errors.New("header block far above the header list size limit")}

// read takes a HEADERS or CONTINUATION frame; it returns the block once its
// last fragment is in, nil before.
func (hr *headerReader) read(f http2.Frame) (*headerBlock, error) {
	if hf, ok := f.(*http2.HeadersFrame); ok {
		return hr.start(hf)
	}
	cf := f.(*http2.ContinuationFrame)
	return hr.add(cf.HeaderBlockFragment(), cf.HeadersEnded())
}

// start begins a block with a HEADERS frame.
func (hr *headerReader) start(f *http2.HeadersFrame) (*headerBlock, error) {
	clear(hr.block.fields)
	hr.block = headerBlock{streamID: f.StreamID, endStream: f.StreamEnded(), fields: hr.block.fields[:0]}
	if f.HasPriority() {
		hr.block.priority = checkPriority(f.StreamID, f.Priority)
	}
	hr.size, hr.frag, hr.pseudo, hr.sawRegular, hr.inBlock = 0, 0, 0, false, true
	hr.dec.SetEmitEnabled(true)
	return hr.add(f.HeaderBlockFragment(), f.HeadersEnded())
}

// add decodes a fragment; it returns the block once its last fragment is
// in, nil before. An error is a connection error of type
// COMPRESSION_ERROR: the connection's HPACK state is lost.
func (hr *headerReader) add(frag []byte, last bool) (*headerBlock, error) {
	hr.frag += len(frag)
	if hr.frag > 2*int(hr.max)+16<<10 {
		// Decoding that much only to refuse it is a waste: the peer is
		// abusive or broken.
		return nil, errHeaderBlockTooLarge
	}
	if _, err := hr.dec.Write(frag); err != nil {
		return nil, compressionError{err}
	}
	if !last {
		return nil, nil
	}
	hr.inBlock = false
	if err := hr.dec.Close(); err != nil {
		return nil, compressionError{err}
	}
	return &hr.block, nil
}

// compressionError is an HPACK decoding failure: a connection error of type
// COMPRESSION_ERROR that keeps the decoder's reason for the log.
type compressionError struct{ err error }

func (e compressionError) Error() string { return "HPACK: " + e.err.Error() }

func (e compressionError) Unwrap() error { return e.err }

func (hr *headerReader) emit(f hpack.HeaderField) {
	hb := &hr.block
	if hb.truncated || hb.invalid {
		return
	}
	if size := f.Size(); hr.size+size > hr.max {
		hb.truncated = true
		hr.dec.SetEmitEnabled(false) // decode the rest for the HPACK state only
		return
	} else {
		hr.size += size
	}
	if !validFieldValue(f.Value) {
		hb.invalid = true
	}
	if len(f.Name) > 0 && f.Name[0] == ':' {
		bit := hr.allowPseudo(f.Name)
		if hr.sawRegular || bit == 0 || hr.pseudo&bit != 0 {
			hb.invalid = true
		}
		hr.pseudo |= bit
	} else {
		hr.sawRegular = true
		if !validFieldName(f.Name) {
			hb.invalid = true
		}
	}
	hb.fields = append(hb.fields, f)
}

// validFieldName accepts lower-case HTTP tokens, as HTTP/2 requires.
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			continue
		}
		if c <= ' ' || c >= 0x7f || ('A' <= c && c <= 'Z') || isSeparator(c) {
			return false
		}
	}
	return true
}

func isSeparator(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '@', ',', ';', ':', '\\', '"', '/', '[', ']', '?', '=', '{', '}':
		return true
	}
	return false
}

// validFieldValue refuses control characters other than tab, as HTTP
// does; they could split a header when a hop speaks HTTP/1.
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
