package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/albctl/albctl/internal/testutil"
)

func prefixes(list ...string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, s := range list {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestACLCheck(t *testing.T) {
	white := (&ACL{Allow: true, Prefixes: prefixes("10.0.0.0/8", "10.1.0.0/16", "192.168.1.7/32", "192.168.1.8/31", "2001:db8::/32", "::1/128", "::ffff:172.16.0.0/108", "0.0.0.0/32")}).compile()
	tests := []struct {
		addr string
		in   bool
	}{
		{"10.0.0.0", true}, {"10.255.255.255", true}, {"10.1.2.3", true}, {"11.0.0.0", false}, {"9.255.255.255", false},
		{"192.168.1.6", false}, {"192.168.1.7", true}, {"192.168.1.8", true}, {"192.168.1.9", true}, {"192.168.1.10", false},
		{"172.16.0.1", true}, {"172.31.255.255", true}, {"172.32.0.0", false},
		{"::ffff:10.9.9.9", true}, {"::ffff:11.0.0.1", false},
		{"2001:db8::", true}, {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true}, {"2001:db9::", false},
		{"::1", true}, {"::2", false}, {"::", false}, {"0.0.0.0", true}, {"0.0.0.1", false},
		{"fe80::1%lo", false}, {"255.255.255.255", false}, {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false},
	}
	black := *white
	black.allow = false
	for _, tt := range tests {
		addr := netip.MustParseAddr(tt.addr)
		if got := white.admits(addr); got != tt.in {
			t.Errorf("white list admits %s: %v, want %v", tt.addr, got, tt.in)
		}
		if got := black.admits(addr); got == tt.in {
			t.Errorf("black list admits %s: %v, want %v", tt.addr, got, !tt.in)
		}
	}
	if n := len(white.ranges); n != 7 {
		t.Errorf("%d ranges, want the 8 prefixes merged into 7: %v", n, white.ranges)
	}
	if (&ACL{Allow: true}).compile().admits(netip.MustParseAddr("127.0.0.1")) {
		t.Error("an empty white list admits a client")
	}
	if !(&ACL{}).compile().admits(netip.MustParseAddr("127.0.0.1")) {
		t.Error("an empty black list refuses a client")
	}
	if err := (&ACL{Prefixes: []netip.Prefix{{}}}).validate(); err == nil {
		t.Error("an invalid prefix passes")
	}
}

// TestACLCheckMatchesContains compares the ranges with a plain scan of the
// prefixes on random ones, nested and overlapping as they come.
func TestACLCheckMatchesContains(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		var ps []netip.Prefix
		for i := 0; i < 1+r.IntN(200); i++ {
			var b [4]byte
			b[0], b[1], b[2], b[3] = 10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))
			ps = append(ps, netip.PrefixFrom(netip.AddrFrom4(b), 8+r.IntN(25)).Masked())
		}
		check := (&ACL{Allow: true, Prefixes: ps}).compile()
		for i := 0; i < 500; i++ {
			addr := netip.AddrFrom4([4]byte{10, byte(r.IntN(5)), byte(r.IntN(256)), byte(r.IntN(256))})
			want := false
			for _, p := range ps {
				want = want || p.Contains(addr)
			}
			if got := check.admits(addr); got != want {
				t.Fatalf("round %d: %s admitted %v, want %v; prefixes %v", round, addr, got, want, ps)
			}
		}
	}
}

// BenchmarkACLAdmits looks a client up in three ACLs of 500 entries each.
func BenchmarkACLAdmits(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var ps []netip.Prefix
	for i := 0; i < 1000; i++ {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}), 16+r.IntN(17)).Masked())
		if i < 500 {
			var a [16]byte
			for j := range a {
				a[j] = byte(r.IntN(256))
			}
			ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(a), 32+r.IntN(97)).Masked())
		}
	}
	check := (&ACL{Allow: true, Prefixes: ps}).compile()
	clients := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"), netip.MustParseAddr("::ffff:192.0.2.1")}
	for i := 0; b.Loop(); i++ {
		check.admits(clients[i%len(clients)])
	}
}

// aclConfig is testConfig with an ACL on listener "lsn-test".
func aclConfig(t *testing.T, b *backend, allow bool, list ...string) Config {
	cfg := testConfig(t, GroupConfig{Servers: servers(100, b)})
	cfg.Listeners[0].ACL = &ACL{Allow: allow, Prefixes: prefixes(list...)}
	return cfg
}

