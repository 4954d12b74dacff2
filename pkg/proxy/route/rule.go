package route

import (
	"net/netip"
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
	*Matcher
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
	r := &Rule{Label: label, Matcher: m, Fixed: fixed, targets: targets}
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

// Targets returns the rule's server groups and weights.
func (r *Rule) Targets() []Target { return r.targets }

// Match returns the first of rules the request meets, or nil.
func Match(rules []*Rule, req *Request) *Rule {
	req.prepare()
	for _, r := range rules {
		if r.Matcher.match(req) {
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
