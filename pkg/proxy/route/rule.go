package route

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Rule is one forwarding rule of a listener, compiled: its conditions and
// what a call that meets them gets.
type Rule struct {
	// Label names the rule in the access log and metrics: its name, or
	// its ID.
	Label string
	Matcher
	// Fixed, if set, answers the call at the load balancer; otherwise the
	// call goes to one of targets.
	Fixed   *Fixed
	targets []Target
	total   uint64
	step    uint64
	next    atomic.Uint64
	// Insert and Remove change the request's header fields (lowercase
	// names) before it is forwarded.
	Insert []Field
	Remove []string
	// Limit, if set, admits calls at its rate.
	Limit *Limiter
}

// Target is a server group of a rule and its weight.
type Target struct {
	Group  *Group
	Weight int
}

// Fixed is an answer made at the load balancer: a gRPC status for a gRPC
// listener, an HTTP response for an HTTP one.
type Fixed struct {
	GRPCStatus  int
	Message     string
	HTTPCode    int
	ContentType string
	Body        string
}

// Field is a header field.
type Field struct {
	Name, Value string
}

// NewRule makes a rule of compiled conditions. Targets must have weights
// adding up to more than 0 unless the rule answers with fixed.
func NewRule(label string, m *Matcher, targets []Target, fixed *Fixed) *Rule {
	r := &Rule{Label: label, Matcher: *m, Fixed: fixed, targets: targets}
	for _, t := range targets {
		r.total += uint64(t.Weight)
	}
	r.step = strideFor(r.total)
	return r
}

