package route

import (
	"fmt"
	"net/netip"
	"strings"
)

// Condition types, named as the state model names them.
const (
	CondHost        = "Host"
	CondPath        = "Path"
	CondHeader      = "Header"
	CondMethod      = "Method"
	CondQueryString = "QueryString"
	CondCookie      = "Cookie"
	CondSourceIP    = "SourceIp"
)

// Condition is one condition of a rule: it holds if any value matches.
// Values of host, path, header, query and cookie conditions may hold '*'
// (any run of characters) and '?' (one character).
type Condition struct {
	Type   string
	Key    string // the header, query parameter or cookie
	Values []string
	// Sources are the ranges of a source-IP condition, in place of Values.
	Sources []netip.Prefix
}

// Request is what rules match a call on. Matching keeps what it found of
// the fields, so a Request describes one call and is not changed once
// matched.
type Request struct {
	Path   string // as sent, the query included
	Host   string // the authority, a port included or not
	Method string
	Source netip.Addr
	Header Header

	// path and host without query and port, found once for all rules.
	path, host string
	ready      bool
	// The first value of the header field last looked up, and whether it
	// has more: rules often test one field in turn.
	lastName, lastValue string
	lastOK, lastMore    bool
}

func (r *Request) prepare() {
	if !r.ready {
		r.path, r.host, r.ready = pathOnly(r.Path), hostOnly(r.Host), true
	}
}

// Header gives a request's header fields to the matcher.
type Header interface {
	// Value returns the i-th value of the field name (lowercase), if the
	// request has that many.
	Value(name string, i int) (string, bool)
}

// Matcher is a rule's conditions, compiled: all must hold.
type Matcher struct {
	conds []cond
}

type cond struct {
	Condition
	kind     condKind
	patterns []pattern
}

// condKind is a condition's type as a number, so that matching does not
// compare type names.
type condKind uint8

const (
	kindHost condKind = iota
	kindPath
	kindHeader
	kindMethod
	kindQuery
	kindCookie
	kindSource
)

var kinds = map[string]condKind{
	CondHost: kindHost, CondPath: kindPath, CondHeader: kindHeader, CondMethod: kindMethod,
	CondQueryString: kindQuery, CondCookie: kindCookie, CondSourceIP: kindSource,
}

// Compile checks and compiles conditions.
func Compile(conds []Condition) (*Matcher, error) {
	m := &Matcher{conds: make([]cond, len(conds))}
	for i, c := range conds {
		kind, ok := kinds[c.Type]
		if !ok {
			return nil, fmt.Errorf("condition %d: unknown type %q", i+1, c.Type)
		}
		cc := cond{Condition: c, kind: kind}
		if kind != kindSource {
			for _, v := range c.Values {
				cc.patterns = append(cc.patterns, newPattern(v, kind != kindPath))
			}
		}
		if c.Type == CondHeader {
			cc.Key = strings.ToLower(c.Key)
		}
		m.conds[i] = cc
	}
	return m, nil
}

// match reports whether the request, prepared, meets every condition.
func (m *Matcher) match(r *Request) bool {
	for i := range m.conds {
		if !m.conds[i].match(r) {
			return false
		}
	}
	return true
}

// FirstMismatch returns the index of the first condition the request does
// not meet, or -1 if it meets them all.
func (m *Matcher) FirstMismatch(r *Request) int {
	r.prepare()
	for i := range m.conds {
		if !m.conds[i].match(r) {
			return i
		}
	}
	return -1
}

// Seen describes what the request holds for condition i, for explaining
// why it did not match.
func (m *Matcher) Seen(r *Request, i int) string {
	c := &m.conds[i]
	switch c.Type {
	case CondHost:
		return "host " + quoteOrNone(hostOnly(r.Host))
	case CondPath:
		return "path " + quoteOrNone(pathOnly(r.Path))
	case CondMethod:
		return "method " + quoteOrNone(r.Method)
	case CondSourceIP:
		return "source " + r.Source.String()
	case CondHeader:
		v, ok := header(r, c.Key, 0)
		return "header " + c.Key + " " + quoteOrMissing(v, ok)
	case CondQueryString:
		v, ok := queryValue(r.Path, c.Key)
		return "query " + c.Key + " " + quoteOrMissing(v, ok)
	case CondCookie:
		v, ok := cookieValue(r, c.Key)
		return "cookie " + c.Key + " " + quoteOrMissing(v, ok)
	}
	return ""
}

func quoteOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return fmt.Sprintf("%q", s)
}

func quoteOrMissing(v string, ok bool) string {
	if !ok {
		return "(missing)"
	}
	return fmt.Sprintf("%q", v)
}

