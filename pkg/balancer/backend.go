// Package balancer chooses a backend server for each gRPC call.
//
// A Backend is one server of a server group; it lives as long as the server
// stays in the group, so its health flag, drain flag and counters survive
// configuration changes. A Picker is an immutable view of a group built by
// New for one scheduler ("wrr", "wlc" or "sch"); the data plane swaps the
// whole Picker atomically when the group changes, so picking never takes a
// lock shared with reconfiguration and never allocates.
//
// A backend that joins a running group or comes back from unhealthy is
// warming: with slow start (WithSlowStart), wrr and wlc ramp its weight up
// over the slow-start duration instead of giving it its full share cold.
package balancer

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Health is the state a health checker last reported for a backend.
type Health int32

const (
	// HealthInitial means no check has finished yet. Such a backend takes
	// traffic: a new server would otherwise sit idle until its first check.
	HealthInitial Health = iota
	// HealthHealthy means the last checks passed.
	HealthHealthy
	// HealthUnhealthy means the last checks failed; pickers skip the backend
	// unless every candidate is unhealthy (fail open).
	HealthUnhealthy
)

func (h Health) String() string {
	switch h {
	case HealthInitial:
		return "initial"
	case HealthHealthy:
		return "healthy"
	case HealthUnhealthy:
		return "unhealthy"
	}
	return fmt.Sprintf("Health(%d)", int32(h))
}

// Backend is one server of a group, shared by the pickers, the proxy and the
// health checker. All methods are safe for concurrent use.
type Backend struct {
	addr string

	weight      atomic.Int32
	health      atomic.Int32
	draining    atomic.Bool
	outstanding atomic.Int64
	// warmingSince is when the backend started warming, in Unix
	// nanoseconds; 0 means it is not warming. A picker with slow start
	// clears it once the ramp is over.
	warmingSince atomic.Int64

	picks           atomic.Uint64
	failOpenPicks   atomic.Uint64
	calls           atomic.Uint64
	connectFailures atomic.Uint64
}

// NewBackend returns a backend for the server at addr ("host:port") with the
// given weight; its health starts as HealthInitial.
func NewBackend(addr string, weight int) *Backend {
	b := &Backend{addr: addr}
	b.SetWeight(weight)
	return b
}

// Addr returns the server's "host:port".
func (b *Backend) Addr() string { return b.addr }

// Weight returns the weight the backend was last given. Pickers copy the
// weight when they are built, so a change takes effect with the next Picker.
func (b *Backend) Weight() int { return int(b.weight.Load()) }

// SetWeight records a new weight; negative weights count as 0.
func (b *Backend) SetWeight(w int) {
	if w < 0 {
		w = 0
	}
	b.weight.Store(int32(w))
}

// Health returns the last reported health.
func (b *Backend) Health() Health { return Health(b.health.Load()) }

// SetHealth records the health checker's verdict. A backend that goes from
// unhealthy to healthy starts warming: it has been out of rotation, and its
// connections and caches are cold.
func (b *Backend) SetHealth(h Health) {
	old := Health(b.health.Swap(int32(h)))
	if old == HealthUnhealthy && h == HealthHealthy {
		b.StartWarming()
	}
}

// StartWarming starts the backend's slow start now; it matters only to
// pickers built with WithSlowStart.
func (b *Backend) StartWarming() { b.warmingSince.Store(time.Now().UnixNano()) }

// Warming reports whether the backend started warming and no picker has seen
// its ramp end yet.
func (b *Backend) Warming() bool { return b.warmingSince.Load() != 0 }

// Draining reports whether the backend refuses new calls.
func (b *Backend) Draining() bool { return b.draining.Load() }

// SetDraining stops (or resumes) new calls to the backend; calls in flight
// are not affected.
func (b *Backend) SetDraining(d bool) { b.draining.Store(d) }

// Outstanding returns the number of calls in flight on the backend.
func (b *Backend) Outstanding() int64 { return b.outstanding.Load() }

// Begin records the start of a call on the backend; End must follow.
func (b *Backend) Begin() {
	b.outstanding.Add(1)
	b.calls.Add(1)
}

// End records the end of a call started with Begin.
func (b *Backend) End() { b.outstanding.Add(-1) }

// RecordConnectFailure counts a call that could not reach the backend.
func (b *Backend) RecordConnectFailure() { b.connectFailures.Add(1) }

// Stats is a snapshot of a backend for status pages.
type Stats struct {
	Addr            string `json:"addr"`
	Weight          int    `json:"weight"`
	Health          string `json:"health"`
	Draining        bool   `json:"draining"`
	Outstanding     int64  `json:"outstanding"`
	Picks           uint64 `json:"picks"`
	FailOpenPicks   uint64 `json:"failOpenPicks"`
	Calls           uint64 `json:"calls"`
	ConnectFailures uint64 `json:"connectFailures"`
}

// Stats returns the backend's current counters.
func (b *Backend) Stats() Stats {
	return Stats{
		Addr:            b.addr,
		Weight:          b.Weight(),
		Health:          b.Health().String(),
		Draining:        b.Draining(),
		Outstanding:     b.Outstanding(),
		Picks:           b.picks.Load(),
		FailOpenPicks:   b.failOpenPicks.Load(),
		Calls:           b.calls.Load(),
		ConnectFailures: b.connectFailures.Load(),
	}
}
