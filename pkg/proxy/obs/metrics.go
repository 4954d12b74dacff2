package obs

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
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
	web                                      bool // an HTTP request; code is its HTTP status
	listener, method, server, rule, protocol string
	code                                     int
}

// Recorder takes what the engines report: calls as they start and end,
// fail-open picks and failed connects. It keeps the counters behind the
// proxy's metrics and writes the access log. The maps only grow when a new
// label combination appears; a call with known labels takes a read lock and
// does atomic adds.
type Recorder struct {
	accessLog *AccessLog // nil: off

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

// NewRecorder returns a recorder that writes each call to accessLog, if not
// nil.
func NewRecorder(accessLog *AccessLog) *Recorder {
	return &Recorder{
		accessLog: accessLog,
		calls:     make(map[callKey]*atomic.Uint64),
		latency:   make(map[string]*histogram),
		methods:   make(map[string]bool),
	}
}

func (m *Recorder) count(key callKey, d time.Duration, in, out int64) {
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

// WriteMetrics writes the call metrics in the Prometheus text format.
func (m *Recorder) WriteMetrics(w io.Writer) error {
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
		if a.rule != b.rule {
			return a.rule < b.rule
		}
		return a.code < b.code
	})
	sort.Strings(listeners)

	fmt.Fprintln(bw, "# HELP albctl_proxy_calls_total gRPC calls handled, by listener, method, backend server, rule (\"-\" for the listener's default) and grpc-status.")
	fmt.Fprintln(bw, "# TYPE albctl_proxy_calls_total counter")
	writeCalls(bw, m, keys, false, "albctl_proxy_calls_total", "grpc_status")
	fmt.Fprintln(bw, "# HELP albctl_proxy_http_requests_total HTTP requests handled (listeners of HTTP server groups), by listener, HTTP method, backend server, rule and status code.")
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

	if m.accessLog != nil {
		fmt.Fprintln(bw, "# HELP albctl_proxy_access_log_dropped_total Access log lines dropped because the log's writer fell behind.")
		fmt.Fprintln(bw, "# TYPE albctl_proxy_access_log_dropped_total counter")
		fmt.Fprintf(bw, "albctl_proxy_access_log_dropped_total %d\n", m.accessLog.Dropped())
	}
	return bw.Flush()
}

func writeCalls(w io.Writer, m *Recorder, keys []callKey, web bool, name, codeLabel string) {
	for _, k := range keys {
		if k.web != web {
			continue
		}
		m.mu.RLock()
		c := m.calls[k]
		m.mu.RUnlock()
		protocol := ""
		if !web {
			protocol = ",protocol=" + quoteLabel(k.protocol)
		}
		fmt.Fprintf(w, "%s{listener=%s,method=%s,server=%s,rule=%s%s,%s=\"%d\"} %d\n",
			name, quoteLabel(k.listener), quoteLabel(k.method), quoteLabel(k.server), quoteLabel(k.rule), protocol, codeLabel, k.code, c.Load())
	}
}

func quoteLabel(s string) string {
	// strconv.Quote escapes backslash, quote and newline as the text format
	// wants; other escapes only appear for bytes a method name cannot hold.
	return strconv.Quote(s)
}

// Call is one finished call, or one HTTP request, as an engine reports it.
type Call struct {
	// Web marks an HTTP request: Method is "GET /path" and Code its HTTP
	// status. Otherwise Method is the gRPC method's path and Code its
	// grpc-status.
	Web      bool
	Listener string
	Client   string // "ip:port"
	Method   string
	Server   string // "" if no server was picked
	Rule     string // the rule the call met; "" for the listener's default
	// Protocol is how a gRPC call came: "grpc-web", "grpc-web-text" or
	// "connect"; "" for plain gRPC.
	Protocol string
	Code     int
	Start    time.Time
	BytesIn  int64
	BytesOut int64
}

// Started counts a call in flight; each is ended by Finished.
func (m *Recorder) Started() { m.active.Add(1) }

// Active returns the calls in flight.
func (m *Recorder) Active() int64 { return m.active.Load() }

// FailOpen counts a call sent to an unhealthy server because its whole
// group was unhealthy.
func (m *Recorder) FailOpen() { m.failOpen.Add(1) }

// ConnectFailed counts an attempt that could not connect to a server.
func (m *Recorder) ConnectFailed() { m.connFails.Add(1) }

// Finished ends a call's accounting: the in-flight gauge, the counters and
// the access log.
func (m *Recorder) Finished(c *Call) {
	m.active.Add(-1)
	d := time.Since(c.Start)
	label, rule := c.Server, c.Rule
	if label == "" {
		label = "-"
	}
	if rule == "" {
		rule = "-"
	}
	metricMethod := c.Method
	if c.Web {
		// "GET /path": paths are unbounded, so the metrics keep only the HTTP method.
		metricMethod, _, _ = strings.Cut(c.Method, " ")
	}
	protocol := c.Protocol
	if protocol == "" && !c.Web {
		protocol = "grpc"
	}
	m.count(callKey{web: c.Web, listener: c.Listener, method: metricMethod, server: label, rule: rule, protocol: protocol, code: c.Code}, d, c.BytesIn, c.BytesOut)
	if m.accessLog != nil {
		m.accessLog.Log(&Record{
			Time: c.Start, Client: c.Client, Listener: c.Listener, Method: c.Method, Server: c.Server, Rule: c.Rule,
			Web: c.Web, Protocol: c.Protocol, Code: c.Code, Duration: d, BytesIn: c.BytesIn, BytesOut: c.BytesOut,
		})
	}
}
