package quality

import (
	"context"
	"testing"
	"time"

	"github.com/immune-dev/immune/detect"
)

// TestRunQualityJudgesLabelledDeploys plays one clean and one regressed
// deploy and checks the harness reports each judge's outcome.
func TestRunQualityJudgesLabelledDeploys(t *testing.T) {
	all := Scenarios(1, 1)
	var picked []Scenario
	for _, sc := range all {
		if sc.Name == "good/clean rps=500" || sc.Name == "bad/errors x5" {
			picked = append(picked, sc)
		}
	}
	if len(picked) != 2 {
		t.Fatalf("scenarios: %d picked of %d", len(picked), len(all))
	}
	res, err := RunQuality(context.Background(), picked, QualityOptions{Lifetime: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		want := detect.Pass
		if r.Scenario.Bad {
			want = detect.Fail
		}
		if r.Immune.Verdict != want {
			t.Errorf("%s: Immune said %s after %s, want %s", r.Scenario.Name, r.Immune.Verdict, r.Immune.After, want)
		}
		if r.Scenario.Bad && (r.Immune.Metric != "error-ratio" || r.Reference.Verdict != detect.Fail) {
			t.Errorf("%s: Immune named %q; reference said %s", r.Scenario.Name, r.Immune.Metric, r.Reference.Verdict)
		}
	}
	im, _ := Summarize(res)
	if im.Bad != 1 || im.Good != 1 || im.Detection != 1 || im.FalseFail != 0 {
		t.Fatalf("summary %+v", im)
	}
}
