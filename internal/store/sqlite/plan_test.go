package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckoutQueryPlans: the checkout's pick walks the partial index of
// ready instances (a claim is one delete from it), and a pool's look finds
// its rows by pool id; neither scans the table.
func TestCheckoutQueryPlans(t *testing.T) {
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "standby.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const one, many = "i.pool_id = ?1", "i.pool_id IN (SELECT value FROM json_each(?1))"
	tests := []struct {
		name, query, index string
	}{
		{"claim one pool", claimFirstSQL(one), "instances_ready"},
		{"claim many pools", claimFirstSQL(many), "instances_ready"},
		{"candidates", candidateSQL(one, true, ""), "instances_ready"},
		{"pool look", "SELECT " + instanceBriefCols + " FROM instances WHERE pool_id = ? AND state IN (?, ?) ORDER BY id", "instances_pool_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := s.read.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+tt.query, "p", "prj", "", "sb")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			all := strings.Join(plan, "\n")
			if !strings.Contains(all, tt.index) || strings.Contains(all, "SCAN i\n") || strings.HasSuffix(all, "SCAN i") || strings.Contains(all, "SCAN instances") {
				t.Fatalf("plan does not use %s:\n%s", tt.index, all)
			}
		})
	}
}
