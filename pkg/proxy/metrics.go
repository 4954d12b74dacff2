package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxMethods bounds the method label: calls to further methods are counted
// as "other", so a client inventing paths cannot grow the metrics forever.
const maxMethods = 200

// latencyBuckets are the upper bounds, in seconds, of the call latency
// histogram.
var latencyBuckets = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

type callKey struct {
	web                      bool // an HTTP request; code is its HTTP status
	listener, method, server string
	code                     int
}

// metrics holds the proxy's counters. The maps only grow when a new label
// combination appears; a call with known labels takes a read lock and does
// atomic adds.
type metrics struct {
	mu        sync.RWMutex
	calls     map[callKey]*atomic.Uint64
	latency   map[string]*histogram // by listener
	methods   map[string]bool
	bytesIn   atomic.Uint64
	bytesOut  atomic.Uint64
	active    atomic.Int64
	failOpen  atomic.Uint64
	connFails atomic.Uint64
}

type histogram struct {
	counts [len(latencyBuckets) + 1]atomic.Uint64
	sumNs  atomic.Uint64
}

func newMetrics() *metrics {
	return &metrics{
		calls:   make(map[callKey]*atomic.Uint64),
		latency: make(map[string]*histogram),
		methods: make(map[string]bool),
	}
}

func (m *metrics) record(key callKey, d time.Duration, in, out int64) {
	listener, method := key.listener, key.method
	m.bytesIn.Add(uint64(in))
	m.bytesOut.Add(uint64(out))
	m.mu.RLock()
	if !m.methods[method] {
		if len(m.methods) >= maxMethods {
			method = "other"
		} else {
			m.mu.RUnlock()
			m.mu.Lock()
			if len(m.methods) < maxMethods {
				m.methods[method] = true
			} else if !m.methods[method] {
				method = "other"
			}
			m.mu.Unlock()
			m.mu.RLock()
		}
	}
	key.method = method
	c := m.calls[key]
	h := m.latency[listener]
	m.mu.RUnlock()
	if c == nil || h == nil {
		m.mu.Lock()
		if c = m.calls[key]; c == nil {
			c = new(atomic.Uint64)
			m.calls[key] = c
		}
		if h = m.latency[listener]; h == nil {
			h = new(histogram)
			m.latency[listener] = h
		}
		m.mu.Unlock()
	}
	c.Add(1)
	secs := d.Seconds()
	i := sort.SearchFloat64s(latencyBuckets[:], secs)
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(d))
}

