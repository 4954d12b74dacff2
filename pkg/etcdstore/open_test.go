package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/albctl/albctl/pkg/certs"
	"github.com/albctl/albctl/pkg/state"
)

func TestParseLocation(t *testing.T) {
	tests := []struct {
		loc       string
		endpoints []string
		prefix    string
		err       string
	}{
		{loc: "etcd://127.0.0.1:2379/albctl/prod", endpoints: []string{"127.0.0.1:2379"}, prefix: "/albctl/prod"},
		{loc: "etcd://h1:2379,h2:2379,[::1]:2379/albctl/prod/", endpoints: []string{"h1:2379", "h2:2379", "[::1]:2379"}, prefix: "/albctl/prod"},
		{loc: "etcd://h1:2379/a", endpoints: []string{"h1:2379"}, prefix: "/a"},
		{loc: "/var/lib/albctl/state.json", err: "it must start with etcd://"},
		{loc: "etcd:///albctl/prod", err: "no endpoint"},
		{loc: "etcd://h1:2379", err: "no key prefix"},
		{loc: "etcd://h1:2379/", err: "no key prefix"},
		{loc: "etcd://h1/albctl", err: `endpoint "h1" has no port`},
		{loc: "etcd://h1:2379,,h2:2379/albctl", err: "empty endpoint"},
		{loc: "etcd://::1:2379/albctl", err: "an IPv6 address goes in brackets"},
		{loc: "etcd://[h1]:2379/albctl", err: "only an IPv6 address goes in brackets"},
		{loc: "etcd://:2379/albctl", err: `endpoint ":2379" has no host`},
		{loc: "etcd://h1:http/albctl", err: `port "http" is not 1-65535`},
		{loc: "etcd://h1:65536/albctl", err: `port "65536" is not 1-65535`},
	}
	for _, tt := range tests {
		endpoints, prefix, err := ParseLocation(tt.loc)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), tt.loc) {
				t.Errorf("ParseLocation(%q) error = %v, want one naming the location and %q", tt.loc, err, tt.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(endpoints) != fmt.Sprint(tt.endpoints) || prefix != tt.prefix {
			t.Errorf("ParseLocation(%q) = %q, %q, %v; want %q, %q", tt.loc, endpoints, prefix, err, tt.endpoints, tt.prefix)
		}
	}
	if !IsLocation("etcd://h1:2379/a") || IsLocation("state.json") {
		t.Error("IsLocation tells etcd locations from files wrongly")
	}
}

func TestLocationRoundTrips(t *testing.T) {
	loc := "etcd://" + shared.endpoint + "/albctl/prod"
	endpoints, prefix, err := ParseLocation(loc)
	if err != nil {
		t.Fatal(err)
	}
	if got := open(t, Options{Endpoints: endpoints, Prefix: prefix}).Location(); got != loc {
		t.Fatalf("Location() = %q, want %q", got, loc)
	}
}

func TestOpenRefusesIncompleteOptions(t *testing.T) {
	notPEM := writeFiles(t, map[string]string{"ca.pem": "not a certificate\n"})["ca.pem"]
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{Prefix: "/albctl"}, "no endpoints"},
		{Options{Endpoints: []string{shared.endpoint}, Prefix: "albctl"}, "must start with /"},
		{Options{Endpoints: []string{shared.endpoint}, Prefix: "/albctl", User: "albctl"}, "a user name and a password go together"},
		{Options{Endpoints: []string{shared.endpoint}, Prefix: "/albctl", Cert: "client.pem"}, "needs both its certificate file and its key file"},
		{Options{Endpoints: []string{shared.endpoint}, Prefix: "/albctl", CACert: "missing.pem"}, "missing.pem"},
		{Options{Endpoints: []string{shared.endpoint}, Prefix: "/albctl", CACert: notPEM}, notPEM + " holds no PEM certificate"},
	} {
		if _, err := Open(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%+v) error = %v, want %q", tt.opts, err, tt.want)
		} else if len(tt.opts.Endpoints) > 0 && tt.opts.Prefix == "/albctl" && !strings.Contains(err.Error(), shared.endpoint) {
			t.Errorf("Open(%+v) error = %v, want one naming the endpoint", tt.opts, err)
		}
	}
}

func TestOpenSaysWhyEtcdDoesNotAnswer(t *testing.T) {
	var closed []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed = append(closed, l.Addr().String())
		l.Close()
	}
	_, err := Open(Options{Endpoints: closed, Prefix: "/albctl", DialTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") || strings.Count(err.Error(), "connection refused") != 2 || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error = %q, want one line saying each endpoint refused the connection", err)
	}
	t.Log(err)
}

