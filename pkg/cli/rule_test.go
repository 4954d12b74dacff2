package cli

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// ruleScene is the walkthrough with gRPC groups stable and canary beside grpc-backends, and an
// HTTP listener on port 8080 in front of the HTTP group web.
type ruleScene struct {
	path, grpcListener, httpListener string
	groupIDs                         map[string]string
}

func newRuleScene(t *testing.T) ruleScene {
	t.Helper()
	sc := ruleScene{path: walkthrough(t), groupIDs: map[string]string{}}
	mustRun(t, sc.path, "servergroup", "create", "--name", "stable", "--protocol", "gRPC")
	mustRun(t, sc.path, "servergroup", "create", "--name", "canary", "--protocol", "gRPC")
	mustRun(t, sc.path, "servergroup", "create", "--name", "web", "--protocol", "HTTP")
	sc.httpListener = decode[map[string]any](t, mustRun(t, sc.path, "listener", "create", "--lb", "demo", "--protocol", "HTTP",
		"--port", "8080", "--server-group", "web", "-o", "json"))["id"].(string)
	for _, l := range decode[[]map[string]any](t, mustRun(t, sc.path, "listener", "list", "-o", "json")) {
		if l["port"].(float64) == 8443 {
			sc.grpcListener = l["id"].(string)
		}
	}
	for _, sg := range decode[[]map[string]any](t, mustRun(t, sc.path, "servergroup", "list", "-o", "json")) {
		sc.groupIDs[sg["name"].(string)] = sg["id"].(string)
	}
	return sc
}

