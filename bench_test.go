package standby

import (
	"strconv"
	"testing"
)

// Selector matching runs inside the store's checkout transaction for every
// candidate instance, so its cost multiplies by the ready instances
// scanned. Run with -benchmem.

func BenchmarkSelectorMatchesOverlay(b *testing.B) {
	pool := map[string]string{"team": "search", "env": "ci", "region": "eu-west-1", "tier": "gold"}
	inst := map[string]string{"zone": "a", "gpu": "none"}
	for _, bc := range []struct {
		name string
		sel  Selector
		want bool
	}{
		{"one label hit", Selector{Labels: map[string]string{"zone": "a"}}, true},
		{"four labels hit", Selector{Labels: map[string]string{"zone": "a", "team": "search", "env": "ci", "tier": "gold"}}, true},
		{"miss", Selector{Labels: map[string]string{"zone": "b"}}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if bc.sel.MatchesOverlay(pool, inst) != bc.want {
					b.Fatal("wrong match")
				}
			}
		})
	}
}

// BenchmarkSelectFirst is a checkout's choice over n ready candidates when
// the first selector matches none and the second matches only the last
// one: the worst case, every selector against every candidate.
func BenchmarkSelectFirst(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			pool := map[string]string{"team": "search"}
			insts := make([]map[string]string, n)
			for i := range insts {
				insts[i] = map[string]string{"zone": "a", "slot": strconv.Itoa(i)}
			}
			sels := []Selector{
				{Labels: map[string]string{"zone": "b"}},
				{Labels: map[string]string{"team": "search", "slot": strconv.Itoa(n - 1)}},
			}
			match := func(sel Selector, j int) bool { return sel.MatchesOverlay(pool, insts[j]) }
			b.ReportAllocs()
			for b.Loop() {
				if i, j := SelectFirst(sels, n, match); i != 1 || j != n-1 {
					b.Fatalf("SelectFirst = %d, %d", i, j)
				}
			}
		})
	}
}