// refused dials addr from a source address and reports whether the
// listener closed the connection at once without sending a byte.
func refused(t *testing.T, addr, from string) bool {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := dialer.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return true // the reset came before the dial returned
	}
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	var buf [1]byte
	n, err := c.Read(buf[:])
	switch {
	case n > 0:
		t.Fatalf("from %s the listener sent %q", from, buf[:n])
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false // the listener waits for the client's TLS hello: admitted
	case err == nil:
		t.Fatalf("read from %s: no bytes and no error", from)
	}
	return true
}

func callFrom(t *testing.T, addr, from string) error {
	t.Helper()
	_, err := dialFrom(t, addr, from, "").UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{})
	return err
}

func TestACLAtAccept(t *testing.T) {
	b := startBackend(t, "b")
	for _, tt := range []struct {
		name           string
		allow          bool
		list           []string
		admitted, shut []string
	}{
		{"white list", true, []string{"127.0.0.2/32"}, []string{"127.0.0.2"}, []string{"127.0.0.1"}},
		{"white list of a range", true, []string{"127.0.0.0/31", "10.0.0.0/8"}, []string{"127.0.0.1"}, []string{"127.0.0.2"}},
		{"black list", false, []string{"127.0.0.2/32"}, []string{"127.0.0.1"}, []string{"127.0.0.2"}},
		{"empty white list admits nobody", true, nil, nil, []string{"127.0.0.1", "127.0.0.2"}},
		{"empty black list admits everybody", false, nil, []string{"127.0.0.1", "127.0.0.2"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startProxy(t, Options{}, aclConfig(t, b, tt.allow, tt.list...))
			for _, from := range tt.admitted {
				if err := callFrom(t, addr, from); err != nil {
					t.Errorf("call from %s: %v", from, err)
				}
				if refused(t, addr, from) {
					t.Errorf("connection from %s refused", from)
				}
			}
			for _, from := range tt.shut {
				wantCode(t, callFrom(t, addr, from), codes.Unavailable, "")
				if !refused(t, addr, from) {
					t.Errorf("connection from %s admitted", from)
				}
			}
		})
	}
}

func TestACLIPv6(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback (::1) on this machine: %v", err)
	} else {
		ln.Close()
	}
	b := startBackend(t, "b")
	for _, allow := range []bool{true, false} {
		cfg := aclConfig(t, b, allow, "::1/128", "127.0.0.0/8")
		cfg.Listeners[0].Addr = "[::1]:0"
		_, addr := startProxy(t, Options{}, cfg)
		err := callFrom(t, addr, "::1")
		if allow && err != nil {
			t.Errorf("white list with ::1: call from ::1: %v", err)
		}
		if !allow {
			wantCode(t, err, codes.Unavailable, "")
		}
		if got := refused(t, addr, "::1"); got == allow {
			t.Errorf("allow %v: connection from ::1 refused %v", allow, got)
		}
	}
}

func TestACLOnHTTPListener(t *testing.T) {
	web := webBackend(t, "web", false)
	cfg := webConfig(t, false, GroupConfig{Servers: []ServerConfig{{Addr: hostPort(web), Weight: 100}}})
	cfg.Listeners[0].ACL = &ACL{Allow: true, Prefixes: prefixes("127.0.0.2/32")}
	p := New(Options{})
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(ctxTimeout(t, 5*time.Second)) })
	addr := p.ListenerAddr("lsn-test")
	get := func(from string) (string, error) {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext}}
		defer client.CloseIdleConnections()
		res, err := client.Get("http://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		return string(body), err
	}
	if body, err := get("127.0.0.2"); err != nil || !strings.HasPrefix(body, "web GET /") {
		t.Fatalf("from 127.0.0.2: %q, %v", body, err)
	}
	if body, err := get("127.0.0.1"); err == nil {
		t.Fatalf("from 127.0.0.1 the listener answered %q", body)
	}
	if !refused(t, addr, "127.0.0.1") {
		t.Fatal("HTTP connection from 127.0.0.1 admitted")
	}
}

