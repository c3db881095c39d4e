package fhirpath

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// TemporalKind says which System type a Temporal is.
type TemporalKind uint8

const (
	KindDate TemporalKind = iota
	KindDateTime
	KindTime
)

// Precisions of a Temporal, counted in components from the year (a Time
// counts from the hour, so its precisions are the same numbers).
const (
	precYear = iota + 1
	precMonth
	precDay
	precHour
	precMinute
	precSecond
	precMillisecond
)

// Temporal is a System.Date, System.DateTime or System.Time value, kept
// as its components so that a partial date (2014-01) stays partial: FHIRPath
// compares by precision, and 2014-01 is not 2014-01-01.
type Temporal struct {
	Kind   TemporalKind
	Prec   int // the last component given (precYear … precMillisecond)
	Year   int
	Month  int
	Day    int
	Hour   int
	Minute int
	Second int
	Milli  int
	HasTZ  bool
	TZ     int // offset east of UTC, in minutes
}

// parseTemporal reads the FHIR/ISO 8601 lexical forms: "2014", "2014-01-05",
// "2014-01-05T10:30:00.000+10:00", and times "10:30" (without @ or T).
func parseTemporal(s string, kind TemporalKind) (Temporal, bool) {
	t := Temporal{Kind: kind, Month: 1, Day: 1}
	rest := s
	if kind != KindTime {
		var ok bool
		if t.Year, rest, ok = digits(rest, 4); !ok {
			return t, false
		}
		t.Prec = precYear
		if strings.HasPrefix(rest, "-") {
			if t.Month, rest, ok = digits(rest[1:], 2); !ok || t.Month < 1 || t.Month > 12 {
				return t, false
			}
			t.Prec = precMonth
			if strings.HasPrefix(rest, "-") {
				if t.Day, rest, ok = digits(rest[1:], 2); !ok || t.Day < 1 || t.Day > daysIn(t.Year, t.Month) {
					return t, false
				}
				t.Prec = precDay
			}
		}
		if kind == KindDate {
			return t, rest == ""
		}
		if rest == "" {
			return t, true
		}
		if rest[0] != 'T' {
			return t, false
		}
		rest = rest[1:]
		if rest == "" {
			return t, true // @2015T: a DateTime of year precision
		}
		if t.Prec != precDay {
			return t, false
		}
	}
	var ok bool
	if t.Hour, rest, ok = digits(rest, 2); !ok || t.Hour > 23 {
		return t, false
	}
	t.Prec = precHour
	if strings.HasPrefix(rest, ":") {
		if t.Minute, rest, ok = digits(rest[1:], 2); !ok || t.Minute > 59 {
			return t, false
		}
		t.Prec = precMinute
		if strings.HasPrefix(rest, ":") {
			if t.Second, rest, ok = digits(rest[1:], 2); !ok || t.Second > 59 {
				return t, false
			}
			t.Prec = precSecond
			if strings.HasPrefix(rest, ".") {
				n := 1
				for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
					n++
				}
				if n == 1 {
					return t, false
				}
				frac := rest[1:n]
				for len(frac) < 3 {
					frac += "0"
				}
				t.Milli, _ = strconv.Atoi(frac[:3])
				rest = rest[n:]
				t.Prec = precMillisecond
			}
		}
	}
	if kind == KindTime {
		return t, rest == ""
	}
	switch {
	case rest == "":
		return t, true
	case rest == "Z":
		t.HasTZ = true
		return t, true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		h, _, ok1 := digits(rest[1:3], 2)
		m, _, ok2 := digits(rest[4:6], 2)
		if !ok1 || !ok2 || h > 14 || m > 59 {
			return t, false
		}
		t.HasTZ = true
		t.TZ = h*60 + m
		if rest[0] == '-' {
			t.TZ = -t.TZ
		}
		return t, true
	}
	return t, false
}

func digits(s string, n int) (int, string, bool) {
	if len(s) < n {
		return 0, s, false
	}
	v := 0
	for i := range n {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, s, false
		}
		v = v*10 + int(c-'0')
	}
	return v, s[n:], true
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// String is the ISO 8601 form, as toString() gives it.
func (t Temporal) String() string {
	var b strings.Builder
	if t.Kind != KindTime {
		fmt.Fprintf(&b, "%04d", t.Year)
		if t.Prec >= precMonth {
			fmt.Fprintf(&b, "-%02d", t.Month)
		}
		if t.Prec >= precDay {
			fmt.Fprintf(&b, "-%02d", t.Day)
		}
		if t.Kind == KindDate || t.Prec < precHour {
			return b.String()
		}
		b.WriteByte('T')
	}
	fmt.Fprintf(&b, "%02d", t.Hour)
	if t.Prec >= precMinute {
		fmt.Fprintf(&b, ":%02d", t.Minute)
	}
	if t.Prec >= precSecond {
		fmt.Fprintf(&b, ":%02d", t.Second)
	}
	if t.Prec >= precMillisecond {
		fmt.Fprintf(&b, ".%03d", t.Milli)
	}
	if t.Kind == KindDateTime && t.HasTZ {
		if t.TZ == 0 {
			b.WriteByte('Z')
		} else {
			off, sign := t.TZ, '+'
			if off < 0 {
				off, sign = -off, '-'
			}
			fmt.Fprintf(&b, "%c%02d:%02d", sign, off/60, off%60)
		}
	}
	return b.String()
}

