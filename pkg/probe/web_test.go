package probe

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/albctl/albctl/pkg/proxy/grpcweb"
)

// TestWebConnNeedsThePagesPermission: a call sent from a page's origin fails when the answer
// does not let that page read it, though the answer itself is a good one.
func TestWebConnNeedsThePagesPermission(t *testing.T) {
	for _, allow := range []string{"", "https://other.example.test", "https://app.example.test"} {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if allow != "" {
				w.Header().Set("Access-Control-Allow-Origin", allow)
			}
			w.Header().Set("Content-Type", "application/grpc-web+proto")
			w.Write(grpcweb.AppendMessage(nil, nil))
			w.Write(grpcweb.AppendTrailers(nil, []hpack.HeaderField{{Name: "grpc-status", Value: "0"}}))
		}))
		srv.EnableHTTP2 = true
		srv.StartTLS()
		conn := NewWebConn(WebOptions{Target: strings.TrimPrefix(srv.URL, "https://"), Protocol: protocolGRPCWeb,
			TLS: &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}, Origin: "https://app.example.test"})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := conn.Invoke(ctx, "/pkg.Svc/Method", &emptypb.Empty{}, &emptypb.Empty{})
		cancel()
		conn.Close()
		srv.Close()
		if allowed := allow == "https://app.example.test"; allowed != (err == nil) || !allowed && status.Code(err) != codes.PermissionDenied {
			t.Errorf("Access-Control-Allow-Origin %q: %v", allow, err)
		}
	}
}
