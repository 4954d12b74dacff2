package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/balancer"
)

// rulesConfig is listener "lsn-test" with default group "sgp-test" (server
// "default") and groups "sgp-a" and "sgp-b" (servers "a" and "b") that its
// rules may forward to.
func rulesConfig(t *testing.T, rules ...RuleConfig) (Config, map[string]*backend) {
	bs := map[string]*backend{"default": startBackend(t, "default"), "a": startBackend(t, "a"), "b": startBackend(t, "b")}
	cfg := testConfig(t, GroupConfig{Servers: servers(100, bs["default"])})
	cfg.Groups["sgp-a"] = GroupConfig{ID: "sgp-a", Servers: servers(100, bs["a"])}
	cfg.Groups["sgp-b"] = GroupConfig{ID: "sgp-b", Servers: servers(100, bs["b"])}
	cfg.Listeners[0].Rules = rules
	return cfg, bs
}

func forwardRule(id string, to string, conds ...Condition) RuleConfig {
	return RuleConfig{ID: id, Label: id, Conditions: conds, Forward: []WeightedGroup{{GroupID: to, Weight: 100}}}
}

func path(values ...string) Condition { return Condition{Type: "Path", Values: values} }

func header(key string, values ...string) Condition {
	return Condition{Type: "Header", Key: key, Values: values}
}

// serverOf makes a unary call with the metadata given and returns the
// server that answered.
func serverOf(t *testing.T, client testpb.TestServiceClient, md ...string) string {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), md...)
	res, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return res.ServerId
}

