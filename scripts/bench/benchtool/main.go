// Command benchtool does the parts of scripts/bench.sh that are awkward in
// shell: exporting a certificate from albctl's state file, writing gRPC
// request bodies for h2load, reading h2load's results, and printing the
// final table.
//
//	benchtool export-cert STATE CERT-NAME DIR   writes DIR/{cert,key,combined}.pem
//	benchtool payload unary|bidi|server-stream FILE
//	                                            writes a gRPC request body
//	benchtool h2load OUTPUT LOGFILE             prints "calls/s p50-ms p99-ms errors calls"
//	benchtool table RESULTS                     prints medians and ratios
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/albctl/albctl/pkg/echo/echopb"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: benchtool export-cert, payload, h2load or table, with arguments")
	}
	switch {
	case args[0] == "export-cert" && len(args) == 4:
		return exportCert(args[1], args[2], args[3])
	case args[0] == "payload" && len(args) == 3:
		return payload(args[1], args[2])
	case args[0] == "h2load" && len(args) == 3:
		return h2loadResult(args[1], args[2])
	case args[0] == "table" && len(args) == 2:
		return table(args[1])
	}
	return fmt.Errorf("bad arguments %q", args)
}

// exportCert writes the certificate and key that 'albctl cert create' stored
// in the state file, for nginx (two files) and HAProxy (one file).
func exportCert(statePath, name, dir string) error {
	raw, err := os.ReadFile(statePath)
	if err != nil {
		return err
	}
	var st struct {
		Certificates []struct {
			Name    string `json:"name"`
			CertPEM string `json:"certPEM"`
			KeyPEM  string `json:"keyPEM"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("%s: %w", statePath, err)
	}
	for _, c := range st.Certificates {
		if c.Name != name {
			continue
		}
		files := map[string]string{"cert.pem": c.CertPEM, "key.pem": c.KeyPEM, "combined.pem": c.CertPEM + c.KeyPEM}
		for file, content := range files {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o600); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("no certificate named %q in %s", name, statePath)
}

// payload writes a gRPC request body, the same messages as grpcload sends:
// one EchoRequest with a 1000-byte payload for unary calls, ten of them for
// a bidirectional stream, one asking for 100 replies for a server stream.
func payload(kind, path string) error {
	req := &echopb.EchoRequest{Message: "bench", Payload: make([]byte, 1000)}
	count := 1
	switch kind {
	case "unary":
	case "bidi":
		count = 10
	case "server-stream":
		req.Count = 100
	default:
		return fmt.Errorf("unknown payload kind %q", kind)
	}
	msg, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	var body []byte
	for range count {
		body = append(body, 0) // not compressed
		body = binary.BigEndian.AppendUint32(body, uint32(len(msg)))
		body = append(body, msg...)
	}
	return os.WriteFile(path, body, 0o644)
}

var (
	finishedRe = regexp.MustCompile(`finished in ([0-9.]+)(m?s)`)
	requestsRe = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
)

// h2loadResult reads h2load's summary and its per-request log (start time,
// HTTP status, microseconds) and prints calls/s, p50 and p99 in ms, errors
// and calls. Errors are calls that did not complete with HTTP 200.
func h2loadResult(outPath, logPath string) error {
	out, err := os.ReadFile(outPath)
	if err != nil {
		return err
	}
	fm := finishedRe.FindSubmatch(out)
	rm := requestsRe.FindSubmatch(out)
	if fm == nil || rm == nil {
		return fmt.Errorf("%s: no h2load summary:\n%s", outPath, out)
	}
	secs, _ := strconv.ParseFloat(string(fm[1]), 64)
	if string(fm[2]) == "ms" {
		secs /= 1000
	}
	done, _ := strconv.Atoi(string(rm[3]))
	succeeded, _ := strconv.Atoi(string(rm[4]))
	timeouts, _ := strconv.Atoi(string(rm[7]))

	f, err := os.Open(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	var lat []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[1] != "200" {
			continue
		}
		us, err := strconv.ParseFloat(fields[2], 64)
		if err == nil {
			lat = append(lat, us/1000)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	sort.Float64s(lat)
	errs := done - succeeded + timeouts
	rate := 0.0
	if secs > 0 {
		rate = float64(succeeded) / secs
	}
	fmt.Printf("%.1f %.3f %.3f %d %d\n", rate, percentile(lat, 0.50), percentile(lat, 0.99), errs, done)
	return nil
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// result is one run: a line of the RESULTS file, "client workload target
// round calls/s p50 p99 errors cpu" with cpu the proxy's CPU µs per call ("-"
// for direct calls, which have no proxy).
type result struct {
	rate, p50, p99, errs, cpu float64
	hasCPU                    bool
}

type key struct{ client, workload, target string }

// Goal for albctl with the grpc-go client: proxy CPU per call at most this
// many times HAProxy's, with calls/s at least HAProxy's and no errors.
const goalCPURatio = 0.8

// Goal for albctl with 100 rules (the "rules" target): proxy CPU per call at
// most this many times albctl's without rules.
const goalRulesRatio = 1.05

func table(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runs := map[key][]result{}
	var order []key // client and workload, in the order first seen
	targets := []string{"direct", "albctl", "rules", "nginx", "haproxy"}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 9 {
			continue
		}
		var r result
		r.rate, _ = strconv.ParseFloat(fl[4], 64)
		r.p50, _ = strconv.ParseFloat(fl[5], 64)
		r.p99, _ = strconv.ParseFloat(fl[6], 64)
		r.errs, _ = strconv.ParseFloat(fl[7], 64)
		if fl[8] != "-" {
			r.cpu, _ = strconv.ParseFloat(fl[8], 64)
			r.hasCPU = true
		}
		if wl := (key{fl[0], fl[1], ""}); !slices.Contains(order, wl) {
			order = append(order, wl)
		}
		k := key{fl[0], fl[1], fl[2]}
		runs[k] = append(runs[k], r)
	}
	if err := sc.Err(); err != nil {
		return err
	}

	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	const row = "%-8s %-12s %-8s %9s %8s %8s %7s %12s %9s %9s %7s\n"
	fmt.Fprintf(w, row, "", "", "", "", "", "", "", "proxy CPU", "albctl ÷", "albctl ÷", "")
	fmt.Fprintf(w, row, "client", "workload", "target", "calls/s", "p50 ms", "p99 ms", "errors", "µs per call", "calls/s", "CPU/call", "rounds")
	med := map[key]result{}
	for i, wl := range order {
		if i > 0 && order[i-1].client != wl.client {
			fmt.Fprintln(w)
		}
		for _, t := range targets {
			if rs := runs[key{wl.client, wl.workload, t}]; len(rs) > 0 {
				med[key{wl.client, wl.workload, t}] = median(rs)
			}
		}
		a, hasA := med[key{wl.client, wl.workload, "albctl"}]
		for _, t := range targets {
			k := key{wl.client, wl.workload, t}
			m, ok := med[k]
			if !ok {
				continue
			}
			cpu, rateRatio, cpuRatio := "-", "", ""
			if m.hasCPU {
				cpu = fmt.Sprintf("%.1f", m.cpu)
			}
			if hasA && t != "albctl" {
				rateRatio = ratio(a.rate, m.rate)
				if m.hasCPU && a.hasCPU {
					cpuRatio = ratio(a.cpu, m.cpu)
				}
			}
			fmt.Fprintf(w, row, wl.client, wl.workload, t, fmt.Sprintf("%.0f", m.rate), fmt.Sprintf("%.3f", m.p50),
				fmt.Sprintf("%.3f", m.p99), fmt.Sprintf("%.0f", totalErrors(runs[k])), cpu, rateRatio, cpuRatio, strconv.Itoa(len(runs[k])))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Medians of the rounds, but errors are the sum over all rounds. Proxy CPU is user+system time of the")
	fmt.Fprintln(w, "proxy's processes from /proc; a call is a whole RPC (for streams, every message of it). The albctl ÷")
	fmt.Fprintln(w, "columns are albctl's value divided by that row's: calls/s higher is better, CPU/call lower is better.")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "goal, grpc-go client: albctl's CPU per call <= %.1fx HAProxy's, calls/s >= HAProxy's, 0 errors\n", goalCPURatio)
	for _, wl := range order {
		if wl.client != "grpc-go" {
			continue
		}
		a, okA := med[key{wl.client, wl.workload, "albctl"}]
		h, okH := med[key{wl.client, wl.workload, "haproxy"}]
		if !okA || !okH || !a.hasCPU || !h.hasCPU {
			continue
		}
		errs := totalErrors(runs[key{wl.client, wl.workload, "albctl"}])
		var missed []string
		if h.cpu <= 0 || a.cpu > goalCPURatio*h.cpu {
			missed = append(missed, "CPU")
		}
		if a.rate < h.rate {
			missed = append(missed, "calls/s")
		}
		if errs > 0 {
			missed = append(missed, "errors")
		}
		verdict := "met"
		if len(missed) > 0 {
			verdict = "NOT met (" + strings.Join(missed, ", ") + ")"
		}
		fmt.Fprintf(w, "  %-12s CPU %s, calls/s %s, %.0f errors: %s\n", wl.workload, ratio(a.cpu, h.cpu), ratio(a.rate, h.rate), errs, verdict)
	}
	fmt.Fprintf(w, "goal, 100 rules (target rules): CPU per call <= %.2fx albctl's without rules, 0 errors\n", goalRulesRatio)
	for _, wl := range order {
		a, okA := med[key{wl.client, wl.workload, "albctl"}]
		r, okR := med[key{wl.client, wl.workload, "rules"}]
		if !okA || !okR || !a.hasCPU || !r.hasCPU {
			continue
		}
		errs := totalErrors(runs[key{wl.client, wl.workload, "rules"}])
		verdict := "met"
		if a.cpu <= 0 || r.cpu > goalRulesRatio*a.cpu || errs > 0 {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "  %-8s %-12s CPU %s, calls/s %s, %.0f errors: %s\n", wl.client, wl.workload, ratio(r.cpu, a.cpu), ratio(r.rate, a.rate), errs, verdict)
	}
	return nil
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func totalErrors(rs []result) float64 {
	var n float64
	for _, r := range rs {
		n += r.errs
	}
	return n
}

// median takes each column's median on its own, as the rounds are noisy
// independently.
func median(rs []result) result {
	col := func(get func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return result{
		rate:   col(func(r result) float64 { return r.rate }),
		p50:    col(func(r result) float64 { return r.p50 }),
		p99:    col(func(r result) float64 { return r.p99 }),
		errs:   col(func(r result) float64 { return r.errs }),
		cpu:    col(func(r result) float64 { return r.cpu }),
		hasCPU: rs[0].hasCPU,
	}
}
