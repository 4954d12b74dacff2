package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/albctl/albctl/pkg/demopage"
	"github.com/albctl/albctl/pkg/echo/echopb"
	"github.com/albctl/albctl/pkg/proxy/grpcweb"
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
	client, err := d.httpClient()
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	target := fmt.Sprintf("https://%s:%d", pageHost, d.ports.listener)
	// serve applies the change within a moment: until then the listener answers as before.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = preflight(client, target, origin)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("demo step failed: %v", err)
	}
	got, failed := map[string]int{}, 0
	var firstErr error
	for range 100 {
		server, err := webEcho(client, target, origin)
		if err != nil {
			failed++
			firstErr = cmpOr(firstErr, err)
			continue
		}
		got[server]++
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

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
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

// httpClient trusts albctl's CA, as the demo's other clients do.
func (d *demo) httpClient() (*http.Client, error) {
	caPEM, err := os.ReadFile(d.a.caPath())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true,
	}}, nil
}

// preflight asks the listener, as a browser does before a page's first call, whether origin
// may call.
func preflight(client *http.Client, target, origin string) error {
	req, err := http.NewRequest(http.MethodOptions, target+"/albctl.echo.v1.Echo/UnaryEcho", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type,x-grpc-web,x-user-agent")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		return fmt.Errorf("CORS preflight from %s: HTTP %d %s", origin, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// webEcho makes one gRPC-Web text call of the echo method and returns the server that answered.
func webEcho(client *http.Client, target, origin string) (string, error) {
	msg, err := proto.Marshal(&echopb.EchoRequest{Message: "from a page"})
	if err != nil {
		return "", err
	}
	body := grpcweb.AppendText(nil, grpcweb.AppendMessage(nil, msg))
	req, err := http.NewRequest(http.MethodPost, target+"/albctl.echo.v1.Echo/UnaryEcho", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	for k, v := range map[string]string{"Content-Type": "application/grpc-web-text", "Accept": "application/grpc-web-text", "X-Grpc-Web": "1", "Origin": origin} {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != origin {
		return "", errors.New("the answer does not let the page read it (no Access-Control-Allow-Origin)")
	}
	b, err := grpcweb.ReadBody(raw, true)
	if err != nil {
		return "", err
	}
	status, message := resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	if b.Trailers != nil {
		status, message = b.Trailers["grpc-status"], b.Trailers["grpc-message"]
	}
	if status != "0" || len(b.Messages) != 1 {
		return "", fmt.Errorf("grpc-status %s %q, %d messages", status, message, len(b.Messages))
	}
	var reply echopb.EchoResponse
	if err := proto.Unmarshal(b.Messages[0], &reply); err != nil {
		return "", err
	}
	return reply.Server, nil
}
