// Package demopage serves the page a person opens in a browser to call albctl's echo service
// with gRPC-Web through a listener: index.html, its script (bundled from page/ by
// scripts/bundle-page.sh and checked in, so no npm is needed to serve it) and config.json, which
// tells the script where the listener is.
package demopage

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the page at / and config.json naming target, the listener's base URL such as
// https://127.0.0.1:8443, which the page calls.
func Handler(target string) http.Handler {
	config, err := json.Marshal(struct {
		Target string `json:"target"`
	}{target})
	if err != nil {
		panic(err) // a struct of one string always marshals
	}
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(files))
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(config)
	})
	return mux
}