func TestRuleRoundTrip(t *testing.T) {
	sc := newRuleScene(t)
	path, lsn, ids := sc.path, sc.grpcListener, sc.groupIDs

	out := mustRun(t, path, "rule", "create", "--listener", lsn, "--priority", "20", "--name", "canary-split",
		"--match", "grpc-service=pkg.Orders", "--forward", "stable=90,canary=10", "-o", "json")
	split := decode[map[string]any](t, out)["id"].(string)
	want := fmt.Sprintf(`{
  "id": %q,
  "name": "canary-split",
  "listenerId": %q,
  "priority": 20,
  "conditions": [
    {
      "type": "Path",
      "values": [
        "/pkg.Orders/*"
      ]
    }
  ],
  "forward": [
    {
      "serverGroupId": %q,
      "weight": 90
    },
    {
      "serverGroupId": %q,
      "weight": 10
    }
  ]
}
`, split, lsn, ids["stable"], ids["canary"])
	if out != want {
		t.Fatalf("rule create -o json:\n%s\nwant:\n%s", out, want)
	}

	pin := decode[map[string]any](t, mustRun(t, path, "rule", "create", "--listener", lsn, "--priority", "15", "--name", "canary-pin",
		"--match", "grpc-service=pkg.Orders", "--match", "header:X-Canary=1", "--forward", "canary",
		"--insert-header", "x-route=canary", "--remove-header", "x-debug", "--traffic-limit", "qps=100,per-ip=10", "-o", "json"))["id"].(string)
	retired := decode[map[string]any](t, mustRun(t, path, "rule", "create", "--listener", lsn, "--priority", "5",
		"--match", "grpc-method=pkg.Orders/ListV1", "--fixed-response", "grpc-status=UNIMPLEMENTED,message=use List, please", "-o", "json"))["id"].(string)
	web := decode[map[string]any](t, mustRun(t, path, "rule", "create", "--listener", sc.httpListener, "--priority", "1", "--name", "gone",
		"--match", "path=/old/*", "--match", "method=get,head", "--fixed-response", "code=404,body=gone", "-o", "json"))["id"].(string)

	// Each listener's rules in the order it tries them, the listeners in the order they were made.
	wantList := strings.Join([]string{
		retired + "\t-\t" + lsn + "\t5\tpath=/pkg.Orders/ListV1\tgrpc-status 12 UNIMPLEMENTED",
		pin + "\tcanary-pin\t" + lsn + "\t15\tpath=/pkg.Orders/* AND header:x-canary=1\tforward canary",
		split + "\tcanary-split\t" + lsn + "\t20\tpath=/pkg.Orders/*\tforward stable=90,canary=10",
		web + "\tgone\t" + sc.httpListener + "\t1\tpath=/old/* AND method=GET,HEAD\thttp 404",
	}, "\n") + "\n"
	if got := mustRun(t, path, "rule", "list"); got != wantList {
		t.Fatalf("rule list:\n%s\nwant:\n%s", got, wantList)
	}
	listed := decode[[]map[string]any](t, mustRun(t, path, "rule", "list", "--listener", lsn, "-o", "json"))
	if len(listed) != 3 || listed[0]["id"] != retired || listed[1]["id"] != pin || listed[2]["id"] != split {
		t.Fatalf("rule list --listener -o json: %v", listed)
	}
	if got := mustRun(t, path, "rule", "list", "--listener", sc.httpListener, "-o", "yaml"); !strings.Contains(got, "  httpCode: 404\n") ||
		!strings.Contains(got, "  contentType: text/plain\n") || !strings.Contains(got, "- GET\n    - HEAD\n") {
		t.Fatalf("rule list -o yaml:\n%s", got)
	}

	wantGet := `ID:             ` + pin + `
Name:           canary-pin
Listener:       ` + lsn + `
Priority:       15
Match:          path=/pkg.Orders/*
                header:x-canary=1
Action:         forward canary
Insert headers: x-route=canary
Remove headers: x-debug
Traffic limit:  qps=100,per-ip=10
`
	if got := mustRun(t, path, "rule", "get", "canary-pin"); got != wantGet {
		t.Fatalf("rule get:\n%s\nwant:\n%s", got, wantGet)
	}
	if byID, byName := mustRun(t, path, "rule", "get", pin, "-o", "json"), mustRun(t, path, "rule", "get", "canary-pin", "-o", "json"); byID != byName {
		t.Fatalf("get by ID:\n%s\nby name:\n%s", byID, byName)
	}
	if got := mustRun(t, path, "rule", "get", retired); !strings.Contains(got, "Action:         grpc-status 12 UNIMPLEMENTED\nMessage:        \"use List, please\"\n") {
		t.Fatalf("rule get of a fixed gRPC response:\n%s", got)
	}
	if got := mustRun(t, path, "rule", "get", "gone"); !strings.Contains(got, "Action:         http 404\nContent type:   text/plain\nBody:           \"gone\"\n") {
		t.Fatalf("rule get of a fixed HTTP response:\n%s", got)
	}

	type rule struct {
		Name          string
		Priority      int
		Conditions    []map[string]any
		Forward       []map[string]any
		FixedResponse map[string]any
		InsertHeaders []map[string]string
		RemoveHeaders []string
		TrafficLimit  map[string]any
	}
	update := func(args ...string) rule {
		t.Helper()
		return decode[rule](t, mustRun(t, path, append(append([]string{"rule", "update"}, args...), "-o", "json")...))
	}
	// Only what is given changes.
	r := update("canary-pin", "--priority", "16")
	if r.Priority != 16 || len(r.Conditions) != 2 || len(r.InsertHeaders) != 1 || r.TrafficLimit["perIpQps"] != 10.0 || r.Forward[0]["serverGroupId"] != ids["canary"] {
		t.Fatalf("update --priority: %+v", r)
	}
	// --match replaces the conditions, --insert-header the inserted headers.
	r = update("canary-pin", "--match", "header:x-canary=1,yes", "--insert-header", "x-a=1", "--insert-header", "x-b=2")
	if len(r.Conditions) != 1 || r.Conditions[0]["key"] != "x-canary" || fmt.Sprint(r.Conditions[0]["values"]) != "[1 yes]" ||
		len(r.InsertHeaders) != 2 || r.InsertHeaders[1]["key"] != "x-b" || len(r.RemoveHeaders) != 1 {
		t.Fatalf("update --match --insert-header: %+v", r)
	}
	// A fixed response replaces the forward; the header changes, which only forwarded calls
	// get, must go with it.
	r = update("canary-pin", "--clear-headers", "--fixed-response", "grpc-status=14", "--clear-traffic-limit")
	if r.Forward != nil || r.FixedResponse["grpcStatus"] != 14.0 || r.InsertHeaders != nil || r.RemoveHeaders != nil || r.TrafficLimit != nil {
		t.Fatalf("update --fixed-response: %+v", r)
	}
	r = update(pin, "--forward", "stable=50,canary=50", "--name", "fifty")
	if r.FixedResponse != nil || len(r.Forward) != 2 || r.Forward[1]["weight"] != 50.0 || r.Name != "fifty" {
		t.Fatalf("update --forward: %+v", r)
	}

	for _, ref := range []string{"fifty", split, "gone", retired} {
		mustRun(t, path, "rule", "delete", ref)
	}
	if got := mustRun(t, path, "rule", "list", "-o", "json"); got != "[]\n" {
		t.Fatalf("rule list after deleting all: %q", got)
	}
	mustRun(t, path, "servergroup", "delete", "canary")
}

