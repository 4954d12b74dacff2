package obs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/proxy/obs"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// output logs recs through a fresh access log and returns what it wrote.
func output(t *testing.T, format obs.Format, recs []obs.Record) string {
	t.Helper()
	var buf testutil.SyncBuffer
	a := obs.NewAccessLog(&buf, format, nil)
	for i := range recs {
		a.Log(&recs[i])
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

var formatRecords = []obs.Record{
	{
		Time: time.Date(2024, 3, 5, 6, 7, 8, 123456789, time.UTC), Client: "10.0.0.1:5555", Listener: "lsn-a",
		Method: "/pkg.Svc/Do", Server: "10.0.0.2:50051", Rule: "canary", Code: 0, Duration: 1234567, BytesIn: 10, BytesOut: 20,
	},
	{
		Time: time.Date(2024, 3, 5, 8, 7, 8, 500000000, time.FixedZone("", 2*3600)), Client: "", Listener: "web",
		Method: "GET /a b?x=1&y=<2>", Server: "", Web: true, Code: 404, Duration: 999,
	},
	{
		Time: time.Date(2024, 12, 31, 23, 59, 59, 999999999, time.UTC), Client: "\x01\xff", Listener: `lsn"x`,
		Method: "a=b\t\n", Server: `back\slash`, Web: true, Code: 0, Duration: 2500 * time.Millisecond,
		BytesIn: 1 << 40, BytesOut: 7,
	},
	{
		Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Client: "é", Listener: "l", Method: "/p\u2028q",
		Server: "s", Code: 14, Duration: 90 * time.Minute, BytesIn: 1, BytesOut: 2,
	},
	{
		Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Client: "127.0.0.1:4000", Listener: "l", Method: "/pkg.Svc/Do",
		Server: "s", Protocol: "grpc-web-text", Code: 12, Duration: time.Millisecond, BytesIn: 8, BytesOut: 40,
	},
}

func TestTextLines(t *testing.T) {
	want := `2024-03-05T06:07:08.123Z client=10.0.0.1:5555 listener=lsn-a method=/pkg.Svc/Do server=10.0.0.2:50051 rule=canary grpc_status=0 duration_ms=1.234 bytes_in=10 bytes_out=20
2024-03-05T06:07:08.500Z client="" listener=web method="GET /a b?x=1&y=<2>" server=- rule=- http_status=404 duration_ms=0.000 bytes_in=0 bytes_out=0
2024-12-31T23:59:59.999Z client="\x01\xff" listener="lsn\"x" method="a=b\t\n" server=back\slash rule=- http_status=0 duration_ms=2500.000 bytes_in=1099511627776 bytes_out=7
2025-01-02T03:04:05.000Z client="é" listener=l method="/p\u2028q" server=s rule=- grpc_status=14 duration_ms=5400000.000 bytes_in=1 bytes_out=2
2025-01-02T03:04:05.000Z client=127.0.0.1:4000 listener=l method=/pkg.Svc/Do server=s rule=- protocol=grpc-web-text grpc_status=12 duration_ms=1.000 bytes_in=8 bytes_out=40
`
	if got := output(t, obs.FormatText, formatRecords); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestJSONLines(t *testing.T) {
	want := `{"time":"2024-03-05T06:07:08.123456789Z","client":"10.0.0.1:5555","listener":"lsn-a","method":"/pkg.Svc/Do","server":"10.0.0.2:50051","rule":"canary","grpc_status":0,"duration_ms":1.234,"bytes_in":10,"bytes_out":20}
{"time":"2024-03-05T08:07:08.5+02:00","client":"","listener":"web","method":"GET /a b?x=1\u0026y=\u003c2\u003e","server":"-","rule":"-","http_status":404,"duration_ms":0,"bytes_in":0,"bytes_out":0}
{"time":"2024-12-31T23:59:59.999999999Z","client":"\u0001\ufffd","listener":"lsn\"x","method":"a=b\t\n","server":"back\\slash","rule":"-","duration_ms":2500,"bytes_in":1099511627776,"bytes_out":7}
{"time":"2025-01-02T03:04:05Z","client":"é","listener":"l","method":"/p\u2028q","server":"s","rule":"-","grpc_status":14,"duration_ms":5400000,"bytes_in":1,"bytes_out":2}
{"time":"2025-01-02T03:04:05Z","client":"127.0.0.1:4000","listener":"l","method":"/pkg.Svc/Do","server":"s","rule":"-","protocol":"grpc-web-text","grpc_status":12,"duration_ms":1,"bytes_in":8,"bytes_out":40}
`
	if got := output(t, obs.FormatJSON, formatRecords); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// previousRecord and previousLine are the access log as pkg/proxy wrote it
// before this package, kept as the reference for the line formats. Where
// json.Marshal failed, no line was written.
type previousRecord struct {
	Time       time.Time     `json:"time"`
	Client     string        `json:"client"`
	Listener   string        `json:"listener"`
	Method     string        `json:"method"`
	Server     string        `json:"server"`
	Rule       string        `json:"rule"`
	Protocol   string        `json:"protocol,omitempty"`
	GRPCStatus *int          `json:"grpc_status,omitempty"`
	HTTPStatus int           `json:"http_status,omitempty"`
	Duration   time.Duration `json:"-"`
	DurationMs float64       `json:"duration_ms"`
	BytesIn    int64         `json:"bytes_in"`
	BytesOut   int64         `json:"bytes_out"`
}

func previousLine(rec obs.Record, jsonFormat bool) (string, bool) {
	r := previousRecord{
		Time: rec.Time, Client: rec.Client, Listener: rec.Listener, Method: rec.Method,
		Server: rec.Server, Rule: rec.Rule, Protocol: rec.Protocol, Duration: rec.Duration, BytesIn: rec.BytesIn, BytesOut: rec.BytesOut,
	}
	if rec.Web {
		r.HTTPStatus = rec.Code
	} else {
		code := rec.Code
		r.GRPCStatus = &code
	}
	r.DurationMs = float64(r.Duration.Microseconds()) / 1000
	if r.Server == "" {
		r.Server = "-"
	}
	if r.Rule == "" {
		r.Rule = "-"
	}
	if jsonFormat {
		js, err := json.Marshal(r)
		return string(js), err == nil
	}
	b := r.Time.UTC().AppendFormat(nil, "2006-01-02T15:04:05.000Z")
	b = previousField(b, "client", r.Client)
	b = previousField(b, "listener", r.Listener)
	b = previousField(b, "method", r.Method)
	b = previousField(b, "server", r.Server)
	b = previousField(b, "rule", r.Rule)
	if r.Protocol != "" {
		b = previousField(b, "protocol", r.Protocol)
	}
	if r.GRPCStatus != nil {
		b = append(b, " grpc_status="...)
		b = strconv.AppendInt(b, int64(*r.GRPCStatus), 10)
	} else {
		b = append(b, " http_status="...)
		b = strconv.AppendInt(b, int64(r.HTTPStatus), 10)
	}
	b = append(b, " duration_ms="...)
	b = strconv.AppendFloat(b, r.DurationMs, 'f', 3, 64)
	b = append(b, " bytes_in="...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, " bytes_out="...)
	b = strconv.AppendInt(b, r.BytesOut, 10)
	return string(b), true
}

func previousField(b []byte, key, value string) []byte {
	b = append(append(append(b, ' '), key...), '=')
	for i := 0; i < len(value); i++ {
		if c := value[i]; c <= ' ' || c > '~' || c == '"' || c == '=' {
			return strconv.AppendQuote(b, value)
		}
	}
	if value == "" {
		return append(b, `""`...)
	}
	return append(b, value...)
}

func TestLinesMatchPreviousFormat(t *testing.T) {
	pieces := []string{
		"", "a", "Z9", " ", "=", `"`, `\`, "\t", "\n", "\r", "\b", "\f", "\x00", "\x1f", "\x7f", "\x80", "\xff",
		"\xe2\x80", "é", "\u2028", "\u2029", "<", ">", "&", "\U0001F600", "/svc.v1.S/M", "GET /x?y=1", "127.0.0.1:80",
	}
	zones := []*time.Location{time.UTC, time.FixedZone("", 5*3600+1800), time.FixedZone("", -8*3600)}
	rng := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		var sb strings.Builder
		for range rng.IntN(4) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return sb.String()
	}
	recs := make([]obs.Record, 2000)
	for i := range recs {
		recs[i] = obs.Record{
			Time:   time.Unix(0, rng.Int64N(4e18)).In(zones[rng.IntN(len(zones))]),
			Client: str(), Listener: str(), Method: str(), Server: str(), Protocol: str(),
			Web: rng.IntN(2) == 0, Code: rng.IntN(600) - 1,
			Duration: time.Duration(rng.Int64N(1e13)) >> rng.IntN(40),
			BytesIn:  rng.Int64() >> rng.IntN(63), BytesOut: rng.Int64N(1e6),
		}
		if i%100 == 0 {
			recs[i].Duration = -recs[i].Duration
		}
	}
	for i, d := range []time.Duration{
		0, 999, 1000, 1e18 - 1, 1e18, 1e18 + 1000, 9e18 + 1000, -9e18 - 7000, math.MaxInt64, math.MinInt64, -999, -1000,
	} {
		recs[i].Duration = d
	}
	for i, tm := range []time.Time{
		{}, time.Date(5, 1, 2, 3, 4, 5, 6e6, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 0, 0, 0, 0, time.FixedZone("", 23*3600+59*60)),
	} {
		recs[i].Time = tm
	}
	for _, format := range []obs.Format{obs.FormatText, obs.FormatJSON} {
		var want []string
		for _, rec := range recs {
			if l, ok := previousLine(rec, format == obs.FormatJSON); ok {
				want = append(want, l)
			}
		}
		got := lines(output(t, format, recs))
		if len(got) != len(want) {
			t.Fatalf("%s: %d lines, want %d", format, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: line %d:\ngot  %s\nwant %s", format, i, got[i], want[i])
			}
		}
	}
}

func record(method string) *obs.Record {
	return &obs.Record{
		Time: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), Client: "10.1.2.3:54321", Listener: "lsn-1",
		Method: method, Server: "10.9.8.7:50051", Duration: 1500 * time.Microsecond, BytesIn: 120, BytesOut: 4096,
	}
}

func textLine(method string) string {
	return "2025-06-01T12:00:00.000Z client=10.1.2.3:54321 listener=lsn-1 method=" + method +
		" server=10.9.8.7:50051 rule=- grpc_status=0 duration_ms=1.500 bytes_in=120 bytes_out=4096"
}

func TestFlushesWithoutClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := obs.OpenAccessLog(path, obs.FormatText, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	start := time.Now()
	a.Log(record("/s/One"))
	// The log promises 100 ms; the margin is for slow machines.
	waitFor(t, time.Second, "line not written", func() bool { return readFile(t, path) == textLine("/s/One")+"\n" })
	t.Logf("line written after %v", time.Since(start))

	a.Log(record("/s/Two"))
	waitFor(t, time.Second, "second line not written", func() bool {
		return readFile(t, path) == textLine("/s/One")+"\n"+textLine("/s/Two")+"\n"
	})
}

func TestCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := obs.OpenAccessLog(path, obs.FormatText, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := range 1000 {
		m := "/s/M" + strconv.Itoa(i)
		a.Log(record(m))
		want.WriteString(textLine(m) + "\n")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != want.String() {
		t.Errorf("file holds %d lines, want 1000", len(lines(got)))
	}

	a.Log(record("/s/AfterClose"))
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := readFile(t, path); got != want.String() {
		t.Error("a line logged after Close was written")
	}
	if a.Dropped() != 0 {
		t.Errorf("Dropped = %d, want 0", a.Dropped())
	}
}

func TestConcurrentLog(t *testing.T) {
	const goroutines, perGoroutine = 8, 1000
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := obs.OpenAccessLog(path, obs.FormatText, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				a.Log(record(fmt.Sprintf("/s/G%d-%d", g, i)))
			}
		})
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a.Dropped() != 0 {
		t.Errorf("Dropped = %d, want 0", a.Dropped())
	}

	want := make(map[string]bool, goroutines*perGoroutine)
	for g := range goroutines {
		for i := range perGoroutine {
			want[textLine(fmt.Sprintf("/s/G%d-%d", g, i))] = true
		}
	}
	got := lines(readFile(t, path))
	for _, l := range got {
		if !want[l] {
			t.Fatalf("unexpected or repeated line %q", l)
		}
		delete(want, l)
	}
	if len(want) != 0 {
		t.Errorf("%d lines missing", len(want))
	}
}

// stuckWriter blocks every Write until release is closed.
type stuckWriter struct {
	entered chan struct{} // closed by the first Write
	release chan struct{}
	once    sync.Once
	out     testutil.SyncBuffer
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return w.out.Write(p)
}

func TestStuckDestinationDropsLines(t *testing.T) {
	w := &stuckWriter{entered: make(chan struct{}), release: make(chan struct{})}
	var logs testutil.SyncBuffer
	a := obs.NewAccessLog(w, obs.FormatText, slog.New(slog.NewTextHandler(&logs, nil)))
	released := false
	release := func() {
		if !released {
			released = true
			close(w.release)
		}
	}
	defer func() {
		release()
		a.Close()
	}()

	line := textLine("/s/Stuck") + "\n"
	n := 2 * (4 << 20) / len(line) // twice the cap
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			a.Log(record("/s/Stuck"))
		}
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Log blocked on a stuck destination")
	}
	select {
	case <-w.entered:
	case <-time.After(time.Second):
		t.Fatal("the writer never wrote")
	}
	dropped := a.Dropped()
	if dropped == 0 || dropped >= uint64(n) {
		t.Fatalf("Dropped = %d of %d lines", dropped, n)
	}
	const warning = "metric=albctl_proxy_access_log_dropped_total"
	waitFor(t, time.Second, "no warning about dropped lines", func() bool { return strings.Contains(logs.String(), warning) })

	a.Log(record("/s/Stuck"))
	if a.Dropped() != dropped+1 {
		t.Errorf("Dropped = %d after one more line, want %d", a.Dropped(), dropped+1)
	}
	release()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	out := w.out.String()
	if written := uint64(strings.Count(out, "\n")); written+a.Dropped() != uint64(n)+1 {
		t.Errorf("%d lines written + %d dropped, want %d", written, a.Dropped(), n+1)
	}
	if strings.ReplaceAll(out, line, "") != "" {
		t.Error("output holds a partial line")
	}
	if c := strings.Count(logs.String(), warning); c != 1 {
		t.Errorf("warning logged %d times, want once:\n%s", c, logs.String())
	}
}

type failingWriter struct {
	mu     sync.Mutex
	writes int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return 0, errors.New("disk on fire")
}

func (w *failingWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

func TestWriteErrorReportedOnce(t *testing.T) {
	w := &failingWriter{}
	var logs testutil.SyncBuffer
	a := obs.NewAccessLog(w, obs.FormatJSON, slog.New(slog.NewTextHandler(&logs, nil)))
	a.Log(record("/s/A"))
	waitFor(t, time.Second, "no write", func() bool { return w.count() == 1 })
	a.Log(record("/s/B"))
	waitFor(t, time.Second, "no second write", func() bool { return w.count() == 2 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(logs.String(), "disk on fire"); c != 1 {
		t.Errorf("write error logged %d times, want once:\n%s", c, logs.String())
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	a, err := obs.OpenAccessLog(path, obs.FormatText, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Log(record("/s/Before"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	a.Log(record("/s/BeforeToo"))
	if err := a.Reopen(); err != nil {
		t.Fatal(err)
	}
	a.Log(record("/s/After"))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	if got, want := readFile(t, path+".1"), textLine("/s/Before")+"\n"+textLine("/s/BeforeToo")+"\n"; got != want {
		t.Errorf("renamed file holds\n%s\nwant\n%s", got, want)
	}
	if got, want := readFile(t, path), textLine("/s/After")+"\n"; got != want {
		t.Errorf("new file holds\n%s\nwant\n%s", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("new file mode %v, want at most 0640", perm)
	}
	if err := a.Reopen(); err == nil {
		t.Error("Reopen after Close succeeded")
	}

	plain := obs.NewAccessLog(&testutil.SyncBuffer{}, obs.FormatText, nil)
	if err := plain.Reopen(); err != nil {
		t.Errorf("Reopen of a log on a writer: %v", err)
	}
	plain.Close()
}

func TestOpenAccessLogAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := obs.OpenAccessLog(path, obs.FormatText, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Log(record("/s/New"))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, path), "old\n"+textLine("/s/New")+"\n"; got != want {
		t.Errorf("file holds\n%s\nwant\n%s", got, want)
	}
	if _, err := obs.OpenAccessLog(filepath.Join(path, "sub"), obs.FormatText, nil); err == nil {
		t.Error("OpenAccessLog under a regular file succeeded")
	}
}

// BenchmarkAccessLog measures what Log costs a call. With a file, a loop
// that does nothing but log outruns the disk, so some lines are dropped
// (dropped/op); io.Discard shows the cost when every line is kept.
func BenchmarkAccessLog(b *testing.B) {
	for _, format := range []obs.Format{obs.FormatText, obs.FormatJSON} {
		for _, dest := range []string{"file", "discard"} {
			for _, mode := range []string{"serial", "parallel"} {
				b.Run(string(format)+"/"+dest+"/"+mode, func(b *testing.B) {
					benchmarkAccessLog(b, format, dest == "file", mode == "parallel")
				})
			}
		}
	}
}

func benchmarkAccessLog(b *testing.B, format obs.Format, toFile, parallel bool) {
	var a *obs.AccessLog
	if toFile {
		var err error
		if a, err = obs.OpenAccessLog(filepath.Join(b.TempDir(), "access.log"), format, nil); err != nil {
			b.Fatal(err)
		}
	} else {
		a = obs.NewAccessLog(io.Discard, format, nil)
	}
	start := time.Now()
	log := func() {
		a.Log(&obs.Record{
			Time: start, Client: "10.1.2.3:54321", Listener: "lsn-grpc-public", Method: "/albctl.echo.v1.Echo/UnaryEcho",
			Server: "10.9.8.7:50051", Duration: 1500 * time.Microsecond, BytesIn: 120, BytesOut: 4096,
		})
	}
	b.ReportAllocs()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				log()
			}
		})
	} else {
		for b.Loop() {
			log()
		}
	}
	b.StopTimer()
	if err := a.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(a.Dropped())/float64(b.N), "dropped/op")
}
