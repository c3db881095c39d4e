// Command op is a real OpenID Provider for Hearth's federated sign-in tests:
// the example provider of github.com/zitadel/oidc (v3), built from the Go
// module proxy in this module of its own, so that its dependencies stay
// out of Hearth's. It serves one confidential client and one user, both
// given by flags, and signs them in through its own login page.
package main

import (
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"golang.org/x/text/language"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
)

// users is the provider's one user.
type users struct{ user *storage.User }

func (u users) GetUserByID(id string) *storage.User {
	if id == u.user.ID {
		return u.user
	}
	return nil
}

func (u users) GetUserByUsername(name string) *storage.User {
	if name == u.user.Username {
		return u.user
	}
	return nil
}

func (u users) ExampleClientID() string { return storage.ServiceUserID }

func main() {
	listen := flag.String("listen", "127.0.0.1:9998", "address to listen on")
	issuer := flag.String("issuer", "http://localhost:9998/", "the issuer URL (its host must reach --listen)")
	client := flag.String("client", "hearth:hearth-secret", "the client, id:secret")
	redirect := flag.String("redirect-uri", "", "the client's redirect URIs, comma-separated")
	user := flag.String("user", "pat:pat@hospital.example:correct-horse-staple", "the user, id:username:password")
	flag.Parse()
	id, secret, _ := strings.Cut(*client, ":")
	storage.RegisterClients(storage.WebClient(id, secret, strings.Split(*redirect, ",")...))
	parts := strings.SplitN(*user, ":", 3)
	if len(parts) != 3 {
		log.Fatal("--user id:username:password")
	}
	store := storage.NewStorage(users{&storage.User{ID: parts[0], Username: parts[1], Password: parts[2], FirstName: "Pat", LastName: "Example",
		Email: parts[1], EmailVerified: true, PreferredLanguage: language.English}})
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	router := exampleop.SetupServer(*issuer, store, logger, false)
	log.Fatal(http.ListenAndServe(*listen, router))
}
