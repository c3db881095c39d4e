package mongo

import (
	"context"
	"errors"
	"io"
	"regexp"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/gridfs"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/hearth-fhir/hearth/store"
)

// Files live in GridFS (bucket "files"), which every process serving the
// database reaches. GridFS writes a file's chunks first and its files
// document last, so a file is found only once whole; an interrupted upload
// leaves chunks no document names, which the driver removes when it can.
// A name written again gets a new file, and the older ones are deleted.

const filesBucket = "files"

var _ store.Files = (*Store)(nil)

// bucket is a bucket for one call: the v1 driver bounds GridFS calls by
// deadlines set on the bucket, not by a context, so each call has its own.
func (s *Store) bucket(ctx context.Context) (*gridfs.Bucket, error) {
	b, err := gridfs.NewBucket(s.db, options.GridFSBucket().SetName(filesBucket))
	if err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		b.SetWriteDeadline(d)
		b.SetReadDeadline(d)
	}
	return b, nil
}

type fileMeta struct {
	Expires time.Time `bson:"expires"`
}

func (s *Store) PutFile(ctx context.Context, name string, r io.Reader, expires time.Time) (int64, error) {
	b, err := s.bucket(ctx)
	if err != nil {
		return 0, err
	}
	id := primitive.NewObjectID()
	up, err := b.OpenUploadStreamWithID(id, name, options.GridFSUpload().SetMetadata(fileMeta{Expires: expires.UTC()}))
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(up, r)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		// The chunks written so far go; no files document names them.
		up.Abort()
		return 0, err
	}
	if err := up.Close(); err != nil {
		return 0, err
	}
	// The older files of that name go.
	if _, err := s.deleteFiles(ctx, bson.D{{Key: "filename", Value: name}, {Key: "_id", Value: bson.D{{Key: "$ne", Value: id}}}}); err != nil {
		return 0, err
	}
	return n, nil
}

func (s *Store) OpenFile(ctx context.Context, name string) (io.ReadCloser, error) {
	b, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	var doc struct {
		ID primitive.ObjectID `bson:"_id"`
	}
	err = b.GetFilesCollection().FindOne(ctx, bson.D{{Key: "filename", Value: name}, {Key: "metadata.expires", Value: bson.D{{Key: "$gt", Value: time.Now().UTC()}}}},
		options.FindOne().SetSort(bson.D{{Key: "uploadDate", Value: -1}}).SetProjection(bson.D{{Key: "_id", Value: 1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	ds, err := b.OpenDownloadStream(doc.ID)
	if errors.Is(err, gridfs.ErrFileNotFound) {
		return nil, store.ErrNotFound
	}
	return ds, err
}

// deleteFiles deletes the files a filter on the files collection selects.
func (s *Store) deleteFiles(ctx context.Context, filter bson.D) (int, error) {
	b, err := s.bucket(ctx)
	if err != nil {
		return 0, err
	}
	cur, err := b.GetFilesCollection().Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return 0, err
	}
	var docs []struct {
		ID primitive.ObjectID `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return 0, err
	}
	for _, d := range docs {
		if err := b.DeleteContext(ctx, d.ID); err != nil && !errors.Is(err, gridfs.ErrFileNotFound) {
			return 0, err
		}
	}
	return len(docs), nil
}

func (s *Store) DeleteFiles(ctx context.Context, prefix string) error {
	_, err := s.deleteFiles(ctx, bson.D{{Key: "filename", Value: primitive.Regex{Pattern: "^" + regexp.QuoteMeta(prefix)}}})
	return err
}

func (s *Store) PruneFiles(ctx context.Context, t time.Time) (int, error) {
	return s.deleteFiles(ctx, bson.D{{Key: "metadata.expires", Value: bson.D{{Key: "$lt", Value: t.UTC()}}}})
}
