package state

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MatchTypes are the condition types --match takes, gRPC shorthands included.
var MatchTypes = []string{"host", "path", "header:KEY", "method", "query:KEY", "cookie:KEY", "source-ip", "grpc-service", "grpc-method"}

var matchTypes = map[string]string{
	"host": CondHost, "path": CondPath, "header": CondHeader, "method": CondMethod,
	"query": CondQueryString, "cookie": CondCookie, "source-ip": CondSourceIP,
}

var (
	grpcServiceRE = regexp.MustCompile(`^\.?[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$`)
	grpcMethodRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z_0-9]*$`)
)

// ParseMatch reads one condition as given to --match: TYPE[:KEY]=VALUE[,VALUE...]. The gRPC
// shorthands become path conditions: grpc-service=pkg.Svc is /pkg.Svc/*, grpc-method=pkg.Svc/M
// is /pkg.Svc/M, and grpc-method=*/M is /*/M. Host and header names are case-insensitive and
// kept in lowercase. The values are checked by RuleCondition.Validate, not here.
func ParseMatch(s string) (RuleCondition, error) {
	var c RuleCondition
	if err := asciiOnly(s); err != nil {
		return c, err
	}
	spec, list, ok := strings.Cut(s, "=")
	if !ok || list == "" {
		return c, fmt.Errorf("%q is not TYPE[:KEY]=VALUE[,VALUE...], such as grpc-service=pkg.Billing or header:x-canary=1", s)
	}
	typ, key, hasKey := strings.Cut(spec, ":")
	typ = strings.ToLower(strings.TrimSpace(typ))
	values := strings.Split(list, ",")
	switch typ {
	case "grpc-service", "grpc-method":
		if hasKey {
			return c, fmt.Errorf("%s takes no key: %s=VALUE", typ, typ)
		}
		c.Type = CondPath
		for _, v := range values {
			path, err := grpcPath(typ, strings.TrimSpace(v))
			if err != nil {
				return c, err
			}
			c.Values = append(c.Values, path)
		}
		return c, nil
	}
	condType, known := matchTypes[typ]
	if !known {
		return c, fmt.Errorf("unknown condition type %q: use one of %s", typ, strings.Join(MatchTypes, ", "))
	}
	switch condType {
	case CondHeader, CondQueryString, CondCookie:
		if !hasKey || key == "" {
			return c, fmt.Errorf("%s needs a key: %s:KEY=VALUE", typ, typ)
		}
	default:
		if hasKey {
			return c, fmt.Errorf("%s takes no key: %s=VALUE", typ, typ)
		}
	}
	c.Type, c.Key = condType, key
	if condType == CondHeader {
		c.Key = strings.ToLower(key)
	}
	for _, v := range values {
		if condType == CondHost || condType == CondSourceIP {
			v = strings.ToLower(strings.TrimSpace(v))
		}
		if condType == CondMethod {
			v = strings.ToUpper(strings.TrimSpace(v))
		}
		c.Values = append(c.Values, v)
	}
	return c, nil
}

func grpcPath(typ, v string) (string, error) {
	if typ == "grpc-service" {
		if !grpcServiceRE.MatchString(v) {
			return "", fmt.Errorf("grpc-service %q is not a service name such as pkg.Billing", v)
		}
		return "/" + strings.TrimPrefix(v, ".") + "/*", nil
	}
	svc, method, ok := strings.Cut(v, "/")
	if !ok || svc != "*" && !grpcServiceRE.MatchString(svc) || !grpcMethodRE.MatchString(method) {
		return "", fmt.Errorf("grpc-method %q is not SERVICE/METHOD or */METHOD, such as pkg.Billing/Charge", v)
	}
	return "/" + strings.TrimPrefix(svc, ".") + "/" + method, nil
}

// FormatMatch writes a condition as --match takes it.
func FormatMatch(c RuleCondition) string {
	for typ, ct := range matchTypes {
		if ct == c.Type {
			if c.Key != "" {
				typ += ":" + c.Key
			}
			return typ + "=" + strings.Join(c.Values, ",")
		}
	}
	return c.Type + "=" + strings.Join(c.Values, ",")
}

// ParseForward reads --forward: SG[=WEIGHT][,SG=WEIGHT...]. One group alone gets weight 100;
// with several, each needs its weight.
func ParseForward(s string) ([]ForwardTarget, error) {
	items := strings.Split(s, ",")
	var out []ForwardTarget
	for _, item := range items {
		name, w, hasWeight := strings.Cut(strings.TrimSpace(item), "=")
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, fmt.Errorf("%q: name a server group, as SG or SG=WEIGHT", s)
		}
		t := ForwardTarget{ServerGroupID: name, Weight: MaxForwardWeight}
		if hasWeight {
			n, err := strconv.Atoi(strings.TrimSpace(w))
			if err != nil {
				return nil, fmt.Errorf("weight %q of %s is not a whole number", w, name)
			}
			t.Weight = n
		} else if len(items) > 1 {
			return nil, fmt.Errorf("%q: with several server groups give each a weight, such as stable=90,canary=10", s)
		}
		out = append(out, t)
	}
	return out, nil
}

// grpcCodeNames are the gRPC status codes by name, 0 to 16.
var grpcCodeNames = []string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// GRPCCodeName returns a gRPC status code's name, such as UNAVAILABLE.
func GRPCCodeName(code int) string {
	if code >= 0 && code < len(grpcCodeNames) {
		return grpcCodeNames[code]
	}
	return strconv.Itoa(code)
}

func parseGRPCCode(s string) (int, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	name := strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
	for code, n := range grpcCodeNames {
		if n == name || strings.ReplaceAll(n, "_", "") == name {
			return code, nil
		}
	}
	return 0, fmt.Errorf("grpc-status %q is neither a number 0-%d nor a code name such as UNAVAILABLE", s, MaxGRPCStatusCode)
}

// ParseFixedResponse reads --fixed-response: grpc-status=CODE[,message=TEXT] for a gRPC
// listener (the code by number or name), code=NNN[,content-type=TYPE][,body=TEXT] for an HTTP
// one. The message or body, which may hold commas, comes last.
func ParseFixedResponse(s string) (FixedResponse, error) {
	var f FixedResponse
	rest := s
	for rest != "" {
		var item string
		item, rest, _ = strings.Cut(rest, ",")
		key, value, ok := strings.Cut(item, "=")
		if !ok {
			return f, fmt.Errorf("%q is not key=value (keys: grpc-status, message, code, content-type, body)", item)
		}
		switch strings.TrimSpace(key) {
		case "grpc-status":
			code, err := parseGRPCCode(value)
			if err != nil {
				return f, err
			}
			f.GRPCStatus = &code
		case "message":
			f.Message, rest = value+joinRest(rest), ""
		case "code":
			n, err := strconv.Atoi(strings.TrimSpace(value))
			if err != nil {
				return f, fmt.Errorf("code %q is not an HTTP status such as 404", value)
			}
			f.HTTPCode = n
		case "content-type":
			f.ContentType = strings.TrimSpace(value)
		case "body":
			f.Body, rest = value+joinRest(rest), ""
		default:
			return f, fmt.Errorf("unknown key %q (keys: grpc-status, message, code, content-type, body)", key)
		}
	}
	if f.GRPCStatus == nil && f.HTTPCode == 0 {
		return f, fmt.Errorf("%q: give grpc-status=CODE for a gRPC listener or code=NNN for an HTTP one", s)
	}
	if f.HTTPCode != 0 && f.ContentType == "" {
		f.ContentType = DefaultFixedContentType
	}
	return f, nil
}

// ParseInsertHeader reads --insert-header KEY=VALUE; the name is kept in lowercase.
func ParseInsertHeader(s string) (HeaderField, error) {
	if err := asciiOnly(s); err != nil {
		return HeaderField{}, err
	}
	key, value, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(key) == "" {
		return HeaderField{}, fmt.Errorf("%q is not KEY=VALUE, such as x-route=canary", s)
	}
	return HeaderField{Key: strings.ToLower(strings.TrimSpace(key)), Value: value}, nil
}

// ParseTrafficLimit reads --traffic-limit: qps=N[,per-ip=M].
func ParseTrafficLimit(s string) (TrafficLimit, error) {
	var tl TrafficLimit
	for _, item := range strings.Split(s, ",") {
		key, value, ok := strings.Cut(item, "=")
		n, err := strconv.Atoi(strings.TrimSpace(value))
		if !ok || err != nil {
			return tl, fmt.Errorf("%q is not qps=N[,per-ip=M] with whole numbers", s)
		}
		switch strings.TrimSpace(key) {
		case "qps":
			tl.QPS = n
		case "per-ip":
			tl.PerIPQPS = n
		default:
			return tl, fmt.Errorf("unknown key %q (keys: qps, per-ip)", key)
		}
	}
	if tl.QPS == 0 {
		return tl, fmt.Errorf("%q: give qps=N, the calls per second the rule admits", s)
	}
	return tl, nil
}

// ParseUCHKey reads --uch-key: query:KEY or header:KEY.
func ParseUCHKey(s string) (UCHConfig, error) {
	if err := asciiOnly(s); err != nil {
		return UCHConfig{}, err
	}
	typ, key, ok := strings.Cut(s, ":")
	switch strings.ToLower(strings.TrimSpace(typ)) {
	case "query":
		typ = UCHQueryString
	case "header":
		typ, key = UCHHeader, strings.ToLower(key)
	default:
		ok = false
	}
	if !ok || key == "" {
		return UCHConfig{}, fmt.Errorf("%q is not query:KEY or header:KEY, such as header:x-user-id", s)
	}
	return UCHConfig{Type: typ, Key: key}, nil
}

// FormatUCHKey writes a hash key as --uch-key takes it.
func FormatUCHKey(c *UCHConfig) string {
	if c == nil {
		return ""
	}
	if c.Type == UCHHeader {
		return "header:" + c.Key
	}
	return "query:" + c.Key
}

// asciiOnly refuses what no condition, header or hash key may hold before the parsers fold case
// and trim spaces, which would make ASCII of some of it: strings.ToLower turns the Kelvin sign
// into k, and strings.TrimSpace drops a no-break space.
func asciiOnly(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			r, _ := utf8.DecodeRuneInString(s[i:])
			return fmt.Errorf("%q has %q, which is not ASCII", s, r)
		}
	}
	return nil
}
