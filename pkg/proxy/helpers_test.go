package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/proxy/obs"
)

type backend = testutil.Interop

func startBackend(t testing.TB, name string) *backend { return testutil.StartInterop(t, name) }

func testCA(t testing.TB) *testutil.PKI { return testutil.TestCA(t) }

// servers builds a group's server list from backends with one weight each.
func servers(weight int, bs ...*backend) []ServerConfig {
	out := make([]ServerConfig, len(bs))
	for i, b := range bs {
		out[i] = ServerConfig{Addr: b.Addr, Weight: weight}
	}
	return out
}

// testConfig is one listener on 127.0.0.1:0 forwarding to group "sgp-test".
func testConfig(t testing.TB, group GroupConfig) Config {
	group.ID = "sgp-test"
	return Config{
		Listeners: []ListenerConfig{{
			ID: "lsn-test", Addr: "127.0.0.1:0", HTTP2: true, GroupID: "sgp-test",
			Certificates: []tls.Certificate{testCA(t).Cert(t, "localhost")},
		}},
		Groups: map[string]GroupConfig{"sgp-test": group},
	}
}

// startProxy applies cfg to a new proxy and returns it with the address of
// listener "lsn-test".
func startProxy(t testing.TB, opts Options, cfg Config) (*Proxy, string) {
	t.Helper()
	p := New(opts)
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	return p, p.ListenerAddr("lsn-test")
}

func dial(t testing.TB, addr string) testpb.TestServiceClient { return testutil.DialInterop(t, addr) }

func ctxTimeout(t testing.TB, d time.Duration) context.Context { return testutil.CtxTimeout(t, d) }

func wantCode(t testing.TB, err error, code codes.Code, msgPart string) {
	t.Helper()
	testutil.WantCode(t, err, code, msgPart)
}

// jsonAccessLog is an access log of JSON lines to w until the test ends.
func jsonAccessLog(t testing.TB, w io.Writer) *obs.AccessLog {
	l := obs.NewAccessLog(w, obs.FormatJSON, nil)
	t.Cleanup(func() { l.Close() })
	return l
}

// load makes calls from goroutines until stop, counting them and the ones that failed.
type load struct {
	calls, failed atomic.Int64
	firstErr      atomic.Value
	done          chan struct{}
	wg            sync.WaitGroup
}

// startLoad runs call in a loop on n goroutines.
func startLoad(n int, call func() error) *load {
	l := &load{done: make(chan struct{})}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.done:
					return
				default:
				}
				if err := call(); err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, err)
				}
				l.calls.Add(1)
			}
		}()
	}
	return l
}

// stop ends the load and waits for its calls in flight.
func (l *load) stop() {
	close(l.done)
	l.wg.Wait()
}

// rawH2 opens a TLS connection with ALPN h2 to a test listener, sends the client preface and
// settings, and returns a framer on it, until the test ends.
func rawH2(t testing.TB, addr string, settings ...http2.Setting) *http2.Framer {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: testCA(t).Pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	_ = fr.WriteSettings(settings...)
	return fr
}

// headerBlock encodes fields, in this order, as one HPACK block.
func headerBlock(fields ...[2]string) []byte {
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return block.Bytes()
}