// dialFrom dials the listener with grpc-go from a chosen loopback address
// and with a chosen authority.
func dialFrom(t *testing.T, addr, from, authority string) testpb.TestServiceClient {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost"})),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", a) }),
	}
	if authority != "" {
		opts = append(opts, grpc.WithAuthority(authority))
		opts[0] = grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: testCA(t).Pool, ServerName: authority}))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func TestRuleConditionTypes(t *testing.T) {
	unary := "/grpc.testing.TestService/UnaryCall"
	for _, c := range []struct {
		name       string
		cond       Condition
		from, auth string
		md         []string
		want       string
	}{
		{"path by service", path("/grpc.testing.TestService/*"), "127.0.0.1", "", nil, "a"},
		{"path by method", path("/*/UnaryCall"), "127.0.0.1", "", nil, "a"},
		{"path of another service", path("/pkg.Billing/*"), "127.0.0.1", "", nil, "default"},
		{"path is case-sensitive", path("/grpc.testing.testservice/*"), "127.0.0.1", "", nil, "default"},
		{"path exact", path(unary), "127.0.0.1", "", nil, "a"},
		{"header", header("x-canary", "1"), "127.0.0.1", "", []string{"x-canary", "1"}, "a"},
		{"header name ignores case", header("X-Canary", "1"), "127.0.0.1", "", []string{"x-canary", "1"}, "a"},
		{"header other value", header("x-canary", "1"), "127.0.0.1", "", []string{"x-canary", "0"}, "default"},
		{"header missing", header("x-canary", "*"), "127.0.0.1", "", nil, "default"},
		{"header wildcard", header("x-user", "user-??"), "127.0.0.1", "", []string{"x-user", "user-42"}, "a"},
		{"host", Condition{Type: "Host", Values: []string{"*.example.test"}}, "127.0.0.1", "API.example.test", nil, "a"},
		{"host other", Condition{Type: "Host", Values: []string{"*.example.test"}}, "127.0.0.1", "example.test", nil, "default"},
		{"method", Condition{Type: "Method", Values: []string{"POST"}}, "127.0.0.1", "", nil, "a"},
		{"method other", Condition{Type: "Method", Values: []string{"GET"}}, "127.0.0.1", "", nil, "default"},
		{"source range", Condition{Type: "SourceIp", Sources: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/31")}}, "127.0.0.3", "", nil, "a"},
		{"source outside", Condition{Type: "SourceIp", Sources: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/31")}}, "127.0.0.1", "", nil, "default"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, _ := rulesConfig(t, forwardRule("r", "sgp-a", c.cond))
			cfg.Listeners[0].Certificates = []tls.Certificate{testCA(t).Cert(t, "localhost", "api.example.test", "example.test")}
			_, addr := startProxy(t, Options{}, cfg)
			if got := serverOf(t, dialFrom(t, addr, c.from, c.auth), c.md...); got != c.want {
				t.Fatalf("call reached %s, want %s", got, c.want)
			}
		})
	}
}

func TestRulesFirstMatchWinsAndConditionsAnd(t *testing.T) {
	cfg, _ := rulesConfig(t,
		// Both conditions must hold: billing calls with x-canary.
		forwardRule("both", "sgp-b", path("/grpc.testing.TestService/*"), header("x-canary", "1")),
		// Matches every call of the service, but comes second.
		forwardRule("service", "sgp-a", path("/grpc.testing.TestService/*", "/other.Svc/*")),
	)
	_, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)
	if got := serverOf(t, client, "x-canary", "1"); got != "b" {
		t.Fatalf("call with x-canary reached %s, want b (the first rule)", got)
	}
	if got := serverOf(t, client); got != "a" {
		t.Fatalf("call without x-canary reached %s, want a (the second rule)", got)
	}
}

func TestWeightedSplitAndHeaderPin(t *testing.T) {
	cfg, _ := rulesConfig(t,
		forwardRule("pin", "sgp-b", header("x-canary", "1")),
		RuleConfig{ID: "split", Label: "split", Conditions: []Condition{path("/grpc.testing.TestService/*")},
			Forward: []WeightedGroup{{GroupID: "sgp-a", Weight: 90}, {GroupID: "sgp-b", Weight: 10}}},
	)
	var logBuf testutil.SyncBuffer
	p, addr := startProxy(t, Options{AccessLog: jsonAccessLog(t, &logBuf)}, cfg)
	client := dial(t, addr)

	const calls = 10000
	var counts [2]atomic.Int64 // a, b
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= calls {
				res, err := client.UnaryCall(ctxTimeout(t, 10*time.Second), &testpb.SimpleRequest{})
				if err != nil {
					t.Error(err)
					return
				}
				counts[map[string]int{"a": 0, "b": 1}[res.ServerId]].Add(1)
			}
		}()
	}
	wg.Wait()
	a, b := counts[0].Load(), counts[1].Load()
	if a+b != calls {
		t.Fatalf("%d calls answered of %d", a+b, calls)
	}
	if share := float64(b) / calls * 100; share < 8 || share > 12 {
		t.Fatalf("canary got %.2f%% of %d calls, want 10 ± 2", share, calls)
	}
	for i := 0; i < 20; i++ {
		if got := serverOf(t, client, "x-canary", "1"); got != "b" {
			t.Fatalf("pinned call reached %s", got)
		}
	}

	var metrics bytes.Buffer
	p.WriteMetrics(&metrics)
	for _, want := range []string{`rule="split",protocol="grpc",grpc_status="0"} `, `rule="pin",protocol="grpc",grpc_status="0"} 20`} {
		if !strings.Contains(metrics.String(), want) {
			t.Fatalf("metrics lack %s:\n%s", want, metrics.String())
		}
	}
	waitFor(t, "access log lines", func() bool { return strings.Count(logBuf.String(), "\n") >= calls+20 })
	if n := strings.Count(logBuf.String(), `"rule":"pin"`); n != 20 {
		t.Fatalf("access log has %d lines of rule pin, want 20", n)
	}
}

func TestFixedResponseAndHeaderChanges(t *testing.T) {
	insert := RuleConfig{ID: "ins", Label: "ins", Conditions: []Condition{header("x-route", "insert")},
		Forward: []WeightedGroup{{GroupID: "sgp-a", Weight: 100}},
		Insert:  []Field{{Name: "x-tenant", Value: "acme"}, {Name: "x-replaced", Value: "by-rule"}},
		Remove:  []string{"x-secret"},
	}
	retired := RuleConfig{ID: "retired", Label: "retired", Conditions: []Condition{path("/*/StreamingOutputCall")},
		Fixed: &FixedResponse{GRPCStatus: int(codes.Unimplemented), Message: "StreamingOutputCall was retired: use UnaryCall"}}
	cfg, bs := rulesConfig(t, insert, retired)
	_, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)

	serverOf(t, client, "x-route", "insert", "x-secret", "s3cr3t", "x-replaced", "by-client", "x-kept", "1")
	md, _ := bs["a"].Seen()
	if got := md.Get("x-tenant"); len(got) != 1 || got[0] != "acme" {
		t.Fatalf("server saw x-tenant %q", got)
	}
	if got := md.Get("x-replaced"); len(got) != 1 || got[0] != "by-rule" {
		t.Fatalf("server saw x-replaced %q, want only the rule's", got)
	}
	if got := md.Get("x-secret"); len(got) != 0 {
		t.Fatalf("removed header reached the server: %q", got)
	}
	if got := md.Get("x-kept"); len(got) != 1 {
		t.Fatal("other headers were lost")
	}

	before := bs["default"].Calls.Load() + bs["a"].Calls.Load() + bs["b"].Calls.Load()
	stream, err := client.StreamingOutputCall(ctxTimeout(t, 5*time.Second), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantCode(t, err, codes.Unimplemented, "StreamingOutputCall was retired: use UnaryCall")
	if after := bs["default"].Calls.Load() + bs["a"].Calls.Load() + bs["b"].Calls.Load(); after != before {
		t.Fatal("a call answered at the load balancer reached a server")
	}
}

