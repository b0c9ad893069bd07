package echo

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	echov1 "github.com/echo-actions/echo/clients/go/gen/echo/v1"
)

const testTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func setup(t *testing.T, opts ...Option) (*fakeServer, *Client) {
	t.Helper()
	f, err := startFake()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.stop)
	opts = append([]Option{WithReconnect(Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond})}, opts...)
	c, err := Dial(f.Addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return f, c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRunReturnsAnInt64ResultExactly(t *testing.T) {
	_, c := setup(t)
	got, err := c.Run(testContext(t), "Add", []any{int64(1) << 62, int64(1)<<62 - 1})
	if err != nil || got != int64(math.MaxInt64) {
		t.Fatalf("Run = %v, %v; want MaxInt64", got, err)
	}
}

func TestRunReturnsActionFailedErrorWithTheHandlersType(t *testing.T) {
	_, c := setup(t)
	_, err := c.Run(testContext(t), "Missing", nil)
	var failed *ActionFailedError
	if !errors.As(err, &failed) || failed.Type() != "KeyError" || failed.Action.GetState() != echov1.ActionState_ACTION_STATE_FAILED {
		t.Fatalf("err = %v; want an ActionFailedError of type KeyError", err)
	}
}

func TestAssignManyKeepsOrderAndAnExplicitZeroPriority(t *testing.T) {
	_, c := setup(t)
	actions, err := c.AssignMany(testContext(t), []Spec{
		{Name: "Echo", Args: []any{"a"}},
		{Name: "Echo", Args: []any{"b"}, Options: []ActionOption{Priority(0)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if actions[0].GetArgs()[0].GetStringValue() != "a" || actions[1].GetArgs()[0].GetStringValue() != "b" {
		t.Fatalf("order lost: %v", actions)
	}
	if actions[0].GetOptions().Priority != nil || actions[1].GetOptions().Priority == nil {
		t.Fatal("an unset priority must stay unset and an explicit 0 must be sent")
	}
}

func TestActionOptionsReachTheWire(t *testing.T) {
	a, err := Spec{Name: "X", Options: []ActionOption{
		Delay(0), AttemptTimeout(time.Second), IdempotencyKey("k"), Metadata("hooks", "audit"),
		Retry(RetryPolicy{MaximumAttempts: Ptr[int32](0), InitialInterval: Ptr(10 * time.Millisecond)}),
		Next(Spec{Name: "Y", Args: []any{1}}), ActionTrace(TraceContext{Traceparent: testTraceparent}),
	}}.action()
	if err != nil {
		t.Fatal(err)
	}
	o := a.GetOptions()
	if o.GetDelay() == nil || o.GetDelay().AsDuration() != 0 {
		t.Error("a zero delay must be sent as zero, not left unset")
	}
	if o.GetRetryPolicy().MaximumAttempts == nil || o.GetRetryPolicy().GetMaximumAttempts() != 0 {
		t.Error("maximum_attempts = 0 (unlimited) must be sent")
	}
	if o.GetRetryPolicy().BackoffCoefficient != nil {
		t.Error("an unset coefficient must stay unset")
	}
	if o.GetNextAction().GetName() != "Y" || a.GetMetadata()["hooks"] != "audit" || a.GetTraceContext()["traceparent"] != testTraceparent {
		t.Errorf("options lost: %v", a)
	}
	if _, err := (Spec{Name: "X", Options: []ActionOption{Delay(1), NotBefore(time.Now())}}).action(); err == nil {
		t.Error("Delay and NotBefore together must be refused")
	}
}

func TestInvalidArgumentCarriesFieldViolations(t *testing.T) {
	_, c := setup(t)
	_, err := c.Assign(testContext(t), "Add", []any{1, "two"})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %#v; want *Error", err)
	}
	if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrNotFound) || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v; want INVALID_ARGUMENT only", err)
	}
	want := []FieldViolation{{"action.args[1]", "expected an integer"}}
	if len(e.FieldViolations) != 1 || e.FieldViolations[0] != want[0] {
		t.Fatalf("violations = %v; want %v", e.FieldViolations, want)
	}
	if e.Error() != "INVALID_ARGUMENT: invalid action" {
		t.Fatalf("message = %q", e.Error())
	}
}

func TestResourceExhaustedCarriesTheRetryDelay(t *testing.T) {
	f, c := setup(t)
	st, _ := status.New(codes.ResourceExhausted, "queue full").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
	f.set(func() { f.failNext = st.Err() })
	_, err := c.Assign(testContext(t), "Echo", []any{1})
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrResourceExhausted) || e.RetryDelay != 1500*time.Millisecond {
		t.Fatalf("err = %v; want RESOURCE_EXHAUSTED with a 1.5 s retry delay", err)
	}
}

func TestNotFoundIsErrNotFound(t *testing.T) {
	_, c := setup(t)
	if _, err := c.Get(testContext(t), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func TestTheContextsDeadlineIsSentAndHonoured(t *testing.T) {
	f, c := setup(t)
	f.set(func() { f.delay = 2 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	started := time.Now()
	_, err := c.ListSignatures(ctx)
	if !errors.Is(err, ErrDeadlineExceeded) || time.Since(started) > time.Second {
		t.Fatalf("err = %v after %v; want DEADLINE_EXCEEDED at the deadline", err, time.Since(started))
	}
	f.mu.Lock()
	left := f.deadlines[len(f.deadlines)-1]
	f.mu.Unlock()
	if left <= 0 || left > 100*time.Millisecond {
		t.Fatalf("the server saw %v left; want the caller's deadline", left)
	}
}

func TestTheCallTimeoutAppliesWhenTheContextHasNoDeadline(t *testing.T) {
	f, c := setup(t, WithCallTimeout(100*time.Millisecond))
	f.set(func() { f.delay = 2 * time.Second })
	if _, err := c.ListSignatures(context.Background()); !errors.Is(err, ErrDeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestEveryCallCarriesATraceparent(t *testing.T) {
	f, c := setup(t, WithTraceProvider(func(ctx context.Context) (TraceContext, bool) {
		return TraceContext{Traceparent: testTraceparent, Tracestate: "echo=1"}, ctx.Value("traced") != nil
	}))
	ctx := testContext(t)
	_, _ = c.ListSignatures(ctx)
	_, _ = c.ListSignatures(ctx)
	own := TraceContext{Traceparent: "00-11111111111111111111111111111111-2222222222222222-01"}
	_, _ = c.ListSignatures(WithTrace(ctx, own))
	_, _ = c.ListSignatures(context.WithValue(ctx, "traced", true)) //nolint:staticcheck // a test-only key
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, md := range f.headers {
		id, err := TraceID(md.Get("traceparent")[0])
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if ids[0] == ids[1] {
		t.Error("each call without a trace starts a new one")
	}
	if ids[2] != "11111111111111111111111111111111" {
		t.Errorf("WithTrace's context was not sent: %s", ids[2])
	}
	if ids[3] != "0af7651916cd43dd8448eb211c80319c" || f.headers[3].Get("tracestate")[0] != "echo=1" {
		t.Errorf("the provider's context was not sent: %v", f.headers[3])
	}
}

func TestAStreamReconnectsAfterADroppedConnectionAndResumes(t *testing.T) {
	f, c := setup(t)
	ctx := testContext(t)
	held, err := c.Assign(ctx, "Hold", nil)
	if err != nil {
		t.Fatal(err)
	}
	var states []echov1.ActionState
	var sequences []uint64
	for event, err := range c.Events(ctx, EventFilter{ActionIDs: []string{held.GetId()}, AfterSequence: Ptr[uint64](0)}) {
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, event.GetState())
		sequences = append(sequences, event.GetSequence())
		if event.GetState() == echov1.ActionState_ACTION_STATE_RUNNING {
			f.dropConnections()
			other, _ := Dial(f.Addr)
			if _, err := other.Cancel(ctx, held.GetId(), "enough"); err != nil {
				t.Fatal(err)
			}
			_ = other.Close()
		}
		if IsFinal(event.GetState()) {
			break
		}
	}
	want := []echov1.ActionState{echov1.ActionState_ACTION_STATE_ACCEPTED, echov1.ActionState_ACTION_STATE_RUNNING, echov1.ActionState_ACTION_STATE_CANCELLED}
	if len(states) != 3 || states[0] != want[0] || states[1] != want[1] || states[2] != want[2] {
		t.Fatalf("states = %v; want each once, in order: %v", states, want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	last := f.streamRequests[len(f.streamRequests)-1]
	if len(f.streamRequests) < 2 || last.AfterSequence == nil || last.GetAfterSequence() != sequences[1] {
		t.Fatalf("the stream resumed after %v; want after %d", last.AfterSequence, sequences[1])
	}
}

func TestAStreamReconnectsAfterARetryableEndAndStopsAtAFinalOne(t *testing.T) {
	f, c := setup(t)
	ctx := testContext(t)
	f.set(func() { f.endNext = &echov1.StreamEnd{Reason: "server shutting down", Retryable: true} })
	a, err := c.Assign(ctx, "Echo", []any{"x"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Wait(ctx, a.GetId())
	if err != nil || got.GetState() != echov1.ActionState_ACTION_STATE_SUCCEEDED {
		t.Fatalf("Wait = %v, %v", got, err)
	}
	f.set(func() { f.endNext = &echov1.StreamEnd{Reason: "listener too slow"} })
	for event, err := range c.Events(ctx, EventFilter{}) {
		t.Fatalf("no event or error expected after a final end, got %v, %v", event, err)
	}
}

var finalStates = []echov1.ActionState{
	echov1.ActionState_ACTION_STATE_SUCCEEDED, echov1.ActionState_ACTION_STATE_FAILED, echov1.ActionState_ACTION_STATE_CANCELLED,
}

func TestAStreamAsksForItsStatesOnEveryReconnectAndForAllWithoutThem(t *testing.T) {
	f, c := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	held, err := c.Assign(ctx, "Hold", nil)
	if err != nil {
		t.Fatal(err)
	}
	opened := func() (requests []*echov1.StreamRequest) {
		for _, req := range f.streamRequests {
			if slices.Equal(req.GetActionIds(), []string{held.GetId()}) {
				requests = append(requests, req)
			}
		}
		return requests
	}
	var states []echov1.ActionState
	done := make(chan struct{})
	go func() {
		defer close(done)
		filter := EventFilter{ActionIDs: []string{held.GetId()}, States: finalStates, AfterSequence: Ptr[uint64](0)}
		for event, err := range c.Events(ctx, filter) {
			if err != nil {
				return
			}
			if states = append(states, event.GetState()); IsFinal(event.GetState()) {
				return
			}
		}
	}()
	defer func() { cancel(); <-done }() // stops the consumer on a failure below
	if !f.eventually(func() bool { return len(opened()) == 1 }) {
		t.Fatal("the stream was not opened")
	}
	f.dropConnections()
	if !f.eventually(func() bool { return len(opened()) == 2 }) {
		t.Fatal("the stream was not opened again after the dropped connection")
	}
	if _, err := c.Cancel(ctx, held.GetId(), "enough"); err != nil {
		t.Fatal(err)
	}
	<-done
	if !slices.Equal(states, []echov1.ActionState{echov1.ActionState_ACTION_STATE_CANCELLED}) {
		t.Fatalf("states = %v; want CANCELLED alone, ACCEPTED and RUNNING filtered out", states)
	}

	for range c.Events(ctx, EventFilter{ActionIDs: []string{held.GetId()}, AfterSequence: Ptr[uint64](0)}) {
		break
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	requests := opened()
	for _, req := range requests[:2] {
		if !slices.Equal(req.GetStates(), finalStates) {
			t.Errorf("a stream asked for %v; want %v", req.GetStates(), finalStates)
		}
	}
	if last := requests[len(requests)-1]; len(last.GetStates()) != 0 {
		t.Errorf("a filter without states asked for %v; want every state", last.GetStates())
	}
}

func TestAStreamWithARefusedStateEndsWithInvalidArgumentWithoutReconnecting(t *testing.T) {
	f, c := setup(t)
	ctx := testContext(t)
	n := 0
	for event, err := range c.Events(ctx, EventFilter{States: []echov1.ActionState{echov1.ActionState_ACTION_STATE_UNSPECIFIED}}) {
		n++
		var e *Error
		if !errors.As(err, &e) || e.Code != codes.InvalidArgument || len(e.FieldViolations) != 1 || e.FieldViolations[0].Field != "states[0]" {
			t.Fatalf("got %v, %v; want INVALID_ARGUMENT naming states[0]", event, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n != 1 || len(f.streamRequests) != 1 {
		t.Fatalf("yielded %d times after %d requests; want one error after one request", n, len(f.streamRequests))
	}
}

func TestAStreamEndsAtItsContextsDeadline(t *testing.T) {
	_, c := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	for event, err := range c.Events(ctx, EventFilter{ActionIDs: []string{"quiet"}}) {
		if !errors.Is(err, ErrDeadlineExceeded) {
			t.Fatalf("got %v, %v; want DEADLINE_EXCEEDED", event, err)
		}
	}
}

func TestBreakingOutOfEventsEndsTheServersStream(t *testing.T) {
	f, c := setup(t)
	ctx := testContext(t)
	held, err := c.Assign(ctx, "Hold", nil)
	if err != nil {
		t.Fatal(err)
	}
	for event, err := range c.Events(ctx, EventFilter{ActionIDs: []string{held.GetId()}, AfterSequence: Ptr[uint64](0)}) {
		if err != nil || event.GetState() == echov1.ActionState_ACTION_STATE_RUNNING {
			break
		}
	}
	if !f.eventually(func() bool { return f.openStreams == 0 }) {
		t.Fatal("the server's stream handler still runs after the consumer stopped")
	}
}

func TestWaitKeepsItsInnerCallsWithinItsContext(t *testing.T) {
	f, c := setup(t, WithCallTimeout(5*time.Second))
	held, err := c.Assign(testContext(t), "Hold", nil)
	if err != nil {
		t.Fatal(err)
	}
	f.set(func() { f.delay = 5 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	started := time.Now()
	if _, err := c.Wait(ctx, held.GetId()); !errors.Is(err, ErrDeadlineExceeded) || time.Since(started) > 2*time.Second {
		t.Fatalf("Wait = %v after %v; want DEADLINE_EXCEEDED at the context's deadline", err, time.Since(started))
	}
}

func TestWaitAsksForTheActionsFinalStatesOnly(t *testing.T) {
	f, c := setup(t)
	ctx := testContext(t)
	a, err := c.Assign(ctx, "Echo", []any{"w"})
	if err != nil {
		t.Fatal(err)
	}
	if done, err := c.Wait(ctx, a.GetId()); err != nil || done.GetState() != echov1.ActionState_ACTION_STATE_SUCCEEDED {
		t.Fatalf("Wait = %v, %v", done, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var asked [][]echov1.ActionState
	for _, req := range f.streamRequests {
		if slices.Equal(req.GetActionIds(), []string{a.GetId()}) {
			asked = append(asked, req.GetStates())
		}
	}
	if len(asked) != 1 || !slices.Equal(asked[0], finalStates) {
		t.Fatalf("Wait's streams asked for %v; want one asking for %v", asked, finalStates)
	}
}

func TestAServerThatEndsEveryStreamAtOnceIsReconnectedEverMoreSlowlyUntilAnEvent(t *testing.T) {
	// MaxAttempts 2: the heartbeat that opens each call keeps it from giving up.
	f, c := setup(t, WithReconnect(Backoff{Initial: time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: -1, MaxAttempts: 2}))
	f.set(func() { f.endEvery = &echov1.StreamEnd{Reason: "server shutting down", Retryable: true} })
	ctx, stop := context.WithCancel(testContext(t))
	defer stop()
	var delays []time.Duration
	c.opts.sleep = func(ctx context.Context, d time.Duration) error {
		delays = append(delays, d)
		switch len(delays) {
		case 3: // journals an event, which the next call delivers
			if _, err := c.Assign(ctx, "Hold", nil); err != nil {
				t.Error(err)
			}
		case 5:
			stop()
		}
		return ctx.Err()
	}
	var states []echov1.ActionState
	// ACCEPTED alone: Hold's one event, whenever it runs.
	filter := EventFilter{ActionNames: []string{"Hold"}, States: []echov1.ActionState{echov1.ActionState_ACTION_STATE_ACCEPTED}}
	for event, err := range c.Events(ctx, filter) {
		if err != nil {
			if !errors.Is(err, ErrCancelled) {
				t.Errorf("err = %v; want the test's own cancel", err)
			}
			break
		}
		states = append(states, event.GetState())
	}
	ms := time.Millisecond
	if want := []time.Duration{ms, 2 * ms, 4 * ms, ms, 2 * ms}; !slices.Equal(delays, want) {
		t.Errorf("delays = %v; want %v: heartbeats and ends do not start them again, the event does", delays, want)
	}
	if !slices.Equal(states, []echov1.ActionState{echov1.ActionState_ACTION_STATE_ACCEPTED}) {
		t.Errorf("states = %v; want the one ACCEPTED", states)
	}
}

func TestAStreamGivesUpAfterMaxAttemptsFailuresInARow(t *testing.T) {
	c, err := Dial("127.0.0.1:1", WithReconnect(Backoff{Initial: time.Millisecond, MaxAttempts: 2}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	for _, err := range c.Events(testContext(t), EventFilter{}) {
		n++
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v; want UNAVAILABLE", err)
		}
	}
	if n != 1 {
		t.Fatalf("yielded %d times; want one final error", n)
	}
}

func TestASessionTiesEventsToTheRequestThatAssignedThem(t *testing.T) {
	_, c := setup(t)
	ctx := testContext(t)
	s, err := c.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Assign(ctx, "first", "Echo", []any{"one"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Assign(ctx, "", "Add", []any{int64(1), int64(2)})
	if err != nil || a.RequestID != "first" || b.RequestID == "" {
		t.Fatalf("assigned %v %v, %v", a, b, err)
	}
	owners := map[string]string{}
	for ev := range s.Events() {
		if ev.Event.GetState() == echov1.ActionState_ACTION_STATE_SUCCEEDED {
			owners[ev.Event.GetActionId()] = ev.RequestID
		}
		if len(owners) == 2 {
			break
		}
	}
	if owners[a.Action.GetId()] != "first" || owners[b.Action.GetId()] != b.RequestID {
		t.Fatalf("owners = %v", owners)
	}
	if err := s.Close(time.Second); err != nil || s.Err() != nil {
		t.Fatalf("Close = %v, Err = %v", err, s.Err())
	}
}

func TestASessionSubscribesToItsStatesAndARefusedStateFailsOnlyThatSubscribe(t *testing.T) {
	f, c := setup(t)
	ctx := testContext(t)
	s, err := c.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(time.Second)
	_, _, err = s.Subscribe(ctx, EventFilter{States: []echov1.ActionState{echov1.ActionState(99)}})
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.InvalidArgument || len(e.FieldViolations) != 1 || e.FieldViolations[0].Field != "subscribe.states[0]" {
		t.Fatalf("err = %v; want INVALID_ARGUMENT naming subscribe.states[0]", err)
	}
	added, err := c.Assign(ctx, "Add", []any{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	succeeded := []echov1.ActionState{echov1.ActionState_ACTION_STATE_SUCCEEDED}
	rid, _, err := s.Subscribe(ctx, EventFilter{ActionIDs: []string{added.GetId()}, States: succeeded, AfterSequence: Ptr[uint64](0)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-s.Events():
		if ev.RequestID != rid || ev.Event.GetActionId() != added.GetId() || ev.Event.GetState() != succeeded[0] {
			t.Fatalf("event %v under %q; want SUCCEEDED of %s under %q, ACCEPTED and RUNNING filtered out", ev.Event, ev.RequestID, added.GetId(), rid)
		}
	case <-ctx.Done():
		t.Fatal("no event arrived")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.subscribes[len(f.subscribes)-1].GetStates(); !slices.Equal(got, succeeded) {
		t.Fatalf("the subscribe asked for %v; want %v", got, succeeded)
	}
}

func TestASessionFailsOnlyTheBadRequest(t *testing.T) {
	_, c := setup(t)
	ctx := testContext(t)
	s, err := c.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(time.Second)
	_, err = s.Assign(ctx, "", "", nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.InvalidArgument || e.FieldViolations[0].Field != "action.name" {
		t.Fatalf("err = %v", err)
	}
	ok, err := s.Assign(ctx, "", "Hold", nil)
	if err != nil {
		t.Fatal(err)
	}
	cancelled, err := s.Cancel(ctx, ok.Action.GetId(), "enough")
	if err != nil || cancelled.GetId() != ok.Action.GetId() {
		t.Fatalf("Cancel = %v, %v", cancelled, err)
	}
}

func TestASessionOnADeadServerFailsItsRequests(t *testing.T) {
	c, err := Dial("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	s, err := c.Connect(ctx)
	if err == nil {
		_, err = s.Assign(ctx, "", "Echo", []any{1})
		_ = s.Close(time.Second)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v; want UNAVAILABLE", err)
	}
}

func TestBackoffGrowsToItsCapWithinTheJitterBand(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 3, Jitter: -1}
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 300 * time.Millisecond, 3: 900 * time.Millisecond, 4: time.Second} {
		if got := b.Delay(attempt, 0.5); got != want {
			t.Errorf("Delay(%d) = %v; want %v", attempt, got, want)
		}
	}
	// A stream resolves its Backoff before asking for a delay.
	if lo, hi := b.resolved().Delay(1, 0), b.resolved().Delay(1, 0.999999); lo != hi {
		t.Errorf("a negative jitter spreads a resolved Backoff's delay over [%v, %v]; want none", lo, hi)
	}
	j := Backoff{Initial: time.Second, Jitter: 0.2}
	if lo, hi := j.Delay(1, 0), j.Delay(1, 0.999999); lo != 800*time.Millisecond || hi < 1199*time.Millisecond {
		t.Errorf("jitter band = [%v, %v]; want [800ms, 1.2s)", lo, hi)
	}
}
