package interact

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// SearchPage is one page of a search: the matches, what _include and
// _revinclude brought in, the total and the token of the next page.
type SearchPage struct {
	Matches  []store.Resource
	Included []store.Resource
	Total    int // -1 when not computed (_total=none)
	Next     string
	// Offset is the position of the first match in the whole result.
	Offset int
}

// SearchLimits bound the work one search may cause.
type SearchLimits struct {
	MaxSnapshot int // most results a sorted search pages through
	MaxIncluded int // most resources _include/_revinclude add to a page
	MaxIterate  int // rounds of :iterate
}

// countedTotal is how many ids a first page fetches when a total is
// wanted, so that totals up to it need no separate count.
const countedTotal = 1001

// DefaultSearchLimits are used where a field is zero.
var DefaultSearchLimits = SearchLimits{MaxSnapshot: 100_000, MaxIncluded: 5_000, MaxIterate: 4}

// Search runs q and returns the page named by token ("" for the first).
// Paging is stable under concurrent writes: an unsorted search pages by id,
// which never changes, and a sorted one pages through a snapshot of its
// ordered ids taken when the first page was served.
func (ss *Session) Search(ctx context.Context, q *fhir.SearchQuery, token string) (*SearchPage, error) {
	var page *SearchPage
	var err error
	if q.Type == auditType {
		page, err = ss.searchAudit(ctx, q, token)
	} else {
		page, err = search(ctx, ss.data, q, token, ss.door.cfg.Limits)
	}
	e := audit.Event{Subtype: "search-type", Action: "E", Query: recordedQuery(q.Type, q.Canonical)}
	if err == nil {
		e.Patients = patientsOf(page.Matches, page.Included)
	}
	return page, auditFailed(err, ss.record(ctx, e, err))
}

func search(ctx context.Context, s store.Searcher, q *fhir.SearchQuery, token string, lim SearchLimits) (*SearchPage, error) {
	if lim.MaxSnapshot == 0 {
		lim.MaxSnapshot = DefaultSearchLimits.MaxSnapshot
	}
	if lim.MaxIncluded == 0 {
		lim.MaxIncluded = DefaultSearchLimits.MaxIncluded
	}
	if lim.MaxIterate == 0 {
		lim.MaxIterate = DefaultSearchLimits.MaxIterate
	}
	page := &SearchPage{Total: -1}
	wantTotal := q.Total != "none"
	if q.Summary == "count" || q.Count == 0 {
		n, err := s.Count(ctx, q)
		if err != nil {
			return nil, err
		}
		page.Total = n
		return page, nil
	}
	var ids []string
	switch {
	case token != "":
		var err error
		ids, err = loadPage(ctx, s, q, token, page)
		if err != nil {
			return nil, err
		}
	case len(q.Sort) == 0:
		// With a total wanted, ask for up to countedTotal ids: a backend
		// that has to visit every match anyway (to order them by id) then
		// answers page and total in one pass, and a second counting pass
		// is needed only beyond that.
		limit := q.Count + 1
		if wantTotal {
			limit = max(limit, countedTotal)
		}
		got, err := s.SearchIDs(ctx, q, "", limit)
		if err != nil {
			return nil, err
		}
		ids = got
		if len(got) > q.Count {
			ids = got[:q.Count]
			switch {
			case !wantTotal:
			case len(got) < limit:
				page.Total = len(got)
			default:
				if page.Total, err = s.Count(ctx, q); err != nil {
					return nil, err
				}
			}
			page.Next = keysetToken(page.Total, q.Count, ids[len(ids)-1])
		} else if wantTotal {
			page.Total = len(got)
		}
	default:
		got, err := s.SearchIDs(ctx, q, "", lim.MaxSnapshot+1)
		if err != nil {
			return nil, err
		}
		if len(got) > lim.MaxSnapshot {
			return nil, fmt.Errorf("the search matches more than %d resources; narrow it to sort it: %w", lim.MaxSnapshot, store.ErrTooCostly)
		}
		page.Total = len(got)
		ids = got
		if len(got) > q.Count {
			snap, err := s.SaveSnapshot(ctx, got)
			if err != nil {
				return nil, err
			}
			ids = got[:q.Count]
			page.Next = "s." + snap + "." + strconv.Itoa(q.Count)
		}
	}
	matches, err := s.ReadMany(ctx, q.Type, ids)
	if err != nil {
		return nil, err
	}
	page.Matches = matches
	if len(q.Includes) > 0 || len(q.RevIncludes) > 0 {
		inc, err := includes(ctx, s, q, matches, lim)
		if err != nil {
			return nil, err
		}
		page.Included = inc
	}
	return page, nil
}

