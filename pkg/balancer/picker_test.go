package balancer

import (
	"fmt"
	"testing"
	"time"
)

func backends(weights ...int) []*Backend {
	out := make([]*Backend, len(weights))
	for i, w := range weights {
		out[i] = NewBackend(fmt.Sprintf("10.0.0.%d:50051", i+1), w)
	}
	return out
}

func count(t *testing.T, p Picker, n int, source func(i int) string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		r, err := p.Pick(source(i), nil)
		if err != nil {
			t.Fatalf("pick %d: %v", i, err)
		}
		if r.Backend != p.Backends()[r.Index] {
			t.Fatalf("index %d does not match backend %s", r.Index, r.Backend.Addr())
		}
		got[r.Backend.Addr()]++
	}
	return got
}

func fixed(int) string { return "192.0.2.1" }

func TestWRRExactWeights(t *testing.T) {
	bs := backends(100, 50, 0)
	p, err := New(SchedulerWRR, bs)
	if err != nil {
		t.Fatal(err)
	}
	got := count(t, p, 1500, fixed)
	if got[bs[0].Addr()] != 1000 || got[bs[1].Addr()] != 500 || got[bs[2].Addr()] != 0 {
		t.Fatalf("got %v, want 1000/500/0", got)
	}
}

func TestWRRSmooth(t *testing.T) {
	// Weights 5,1,1 give the interleaved nginx sequence a a b a c a a.
	bs := backends(5, 1, 1)
	p, _ := New(SchedulerWRR, bs)
	want := []int{0, 0, 1, 0, 2, 0, 0}
	for i, w := range want {
		r, _ := p.Pick("", nil)
		if r.Index != w {
			t.Fatalf("pick %d = %d, want %d", i, r.Index, w)
		}
	}
}

func TestSkipUnhealthyDrainingExcluded(t *testing.T) {
	for _, sched := range []string{SchedulerWRR, SchedulerWLC, SchedulerSCH} {
		t.Run(sched, func(t *testing.T) {
			bs := backends(100, 100, 100, 100)
			bs[0].SetHealth(HealthUnhealthy)
			bs[1].SetDraining(true)
			bs[2].SetHealth(HealthHealthy)
			p, _ := New(sched, bs)
			for i := 0; i < 200; i++ {
				r, err := p.Pick(fmt.Sprintf("198.51.100.%d", i), bs[3])
				if err != nil {
					t.Fatal(err)
				}
				if r.Index != 2 || r.FailOpen {
					t.Fatalf("picked %d (fail open %v), want 2", r.Index, r.FailOpen)
				}
			}
		})
	}
}

func TestFailOpen(t *testing.T) {
	for _, sched := range []string{SchedulerWRR, SchedulerWLC, SchedulerSCH} {
		t.Run(sched, func(t *testing.T) {
			bs := backends(100, 100, 0)
			bs[0].SetHealth(HealthUnhealthy)
			bs[1].SetHealth(HealthUnhealthy)
			p, _ := New(sched, bs)
			seen := map[int]bool{}
			for i := 0; i < 100; i++ {
				r, err := p.Pick(fmt.Sprintf("203.0.113.%d", i), nil)
				if err != nil {
					t.Fatal(err)
				}
				if !r.FailOpen || r.Index == 2 {
					t.Fatalf("got index %d fail open %v", r.Index, r.FailOpen)
				}
				seen[r.Index] = true
			}
			if !seen[0] || !seen[1] {
				t.Fatalf("fail-open picks did not spread: %v", seen)
			}
			if bs[0].Stats().FailOpenPicks == 0 {
				t.Fatal("fail-open picks not counted")
			}
		})
	}
}

func TestNoBackend(t *testing.T) {
	for _, sched := range []string{SchedulerWRR, SchedulerWLC, SchedulerSCH} {
		for _, bs := range [][]*Backend{nil, backends(0, 0)} {
			p, _ := New(sched, bs)
			if _, err := p.Pick("192.0.2.1", nil); err != ErrNoBackend {
				t.Fatalf("%s: err = %v, want ErrNoBackend", sched, err)
			}
		}
		bs := backends(100)
		p, _ := New(sched, bs)
		if _, err := p.Pick("192.0.2.1", bs[0]); err != ErrNoBackend {
			t.Fatalf("%s with the only backend excluded: err = %v", sched, err)
		}
	}
	if _, err := New("lc", nil); err == nil {
		t.Fatal("unknown scheduler accepted")
	}
}

