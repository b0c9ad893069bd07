package echo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	echov1 "github.com/echo-actions/echo/clients/go/gen/echo/v1"
)

// FieldViolation names one bad field of a request, such as "action.args[1]".
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a call, or a session request, that failed with a gRPC status.
type Error struct {
	// Code is the status code.
	Code codes.Code
	// Message is the server's message, without the code.
	Message string
	// FieldViolations lists the offending fields, for INVALID_ARGUMENT.
	FieldViolations []FieldViolation
	// RetryDelay is how long to wait before trying again, when the server
	// said (RESOURCE_EXHAUSTED, UNAVAILABLE); 0 otherwise.
	RetryDelay time.Duration
	cause      error
}

// Sentinels for errors.Is: an *Error matches the sentinel of its code.
var (
	ErrCancelled          = &Error{Code: codes.Canceled}
	ErrInvalidArgument    = &Error{Code: codes.InvalidArgument}
	ErrDeadlineExceeded   = &Error{Code: codes.DeadlineExceeded}
	ErrNotFound           = &Error{Code: codes.NotFound}
	ErrPermissionDenied   = &Error{Code: codes.PermissionDenied}
	ErrResourceExhausted  = &Error{Code: codes.ResourceExhausted}
	ErrFailedPrecondition = &Error{Code: codes.FailedPrecondition}
	ErrUnavailable        = &Error{Code: codes.Unavailable}
	ErrUnauthenticated    = &Error{Code: codes.Unauthenticated}
	ErrInternal           = &Error{Code: codes.Internal}
)

// CodeName is a status code's canonical name, such as "INVALID_ARGUMENT".
func CodeName(code codes.Code) string {
	if code == codes.Canceled {
		return "CANCELLED"
	}
	var name strings.Builder
	for i, r := range code.String() {
		if i > 0 && unicode.IsUpper(r) {
			name.WriteByte('_')
		}
		name.WriteRune(unicode.ToUpper(r))
	}
	return name.String()
}

func (e *Error) Error() string {
	if e.Message == "" {
		return CodeName(e.Code)
	}
	return CodeName(e.Code) + ": " + e.Message
}

// Is reports whether target is the sentinel (an *Error without a message)
// of e's code.
func (e *Error) Is(target error) bool {
	var sentinel *Error
	return errors.As(target, &sentinel) && sentinel.Message == "" && sentinel.Code == e.Code
}

// Unwrap returns the error the call itself returned, if any.
func (e *Error) Unwrap() error { return e.cause }

// GRPCStatus lets status.Code and status.FromError read an *Error.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

func newError(code codes.Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// toError maps what a call returned to an *Error; nil stays nil.
func toError(err error) error {
	if err == nil {
		return nil
	}
	var mapped *Error
	if errors.As(err, &mapped) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return &Error{Code: codes.DeadlineExceeded, Message: err.Error(), cause: err}
		case errors.Is(err, context.Canceled):
			return &Error{Code: codes.Canceled, Message: err.Error(), cause: err}
		}
		return &Error{Code: codes.Unknown, Message: err.Error(), cause: err}
	}
	out := &Error{Code: st.Code(), Message: st.Message(), cause: err}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				out.FieldViolations = append(out.FieldViolations, FieldViolation{v.GetField(), v.GetDescription()})
			}
		case *errdetails.RetryInfo:
			out.RetryDelay = d.GetRetryDelay().AsDuration()
		}
	}
	return out
}

// fromRequestError maps a Connect session's per-request error.
func fromRequestError(e *echov1.RequestError) *Error {
	out := &Error{Code: codes.Code(e.GetCode()), Message: e.GetMessage(), RetryDelay: e.GetRetryDelay().AsDuration()}
	for _, v := range e.GetFieldViolations() {
		out.FieldViolations = append(out.FieldViolations, FieldViolation{v.GetField(), v.GetDescription()})
	}
	return out
}

// ActionFailedError is returned by Run when the action finished without
// success: the call worked, the action did not.
type ActionFailedError struct {
	// Action is the action in its final state.
	Action *echov1.Action
}

func (e *ActionFailedError) Error() string {
	a := e.Action
	return fmt.Sprintf("action %s (%s) ended %s: %s: %s",
		a.GetId(), a.GetName(), a.GetState(), a.GetError().GetType(), a.GetError().GetMessage())
}

// Type is the handler's own error type, such as "ValueError".
func (e *ActionFailedError) Type() string { return e.Action.GetError().GetType() }
