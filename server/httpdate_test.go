package server

import (
	"net/http"
	"testing"
	"time"
)

func TestHTTPDateMatchesTheStandardFormat(t *testing.T) {
	for _, tm := range []time.Time{time.Unix(0, 0), time.Date(2024, 2, 29, 23, 59, 58, 999, time.FixedZone("x", 5*3600)), time.Date(1999, 12, 31, 1, 2, 3, 0, time.UTC), time.Now()} {
		if got, want := httpDate(tm), tm.UTC().Format(http.TimeFormat); got != want {
			t.Errorf("httpDate(%v) = %q, want %q", tm, got, want)
		}
	}
}
