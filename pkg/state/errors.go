package state

import (
	"errors"
	"fmt"
)

// InvalidError is a value that breaks a rule of the model. Field is the JSON path of the value
// (such as "healthCheck.interval"), so a front end can name its own flag for it.
type InvalidError struct {
	Field string
	Value string
	Rule  string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Rule)
}

func invalid(field string, value any, format string, args ...any) error {
	return &InvalidError{Field: field, Value: fmt.Sprint(value), Rule: fmt.Sprintf(format, args...)}
}

// NotFoundError says that no resource of a kind has the ID or name given; In, if set, names
// where it was looked for ("server group grpc-backends").
type NotFoundError struct {
	Kind string
	Ref  string
	In   string
}

func (e *NotFoundError) Error() string {
	if e.In != "" {
		return fmt.Sprintf("%s %s is not in %s", e.Kind, e.Ref, e.In)
	}
	return fmt.Sprintf("%s %q not found", e.Kind, e.Ref)
}

// ConflictError is a change that clashes with what the state already holds: a duplicate, or a
// deletion of something still in use.
type ConflictError struct {
	Msg string
}

func (e *ConflictError) Error() string { return e.Msg }

func conflict(format string, args ...any) error {
	return &ConflictError{Msg: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err is, or wraps, an InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}
