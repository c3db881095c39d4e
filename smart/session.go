package smart

import (
	"encoding/json"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
)

// Session is what a grant remembers beyond fosite's own bookkeeping: the
// launch context and the user it was granted by.
type Session struct {
	*openid.DefaultSession `json:"oidc"`
	// User is the account (username) that authorised the grant; empty for
	// backend services.
	User string `json:"user,omitempty"`
	// Patient is the patient in context; FHIRUser the acting person
	// (Patient/… for self access, RelatedPerson/… for a proxy).
	Patient   string `json:"patient,omitempty"`
	FHIRUser  string `json:"fhirUser,omitempty"`
	Encounter string `json:"encounter,omitempty"`
	// NeedBanner is false for an EHR (portal) launch that already shows
	// the patient.
	NeedBanner bool `json:"needBanner"`
	// LoginSession ties online_access grants to the login session: when it
	// ends, their refresh tokens stop working.
	LoginSession string `json:"loginSession,omitempty"`
}

func newSession() *Session { return &Session{DefaultSession: openid.NewDefaultSession()} }

// Clone deep-copies through JSON, which is also how sessions are stored.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	c := newSession()
	if err := json.Unmarshal(b, c); err != nil {
		panic(err)
	}
	return c
}