func TestRuleRefusedInputLeavesStateUnchanged(t *testing.T) {
	sc := newRuleScene(t)
	path, lsn := sc.path, sc.grpcListener
	for _, name := range []string{"g3", "g4", "g5", "g6"} {
		mustRun(t, path, "servergroup", "create", "--name", name, "--protocol", "gRPC")
	}
	mustRun(t, path, "rule", "create", "--listener", lsn, "--priority", "20", "--name", "canary-split",
		"--match", "grpc-service=pkg.Orders", "--forward", "stable=90,canary=10")
	mustRun(t, path, "rule", "create", "--listener", sc.httpListener, "--priority", "20", "--match", "path=/a", "--forward", "web")

	at := func(priority string, extra ...string) []string {
		return append([]string{"rule", "create", "--listener", lsn, "--priority", priority}, extra...)
	}
	create := func(extra ...string) []string { return at("10", extra...) }
	service := []string{"--match", "grpc-service=pkg.Billing"}
	forward := func(extra ...string) []string {
		return create(append(append(service, "--forward", "stable"), extra...)...)
	}
	var eleven []string
	for i := range 11 {
		eleven = append(eleven, "--match", "path=/p"+itoa(i))
	}
	paths := make([]string, 21)
	for i := range paths {
		paths[i] = "/p" + itoa(i)
	}
	reserved := "albctl or the protocol sets this header: a rule may not change host, authority, cookie, content-type, hop-by-hop fields, grpc-* or the x-forwarded-* albctl sets"
	tests := []struct {
		args []string
		err  string
	}{
		{at("0", append(service, "--forward", "stable")...), `invalid value "0" for --priority: must be 1-10000`},
		{at("10001", append(service, "--forward", "stable")...), `invalid value "10001" for --priority: must be 1-10000`},
		{at("20", append(service, "--forward", "stable")...),
			`invalid value "20" for --priority: rule canary-split of listener ` + lsn + ` has this priority already: each rule of a listener needs its own`},
		{create(append(eleven, "--forward", "stable")...), `invalid value "11 conditions" for --match: a rule has at most 10 conditions`},
		{create("--match", "path="+strings.Join(paths, ","), "--forward", "stable"), `invalid value "21 values" for --match: a Path condition has at most 20 values`},
		{create("--match", "source-ip=10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5,10.0.0.6", "--forward", "stable"),
			`invalid value "6 values" for --match: a SourceIp condition has at most 5 values`},
		{create(append(service, "--forward", "stable=1,canary=1,g3=1,g4=1,g5=1,g6=1")...), `invalid value "6 groups" for --forward: a rule forwards to at most 5 server groups`},
		{create(append(service, "--forward", "stable=101")...), `invalid value "101" for --forward: the weight of server group stable must be 0-100`},
		{create(append(service, "--forward", "stable=0,canary=0")...), `invalid value "0" for --forward: the weights add up to 0: give at least one group a weight above 0`},
		{create(append(service, "--forward", "stable,canary")...),
			`invalid value "stable,canary" for --forward: "stable,canary": with several server groups give each a weight, such as stable=90,canary=10`},
		{create(append(service, "--forward", "stable=x")...), `invalid value "stable=x" for --forward: weight "x" of stable is not a whole number`},
		{create(append(service, "--forward", "web")...),
			`invalid value "web" for --forward: server group web is HTTP, and this listener carries gRPC: a rule forwards to gRPC server groups`},
		{create(append(service, "--fixed-response", "code=404")...),
			`invalid value "code=404" for --fixed-response: this listener carries gRPC: answer with grpc-status=CODE[,message=TEXT]`},
		{create(append(service, "--fixed-response", "grpc-status=17")...), `invalid value "17" for --fixed-response: a gRPC status code is 0-16`},
		{create(append(service, "--fixed-response", "grpc-status=SOON")...),
			`invalid value "grpc-status=SOON" for --fixed-response: grpc-status "SOON" is neither a number 0-16 nor a code name such as UNAVAILABLE`},
		{create(append(service, "--fixed-response", "grpc-status=1", "--insert-header", "x-a=1")...),
			`invalid value "x-a" for --insert-header: header changes apply to forwarded calls, and this rule answers with a fixed response`},
		{create(append(service, "--forward", "stable", "--fixed-response", "grpc-status=1")...),
			"give --forward or --fixed-response, not both: a rule either forwards or answers itself"},
		{create(service...), "give --forward or --fixed-response: what the rule does with the calls it matches"},
		{forward("--insert-header", "grpc-timeout=1s"), `invalid value "grpc-timeout" for --insert-header: ` + reserved},
		{forward("--remove-header", "X-Forwarded-For"), `invalid value "x-forwarded-for" for --remove-header: ` + reserved},
		{forward("--remove-header", ":path"),
			`invalid value ":path" for --remove-header: pseudo-headers such as :path and :authority are the protocol's own: a rule may not change them`},
		{forward("--insert-header", "x-route"), `invalid value "x-route" for --insert-header: "x-route" is not KEY=VALUE, such as x-route=canary`},
		{forward("--insert-header", "x-a=1", "--remove-header", "x-a"),
			`invalid value "x-a" for --remove-header: the rule already inserts or removes this header`},
		{forward("--traffic-limit", "qps=10,per-ip=10"), `invalid value "10" for --traffic-limit: the limit per client IP must be 1 up to less than qps (10)`},
		{forward("--traffic-limit", "qps=1000001"), `invalid value "1000001" for --traffic-limit: qps must be 1-1000000`},
		{forward("--traffic-limit", "qps=many"), `invalid value "qps=many" for --traffic-limit: "qps=many" is not qps=N[,per-ip=M] with whole numbers`},
		{forward("--insert-header", "x-a=1", "--insert-header", "x-b=1", "--remove-header", "x-c", "--remove-header", "x-d", "--traffic-limit", "qps=5"),
			`invalid actions "6": a rule has at most 5 actions: the forward or fixed response, each header it inserts or removes, and its traffic limit`},
		{create("--match", "host=api_example.test", "--forward", "stable"),
			`invalid value "api_example.test" for --match: a host is 3-128 lowercase letters, digits, '-', '.', '*' or '?', with at least one '.', not starting or ending with '.', and a last label of letters or wildcards`},
		{create("--match", "path=/a b", "--forward", "stable"),
			`invalid value "/a b" for --match: a path is 1-128 characters starting with '/': letters, digits, '*', '?' and $-_.+/&~@:`},
		{create("--match", "path=pkg.Billing/Charge", "--forward", "stable"),
			`invalid value "pkg.Billing/Charge" for --match: a path is 1-128 characters starting with '/': letters, digits, '*', '?' and $-_.+/&~@:`},
		{create("--match", "header:x a=1", "--forward", "stable"), `invalid value "x a" for --match: a header name is 1-40 letters, digits, '-' or '_'`},
		{create("--match", "header:x-a= 1", "--forward", "stable"),
			`invalid value " 1" for --match: a header value is 1-128 printable ASCII characters, not starting or ending with a space`},
		{create("--match", "query:Lang=en", "--forward", "stable"),
			`invalid value "Lang" for --match: a query parameter name is 1-100 printable characters without uppercase letters, spaces or # [ ] { } \ | < > & "`},
		{create("--match", "query:lang=<en>", "--forward", "stable"),
			`invalid value "<en>" for --match: a query parameter value is 1-128 printable characters without uppercase letters, spaces or # [ ] { } \ | < > &`},
		{create("--match", "cookie:session=a;b", "--forward", "stable"),
			`invalid value "a;b" for --match: a cookie value is 1-100 printable characters without uppercase letters, spaces or ; # [ ] { } \ | < > & "`},
		{create("--match", "method=FETCH", "--forward", "stable"),
			`invalid value "FETCH" for --match: a method is one of HEAD, GET, POST, OPTIONS, PUT, PATCH, DELETE`},
		{create("--match", "source-ip=10.0.0.0/33", "--forward", "stable"),
			`invalid value "10.0.0.0/33" for --match: a source is an IP address or a CIDR range, such as 10.0.0.0/8 or ::1`},
		{create("--match", "colour=red", "--forward", "stable"),
			`invalid value "colour=red" for --match: unknown condition type "colour": use one of host, path, header:KEY, method, query:KEY, cookie:KEY, source-ip, grpc-service, grpc-method`},
		{create("--match", "grpc-service", "--forward", "stable"),
			`invalid value "grpc-service" for --match: "grpc-service" is not TYPE[:KEY]=VALUE[,VALUE...], such as grpc-service=pkg.Billing or header:x-canary=1`},
		{create("--match", "grpc-method=pkg.Billing", "--forward", "stable"),
			`invalid value "grpc-method=pkg.Billing" for --match: grpc-method "pkg.Billing" is not SERVICE/METHOD or */METHOD, such as pkg.Billing/Charge`},
		{create("--match", "header=x", "--forward", "stable"), `invalid value "header=x" for --match: header needs a key: header:KEY=VALUE`},
		{[]string{"rule", "create", "--listener", sc.httpListener, "--priority", "1", "--match", "path=/a", "--fixed-response", "grpc-status=14"},
			`invalid value "grpc-status=14" for --fixed-response: this listener carries HTTP: answer with code=NNN[,content-type=TYPE,body=TEXT]`},
		{[]string{"rule", "create", "--listener", sc.httpListener, "--priority", "1", "--match", "path=/a", "--fixed-response", "code=302"},
			`invalid value "302" for --fixed-response: must be a 2xx, 4xx or 5xx status`},
		{[]string{"rule", "create", "--listener", sc.httpListener, "--priority", "1", "--match", "path=/a", "--forward", "stable"},
			`invalid value "stable" for --forward: server group stable is gRPC, and this listener carries HTTP: a rule forwards to HTTP or HTTPS server groups`},
		{[]string{"rule", "create", "--priority", "1", "--match", "path=/a", "--forward", "stable"}, `required flag(s) "listener" not set`},
		{[]string{"rule", "update", "canary-split"}, "nothing to change: give at least one setting, such as --forward or --match"},
		{[]string{"rule", "update", "canary-split", "--traffic-limit", "qps=1", "--clear-traffic-limit"}, "give --traffic-limit or --clear-traffic-limit, not both"},
		{[]string{"rule", "update", "canary-split", "--forward", "stable=90,canary=11,g3=-1"}, `invalid value "-1" for --forward: the weight of server group g3 must be 0-100`},
		{[]string{"rule", "update", "canary-split", "--match", "path=/a,"}, `invalid value "" for --match: a path is 1-128 characters starting with '/': letters, digits, '*', '?' and $-_.+/&~@:`},
		{[]string{"rule", "update", "canary-split", "--listener", lsn}, "unknown flag: --listener"},
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		r := run(t, path, tt.args...)
		want := "Error: " + tt.err + "\nRun 'albctl rule " + tt.args[1] + " --help' for usage.\n"
		if r.code != 2 || r.err != want || r.out != "" {
			t.Errorf("albctl %s:\nexit %d, stderr %q, stdout %q\nwant exit 2, stderr %q", strings.Join(tt.args, " "), r.code, r.err, r.out, want)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatalf("albctl %s changed the state file", strings.Join(tt.args, " "))
		}
	}
}

