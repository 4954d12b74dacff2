package grpcweb

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http2/hpack"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// Connect's content types, in its binary (protobuf) form: unary calls carry the bare message,
// streams gRPC's length-prefixed messages.
const (
	connectUnaryType  = "application/proto"
	connectStreamType = "application/connect+proto"
)

// ParseConnect reads the content type of a Connect request. It returns ConnectUnary or
// ConnectStream and the gRPC content type to send the server, or Native if it is not Connect.
// json is set for Connect's JSON forms, which cannot be passed on without the service's schema.
func ParseConnect(contentType string) (mode Mode, serverType string, json bool) {
	ct, _, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(ct)) {
	case connectUnaryType:
		return ConnectUnary, "application/grpc+proto", false
	case connectStreamType:
		return ConnectStream, "application/grpc+proto", false
	case "application/json":
		return ConnectUnary, "", true
	case "application/connect+json":
		return ConnectStream, "", true
	}
	return Native, "", false
}

// IsMetadata reports whether a response field is the call's metadata, rather than gRPC's own
// or HTTP's.
func IsMetadata(name string) bool {
	switch name {
	case "content-type", "content-length", "grpc-encoding", "grpc-accept-encoding",
		"grpc-status", "grpc-message", "grpc-status-details-bin":
		return false
	}
	return !strings.HasPrefix(name, ":")
}

// connectCodes are Connect's names of the gRPC status codes.
var connectCodes = [...]string{
	"ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
	"already_exists", "permission_denied", "resource_exhausted", "failed_precondition", "aborted",
	"out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated",
}

// ConnectCode is the gRPC status code of a Connect error code name; unknown (2) for a name it
// does not know.
func ConnectCode(name string) int {
	for i, n := range connectCodes {
		if n == name {
			return i
		}
	}
	return 2
}

// DecodeMessage undoes the percent-encoding of a grpc-message value.
func DecodeMessage(s string) string {
	if m, err := url.PathUnescape(s); err == nil {
		return m
	}
	return s
}

// connectHTTPStatus is the HTTP status of a Connect unary call that failed with each code.
var connectHTTPStatus = [...]int{
	200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401,
}

// ConnectHTTPStatus is the HTTP status that answers a Connect unary call ending with code.
func ConnectHTTPStatus(code int) int {
	if code < 0 || code >= len(connectHTTPStatus) {
		return 500
	}
	return connectHTTPStatus[code]
}

type connectError struct {
	Code    string          `json:"code"`
	Message string          `json:"message,omitempty"`
	Details []connectDetail `json:"details,omitempty"`
}

type connectDetail struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// status reads the gRPC status fields of a header block: code, message and details.
func status(fields []hpack.HeaderField) (code int, message, details string, metadata map[string][]string) {
	code = 2 // unknown, for an answer without a status
	for _, f := range fields {
		switch f.Name {
		case "grpc-status":
			if n, err := strconv.Atoi(f.Value); err == nil {
				code = n
			}
		case "grpc-message":
			message = DecodeMessage(f.Value)
		case "grpc-status-details-bin":
			details = f.Value
		default:
			if IsMetadata(f.Name) {
				if metadata == nil {
					metadata = map[string][]string{}
				}
				metadata[f.Name] = append(metadata[f.Name], f.Value)
			}
		}
	}
	return code, message, details, metadata
}

func errorOf(code int, message, details string) *connectError {
	if code == 0 {
		return nil
	}
	e := &connectError{Code: "unknown", Message: message}
	if code > 0 && code < len(connectCodes) {
		e.Code = connectCodes[code]
	}
	if raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(details, "=")); err == nil && details != "" {
		var st spb.Status
		if proto.Unmarshal(raw, &st) == nil {
			for _, d := range st.Details {
				e.Details = append(e.Details, connectDetail{
					Type:  d.TypeUrl[strings.LastIndexByte(d.TypeUrl, '/')+1:],
					Value: base64.RawStdEncoding.EncodeToString(d.Value),
				})
			}
		}
	}
	return e
}

// ConnectError is the JSON body of a Connect unary call that failed, from the status fields
// of the server's trailers (or the proxy's own status); nil if the call succeeded.
func ConnectError(fields []hpack.HeaderField) []byte {
	code, message, details, _ := status(fields)
	e := errorOf(code, message, details)
	if e == nil {
		return nil
	}
	b, _ := json.Marshal(e) // strings and a slice of them: it cannot fail
	return b
}

// connectEndFlag marks the frame that ends a Connect stream.
const connectEndFlag = 0x02

// AppendConnectEnd appends the frame that ends a Connect stream: its JSON holds the error, if
// the status is not OK, and the trailers as metadata.
func AppendConnectEnd(dst []byte, fields []hpack.HeaderField) []byte {
	code, message, details, metadata := status(fields)
	end := struct {
		Error    *connectError       `json:"error,omitempty"`
		Metadata map[string][]string `json:"metadata,omitempty"`
	}{errorOf(code, message, details), metadata}
	b, _ := json.Marshal(end)
	return append(AppendPrefix(dst, connectEndFlag, len(b)), b...)
}
