package main

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// generateCmd writes a deterministic synthetic dataset as NDJSON, for
// benchmarks: the same flags always give the same bytes.
func generateCmd(args []string) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	patients := fs.Int("patients", 1000, "number of patients")
	out := fs.String("out", "bench-data/ndjson", "output directory")
	seed := fs.Uint64("seed", 1, "random seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	g := &generator{rng: rand.New(rand.NewPCG(*seed, 42)), files: map[string]*ndjsonFile{}, dir: *out}
	defer g.close()
	n, err := g.run(*patients)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %d resources for %d patients to %s\n", n, *patients, *out)
	return g.close()
}

type ndjsonFile struct {
	f  *os.File
	zw *gzip.Writer
	w  *bufio.Writer
}

type generator struct {
	rng   *rand.Rand
	dir   string
	files map[string]*ndjsonFile
	n     int
}

func (g *generator) write(typ string, res map[string]any) error {
	f, ok := g.files[typ]
	if !ok {
		fh, err := os.Create(filepath.Join(g.dir, typ+".ndjson.gz"))
		if err != nil {
			return err
		}
		zw, _ := gzip.NewWriterLevel(fh, gzip.BestSpeed)
		f = &ndjsonFile{f: fh, zw: zw, w: bufio.NewWriterSize(zw, 1<<20)}
		g.files[typ] = f
	}
	res["resourceType"] = typ
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	g.n++
	f.w.Write(b)
	return f.w.WriteByte('\n')
}

func (g *generator) close() error {
	var first error
	for typ, f := range g.files {
		for _, err := range []error{f.w.Flush(), f.zw.Close(), f.f.Close()} {
			if err != nil && first == nil {
				first = fmt.Errorf("%s: %w", typ, err)
			}
		}
		delete(g.files, typ)
	}
	return first
}

var (
	genFamilies = []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
		"Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez",
		"Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King",
		"Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell",
		"Mitchell", "Carter", "Roberts", "Müller", "Schröder", "Øberg", "Núñez", "Côté"}
	genGiven = []string{"James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
		"William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Chris", "Karen", "Zoë", "José", "Ana"}
	// LOINC codes with a unit and a plausible range.
	genObs = []struct {
		code, display, unit, category string
		lo, hi                        float64
	}{
		{"8480-6", "Systolic blood pressure", "mm[Hg]", "vital-signs", 95, 170},
		{"8462-4", "Diastolic blood pressure", "mm[Hg]", "vital-signs", 55, 105},
		{"8867-4", "Heart rate", "/min", "vital-signs", 50, 120},
		{"9279-1", "Respiratory rate", "/min", "vital-signs", 10, 25},
		{"8310-5", "Body temperature", "Cel", "vital-signs", 36, 39},
		{"29463-7", "Body weight", "kg", "vital-signs", 3, 140},
		{"8302-2", "Body height", "cm", "vital-signs", 50, 200},
		{"39156-5", "Body mass index", "kg/m2", "vital-signs", 15, 40},
		{"2339-0", "Glucose", "mg/dL", "laboratory", 60, 250},
		{"4548-4", "Hemoglobin A1c", "%", "laboratory", 4, 12},
		{"2093-3", "Cholesterol", "mg/dL", "laboratory", 120, 300},
		{"2571-8", "Triglycerides", "mg/dL", "laboratory", 40, 400},
		{"2085-9", "HDL cholesterol", "mg/dL", "laboratory", 25, 90},
		{"18262-6", "LDL cholesterol", "mg/dL", "laboratory", 50, 200},
		{"2160-0", "Creatinine", "mg/dL", "laboratory", 0.5, 2.5},
		{"3094-0", "Urea nitrogen", "mg/dL", "laboratory", 6, 40},
		{"2951-2", "Sodium", "mmol/L", "laboratory", 130, 150},
		{"2823-3", "Potassium", "mmol/L", "laboratory", 3, 6},
		{"718-7", "Hemoglobin", "g/dL", "laboratory", 9, 18},
		{"6690-2", "Leukocytes", "10*3/uL", "laboratory", 3, 15},
	}
	genConditions = []struct{ code, display string }{
		{"44054006", "Diabetes mellitus type 2"}, {"38341003", "Hypertension"}, {"195967001", "Asthma"},
		{"55822004", "Hyperlipidemia"}, {"40055000", "Chronic sinusitis"}, {"10509002", "Acute bronchitis"},
		{"15777000", "Prediabetes"}, {"162864005", "Obesity"}, {"53741008", "Coronary heart disease"}, {"35489007", "Depression"},
	}
	genMeds = []struct{ code, display string }{
		{"314076", "lisinopril 10 MG Oral Tablet"}, {"860975", "metformin 500 MG Oral Tablet"}, {"197361", "amlodipine 5 MG Oral Tablet"},
		{"617312", "atorvastatin 10 MG Oral Tablet"}, {"895994", "albuterol inhaler"}, {"308136", "amoxicillin 500 MG Oral Capsule"},
	}
)

var genEpoch = time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)

func (g *generator) pick(n int) int { return g.rng.IntN(n) }