func TestTrafficLimit(t *testing.T) {
	limited := RuleConfig{ID: "lim", Label: "lim", Conditions: []Condition{path("/*/UnaryCall")},
		Forward: []WeightedGroup{{GroupID: "sgp-a", Weight: 100}}, QPS: 100}
	cfg, _ := rulesConfig(t, limited)
	p, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)

	// A burst of 500 calls at once: the bucket holds one second of calls.
	var ok, exhausted, other atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := client.UnaryCall(ctxTimeout(t, 10*time.Second), &testpb.SimpleRequest{})
			switch status.Code(err) {
			case codes.OK:
				ok.Add(1)
			case codes.ResourceExhausted:
				exhausted.Add(1)
				if !strings.Contains(status.Convert(err).Message(), "rule lim: over its traffic limit") {
					t.Errorf("message %q", status.Convert(err).Message())
				}
			default:
				other.Add(1)
				t.Errorf("call failed: %v", err)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	// Tokens refill at 100 per second while the burst runs.
	if max := 100 + int64(took.Seconds()*100) + 1; ok.Load() < 100 || ok.Load() > max {
		t.Fatalf("%d of 500 calls passed in %v, want 100 to %d", ok.Load(), took, max)
	}
	if ok.Load()+exhausted.Load() != 500 {
		t.Fatalf("ok %d, exhausted %d, other %d", ok.Load(), exhausted.Load(), other.Load())
	}
	var metrics bytes.Buffer
	p.WriteMetrics(&metrics)
	want := fmt.Sprintf(`albctl_proxy_rule_limited_total{listener="lsn-test",rule="lim"} %d`, exhausted.Load())
	if !strings.Contains(metrics.String(), want) {
		t.Fatalf("metrics lack %s:\n%s", want, metrics.String())
	}

	// The rule's limiter outlives an Apply that keeps its limits: a fresh
	// one would pass 50 calls at once.
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	var passed atomic.Int64
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err == nil {
				passed.Add(1)
			}
		}()
	}
	wg.Wait()
	// Since the burst began, the bucket held 100 tokens and refilled 100 a
	// second.
	if most := 100 + int64(time.Since(start).Seconds()*100) + 1; ok.Load()+passed.Load() > most {
		t.Fatalf("%d calls passed in the burst and %d right after Apply, more than the %d the bucket had", ok.Load(), passed.Load(), most)
	}
}

func TestPerAddressTrafficLimit(t *testing.T) {
	limited := RuleConfig{ID: "lim", Label: "lim", Conditions: []Condition{path("/*/UnaryCall")},
		Forward: []WeightedGroup{{GroupID: "sgp-a", Weight: 100}}, QPS: 1000, PerIPQPS: 20}
	cfg, _ := rulesConfig(t, limited)
	_, addr := startProxy(t, Options{}, cfg)
	passed := map[string]int{}
	for _, from := range []string{"127.0.0.1", "127.0.0.2"} {
		client := dialFrom(t, addr, from, "")
		for i := 0; i < 60; i++ {
			if _, err := client.UnaryCall(ctxTimeout(t, 5*time.Second), &testpb.SimpleRequest{}); err == nil {
				passed[from]++
			}
		}
	}
	for from, n := range passed {
		if n < 20 || n > 30 {
			t.Fatalf("%s passed %d of 60 calls at 20 per second per address: %v", from, n, passed)
		}
	}
	if len(passed) != 2 {
		t.Fatalf("passed %v", passed)
	}
}

