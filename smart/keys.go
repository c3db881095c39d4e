package smart

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v3"

	"github.com/hearth-fhir/hearth/store"
)

// Keys are the secrets every Hearth process on one database must share:
// the RSA key that signs id_tokens and the HMAC secret of opaque tokens.
// They are created once and kept in the AuthStore.
type Keys struct {
	Signing *rsa.PrivateKey
	KeyID   string
	HMAC    []byte
}

func loadKeys(ctx context.Context, st store.AuthStore) (*Keys, error) {
	k := &Keys{}
	rec, err := st.GetAuth(ctx, kindKey, "rsa")
	if errors.Is(err, store.ErrNotFound) {
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		der := x509.MarshalPKCS1PrivateKey(priv)
		data := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der})
		// CreateAuth: if another process won the race, use its key.
		if err := st.CreateAuth(ctx, store.AuthRecord{Kind: kindKey, Key: "rsa", Active: true, Data: data}); err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		rec, err = st.GetAuth(ctx, kindKey, "rsa")
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(rec.Data)
	if block == nil {
		return nil, errors.New("smart: stored signing key is not PEM")
	}
	if k.Signing, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
		return nil, fmt.Errorf("smart: stored signing key: %w", err)
	}
	thumb, err := (&jose.JSONWebKey{Key: &k.Signing.PublicKey}).Thumbprint(cryptoSHA256)
	if err != nil {
		return nil, err
	}
	k.KeyID = b64(thumb)

	rec, err = st.GetAuth(ctx, kindKey, "hmac")
	if errors.Is(err, store.ErrNotFound) {
		secret := make([]byte, 32)
		rand.Read(secret)
		if err := st.CreateAuth(ctx, store.AuthRecord{Kind: kindKey, Key: "hmac", Active: true, Data: secret}); err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		rec, err = st.GetAuth(ctx, kindKey, "hmac")
	}
	if err != nil {
		return nil, err
	}
	k.HMAC = rec.Data
	return k, nil
}

// JWKS is the public half, as served at jwks_uri.
func (k *Keys) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.Signing.PublicKey, KeyID: k.KeyID, Algorithm: "RS256", Use: "sig"}}}
}
