package state

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// scenario returns a state with the tutorial's resources: an lb, a gRPC group with two servers,
// a certificate and an HTTPS listener.
func scenario(t *testing.T) *State {
	t.Helper()
	s := New()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.CreateLoadBalancer(LoadBalancer{Name: "demo", Address: "127.0.0.1"})
	must(err)
	_, err = s.CreateServerGroup(NewServerGroup("grpc-backends", ProtocolGRPC))
	must(err)
	_, err = s.AddServers("grpc-backends", []Server{{Address: "127.0.0.1", Port: 50051, Weight: 100}, {Address: "127.0.0.1", Port: 50052, Weight: 50}})
	must(err)
	_, err = s.AddCertificate(Certificate{Name: "grpc-example", Domains: []string{"grpc.example.test"}, CertPEM: "c", KeyPEM: "k"})
	must(err)
	_, err = s.CreateListener(Listener{LBID: "demo", Protocol: ProtocolHTTPS, Port: 8443, HTTP2: true, CertificateID: "grpc-example",
		ServerGroupID: "grpc-backends", IdleTimeout: Duration(DefaultIdleTimeout), RequestTimeout: Duration(DefaultRequestTimeout)})
	must(err)
	must(s.Validate())
	return s
}

func TestDefaultsFollowTheCloud(t *testing.T) {
	sg := NewServerGroup("g", ProtocolGRPC)
	hc := sg.HealthCheck
	if !hc.Enabled || hc.Protocol != ProtocolGRPC || hc.Method != "POST" || hc.Codes != "12" || hc.Path != DefaultGRPCHealthPath ||
		hc.Interval.D() != 2*time.Second || hc.Timeout.D() != 5*time.Second || hc.HealthyThreshold != 3 || hc.UnhealthyThreshold != 3 || hc.Port != 0 {
		t.Fatalf("gRPC defaults: %+v", hc)
	}
	if sg.Scheduler != SchedulerWRR || sg.DrainTimeout.D() != 300*time.Second {
		t.Fatalf("group defaults: %+v", sg)
	}
	if hc := DefaultHealthCheck(ProtocolHTTP); hc.Protocol != ProtocolHTTP || hc.Method != "HEAD" || hc.Path != "/" || hc.Codes != "http_2xx,http_3xx" {
		t.Fatalf("HTTP defaults: %+v", hc)
	}
}

func TestSlowStartAccepted(t *testing.T) {
	if sg := NewServerGroup("g", ProtocolGRPC); sg.SlowStart != 0 {
		t.Fatalf("slow start on by default: %s", sg.SlowStart)
	}
	for _, tt := range []struct {
		scheduler string
		slowStart time.Duration
	}{
		{SchedulerWRR, 30 * time.Second}, {SchedulerWLC, 900 * time.Second}, {SchedulerWRR, 0}, {SchedulerSCH, 0},
	} {
		s := scenario(t)
		sg, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error {
			sg.Scheduler, sg.SlowStart = tt.scheduler, Duration(tt.slowStart)
			return nil
		})
		if err != nil || sg.SlowStart.D() != tt.slowStart {
			t.Errorf("%s with slow start %s: %v", tt.scheduler, tt.slowStart, err)
		}
	}
}

