package echo

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	echov1 "github.com/echo-actions/echo/clients/go/gen/echo/v1"
)

// EventFilter selects the events of a stream. Every field is optional.
type EventFilter struct {
	// ActionIDs keeps only events of these actions.
	ActionIDs []string
	// ActionNames keeps only events of actions with these names.
	ActionNames []string
	// States keeps only events in these states, such as SUCCEEDED, FAILED
	// and CANCELLED for a listener that waits for results and needs no
	// transition before them. Empty: every state. The server refuses
	// ACTION_STATE_UNSPECIFIED (and a number outside the enum) with
	// INVALID_ARGUMENT, which ends the stream without a reconnect.
	States []echov1.ActionState
	// AfterSequence replays the journaled events after it, then goes live.
	// Nil: live events only. Ptr[uint64](0): everything still journaled.
	AfterSequence *uint64
	// HeartbeatInterval asks the server for heartbeats this often when idle.
	// 0: the server's default (15 s).
	HeartbeatInterval time.Duration
	// Reconnect overrides the client's reconnect spacing for this stream.
	Reconnect *Backoff
}

// Events streams action events, live or replayed, until ctx ends, the
// server ends the stream for good, or reconnecting fails MaxAttempts times
// in a row; the last two yield one final error. Breaking out of the loop
// ends the call.
func (c *Client) Events(ctx context.Context, filter EventFilter) iter.Seq2[*echov1.ActionEvent, error] {
	return func(yield func(*echov1.ActionEvent, error) bool) {
		for msg, err := range c.messages(ctx, filter) {
			if err != nil {
				yield(nil, err)
				return
			}
			if event := msg.GetEvent(); event != nil && !yield(event, nil) {
				return
			}
		}
	}
}

// reconnects reports whether a stream that failed with err is opened again.
func reconnects(err *Error) bool {
	switch err.Code {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// messages yields every stream message across reconnects. It returns after
// a final end message, or yields one error and returns.
func (c *Client) messages(ctx context.Context, filter EventFilter) iter.Seq2[*echov1.StreamResponse, error] {
	backoff := c.opts.reconnect
	if filter.Reconnect != nil {
		backoff = *filter.Reconnect
	}
	backoff = backoff.resolved()
	return func(yield func(*echov1.StreamResponse, error) bool) {
		var after *uint64
		if filter.AfterSequence != nil {
			after = Ptr(*filter.AfterSequence)
		}
		var tries retries
		for {
			failure, done := c.followOnce(ctx, filter, &after, &tries, yield)
			if done {
				return
			}
			if ctx.Err() != nil || !reconnects(failure) {
				yield(nil, failure)
				return
			}
			tries.failures++
			tries.attempt++
			if tries.failures > backoff.MaxAttempts {
				yield(nil, failure)
				return
			}
			if err := c.opts.sleep(ctx, max(failure.RetryDelay, backoff.Delay(tries.attempt, jitter()))); err != nil {
				yield(nil, toError(err))
				return
			}
		}
	}
}

// retries counts a stream's reconnects for its Backoff.
type retries struct {
	// failures since the last heartbeat or event; past MaxAttempts the
	// stream gives up.
	failures int
	// attempt counts the reconnects since the last event; each waits longer.
	// A server that ends every stream at once still sends a heartbeat
	// first, so heartbeats must not start the delays again.
	attempt int
}

// followOnce opens one stream and yields its messages, moving *after along.
// It returns done when the consumer stopped or the server ended the stream
// for good; otherwise the error that broke the stream.
func (c *Client) followOnce(
	ctx context.Context,
	filter EventFilter,
	after **uint64,
	tries *retries,
	yield func(*echov1.StreamResponse, error) bool,
) (failure *Error, done bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.raw.Stream(ctx, filter.request(*after))
	if err != nil {
		return asError(err), false
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return newError(codes.Unavailable, "the stream closed without an end message"), false
		}
		if err != nil {
			return asError(err), false
		}
		switch kind := msg.GetKind().(type) {
		case *echov1.StreamResponse_Event:
			*tries = retries{}
			*after = Ptr(kind.Event.GetSequence())
		case *echov1.StreamResponse_Heartbeat:
			tries.failures = 0
			// The server's safe resume point: every matching event up to it
			// was delivered, so a quiet or live stream resumes from there.
			if last := kind.Heartbeat.GetLastSequence(); *after == nil || last > **after {
				*after = Ptr(last)
			}
		case *echov1.StreamResponse_End:
			if !kind.End.GetRetryable() {
				yield(msg, nil)
				return nil, true
			}
			if last := kind.End.GetLastSequence(); last > 0 && (*after == nil || last > **after) {
				*after = Ptr(last)
			}
			if !yield(msg, nil) {
				return nil, true
			}
			return newError(codes.Unavailable, "the server ended the stream: %s", kind.End.GetReason()), false
		}
		if !yield(msg, nil) {
			return nil, true
		}
	}
}

// request is the contract's StreamRequest for filter, resuming after after.
func (filter EventFilter) request(after *uint64) *echov1.StreamRequest {
	req := &echov1.StreamRequest{
		ActionIds:     filter.ActionIDs,
		ActionNames:   filter.ActionNames,
		States:        filter.States,
		AfterSequence: after,
	}
	if filter.HeartbeatInterval > 0 {
		req.HeartbeatInterval = durationpb.New(filter.HeartbeatInterval)
	}
	return req
}

func asError(err error) *Error {
	var mapped *Error
	errors.As(toError(err), &mapped)
	return mapped
}
