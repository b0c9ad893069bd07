// Command interop plays the interop scenarios (tests/interop/scenarios.json)
// with the Go client.
//
//	go run ./cmd/interop -target HOST:PORT [-only NAME]...
//
// It prints one JSON line per scenario, {"scenario", "ok", "detail"}, then
// "N passed, N failed", and exits 1 when any failed. The Python and Node
// runners play the same file the same way.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	echo "github.com/echo-actions/echo/clients/go"
	echov1 "github.com/echo-actions/echo/clients/go/gen/echo/v1"
)

const waitFor = 20 * time.Second

// typed is a scenario value such as {"int": "42"}.
type typed map[string]json.RawMessage

type retrySpec struct {
	InitialIntervalMS  *float64 `json:"initial_interval_ms"`
	BackoffCoefficient *float64 `json:"backoff_coefficient"`
	MaximumIntervalMS  *float64 `json:"maximum_interval_ms"`
	MaximumAttempts    *int32   `json:"maximum_attempts"`
	Jitter             *float64 `json:"jitter"`
}

type optionsSpec struct {
	DelayMS        *float64   `json:"delay_ms"`
	Priority       *int32     `json:"priority"`
	IdempotencyKey string     `json:"idempotency_key"`
	Retry          *retrySpec `json:"retry"`
}

type expectSpec struct {
	State             string         `json:"state"`
	Result            typed          `json:"result"`
	Attempt           *int32         `json:"attempt"`
	ErrorType         *string        `json:"error_type"`
	ErrorMessage      *string        `json:"error_message"`
	MinElapsedMS      *float64       `json:"min_elapsed_ms"`
	CountStates       map[string]int `json:"count_states"`
	RetryingErrorType *string        `json:"retrying_error_type"`
}

type caseSpec struct {
	Op      string       `json:"op"`
	ID      string       `json:"id"`
	Action  string       `json:"action"`
	Args    []typed      `json:"args"`
	Options *optionsSpec `json:"options"`
	Expect  expectSpec   `json:"expect"`
	Code    string       `json:"code"`
	Field   string       `json:"field"`
}

type assignSpec struct {
	RequestID string  `json:"request_id"`
	Action    string  `json:"action"`
	Args      []typed `json:"args"`
	Result    typed   `json:"result"`
	Code      string  `json:"code"`
	Field     string  `json:"field"`
}

type scenario struct {
	Name        string          `json:"name"`
	Kind        string          `json:"kind"`
	Cases       json.RawMessage `json:"cases"`
	Count       int             `json:"count"`
	Action      string          `json:"action"`
	Args        []typed         `json:"args"`
	Result      typed           `json:"result"`
	WithinMS    float64         `json:"within_ms"`
	WaitMS      float64         `json:"wait_ms"`
	Immediate   int             `json:"immediate"`
	Delayed     int             `json:"delayed"`
	DelayMS     float64         `json:"delay_ms"`
	OutageMS    float64         `json:"outage_ms"`
	Assigns     []assignSpec    `json:"assigns"`
	Bad         assignSpec      `json:"bad"`
	Traceparent string          `json:"traceparent"`
	States      []string        `json:"states"`
	Events      []expectSpec    `json:"events"`
}

type mismatch struct{ message string }

func (m mismatch) Error() string { return m.message }

