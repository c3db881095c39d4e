package smart

import (
	"html/template"
	"net/http"
)

// The pages are plain server-rendered HTML forms: they work without
// JavaScript, post back to /oauth2/interact with a CSRF token, and refuse
// to be framed.
var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Hearth</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#222}
label{display:block;margin:.6rem 0}input[type=text],input[type=password]{width:100%;padding:.4rem;font-size:1rem}
button{font-size:1rem;padding:.5rem 1.2rem;margin:.6rem .4rem 0 0}.error{color:#a00}.note{color:#555;font-size:.9rem}</style>
</head><body><h1>{{.Title}}</h1>{{end}}

{{define "hidden"}}<input type="hidden" name="pending" value="{{.Pending}}"><input type="hidden" name="csrf" value="{{.CSRF}}">{{end}}

{{define "login"}}{{template "head" .}}
<p><strong>{{.ClientName}}</strong> wants to connect to your health record.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">{{template "hidden" .}}
<input type="hidden" name="step" value="login">
<label>Username <input type="text" name="username" autocomplete="username" required autofocus></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form></body></html>{{end}}

{{define "pick"}}{{template "head" .}}
<p>Whose record should <strong>{{.ClientName}}</strong> use?</p>
<form method="post" action="{{.Action}}">{{template "hidden" .}}
<input type="hidden" name="step" value="pick">
{{range $i, $p := .Patients}}<label><input type="radio" name="patient" value="{{$p.ID}}" {{if eq $i 0}}checked{{end}}> {{$p.Name}}{{if $p.Self}} (you){{end}}</label>{{end}}
<button type="submit">Continue</button>
</form></body></html>{{end}}

{{define "consent"}}{{template "head" .}}
<p><strong>{{.ClientName}}</strong> asks for access{{if .PatientName}} to the record of <strong>{{.PatientName}}</strong>{{end}}. Untick anything you do not want to share.</p>
<form method="post" action="{{.Action}}">{{template "hidden" .}}
<input type="hidden" name="step" value="consent">
{{range .Scopes}}<label><input type="checkbox" name="scope" value="{{.Value}}" checked> {{.Label}}</label>{{end}}
{{if .Offline}}<p class="note">This app asks for <strong>offline access</strong>: it can keep reading your record after you close it, until you revoke it.</p>{{end}}
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>{{end}}

{{define "error"}}{{template "head" .}}<p class="error" role="alert">{{.Error}}</p></body></html>{{end}}
`))

type pageData struct {
	Title, Action, Pending, CSRF, ClientName, Error, PatientName string
	Patients                                                     []pickPatient
	Scopes                                                       []scopeChoice
	Offline                                                      bool
}

type pickPatient struct {
	ID, Name string
	Self     bool
}

type scopeChoice struct{ Value, Label string }

func renderPage(w http.ResponseWriter, status int, name string, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	pages.ExecuteTemplate(w, name, d)
}