// strideFor returns a step coprime with total near its golden section:
// position n*step mod total then visits every slot once per total calls,
// in an order that spreads each target's calls through the cycle.
func strideFor(total uint64) uint64 {
	if total <= 2 {
		return 1
	}
	for step := total * 618 / 1000; step > 1; step-- {
		if gcd(step, total) == 1 {
			return step
		}
	}
	return 1
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Group picks the server group for a call: over each run of calls as long
// as the total weight, every group gets exactly its weight's share.
func (r *Rule) Group() *Group {
	if len(r.targets) == 1 {
		return r.targets[0].Group
	}
	pos := (r.next.Add(1) * r.step) % r.total
	for _, t := range r.targets {
		if pos < uint64(t.Weight) {
			return t.Group
		}
		pos -= uint64(t.Weight)
	}
	return r.targets[len(r.targets)-1].Group
}

// Rules are a listener's rules in the order they are tried, indexed by the
// gRPC service their path conditions name: a call is matched only against
// the rules of its own service and those that name none, so a listener of
// many services' rules costs a call no more than one of a few.
type Rules struct {
	all []*Rule
	// bySvc lists, by service (a path's first segment), the positions in
	// all of the rules bound to it; rest those bound to none.
	bySvc map[string][]int
	rest  []int
}

// NewRules indexes rules, given in the order they are tried.
func NewRules(rules []*Rule) *Rules {
	t := &Rules{all: rules, bySvc: map[string][]int{}}
	for i, r := range rules {
		svcs := r.services()
		if svcs == nil {
			t.rest = append(t.rest, i)
		}
		for _, svc := range svcs {
			if l := t.bySvc[svc]; len(l) == 0 || l[len(l)-1] != i {
				t.bySvc[svc] = append(l, i)
			}
		}
	}
	return t
}

// services returns the services a call must be of to meet the rule: those
// of its first path condition whose every value starts with a literal
// "/service/". Nil means the rule is not bound to services.
func (r *Rule) services() []string {
	for _, c := range r.conds {
		if c.kind != kindPath {
			continue
		}
		var svcs []string
		for _, p := range c.patterns {
			literal := p.text
			if p.wild {
				literal = p.prefix
			}
			svc, ok := serviceOf(literal)
			if !ok {
				svcs = nil
				break
			}
			svcs = append(svcs, svc)
		}
		if svcs != nil {
			return svcs
		}
	}
	return nil
}

// serviceOf returns the first segment of a path that has a second: "svc"
// of "/svc/Method".
func serviceOf(path string) (string, bool) {
	if len(path) < 2 || path[0] != '/' {
		return "", false
	}
	j := strings.IndexByte(path[1:], '/')
	if j < 0 {
		return "", false
	}
	return path[1 : 1+j], true
}

// All returns the rules in the order they are tried.
func (t *Rules) All() []*Rule {
	if t == nil {
		return nil
	}
	return t.all
}

// Match returns the first rule the request meets, or nil.
func (t *Rules) Match(req *Request) *Rule {
	if t == nil {
		return nil
	}
	req.prepare()
	var bound []int
	if svc, ok := serviceOf(req.path); ok {
		bound = t.bySvc[svc]
	}
	rest := t.rest
	if len(bound) == 0 {
		for _, i := range rest {
			if r := t.all[i]; r.Matcher.match(req) {
				return r
			}
		}
		return nil
	}
	for len(bound) > 0 || len(rest) > 0 {
		var i int
		if len(rest) == 0 || len(bound) > 0 && bound[0] < rest[0] {
			i, bound = bound[0], bound[1:]
		} else {
			i, rest = rest[0], rest[1:]
		}
		if r := t.all[i]; r.Matcher.match(req) {
			return r
		}
	}
	return nil
}

// Limiter admits calls at a rate in all, and optionally per client
// address: token buckets that hold one second of calls.
type Limiter struct {
	QPS, PerIP int

	mu     sync.Mutex
	all    bucket
	bySrc  map[netip.Addr]*bucket
	Denied atomic.Uint64
}

// maxSources bounds the per-address buckets; past it, buckets that have
// refilled (their clients went quiet) are dropped.
const maxSources = 65536

type bucket struct {
	tokens float64
	last   time.Time
}

// take refills b at rate per second up to rate and takes a token if there
// is one.
func (b *bucket) take(now time.Time, rate int) bool {
	if b.last.IsZero() {
		b.tokens = float64(rate)
	} else {
		b.tokens = min(float64(rate), b.tokens+now.Sub(b.last).Seconds()*float64(rate))
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// NewLimiter returns a limiter of qps calls per second, and perIP per
// client address if perIP > 0.
func NewLimiter(qps, perIP int) *Limiter {
	l := &Limiter{QPS: qps, PerIP: perIP}
	if perIP > 0 {
		l.bySrc = map[netip.Addr]*bucket{}
	}
	return l
}

// Allow reports whether a call from src is admitted now; a call refused is
// counted in Denied.
func (l *Limiter) Allow(src netip.Addr) bool {
	now := time.Now()
	l.mu.Lock()
	ok := l.allowLocked(now, src)
	l.mu.Unlock()
	if !ok {
		l.Denied.Add(1)
	}
	return ok
}

func (l *Limiter) allowLocked(now time.Time, src netip.Addr) bool {
	if l.bySrc != nil {
		b := l.bySrc[src]
		if b == nil {
			if len(l.bySrc) >= maxSources {
				l.dropFullLocked(now)
			}
			if len(l.bySrc) >= maxSources {
				return l.all.take(now, l.QPS)
			}
			b = &bucket{}
			l.bySrc[src] = b
		}
		if !b.take(now, l.PerIP) {
			return false
		}
		if !l.all.take(now, l.QPS) {
			b.tokens++ // not used after all
			return false
		}
		return true
	}
	return l.all.take(now, l.QPS)
}

// dropFullLocked forgets the buckets that a second without calls has
// refilled: a new bucket starts full, so nothing changes for them.
func (l *Limiter) dropFullLocked(now time.Time) {
	for src, b := range l.bySrc {
		if now.Sub(b.last) >= time.Second {
			delete(l.bySrc, src)
		}
	}
}