// keysetToken continues an unsorted search after lastID; it carries the
// total and the offset so that every page reports them.
func keysetToken(total, offset int, lastID string) string {
	return "k." + strconv.Itoa(total) + "." + strconv.Itoa(offset) + "." + lastID
}

func loadPage(ctx context.Context, s store.Searcher, q *fhir.SearchQuery, token string, page *SearchPage) ([]string, error) {
	parts := strings.SplitN(token, ".", 4)
	bad := fmt.Errorf("page token %q: %w", token, store.ErrInvalidCursor)
	switch {
	case len(parts) == 4 && parts[0] == "k":
		total, err1 := strconv.Atoi(parts[1])
		offset, err2 := strconv.Atoi(parts[2])
		if err1 != nil || err2 != nil || len(q.Sort) > 0 {
			return nil, bad
		}
		got, err := s.SearchIDs(ctx, q, parts[3], q.Count+1)
		if err != nil {
			return nil, err
		}
		page.Total, page.Offset = total, offset
		if len(got) > q.Count {
			got = got[:q.Count]
			page.Next = keysetToken(total, offset+q.Count, got[len(got)-1])
		}
		return got, nil
	case len(parts) == 3 && parts[0] == "s":
		offset, err := strconv.Atoi(parts[2])
		if err != nil || offset < 0 {
			return nil, bad
		}
		all, err := s.LoadSnapshot(ctx, parts[1])
		if err != nil {
			return nil, err
		}
		page.Total, page.Offset = len(all), offset
		if offset >= len(all) {
			return nil, nil
		}
		end := min(offset+q.Count, len(all))
		if end < len(all) {
			page.Next = "s." + parts[1] + "." + strconv.Itoa(end)
		}
		return all[offset:end], nil
	}
	return nil, bad
}

type typeID struct{ typ, id string }

// includes resolves _include and _revinclude, with :iterate, for a page.
func includes(ctx context.Context, s store.Searcher, q *fhir.SearchQuery, matches []store.Resource, lim SearchLimits) ([]store.Resource, error) {
	seen := map[typeID]bool{}
	for _, m := range matches {
		seen[typeID{m.Type, m.ID}] = true
	}
	var out []store.Resource
	frontier := matches
	for round := 0; round <= lim.MaxIterate && len(frontier) > 0; round++ {
		byType := map[string][]string{}
		for _, r := range frontier {
			byType[r.Type] = append(byType[r.Type], r.ID)
		}
		wanted := map[string][]string{} // type → ids to read
		add := func(typ, id string) {
			k := typeID{typ, id}
			if !seen[k] {
				seen[k] = true
				wanted[typ] = append(wanted[typ], id)
			}
		}
		for _, inc := range q.Includes {
			if round > 0 && !inc.Iterate {
				continue
			}
			ids := byType[inc.SourceType]
			if len(ids) == 0 {
				continue
			}
			refs, err := s.References(ctx, inc.SourceType, ids, inc.Param)
			if err != nil {
				return nil, err
			}
			for _, r := range refs {
				if r.Type == "" || (inc.TargetType != "" && r.Type != inc.TargetType) {
					continue
				}
				add(r.Type, r.ID)
			}
		}
		for _, inc := range q.RevIncludes {
			if round > 0 && !inc.Iterate {
				continue
			}
			for typ, ids := range byType {
				if inc.TargetType != "" && inc.TargetType != typ {
					continue
				}
				src, err := s.ReferencedBy(ctx, inc.SourceType, inc.Param, typ, ids)
				if err != nil {
					return nil, err
				}
				for _, id := range src {
					add(inc.SourceType, id)
				}
			}
		}
		frontier = nil
		for _, typ := range sortedKeys(wanted) {
			res, err := s.ReadMany(ctx, typ, wanted[typ])
			if err != nil {
				return nil, err
			}
			for _, r := range res {
				if len(out) >= lim.MaxIncluded {
					return nil, fmt.Errorf("_include/_revinclude would add more than %d resources to one page; lower _count: %w", lim.MaxIncluded, store.ErrTooCostly)
				}
				out = append(out, r)
				frontier = append(frontier, r)
			}
		}
	}
	return out, nil
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
