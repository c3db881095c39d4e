package smart

import (
	"embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The pages are plain server-rendered HTML forms: they work without
// JavaScript, carry a CSRF token, refuse to be framed and are never
// cached. They are written for people: labels tied to their fields, error
// text tied to the field it is about (aria-describedby), a visible focus,
// WCAG 2.1 AA contrast (checked for the operator's colour at start), and a
// layout that fits a 390 px phone.
//
//go:embed pages/*.html pages/passkey.js
var pageFiles embed.FS

// servePasskeyScript serves the passkey ceremony's script, the pages' only
// one.
func servePasskeyScript(w http.ResponseWriter, r *http.Request) {
	js, err := pageFiles.ReadFile("pages/passkey.js")
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(js)
}

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"errFor": func(d pageData, name string) string { return d.FieldErrors[name] },
	"valFor": func(d pageData, name string) string { return d.Values[name] },
	"when":   func(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") },
	"day":    func(t time.Time) string { return t.UTC().Format("2 Jan 2006") },
}).ParseFS(pageFiles, "pages/*.html"))

// Brand is how the operator's pages look: the health system's name, logo
// and colour.
type Brand struct {
	Name string
	// Logo is a PNG, JPEG or SVG image served at /account/logo.
	Logo     []byte
	LogoType string
	// Color is the accent colour (#rrggbb) of buttons and links; white
	// text on it must meet WCAG AA contrast (4.5:1).
	Color string
}

func (b Brand) name() string {
	if b.Name == "" {
		return "Hearth"
	}
	return b.Name
}

func (b Brand) color() string {
	if b.Color == "" {
		return "#0b5cad"
	}
	return b.Color
}

// checkColor refuses an accent colour white text cannot be read on.
func (b Brand) checkColor() error {
	if b.Color == "" {
		return nil
	}
	l, ok := luminance(b.Color)
	if !ok {
		return fmt.Errorf("brand colour %q: want #rrggbb", b.Color)
	}
	if ratio := 1.05 / (l + 0.05); ratio < 4.5 {
		return fmt.Errorf("brand colour %s: white text on it has contrast %.1f:1, under WCAG AA's 4.5:1; choose a darker colour", b.Color, ratio)
	}
	return nil
}

// luminance is WCAG 2.1's relative luminance of #rrggbb.
func luminance(hex string) (float64, bool) {
	if len(hex) != 7 || hex[0] != '#' {
		return 0, false
	}
	var c [3]float64
	for i := range c {
		v, err := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		if err != nil {
			return 0, false
		}
		s := float64(v) / 255
		if s <= 0.03928 {
			c[i] = s / 12.92
		} else {
			c[i] = math.Pow((s+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*c[0] + 0.7152*c[1] + 0.0722*c[2], true
}

// field is a hidden input a form carries.
type field struct{ Name, Value string }

type pageData struct {
	Title string
	Brand Brand
	// User is the signed-in username, shown with a sign-out button that
	// posts SessionCSRF.
	User        string
	SessionCSRF string
	Root        string // the server root URL: links to /account pages
	Action      string
	Hidden      []field
	// Error is about the whole form; FieldErrors about one field each
	// (by name). Values keep what was typed, never a password.
	Error       string
	FieldErrors map[string]string
	Values      map[string]string
	Notice      string
	// Authorization pages.
	ClientName  string
	ClientHost  string // where the app sends the user back
	Unverified  bool   // a self-registered app nobody vetted
	PatientName string
	Patients    []pickPatient
	Scopes      []scopeChoice
	Offline     bool
	// Sign-in steps.
	Paused *PausedError
	// Passkeys is set where the server offers passkeys; Federated names
	// the OpenID provider patients may sign in with.
	Passkeys  bool
	Federated string
	// MatchSignUp: sign-up without a code is offered.
	MatchSignUp bool
	TOTP        *totpEnrollment
	// Account pages.
	Account *accountView
}

type pickPatient struct {
	ID, Name, Born, Relationship string
	Self                         bool
}

type scopeChoice struct{ Value, Label string }

type totpEnrollment struct {
	Secret, URL string
	// QR is a data: URL Hearth made itself, so marked safe for src.
	QR template.URL
}

func (d *pageData) fieldError(name, msg string) {
	if d.FieldErrors == nil {
		d.FieldErrors = map[string]string{}
	}
	d.FieldErrors[name] = msg
}

func (d *pageData) keep(name, value string) {
	if d.Values == nil {
		d.Values = map[string]string{}
	}
	d.Values[name] = value
}

// page fills what every page shows.
func (p *Provider) page(title string) pageData {
	d := pageData{Title: title, Brand: p.cfg.Brand, Root: p.root, Passkeys: p.passkeys != nil, MatchSignUp: p.cfg.SignUpWithoutCode}
	if p.fed != nil {
		d.Federated = p.fed.cfg.Name
	}
	return d
}

// errorPage shows a message and nothing else.
func (p *Provider) errorPage(w http.ResponseWriter, status int, msg string) {
	d := p.page("Something went wrong")
	d.Error = msg
	p.render(w, status, "error", d)
}

// render writes a page made from p.page: never cached, never framed.
func (p *Provider) render(w http.ResponseWriter, status int, name string, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Scripts only from Hearth itself (the passkey ceremony); forms may
	// post back to an app's redirect URI.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	pages.ExecuteTemplate(w, name, d)
}

// describeType is how the pages name a record type to a patient.
var describeType = map[string]string{
	"Patient": "your details (name, birth date, address)", "Observation": "test results and vital signs",
	"Condition": "health problems", "MedicationRequest": "prescriptions", "MedicationStatement": "medicines you take",
	"MedicationDispense": "medicines dispensed", "Medication": "medicine information", "AllergyIntolerance": "allergies",
	"Immunization": "immunizations", "Procedure": "procedures", "Encounter": "visits", "DiagnosticReport": "test reports",
	"DocumentReference": "documents and clinical notes", "CarePlan": "care plans", "CareTeam": "care team",
	"Goal": "health goals", "Device": "implanted devices", "Coverage": "insurance", "ExplanationOfBenefit": "claims",
	"Claim": "claims", "Communication": "messages", "CommunicationRequest": "message requests", "Appointment": "appointments",
	"Questionnaire": "questionnaires", "QuestionnaireResponse": "questionnaire answers", "Practitioner": "care providers",
	"PractitionerRole": "care providers' roles", "Organization": "clinics and organisations", "Location": "places of care",
	"Provenance": "where records came from", "ServiceRequest": "orders and referrals", "Specimen": "lab samples",
	"FamilyMemberHistory": "family health history", "RelatedPerson": "people linked to the record", "Consent": "consents and preferences",
	"Account": "billing accounts", "Task": "tasks", "Slot": "free appointment times", "Schedule": "clinic schedules",
	"Binary": "attached files", "AuditEvent": "who looked at the record", "Invoice": "bills",
}

// typeWords names a type for the pages, falling back to the FHIR name.
func typeWords(typ string) string {
	if w, ok := describeType[typ]; ok {
		return w
	}
	return typ
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
