// Command grpcload is the grpc-go load generator of scripts/bench.sh: it
// calls the echo service (pkg/echo) the way a Go client does, with grpc-go's
// default client settings (BDP estimation and its pings, dynamic flow-control
// windows, window updates as grpc-go sends them), keeping a fixed number of
// calls in flight over a fixed number of connections for a warm-up and then
// a measured window.
//
//	grpcload -addr 127.0.0.1:PORT [-cacert FILE] -workload unary|server-stream|bidi
//	         [-inflight N] [-conns N] [-warmup D] [-duration D] [-pids "PID..."]
//
// It prints one line: "calls/s p50-ms p99-ms errors calls cpu-ticks". Calls/s,
// the percentiles and calls count the calls that completed inside the
// measured window; errors count every failed call of the whole run (warm-up
// and the calls still in flight when the window closes included); cpu-ticks
// is the user+system CPU, in clock ticks, that the processes -pids used
// during the window, read from /proc/PID/stat right when it opens and
// closes. A call is a whole RPC: one request and its response, a request and
// all its -messages responses, or -messages requests each answered once.
// Its own CPU use per call and the first errors go to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/albctl/albctl/pkg/echo/echopb"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(1)
	}
}

type config struct {
	addr, cacert, workload string
	inflight, conns        int
	messages, payload      int
	warmup, duration       time.Duration
	timeout                time.Duration
	pids                   []int
}

func run() error {
	var c config
	var pids string
	version := flag.Bool("version", false, "print the grpc-go version and exit")
	flag.StringVar(&c.addr, "addr", "", "host:port to call")
	flag.StringVar(&c.cacert, "cacert", "", "TLS, trusting this PEM certificate (plaintext when empty)")
	flag.StringVar(&c.workload, "workload", "unary", "unary, server-stream or bidi")
	flag.IntVar(&c.inflight, "inflight", 1, "calls in flight")
	flag.IntVar(&c.conns, "conns", 1, "connections (grpc.ClientConns) the calls in flight are spread over")
	flag.IntVar(&c.messages, "messages", 0, "responses per server-stream call (default 100), messages each way per bidi call (default 10)")
	flag.IntVar(&c.payload, "payload", 1000, "payload bytes per message")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "load before the measured window")
	flag.DurationVar(&c.duration, "duration", 4*time.Second, "measured window")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of every call")
	flag.StringVar(&pids, "pids", "", "processes whose CPU use during the window is reported, separated by white space or commas")
	flag.Parse()
	if *version {
		fmt.Println(grpcVersion())
		return nil
	}
	for _, f := range strings.FieldsFunc(pids, func(r rune) bool { return unicode.IsSpace(r) || r == ',' }) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("bad -pids %q", pids)
		}
		c.pids = append(c.pids, pid)
	}
	switch {
	case c.addr == "" || flag.NArg() > 0:
		return errors.New("usage: grpcload -addr HOST:PORT [flags]")
	case c.inflight < 1 || c.conns < 1 || c.conns > c.inflight:
		return errors.New("-inflight and -conns must be at least 1, and -conns at most -inflight")
	case c.duration <= 0 || c.warmup < 0:
		return errors.New("-duration must be positive and -warmup not negative")
	}
	switch c.workload {
	case "unary":
	case "server-stream":
		if c.messages == 0 {
			c.messages = 100
		}
	case "bidi":
		if c.messages == 0 {
			c.messages = 10
		}
	default:
		return fmt.Errorf("unknown -workload %q", c.workload)
	}
	return load(c)
}

func grpcVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "google.golang.org/grpc" {
				return "grpc-go " + m.Version
			}
		}
	}
	return "grpc-go (unknown version)"
}

// sample is one completed call: when it ended, relative to the run's start,
// and how long it took.
type sample struct{ end, took time.Duration }

// errorLog counts failed calls, keeps when they failed (relative to the
// run's start) and the first few messages.
type errorLog struct {
	mu    sync.Mutex
	at    []time.Duration
	first map[string]int
}

func (l *errorLog) add(at time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = append(l.at, at)
	if l.first == nil {
		l.first = map[string]int{}
	}
	msg := err.Error()
	if _, ok := l.first[msg]; ok || len(l.first) < 5 {
		l.first[msg]++
	}
}

