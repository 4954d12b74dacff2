package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/albctl/albctl/internal/testutil"
)

// webBackend is a real HTTP/1.1 server on 127.0.0.1 that answers with its
// name and what it received.
func webBackend(t *testing.T, name string, tlsOn bool) *httptest.Server {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
				return
			}
		case "/upgrade":
			// A WebSocket-like upgrade: 101, then echo raw bytes back.
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "echo")
			w.WriteHeader(http.StatusSwitchingProtocols)
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			line, _ := brw.ReadString('\n')
			brw.WriteString(name + " echoes " + line)
			brw.Flush()
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s %s host=%s xff=%s proto=%s port=%s body=%s",
			name, r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Forwarded-For"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Port"), body)
	})
	var s *httptest.Server
	if tlsOn {
		s = httptest.NewTLSServer(h)
	} else {
		s = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

func hostPort(s *httptest.Server) string { return s.Listener.Addr().String() }

// webConfig is listener "lsn-test" in front of HTTP group "sgp-test"; tlsOn
// gives it the test certificate (and HTTP/2).
func webConfig(t *testing.T, tlsOn bool, group GroupConfig) Config {
	group.ID = "sgp-test"
	if group.Protocol == "" {
		group.Protocol = GroupHTTP
	}
	lc := ListenerConfig{ID: "lsn-test", Addr: "127.0.0.1:0", GroupID: "sgp-test"}
	if tlsOn {
		lc.HTTP2 = true
		lc.Certificates = []tls.Certificate{testCA(t).Cert(t, "localhost")}
	}
	return Config{Listeners: []ListenerConfig{lc}, Groups: map[string]GroupConfig{"sgp-test": group}}
}

func webClient(t *testing.T, h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost"},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

func TestWebHTTPSBalancesEachRequest(t *testing.T) {
	b1, b2 := webBackend(t, "b1", false), webBackend(t, "b2", false)
	_, addr := startProxy(t, Options{}, webConfig(t, true, GroupConfig{Servers: []ServerConfig{
		{Addr: hostPort(b1), Weight: 100}, {Addr: hostPort(b2), Weight: 50},
	}}))
	_, port, _ := net.SplitHostPort(addr)

	for _, h2 := range []bool{true, false} {
		c := webClient(t, h2)
		counts := map[string]int{}
		for i := 0; i < 150; i++ {
			res, body := get(t, c, "https://"+addr+"/path?q=1")
			if res.StatusCode != 200 {
				t.Fatalf("status %d: %s", res.StatusCode, body)
			}
			if wantProto := map[bool]int{true: 2, false: 1}[h2]; res.ProtoMajor != wantProto {
				t.Fatalf("client spoke HTTP/%d, want HTTP/%d", res.ProtoMajor, wantProto)
			}
			counts[res.Header.Get("X-Backend")]++
			want := fmt.Sprintf(" GET /path?q=1 host=%s xff=127.0.0.1 proto=https port=%s body=", addr, port)
			if !strings.Contains(body, want) {
				t.Fatalf("backend saw %q, want it to contain %q", body, want)
			}
		}
		// One client connection, and still every request picked anew.
		if counts["b1"] != 100 || counts["b2"] != 50 {
			t.Fatalf("HTTP/2=%v: requests per server %v, want b1 100 and b2 50", h2, counts)
		}
	}
}

func TestWebPlainHTTPWithBodyAccessLogAndMetrics(t *testing.T) {
	b := webBackend(t, "b1", false)
	var logBuf testutil.SyncBuffer
	p, addr := startProxy(t, Options{AccessLog: jsonAccessLog(t, &logBuf)},
		webConfig(t, false, GroupConfig{Servers: []ServerConfig{{Addr: hostPort(b), Weight: 100}}}))

	req, _ := http.NewRequest("POST", "http://"+addr+"/submit", strings.NewReader("hello body"))
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "b1 POST /submit") || !strings.Contains(string(body), "xff=203.0.113.7, 127.0.0.1 proto=http") ||
		!strings.HasSuffix(string(body), "body=hello body") {
		t.Fatalf("backend saw %q", body)
	}

	var rec map[string]any
	deadline := time.Now().Add(2 * time.Second)
	for rec == nil && time.Now().Before(deadline) {
		if line, _, ok := strings.Cut(logBuf.String(), "\n"); ok {
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("access log line %q: %v", line, err)
			}
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if rec["method"] != "POST /submit" || rec["http_status"] != 200.0 || rec["server"] != hostPort(b) ||
		rec["bytes_in"] != 10.0 || rec["bytes_out"] != float64(len(body)) || rec["grpc_status"] != nil {
		t.Fatalf("access log record %v", rec)
	}

	var m strings.Builder
	p.WriteMetrics(&m)
	want := `albctl_proxy_http_requests_total{listener="lsn-test",method="POST",server="` + hostPort(b) + `",rule="-",code="200"} 1`
	if !strings.Contains(m.String(), want) {
		t.Fatalf("metrics lack %s:\n%s", want, m.String())
	}
}

func TestWebErrors(t *testing.T) {
	up := webBackend(t, "up", false)
	dead := webBackend(t, "dead", false)
	refused := hostPort(dead)
	dead.Close()
	cases := []struct {
		name       string
		servers    []ServerConfig
		timeout    time.Duration
		path       string
		wantStatus int
		wantBody   string
	}{
		{"no servers", nil, 0, "/", 503, "no healthy servers in group sgp-test"},
		{"refused", []ServerConfig{{Addr: refused, Weight: 100}}, 0, "/", 502, "connection refused to " + refused},
		{"retried on another server", []ServerConfig{{Addr: refused, Weight: 100}, {Addr: hostPort(up), Weight: 1}}, 0, "/", 200, "up GET /"},
		{"request timeout", []ServerConfig{{Addr: hostPort(up), Weight: 100}}, time.Second, "/slow", 504, "request timeout of 1s expired waiting for server " + hostPort(up)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := webConfig(t, true, GroupConfig{Servers: tc.servers})
			cfg.Listeners[0].RequestTimeout = tc.timeout
			_, addr := startProxy(t, Options{}, cfg)
			res, body := get(t, webClient(t, true), "https://"+addr+tc.path)
			if res.StatusCode != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", res.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
		})
	}
}

func TestWebHTTPSGroupAndUpgrade(t *testing.T) {
	b := webBackend(t, "tls-backend", true)
	_, addr := startProxy(t, Options{}, webConfig(t, false, GroupConfig{
		Protocol: GroupHTTPS, Servers: []ServerConfig{{Addr: hostPort(b), Weight: 100}},
	}))
	res, body := get(t, http.DefaultClient, "http://"+addr+"/x")
	if res.StatusCode != 200 || !strings.HasPrefix(body, "tls-backend GET /x") {
		t.Fatalf("through an HTTPS group: %d %q", res.StatusCode, body)
	}

	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /upgrade HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	up, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if up.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d", up.StatusCode)
	}
	fmt.Fprintf(conn, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "tls-backend echoes ping\n" {
		t.Fatalf("after the upgrade read %q, %v", line, err)
	}
}

func TestWebShutdownFinishesRequestsInFlight(t *testing.T) {
	b := webBackend(t, "b1", false)
	p := New(Options{})
	if err := p.Apply(webConfig(t, false, GroupConfig{Servers: []ServerConfig{{Addr: hostPort(b), Weight: 100}}})); err != nil {
		t.Fatal(err)
	}
	addr := p.ListenerAddr("lsn-test")
	idle := webClient(t, false)
	get(t, idle, "http://"+addr+"/") // leaves an idle keep-alive connection

	done := make(chan string, 1)
	go func() {
		res, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			done <- err.Error()
			return
		}
		res.Body.Close()
		done <- res.Status
	}()
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if got := <-done; got != "200 OK" {
		t.Fatalf("request in flight during shutdown ended with %q", got)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("the listener still accepts after shutdown")
	}
}

func TestWebListenerSwitchesGroupProtocolLive(t *testing.T) {
	grpcBackend := startBackend(t, "g1")
	web := webBackend(t, "w1", false)
	p, addr := startProxy(t, Options{}, webConfig(t, true, GroupConfig{Servers: []ServerConfig{{Addr: hostPort(web), Weight: 100}}}))
	if res, _ := get(t, webClient(t, true), "https://"+addr+"/"); res.StatusCode != 200 {
		t.Fatalf("web request: %d", res.StatusCode)
	}
	if err := p.Apply(testConfig(t, GroupConfig{Servers: servers(100, grpcBackend)})); err != nil {
		t.Fatal(err)
	}
	if p.ListenerAddr("lsn-test") != addr {
		t.Fatal("the listener moved")
	}
	if _, err := dial(t, addr).UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("gRPC call after the group became gRPC: %v", err)
	}
}
