package cli

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/internal/testutil/chromium"
	"github.com/albctl/albctl/pkg/demopage"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/echo/echopb"
)

// What the demo page's window.albctlDemo actions resolve to.
type (
	pageUnary struct {
		Calls, OK, Failed int
		Servers           map[string]int
		Errors            []struct {
			Call, Code int
			Message    string
		}
	}
	pageStream struct {
		Messages []struct {
			Message, Server string
			At              int // milliseconds after the call began
		}
		Code  int
		Error string
	}
	pageStatus struct {
		Code    int
		Message string
	}
)

// TestDemoPageInChromium loads the demo page in headless Chromium from an origin other than the
// listener's, so that every call is a real cross-origin gRPC-Web call with its preflight, and
// reads what the page got: over HTTP/2 and, with Chromium's HTTP/2 turned off, over HTTP/1.1.
func TestDemoPageInChromium(t *testing.T) {
	browsers := map[string]*chromium.Browser{
		"HTTP/2":   chromium.Start(t),
		"HTTP/1.1": chromium.Start(t, chromedp.Flag("disable-http2", true)),
	}

	// Each reply waits a little, so that a stream whose messages were held back and sent
	// together shows on the page's clock.
	const delay = 20 * time.Millisecond
	weights := map[string]int{"b1": 50, "b2": 100, "b3": 50}
	path := newState(t)
	mustRun(t, path, "lb", "create", "--name", "demo")
	mustRun(t, path, "servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC")
	for _, name := range []string{"b1", "b2", "b3"} {
		_, addr := testutil.StartEcho(t, echo.Options{Name: name, Delay: delay})
		mustRun(t, path, "servergroup", "add-servers", "grpc-backends", "--server", addr+",weight="+itoa(weights[name]))
	}
	port := testutil.FreePort(t)
	target := "https://127.0.0.1:" + itoa(port)
	page := httptest.NewServer(demopage.Handler(target))
	t.Cleanup(page.Close)
	mustRun(t, path, "cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test")
	mustRun(t, path, "listener", "create", "--lb", "demo", "--protocol", "HTTPS", "--port", itoa(port),
		"--cert", "grpc-example", "--server-group", "grpc-backends",
		"--web-protocols", "grpc-web", "--cors-allow-origin", page.URL)
	startServeProcess(t, path)
	// A native call first, so that the browser finds the listener up and the servers healthy.
	native := echoClient(t, path, port)
	testutil.WaitFor(t, "a native call through the listener", func() bool {
		_, err := native.UnaryEcho(testutil.CtxTimeout(t, time.Second), &echopb.EchoRequest{Message: "ready?"})
		return err == nil
	})

	for _, proto := range []string{"HTTP/2", "HTTP/1.1"} {
		t.Run(strings.ReplaceAll(proto, "/", ""), func(t *testing.T) {
			checkDemoPage(t, browsers[proto], page.URL, weights, delay)
		})
	}
}

// checkDemoPage loads the demo page and checks what its actions get from echo servers with the
// given weights and reply delay behind the listener the page calls.
func checkDemoPage(t *testing.T, b *chromium.Browser, pageURL string, weights map[string]int, delay time.Duration) {
	t.Helper()
	b.Open(t, pageURL, 30*time.Second)
	total := 0
	for _, w := range weights {
		total += w
	}

	var unary pageUnary
	b.Eval(t, "window.albctlDemo.unary(100)", time.Minute, &unary)
	if unary.OK != 100 || len(unary.Errors) > 0 {
		t.Fatalf("unary: %d of %d calls answered; first errors: %v", unary.OK, unary.Calls, unary.Errors[:min(3, len(unary.Errors))])
	}
	for name, w := range weights {
		if want := 100 * w / total; unary.Servers[name] < want-15 || unary.Servers[name] > want+15 {
			t.Errorf("unary: %s answered %d of 100 calls, want %d±15 (weights %v, answers %v)", name, unary.Servers[name], want, weights, unary.Servers)
		}
	}

	var stream pageStream
	b.Eval(t, "window.albctlDemo.stream(10)", time.Minute, &stream)
	if stream.Code != 0 || len(stream.Messages) != 10 {
		t.Fatalf("stream: code %d %q after %d messages, want code 0 after 10", stream.Code, stream.Error, len(stream.Messages))
	}
	for i, m := range stream.Messages {
		if m.Message != "stream" || m.Server != stream.Messages[0].Server || (i > 0 && m.At < stream.Messages[i-1].At) {
			t.Errorf("stream: message %d is %+v, after %+v", i+1, m, stream.Messages[max(0, i-1)])
		}
	}
	// The server spaces its replies by delay: half of that is slack for the browser,
	// which hands a response's progress to the page in batches.
	if spread, want := stream.Messages[9].At-stream.Messages[0].At, int(9*delay/time.Millisecond/2); spread < want {
		t.Errorf("stream: the 10 messages reached the page within %dms of each other, want at least %dms: were they sent together? %+v", spread, want, stream.Messages)
	}

	var unimplemented pageStatus
	b.Eval(t, "window.albctlDemo.unimplemented()", time.Minute, &unimplemented)
	if unimplemented.Code != 12 || !strings.Contains(unimplemented.Message, "NoSuchMethod") {
		t.Errorf("unimplemented: %+v, want code 12 (UNIMPLEMENTED) naming NoSuchMethod", unimplemented)
	}
	var shown string
	b.Eval(t, `document.getElementById("unimplemented-result").textContent`, 10*time.Second, &shown)
	if want := "code 12: " + unimplemented.Message; shown != want {
		t.Errorf("the page shows %q, want %q", shown, want)
	}
}
