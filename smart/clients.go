package smart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/hearth-fhir/hearth/store"
)

// Client is a registered SMART app. It implements fosite.Client and
// fosite.OpenIDConnectClient.
type Client struct {
	ID           string   `json:"client_id"`
	Name         string   `json:"client_name,omitempty"`
	SecretHash   []byte   `json:"secret_hash,omitempty"` // bcrypt
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// LaunchURI is where an EHR (portal) launch opens the app.
	LaunchURI  string   `json:"launch_uri,omitempty"`
	GrantTypes []string `json:"grant_types"`
	Scope      string   `json:"scope"`
	Public     bool     `json:"public"`
	// AuthMethod is none, client_secret_basic, client_secret_post or
	// private_key_jwt.
	AuthMethod string              `json:"token_endpoint_auth_method"`
	SigningAlg string              `json:"token_endpoint_auth_signing_alg,omitempty"`
	JWKS       *jose.JSONWebKeySet `json:"jwks,omitempty"`
	JWKSURI    string              `json:"jwks_uri,omitempty"`
	// Unverified marks an app that registered itself (open dynamic
	// registration): the consent page tells the patient nobody vetted it.
	Unverified bool `json:"unverified,omitempty"`
}

func (c *Client) GetID() string                   { return c.ID }
func (c *Client) GetHashedSecret() []byte         { return c.SecretHash }
func (c *Client) GetRedirectURIs() []string       { return c.RedirectURIs }
func (c *Client) GetGrantTypes() fosite.Arguments { return c.GrantTypes }
func (c *Client) GetResponseTypes() fosite.Arguments {
	return fosite.Arguments{"code"}
}
func (c *Client) GetScopes() fosite.Arguments { return fosite.Arguments(splitScope(c.Scope)) }
func (c *Client) IsPublic() bool              { return c.Public }

// GetAudience: every client's tokens are for this server's FHIR base.
func (c *Client) GetAudience() fosite.Arguments            { return nil }
func (c *Client) GetRequestURIs() []string                 { return nil }
func (c *Client) GetJSONWebKeys() *jose.JSONWebKeySet      { return c.JWKS }
func (c *Client) GetJSONWebKeysURI() string                { return c.JWKSURI }
func (c *Client) GetRequestObjectSigningAlgorithm() string { return "" }
func (c *Client) GetTokenEndpointAuthMethod() string       { return c.AuthMethod }
func (c *Client) GetTokenEndpointAuthSigningAlgorithm() string {
	if c.SigningAlg == "" {
		return "RS384"
	}
	return c.SigningAlg
}

// clientStore keeps clients in the AuthStore.
type clientStore struct{ st store.AuthStore }

func (cs *clientStore) get(ctx context.Context, id string) (*Client, error) {
	rec, err := cs.st.GetAuth(ctx, kindClient, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound.WithHint("unknown client")
	}
	if err != nil {
		return nil, err
	}
	var c Client
	if err := json.Unmarshal(rec.Data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func (cs *clientStore) put(ctx context.Context, c *Client) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return cs.st.PutAuth(ctx, store.AuthRecord{Kind: kindClient, Key: c.ID, Active: true, Data: data})
}

// normalise fills defaults and checks a client before it is saved.
func (c *Client) normalise() error {
	if c.ID == "" {
		return errors.New("client id is required")
	}
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{"authorization_code", "refresh_token"}
	}
	if c.Scope == "" {
		c.Scope = defaultClientScope
	}
	switch {
	case c.AuthMethod != "":
	case c.JWKS != nil || c.JWKSURI != "":
		c.AuthMethod = "private_key_jwt"
	case c.Public:
		c.AuthMethod = "none"
	default:
		c.AuthMethod = "client_secret_basic"
	}
	c.Public = c.AuthMethod == "none"
	switch c.AuthMethod {
	case "none", "client_secret_basic", "client_secret_post", "private_key_jwt":
	default:
		return fmt.Errorf("token_endpoint_auth_method %q is not supported", c.AuthMethod)
	}
	if c.AuthMethod == "private_key_jwt" && c.JWKS == nil && c.JWKSURI == "" {
		return errors.New("private_key_jwt needs jwks or jwks_uri")
	}
	if (c.AuthMethod == "client_secret_basic" || c.AuthMethod == "client_secret_post") && len(c.SecretHash) == 0 {
		return errors.New("a confidential client needs a secret")
	}
	for _, g := range c.GrantTypes {
		if g == "authorization_code" && len(c.RedirectURIs) == 0 {
			return errors.New("the authorization_code grant needs at least one redirect URI")
		}
		if g == "client_credentials" && c.Public {
			return errors.New("a public client cannot use client_credentials")
		}
	}
	return nil
}

// defaultClientScope is every scope Hearth supports; a client registered
// without a scope may ask for any of them.
const defaultClientScope = "openid fhirUser profile launch launch/patient launch/encounter offline_access online_access patient/*.cruds user/*.cruds patient/*.* user/*.* patient/*.read patient/*.write user/*.read user/*.write"