func TestUCHStickinessAndMove(t *testing.T) {
	bs := []*backend{startBackend(t, "s1"), startBackend(t, "s2"), startBackend(t, "s3")}
	cfg := testConfig(t, GroupConfig{Scheduler: balancer.SchedulerUCH, HashKey: &HashKey{Header: true, Name: "x-user-id"}, Servers: servers(100, bs...)})
	p, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)

	home := map[string]string{}
	for u := 0; u < 30; u++ {
		user := fmt.Sprint("user-", u)
		home[user] = serverOf(t, client, "x-user-id", user)
		for i := 0; i < 5; i++ {
			if got := serverOf(t, client, "x-user-id", user); got != home[user] {
				t.Fatalf("%s moved from %s to %s", user, home[user], got)
			}
		}
	}
	spread := map[string]int{}
	for _, s := range home {
		spread[s]++
	}
	if len(spread) != 3 {
		t.Fatalf("30 users on %v", spread)
	}

	// The server of user-0 goes unhealthy: its users move, the others stay.
	down := home["user-0"]
	for _, b := range bs {
		if b.Name == down {
			p.Backend("sgp-test", b.Addr).SetHealth(balancer.HealthUnhealthy)
		}
	}
	moved := map[string]string{}
	for user, was := range home {
		got := serverOf(t, client, "x-user-id", user)
		if was != down && got != was {
			t.Fatalf("%s moved from healthy %s to %s", user, was, got)
		}
		if got == down {
			t.Fatalf("%s still on unhealthy %s", user, down)
		}
		moved[user] = got
	}
	for user := range home {
		if got := serverOf(t, client, "x-user-id", user); got != moved[user] {
			t.Fatalf("%s not sticky after the move: %s then %s", user, moved[user], got)
		}
	}
}

func TestRulesChangeUnderLoad(t *testing.T) {
	cfg, _ := rulesConfig(t)
	p, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)

	l := startLoad(8, func() error {
		ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "x-canary", "1", "x-sleep", "2ms")
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
		return err
	})
	variants := [][]RuleConfig{
		{forwardRule("pin", "sgp-b", header("x-canary", "1"))},
		{RuleConfig{ID: "split", Label: "split", Conditions: []Condition{path("/*/UnaryCall")},
			Forward: []WeightedGroup{{GroupID: "sgp-a", Weight: 50}, {GroupID: "sgp-b", Weight: 50}}}},
		nil,
		{forwardRule("pin", "sgp-a", header("x-canary", "1")), forwardRule("all", "sgp-b", path("/*"))},
	}
	for i := 0; i < 40; i++ {
		cfg.Listeners[0].Rules = variants[i%len(variants)]
		if err := p.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.stop()
	if l.calls.Load() < 100 || l.failed.Load() > 0 {
		t.Fatalf("%d calls, %d failed while rules changed; first: %v", l.calls.Load(), l.failed.Load(), l.firstErr.Load())
	}
}

func TestBadRulesChangeNothing(t *testing.T) {
	cfg, _ := rulesConfig(t, forwardRule("pin", "sgp-b", header("x-canary", "1")))
	p, addr := startProxy(t, Options{}, cfg)
	client := dial(t, addr)
	for _, bad := range []RuleConfig{
		forwardRule("x", "sgp-nope", path("/*")),
		{ID: "x", Label: "x", Conditions: []Condition{{Type: "Nope", Values: []string{"1"}}}, Forward: []WeightedGroup{{GroupID: "sgp-a", Weight: 1}}},
		{ID: "x", Label: "x", Conditions: []Condition{path("/*")}, Forward: []WeightedGroup{{GroupID: "sgp-a", Weight: 0}}},
		{ID: "x", Label: "x", Conditions: []Condition{path("/*")}},
	} {
		next := cfg
		next.Listeners = []ListenerConfig{cfg.Listeners[0]}
		next.Listeners[0].Rules = []RuleConfig{bad}
		if err := p.Apply(next); err == nil {
			t.Fatalf("rule %+v accepted", bad)
		}
		if got := serverOf(t, client, "x-canary", "1"); got != "b" {
			t.Fatalf("after a refused Apply the call reached %s", got)
		}
	}
}

