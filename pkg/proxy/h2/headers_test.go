package h2

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/albctl/albctl/pkg/proxy/route"
)

// The header reader decodes a block however it is cut into CONTINUATION
// fragments, keeps HPACK state across blocks, and flags blocks that are too
// large or not valid HTTP/2.
func TestHeaderReader(t *testing.T) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	encode := func(fields ...hpack.HeaderField) []byte {
		buf.Reset()
		for _, f := range fields {
			enc.WriteField(f)
		}
		return append([]byte(nil), buf.Bytes()...)
	}
	request := []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"}, {Name: ":path", Value: "/s/M"},
		{Name: ":authority", Value: "localhost"}, {Name: "content-type", Value: "application/grpc"},
		{Name: "x-bin", Value: "AAEC/v8"}, {Name: "secret", Value: "s3cr3t", Sensitive: true},
	}
	hr := newHeaderReader(route.MaxHeaderBytes, requestPseudo)
	decode := func(block []byte, cut int) *headerBlock {
		t.Helper()
		hf := headersFrame(t, 1, block[:cut], cut == len(block))
		hb, err := hr.start(hf)
		if err != nil {
			t.Fatal(err)
		}
		if cut < len(block) {
			if hb, err = hr.add(block[cut:], true); err != nil {
				t.Fatal(err)
			}
		}
		return hb
	}
	// The same fields twice: the second block is mostly table references.
	for round := 0; round < 2; round++ {
		block := encode(request...)
		for cut := 1; cut <= len(block); cut++ {
			if round == 1 && cut > 1 {
				break // a second encoding exists only once: the table moved on
			}
			hb := decode(block, cut)
			if hb.invalid || hb.truncated || len(hb.fields) != len(request) {
				t.Fatalf("round %d cut %d: %+v", round, cut, hb)
			}
			for i, f := range hb.fields {
				if f.Name != request[i].Name || f.Value != request[i].Value {
					t.Fatalf("round %d cut %d: field %d = %v", round, cut, i, f)
				}
			}
			if hb.pseudo(":path") != "/s/M" || len(hb.regular()) != 3 {
				t.Fatalf("pseudo/regular split wrong: %+v", hb.fields)
			}
			if cut < len(block) {
				// Decode the same bytes again from a fresh reader next time.
				hr = newHeaderReader(route.MaxHeaderBytes, requestPseudo)
				enc = hpack.NewEncoder(&buf)
				block = encode(request...)
			}
		}
	}

	bad := map[string][]hpack.HeaderField{
		"upper-case name":        {{Name: ":method", Value: "POST"}, {Name: "X-Up", Value: "v"}},
		"pseudo after regular":   {{Name: "a", Value: "b"}, {Name: ":path", Value: "/"}},
		"unknown pseudo":         {{Name: ":status", Value: "200"}},
		"repeated pseudo":        {{Name: ":path", Value: "/"}, {Name: ":path", Value: "/x"}},
		"control char in value":  {{Name: "a", Value: "b\r\nc: d"}},
		"empty name after colon": {{Name: ":", Value: "x"}},
	}
	for name, fields := range bad {
		hr := newHeaderReader(route.MaxHeaderBytes, requestPseudo)
		enc := hpack.NewEncoder(&buf)
		buf.Reset()
		for _, f := range fields {
			enc.WriteField(f)
		}
		hb, err := hr.start(headersFrame(t, 1, buf.Bytes(), true))
		if err != nil || !hb.invalid {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}

	// Over the limit: truncated, and the HPACK state still follows, so the
	// next block decodes.
	hr = newHeaderReader(route.MaxHeaderBytes, requestPseudo)
	enc = hpack.NewEncoder(&buf)
	big := encode(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("v", 20<<10)}, hpack.HeaderField{Name: "x-big2", Value: strings.Repeat("w", 20<<10)})
	hb, err := hr.start(headersFrame(t, 1, big, true))
	if err != nil || !hb.truncated {
		t.Fatalf("40 KiB block: truncated=%v err=%v", hb != nil && hb.truncated, err)
	}
	hb, err = hr.start(headersFrame(t, 3, encode(request...), true))
	if err != nil || hb.truncated || hb.invalid || hb.pseudo(":method") != "POST" {
		t.Fatalf("block after a truncated one: %+v %v", hb, err)
	}
}

// headersFrame builds a HEADERS frame as the Framer would return it.
func headersFrame(t *testing.T, id uint32, frag []byte, endHeaders bool) *http2.HeadersFrame {
	t.Helper()
	var wire bytes.Buffer
	w := http2.NewFramer(&wire, nil)
	if err := w.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndHeaders: endHeaders}); err != nil {
		t.Fatal(err)
	}
	f, err := http2.NewFramer(nil, &wire).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	return f.(*http2.HeadersFrame)
}