func TestACLDenialsCountedAndLogged(t *testing.T) {
	var logBuf testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	b := startBackend(t, "b")
	p, addr := startProxy(t, Options{Logger: log}, aclConfig(t, b, false, "127.0.0.1/32"))
	metric := func() string {
		var buf bytes.Buffer
		if err := p.WriteMetrics(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	if m := metric(); !strings.Contains(m, "# TYPE albctl_proxy_acl_denied_total counter\nalbctl_proxy_acl_denied_total{listener=\"lsn-test\"} 0\n") {
		t.Fatalf("metrics before any denial:\n%s", m)
	}
	for i := 0; i < 5; i++ {
		if !refused(t, addr, "127.0.0.1") {
			t.Fatal("connection from 127.0.0.1 admitted")
		}
	}
	if err := callFrom(t, addr, "127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "5 denials", func() bool {
		return strings.Contains(metric(), `albctl_proxy_acl_denied_total{listener="lsn-test"} 5`+"\n")
	})
	refusals := func() []string {
		var out []string
		for _, line := range strings.Split(logBuf.String(), "\n") {
			if strings.Contains(line, "refused by the listener's ACL") {
				out = append(out, line)
			}
		}
		return out
	}
	// Lines come at most once a second: the first refusal's, then one for
	// the four since and the next.
	if lines := refusals(); len(lines) != 1 || !strings.Contains(lines[0], `level=INFO msg="client refused by the listener's ACL" listener=lsn-test client=127.0.0.1:`) ||
		!strings.HasSuffix(lines[0], " denied=1") {
		t.Fatalf("log lines of refusals:\n%s", strings.Join(lines, "\n"))
	}
	time.Sleep(1100 * time.Millisecond)
	refused(t, addr, "127.0.0.1")
	waitFor(t, "a second log line", func() bool { return len(refusals()) == 2 })
	if line := refusals()[1]; !strings.HasSuffix(line, " denied=5") {
		t.Fatalf("second line: %s", line)
	}

	// Taking the ACL off keeps the count, and admits the client.
	if err := p.Apply(testConfig(t, GroupConfig{Servers: servers(100, b)})); err != nil {
		t.Fatal(err)
	}
	if err := callFrom(t, addr, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if m := metric(); !strings.Contains(m, `albctl_proxy_acl_denied_total{listener="lsn-test"} 6`+"\n") {
		t.Fatalf("metrics after the ACL went:\n%s", m)
	}
}

// TestACLChangeUnderLoad narrows a white list while a client admitted before
// makes calls: its connection is kept and every call succeeds, while new
// connections from its address are refused from the Apply on.
func TestACLChangeUnderLoad(t *testing.T) {
	b := startBackend(t, "b")
	p, addr := startProxy(t, Options{}, aclConfig(t, b, true, "127.0.0.1/32", "127.0.0.2/32"))
	client := dialFrom(t, addr, "127.0.0.1", "")
	if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}

	l := startLoad(8, func() error {
		_, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{})
		return err
	})
	waitFor(t, "calls under way", func() bool { return l.calls.Load() > 200 })
	if err := p.Apply(aclConfig(t, b, true, "127.0.0.2/32")); err != nil {
		t.Fatal(err)
	}
	before := l.calls.Load()
	for i := 0; i < 3; i++ {
		if !refused(t, addr, "127.0.0.1") {
			t.Fatal("a new connection from 127.0.0.1 was admitted after the change")
		}
		wantCode(t, callFrom(t, addr, "127.0.0.1"), codes.Unavailable, "")
		if err := callFrom(t, addr, "127.0.0.2"); err != nil {
			t.Fatalf("call from 127.0.0.2: %v", err)
		}
	}
	waitFor(t, "calls after the change", func() bool { return l.calls.Load() > before+2000 })
	l.stop()
	if n := l.failed.Load(); n != 0 {
		t.Fatalf("%d of %d calls on the admitted connection failed; first: %v", n, l.calls.Load(), l.firstErr.Load())
	}
	// Three refused dials and three clients' calls, whose connections grpc-go
	// may have tried again since.
	var m bytes.Buffer
	p.WriteMetrics(&m)
	var denied int
	if _, err := fmt.Sscanf(m.String()[strings.Index(m.String(), "albctl_proxy_acl_denied_total{"):], `albctl_proxy_acl_denied_total{listener="lsn-test"} %d`, &denied); err != nil || denied < 6 {
		t.Fatalf("denied %d (%v), want at least 6; metrics:\n%s", denied, err, m.String())
	}
	t.Logf("%d calls on the admitted connection, %d after the change", l.calls.Load(), l.calls.Load()-before)
}
