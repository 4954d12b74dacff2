package state_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/albctl/albctl/pkg/state"
	"github.com/albctl/albctl/pkg/state/storetest"
)

func TestFileStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		path := filepath.Join(t.TempDir(), "sub", "state.json")
		return storetest.Harness{
			Store:  state.NewFileStore(path),
			Reopen: func() state.Store { return state.NewFileStore(path) },
			ReadRaw: func() []byte {
				data, err := os.ReadFile(path)
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
				return data
			},
			WriteRaw: func(data []byte) {
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}
