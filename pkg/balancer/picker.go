package balancer

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Scheduler names, as in the server group model.
const (
	// SchedulerWRR is smooth weighted round robin.
	SchedulerWRR = "wrr"
	// SchedulerWLC is weighted least outstanding calls.
	SchedulerWLC = "wlc"
	// SchedulerSCH is a consistent hash of the client's source IP.
	SchedulerSCH = "sch"
	// SchedulerUCH is a consistent hash of a value of the request (a
	// header or query parameter) that the caller passes as the source.
	SchedulerUCH = "uch"
)

// ErrNoBackend is returned by Pick when no backend may take a call: the
// group is empty, every weight is 0, every backend drains, or the only
// candidate was excluded.
var ErrNoBackend = errors.New("no backend available")

// Result is the outcome of a pick.
type Result struct {
	// Index is the position of Backend in the slice given to New, so the
	// caller can find its own per-backend data without a map lookup.
	Index   int
	Backend *Backend
	// FailOpen is true when every candidate was unhealthy and the
	// scheduler picked one anyway.
	FailOpen bool
}

// Picker chooses a backend for one call. Implementations are safe for
// concurrent use and do not allocate.
type Picker interface {
	// Pick chooses a backend for a call from source (the key "sch" and
	// "uch" hash: the client's IP, or the request's value), never choosing exclude (may be nil), which lets a caller
	// retry a failed call elsewhere.
	Pick(source string, exclude *Backend) (Result, error)
	// Backends returns the backends the picker was built from, in order.
	Backends() []*Backend
}

// Option changes how New builds a picker.
type Option func(*settings)

type settings struct {
	slowStart time.Duration
}

// WithSlowStart ramps the weight of each warming backend linearly from a
// tenth of its weight up to all of it over d; 0 turns slow start off. Only
// wrr and wlc ramp: sch keeps every client on its own server, so it ignores
// slow start.
func WithSlowStart(d time.Duration) Option {
	return func(s *settings) { s.slowStart = d }
}

// New builds a picker for the scheduler over the backends, using the weights
// they hold now.
func New(scheduler string, backends []*Backend, opts ...Option) (Picker, error) {
	var set settings
	for _, o := range opts {
		o(&set)
	}
	slowStart := max(int64(set.slowStart), 0)
	members := make([]member, len(backends))
	for i, b := range backends {
		members[i] = member{backend: b, weight: int64(b.Weight())}
	}
	switch scheduler {
	case SchedulerWRR, "":
		return &wrrPicker{members: members, current: make([]int64, len(members)), slowStart: slowStart}, nil
	case SchedulerWLC:
		return &wlcPicker{members: members, slowStart: slowStart}, nil
	case SchedulerSCH, SchedulerUCH:
		return newSCH(members), nil
	}
	return nil, fmt.Errorf("unknown scheduler %q: must be wrr, wlc, sch or uch", scheduler)
}

type member struct {
	backend *Backend
	weight  int64
}

// weightScale is the unit of effective weights: weight w counts as
// w*weightScale, so that a warming backend of weight 1 still has a share.
const weightScale = 1000

// warmFloor is the part of its weight (in weightScale units) a backend gets
// as soon as it starts warming. A tenth lets it take some calls at once, so
// its connections and caches start warming and a broken server shows up
// early, without putting its full share on it cold.
const warmFloor = weightScale / 10

// ramp gives the effective weights of warming backends for one pick. The
// pickers' loops call warmingSince for each member, which costs one atomic
// load (none without slow start), and weight only for a warming one; the
// clock is read at most once per pick, and only then.
type ramp struct {
	slowStart int64 // nanoseconds; 0 = off
	now       int64 // Unix nanoseconds, read on first need
}

// warmingSince returns when m started warming, or 0.
func (r *ramp) warmingSince(m *member) int64 {
	if r.slowStart == 0 {
		return 0
	}
	return m.backend.warmingSince.Load()
}

// weight returns the effective weight of m, warming since the time given.
func (r *ramp) weight(m *member, since int64) int64 {
	if r.now == 0 {
		r.now = time.Now().UnixNano()
	}
	elapsed := r.now - since
	if elapsed >= r.slowStart {
		// Compare-and-swap: the backend may have started warming again.
		m.backend.warmingSince.CompareAndSwap(since, 0)
		return m.weight * weightScale
	}
	return m.weight * max(elapsed*weightScale/r.slowStart, warmFloor)
}

// usable reports whether m may take a new call. Health is ignored on the
// fail-open pass.
func (m *member) usable(exclude *Backend, ignoreHealth bool) bool {
	if m.weight <= 0 || m.backend == exclude || m.backend.Draining() {
		return false
	}
	return ignoreHealth || m.backend.Health() != HealthUnhealthy
}

func backendsOf(members []member) []*Backend {
	out := make([]*Backend, len(members))
	for i := range members {
		out[i] = members[i].backend
	}
	return out
}

