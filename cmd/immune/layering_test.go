package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestPackageLayering enforces the one-way data flow: ingest -> tsdb <-
// query <- detect. A front end never imports another front end, the store
// imports none of them, and only cmd wires them together.
func TestPackageLayering(t *testing.T) {
	const mod = "github.com/immune-dev/immune/"
	forbidden := map[string][]string{
		"tsdb":   {"ingest", "query", "detect", "bench", "cmd"},
		"ingest": {"tsdb", "query", "detect", "bench", "cmd"},
		"query":  {"tsdb", "ingest", "detect", "bench", "cmd"},
		"detect": {"tsdb", "ingest", "bench", "cmd"},
	}
	out, err := exec.Command("go", "list", "-json=ImportPath,Deps", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for dec.More() {
		var pkg struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&pkg); err != nil {
			t.Fatal(err)
		}
		top := strings.SplitN(strings.TrimPrefix(pkg.ImportPath, mod), "/", 2)[0]
		for _, dep := range pkg.Deps {
			if !strings.HasPrefix(dep, mod) {
				continue
			}
			depTop := strings.SplitN(strings.TrimPrefix(dep, mod), "/", 2)[0]
			for _, f := range forbidden[top] {
				if depTop == f {
					t.Errorf("%s imports %s: %s must not depend on %s", pkg.ImportPath, dep, top, f)
				}
			}
		}
		checked++
	}
	if checked < 5 {
		t.Fatalf("checked only %d packages", checked)
	}
}