func TestValidationRules(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *State) error
		field  string // the InvalidError field, or "" for a conflict
		want   string
	}{
		{"weight 101", func(s *State) error {
			_, err := s.AddServers("grpc-backends", []Server{{Address: "127.0.0.1", Port: 1, Weight: 101}})
			return err
		}, "servers.weight", "must be 0-100"},
		{"port 70000", func(s *State) error {
			_, err := s.AddServers("grpc-backends", []Server{{Address: "127.0.0.1", Port: 70000, Weight: 1}})
			return err
		}, "servers.port", "must be 1-65535"},
		{"bad server address", func(s *State) error {
			_, err := s.AddServers("grpc-backends", []Server{{Address: "bad host", Port: 1, Weight: 1}})
			return err
		}, "servers.address", "IP address or a host name"},
		{"duplicate server", func(s *State) error {
			_, err := s.AddServers("grpc-backends", []Server{{Address: "127.0.0.1", Port: 50051, Weight: 1}})
			return err
		}, "", "server 127.0.0.1:50051 is already in server group grpc-backends"},
		{"duplicate server, other spelling", func(s *State) error {
			_, err := s.AddServers("grpc-backends", []Server{{Address: "::ffff:127.0.0.1", Port: 50052, Weight: 1}})
			return err
		}, "", "is already in server group"},
		{"too many servers", func(s *State) error {
			servers := make([]Server, MaxServersPerGroup-1)
			for i := range servers {
				servers[i] = Server{Address: "10.0.0.1", Port: i + 1, Weight: 1}
			}
			_, err := s.AddServers("grpc-backends", servers)
			return err
		}, "", "at most 1000"},
		{"code 100", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.HealthCheck.Codes = "100"; return nil })
			return err
		}, "healthCheck.codes", "out of range 0-99"},
		{"interval 0", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.HealthCheck.Interval = 0; return nil })
			return err
		}, "healthCheck.interval", "must be 1s-50s"},
		{"timeout 301s", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.HealthCheck.Timeout = Duration(301 * time.Second); return nil })
			return err
		}, "healthCheck.timeout", "must be 1s-300s"},
		{"threshold 1", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.HealthCheck.HealthyThreshold = 1; return nil })
			return err
		}, "healthCheck.healthyThreshold", "must be 2-10"},
		{"gRPC check with GET", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.HealthCheck.Method = "GET"; return nil })
			return err
		}, "healthCheck.method", "gRPC health checks use POST"},
		{"gRPC path not a method", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.HealthCheck.Path = "/healthz"; return nil })
			return err
		}, "healthCheck.path", "must be a gRPC method path"},
		{"HTTP check on a gRPC group", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.HealthCheck.SetProtocolDefaults(ProtocolHTTP); return nil })
			return err
		}, "healthCheck.protocol", "a gRPC server group allows gRPC, grpc-health, TCP"},
		{"codes on a TCP check", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.HealthCheck.Protocol = ProtocolTCP; return nil })
			return err
		}, "healthCheck.codes", "take no codes"},
		{"group turned HTTP under its HTTPS/2 listener is fine, turned to bad scheduler is not", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.Scheduler = "random"; return nil })
			return err
		}, "scheduler", "must be wrr, wlc, sch or uch"},
		{"slow start 29s", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.SlowStart = Duration(29 * time.Second); return nil })
			return err
		}, "slowStart", "must be 0 (off) or 30s-900s"},
		{"slow start 901s", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.SlowStart = Duration(901 * time.Second); return nil })
			return err
		}, "slowStart", "must be 0 (off) or 30s-900s"},
		{"slow start with sch", func(s *State) error {
			_, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error {
				sg.Scheduler, sg.SlowStart = SchedulerSCH, Duration(time.Minute)
				return nil
			})
			return err
		}, "slowStart", "needs the wrr or wlc scheduler: sch keeps each client on the server its key hashes to"},
		{"new sch group with slow start", func(s *State) error {
			sg := NewServerGroup("hashed", ProtocolGRPC)
			sg.Scheduler, sg.SlowStart = SchedulerSCH, Duration(30*time.Second)
			_, err := s.CreateServerGroup(sg)
			return err
		}, "slowStart", "needs the wrr or wlc scheduler"},
		{"HTTP listener for a gRPC group", func(s *State) error {
			_, err := s.CreateListener(Listener{LBID: "demo", Protocol: ProtocolHTTP, Port: 8080, ServerGroupID: "grpc-backends",
				IdleTimeout: Duration(DefaultIdleTimeout), RequestTimeout: Duration(DefaultRequestTimeout)})
			return err
		}, "protocol", "only an HTTPS listener with HTTP/2 on can forward to it"},
		{"HTTPS listener without HTTP/2 for a gRPC group", func(s *State) error {
			_, err := s.UpdateListener(s.Listeners[0].ID, func(l *Listener) error { l.HTTP2 = false; return nil })
			return err
		}, "http2", "server group grpc-backends is gRPC, which needs HTTP/2"},
		{"port used twice on one address", func(s *State) error {
			_, err := s.CreateLoadBalancer(LoadBalancer{Name: "other", Address: "127.0.0.1"})
			if err != nil {
				return err
			}
			_, err = s.CreateListener(Listener{LBID: "other", Protocol: ProtocolHTTPS, Port: 8443, HTTP2: true, CertificateID: "grpc-example",
				ServerGroupID: "grpc-backends", IdleTimeout: Duration(DefaultIdleTimeout), RequestTimeout: Duration(DefaultRequestTimeout)})
			return err
		}, "", "port 8443 on 127.0.0.1 is already used by listener"},
		{"idle timeout 61s", func(s *State) error {
			_, err := s.UpdateListener(s.Listeners[0].ID, func(l *Listener) error { l.IdleTimeout = Duration(61 * time.Second); return nil })
			return err
		}, "idleTimeout", "must be 1s-60s"},
		{"delete group in use", func(s *State) error { _, err := s.DeleteServerGroup("grpc-backends"); return err },
			"", "server group grpc-backends is used by listeners lsn-"},
		{"delete cert in use", func(s *State) error { _, err := s.DeleteCertificate("grpc-example"); return err },
			"", "certificate grpc-example is used by listeners lsn-"},
		{"delete lb with listeners", func(s *State) error { _, err := s.DeleteLoadBalancer("demo"); return err },
			"", "load balancer demo has listeners lsn-"},
		{"duplicate name", func(s *State) error {
			_, err := s.CreateServerGroup(NewServerGroup("grpc-backends", ProtocolHTTP))
			return err
		}, "", `a server group named "grpc-backends" already exists`},
		{"name like an ID", func(s *State) error {
			_, err := s.CreateLoadBalancer(LoadBalancer{Name: "alb-x", Address: "127.0.0.1"})
			return err
		},
			"name", `must not start with "alb-"`},
		{"lb address not an IP", func(s *State) error {
			_, err := s.CreateLoadBalancer(LoadBalancer{Name: "x1", Address: "localhost"})
			return err
		},
			"address", "must be an IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := scenario(t)
			err := tt.change(s)
			if err == nil {
				t.Fatal("the change was accepted")
			}
			wantRefusal(t, err, tt.field, tt.want)
		})
	}
}

