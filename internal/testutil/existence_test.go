package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestExistenceCheck(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x")
	for _, tt := range []struct {
		name          string
		before, after bool
		wantError     bool
	}{
		{"absent, stays absent", false, false, false},
		{"absent, then made", false, true, true},
		{"there, stays", true, true, false},
		{"there, then removed", true, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			set := func(exists bool) {
				if exists {
					if err := os.MkdirAll(p, 0o755); err != nil {
						t.Fatal(err)
					}
				} else if err := os.RemoveAll(p); err != nil {
					t.Fatal(err)
				}
			}
			set(tt.before)
			e := RecordExistence(p)
			set(tt.after)
			r := &failRecorder{TB: t}
			e.Check(r)
			if got := r.msg != ""; got != tt.wantError {
				t.Errorf("Check reported %q; want an error: %v", r.msg, tt.wantError)
			}
		})
	}
}
