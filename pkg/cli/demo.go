package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/albctl/albctl/pkg/echo/echopb"
	"github.com/albctl/albctl/pkg/serve"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

func newDemoCmd(a *app) *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo [--keep]",
		Short: "Run the whole tutorial against built-in echo backends, printing each command",
		Long: `demo builds and runs the tutorial's load balancer in a temporary state file (or the one
--state names), printing each command before it runs it:

  1. three echo backends (albctl echo-server), weights 100, 100 and 50
  2. a gRPC server group with gRPC health checks (codes 12), a load balancer, a certificate
     for grpc.example.test, and an HTTPS listener with HTTP/2 on a free port
  3. the domain example.test proven by its TXT record, and a CNAME from grpc.example.test to
     the load balancer's domain name
  4. albctl serve with DNS, a probe of the echo method through the listener by name, and a
     burst of calls counted per server against its weight
  5. one backend stopped, and the health check taking it out of rotation
  6. a canary release: a second server group with one echo server, a rule sending 10% of the
     echo service's calls to it, and one sending it every call that carries x-canary: 1
  7. browsers: the listener takes gRPC-Web from the demo page's origin; the page is served on
     https://localhost and its calls are made once from Go (a CORS preflight, then gRPC-Web
     text calls counted per server); with --keep, open the page in a browser

It exits 0 when every step did what it should, and non-zero naming the step that did not.
With --keep, everything stays up and demo prints how to try it by hand, until Ctrl-C.`,
		Example: "  albctl demo\n  albctl demo --keep\n  albctl demo --state ./demo.json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := newDemo(cmd, a)
			if err != nil {
				return err
			}
			defer d.cleanup()
			if err := d.run(); err != nil {
				return err
			}
			if keep {
				return d.keep()
			}
			fmt.Fprintln(a.io.Out, "\ndemo finished: every step did what it should")
			return nil
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the servers running and print how to try them by hand")
	return cmd
}

// demo holds the running pieces of one demo.
type demo struct {
	a       *app
	ctx     context.Context
	out     io.Writer
	dir     string // logs, and the state when demo made its own
	tempDir bool
	exe     string
	procs   map[string]*exec.Cmd
	ports   struct{ listener, dns, page int }
	page    *http.Server // the demo page, once step 7 serves it
	servers []demoServer
	canary  demoServer
	admin   string
	// listenerID is the listener's, once the canary step has looked it up.
	listenerID string
}

type demoServer struct {
	name   string
	addr   string
	weight int
}

func newDemo(cmd *cobra.Command, a *app) (*demo, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	d := &demo{a: a, ctx: cmd.Context(), out: a.io.Out, exe: exe, procs: map[string]*exec.Cmd{}}
	if cmd.Flags().Changed("state") || os.Getenv("ALBCTL_STATE") != "" {
		d.dir = filepath.Dir(a.statePath)
	} else {
		if d.dir, err = os.MkdirTemp("", "albctl-demo-"); err != nil {
			return nil, err
		}
		d.tempDir = true
		a.statePath = filepath.Join(d.dir, "state.json")
	}
	ports, err := freePorts(7)
	if err != nil {
		return nil, err
	}
	d.ports.listener, d.ports.dns, d.ports.page = ports[0], ports[1], ports[6]
	for i, w := range []int{100, 100, 50} {
		d.servers = append(d.servers, demoServer{name: fmt.Sprintf("b%d", i+1), addr: fmt.Sprintf("127.0.0.1:%d", ports[2+i]), weight: w})
	}
	d.canary = demoServer{name: "canary", addr: fmt.Sprintf("127.0.0.1:%d", ports[5]), weight: 100}
	return d, nil
}