func (c *cond) match(r *Request) bool {
	switch c.kind {
	case kindHost:
		return c.any(r.host)
	case kindPath:
		return c.any(r.path)
	case kindMethod:
		return c.any(r.Method)
	case kindSource:
		src := r.Source.Unmap()
		for _, p := range c.Sources {
			if p.Contains(src) {
				return true
			}
		}
		return false
	case kindHeader:
		for i := 0; ; i++ {
			v, ok := header(r, c.Key, i)
			if !ok {
				return false
			}
			if c.any(v) {
				return true
			}
		}
	case kindQuery:
		v, ok := queryValue(r.Path, c.Key)
		return ok && c.any(v)
	case kindCookie:
		v, ok := cookieValue(r, c.Key)
		return ok && c.any(v)
	}
	return false
}

func (c *cond) any(s string) bool {
	for i := range c.patterns {
		if c.patterns[i].match(s) {
			return true
		}
	}
	return false
}

func header(r *Request, name string, i int) (string, bool) {
	if r.Header == nil {
		return "", false
	}
	if name != r.lastName || r.lastName == "" {
		r.lastName = name
		r.lastValue, r.lastOK = r.Header.Value(name, 0)
		r.lastMore = false
		if r.lastOK {
			_, r.lastMore = r.Header.Value(name, 1)
		}
	}
	switch {
	case i == 0:
		return r.lastValue, r.lastOK
	case !r.lastMore:
		return "", false
	}
	return r.Header.Value(name, i)
}

// hostOnly returns the host of an authority, without its port.
func hostOnly(authority string) string {
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && !strings.Contains(authority[i:], "]") {
		authority = authority[:i]
	}
	return strings.TrimSuffix(authority, ".")
}

func pathOnly(path string) string {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		return path[:i]
	}
	return path
}

// queryValue returns the first value of the query parameter key in a path,
// as sent (not percent-decoded).
func queryValue(path, key string) (string, bool) {
	i := strings.IndexByte(path, '?')
	if i < 0 {
		return "", false
	}
	q := path[i+1:]
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(pair, "=")
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

// cookieValue returns the value of the cookie key from the request's
// cookie fields.
func cookieValue(r *Request, key string) (string, bool) {
	for i := 0; ; i++ {
		line, ok := header(r, "cookie", i)
		if !ok {
			return "", false
		}
		for line != "" {
			var pair string
			pair, line, _ = strings.Cut(line, ";")
			k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
			if strings.EqualFold(k, key) {
				return v, true
			}
		}
	}
}

// pattern is a value with '*' (any run of characters) and '?' (one
// character), matched in full, ignoring ASCII case if fold is set. Its
// literal prefix and suffix are compared first, so most mismatches cost a
// comparison of a few bytes and a value ending in its only '*' never needs
// glob.
type pattern struct {
	text           string
	fold           bool
	wild           bool
	prefix, suffix string
	prefixStar     bool // text is prefix + "*"
}

func newPattern(v string, fold bool) pattern {
	p := pattern{text: v, fold: fold}
	first := strings.IndexAny(v, "*?")
	if first < 0 {
		return p
	}
	last := strings.LastIndexAny(v, "*?")
	p.wild = true
	p.prefix, p.suffix = v[:first], v[last+1:]
	p.prefixStar = first == last && v[first] == '*' && p.suffix == ""
	return p
}

func (p *pattern) match(s string) bool {
	if !p.wild {
		return p.same(p.text, s)
	}
	if p.prefixStar {
		return len(s) >= len(p.prefix) && p.same(p.prefix, s[:len(p.prefix)])
	}
	if len(s) < len(p.prefix)+len(p.suffix) || !p.same(p.prefix, s[:len(p.prefix)]) || !p.same(p.suffix, s[len(s)-len(p.suffix):]) {
		return false
	}
	return glob(p.text, s, p.fold)
}

func (p *pattern) same(a, b string) bool {
	if p.fold {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// glob matches s against pat; on a mismatch it backtracks to the last '*'
// only, which is enough for '*' and '?' and keeps the cost at
// len(pat)*len(s) at worst.
func glob(pat, s string, fold bool) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pat) && pat[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(pat) && (pat[pi] == '?' || sameByte(pat[pi], s[si], fold)):
			pi++
			si++
		case star >= 0:
			mark++
			pi, si = star+1, mark
		default:
			return false
		}
	}
	for pi < len(pat) && pat[pi] == '*' {
		pi++
	}
	return pi == len(pat)
}

func sameByte(a, b byte, fold bool) bool {
	if a == b {
		return true
	}
	if !fold {
		return false
	}
	return lower(a) == lower(b)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
