package smart

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// connectedApp is an app holding tokens of the user: its grants' scopes,
// when first granted and when it last got a token.
type connectedApp struct {
	ClientID, Name    string
	Labels            []string
	Granted, LastUsed time.Time
	Offline           bool
}

// connectedApps lists the apps with live tokens of username, from the
// token records themselves: what the list shows is what works.
func (p *Provider) connectedApps(ctx context.Context, username string) ([]connectedApp, error) {
	byClient := map[string]*connectedApp{}
	for _, kind := range []string{kindAccess, kindRefresh} {
		recs, err := p.st.ListAuth(ctx, kind, username)
		if err != nil {
			return nil, err
		}
		lifespan := p.cfg.AccessTokenLifespan
		if kind == kindRefresh {
			lifespan = 365 * 24 * time.Hour
		}
		for _, rec := range recs {
			if !rec.Active {
				continue // a rotated refresh token
			}
			var sr storedRequest
			if json.Unmarshal(rec.Data, &sr) != nil {
				continue
			}
			a := byClient[sr.ClientID]
			if a == nil {
				a = &connectedApp{ClientID: sr.ClientID, Name: sr.ClientID, Granted: sr.RequestedAt}
				if c, err := p.clients.get(ctx, sr.ClientID); err == nil && c.Name != "" {
					a.Name = c.Name
				}
				byClient[sr.ClientID] = a
			}
			a.Granted = minTime(a.Granted, sr.RequestedAt)
			if issued := rec.ExpiresAt.Add(-lifespan); issued.After(a.LastUsed) {
				a.LastUsed = issued
			}
			for _, s := range sr.GrantedScope {
				label := describeScope(s)
				if s == "offline_access" {
					a.Offline = true
				}
				if !slices.Contains(a.Labels, label) {
					a.Labels = append(a.Labels, label)
				}
			}
		}
	}
	out := make([]connectedApp, 0, len(byClient))
	for _, a := range byClient {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b connectedApp) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// revokeGrants ends the grants of username's tokens that keep says to:
// refresh tokens are deactivated (a replay is still recognised), access
// tokens deleted, and this process's memory of checked tokens dropped, so
// that they stop at once (other processes within a second).
func (p *Provider) revokeGrants(ctx context.Context, username string, keep func(clientID string) bool) (int, error) {
	grants := map[string]bool{}
	for _, kind := range []string{kindAccess, kindRefresh} {
		recs, err := p.st.ListAuth(ctx, kind, username)
		if err != nil {
			return 0, err
		}
		for _, rec := range recs {
			var sr storedRequest
			if json.Unmarshal(rec.Data, &sr) != nil || keep(sr.ClientID) {
				continue
			}
			grants[rec.RequestID] = true
		}
	}
	for id := range grants {
		if err := p.storage.RevokeRefreshToken(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return 0, err
		}
		if err := p.storage.RevokeAccessToken(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return 0, err
		}
	}
	p.checked.clear()
	return len(grants), nil
}

// RevokeUser ends everything the user holds: login sessions, and every
// app's tokens (an operator's revoke-tokens, a password reset, a closed
// or disabled account).
func (p *Provider) RevokeUser(ctx context.Context, username string) error {
	if err := p.endSessions(ctx, username); err != nil {
		return err
	}
	_, err := p.revokeGrants(ctx, username, func(string) bool { return false })
	return err
}

// revokeApp ends one app's access to the signed-in user's account.
func (p *Provider) revokeApp(w http.ResponseWriter, r *http.Request, s *signedIn) {
	client := r.PostForm.Get("client")
	n, err := p.revokeGrants(r.Context(), s.user.Username, func(id string) bool { return id != client })
	if err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "The app's access could not be revoked; try again.")
		return
	}
	if n > 0 {
		who := accountAgent(s.user)
		who.Client = client
		p.security(r, who, audit.Event{Subtype: audit.TokenRevoked, Action: "D", Detail: "the user revoked the app's access on their account page"})
	}
	p.done(w, r, "app")
}