// freePorts returns ports that were free a moment ago, held together so they differ.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (d *demo) run() error {
	d.say("# state file: %s (logs beside it)", d.a.statePath)
	d.say("# to paste the commands below into a shell:\n#   export ALBCTL_STATE=%s", shellQuote(d.a.statePath))
	if path, err := exec.LookPath("albctl"); err != nil || path != d.exe {
		d.say("#   alias albctl=%s", shellQuote(d.exe))
	}

	d.section("1. Backends: three gRPC echo servers")
	for _, s := range d.servers {
		if err := d.start(s.name, "echo-server", "--listen", s.addr, "--name", s.name); err != nil {
			return err
		}
	}
	for _, s := range d.servers {
		if err := waitTCP(s.addr, 10*time.Second); err != nil {
			return fmt.Errorf("demo step failed: echo server %s did not start: %v (log: %s)", s.name, err, d.logPath(s.name))
		}
	}

	d.section("2. Server group with gRPC health checks, load balancer, certificate, HTTPS listener")
	steps := [][]string{
		{"servergroup", "create", "--name", "grpc-backends", "--protocol", "gRPC", "--health-check-codes", "12",
			"--health-check-interval", "1s", "--healthy-threshold", "2", "--unhealthy-threshold", "2"},
		{"servergroup", "add-servers", "grpc-backends"},
		{"lb", "create", "--name", "demo"},
		{"cert", "create", "--name", "grpc-example", "--domain", "grpc.example.test", "--domain", pageHost},
		{"listener", "create", "--lb", "demo", "--protocol", "HTTPS", "--port", itoa(d.ports.listener), "--cert", "grpc-example", "--server-group", "grpc-backends"},
	}
	for _, s := range d.servers {
		steps[1] = append(steps[1], "--server", fmt.Sprintf("%s,weight=%d", s.addr, s.weight))
	}
	for _, step := range steps {
		if err := d.albctl(step...); err != nil {
			return err
		}
	}

	d.section("3. DNS: prove ownership of example.test with TXT, then CNAME grpc.example.test to the load balancer")
	if err := d.albctl("dns", "domain", "add", "example.test"); err != nil {
		return err
	}
	var domain struct {
		Verification struct{ Host, Value string } `json:"verification"`
	}
	if err := d.albctlJSON(&domain, "dns", "domain", "get", "example.test", "-o", "json"); err != nil {
		return err
	}
	var lb struct{ DNSName string }
	if err := d.albctlJSON(&lb, "lb", "get", "demo", "-o", "json"); err != nil {
		return err
	}
	for _, step := range [][]string{
		{"dns", "add", "--domain", "example.test", "--type", "TXT", "--host", domain.Verification.Host, "--value", domain.Verification.Value},
		{"dns", "domain", "verify", "example.test"},
		{"dns", "add", "--domain", "example.test", "--type", "CNAME", "--host", "grpc", "--value", lb.DNSName, "--ttl", "600"},
	} {
		if err := d.albctl(step...); err != nil {
			return err
		}
	}

	d.section("4. Serve, and test the path end to end")
	if err := d.start("serve", "serve", "--dns", fmt.Sprintf("127.0.0.1:%d", d.ports.dns)); err != nil {
		return err
	}
	if err := d.waitServe(); err != nil {
		return err
	}
	if err := d.albctl("probe", "-insecure", "-v", "-d", `{"message": "hello"}`, fmt.Sprintf("grpc.example.test:%d", d.ports.listener), "albctl.echo.v1.Echo/UnaryEcho"); err != nil {
		return err
	}
	if err := d.waitHealthy(); err != nil {
		return err
	}
	if err := d.burst(250, nil); err != nil {
		return err
	}

	d.section("5. Stop b3 and watch the health check take it out")
	stopped := d.servers[2]
	d.say("$ kill %d    # %s, the echo server on %s", d.procs[stopped.name].Process.Pid, stopped.name, stopped.addr)
	if err := d.stop(stopped.name); err != nil {
		return err
	}
	if err := d.waitState("grpc-backends", stopped.addr, "unhealthy", 15*time.Second); err != nil {
		return err
	}
	if err := d.albctl("servergroup", "health", "grpc-backends"); err != nil {
		return err
	}
	if err := d.burst(100, &stopped); err != nil {
		return err
	}
	return d.canaryRelease()
}

