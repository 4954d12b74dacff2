// Command benchtool does the parts of scripts/bench.sh that are awkward in
// shell: exporting a certificate from albctl's state file, writing gRPC
// request bodies for h2load, reading h2load's results, and printing the
// final table.
//
//	benchtool export-cert STATE CERT-NAME DIR   writes DIR/{cert,key,combined}.pem
//	benchtool payload unary|stream FILE         writes a framed EchoRequest body
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

// payload writes a gRPC request body: one EchoRequest with a 1 KiB payload
// for unary calls, ten of them for a bidirectional stream.
func payload(kind, path string) error {
	msg, err := proto.Marshal(&echopb.EchoRequest{Message: "bench", Payload: make([]byte, 1000)})
	if err != nil {
		return err
	}
	count := 1
	switch kind {
	case "unary":
	case "stream":
		count = 10
	default:
		return fmt.Errorf("unknown payload kind %q", kind)
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

// result is one run: a line of the RESULTS file,
// "workload target round calls/s p50 p99 errors cpu-per-10k" (cpu "-" for
// direct calls, which have no proxy).
type result struct {
	rate, p50, p99, errs, cpu float64
	hasCPU                    bool
}

func table(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	type key struct{ workload, target string }
	runs := map[key][]result{}
	var workloads []string
	targets := []string{"direct", "albctl", "nginx", "haproxy"}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 8 {
			continue
		}
		var r result
		r.rate, _ = strconv.ParseFloat(fl[3], 64)
		r.p50, _ = strconv.ParseFloat(fl[4], 64)
		r.p99, _ = strconv.ParseFloat(fl[5], 64)
		r.errs, _ = strconv.ParseFloat(fl[6], 64)
		if fl[7] != "-" {
			r.cpu, _ = strconv.ParseFloat(fl[7], 64)
			r.hasCPU = true
		}
		k := key{fl[0], fl[1]}
		if _, seen := runs[k]; !seen && !contains(workloads, fl[0]) {
			workloads = append(workloads, fl[0])
		}
		runs[k] = append(runs[k], r)
	}
	if err := sc.Err(); err != nil {
		return err
	}

	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintf(w, "%-14s %-8s %10s %9s %9s %7s %16s %6s\n", "workload", "target", "calls/s", "p50 ms", "p99 ms", "errors", "CPU s/10k calls", "rounds")
	med := map[key]result{}
	for _, wl := range workloads {
		for _, t := range targets {
			rs := runs[key{wl, t}]
			if len(rs) == 0 {
				continue
			}
			m := median(rs)
			med[key{wl, t}] = m
			cpu := "-"
			if m.hasCPU {
				cpu = fmt.Sprintf("%.3f", m.cpu)
			}
			fmt.Fprintf(w, "%-14s %-8s %10.0f %9.3f %9.3f %7.0f %16s %6d\n", wl, t, m.rate, m.p50, m.p99, m.errs, cpu, len(rs))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "albctl relative to each peer (calls/s: higher is better; CPU per call and p99: lower is better)")
	fmt.Fprintf(w, "%-14s %-8s %9s %9s %9s\n", "workload", "vs", "calls/s", "CPU/call", "p99")
	for _, wl := range workloads {
		a, ok := med[key{wl, "albctl"}]
		if !ok {
			continue
		}
		for _, t := range []string{"direct", "nginx", "haproxy"} {
			p, ok := med[key{wl, t}]
			if !ok {
				continue
			}
			cpu := "-"
			if p.hasCPU && a.hasCPU && p.cpu > 0 {
				cpu = fmt.Sprintf("%.2fx", a.cpu/p.cpu)
			}
			fmt.Fprintf(w, "%-14s %-8s %8.2fx %9s %8.2fx\n", wl, t, ratio(a.rate, p.rate), cpu, ratio(a.p99, p.p99))
		}
	}
	fmt.Fprintln(w)
	for _, wl := range workloads {
		a, okA := med[key{wl, "albctl"}]
		h, okH := med[key{wl, "haproxy"}]
		if !okA || !okH {
			continue
		}
		verdict := "met"
		if a.rate < h.rate || (a.hasCPU && h.hasCPU && a.cpu > h.cpu) {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "goal for %s (calls/s >= HAProxy's and CPU per call <= HAProxy's): %s\n", wl, verdict)
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
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
