//lint:file-ignore SA1019 the plain HTTP/2 backend is x/net's http2.Server behind h2c: prior-knowledge h2c, as the proxy speaks to backends.

package proxy

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"go/build"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// grpcGoH2specExceptions are the h2spec cases that a grpc-go server behind
// the proxy decides with its own answer. It answers each of h2spec's
// requests (none is gRPC) as soon as their HEADERS arrive: 415 in one
// HEADERS frame that ends the stream, no DATA, and RST_STREAM(NO_ERROR) if
// the request was still open. The h2c server covers these cases.
var grpcGoH2specExceptions = map[string]string{
	"generic/2/2":     "expects a DATA frame in the response",
	"generic/2/3":     "expects a DATA frame in the response",
	"http2/6.5.3/1":   "skipped by h2spec: the response has no DATA",
	"http2/6.9.1/1":   "skipped by h2spec: the response has no DATA",
	"http2/6.9.2/1":   "skipped by h2spec: the response has no DATA",
	"http2/6.9.2/2":   "skipped by h2spec: the response has no DATA",
	"http2/5.1.2/1":   "answered streams close at once, so the 1001 streams are never open together",
	"http2/6.9.1/3":   "h2spec takes the first RST_STREAM: the server's NO_ERROR may come before FLOW_CONTROL_ERROR",
	"http2/8.1.2.6/1": "the answer may close the stream before the DATA that breaks content-length arrives: STREAM_CLOSED, not PROTOCOL_ERROR",
	"http2/8.1.2.6/2": "the answer may close the stream before the DATA that breaks content-length arrives: STREAM_CLOSED, not PROTOCOL_ERROR",
}

// TestH2spec runs h2spec, the HTTP/2 conformance tester, against a listener
// with a plain HTTP/2 server behind it and with a grpc-go server behind it.
// It needs the h2spec binary: $H2SPEC, h2spec on $PATH or in $GOPATH/bin
// (scripts/install-test-deps.sh installs it).
func TestH2spec(t *testing.T) {
	bin := h2specBinary(t)
	kinds := []struct {
		name       string
		start      func(*testing.T) string
		exceptions map[string]string
	}{
		{"h2c", startH2CServer, nil},
		{"grpc-go", func(t *testing.T) string { return startBackend(t, "h2spec").Addr }, grpcGoH2specExceptions},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			_, addr := startProxy(t, Options{}, testConfig(t, GroupConfig{Servers: []ServerConfig{{Addr: k.start(t), Weight: 100}}}))
			checkH2spec(t, runH2spec(t, bin, addr), k.exceptions)
		})
	}
}

// h2specBinary finds h2spec. Where it is missing the test skips, but not in
// CI, where a test that needs a tool must run.
func h2specBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("H2SPEC"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("h2spec"); err == nil {
		return bin
	}
	for _, dir := range filepath.SplitList(build.Default.GOPATH) {
		bin := filepath.Join(dir, "bin", "h2spec")
		if _, err := os.Stat(bin); err == nil {
			return bin
		}
	}
	const msg = "h2spec not installed; set H2SPEC, put it on PATH or run scripts/install-test-deps.sh " +
		"(go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// startH2CServer is a plain HTTP/2 server that reads each request's body
// and answers 200 with a short body.
func startH2CServer(t *testing.T) string {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello\n")
	})
	srv := httptest.NewServer(h2c.NewHandler(h, &http2.Server{}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// h2specCase is one case of an h2spec run.
type h2specCase struct {
	id      string // as h2spec names it on its command line, e.g. "http2/6.5.3/2"
	desc    string
	failed  bool
	skipped bool
	text    string // h2spec's expected answers and the actual one, a line each
}

func (c h2specCase) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", c.id, c.desc)
	if c.skipped {
		b.WriteString("\n    skipped by h2spec")
		return b.String()
	}
	lines := strings.Split(strings.TrimSpace(c.text), "\n")
	if len(lines) == 1 {
		fmt.Fprintf(&b, "\n    error:    %s", lines[0])
		return b.String()
	}
	for i, l := range lines[:len(lines)-1] {
		label := "expected:"
		if i > 0 {
			label = "       or"
		}
		fmt.Fprintf(&b, "\n    %s %s", label, l)
	}
	fmt.Fprintf(&b, "\n    actual:   %s", lines[len(lines)-1])
	return b.String()
}

// runH2spec runs every h2spec case against the TLS listener at addr.
func runH2spec(t *testing.T, bin, addr string) []h2specCase {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	// A case that fails costs the per-case timeout; when most pass the run
	// takes about 15 s.
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	// -o 2: x/net's server closes a connection 1 s after its GOAWAY, which
	// h2spec's own timeout must outlast.
	cmd := exec.CommandContext(ctx, bin, "-t", "-k", "-h", "127.0.0.1", "-p", port, "-o", "2", "-j", report)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if ctx.Err() != nil || err != nil && !errors.As(err, &exit) {
		t.Fatalf("h2spec: %v %v\n%s", err, ctx.Err(), tail(out, 40))
	}
	// h2spec exits 1 when a case fails, which the report shows, and before
	// writing it when it cannot connect.
	data, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("h2spec wrote no report (%v): %v\n%s", err, rerr, tail(out, 40))
	}
	cases, perr := parseH2specReport(data)
	if perr != nil {
		t.Fatalf("h2spec report: %v\n%s", perr, tail(out, 40))
	}
	if len(cases) == 0 {
		t.Fatalf("h2spec ran no cases\n%s", tail(out, 40))
	}
	return cases
}

// parseH2specReport reads h2spec's JUnit report. h2spec files every failed
// case under <error>, with the expected answers and the actual one as text.
func parseH2specReport(data []byte) ([]h2specCase, error) {
	type text struct {
		Text string `xml:",chardata"`
	}
	var report struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Cases   []struct {
				Desc    string `xml:"classname,attr"`
				Failure *text  `xml:"failure"`
				Error   *text  `xml:"error"`
				Skipped *text  `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &report); err != nil {
		return nil, err
	}
	var cases []h2specCase
	for _, s := range report.Suites {
		for i, c := range s.Cases {
			hc := h2specCase{id: s.Package + "/" + strconv.Itoa(i+1), desc: c.Desc, skipped: c.Skipped != nil}
			for _, f := range []*text{c.Failure, c.Error} {
				if f != nil {
					hc.failed = true
					hc.text += f.Text
				}
			}
			cases = append(cases, hc)
		}
	}
	return cases, nil
}

// checkH2spec fails the test for every case that did not pass and is not
// one of exceptions.
func checkH2spec(t *testing.T, cases []h2specCase, exceptions map[string]string) {
	t.Helper()
	var bad, excused []string
	seen := map[string]bool{}
	passed := 0
	for _, c := range cases {
		seen[c.id] = true
		switch {
		case !c.failed && !c.skipped:
			passed++
		case exceptions[c.id] != "":
			excused = append(excused, c.id)
		default:
			bad = append(bad, c.String())
		}
	}
	t.Logf("h2spec: %d of %d cases pass; excused: %s", passed, len(cases), strings.Join(excused, " "))
	for _, id := range slices.Sorted(maps.Keys(exceptions)) {
		if !seen[id] {
			t.Errorf("h2spec has no case %s (another h2spec version?)", id)
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d h2spec cases do not pass:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// tail returns the last n lines of out.
func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