func TestUpdateRefusesWhatEtcdCannotTake(t *testing.T) {
	e := newEtcd(t, func(cfg *embed.Config) { cfg.MaxRequestBytes = 64 << 10 })
	s := open(t, Options{Endpoints: []string{e.Clients[0].Addr().String()}, Prefix: "/albctl/big"})
	ctx := context.Background()
	_, err := s.Update(ctx, func(st *state.State) error {
		for i := range 600 { // about 100 KiB
			if err := createLB(fmt.Sprintf("lb-%03d", i))(st); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, rpctypes.ErrRequestTooLarge) || !strings.Contains(err.Error(), "more than etcd takes in one request") {
		t.Fatalf("error = %v, want one saying the document is too large for etcd", err)
	}
	t.Log(err)
	if st, err := s.Load(ctx); err != nil || len(st.LoadBalancers) != 0 {
		t.Fatalf("after the refusal: %d load balancers, %v", len(st.LoadBalancers), err)
	}
}

// writeFiles writes PEM files into a temporary directory and returns their paths.
func writeFiles(t *testing.T, files map[string]string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	paths := map[string]string{}
	for name, content := range files {
		paths[name] = filepath.Join(dir, name)
		if err := os.WriteFile(paths[name], []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

func TestTLS(t *testing.T) {
	now := time.Now()
	caCert, caKey, err := certs.NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey, _, err := certs.Issue(caCert, caKey, []string{"127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey, _, err := certs.IssueClient(caCert, caKey, "albctl", now)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _, err := certs.NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	files := writeFiles(t, map[string]string{
		"ca.pem": caCert, "server.pem": serverCert, "server-key.pem": serverKey,
		"client.pem": clientCert, "client-key.pem": clientKey, "other-ca.pem": otherCA,
	})
	e := newEtcd(t, func(cfg *embed.Config) {
		secure := url.URL{Scheme: "https", Host: "127.0.0.1:0"}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{secure}, []url.URL{secure}
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile: files["server.pem"], KeyFile: files["server-key.pem"],
			TrustedCAFile: files["ca.pem"], ClientCertAuth: true,
		}
	})
	base := Options{Endpoints: []string{e.Clients[0].Addr().String()}, Prefix: "/albctl/tls", DialTimeout: 500 * time.Millisecond}

	good := base
	good.CACert, good.Cert, good.Key = files["ca.pem"], files["client.pem"], files["client-key.pem"]
	good.DialTimeout = 5 * time.Second
	if _, err := open(t, good).Update(context.Background(), createLB("secure")); err != nil {
		t.Fatal(err)
	}

	noClientCert := base
	noClientCert.CACert = files["ca.pem"]
	wrongCA := good
	wrongCA.CACert, wrongCA.DialTimeout = files["other-ca.pem"], base.DialTimeout
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"plain text", base, "etcd expects TLS"},
		{"no client certificate", noClientCert, "certificate required"},
		{"unknown server CA", wrongCA, "certificate signed by unknown authority"},
		{"TLS to plain text", Options{Endpoints: []string{shared.endpoint}, Prefix: "/albctl/tls", CACert: files["ca.pem"], DialTimeout: base.DialTimeout}, "etcd does not serve TLS there"},
	} {
		s, err := Open(tt.opts)
		if err == nil {
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.opts.Endpoints[0]) {
			t.Errorf("%s: error = %v, want one naming the endpoint and %q", tt.name, err, tt.want)
		}
		t.Logf("%s: %v", tt.name, err)
	}
}

func TestAuth(t *testing.T) {
	e := newEtcd(t, func(cfg *embed.Config) { cfg.BcryptCost = 4 }) // bcrypt's least, for speed
	endpoint := e.Clients[0].Addr().String()
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "root-secret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "albctl"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "albctl", "/albctl/auth/", clientv3.GetPrefixRangeEnd("/albctl/auth/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "albctl", "secret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "albctl", "albctl"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}

	good := Options{Endpoints: []string{endpoint}, Prefix: "/albctl/auth", User: "albctl", Password: "secret", DialTimeout: 2 * time.Second}
	if _, err := open(t, good).Update(ctx, createLB("authorized")); err != nil {
		t.Fatal(err)
	}
	anonymous := good
	anonymous.User, anonymous.Password = "", ""
	wrongPassword := good
	wrongPassword.Password = "guess"
	elsewhere := good
	elsewhere.Prefix = "/albctl/other"
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"no user", anonymous, "user name is empty"},
		{"wrong password", wrongPassword, "authentication failed"},
		{"prefix outside the role", elsewhere, "permission denied"},
	} {
		s, err := Open(tt.opts)
		if err == nil {
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want %q", tt.name, err, tt.want)
		}
		t.Logf("%s: %v", tt.name, err)
	}
}