func TestUpdateServersAndLookup(t *testing.T) {
	s := scenario(t)
	sg, err := s.UpdateServers("grpc-backends", []ServerSpec{{Server: Server{Address: "127.0.0.1", Port: 50052, Weight: 0}, HasWeight: true}})
	if err != nil || sg.Servers[1].Weight != 0 || sg.Servers[0].Weight != 100 {
		t.Fatalf("UpdateServers: %+v, %v", sg, err)
	}
	if _, err := s.RemoveServers(sg.ID, []Server{{Address: "127.0.0.1", Port: 9}}); err == nil || err.Error() != "server 127.0.0.1:9 is not in server group grpc-backends" {
		t.Fatalf("removing an absent server: %v", err)
	}
	sg, err = s.RemoveServers(sg.ID, []Server{{Address: "127.0.0.1", Port: 50051}})
	if err != nil || len(sg.Servers) != 1 || sg.Servers[0].Port != 50052 {
		t.Fatalf("RemoveServers: %+v, %v", sg, err)
	}
	// Names and IDs both find resources; listeners store IDs whatever they were given.
	l := s.Listeners[0]
	if l.LBID != s.LoadBalancers[0].ID || l.ServerGroupID != sg.ID || l.CertificateID != s.Certificates[0].ID {
		t.Fatalf("listener references not stored as IDs: %+v", l)
	}
	if !strings.HasPrefix(s.LoadBalancers[0].DNSName, s.LoadBalancers[0].ID+".") || !strings.HasSuffix(s.LoadBalancers[0].DNSName, LBDomainSuffix) {
		t.Fatalf("dnsName %q", s.LoadBalancers[0].DNSName)
	}
	var nf *NotFoundError
	if _, err := s.ServerGroup("nope"); !errors.As(err, &nf) {
		t.Fatalf("lookup of an unknown name: %v", err)
	}
}

func TestCodesAreStoredInShortestForm(t *testing.T) {
	s := scenario(t)
	sg, err := s.UpdateServerGroup("grpc-backends", func(sg *ServerGroup) error { sg.HealthCheck.Codes = "12, 0,1,2"; return nil })
	if err != nil || sg.HealthCheck.Codes != "0-2,12" {
		t.Fatalf("codes %q, %v", sg.HealthCheck.Codes, err)
	}
}

// TestNamesMayStartWithOtherKindsPrefixes keeps older documents valid: only a resource's own
// ID prefix is refused in its name, so a group named acl-… or rule-… stays a group.
func TestNamesMayStartWithOtherKindsPrefixes(t *testing.T) {
	s := New()
	for _, name := range []string{"acl-backends", "rule-engine", "lsn-feed"} {
		if _, err := s.CreateServerGroup(NewServerGroup(name, ProtocolGRPC)); err != nil {
			t.Fatalf("server group %s: %v", name, err)
		}
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

// wantRefusal fails unless err is an InvalidError of field (a ConflictError when field is
// empty) that says want.
func wantRefusal(t *testing.T, err error, field, want string) {
	t.Helper()
	var invalid *InvalidError
	var conflicting *ConflictError
	switch {
	case field != "" && (!errors.As(err, &invalid) || invalid.Field != field):
		t.Fatalf("error %v (%T), want an InvalidError of %s", err, err, field)
	case field == "" && !errors.As(err, &conflicting):
		t.Fatalf("error %v (%T), want a ConflictError", err, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}