// time is the instant the components name (missing ones at their lowest),
// in UTC when the value has a zone.
func (t Temporal) time() time.Time {
	loc := time.UTC
	if t.HasTZ {
		loc = time.FixedZone("", t.TZ*60)
	}
	y, mo, d := t.Year, t.Month, t.Day
	if t.Kind == KindTime {
		y, mo, d = 2000, 1, 1
	}
	return time.Date(y, time.Month(mo), d, t.Hour, t.Minute, t.Second, t.Milli*1e6, loc)
}

func fromTime(tm time.Time, kind TemporalKind, prec int, hasTZ bool) Temporal {
	t := Temporal{Kind: kind, Prec: prec, Year: tm.Year(), Month: int(tm.Month()), Day: tm.Day(),
		Hour: tm.Hour(), Minute: tm.Minute(), Second: tm.Second(), Milli: tm.Nanosecond() / 1e6, HasTZ: hasTZ}
	if hasTZ {
		_, off := tm.Zone()
		t.TZ = off / 60
	}
	return t
}

// comparePrec is the precision two values are compared at: seconds and
// milliseconds are one precision (a decimal number of seconds).
func comparePrec(p int) int {
	if p == precMillisecond {
		return precSecond
	}
	return p
}

// compareTemporal orders a and b. ok is false when the answer is unknown:
// they differ in precision and agree on every component both have.
func compareTemporal(a, b Temporal) (c int, ok bool) {
	if a.Kind == KindTime || b.Kind == KindTime {
		if a.Kind != b.Kind {
			return 0, false
		}
	}
	if a.Prec >= precHour && b.Prec >= precHour && a.HasTZ != b.HasTZ {
		return 0, false // a zone against no zone: unknown which instant is meant
	}
	if a.HasTZ && b.HasTZ && a.Prec >= precHour && b.Prec >= precHour && a.TZ != b.TZ {
		a = fromTime(a.time().UTC(), a.Kind, a.Prec, true)
		b = fromTime(b.time().UTC(), b.Kind, b.Prec, true)
	}
	pa, pb := comparePrec(a.Prec), comparePrec(b.Prec)
	av, bv := a.components(), b.components()
	first := 0
	if a.Kind == KindTime {
		first = precHour - 1
	}
	for i := first; i < min(pa, pb); i++ {
		x, y := av[i], bv[i]
		if i == precSecond-1 { // seconds with their milliseconds
			x, y = av[i]*1000+av[i+1], bv[i]*1000+bv[i+1]
		}
		if x != y {
			return cmp.Compare(x, y), true
		}
	}
	if pa != pb {
		return 0, false
	}
	return 0, true
}

func (t Temporal) components() [7]int {
	return [7]int{t.Year, t.Month, t.Day, t.Hour, t.Minute, t.Second, t.Milli}
}

// boundary is lowBoundary/highBoundary of a temporal to the given
// precision in digits (4 = year, 6 = month, 8 = day, 10 hour, 12 minute,
// 14 second, 17 millisecond; Times 2, 4, 6, 9).
func (t Temporal) boundary(digits int, high bool) (Temporal, bool) {
	var prec int
	if t.Kind == KindTime {
		switch digits {
		case 2:
			prec = precHour
		case 4:
			prec = precMinute
		case 6:
			prec = precSecond
		case 9:
			prec = precMillisecond
		default:
			return t, false
		}
	} else {
		switch digits {
		case 4:
			prec = precYear
		case 6:
			prec = precMonth
		case 8:
			prec = precDay
		case 10:
			prec = precHour
		case 12:
			prec = precMinute
		case 14:
			prec = precSecond
		case 17:
			prec = precMillisecond
		default:
			return t, false
		}
		if t.Kind == KindDate && prec > precDay {
			return t, false
		}
	}
	out := t
	for p := t.Prec + 1; p <= prec; p++ {
		switch p {
		case precMonth:
			out.Month = pick(high, 1, 12)
		case precDay:
			out.Day = pick(high, 1, daysIn(out.Year, out.Month))
		case precHour:
			out.Hour = pick(high, 0, 23)
		case precMinute:
			out.Minute = pick(high, 0, 59)
		case precSecond:
			out.Second = pick(high, 0, 59)
		case precMillisecond:
			out.Milli = pick(high, 0, 999)
		}
	}
	out.Prec = prec
	// Without a zone the instant could be anywhere from +14:00 to -12:00.
	if t.Kind == KindDateTime && prec >= precHour && !t.HasTZ {
		out.HasTZ = true
		out.TZ = pick(high, 14*60, -12*60)
	}
	return out, true
}

func pick(high bool, low, hi int) int {
	if high {
		return hi
	}
	return low
}

// temporalDigits is precision() of a temporal: the digits of its form.
func (t Temporal) digits() int {
	if t.Kind == KindTime {
		return [...]int{0, 0, 0, 0, 2, 4, 6, 9}[t.Prec]
	}
	return [...]int{0, 4, 6, 8, 10, 12, 14, 17}[t.Prec]
}
