// Command hearth is the Hearth FHIR server: `hearth serve` runs it and
// `hearth import` loads NDJSON into a data directory or a running server.
// This is the only place that picks a storage backend.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/mongo"
	"github.com/hearth-fhir/hearth/store/sqlite"
)

func isMongo(kind string) bool {
	return strings.HasPrefix(kind, "mongodb://") || strings.HasPrefix(kind, "mongodb+srv://")
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serveCmd(os.Args[2:])
	case "user":
		err = userCmd(os.Args[2:])
	case "client":
		err = clientCmd(os.Args[2:])
	case "activation":
		err = activationCmd(os.Args[2:])
	case "import":
		err = importCmd(os.Args[2:])
	case "generate":
		err = generateCmd(os.Args[2:])
	case "backup":
		err = backupCmd(os.Args[2:])
	case "restore":
		err = restoreCmd(os.Args[2:])
	case "audit":
		err = auditCmd(os.Args[2:])
	case "conformance":
		err = conformanceCmd(os.Args[2:])
	case "version":
		fmt.Println(version)
	case "help", "-h", "--help":
		usage(os.Stdout)
	default:
		fmt.Fprintf(os.Stderr, "hearth: unknown command %q\n\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hearth:", err)
		os.Exit(1)
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Hearth: a FHIR R4 server with patient-access SMART on FHIR.

Usage:
  hearth serve  [--listen ADDR] [--data DIR] [--base-url URL] [--store sqlite|mongodb://…] [--no-seed] [--seed] [--open]
  hearth import [--data DIR | --server URL] FILE.ndjson[.gz]|FILE.json[.gz]...
  hearth backup  [--data DIR] --out FILE          (while serving: a consistent copy, verified)
  hearth restore [--data DIR] --from FILE [--replace]
  hearth generate [--patients N] [--out DIR] [--seed S]   (synthetic benchmark data)
  hearth conformance --base URL [--token T | --client-id ID (--client-secret S | --key FILE)]
         [--suite capability,rest,search,smart,uscore] [--junit FILE] [--html FILE]
         [--launch-client ID --redirect-uri URL --username U --password P]   (any FHIR R4 server)
  hearth user add --username U --password P [--patient Patient/ID]
  hearth user link|unlink --username U --patient Patient/ID   (proxy access)
  hearth user disable|enable|revoke-tokens --username U
  hearth activation issue --patient Patient/ID [--expires 30d]   (a sign-up code for the patient)
  hearth client add --id ID --redirect-uri URI [--public] [--secret S] [--jwks-url U] [--backend]
  hearth audit [--data DIR | --store mongodb://…] [--patient ID] [--user U] [--client C] [--since T] [--until T]
               [--outcome success|failure] [--subtype S] [--format table|ndjson]   (the audit trail; while serving too)
  hearth version

Every flag can also be set as an environment variable: --base-url is HEARTH_BASE_URL.
Run "hearth serve -h" or "hearth import -h" for details.
`)
}

// envDefaults sets every flag the command line did not set from its
// HEARTH_* environment variable (--no-seed ← HEARTH_NO_SEED).
func envDefaults(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "HEARTH_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", env, e)
			}
		}
	})
	return err
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// openStore picks the backend named by --store.
// sqliteFile is the embedded store's database in its data directory.
const sqliteFile = "hearth.db"

func openStore(kind, dataDir string) (store.Store, bool, error) {
	switch {
	case kind == "" || kind == "sqlite":
		_, statErr := os.Stat(dataDir + "/" + sqliteFile)
		fresh := os.IsNotExist(statErr)
		s, err := sqlite.Open(dataDir, sqlite.Options{})
		return s, fresh, err
	case isMongo(kind):
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := mongo.Open(ctx, kind)
		if err != nil {
			return nil, false, err
		}
		empty, err := s.Empty(ctx)
		if err != nil {
			s.Close()
			return nil, false, err
		}
		return s, empty, nil
	}
	return nil, false, fmt.Errorf("--store: unknown store %q (use sqlite or a mongodb:// URL)", kind)
}
