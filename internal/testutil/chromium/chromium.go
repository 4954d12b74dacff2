// Package chromium runs Debian's headless Chromium for tests that need a real browser, such as
// the demo page's gRPC-Web calls through a listener. Only tests use it; the browser it starts is
// killed when the test ends.
package chromium

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// DefaultPath is where Debian's chromium package puts the browser; CHROMIUM overrides it.
const DefaultPath = "/usr/bin/chromium"

// lifetime bounds a browser's whole life, whatever the test asks of it.
const lifetime = 3 * time.Minute

// Browser is one headless Chromium with one tab.
type Browser struct {
	ctx context.Context

	mu  sync.Mutex
	log []string // the page's console messages and uncaught exceptions
}

// Start runs a headless Chromium with a fresh profile and the flags a test on a machine without
// network needs, plus extra (such as chromedp.Flag("disable-http2", true)). It skips the test
// when the browser is missing, except where CI is set: there it fails.
func Start(t testing.TB, extra ...chromedp.ExecAllocatorOption) *Browser {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path = DefaultPath
	}
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("chromium not found at %s; set CHROMIUM or run scripts/install-test-deps.sh (Debian package chromium)", path)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Containers often have a small /dev/shm, where Chromium's renderers crash.
		chromedp.Flag("disable-dev-shm-usage", true),
		// albctl's listeners present certificates from albctl's own CA.
		chromedp.Flag("ignore-certificate-errors", true),
	}, extra...)
	ctx, cancelTimeout := context.WithTimeout(context.Background(), lifetime)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	b := &Browser{}
	var cancelBrowser context.CancelFunc
	b.ctx, cancelBrowser = chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser() // closes the browser over CDP, and waits for it
		cancelAlloc()   // kills the process if it is still there, and waits for it
		cancelTimeout()
		if log := b.console(); t.Failed() && log != "" {
			t.Logf("chromium console:\n%s", log)
		}
	})
	// The first Run starts the browser, tied to b.ctx rather than to a shorter context.
	if err := chromedp.Do(b.ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	messages := chromedp.Console(b.ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.log = append(b.log, m.String())
			b.mu.Unlock()
		}
	}()
	return b
}

func (b *Browser) console() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.log, "\n")
}

// Open loads url in the tab and waits for its load event, within timeout.
func (b *Browser) Open(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v\nconsole:\n%s", url, err, b.console())
	}
}

// Eval evaluates the JavaScript expression expr in the loaded page, waits for it if it is a
// promise, and stores its JSON value in out, all within timeout. For example:
//
//	b.Eval(t, "window.albctlDemo.unary(100)", time.Minute, &result)
func (b *Browser) Eval(t testing.TB, expr string, timeout time.Duration, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v\nconsole:\n%s", expr, err, b.console())
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("evaluating %s: %v in %s", expr, err, raw)
	}
}