func load(c config) error {
	creds := insecure.NewCredentials()
	if c.cacert != "" {
		var err error
		if creds, err = credentials.NewClientTLSFromFile(c.cacert, ""); err != nil {
			return err
		}
	}
	conns := make([]*grpc.ClientConn, c.conns)
	for i := range conns {
		cc, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer cc.Close()
		conns[i] = cc
	}
	if err := waitReady(conns, 10*time.Second); err != nil {
		return err
	}

	req := &echopb.EchoRequest{Message: "bench", Payload: make([]byte, c.payload)}
	if c.workload == "server-stream" {
		req.Count = int32(c.messages)
	}
	var (
		stop    atomic.Bool
		errs    errorLog
		wg      sync.WaitGroup
		samples = make([][]sample, c.inflight)
		base    = time.Now()
	)
	ru0 := rusage()
	for w := range c.inflight {
		client := echopb.NewEchoClient(conns[w%len(conns)])
		wg.Go(func() {
			own := make([]sample, 0, 1<<14)
			for !stop.Load() {
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
				err := call(ctx, client, c, req)
				cancel()
				end := time.Now()
				if err != nil {
					errs.add(end.Sub(base), err)
					time.Sleep(time.Millisecond) // a broken target must not turn this into a busy loop
					continue
				}
				own = append(own, sample{end.Sub(base), end.Sub(start)})
			}
			samples[w] = own
		})
	}

	time.Sleep(c.warmup)
	cpu0, err := cpuTicks(c.pids)
	if err != nil {
		stop.Store(true)
		wg.Wait()
		return err
	}
	t0 := time.Since(base)
	time.Sleep(c.duration)
	t1 := time.Since(base)
	cpu1, err := cpuTicks(c.pids)
	stop.Store(true)
	wg.Wait()
	ru1 := rusage()
	if err != nil {
		return err
	}

	var lat []float64
	for _, own := range samples {
		for _, s := range own {
			if s.end > t0 && s.end <= t1 {
				lat = append(lat, float64(s.took)/float64(time.Millisecond))
			}
		}
	}
	slices.Sort(lat)
	window := (t1 - t0).Seconds()
	fmt.Printf("%.1f %.3f %.3f %d %d %d\n", float64(len(lat))/window, percentile(lat, 0.50), percentile(lat, 0.99), len(errs.at), len(lat), cpu1-cpu0)

	total := 0
	for _, own := range samples {
		total += len(own)
	}
	if total > 0 {
		fmt.Fprintf(os.Stderr, "grpcload: %s, %d calls in all, own CPU %.1f µs per call\n", grpcVersion(), total, (ru1-ru0).Seconds()*1e6/float64(total))
	}
	if len(errs.at) > 0 {
		var phase [3]int // warm-up, window, after
		for _, at := range errs.at {
			switch {
			case at <= t0:
				phase[0]++
			case at <= t1:
				phase[1]++
			default:
				phase[2]++
			}
		}
		fmt.Fprintf(os.Stderr, "grpcload: %d errors: %d in the warm-up, %d in the measured window, %d after it\n", len(errs.at), phase[0], phase[1], phase[2])
		for msg, n := range errs.first {
			fmt.Fprintf(os.Stderr, "grpcload: %d× %s\n", n, msg)
		}
	}
	return nil
}

// waitReady connects every ClientConn, so that no handshake falls into the
// measured window, and fails when one cannot connect.
func waitReady(conns []*grpc.ClientConn, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for _, cc := range conns {
		cc.Connect()
		for {
			s := cc.GetState()
			if s == connectivity.Ready {
				break
			}
			if !cc.WaitForStateChange(ctx, s) {
				return fmt.Errorf("%s: not connected after %v (state %v)", cc.Target(), limit, s)
			}
		}
	}
	return nil
}

// call makes one RPC of the workload and checks that every response came
// back whole.
func call(ctx context.Context, client echopb.EchoClient, c config, req *echopb.EchoRequest) error {
	switch c.workload {
	case "unary":
		resp, err := client.UnaryEcho(ctx, req)
		if err != nil {
			return err
		}
		return checkPayload(resp, c)
	case "server-stream":
		stream, err := client.ServerStreamingEcho(ctx, req)
		if err != nil {
			return err
		}
		return recvAll(stream, c)
	default: // bidi
		stream, err := client.BidirectionalStreamingEcho(ctx)
		if err != nil {
			return err
		}
		for range c.messages {
			// An error here (io.EOF when the call has ended) is the call's
			// status, which Recv reports.
			if err := stream.Send(req); err != nil {
				break
			}
		}
		if err := stream.CloseSend(); err != nil {
			return err
		}
		return recvAll(stream, c)
	}
}

func recvAll(stream grpc.ClientStream, c config) error {
	n := 0
	for {
		resp := new(echopb.EchoResponse)
		err := stream.RecvMsg(resp)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := checkPayload(resp, c); err != nil {
			return err
		}
		n++
	}
	if n != c.messages {
		return fmt.Errorf("%d responses, want %d", n, c.messages)
	}
	return nil
}

func checkPayload(resp *echopb.EchoResponse, c config) error {
	if len(resp.GetPayload()) != c.payload {
		return fmt.Errorf("response payload of %d bytes, want %d", len(resp.GetPayload()), c.payload)
	}
	return nil
}

// cpuTicks sums user and system clock ticks (fields 14 and 15 of
// /proc/PID/stat, which count every thread) of the processes.
func cpuTicks(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		// The command name, field 2, is in parentheses and may hold spaces.
		i := strings.LastIndexByte(string(raw), ')')
		f := strings.Fields(string(raw[i+1:]))
		if i < 0 || len(f) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
		}
		for _, s := range f[11:13] {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/stat: %v", pid, err)
			}
			total += v
		}
	}
	return total, nil
}

// rusage is this process's user+system CPU time so far.
func rusage() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}
