package grpcweb_test

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2/hpack"

	"github.com/albctl/albctl/pkg/proxy/grpcweb"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in     string
		mode   grpcweb.Mode
		server string
	}{
		{"application/grpc-web", grpcweb.Binary, "application/grpc"},
		{"application/grpc-web+proto", grpcweb.Binary, "application/grpc+proto"},
		{"application/grpc-web+json", grpcweb.Binary, "application/grpc+json"},
		{"application/grpc-web-text", grpcweb.Text, "application/grpc"},
		{"application/grpc-web-text+proto", grpcweb.Text, "application/grpc+proto"},
		{"application/grpc-web-text+json", grpcweb.Text, "application/grpc+json"},
		{"Application/GRPC-Web-Text+Proto", grpcweb.Text, "application/grpc+proto"},
		{"APPLICATION/GRPC-WEB", grpcweb.Binary, "application/grpc"},
		{"application/grpc-web+proto;charset=utf-8", grpcweb.Binary, "application/grpc+proto"},
		{"application/grpc-web-text ; charset=utf-8", grpcweb.Text, "application/grpc"},
		{" application/grpc-web ", grpcweb.Binary, "application/grpc"},
		{"application/grpc", grpcweb.Native, ""},
		{"application/grpc+proto", grpcweb.Native, ""},
		{"application/grpc-webx", grpcweb.Native, ""},
		{"application/grpc-web-textx", grpcweb.Native, ""},
		{"application/grpc-web-tex", grpcweb.Native, ""},
		{"application/grpc-web+", grpcweb.Native, ""},
		{"application/grpc-web-text+", grpcweb.Native, ""},
		{"application/grpc-we", grpcweb.Native, ""},
		{"text/plain", grpcweb.Native, ""},
		{"", grpcweb.Native, ""},
	}
	for _, tt := range tests {
		mode, server := grpcweb.Parse(tt.in)
		if mode != tt.mode || server != tt.server {
			t.Errorf("Parse(%q) = %v, %q; want %v, %q", tt.in, mode, server, tt.mode, tt.server)
		}
	}
}

func TestModeProtocol(t *testing.T) {
	for mode, want := range map[grpcweb.Mode]string{grpcweb.Native: "grpc", grpcweb.Binary: "grpc-web", grpcweb.Text: "grpc-web-text"} {
		if got := mode.Protocol(); got != want {
			t.Errorf("%d.Protocol() = %q, want %q", mode, got, want)
		}
	}
}

func TestWantsText(t *testing.T) {
	tests := []struct {
		accept string
		want   bool
	}{
		{"application/grpc-web-text", true},
		{"application/grpc-web-text+proto", true},
		{"*/*, application/grpc-web-text;q=0.9", true},
		{"application/grpc-web,application/grpc-web-text", true},
		{"Application/GRPC-Web-Text", true},
		{"application/grpc-web", false},
		{"application/grpc-web+proto", false},
		{"application/grpc-web-textx", false},
		{"*/*", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := grpcweb.WantsText(tt.accept); got != tt.want {
			t.Errorf("WantsText(%q) = %v, want %v", tt.accept, got, tt.want)
		}
	}
}

func TestResponseType(t *testing.T) {
	tests := []struct {
		text   bool
		server string
		want   string
	}{
		{false, "application/grpc", "application/grpc-web"},
		{true, "application/grpc", "application/grpc-web-text"},
		{false, "application/grpc+proto", "application/grpc-web+proto"},
		{true, "application/grpc+json", "application/grpc-web-text+json"},
		{false, "application/grpc+proto; charset=utf-8", "application/grpc-web+proto"},
		{false, "application/grpc; x=a+b", "application/grpc-web"},
		{true, "", "application/grpc-web-text"},
	}
	for _, tt := range tests {
		if got := grpcweb.ResponseType(tt.text, tt.server); got != tt.want {
			t.Errorf("ResponseType(%v, %q) = %q, want %q", tt.text, tt.server, got, tt.want)
		}
	}
}

func TestAppendTrailers(t *testing.T) {
	tests := []struct {
		fields []hpack.HeaderField
		want   string
	}{
		{nil, "\x80\x00\x00\x00\x00"},
		{
			[]hpack.HeaderField{{Name: "grpc-status", Value: "0"}},
			"\x80\x00\x00\x00\x10grpc-status: 0\r\n",
		},
		{
			[]hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "grpc-status", Value: "13"}, {Name: "grpc-message", Value: "a b"}, {Name: "x-e", Value: ""}},
			"\x80\x00\x00\x00\x2bgrpc-status: 13\r\ngrpc-message: a b\r\nx-e: \r\n",
		},
	}
	for _, tt := range tests {
		got := grpcweb.AppendTrailers([]byte("before"), tt.fields)
		if want := "before" + tt.want; string(got) != want {
			t.Errorf("AppendTrailers(%v) = %q, want %q", tt.fields, got, want)
		}
	}
	// The length takes four bytes.
	long := grpcweb.AppendTrailers(nil, []hpack.HeaderField{{Name: "x", Value: string(bytes.Repeat([]byte("v"), 70000))}})
	if n := len(long) - 5; !bytes.Equal(long[:5], []byte{0x80, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}) || n != 70005 {
		t.Errorf("a trailer frame of %d bytes starts %x", n, long[:5])
	}
}