func TestRuleKeepsWhatItUses(t *testing.T) {
	sc := newRuleScene(t)
	mustRun(t, sc.path, "rule", "create", "--listener", sc.grpcListener, "--priority", "20", "--name", "canary-split",
		"--match", "grpc-service=pkg.Orders", "--forward", "stable=90,canary=10")
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"listener", "delete", sc.grpcListener}, "Error: listener " + sc.grpcListener + " has rules canary-split: delete them first\n"},
		{[]string{"servergroup", "delete", "canary"}, "Error: server group canary is used by rules canary-split: delete them or forward them elsewhere first\n"},
		{[]string{"rule", "get", "nope"}, `Error: rule "nope" not found ('albctl rule list' shows them)` + "\n"},
		{[]string{"rule", "create", "--listener", "lsn-nope", "--priority", "1", "--match", "path=/a", "--forward", "stable"},
			`Error: listener "lsn-nope" not found ('albctl listener list' shows them)` + "\n"},
		{[]string{"rule", "update", "canary-split", "--forward", "nope"}, `Error: server group "nope" not found ('albctl servergroup list' shows them)` + "\n"},
		{[]string{"rule", "create", "--listener", sc.grpcListener, "--priority", "1", "--match", "path=/a", "--forward", "stable", "--name", "canary-split"},
			`Error: a rule named "canary-split" already exists` + "\n"},
	}
	before, err := os.ReadFile(sc.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		if r := run(t, sc.path, tt.args...); r.code != 1 || r.err != tt.err || r.out != "" {
			t.Errorf("albctl %s:\nexit %d, stderr %q, stdout %q\nwant exit 1, stderr %q", strings.Join(tt.args, " "), r.code, r.err, r.out, tt.err)
		}
		if after, _ := os.ReadFile(sc.path); !bytes.Equal(before, after) {
			t.Fatalf("albctl %s changed the state file", strings.Join(tt.args, " "))
		}
	}
}

