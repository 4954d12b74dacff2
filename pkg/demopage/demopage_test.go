package demopage

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerServesPageScriptAndConfig(t *testing.T) {
	srv := httptest.NewServer(Handler("https://127.0.0.1:8443"))
	defer srv.Close()
	for _, c := range []struct{ path, contentType, contains string }{
		{"/", "text/html", `<script defer src="demo.js">`},
		{"/demo.js", "text/javascript", "window.albctlDemo"},
		{"/config.json", "application/json", `{"target":"https://127.0.0.1:8443"}`},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.contentType) || !strings.Contains(string(body), c.contains) {
			t.Errorf("GET %s: %d %q, want 200 %s containing %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.contentType, c.contains)
		}
	}
}
