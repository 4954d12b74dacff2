package serve

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/echo/echopb"
	"github.com/albctl/albctl/pkg/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

func TestACLConfigIsTheUnionOfTheListenersACLs(t *testing.T) {
	s := state.New()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateLoadBalancer(state.LoadBalancer{Name: "demo", Address: "127.0.0.1"}))
	must(s.CreateServerGroup(state.NewServerGroup("web", state.ProtocolHTTP)))
	must(s.CreateACL(state.ACL{Name: "office", Entries: []state.ACLEntry{{CIDR: "10.0.0.0/8"}, {CIDR: "192.168.1.7"}}}))
	must(s.CreateACL(state.ACL{Name: "v6", Entries: []state.ACLEntry{{CIDR: "::1"}}}))
	must(s.CreateACL(state.ACL{Name: "nobody"}))
	listener := func(port int, aclType string, acls ...string) {
		must(s.CreateListener(state.Listener{LBID: "demo", Protocol: state.ProtocolHTTP, Port: port, ServerGroupID: "web",
			IdleTimeout: state.Duration(state.DefaultIdleTimeout), RequestTimeout: state.Duration(state.DefaultRequestTimeout), ACLType: aclType, ACLIDs: acls}))
	}
	listener(8080, state.ACLWhite, "office", "v6")
	listener(8081, state.ACLBlack, "nobody")
	listener(8082, "")
	cfg, err := proxyConfig(s, "", "")
	if err != nil {
		t.Fatal(err)
	}
	white := cfg.Listeners[0].ACL
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("::1/128")}
	if white == nil || !white.Allow || !reflect.DeepEqual(white.Prefixes, want) {
		t.Fatalf("white list %+v, want %v", white, want)
	}
	if black := cfg.Listeners[1].ACL; black == nil || black.Allow || len(black.Prefixes) != 0 {
		t.Fatalf("empty black list %+v", black)
	}
	if none := cfg.Listeners[2].ACL; none != nil {
		t.Fatalf("a listener without ACLs has %+v", none)
	}
}

// TestServeAppliesACLChanges puts a white list on the running listener: the client connected
// before keeps its connection, new clients from its address are refused, and the refusals are
// logged and counted.
func TestServeAppliesACLChanges(t *testing.T) {
	_, b1 := testutil.StartEcho(t, echo.Options{Name: "b1"})
	f := startServe(t, server(t, b1, 100))
	before := f.client(t)
	count(t, before, 3)

	if _, err := f.store.Update(context.Background(), func(s *state.State) error {
		if _, err := s.CreateACL(state.ACL{Name: "only-two", Entries: []state.ACLEntry{{CIDR: "127.0.0.2"}}}); err != nil {
			return err
		}
		_, err := s.UpdateListener(s.Listeners[0].ID, func(l *state.Listener) error {
			l.ACLType, l.ACLIDs = state.ACLWhite, []string{"only-two"}
			return nil
		})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the white list to apply", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := f.clientFrom(t, "127.0.0.1").UnaryEcho(ctx, &echopb.EchoRequest{Message: "hi"})
		return err != nil
	})
	count(t, before, 10)
	count(t, f.clientFrom(t, "127.0.0.2"), 3)
	if log := f.log.String(); !strings.Contains(log, `msg="client refused by the listener's ACL" listener=lsn-`) {
		t.Fatalf("log:\n%s", log)
	}
	if metrics := getText(t, "http://"+f.admin+"/metrics"); !strings.Contains(metrics, "albctl_proxy_acl_denied_total{listener=\"lsn-") {
		t.Fatalf("metrics:\n%s", metrics)
	}
}

// clientFrom is client with the connection's source address chosen.
func (f *fixture) clientFrom(t *testing.T, from string) echopb.EchoClient {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	creds := credentials.NewTLS(&tls.Config{RootCAs: f.caPool, ServerName: "grpc.example.test"})
	cc, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(f.port), grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return echopb.NewEchoClient(cc)
}