func TestRuleCompletion(t *testing.T) {
	sc := newRuleScene(t)
	id := decode[map[string]any](t, mustRun(t, sc.path, "rule", "create", "--listener", sc.grpcListener, "--priority", "20", "--name", "canary-split",
		"--match", "grpc-service=pkg.Orders", "--forward", "stable=90,canary=10", "-o", "json"))["id"].(string)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"rule", "get", ""}, id + "\tpriority 20 on " + sc.grpcListener + "\ncanary-split\t" + id + "\n:4\n"},
		{[]string{"rule", "update", "canary-split", "--forward", ""}, "grpc-backends\tgRPC\nstable\tgRPC\ncanary\tgRPC\nweb\tHTTP\n:4\n"},
		{[]string{"rule", "create", "--match", ""}, "host=\npath=\nheader:\nmethod=\nquery:\ncookie:\nsource-ip=\ngrpc-service=\ngrpc-method=\n:6\n"},
		{[]string{"rule", "list", "--listener", ""}, sc.grpcListener + "\tHTTPS port 8443\n" + sc.httpListener + "\tHTTP port 8080\n:4\n"},
	}
	for _, tt := range tests {
		got := mustRun(t, sc.path, append([]string{"__complete"}, tt.args...)...)
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("completion of %q:\n%q\nwant it to start with\n%q", tt.args, got, tt.want)
		}
	}
}
