package sqlite

import (
	"context"

	"github.com/hearth-fhir/hearth/fhir"
)

var indexTables = []string{"idx_string", "idx_token", "idx_ref", "idx_date", "idx_number", "idx_quantity", "idx_uri", "idx_composite", "compartment"}

// writeIndex replaces the search index rows of one resource. replacing is
// false for a first version, which has no rows to delete.
func (t *tx) writeIndex(ctx context.Context, typ, id string, replacing bool, ix fhir.Index) error {
	if replacing {
		for _, table := range indexTables {
			if _, err := t.exec(ctx, `DELETE FROM `+table+` WHERE type = ? AND id = ?`, typ, id); err != nil {
				return err
			}
		}
	}
	for _, k := range ix.Strings {
		if _, err := t.exec(ctx, `INSERT INTO idx_string (type, id, param, norm, exact) VALUES (?, ?, ?, ?, ?)`, typ, id, k.Param, k.Norm, k.Exact); err != nil {
			return err
		}
	}
	for _, k := range ix.Tokens {
		if _, err := t.exec(ctx, `INSERT INTO idx_token (type, id, param, system, code, text) VALUES (?, ?, ?, ?, ?, ?)`, typ, id, k.Param, k.System, k.Code, k.Text); err != nil {
			return err
		}
	}
	for _, k := range ix.Refs {
		if _, err := t.exec(ctx, `INSERT INTO idx_ref (type, id, param, target_type, target_id, url, ident_system, ident_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			typ, id, k.Param, k.Type, k.ID, k.URL, k.IdentSystem, k.IdentValue); err != nil {
			return err
		}
	}
	for _, k := range ix.Dates {
		if _, err := t.exec(ctx, `INSERT INTO idx_date (type, id, param, lo, hi) VALUES (?, ?, ?, ?, ?)`, typ, id, k.Param, k.Lo, k.Hi); err != nil {
			return err
		}
	}
	for _, k := range ix.Numbers {
		if _, err := t.exec(ctx, `INSERT INTO idx_number (type, id, param, value) VALUES (?, ?, ?, ?)`, typ, id, k.Param, k.Value); err != nil {
			return err
		}
	}
	for _, k := range ix.Quantities {
		if _, err := t.exec(ctx, `INSERT INTO idx_quantity (type, id, param, value, system, code, unit) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			typ, id, k.Param, k.Value, k.System, k.Code, k.Unit); err != nil {
			return err
		}
	}
	for _, k := range ix.URIs {
		if _, err := t.exec(ctx, `INSERT INTO idx_uri (type, id, param, uri) VALUES (?, ?, ?, ?)`, typ, id, k.Param, k.URI); err != nil {
			return err
		}
	}
	for _, k := range ix.Composites {
		if _, err := t.exec(ctx, `INSERT INTO idx_composite (type, id, param, a_system, a_code, b_system, b_code, b_unit, b_lo, b_hi) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			typ, id, k.Param, k.A.System, k.A.Code, k.B.System, k.B.Code, k.B.Unit, k.B.Lo, k.B.Hi); err != nil {
			return err
		}
	}
	for _, p := range ix.Compartments {
		if _, err := t.exec(ctx, `INSERT INTO compartment (patient_id, type, id) VALUES (?, ?, ?)`, p, typ, id); err != nil {
			return err
		}
	}
	return nil
}
