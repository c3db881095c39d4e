package store

import (
	"context"
	"io"
	"time"
)

// Files keeps the files the server writes for clients to fetch later — the
// NDJSON output of a bulk export — where every process serving the store
// reaches them: beside the embedded store's data, or in MongoDB's GridFS.
// A file is written whole and never changed; writing a name again replaces
// it. Names are paths of the server's choosing ("export/JOB/Patient-1.ndjson").
type Files interface {
	// PutFile stores what r holds under name and returns its size. The
	// file is whole or absent: a failed or interrupted PutFile leaves no
	// file (and no half of one) under name. expires is when PruneFiles
	// may delete it.
	PutFile(ctx context.Context, name string, r io.Reader, expires time.Time) (int64, error)
	// OpenFile reads a file; ErrNotFound if there is none (or it expired).
	OpenFile(ctx context.Context, name string) (io.ReadCloser, error)
	// DeleteFiles deletes every file whose name starts with prefix.
	DeleteFiles(ctx context.Context, prefix string) error
	// PruneFiles deletes the files that expired before t and returns how
	// many it deleted.
	PruneFiles(ctx context.Context, t time.Time) (int, error)
}