func TestWebRules(t *testing.T) {
	bd, ba := webBackend(t, "default", false), webBackend(t, "a", false)
	cfg := webConfig(t, true, GroupConfig{Servers: []ServerConfig{{Addr: hostPort(bd), Weight: 100}}})
	cfg.Groups["sgp-a"] = GroupConfig{ID: "sgp-a", Protocol: GroupHTTP, Servers: []ServerConfig{{Addr: hostPort(ba), Weight: 100}}}
	to := []WeightedGroup{{GroupID: "sgp-a", Weight: 100}}
	cfg.Listeners[0].Rules = []RuleConfig{
		{ID: "q", Label: "q", Conditions: []Condition{{Type: "QueryString", Key: "tenant", Values: []string{"acme"}}}, Forward: to},
		{ID: "c", Label: "c", Conditions: []Condition{{Type: "Cookie", Key: "beta", Values: []string{"on"}}}, Forward: to,
			Insert: []Field{{Name: "x-forwarded-by-rule", Value: "c"}}},
		{ID: "gone", Label: "gone", Conditions: []Condition{path("/old/*")},
			Fixed: &FixedResponse{HTTPCode: 410, ContentType: "application/json", Body: `{"error":"gone"}`}},
		{ID: "lim", Label: "lim", Conditions: []Condition{path("/limited")}, Forward: to, QPS: 1},
	}
	_, addr := startProxy(t, Options{}, cfg)
	c := webClient(t, true)

	if res, _ := get(t, c, "https://"+addr+"/x?tenant=acme"); res.Header.Get("X-Backend") != "a" {
		t.Fatal("query condition did not route to a")
	}
	if res, _ := get(t, c, "https://"+addr+"/x?tenant=other"); res.Header.Get("X-Backend") != "default" {
		t.Fatal("other query value did not go to the default group")
	}
	req, _ := http.NewRequest("GET", "https://"+addr+"/x", nil)
	req.Header.Set("Cookie", "a=1; beta=on")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("X-Backend") != "a" {
		t.Fatal("cookie condition did not route to a")
	}
	res, body := get(t, c, "https://"+addr+"/old/page")
	if res.StatusCode != 410 || res.Header.Get("Content-Type") != "application/json" || body != `{"error":"gone"}` {
		t.Fatalf("fixed response: %d %q %q", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	codes := []int{}
	for i := 0; i < 3; i++ {
		res, _ := get(t, c, "https://"+addr+"/limited")
		codes = append(codes, res.StatusCode)
	}
	if codes[0] != 200 || codes[1] != 503 || codes[2] != 503 {
		t.Fatalf("limit of 1 per second: statuses %v", codes)
	}
}

// TestRuleHeaderChangesKeepTheTimeout sends a call whose grpc-timeout comes after a header a
// rule removes: the backend still gets the time left in grpc-timeout, and every other field
// as it was.
func TestRuleHeaderChangesKeepTheTimeout(t *testing.T) {
	b := startBackend(t, "b1")
	cfg := testConfig(t, GroupConfig{Servers: servers(1, b)})
	cfg.Listeners[0].Rules = []RuleConfig{{ID: "rule-1", Label: "drop",
		Conditions: []Condition{path("/grpc.testing.TestService/*")},
		Forward:    []WeightedGroup{{GroupID: "sgp-test", Weight: 1}}, Remove: []string{"x-drop"}}}
	_, addr := startProxy(t, Options{}, cfg)

	fr := rawH2(t, addr)
	block := headerBlock([2]string{":method", "POST"}, [2]string{":scheme", "https"}, [2]string{":path", "/grpc.testing.TestService/UnaryCall"},
		[2]string{":authority", "localhost"}, [2]string{"x-drop", "1"}, [2]string{"grpc-timeout", "5S"}, [2]string{"content-type", "application/grpc"},
		[2]string{"te", "trailers"}, [2]string{"x-keep", "2"})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
	_ = fr.WriteData(1, true, []byte{0, 0, 0, 0, 0})
	grpcStatus := ""
	for grpcStatus == "" {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			for _, hf := range f.RegularFields() {
				if hf.Name == "grpc-status" {
					grpcStatus = hf.Value
				}
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset: %v", f.ErrCode)
		}
	}
	md, left := b.Seen()
	if grpcStatus != "0" || left <= 0 || left > 5*time.Second || len(md.Get("x-drop")) > 0 || md.Get("x-keep")[0] != "2" || md.Get("content-type")[0] != "application/grpc" {
		t.Fatalf("status %s; the backend saw %v with %v left", grpcStatus, md, left)
	}
}