func check(condition bool, format string, args ...any) {
	if !condition {
		panic(mismatch{fmt.Sprintf(format, args...)})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// -- values ---------------------------------------------------------------------

func arg(spec typed, index int) any {
	for kind, raw := range spec {
		var text string
		switch kind {
		case "int":
			must(0, json.Unmarshal(raw, &text))
			n, ok := new(big.Int).SetString(text, 10)
			check(ok && n.IsInt64(), "bad int %s", text)
			return n.Int64()
		case "int_index":
			var k int64
			must(0, json.Unmarshal(raw, &k))
			return int64(index) + k
		case "double":
			var f float64
			must(0, json.Unmarshal(raw, &f))
			return f
		case "string":
			must(0, json.Unmarshal(raw, &text))
			return text
		case "bool":
			var b bool
			must(0, json.Unmarshal(raw, &b))
			return b
		case "bytes":
			must(0, json.Unmarshal(raw, &text))
			return must(base64.StdEncoding.DecodeString(text))
		case "json":
			must(0, json.Unmarshal(raw, &text))
			return echo.JSON(text)
		}
		panic(fmt.Errorf("unknown value kind %q", kind))
	}
	panic(errors.New("empty value"))
}

func args(specs []typed, index int) []any {
	out := make([]any, len(specs))
	for i, spec := range specs {
		out[i] = arg(spec, index)
	}
	return out
}

func options(spec *optionsSpec) []echo.ActionOption {
	if spec == nil {
		return nil
	}
	var out []echo.ActionOption
	if spec.DelayMS != nil {
		out = append(out, echo.Delay(ms(*spec.DelayMS)))
	}
	if spec.Priority != nil {
		out = append(out, echo.Priority(*spec.Priority))
	}
	if spec.IdempotencyKey != "" {
		out = append(out, echo.IdempotencyKey(spec.IdempotencyKey))
	}
	if r := spec.Retry; r != nil {
		policy := echo.RetryPolicy{BackoffCoefficient: r.BackoffCoefficient, MaximumAttempts: r.MaximumAttempts, Jitter: r.Jitter}
		if r.InitialIntervalMS != nil {
			policy.InitialInterval = echo.Ptr(ms(*r.InitialIntervalMS))
		}
		if r.MaximumIntervalMS != nil {
			policy.MaximumInterval = echo.Ptr(ms(*r.MaximumIntervalMS))
		}
		out = append(out, echo.Retry(policy))
	}
	return out
}

// same is equality of value and type: an int64 is never a float64 here.
func same(got, want any) bool {
	if g, ok := got.([]byte); ok {
		w, ok := want.([]byte)
		return ok && bytes.Equal(g, w)
	}
	return reflect.TypeOf(got) == reflect.TypeOf(want) && reflect.DeepEqual(got, want)
}

func state(name string) echov1.ActionState {
	value, ok := echov1.ActionState_value["ACTION_STATE_"+name]
	check(ok, "unknown state %s", name)
	return echov1.ActionState(value)
}

// -- a TCP proxy that can cut connections --------------------------------------------

// proxy forwards 127.0.0.1:<port> to the server. cut closes every open
// connection; during an outage new connections are closed at once.
type proxy struct {
	listener    net.Listener
	target      string
	mu          sync.Mutex // guards conns, refuseUntil, accepted
	conns       map[net.Conn]struct{}
	refuseUntil time.Time
	accepted    int
}

func startProxy(target string) *proxy {
	p := &proxy{listener: must(net.Listen("tcp", "127.0.0.1:0")), target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	return p
}

func (p *proxy) serve() {
	for {
		client, err := p.listener.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := time.Now().Before(p.refuseUntil)
		if !refuse {
			p.accepted++
		}
		p.mu.Unlock()
		if refuse {
			_ = client.Close()
			continue
		}
		upstream, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns[client], p.conns[upstream] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pump := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		go pump(upstream, client)
		go pump(client, upstream)
	}
}

func (p *proxy) cut(outage time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuseUntil = time.Now().Add(outage)
	for conn := range p.conns {
		_ = conn.Close()
	}
	clear(p.conns)
}

func (p *proxy) close() {
	_ = p.listener.Close()
	p.cut(0)
}

func (p *proxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// -- the scenario kinds ----------------------------------------------------------------

type runner struct {
	client *echo.Client
	target string
}

func timed() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), waitFor)
}

// eventsOf returns every journaled event of ids until count of them are final.
func eventsOf(client *echo.Client, ids []string, count int) []*echov1.ActionEvent {
	ctx, cancel := timed()
	defer cancel()
	var out []*echov1.ActionEvent
	finished := map[string]bool{}
	for event, err := range client.Events(ctx, echo.EventFilter{ActionIDs: ids, AfterSequence: echo.Ptr[uint64](0)}) {
		if err != nil {
			panic(err)
		}
		out = append(out, event)
		if echo.IsFinal(event.GetState()) {
			finished[event.GetActionId()] = true
		}
		if len(finished) == count {
			break
		}
	}
	return out
}

func (r *runner) checkAction(a *echov1.Action, expect expectSpec, label string) {
	check(a.GetState() == state(expect.State), "%s: state %s, want %s", label, a.GetState(), expect.State)
	if expect.Result != nil {
		got, want := echo.FromValue(a.GetResult()), arg(expect.Result, 0)
		check(same(got, want), "%s: result %#v, want %#v", label, got, want)
	}
	if expect.Attempt != nil {
		check(a.GetAttempt() == *expect.Attempt, "%s: attempt %d", label, a.GetAttempt())
	}
	if expect.ErrorType != nil {
		check(a.GetError().GetType() == *expect.ErrorType, "%s: error %v", label, a.GetError())
	}
	if expect.ErrorMessage != nil {
		check(a.GetError().GetMessage() == *expect.ErrorMessage, "%s: error %v", label, a.GetError())
	}
}

func (r *runner) run(s scenario) string {
	var cases []caseSpec
	must(0, json.Unmarshal(s.Cases, &cases))
	for i, c := range cases {
		label := fmt.Sprintf("case %d (%s)", i, c.Action)
		ctx, cancel := timed()
		started := time.Now()
		assigned := must(r.client.Assign(ctx, c.Action, args(c.Args, 0), options(c.Options)...))
		action := must(r.client.Wait(ctx, assigned.GetId()))
		elapsed := time.Since(started)
		cancel()
		r.checkAction(action, c.Expect, label)
		if c.Expect.MinElapsedMS != nil {
			check(elapsed >= ms(*c.Expect.MinElapsedMS), "%s: done after %v", label, elapsed)
		}
		if c.Expect.CountStates != nil || c.Expect.RetryingErrorType != nil {
			events := eventsOf(r.client, []string{action.GetId()}, 1)
			for name, count := range c.Expect.CountStates {
				seen := 0
				for _, e := range events {
					if e.GetState() == state(name) {
						seen++
					}
				}
				check(seen == count, "%s: %d %s events", label, seen, name)
			}
			if c.Expect.RetryingErrorType != nil {
				for _, e := range events {
					if e.GetState() == echov1.ActionState_ACTION_STATE_RETRYING {
						check(e.GetError().GetType() == *c.Expect.RetryingErrorType, "%s: retry error %v", label, e.GetError())
					}
				}
			}
		}
	}
	return fmt.Sprintf("%d cases", len(cases))
}

// decodeExact decodes JSON keeping every number's digits (json.Number).
func decodeExact(text string) any {
	var v any
	must(0, echo.JSON(text).Decode(&v))
	return v
}

func (r *runner) json(s scenario) string {
	var texts []string
	must(0, json.Unmarshal(s.Cases, &texts))
	for _, text := range texts {
		ctx, cancel := timed()
		assigned := must(r.client.Assign(ctx, "EchoJson", []any{echo.JSON(text)}))
		action := must(r.client.Wait(ctx, assigned.GetId()))
		cancel()
		check(action.GetState() == echov1.ActionState_ACTION_STATE_SUCCEEDED, "%s: %s", text, action.GetState())
		result, ok := echo.FromValue(action.GetResult()).(echo.JSON)
		check(ok, "%s: came back as %T", text, echo.FromValue(action.GetResult()))
		check(reflect.DeepEqual(decodeExact(string(result)), decodeExact(text)), "%s: came back %s", text, result)
	}
	return fmt.Sprintf("%d documents", len(texts))
}

func (r *runner) bulk(s scenario) string {
	specs := make([]echo.Spec, s.Count)
	for i := range specs {
		specs[i] = echo.Spec{Name: s.Action, Args: args(s.Args, i)}
	}
	ctx, cancel := timed()
	defer cancel()
	actions := must(r.client.AssignMany(ctx, specs))
	check(len(actions) == s.Count, "%d results for %d", len(actions), s.Count)
	ids := make([]string, len(actions))
	for i, a := range actions {
		ids[i] = a.GetId()
	}
	unique := slices.Clone(ids)
	slices.Sort(unique)
	check(len(slices.Compact(unique)) == s.Count, "ids are not unique")
	finals := map[string]*echov1.ActionEvent{}
	for _, e := range eventsOf(r.client, ids, s.Count) {
		if echo.IsFinal(e.GetState()) {
			finals[e.GetActionId()] = e
		}
	}
	for i, id := range ids {
		e := finals[id]
		got, want := echo.FromValue(e.GetResult()), arg(s.Result, i)
		check(e.GetState() == echov1.ActionState_ACTION_STATE_SUCCEEDED && same(got, want), "action %d: %s %#v, want %#v", i, e.GetState(), got, want)
	}
	return fmt.Sprintf("%d actions", s.Count)
}

func (r *runner) reject(s scenario) string {
	var cases []caseSpec
	must(0, json.Unmarshal(s.Cases, &cases))
	for i, c := range cases {
		label := fmt.Sprintf("case %d (%s %s%s)", i, c.Op, c.Action, c.ID)
		ctx, cancel := timed()
		var err error
		switch c.Op {
		case "assign":
			_, err = r.client.Assign(ctx, c.Action, args(c.Args, 0), options(c.Options)...)
		case "get":
			_, err = r.client.Get(ctx, c.ID)
		default:
			_, err = r.client.Cancel(ctx, c.ID, "")
		}
		cancel()
		var e *echo.Error
		check(errors.As(err, &e), "%s: %v", label, err)
		check(echo.CodeName(e.Code) == c.Code, "%s: %s, want %s", label, echo.CodeName(e.Code), c.Code)
		if c.Field != "" {
			check(slices.ContainsFunc(e.FieldViolations, func(v echo.FieldViolation) bool { return v.Field == c.Field }),
				"%s: fields %v", label, e.FieldViolations)
		}
	}
	return fmt.Sprintf("%d cases", len(cases))
}

func (r *runner) cancel(s scenario) string {
	ctx, cancel := timed()
	defer cancel()
	id := must(r.client.Assign(ctx, s.Action, args(s.Args, 0))).GetId()
	started := time.Now()
	for event, err := range r.client.Events(ctx, echo.EventFilter{ActionIDs: []string{id}, AfterSequence: echo.Ptr[uint64](0)}) {
		if err != nil {
			panic(err)
		}
		if event.GetState() == echov1.ActionState_ACTION_STATE_RUNNING {
			break
		}
	}
	must(r.client.Cancel(ctx, id, "interop"))
	action := must(r.client.Wait(ctx, id))
	elapsed := time.Since(started)
	check(action.GetState() == echov1.ActionState_ACTION_STATE_CANCELLED, "state %s", action.GetState())
	check(elapsed < ms(s.WithinMS), "cancelled after %v", elapsed)
	return fmt.Sprintf("cancelled after %v", elapsed.Round(time.Millisecond))
}

func (r *runner) deadline(s scenario) string {
	ctx, cancel := timed()
	defer cancel()
	id := must(r.client.Assign(ctx, s.Action, args(s.Args, 0))).GetId()
	defer func() { _, _ = r.client.Cancel(ctx, id, "interop cleanup") }()
	started := time.Now()
	short, stop := context.WithTimeout(ctx, ms(s.WaitMS))
	_, err := r.client.Wait(short, id)
	stop()
	elapsed := time.Since(started)
	check(errors.Is(err, echo.ErrDeadlineExceeded), "wait ended with %v", err)
	check(elapsed < ms(s.WithinMS), "gave up after %v", elapsed)
	return fmt.Sprintf("gave up after %v", elapsed.Round(time.Millisecond))
}

func (r *runner) resume(s scenario) string {
	ctx, cancel := timed()
	defer cancel()
	var ids []string
	for i := range s.Immediate {
		ids = append(ids, must(r.client.Assign(ctx, s.Action, []any{fmt.Sprintf("now %d", i)})).GetId())
	}
	for i := range s.Delayed {
		ids = append(ids, must(r.client.Assign(ctx, s.Action, []any{fmt.Sprintf("later %d", i)}, echo.Delay(ms(s.DelayMS)))).GetId())
	}
	p := startProxy(r.target)
	viaProxy := must(echo.Dial(p.listener.Addr().String()))
	var seen []uint64
	func() {
		defer p.close()
		defer viaProxy.Close()
		finished := map[string]bool{}
		wasCut := false
		for event, err := range viaProxy.Events(ctx, echo.EventFilter{ActionIDs: ids, AfterSequence: echo.Ptr[uint64](0)}) {
			if err != nil {
				panic(err)
			}
			seen = append(seen, event.GetSequence())
			if echo.IsFinal(event.GetState()) {
				finished[event.GetActionId()] = true
			}
			if !wasCut && allOf(ids[:s.Immediate], finished) {
				p.cut(ms(s.OutageMS))
				wasCut = true
			}
			if len(finished) == len(ids) {
				break
			}
		}
	}()
	var truth []uint64
	for _, e := range eventsOf(r.client, ids, len(ids)) {
		truth = append(truth, e.GetSequence())
	}
	check(slices.IsSorted(seen) && len(slices.Compact(slices.Clone(seen))) == len(seen), "sequences out of order or repeated: %v", seen)
	check(slices.Equal(seen, truth), "saw %v, journal has %v", seen, truth)
	check(p.connections() >= 2, "%d connections: never reconnected", p.connections())
	return fmt.Sprintf("%d events over %d connections", len(seen), p.connections())
}

func allOf(ids []string, set map[string]bool) bool {
	for _, id := range ids {
		if !set[id] {
			return false
		}
	}
	return true
}

func (r *runner) stateFilter(s scenario) string {
	ctx, cancel := timed()
	defer cancel()
	id := must(r.client.Assign(ctx, s.Action, args(s.Args, 0))).GetId()
	states := make([]echov1.ActionState, len(s.States))
	for i, name := range s.States {
		states[i] = state(name)
	}
	var seen []*echov1.ActionEvent
	filter := echo.EventFilter{ActionIDs: []string{id}, States: states, AfterSequence: echo.Ptr[uint64](0)}
	for event, err := range r.client.Events(ctx, filter) {
		if err != nil {
			panic(err)
		}
		if seen = append(seen, event); len(seen) == len(s.Events) {
			break
		}
	}
	// Every event of the action, now that it is final: those in the states
	// asked for are what the stream had to deliver, no more.
	journal := eventsOf(r.client, []string{id}, 1)
	var got, matching []uint64
	for _, e := range seen {
		got = append(got, e.GetSequence())
	}
	for _, e := range journal {
		if slices.Contains(states, e.GetState()) {
			matching = append(matching, e.GetSequence())
		}
	}
	check(slices.Equal(got, matching), "saw %v, the journal's matching events are %v", got, matching)
	check(len(journal) > len(seen), "the journal has only %d events", len(journal))
	for i, expect := range s.Events {
		event := seen[i]
		check(event.GetState() == state(expect.State), "event %d: %s, want %s", i, event.GetState(), expect.State)
		if expect.Result != nil {
			result, want := echo.FromValue(event.GetResult()), arg(expect.Result, 0)
			check(same(result, want), "event %d: %#v, want %#v", i, result, want)
		}
	}
	return fmt.Sprintf("%d of the action's %d events", len(seen), len(journal))
}

func (r *runner) session(s scenario) string {
	ctx, cancel := timed()
	defer cancel()
	session := must(r.client.Connect(ctx))
	defer session.Close(5 * time.Second)
	owners := map[string]string{}
	for _, a := range s.Assigns {
		assigned := must(session.Assign(ctx, a.RequestID, a.Action, args(a.Args, 0)))
		check(assigned.RequestID == a.RequestID, "answered under %s", assigned.RequestID)
		owners[assigned.Action.GetId()] = a.RequestID
	}
	_, err := session.Assign(ctx, s.Bad.RequestID, s.Bad.Action, args(s.Bad.Args, 0))
	var e *echo.Error
	check(errors.As(err, &e) && echo.CodeName(e.Code) == s.Bad.Code, "bad request: %v", err)
	check(slices.ContainsFunc(e.FieldViolations, func(v echo.FieldViolation) bool { return v.Field == s.Bad.Field }), "bad request: fields %v", e.FieldViolations)
	results := map[string]any{}
	for ev := range session.Events() {
		check(owners[ev.Event.GetActionId()] == ev.RequestID, "event of %s under %s", ev.Event.GetActionId(), ev.RequestID)
		if echo.IsFinal(ev.Event.GetState()) {
			results[ev.RequestID] = echo.FromValue(ev.Event.GetResult())
		}
		if len(results) == len(owners) {
			break
		}
	}
	check(ctx.Err() == nil, "the session took too long: %v", session.Err())
	for _, a := range s.Assigns {
		got, want := results[a.RequestID], arg(a.Result, 0)
		check(same(got, want), "%s: %#v, want %#v", a.RequestID, got, want)
	}
	return fmt.Sprintf("%d actions, one refused", len(owners))
}

func (r *runner) trace(s scenario) string {
	ctx, cancel := timed()
	defer cancel()
	ctx = echo.WithTrace(ctx, echo.TraceContext{Traceparent: s.Traceparent})
	result := must(r.client.Run(ctx, "TraceId", nil))
	traceID := must(echo.TraceID(s.Traceparent))
	check(result == traceID, "ran in trace %v", result)
	return "ran in trace " + traceID
}

func play(r *runner, s scenario) (detail string, err error) {
	defer func() {
		if p := recover(); p != nil {
			var ok bool
			if err, ok = p.(error); !ok {
				err = fmt.Errorf("%v", p)
			}
		}
	}()
	kinds := map[string]func(scenario) string{
		"run": r.run, "json": r.json, "bulk": r.bulk, "reject": r.reject, "cancel": r.cancel,
		"deadline": r.deadline, "resume": r.resume, "state_filter": r.stateFilter, "session": r.session,
		"trace": r.trace,
	}
	kind, ok := kinds[s.Kind]
	if !ok {
		return "", fmt.Errorf("unknown kind %q", s.Kind)
	}
	return kind(s), nil
}

type only []string

func (o *only) String() string     { return strings.Join(*o, ",") }
func (o *only) Set(v string) error { *o = append(*o, v); return nil }

func main() {
	target := flag.String("target", "", "HOST:PORT of the server")
	path := flag.String("scenarios", "../../tests/interop/scenarios.json", "the scenario file")
	var names only
	flag.Var(&names, "only", "a scenario name (repeatable)")
	flag.Parse()
	if *target == "" {
		fmt.Fprintln(os.Stderr, "-target HOST:PORT is required")
		os.Exit(2)
	}
	var file struct{ Scenarios []scenario }
	if err := json.Unmarshal(must(os.ReadFile(*path)), &file); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	client := must(echo.Dial(*target, echo.WithCallTimeout(10*time.Second)))
	defer client.Close()
	r := &runner{client: client, target: *target}
	passed, failed := 0, 0
	out := json.NewEncoder(os.Stdout)
	for _, s := range file.Scenarios {
		if len(names) > 0 && !slices.Contains(names, s.Name) {
			continue
		}
		detail, err := play(r, s)
		ok := err == nil
		if ok {
			passed++
		} else {
			failed++
			detail = err.Error()
		}
		_ = out.Encode(map[string]any{"scenario": s.Name, "ok": ok, "detail": detail})
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		client.Close()
		os.Exit(1)
	}
}
