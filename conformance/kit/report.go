package kit

import (
	"encoding/xml"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

// counts tallies results by status, per suite in run order.
type counts struct {
	Suite                  string
	Pass, Fail, Skip, Warn int
}

func (r *Report) bySuite() []counts {
	var out []counts
	index := map[string]int{}
	for _, res := range r.Results {
		i, ok := index[res.Suite]
		if !ok {
			i = len(out)
			index[res.Suite] = i
			out = append(out, counts{Suite: res.Suite})
		}
		switch res.Status {
		case Pass:
			out[i].Pass++
		case Fail:
			out[i].Fail++
		case Skip:
			out[i].Skip++
		case Warn:
			out[i].Warn++
		}
	}
	return out
}

// WriteSummary writes the terminal summary: a table per suite and the
// failures and warnings with their reasons.
func (r *Report) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "Conformance of %s (%s)\n\n", r.Base, r.Duration.Round(time.Millisecond))
	fmt.Fprintf(w, "%-12s %6s %6s %6s %6s\n", "suite", "pass", "fail", "warn", "skip")
	var total counts
	for _, c := range r.bySuite() {
		fmt.Fprintf(w, "%-12s %6d %6d %6d %6d\n", c.Suite, c.Pass, c.Fail, c.Warn, c.Skip)
		total.Pass, total.Fail, total.Warn, total.Skip = total.Pass+c.Pass, total.Fail+c.Fail, total.Warn+c.Warn, total.Skip+c.Skip
	}
	fmt.Fprintf(w, "%-12s %6d %6d %6d %6d\n", "total", total.Pass, total.Fail, total.Warn, total.Skip)
	for _, st := range []Status{Fail, Warn, Skip} {
		first := true
		for _, res := range r.Results {
			if res.Status != st {
				continue
			}
			if first {
				fmt.Fprintf(w, "\n%s:\n", strings.ToUpper(string(st)))
				first = false
			}
			fmt.Fprintf(w, "  [%s] %s\n      %s\n", res.Suite, res.Name, res.Detail)
		}
	}
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Name    string       `xml:"name,attr"`
	Tests   int          `xml:"tests,attr"`
	Fails   int          `xml:"failures,attr"`
	Time    float64      `xml:"time,attr"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name  string      `xml:"name,attr"`
	Tests int         `xml:"tests,attr"`
	Fails int         `xml:"failures,attr"`
	Skips int         `xml:"skipped,attr"`
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
}

// WriteJUnit writes the results as JUnit XML, a suite per kit suite; a
// warning passes with its reason in system-out.
func (r *Report) WriteJUnit(w io.Writer) error {
	out := junitSuites{Name: "hearth conformance " + r.Base, Time: r.Duration.Seconds()}
	index := map[string]int{}
	for _, res := range r.Results {
		i, ok := index[res.Suite]
		if !ok {
			i = len(out.Suites)
			index[res.Suite] = i
			out.Suites = append(out.Suites, junitSuite{Name: res.Suite})
		}
		s := &out.Suites[i]
		c := junitCase{Name: res.Name, Classname: "conformance." + res.Suite, Time: res.Duration.Seconds()}
		switch res.Status {
		case Fail:
			c.Failure = &junitMessage{res.Detail}
			s.Fails++
			out.Fails++
		case Skip:
			c.Skipped = &junitMessage{res.Detail}
			s.Skips++
		case Warn:
			c.SystemOut = "warning: " + res.Detail
		}
		s.Tests++
		out.Tests++
		s.Cases = append(s.Cases, c)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteHTML writes a self-contained HTML report: no script, no external
// style or font.
func (r *Report) WriteHTML(w io.Writer) error {
	return reportPage.Execute(w, struct {
		*Report
		Suites []counts
		When   string
	}{r, r.bySuite(), r.Started.UTC().Format(time.RFC3339)})
}

var reportPage = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Conformance of {{.Base}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
table{border-collapse:collapse;width:100%;margin:1rem 0}th,td{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}.pass{color:#176c2c}.fail{color:#a30000;font-weight:bold}.warn{color:#8a5a00}.skip{color:#666}
td.detail{font-family:ui-monospace,monospace;font-size:.85rem;white-space:pre-wrap}
</style></head><body>
<h1>Conformance of {{.Base}}</h1>
<p>Run by <code>hearth conformance</code> at {{.When}}, in {{.Duration}}.</p>
<table><tr><th>suite</th><th>pass</th><th>fail</th><th>warn</th><th>skip</th></tr>
{{range .Suites}}<tr><td>{{.Suite}}</td><td class="pass">{{.Pass}}</td><td class="fail">{{.Fail}}</td><td class="warn">{{.Warn}}</td><td class="skip">{{.Skip}}</td></tr>
{{end}}</table>
<table><tr><th>suite</th><th>check</th><th>result</th><th>detail</th></tr>
{{range .Results}}<tr><td>{{.Suite}}</td><td>{{.Name}}</td><td class="{{.Status}}">{{.Status}}</td><td class="detail">{{.Detail}}</td></tr>
{{end}}</table>
</body></html>
`))