func TestWLC(t *testing.T) {
	bs := backends(100, 50)
	p, _ := New(SchedulerWLC, bs)
	// Hold every picked call open: the loads must follow the 2:1 weights.
	for i := 0; i < 300; i++ {
		r, _ := p.Pick("", nil)
		r.Backend.Begin()
	}
	if a, b := bs[0].Outstanding(), bs[1].Outstanding(); a != 200 || b != 100 {
		t.Fatalf("outstanding %d/%d, want 200/100", a, b)
	}
	// A backend with fewer calls in flight gets the next ones.
	for i := 0; i < 150; i++ {
		bs[0].End()
	}
	for i := 0; i < 25; i++ {
		if r, _ := p.Pick("", nil); r.Index != 0 {
			t.Fatalf("pick %d went to the busier backend", i)
		}
	}
	// Ties are broken round robin.
	idle := backends(100, 100, 100)
	p, _ = New(SchedulerWLC, idle)
	got := count(t, p, 30, fixed)
	for _, b := range idle {
		if got[b.Addr()] != 10 {
			t.Fatalf("idle tie-break not round robin: %v", got)
		}
	}
}

func TestSCHStickyAndStable(t *testing.T) {
	bs := backends(100, 100, 100, 100)
	p, _ := New(SchedulerSCH, bs)
	ip := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255) }
	const clients = 4000
	before := make([]int, clients)
	dist := map[int]int{}
	for i := 0; i < clients; i++ {
		r, _ := p.Pick(ip(i), nil)
		again, _ := p.Pick(ip(i), nil)
		if again.Index != r.Index {
			t.Fatalf("client %s moved between picks", ip(i))
		}
		before[i] = r.Index
		dist[r.Index]++
	}
	for i, n := range dist {
		if n < clients/4*6/10 || n > clients/4*14/10 {
			t.Fatalf("backend %d got %d of %d clients: %v", i, n, clients, dist)
		}
	}
	// Adding a fifth server moves about a fifth of the clients, all to it.
	bigger := append(bs, NewBackend("10.0.0.99:50051", 100))
	p2, _ := New(SchedulerSCH, bigger)
	moved := 0
	for i := 0; i < clients; i++ {
		r, _ := p2.Pick(ip(i), nil)
		if r.Index != before[i] {
			moved++
			if r.Index != 4 {
				t.Fatalf("client %s moved between old servers", ip(i))
			}
		}
	}
	if moved < clients/10 || moved > clients*3/10 {
		t.Fatalf("%d of %d clients moved, want about a fifth", moved, clients)
	}
	// Weights shift the share.
	heavy := backends(100, 25)
	p3, _ := New(SchedulerSCH, heavy)
	got := count(t, p3, clients, ip)
	if share := float64(got[heavy[0].Addr()]) / clients; share < 0.7 || share > 0.9 {
		t.Fatalf("weight 100 vs 25 got share %.2f, want about 0.8", share)
	}
}

