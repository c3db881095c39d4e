package access_test

import (
	"os"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/smart/access"
)

// The README's table of what a patient may write is the enforced one.
func TestREADMEStatesThePatientWriteRules(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	yes := map[bool]string{true: "yes", false: "no"}
	rules := access.PatientWriteRules()
	for _, r := range rules {
		author, rule := r.Author, r.Rule
		if author == "" {
			author = "—"
		}
		if rule == "" {
			rule = "—"
		}
		row := "| " + strings.Join([]string{r.Type, yes[r.Create], yes[r.Update], yes[r.Delete], author, rule}, " | ") + " |"
		if !strings.Contains(readme, row) {
			t.Errorf("README lacks the row %s", row)
		}
	}
	if n := strings.Count(readme[strings.Index(readme, "patient-write-rules"):], "\n| "); n < len(rules)+1 {
		t.Errorf("README's table has %d rows for %d rules", n-1, len(rules))
	}
}
