package fhir

import (
	"strings"
	"time"
)

// DateRange returns the closed range of instants, in Unix milliseconds, that
// a FHIR date, dateTime or instant covers at its precision: "2020" is the
// whole year, "2020-03-01T10:00:00Z" that second. Values without a time zone
// are taken as UTC.
func DateRange(s string) (lo, hi int64, ok bool) {
	t, next, ok := parseDatePrecision(s)
	if !ok {
		return 0, 0, false
	}
	return t.UnixMilli(), next.UnixMilli() - 1, true
}

// parseDatePrecision parses s and returns its start and the start of the next
// period of the same precision.
func parseDatePrecision(s string) (start, next time.Time, ok bool) {
	switch len(s) {
	case 4:
		t, err := time.Parse("2006", s)
		return t, t.AddDate(1, 0, 0), err == nil
	case 7:
		t, err := time.Parse("2006-01", s)
		return t, t.AddDate(0, 1, 0), err == nil
	case 10:
		t, err := time.Parse("2006-01-02", s)
		return t, t.AddDate(0, 0, 1), err == nil
	}
	if len(s) < 16 || s[10] != 'T' {
		return time.Time{}, time.Time{}, false
	}
	body, zone := splitZone(s[11:])
	loc := time.UTC
	if zone != "" && zone != "Z" {
		zt, err := time.Parse("-07:00", zone)
		if err != nil {
			return time.Time{}, time.Time{}, false
		}
		loc = zt.Location()
	}
	var layout string
	var step time.Duration
	switch {
	case len(body) == 5: // hh:mm (allowed in search values)
		layout, step = "15:04", time.Minute
	case len(body) == 8:
		layout, step = "15:04:05", time.Second
	case len(body) > 9 && body[8] == '.':
		frac := len(body) - 9
		layout = "15:04:05." + strings.Repeat("0", frac)
		step = time.Second
		for i := 0; i < frac && i < 9; i++ {
			step /= 10
		}
		if step < time.Millisecond {
			step = time.Millisecond
		}
	default:
		return time.Time{}, time.Time{}, false
	}
	t, err := time.ParseInLocation("2006-01-02T"+layout, s[:11]+body, loc)
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	t = t.UTC()
	return t, t.Add(step), true
}

func splitZone(clock string) (body, zone string) {
	if strings.HasSuffix(clock, "Z") {
		return clock[:len(clock)-1], "Z"
	}
	if i := strings.LastIndexAny(clock, "+-"); i > 0 {
		return clock[:i], clock[i:]
	}
	return clock, ""
}
