package interact

import (
	"context"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// closed is the data of a session that has no policy: it answers
// ErrNoPolicy to everything, so such a session reaches no data.
type closed struct{}

var _ store.Resources = closed{}

func (closed) Read(context.Context, string, string) (store.Resource, error) {
	return store.Resource{}, ErrNoPolicy
}
func (closed) VRead(context.Context, string, string, int64) (store.Resource, error) {
	return store.Resource{}, ErrNoPolicy
}
func (closed) Transact(context.Context, func(store.Tx) error) error { return ErrNoPolicy }
func (closed) History(context.Context, store.HistoryQuery) (store.HistoryPage, error) {
	return store.HistoryPage{}, ErrNoPolicy
}
func (closed) SearchIDs(context.Context, *fhir.SearchQuery, string, int) ([]string, error) {
	return nil, ErrNoPolicy
}
func (closed) Count(context.Context, *fhir.SearchQuery) (int, error) { return 0, ErrNoPolicy }
func (closed) ReadMany(context.Context, string, []string) ([]store.Resource, error) {
	return nil, ErrNoPolicy
}
func (closed) ScanType(context.Context, string, string, int) ([]store.Resource, error) {
	return nil, ErrNoPolicy
}
func (closed) References(context.Context, string, []string, string) ([]fhir.RefKey, error) {
	return nil, ErrNoPolicy
}
func (closed) ReferencedBy(context.Context, string, string, string, []string) ([]string, error) {
	return nil, ErrNoPolicy
}
func (closed) CompartmentMembers(context.Context, string) ([]store.Member, error) {
	return nil, ErrNoPolicy
}
func (closed) ReferencingMembers(context.Context, string, string) ([]store.Member, error) {
	return nil, ErrNoPolicy
}
func (closed) SaveSnapshot(context.Context, []string) (string, error) { return "", ErrNoPolicy }
func (closed) LoadSnapshot(context.Context, string) ([]string, error) { return nil, ErrNoPolicy }
