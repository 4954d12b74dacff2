package balancer

import (
	"fmt"
	"testing"
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
	if _, err := New("uch", nil); err == nil {
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