func TestAppendText(t *testing.T) {
	got := grpcweb.AppendText([]byte("x"), []byte{0, 0, 0, 1})
	if string(got) != "xAAAAAQ==" {
		t.Errorf("AppendText = %q", got)
	}
}

func TestTextDecoder(t *testing.T) {
	tests := []struct {
		name   string
		pieces []string
		want   string
		bad    bool
	}{
		{"whole", []string{"aGVsbG8="}, "hello", false},
		{"padding mid-stream", []string{"aGk=aGVsbG8=", "YQ=="}, "hihelloa", false},
		{"cut in groups", []string{"a", "GVs", "bG8", "=YQ", "==", ""}, "helloa", false},
		{"empty", nil, "", false},
		{"incomplete at the end", []string{"aGVsbG8"}, "", true},
		{"padding inside a group", []string{"aG=sbG8="}, "", true},
		{"not base64", []string{"aGV*bG8="}, "", true},
		{"line break", []string{"aGVs\nbG8="}, "", true},
		{"carriage return", []string{"aGVsbG8=", "\r"}, "", true},
		{"line breaks in a whole group", []string{"aGVs\n\n\n\nbG8="}, "", true},
	}
	for _, tt := range tests {
		var d grpcweb.TextDecoder
		var out []byte
		var err error
		for _, p := range tt.pieces {
			if out, err = d.Append(out, []byte(p)); err != nil {
				break
			}
		}
		if err == nil {
			err = d.Close()
		}
		if tt.bad {
			if err == nil {
				t.Errorf("%s: decoded %q, want an error", tt.name, out)
			}
			continue
		}
		if err != nil || string(out) != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.name, out, err, tt.want)
		}
	}
}

func TestFrames(t *testing.T) {
	tests := []struct {
		pieces  []string
		between bool
	}{
		{nil, true},
		{[]string{"\x00\x00\x00\x00\x00"}, true},
		{[]string{"\x00\x00\x00", "\x00\x02", "a", "b"}, true},
		{[]string{"\x00\x00\x00\x00\x02a"}, false},
		{[]string{"\x00\x00\x00\x00"}, false},
		{[]string{"\x00\x00\x00\x00\x01ab"}, false},
		{[]string{"\x00\x00\x00\x01\x00", string(make([]byte, 256))}, true},
		{[]string{"\x80\x00\x00\x00\x03abc\x00\x00\x00\x00\x01", "z"}, true},
	}
	for _, tt := range tests {
		var f grpcweb.Frames
		for _, p := range tt.pieces {
			f.Add([]byte(p))
		}
		if got := f.Between(); got != tt.between {
			t.Errorf("after %q Between() = %v, want %v", tt.pieces, got, tt.between)
		}
	}
}

func TestStatusOf(t *testing.T) {
	tests := map[int]int{400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14, 500: 2, 200: 2, 302: 2, 415: 2}
	for status, want := range tests {
		if got := grpcweb.StatusOf(status); got != want {
			t.Errorf("StatusOf(%d) = %d, want %d", status, got, want)
		}
	}
}
