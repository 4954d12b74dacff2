package h2

import (
	"testing"
	"time"
)

func TestResetLimiter(t *testing.T) {
	start := time.Unix(1000, 0)
	tests := []struct {
		name   string
		resets int
		every  time.Duration
		want   bool // the last reset is allowed
	}{
		{"a burst up to the bound", resetBurst, 0, true},
		{"a burst past the bound", resetBurst + 1, 0, false},
		{"the drain rate for a long time", 10 * resetBurst, time.Second / resetRate, true},
		{"twice the drain rate", 3 * resetBurst, time.Second / (2 * resetRate), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r resetLimiter
			allowed := true
			for i := 0; i < tt.resets; i++ {
				allowed = r.allow(start.Add(time.Duration(i) * tt.every))
			}
			if allowed != tt.want {
				t.Fatalf("after %d resets %v apart: allowed %v, want %v", tt.resets, tt.every, allowed, tt.want)
			}
		})
	}
}