// canaryRelease adds a canary group and the rules that send it 10% of the echo calls and every
// call with x-canary: 1, and counts both.
func (d *demo) canaryRelease() error {
	d.section("6. Canary release: 10% of the echo service to a canary group, and every call with x-canary: 1")
	c := d.canary
	if err := d.start(c.name, "echo-server", "--listen", c.addr, "--name", c.name); err != nil {
		return err
	}
	if err := waitTCP(c.addr, 10*time.Second); err != nil {
		return fmt.Errorf("demo step failed: echo server %s did not start: %v (log: %s)", c.name, err, d.logPath(c.name))
	}
	var listeners []struct{ ID string }
	if err := d.albctlJSON(&listeners, "listener", "list", "-o", "json"); err != nil {
		return err
	}
	if len(listeners) != 1 {
		return fmt.Errorf("demo step failed: %d listeners, want the one demo made", len(listeners))
	}
	lsn := listeners[0].ID
	d.listenerID = lsn
	for _, step := range [][]string{
		{"servergroup", "create", "--name", "canary", "--protocol", "gRPC", "--health-check-codes", "12",
			"--health-check-interval", "1s", "--healthy-threshold", "2", "--unhealthy-threshold", "2"},
		{"servergroup", "add-servers", "canary", "--server", c.addr},
		{"rule", "create", "--listener", lsn, "--priority", "10", "--name", "canary-pin",
			"--match", "header:x-canary=1", "--forward", "canary"},
		{"rule", "create", "--listener", lsn, "--priority", "20", "--name", "canary-split",
			"--match", "grpc-service=albctl.echo.v1.Echo", "--forward", "grpc-backends=90,canary=10"},
		{"rule", "list"},
	} {
		if err := d.albctl(step...); err != nil {
			return err
		}
	}
	if err := d.waitState("canary", c.addr, "healthy", 15*time.Second); err != nil {
		return err
	}
	split, failed, err := d.callCounts(500)
	if err != nil {
		return err
	}
	pinned, failedPinned, err := d.callCounts(50, "x-canary", "1")
	if err != nil {
		return err
	}
	d.say("\n# 500 calls, then 50 calls with x-canary: 1:")
	t := table{header: []string{"CALLS", "RULE", "CANARY", "OTHERS", "EXPECTED CANARY", "FAILED"}}
	t.rows = append(t.rows,
		[]string{"500", "canary-split (90/10)", itoa(split[c.name]), itoa(500 - split[c.name] - failed), "50", itoa(failed)},
		[]string{"50 with x-canary: 1", "canary-pin", itoa(pinned[c.name]), itoa(50 - pinned[c.name] - failedPinned), "50", itoa(failedPinned)})
	if err := t.render(d.out, true); err != nil {
		return err
	}
	var problems []string
	if got := split[c.name]; got < 40 || got > 60 {
		problems = append(problems, fmt.Sprintf("the canary answered %d of 500 calls, expected about 50", got))
	}
	if pinned[c.name] != 50 {
		problems = append(problems, fmt.Sprintf("the canary answered %d of 50 calls with x-canary: 1, expected all", pinned[c.name]))
	}
	if failed+failedPinned > 0 {
		problems = append(problems, fmt.Sprintf("%d calls failed", failed+failedPinned))
	}
	if len(problems) > 0 {
		return errors.New("demo step failed: " + strings.Join(problems, "; "))
	}
	return d.browsers()
}