// pickTwice runs one pass that honours health, then a fail-open pass.
func pickTwice(members []member, exclude *Backend, pass func(ignoreHealth bool) int) (Result, error) {
	failOpen := false
	i := pass(false)
	if i < 0 {
		failOpen = true
		i = pass(true)
	}
	if i < 0 {
		return Result{}, ErrNoBackend
	}
	b := members[i].backend
	b.picks.Add(1)
	if failOpen {
		b.failOpenPicks.Add(1)
	}
	return Result{Index: i, Backend: b, FailOpen: failOpen}, nil
}

// wrrPicker is nginx's smooth weighted round robin: every pick adds each
// candidate's weight to its current score, takes the highest score and
// subtracts the total from it. Over sum(weights) picks each backend is chosen
// exactly weight times, interleaved rather than in bursts.
type wrrPicker struct {
	members   []member
	slowStart int64
	mu        sync.Mutex
	current   []int64
}

func (p *wrrPicker) Backends() []*Backend { return backendsOf(p.members) }

func (p *wrrPicker) Pick(_ string, exclude *Backend) (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := ramp{slowStart: p.slowStart}
	return pickTwice(p.members, exclude, func(ignoreHealth bool) int {
		best, total := -1, int64(0)
		for i := range p.members {
			m := &p.members[i]
			if !m.usable(exclude, ignoreHealth) {
				continue
			}
			w := m.weight * weightScale
			if since := r.warmingSince(m); since != 0 {
				w = r.weight(m, since)
			}
			p.current[i] += w
			total += w
			if best < 0 || p.current[i] > p.current[best] {
				best = i
			}
		}
		if best >= 0 {
			p.current[best] -= total
		}
		return best
	})
}

// wlcPicker picks the backend with the fewest outstanding calls per unit of
// weight. The scan starts at a rotating position so that ties (for example
// an idle group) are broken round robin.
type wlcPicker struct {
	members   []member
	slowStart int64
	next      atomic.Uint64
}

func (p *wlcPicker) Backends() []*Backend { return backendsOf(p.members) }

func (p *wlcPicker) Pick(_ string, exclude *Backend) (Result, error) {
	n := len(p.members)
	if n == 0 {
		return Result{}, ErrNoBackend
	}
	start := int(p.next.Add(1) % uint64(n))
	r := ramp{slowStart: p.slowStart}
	return pickTwice(p.members, exclude, func(ignoreHealth bool) int {
		best := -1
		var bestLoad, bestWeight int64
		for k := 0; k < n; k++ {
			i := (start + k) % n
			m := &p.members[i]
			if !m.usable(exclude, ignoreHealth) {
				continue
			}
			load, w := m.backend.Outstanding(), m.weight*weightScale
			if since := r.warmingSince(m); since != 0 {
				w = r.weight(m, since)
			}
			// load/weight < bestLoad/bestWeight without division.
			if best < 0 || load*bestWeight < bestLoad*w {
				best, bestLoad, bestWeight = i, load, w
			}
		}
		return best
	})
}

// schPicker hashes the client's IP onto a ring of virtual nodes; each backend
// owns a number of points proportional to its weight. Adding or removing a
// backend only moves the clients whose points it gains or loses. An
// unusable backend's points are skipped, so its clients spread over the
// following points instead of all landing on one neighbour.
type schPicker struct {
	members []member
	ring    []ringPoint
}

type ringPoint struct {
	hash   uint64
	member int
}

// pointsPerWeight is the number of ring points for each unit of weight, so a
// backend of weight 100 (the default) owns 160 points: enough for an even
// spread, small enough for groups of 1,000 servers.
const pointsPerWeight = 1.6

func newSCH(members []member) *schPicker {
	p := &schPicker{members: members}
	for i, m := range members {
		points := int(float64(m.weight) * pointsPerWeight)
		if m.weight > 0 && points == 0 {
			points = 1
		}
		for v := 0; v < points; v++ {
			key := m.backend.Addr() + "#" + strconv.Itoa(v)
			p.ring = append(p.ring, ringPoint{hash: hashString(key), member: i})
		}
	}
	sort.Slice(p.ring, func(a, b int) bool { return p.ring[a].hash < p.ring[b].hash })
	return p
}

func (p *schPicker) Backends() []*Backend { return backendsOf(p.members) }

func (p *schPicker) Pick(source string, exclude *Backend) (Result, error) {
	n := len(p.ring)
	if n == 0 {
		return Result{}, ErrNoBackend
	}
	h := hashString(source)
	// First point at or after h, wrapping around.
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if p.ring[mid].hash < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	start := lo
	return pickTwice(p.members, exclude, func(ignoreHealth bool) int {
		for k := 0; k < n; k++ {
			pt := p.ring[(start+k)%n]
			if p.members[pt.member].usable(exclude, ignoreHealth) {
				return pt.member
			}
		}
		return -1
	})
}

// hashString is 64-bit FNV-1a followed by a murmur-style finaliser; FNV alone
// spreads similar keys such as "10.0.0.1" and "10.0.0.2" poorly on a ring.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