// WriteMetrics writes the proxy's metrics in the Prometheus text format.
func (p *Proxy) WriteMetrics(w io.Writer) error {
	m := p.metrics
	bw := bufio.NewWriter(w)

	m.mu.RLock()
	keys := make([]callKey, 0, len(m.calls))
	for k := range m.calls {
		keys = append(keys, k)
	}
	listeners := make([]string, 0, len(m.latency))
	for l := range m.latency {
		listeners = append(listeners, l)
	}
	m.mu.RUnlock()
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.listener != b.listener {
			return a.listener < b.listener
		}
		if a.method != b.method {
			return a.method < b.method
		}
		if a.server != b.server {
			return a.server < b.server
		}
		return a.code < b.code
	})
	sort.Strings(listeners)

	fmt.Fprintln(bw, "# HELP albctl_proxy_calls_total gRPC calls handled, by listener, method, backend server and grpc-status.")
	fmt.Fprintln(bw, "# TYPE albctl_proxy_calls_total counter")
	writeCalls(bw, m, keys, false, "albctl_proxy_calls_total", "grpc_status")
	fmt.Fprintln(bw, "# HELP albctl_proxy_http_requests_total HTTP requests handled (listeners of HTTP server groups), by listener, HTTP method, backend server and status code.")
	fmt.Fprintln(bw, "# TYPE albctl_proxy_http_requests_total counter")
	writeCalls(bw, m, keys, true, "albctl_proxy_http_requests_total", "code")

	fmt.Fprintln(bw, "# HELP albctl_proxy_call_duration_seconds Call duration, from request headers to the end of the response.")
	fmt.Fprintln(bw, "# TYPE albctl_proxy_call_duration_seconds histogram")
	for _, l := range listeners {
		m.mu.RLock()
		h := m.latency[l]
		m.mu.RUnlock()
		var cum uint64
		for i, le := range latencyBuckets {
			cum += h.counts[i].Load()
			fmt.Fprintf(bw, "albctl_proxy_call_duration_seconds_bucket{listener=%s,le=\"%s\"} %d\n", quoteLabel(l), strconv.FormatFloat(le, 'g', -1, 64), cum)
		}
		cum += h.counts[len(latencyBuckets)].Load()
		fmt.Fprintf(bw, "albctl_proxy_call_duration_seconds_bucket{listener=%s,le=\"+Inf\"} %d\n", quoteLabel(l), cum)
		fmt.Fprintf(bw, "albctl_proxy_call_duration_seconds_sum{listener=%s} %g\n", quoteLabel(l), float64(h.sumNs.Load())/1e9)
		fmt.Fprintf(bw, "albctl_proxy_call_duration_seconds_count{listener=%s} %d\n", quoteLabel(l), cum)
	}

	fmt.Fprintln(bw, "# HELP albctl_proxy_active_streams Calls in flight.")
	fmt.Fprintln(bw, "# TYPE albctl_proxy_active_streams gauge")
	fmt.Fprintf(bw, "albctl_proxy_active_streams %d\n", m.active.Load())
	fmt.Fprintln(bw, "# HELP albctl_proxy_bytes_total Message bytes forwarded, by direction.")
	fmt.Fprintln(bw, "# TYPE albctl_proxy_bytes_total counter")
	fmt.Fprintf(bw, "albctl_proxy_bytes_total{direction=\"in\"} %d\n", m.bytesIn.Load())
	fmt.Fprintf(bw, "albctl_proxy_bytes_total{direction=\"out\"} %d\n", m.bytesOut.Load())
	fmt.Fprintln(bw, "# HELP albctl_proxy_upstream_connect_failures_total Attempts that could not connect to a backend.")
	fmt.Fprintln(bw, "# TYPE albctl_proxy_upstream_connect_failures_total counter")
	fmt.Fprintf(bw, "albctl_proxy_upstream_connect_failures_total %d\n", m.connFails.Load())
	fmt.Fprintln(bw, "# HELP albctl_proxy_fail_open_picks_total Calls routed to an unhealthy backend because the whole group was unhealthy.")
	fmt.Fprintln(bw, "# TYPE albctl_proxy_fail_open_picks_total counter")
	fmt.Fprintf(bw, "albctl_proxy_fail_open_picks_total %d\n", m.failOpen.Load())

	fmt.Fprintln(bw, "# HELP albctl_proxy_upstream_connections Open connections to backends (HTTP/2 to gRPC servers, HTTP/1.1 to HTTP ones).")
	fmt.Fprintln(bw, "# TYPE albctl_proxy_upstream_connections gauge")
	for _, g := range p.Status().Groups {
		for _, s := range g.Servers {
			fmt.Fprintf(bw, "albctl_proxy_upstream_connections{group=%s,server=%s} %d\n", quoteLabel(g.ID), quoteLabel(s.Addr), s.Connections)
		}
	}
	return bw.Flush()
}

func writeCalls(w io.Writer, m *metrics, keys []callKey, web bool, name, codeLabel string) {
	for _, k := range keys {
		if k.web != web {
			continue
		}
		m.mu.RLock()
		c := m.calls[k]
		m.mu.RUnlock()
		fmt.Fprintf(w, "%s{listener=%s,method=%s,server=%s,%s=\"%d\"} %d\n",
			name, quoteLabel(k.listener), quoteLabel(k.method), quoteLabel(k.server), codeLabel, k.code, c.Load())
	}
}

func quoteLabel(s string) string {
	// strconv.Quote escapes backslash, quote and newline as the text format
	// wants; other escapes only appear for bytes a method name cannot hold.
	return strconv.Quote(s)
}

// AccessRecord is one access-log entry: one per call.
type AccessRecord struct {
	Time       time.Time     `json:"time"`
	Client     string        `json:"client"`
	Listener   string        `json:"listener"`
	Method     string        `json:"method"`
	Server     string        `json:"server"`
	GRPCStatus *int          `json:"grpc_status,omitempty"` // gRPC calls
	HTTPStatus int           `json:"http_status,omitempty"` // HTTP requests
	Duration   time.Duration `json:"-"`
	DurationMs float64       `json:"duration_ms"`
	BytesIn    int64         `json:"bytes_in"`
	BytesOut   int64         `json:"bytes_out"`
}

// accessLog serialises records to one writer.
type accessLog struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
	buf  []byte
}

func (a *accessLog) write(r *AccessRecord) {
	r.DurationMs = float64(r.Duration.Microseconds()) / 1000
	if r.Server == "" {
		r.Server = "-"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.buf[:0]
	if a.json {
		js, err := json.Marshal(r)
		if err != nil {
			return
		}
		b = append(append(b, js...), '\n')
	} else {
		b = r.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
		b = appendField(b, "client", r.Client)
		b = appendField(b, "listener", r.Listener)
		b = appendField(b, "method", r.Method)
		b = appendField(b, "server", r.Server)
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
		b = append(b, '\n')
	}
	a.buf = b
	_, _ = a.w.Write(b)
}

// appendField writes " key=value", quoting the value if it could be
// mistaken for more fields.
func appendField(b []byte, key, value string) []byte {
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
