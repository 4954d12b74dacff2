package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// Store keeps the document. Load gives a snapshot; Update applies a change and writes the result
// only if the change and the validation of the whole document succeed, and only over the document
// the change was applied to. A store may run change again on a fresh copy when another writer got
// there first, so change must do nothing but edit the state it is given (recording a result in a
// variable is fine: the last run's stands).
type Store interface {
	Load(ctx context.Context) (*State, error)
	Update(ctx context.Context, change func(*State) error) (*State, error)
	// Location names where the document lives, for messages.
	Location() string
}

// FileStore keeps the document in one JSON file. Writes are atomic (temporary file, fsync,
// rename) and serialized across processes by a lock on a file beside it, so a reader always sees
// a whole document and concurrent writers never lose each other's changes.
type FileStore struct {
	path string
}

// NewFileStore returns a store for the file at path; the file need not exist yet.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// Location returns the file's path.
func (f *FileStore) Location() string { return f.path }

// CorruptError is a stored document that cannot be read as a document of this version. The
// store leaves it untouched.
type CorruptError struct {
	Path string // the state file, or the location of another store
	Err  error
	// Where names the document and Fix the way out, for a store other than a file; empty, they
	// speak of the state file at Path.
	Where, Fix string
}

func (e *CorruptError) Error() string {
	where, fix := "state file "+e.Path, "fix it, or move it away to start afresh"
	if e.Where != "" {
		where, fix = e.Where, e.Fix
	}
	return fmt.Sprintf("%s cannot be used: %v (albctl does not change it; %s)", where, e.Err, fix)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Load reads the document; a missing file is an empty document.
func (f *FileStore) Load(ctx context.Context) (*State, error) {
	data, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return New(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state file: %w", err)
	}
	return Decode(f.path, data)
}

// Decode reads a document strictly: unknown fields and other versions are refused, since
// writing such a document back would silently drop what this albctl does not understand.
func Decode(path string, data []byte) (*State, error) {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, &CorruptError{Path: path, Err: describeJSONError(data, err)}
	}
	if head.Version == nil {
		return nil, &CorruptError{Path: path, Err: errors.New(`not an albctl state: no "version" field`)}
	}
	if *head.Version != Version {
		return nil, &CorruptError{Path: path, Err: fmt.Errorf("version %d, but this albctl reads version %d", *head.Version, Version)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	s := New()
	if err := dec.Decode(s); err != nil {
		return nil, &CorruptError{Path: path, Err: describeJSONError(data, err)}
	}
	if err := s.Validate(); err != nil {
		return nil, &CorruptError{Path: path, Err: err}
	}
	return s, nil
}

// Encode writes the document as every store keeps it: indented JSON ending in a newline.
func Encode(s *State) ([]byte, error) {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// describeJSONError adds the line and column to a syntax error.
func describeJSONError(data []byte, err error) error {
	var syntax *json.SyntaxError
	if !errors.As(err, &syntax) {
		return err
	}
	// The offset counts the offending byte as read.
	before := data[:max(syntax.Offset-1, 0)]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Errorf("line %d, column %d: %v", line, col, err)
}

// Update locks the file, reads it, applies change, validates, and writes the result atomically.
// If change or the validation fails, the file is not touched.
func (f *FileStore) Update(ctx context.Context, change func(*State) error) (*State, error) {
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	lock := flock.New(f.path + ".lock")
	locked, err := lock.TryLockContext(ctx, 5*time.Millisecond)
	if err != nil || !locked {
		return nil, fmt.Errorf("lock state file %s: %w", f.path, errors.Join(err, ctx.Err()))
	}
	defer func() { _ = lock.Unlock() }()

	old, err := os.ReadFile(f.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read state file: %w", err)
	}
	s := New()
	if old != nil {
		if s, err = Decode(f.path, old); err != nil {
			return nil, err
		}
	}
	if err := change(s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	data, err := Encode(s)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(data, old) {
		return s, nil
	}
	return s, WriteFileAtomic(f.path, data)
}

// WriteFileAtomic replaces path with data so that readers see the old file or the new one, never a
// mix, even after a crash. The temporary file, and so the result, is created with mode 0600.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // a no-op after the rename
	_, writeErr := tmp.Write(data)
	if err := errors.Join(writeErr, tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // makes the rename durable; not every file system supports it
		d.Close()
	}
	return nil
}

// Stat describes the file as it is now, for Watch to compare with; nil when it does not exist.
// Take it before the Load that starts a watch, so a write between the two is not missed.
func (f *FileStore) Stat() os.FileInfo {
	info, err := os.Stat(f.path)
	if err != nil {
		return nil
	}
	return info
}

// Watch checks the file every interval and hands each new good document to apply, until ctx
// is done; seen is the Stat taken before the caller's own Load. Writers replace the file by
// renaming a new one over it, so a change shows as a new file, modification time or size. A
// document that cannot be read is handed to report instead, and apply is not called: whatever
// serves from it keeps the last good state.
func (f *FileStore) Watch(ctx context.Context, seen os.FileInfo, interval time.Duration, apply func(*State), report func(error)) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		info, err := os.Stat(f.path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			report(fmt.Errorf("state file: %w", err))
			continue
		}
		if sameFile(seen, info) {
			continue
		}
		seen = info
		if info == nil {
			// A missing file would load as an empty document and stop everything.
			report(fmt.Errorf("state file %s is gone", f.path))
			continue
		}
		s, err := f.Load(ctx)
		if err != nil {
			report(err)
			continue
		}
		apply(s)
	}
}

func sameFile(x, y os.FileInfo) bool {
	if x == nil || y == nil {
		return x == nil && y == nil
	}
	return os.SameFile(x, y) && x.ModTime().Equal(y.ModTime()) && x.Size() == y.Size()
}
