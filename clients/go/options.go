package echo

import (
	"errors"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	echov1 "github.com/echo-actions/echo/clients/go/gen/echo/v1"
)

// ActionOption sets one option of an action. An option left out stays unset
// on the wire and the server applies its default; an explicit zero, such as
// Priority(0), is sent and means zero.
type ActionOption func(*echov1.Action) error

// Spec is one action to assign with AssignMany.
type Spec struct {
	Name    string
	Args    []any
	Options []ActionOption
}

func (s Spec) action() (*echov1.Action, error) {
	args, err := toValues(s.Args)
	if err != nil {
		return nil, err
	}
	a := &echov1.Action{Name: s.Name, Args: args, Options: &echov1.ActionOptions{}}
	for _, option := range s.Options {
		if err := option(a); err != nil {
			return nil, err
		}
	}
	return a, nil
}

var errSchedule = errors.New("echo: give Delay or NotBefore, not both")

// Delay runs the action no earlier than d after acceptance.
func Delay(d time.Duration) ActionOption {
	return func(a *echov1.Action) error {
		if a.Options.Schedule != nil {
			return errSchedule
		}
		a.Options.Schedule = &echov1.ActionOptions_Delay{Delay: durationpb.New(d)}
		return nil
	}
}

// NotBefore runs the action no earlier than t.
func NotBefore(t time.Time) ActionOption {
	return func(a *echov1.Action) error {
		if a.Options.Schedule != nil {
			return errSchedule
		}
		a.Options.Schedule = &echov1.ActionOptions_NotBefore{NotBefore: timestamppb.New(t)}
		return nil
	}
}

// Priority sets the priority: higher runs first; may be negative.
func Priority(p int32) ActionOption {
	return func(a *echov1.Action) error {
		a.Options.Priority = &p
		return nil
	}
}

// AttemptTimeout limits each attempt.
func AttemptTimeout(d time.Duration) ActionOption {
	return func(a *echov1.Action) error {
		a.Options.AttemptTimeout = durationpb.New(d)
		return nil
	}
}

// Deadline is when the action stops being attempted and a running attempt
// is cancelled.
func Deadline(t time.Time) ActionOption {
	return func(a *echov1.Action) error {
		a.Options.Deadline = timestamppb.New(t)
		return nil
	}
}

// RetryPolicy says how failed attempts are retried. A nil field is unset
// and takes the server's default; Ptr makes a pointer of a literal.
type RetryPolicy struct {
	// InitialInterval is the delay before the first retry. Default 1 s.
	InitialInterval *time.Duration
	// BackoffCoefficient grows each further delay. Default 2.
	BackoffCoefficient *float64
	// MaximumInterval bounds one delay. Default 100 x InitialInterval.
	MaximumInterval *time.Duration
	// MaximumAttempts counts attempts in all, the first included; 0 is
	// unlimited. Default 3.
	MaximumAttempts *int32
	// NonRetryableErrorTypes are handler error types never retried.
	NonRetryableErrorTypes []string
	// Jitter spreads each delay by this fraction, 0 to 1. Default 0.2.
	Jitter *float64
}

// Ptr returns a pointer to v, for RetryPolicy's optional fields.
func Ptr[T any](v T) *T { return &v }

// Retry sets the action's retry policy.
func Retry(p RetryPolicy) ActionOption {
	return func(a *echov1.Action) error {
		policy := &echov1.RetryPolicy{
			BackoffCoefficient:     p.BackoffCoefficient,
			MaximumAttempts:        p.MaximumAttempts,
			NonRetryableErrorTypes: p.NonRetryableErrorTypes,
			Jitter:                 p.Jitter,
		}
		if p.InitialInterval != nil {
			policy.InitialInterval = durationpb.New(*p.InitialInterval)
		}
		if p.MaximumInterval != nil {
			policy.MaximumInterval = durationpb.New(*p.MaximumInterval)
		}
		a.Options.RetryPolicy = policy
		return nil
	}
}

// IdempotencyKey makes a repeat assign with the same key return the first
// action instead of creating another.
func IdempotencyKey(key string) ActionOption {
	return func(a *echov1.Action) error {
		a.Options.IdempotencyKey = key
		return nil
	}
}

// Next assigns next when this action succeeds.
func Next(next Spec) ActionOption {
	return func(a *echov1.Action) error {
		action, err := next.action()
		a.Options.NextAction = action
		return err
	}
}

// Metadata sets one metadata entry; the key "hooks" names hooks to run.
func Metadata(key, value string) ActionOption {
	return func(a *echov1.Action) error {
		if a.Metadata == nil {
			a.Metadata = map[string]string{}
		}
		a.Metadata[key] = value
		return nil
	}
}

// ActionTrace sets the trace the action's own spans continue. Unset, the
// server takes the call's traceparent.
func ActionTrace(tc TraceContext) ActionOption {
	return func(a *echov1.Action) error {
		a.TraceContext = map[string]string{"traceparent": tc.Traceparent}
		if tc.Tracestate != "" {
			a.TraceContext["tracestate"] = tc.Tracestate
		}
		return nil
	}
}
