package cli

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/albctl/albctl/pkg/demopage"
	"github.com/albctl/albctl/pkg/echo/echopb"
	"github.com/albctl/albctl/pkg/probe"
)

// pageHost is where the demo page is served and where it calls the listener: one host, so that
// a browser that accepted albctl's certificate for the page accepts it for the listener too.
const pageHost = "localhost"

// browsers lets the listener take gRPC-Web from the demo page's origin, serves the page, and
// makes the page's calls from Go: a CORS preflight, then gRPC-Web text calls counted per server.
func (d *demo) browsers() error {
	d.section("7. Browsers: gRPC-Web on the same listener, for a web page")
	origin := fmt.Sprintf("https://%s:%d", pageHost, d.ports.page)
	if err := d.albctl("listener", "update", d.listenerID, "--web-protocols", "grpc-web", "--cors-allow-origin", origin); err != nil {
		return err
	}
	if err := d.servePage(); err != nil {
		return err
	}
	tlsConf, err := d.clientTLS(pageHost)
	if err != nil {
		return err
	}
	// The calls a page makes, made from Go through probe's web connection.
	conn := probe.NewWebConn(probe.WebOptions{Target: fmt.Sprintf("%s:%d", pageHost, d.ports.listener),
		Dial: fmt.Sprintf("127.0.0.1:%d", d.ports.listener), Protocol: "grpc-web-text", TLS: tlsConf, Origin: origin})
	defer conn.Close()
	// serve applies the change within a moment: until then the listener answers as before.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = conn.Preflight(d.ctx, "/albctl.echo.v1.Echo/UnaryEcho", nil)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("demo step failed: CORS preflight from %s: %v", origin, err)
	}
	client := echopb.NewEchoClient(conn)
	got, failed := map[string]int{}, 0
	var firstErr error
	for range 100 {
		ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
		reply, err := client.UnaryEcho(ctx, &echopb.EchoRequest{Message: "from a page"})
		cancel()
		if err != nil {
			failed++
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		got[reply.Server]++
	}
	d.say("\n# a CORS preflight from %s, then 100 gRPC-Web (text) calls as the page makes them:", origin)
	t := table{header: []string{"SERVER", "CALLS"}}
	for _, s := range append(d.servers, d.canary) {
		t.rows = append(t.rows, []string{s.name, itoa(got[s.name])})
	}
	t.rows = append(t.rows, []string{"failed", itoa(failed)})
	if err := t.render(d.out, true); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("demo step failed: %d of 100 gRPC-Web calls failed, the first with: %v", failed, firstErr)
	}
	d.say("# the page that makes these calls from a browser: %s (with demo --keep)", d.pageURL())
	return nil
}

func (d *demo) pageURL() string { return fmt.Sprintf("https://%s:%d/", pageHost, d.ports.page) }

// servePage serves the demo page over HTTPS with the listener's certificate until the demo ends.
func (d *demo) servePage() error {
	s, err := d.a.store().Load(d.ctx)
	if err != nil {
		return err
	}
	c, err := s.Certificate("grpc-example")
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair([]byte(c.CertPEM), []byte(c.KeyPEM))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", d.ports.page))
	if err != nil {
		return fmt.Errorf("demo step failed: the page's port: %v", err)
	}
	target := fmt.Sprintf("https://%s:%d", pageHost, d.ports.listener)
	d.page = &http.Server{Handler: demopage.Handler(target), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go func() { _ = d.page.ServeTLS(ln, "", "") }()
	d.say("# serving the demo page at %s, which calls %s", d.pageURL(), target)
	return nil
}