func BenchmarkPick(b *testing.B) {
	for _, sched := range []string{SchedulerWRR, SchedulerWLC, SchedulerSCH} {
		b.Run(sched, func(b *testing.B) {
			bs := backends(100, 50, 100, 100, 80, 100, 100, 20)
			p, _ := New(sched, bs)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := p.Pick("192.0.2.55", nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// warmedFor makes b look as if it had started warming d ago.
func warmedFor(b *Backend, d time.Duration) {
	b.warmingSince.Store(time.Now().Add(-d).UnixNano())
}

func TestSlowStartRampWRR(t *testing.T) {
	// A long slow start with back-dated stamps: the shares do not depend on
	// how fast this machine picks.
	const slowStart = 100 * time.Second
	for _, tt := range []struct {
		warmed   time.Duration
		min, max int // picks of 1100 for the warming backend
	}{
		{0, 95, 105},                        // the floor: 10 against 100
		{5 * time.Second, 95, 105},          // still the floor
		{50 * time.Second, 360, 375},        // half: 50 against 100
		{80 * time.Second, 480, 495},        // 80 against 100
		{slowStart + time.Second, 550, 550}, // done: equal shares
	} {
		bs := backends(100, 100)
		warmedFor(bs[1], tt.warmed)
		p, _ := New(SchedulerWRR, bs, WithSlowStart(slowStart))
		got := count(t, p, 1100, fixed)[bs[1].Addr()]
		if got < tt.min || got > tt.max {
			t.Errorf("warming for %s: %d of 1100 picks, want %d-%d", tt.warmed, got, tt.min, tt.max)
		}
		if done := tt.warmed >= slowStart; bs[1].Warming() == done {
			t.Errorf("warming for %s: Warming() = %v after the picks", tt.warmed, bs[1].Warming())
		}
	}
}

func TestSlowStartRampRealTime(t *testing.T) {
	for _, sched := range []string{SchedulerWRR, SchedulerWLC} {
		t.Run(sched, func(t *testing.T) {
			const slowStart = 300 * time.Millisecond
			bs := backends(100, 100)
			p, _ := New(sched, bs, WithSlowStart(slowStart))
			bs[1].StartWarming()
			start := time.Now()
			early := 0
			for i := 0; i < 100; i++ {
				r, _ := p.Pick("", nil)
				r.Backend.Begin() // wlc weighs calls in flight
				if r.Index == 1 {
					early++
				}
			}
			// 100 picks take well under a millisecond; a stall of even
			// a third of the ramp would still keep the share at 25%.
			if elapsed := time.Since(start); early > 25 && elapsed < slowStart/3 {
				t.Fatalf("warming backend got %d of the first 100 picks in %s, want about 10", early, elapsed)
			}
			time.Sleep(slowStart - time.Since(start) + 50*time.Millisecond)
			for _, b := range bs {
				for b.Outstanding() > 0 {
					b.End()
				}
			}
			late := 0
			for i := 0; i < 200; i++ {
				r, _ := p.Pick("", nil)
				r.Backend.Begin()
				if r.Index == 1 {
					late++
				}
			}
			if late < 90 || late > 110 {
				t.Fatalf("after the ramp the backend got %d of 200 picks, want about 100", late)
			}
			if bs[1].Warming() {
				t.Fatal("warming not cleared after the ramp")
			}
		})
	}
}

func TestSlowStartRampWLC(t *testing.T) {
	const slowStart = 100 * time.Second
	for _, tt := range []struct {
		warmed   time.Duration
		min, max int64 // calls held open on the warming backend, of 330
	}{
		{0, 28, 32},                  // 10 against 100
		{50 * time.Second, 108, 112}, // 50 against 100
		{slowStart, 163, 167},        // equal
	} {
		bs := backends(100, 100)
		warmedFor(bs[1], tt.warmed)
		p, _ := New(SchedulerWLC, bs, WithSlowStart(slowStart))
		for i := 0; i < 330; i++ {
			r, _ := p.Pick("", nil)
			r.Backend.Begin()
		}
		if got := bs[1].Outstanding(); got < tt.min || got > tt.max {
			t.Errorf("warming for %s: %d of 330 calls in flight, want %d-%d", tt.warmed, got, tt.min, tt.max)
		}
	}
}

func TestSlowStartOffOrSCH(t *testing.T) {
	// Without slow start, and with sch, a warming backend gets its full share.
	for _, tt := range []struct {
		sched string
		opts  []Option
	}{
		{SchedulerWRR, nil},
		{SchedulerWLC, []Option{WithSlowStart(0)}},
		{SchedulerSCH, []Option{WithSlowStart(time.Minute)}},
	} {
		bs := backends(100, 100)
		bs[1].StartWarming()
		p, _ := New(tt.sched, bs, tt.opts...)
		got := count(t, p, 2000, func(i int) string { return fmt.Sprintf("10.1.%d.%d", i>>8, i&255) })
		if n := got[bs[1].Addr()]; n < 800 || n > 1200 {
			t.Errorf("%s %d options: warming backend got %d of 2000 picks, want about 1000", tt.sched, len(tt.opts), n)
		}
	}
}

func TestWarmingOnRecovery(t *testing.T) {
	b := NewBackend("10.0.0.1:50051", 100)
	for _, h := range []Health{HealthHealthy, HealthHealthy, HealthInitial, HealthHealthy} {
		if b.SetHealth(h); b.Warming() {
			t.Fatalf("warming after %v without having been unhealthy", h)
		}
	}
	b.SetHealth(HealthUnhealthy)
	if b.Warming() {
		t.Fatal("warming while unhealthy")
	}
	b.SetHealth(HealthHealthy)
	if !b.Warming() {
		t.Fatal("not warming after unhealthy → healthy")
	}
	// The recovered backend starts at the floor share.
	other := NewBackend("10.0.0.2:50051", 100)
	p, _ := New(SchedulerWRR, []*Backend{other, b}, WithSlowStart(time.Minute))
	if got := count(t, p, 1100, fixed)[b.Addr()]; got < 95 || got > 105 {
		t.Fatalf("recovered backend got %d of 1100 picks, want about 100", got)
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, sched := range []string{SchedulerWRR, SchedulerWLC, SchedulerSCH} {
		for _, warming := range []bool{false, true} {
			bs := backends(100, 50, 100, 20)
			if warming {
				bs[2].StartWarming()
			}
			p, _ := New(sched, bs, WithSlowStart(time.Minute))
			allocs := testing.AllocsPerRun(1000, func() {
				if _, err := p.Pick("192.0.2.55", nil); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s (warming %v): %.1f allocations per pick", sched, warming, allocs)
			}
		}
	}
}

// BenchmarkPickSlowStart is BenchmarkPick with slow start on: nothing
// warming costs an atomic load per member, one warming member a clock read.
func BenchmarkPickSlowStart(b *testing.B) {
	for _, sched := range []string{SchedulerWRR, SchedulerWLC} {
		for _, warming := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/warming=%v", sched, warming), func(b *testing.B) {
				bs := backends(100, 50, 100, 100, 80, 100, 100, 20)
				if warming {
					bs[3].StartWarming()
				}
				p, _ := New(sched, bs, WithSlowStart(time.Hour))
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := p.Pick("192.0.2.55", nil); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}