func (g *generator) run(patients int) (int, error) {
	const orgs, practitioners = 10, 50
	for i := 0; i < orgs; i++ {
		if err := g.write("Organization", map[string]any{"id": fmt.Sprintf("gen-org-%d", i), "active": true,
			"identifier": []any{map[string]any{"system": "urn:hearth:org", "value": fmt.Sprint(i)}},
			"name":       fmt.Sprintf("%s Medical Center", genFamilies[i])}); err != nil {
			return 0, err
		}
	}
	for i := 0; i < practitioners; i++ {
		if err := g.write("Practitioner", map[string]any{"id": fmt.Sprintf("gen-doc-%d", i), "active": true,
			"identifier": []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": fmt.Sprintf("99999%05d", i)}},
			"name":       []any{map[string]any{"family": genFamilies[g.pick(len(genFamilies))], "given": []any{genGiven[g.pick(len(genGiven))]}, "prefix": []any{"Dr."}}}}); err != nil {
			return 0, err
		}
	}
	for p := 0; p < patients; p++ {
		if err := g.patient(p, orgs, practitioners); err != nil {
			return 0, err
		}
	}
	return g.n, nil
}

// patient writes one patient and about 1,000 resources of their record
// (500 to 2,000, so $everything has patients of the size it is measured on).
func (g *generator) patient(p, orgs, practitioners int) error {
	pid := fmt.Sprintf("gen-p-%05d", p)
	ref := map[string]any{"reference": "Patient/" + pid}
	birth := genEpoch.AddDate(-20-g.pick(70), -g.pick(12), -g.pick(28))
	gender := []string{"female", "male"}[g.pick(2)]
	if g.pick(40) == 0 {
		gender = "other"
	}
	if err := g.write("Patient", map[string]any{"id": pid, "active": true, "gender": gender,
		"birthDate":            birth.Format("2006-01-02"),
		"identifier":           []any{map[string]any{"system": "urn:hearth:mrn", "value": fmt.Sprintf("MRN%06d", p)}},
		"name":                 []any{map[string]any{"use": "official", "family": genFamilies[g.pick(len(genFamilies))], "given": []any{genGiven[g.pick(len(genGiven))]}}},
		"telecom":              []any{map[string]any{"system": "phone", "value": fmt.Sprintf("555-%04d", p%10000)}},
		"address":              []any{map[string]any{"city": []string{"Boston", "Springfield", "Worcester", "Cambridge", "Lowell"}[g.pick(5)], "state": "MA", "postalCode": fmt.Sprintf("0%04d", 1000+g.pick(1500))}},
		"managingOrganization": map[string]any{"reference": fmt.Sprintf("Organization/gen-org-%d", g.pick(orgs))},
		"generalPractitioner":  []any{map[string]any{"reference": fmt.Sprintf("Practitioner/gen-doc-%d", g.pick(practitioners))}},
	}); err != nil {
		return err
	}
	total := 500 + g.pick(1501)
	encounters := max(1, total/25)
	written := 1
	for e := 0; e < encounters; e++ {
		eid := fmt.Sprintf("%s-e%d", pid, e)
		start := genEpoch.Add(time.Duration(g.rng.Int64N(int64(10 * 365 * 24 * time.Hour))))
		doc := fmt.Sprintf("Practitioner/gen-doc-%d", g.pick(practitioners))
		if err := g.write("Encounter", map[string]any{"id": eid, "status": "finished",
			"class":       map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
			"type":        []any{map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "185349003", "display": "Encounter for check up"}}}},
			"subject":     ref,
			"participant": []any{map[string]any{"individual": map[string]any{"reference": doc}}},
			"period":      map[string]any{"start": start.Format(time.RFC3339), "end": start.Add(30 * time.Minute).Format(time.RFC3339)},
		}); err != nil {
			return err
		}
		written++
		encRef := map[string]any{"reference": "Encounter/" + eid}
		perEncounter := (total - written) / (encounters - e)
		for k := 0; k < perEncounter; k++ {
			var err error
			switch r := g.pick(100); {
			case r < 90:
				o := genObs[g.pick(len(genObs))]
				v := o.lo + g.rng.Float64()*(o.hi-o.lo)
				err = g.write("Observation", map[string]any{"id": fmt.Sprintf("%s-o%d-%d", pid, e, k), "status": "final",
					"category":          []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": o.category}}}},
					"code":              map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": o.code, "display": o.display}}, "text": o.display},
					"subject":           ref,
					"encounter":         encRef,
					"performer":         []any{map[string]any{"reference": doc}},
					"effectiveDateTime": start.Add(time.Duration(k) * time.Minute).Format(time.RFC3339),
					"valueQuantity":     map[string]any{"value": json.Number(fmt.Sprintf("%.1f", v)), "unit": o.unit, "system": "http://unitsofmeasure.org", "code": o.unit},
				})
			case r < 95:
				c := genConditions[g.pick(len(genConditions))]
				err = g.write("Condition", map[string]any{"id": fmt.Sprintf("%s-c%d-%d", pid, e, k),
					"clinicalStatus":     map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}}},
					"verificationStatus": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}}},
					"category":           []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}}}},
					"code":               map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": c.code, "display": c.display}}},
					"subject":            ref, "encounter": encRef,
					"onsetDateTime": start.Format(time.RFC3339), "recordedDate": start.Format(time.RFC3339),
				})
			default:
				m := genMeds[g.pick(len(genMeds))]
				err = g.write("MedicationRequest", map[string]any{"id": fmt.Sprintf("%s-m%d-%d", pid, e, k),
					"status": "active", "intent": "order",
					"medicationCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": m.code, "display": m.display}}},
					"subject":                   ref, "encounter": encRef, "requester": map[string]any{"reference": doc},
					"authoredOn": start.Format(time.RFC3339),
				})
			}
			if err != nil {
				return err
			}
			written++
		}
	}
	return nil
}