// keep leaves everything running and tells the user what to try, until a signal.
func (d *demo) keep() error {
	port := itoa(d.ports.listener)
	d.say(`
Everything is running. In another shell:
  export ALBCTL_STATE=%s
  albctl probe -cacert "$(albctl cert ca)" -d '{"message": "hi"}' grpc.example.test:%s albctl.echo.v1.Echo/UnaryEcho
  albctl servergroup health grpc-backends
  albctl check grpc.example.test:%s albctl.echo.v1.Echo/UnaryEcho
  albctl rule list --listener %s
  dig @127.0.0.1 -p %d grpc.example.test
  albctl servergroup update-servers grpc-backends --server %s,weight=0
serve's log, with one line per call: %s

In a browser, open %s
The page calls the echo service with gRPC-Web through the listener. The browser warns once
that albctl's demo CA is not one it trusts: accept it for localhost. Chromium then trusts it for
the listener's port too; Firefox asks again: open https://localhost:%s/ once and accept there.
Press Ctrl-C to stop everything.`, shellQuote(d.a.statePath), port, port, d.listenerID, d.ports.dns, d.servers[0].addr, d.logPath("serve"), d.pageURL(), port)
	ctx, stop := signal.NotifyContext(d.ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) section(title string) { d.say("\n## %s", title) }

func (d *demo) logPath(name string) string { return filepath.Join(d.dir, name+".log") }

// albctl prints a command and runs it as albctl would, against the demo's state.
func (d *demo) albctl(args ...string) error {
	return d.runAlbctl(d.out, args)
}

// albctlJSON runs a command as albctl does, printing it and its output, and decodes the output.
func (d *demo) albctlJSON(v any, args ...string) error {
	var out bytes.Buffer
	if err := d.runAlbctl(io.MultiWriter(d.out, &out), args); err != nil {
		return err
	}
	return json.Unmarshal(out.Bytes(), v)
}

func (d *demo) runAlbctl(out io.Writer, args []string) error {
	d.say("\n$ albctl %s", shellJoin(args))
	streams := IOStreams{In: d.a.io.In, Out: out, ErrOut: d.a.io.ErrOut}
	if code := Main(d.ctx, append([]string{"--state", d.a.statePath}, args...), streams); code != ExitOK {
		return fmt.Errorf("demo step failed (exit %d): albctl %s", code, shellJoin(args))
	}
	return nil
}

// start prints a command and runs it as a background process of albctl.
func (d *demo) start(name string, args ...string) error {
	d.say("\n$ albctl %s 2>%s &", shellJoin(args), shellQuote(d.logPath(name)))
	logFile, err := os.Create(d.logPath(name))
	if err != nil {
		return err
	}
	cmd := exec.Command(d.exe, append([]string{"--state", d.a.statePath}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("demo step failed: start albctl %s: %w", shellJoin(args), err)
	}
	logFile.Close() // the child has its own copy
	d.procs[name] = cmd
	return nil
}

func (d *demo) stop(name string) error {
	cmd := d.procs[name]
	delete(d.procs, name)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	_ = cmd.Wait()
	return nil
}

func (d *demo) cleanup() {
	if d.page != nil {
		_ = d.page.Close()
	}
	for name := range d.procs {
		_ = d.stop(name)
	}
	if d.tempDir {
		_ = os.RemoveAll(d.dir)
	}
}

func waitTCP(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *demo) waitServe() error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		addr, err := serve.Discover(d.a.store(), "")
		if err == nil {
			d.admin = addr
			return waitTCP(fmt.Sprintf("127.0.0.1:%d", d.ports.listener), 5*time.Second)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo step failed: serve did not start: %v (log: %s)", err, d.logPath("serve"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitHealthy waits until the health checks have passed every running server.
func (d *demo) waitHealthy() error {
	for _, s := range d.servers {
		if err := d.waitState("grpc-backends", s.addr, "healthy", 15*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) waitState(group, addr, want string, within time.Duration) error {
	deadline := time.Now().Add(within)
	start := time.Now()
	for {
		var gs struct {
			Servers []struct{ Addr, State, Reason string } `json:"servers"`
		}
		var out bytes.Buffer
		code := Main(d.ctx, []string{"--state", d.a.statePath, "servergroup", "health", group, "-o", "json"},
			IOStreams{In: d.a.io.In, Out: &out, ErrOut: io.Discard})
		if code == ExitOK && json.Unmarshal(out.Bytes(), &gs) == nil {
			for _, s := range gs.Servers {
				if s.Addr == addr && s.State == want {
					d.say("# %s is %s after %v: %s", addr, want, time.Since(start).Round(100*time.Millisecond), s.Reason)
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo step failed: %s did not become %s within %v (see 'albctl servergroup health %s')", addr, want, within, group)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// burst makes n calls over one client connection and shows how many each server answered
// against its weight. The servers must share the calls as their weights say, within 10%, and
// no call may fail; a stopped server must get none.
func (d *demo) burst(n int, stopped *demoServer) error {
	d.say("\n# %d calls to albctl.echo.v1.Echo/UnaryEcho over one connection, TLS verified with albctl's CA:", n)
	got, failed, err := d.callCounts(n)
	if err != nil {
		return err
	}
	totalWeight := 0
	for _, s := range d.servers {
		if stopped == nil || s.name != stopped.name {
			totalWeight += s.weight
		}
	}
	t := table{header: []string{"SERVER", "ADDRESS", "WEIGHT", "CALLS", "EXPECTED"}}
	var problems []string
	for _, s := range d.servers {
		expected := 0
		if stopped == nil || s.name != stopped.name {
			expected = n * s.weight / totalWeight
		}
		t.rows = append(t.rows, []string{s.name, s.addr, itoa(s.weight), itoa(got[s.name]), itoa(expected)})
		if diff := got[s.name] - expected; diff*10 > n || -diff*10 > n {
			problems = append(problems, fmt.Sprintf("%s answered %d calls, expected about %d", s.name, got[s.name], expected))
		}
	}
	if err := t.render(d.out, true); err != nil {
		return err
	}
	d.say("failed calls: %d", failed)
	if failed > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d calls failed", failed, n))
	}
	if len(problems) > 0 {
		return errors.New("demo step failed: " + strings.Join(problems, "; "))
	}
	return nil
}

// callCounts makes n calls with the metadata md over one connection, TLS verified with
// albctl's CA, and counts them by the server that answered, and those that failed.
func (d *demo) callCounts(n int, md ...string) (map[string]int, int, error) {
	tlsConf, err := d.clientTLS("grpc.example.test")
	if err != nil {
		return nil, 0, err
	}
	creds := credentials.NewTLS(tlsConf)
	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", d.ports.listener), grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, 0, err
	}
	defer cc.Close()
	client := echopb.NewEchoClient(cc)
	got, failed := map[string]int{}, 0
	for range n {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(d.ctx, md...), 5*time.Second)
		resp, err := client.UnaryEcho(ctx, &echopb.EchoRequest{Message: "burst"})
		cancel()
		if err != nil {
			failed++
			continue
		}
		got[resp.Server]++
	}
	return got, failed, nil
}

// clientTLS is the TLS configuration of the demo's own clients: albctl's CA, and the name the
// listener's certificate is checked for.
func (d *demo) clientTLS(serverName string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(d.a.caPath())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{RootCAs: pool, ServerName: serverName}, nil
}

// shellJoin writes args as a shell would need them typed.
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	return strings.Join(quoted, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:,=@+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
