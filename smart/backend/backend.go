// Package backend is the client side of SMART Backend Services: the
// client assertion a backend service signs with its private key
// (private_key_jwt, RS384 or ES384) to obtain a token by
// client_credentials. The conformance kit and `hearth import --bulk` use
// it to talk to any FHIR server, Hearth or not.
package backend

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
)

// Key is a backend service's signing key.
type Key struct {
	signer jose.Signer
}

// LoadKey reads a PEM private key (PKCS#8, PKCS#1 RSA or SEC 1 EC);
// keyID, when set, is the kid its assertions name.
func LoadKey(file, keyID string) (*Key, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s is not PEM", file)
	}
	key, alg, err := privateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if keyID != "" {
		opts = opts.WithHeader("kid", keyID)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return nil, err
	}
	return &Key{signer: signer}, nil
}

// Assertion signs the client assertion of clientID for the token
// endpoint aud: valid four minutes, with a fresh jti.
func (k *Key) Assertion(clientID, aud string) (string, error) {
	jti := make([]byte, 16)
	rand.Read(jti)
	now := time.Now()
	claims := jwt.Claims{Issuer: clientID, Subject: clientID, Audience: jwt.Audience{aud},
		ID: base64.RawURLEncoding.EncodeToString(jti), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute))}
	return jwt.Signed(k.signer).Claims(claims).CompactSerialize()
}

// privateKey reads a PKCS#8, PKCS#1 (RSA) or SEC 1 (EC) key and the
// algorithm SMART Backend Services signs with it (RS384 or ES384).
func privateKey(der []byte) (any, jose.SignatureAlgorithm, error) {
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		if rk, err1 := x509.ParsePKCS1PrivateKey(der); err1 == nil {
			key, err = rk, nil
		} else if ek, err2 := x509.ParseECPrivateKey(der); err2 == nil {
			key, err = ek, nil
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("not a private key: %w", err)
	}
	switch key.(type) {
	case *rsa.PrivateKey:
		return key, jose.RS384, nil
	case *ecdsa.PrivateKey:
		return key, jose.ES384, nil
	}
	return nil, "", fmt.Errorf("a %T key cannot sign for SMART Backend Services (RSA or EC)", key)
}
