package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/hearth-fhir/hearth/store/sqlite"
)

// backupCmd: hearth backup — a consistent copy of the embedded store,
// taken while a server uses it, and verified.
func backupCmd(args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	data := fs.String("data", "./hearth-data", "data directory of the embedded store (may be in use by a server)")
	out := fs.String("out", "", "the backup file to write (must not exist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := envDefaults(fs); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	if err := sqlite.Backup(context.Background(), *data, *out); err != nil {
		return err
	}
	fmt.Printf("backed up %s to %s (verified)\n", *data, *out)
	return nil
}

// restoreCmd: hearth restore — replaces the embedded store with a verified
// backup; the data directory must not be in use.
func restoreCmd(args []string) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	data := fs.String("data", "./hearth-data", "data directory of the embedded store (no server may be using it)")
	from := fs.String("from", "", "the backup file to restore")
	replace := fs.Bool("replace", false, "replace the database the data directory holds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := envDefaults(fs); err != nil {
		return err
	}
	if *from == "" {
		return errors.New("--from is required")
	}
	if err := sqlite.Restore(context.Background(), *data, *from, *replace); err != nil {
		return err
	}
	fmt.Printf("restored %s from %s (verified)\n", *data, *from)
	return nil
}
