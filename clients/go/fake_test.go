package echo

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	echov1 "github.com/echo-actions/echo/clients/go/gen/echo/v1"
)

// fakeServer is a small in-memory Echo over real sockets, for the client's
// own tests: it runs "Add" (checking its arguments as the real plan does),
// "Echo" and "Hold" (stays running until cancelled), journals numbered
// events, filters them by action id, name and state (refusing an unknown
// state as the real server does), answers session subscribes, and can be
// told to fail the next call or to cut every connection.
type fakeServer struct {
	echov1.UnimplementedEchoServiceServer
	srv   *grpc.Server
	lis   net.Listener
	Addr  string
	conns sync.Map // net.Conn -> struct{}

	mu             sync.Mutex // guards everything below
	actions        map[string]*echov1.Action
	events         []*echov1.ActionEvent
	changed        chan struct{} // closed and replaced on every new event
	headers        []metadata.MD
	deadlines      []time.Duration // of each call, as the server saw it; 0: none
	streamRequests []*echov1.StreamRequest
	subscribes     []*echov1.StreamRequest // of sessions, in arrival order
	failNext       error
	delay          time.Duration
	endNext        *echov1.StreamEnd
	endEvery       *echov1.StreamEnd // ends each Stream once it caught up
	openStreams    int               // Stream handlers still running
}

type trackingListener struct {
	net.Listener
	f *fakeServer
}

func (l trackingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.f.conns.Store(conn, struct{}{})
	}
	return conn, err
}

func startFake() (*fakeServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fakeServer{actions: map[string]*echov1.Action{}, changed: make(chan struct{}), lis: lis, Addr: lis.Addr().String()}
	f.srv = grpc.NewServer()
	echov1.RegisterEchoServiceServer(f.srv, f)
	go func() { _ = f.srv.Serve(trackingListener{lis, f}) }()
	return f, nil
}

// StartFake starts a stand-in server for the examples when no real one is
// named; stop it with the returned function.
func StartFake() (target string, stop func(), err error) {
	f, err := startFake()
	if err != nil {
		return "", nil, err
	}
	return f.Addr, f.stop, nil
}

func (f *fakeServer) stop() {
	f.dropConnections()
	f.srv.Stop()
}

// dropConnections cuts every open connection, as a dying proxy would.
func (f *fakeServer) dropConnections() {
	f.conns.Range(func(conn, _ any) bool {
		_ = conn.(net.Conn).Close()
		f.conns.Delete(conn)
		return true
	})
}

// eventually polls cond under mu until it holds or a second passes.
func (f *fakeServer) eventually(cond func() bool) bool {
	deadline := time.Now().Add(time.Second)
	for {
		f.mu.Lock()
		ok := cond()
		f.mu.Unlock()
		if ok || time.Now().After(deadline) {
			return ok
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fakeServer) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// record appends an event; the caller holds mu.
func (f *fakeServer) record(a *echov1.Action, state echov1.ActionState, result *echov1.Value) {
	a.State = state
	if result != nil {
		a.Result = result
	}
	f.events = append(f.events, &echov1.ActionEvent{
		Sequence: uint64(len(f.events) + 1), ActionId: a.GetId(), ActionName: a.GetName(),
		State: state, Attempt: a.GetAttempt(), Time: timestamppb.Now(), Result: result,
	})
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeServer) enter(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	var left time.Duration
	if deadline, ok := ctx.Deadline(); ok {
		left = time.Until(deadline)
	}
	f.mu.Lock()
	f.headers = append(f.headers, md)
	f.deadlines = append(f.deadlines, left)
	delay := f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err() // a call its client gave up on takes no injected failure
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.failNext
	f.failNext = nil
	return err
}

// invalid is an INVALID_ARGUMENT status naming one bad field.
func invalid(message, field, description string) error {
	st, _ := status.New(codes.InvalidArgument, message).WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: description}},
	})
	return st.Err()
}

// checkStates refuses ACTION_STATE_UNSPECIFIED or a number outside the enum,
// naming its index under path, as the real server does.
func checkStates(req *echov1.StreamRequest, path string) error {
	for i, state := range req.GetStates() {
		if _, known := echov1.ActionState_name[int32(state)]; !known || state == echov1.ActionState_ACTION_STATE_UNSPECIFIED {
			return invalid("bad stream filter", fmt.Sprintf("%sstates[%d]", path, i), fmt.Sprintf("not a state: %d", state))
		}
	}
	return nil
}

// matches reports whether e passes req's filters.
func matches(req *echov1.StreamRequest, e *echov1.ActionEvent) bool {
	return (len(req.GetActionIds()) == 0 || slices.Contains(req.GetActionIds(), e.GetActionId())) &&
		(len(req.GetActionNames()) == 0 || slices.Contains(req.GetActionNames(), e.GetActionName())) &&
		(len(req.GetStates()) == 0 || slices.Contains(req.GetStates(), e.GetState()))
}

// assign journals an action; claim, when given, learns its id before any
// of its events exist.
func (f *fakeServer) assign(in *echov1.Action, claim func(id string)) (*echov1.Action, error) {
	if in.GetName() == "" {
		return nil, invalid("action.name is required", "action.name", "required")
	}
	if in.GetName() == "Add" {
		for i, arg := range in.GetArgs() {
			if _, ok := arg.GetKind().(*echov1.Value_IntValue); !ok {
				return nil, invalid("invalid action", fmt.Sprintf("action.args[%d]", i), "expected an integer")
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := proto.Clone(in).(*echov1.Action)
	a.Id = fmt.Sprintf("a%d", len(f.actions)+1)
	if claim != nil {
		claim(a.Id)
	}
	f.actions[a.Id] = a
	f.record(a, echov1.ActionState_ACTION_STATE_ACCEPTED, nil)
	answer := proto.Clone(a).(*echov1.Action) // execute changes a under mu
	go f.execute(a)
	return answer, nil
}

func (f *fakeServer) execute(a *echov1.Action) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a.GetState() != echov1.ActionState_ACTION_STATE_ACCEPTED {
		return
	}
	a.Attempt = 1
	f.record(a, echov1.ActionState_ACTION_STATE_RUNNING, nil)
	switch a.GetName() {
	case "Add":
		sum := a.GetArgs()[0].GetIntValue() + a.GetArgs()[1].GetIntValue()
		f.record(a, echov1.ActionState_ACTION_STATE_SUCCEEDED, &echov1.Value{Kind: &echov1.Value_IntValue{IntValue: sum}})
	case "Echo":
		f.record(a, echov1.ActionState_ACTION_STATE_SUCCEEDED, a.GetArgs()[0])
	case "Hold":
	default:
		a.Error = &echov1.ActionError{Type: "KeyError", Message: a.GetName(), Kind: echov1.ErrorKind_ERROR_KIND_HANDLER}
		f.record(a, echov1.ActionState_ACTION_STATE_FAILED, nil)
	}
}

func (f *fakeServer) get(id string) (*echov1.Action, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.actions[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no action %s", id)
	}
	return proto.Clone(a).(*echov1.Action), nil
}

func (f *fakeServer) cancel(id string) (*echov1.Action, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.actions[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no action %s", id)
	}
	f.record(a, echov1.ActionState_ACTION_STATE_CANCELLED, nil)
	return proto.Clone(a).(*echov1.Action), nil
}

func (f *fakeServer) Assign(ctx context.Context, req *echov1.AssignRequest) (*echov1.AssignResponse, error) {
	if err := f.enter(ctx); err != nil {
		return nil, err
	}
	a, err := f.assign(req.GetAction(), nil)
	return &echov1.AssignResponse{Action: a}, err
}

func (f *fakeServer) AssignMany(ctx context.Context, req *echov1.AssignManyRequest) (*echov1.AssignManyResponse, error) {
	if err := f.enter(ctx); err != nil {
		return nil, err
	}
	resp := &echov1.AssignManyResponse{}
	for _, in := range req.GetActions() {
		a, err := f.assign(in, nil)
		if err != nil {
			return nil, err
		}
		resp.Results = append(resp.Results, &echov1.AssignResponse{Action: a})
	}
	return resp, nil
}

func (f *fakeServer) GetAction(ctx context.Context, req *echov1.GetActionRequest) (*echov1.GetActionResponse, error) {
	if err := f.enter(ctx); err != nil {
		return nil, err
	}
	a, err := f.get(req.GetId())
	return &echov1.GetActionResponse{Action: a}, err
}

func (f *fakeServer) Cancel(ctx context.Context, req *echov1.CancelRequest) (*echov1.CancelResponse, error) {
	if err := f.enter(ctx); err != nil {
		return nil, err
	}
	a, err := f.cancel(req.GetId())
	return &echov1.CancelResponse{Action: a}, err
}

func (f *fakeServer) ListSignatures(ctx context.Context, _ *echov1.ListSignaturesRequest) (*echov1.ListSignaturesResponse, error) {
	if err := f.enter(ctx); err != nil {
		return nil, err
	}
	return &echov1.ListSignaturesResponse{Signatures: []*echov1.ActionSignature{{Name: "Add"}, {Name: "Echo"}}}, nil
}

// position is where a stream for req starts in the journal.
func (f *fakeServer) position(req *echov1.StreamRequest) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.AfterSequence != nil {
		return int(req.GetAfterSequence())
	}
	return len(f.events)
}

// follow calls send with each matching journaled event from position next
// on, then with live ones, and heartbeat with the position handled so far
// (a safe resume point) on each idle tick.
func (f *fakeServer) follow(ctx context.Context, req *echov1.StreamRequest, next int, send func(*echov1.ActionEvent) error, heartbeat func(uint64) error) error {
	for {
		f.mu.Lock()
		batch := f.events[min(next, len(f.events)):]
		next = len(f.events)
		changed := f.changed
		f.mu.Unlock()
		for _, e := range batch {
			if matches(req, e) {
				if err := send(e); err != nil {
					return err
				}
			}
		}
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond):
			if err := heartbeat(uint64(next)); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *fakeServer) Stream(req *echov1.StreamRequest, stream grpc.ServerStreamingServer[echov1.StreamResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	var end, every *echov1.StreamEnd
	var backlog []*echov1.ActionEvent
	defer f.set(func() { f.openStreams-- })
	f.set(func() {
		f.openStreams++
		f.headers = append(f.headers, md)
		f.streamRequests = append(f.streamRequests, req)
		end, f.endNext = f.endNext, nil
		every = f.endEvery
		backlog = slices.Clone(f.events)
	})
	if err := checkStates(req, ""); err != nil {
		return err
	}
	if end != nil {
		return stream.Send(&echov1.StreamResponse{Kind: &echov1.StreamResponse_End{End: end}})
	}
	send := func(e *echov1.ActionEvent) error {
		return stream.Send(&echov1.StreamResponse{Kind: &echov1.StreamResponse_Event{Event: e}})
	}
	heartbeat := func(last uint64) error {
		return stream.Send(&echov1.StreamResponse{Kind: &echov1.StreamResponse_Heartbeat{Heartbeat: &echov1.Heartbeat{LastSequence: last}}})
	}
	if every != nil {
		return f.catchUpAndEnd(req, backlog, every, send, heartbeat, stream)
	}
	return f.follow(stream.Context(), req, f.position(req), send, heartbeat)
}

// catchUpAndEnd sends a heartbeat, the journaled events req asks for, and
// end: a server that ends every stream once it caught up.
func (f *fakeServer) catchUpAndEnd(
	req *echov1.StreamRequest,
	journal []*echov1.ActionEvent,
	end *echov1.StreamEnd,
	send func(*echov1.ActionEvent) error,
	heartbeat func(uint64) error,
	stream grpc.ServerStreamingServer[echov1.StreamResponse],
) error {
	head := uint64(len(journal))
	from := head
	if req.AfterSequence != nil {
		from = min(req.GetAfterSequence(), head)
	}
	if err := heartbeat(from); err != nil {
		return err
	}
	for _, e := range journal[from:] {
		if matches(req, e) {
			if err := send(e); err != nil {
				return err
			}
		}
	}
	end = proto.Clone(end).(*echov1.StreamEnd)
	end.LastSequence = head
	return stream.Send(&echov1.StreamResponse{Kind: &echov1.StreamResponse_End{End: end}})
}

func (f *fakeServer) Connect(stream grpc.BidiStreamingServer[echov1.ConnectRequest, echov1.ConnectResponse]) error {
	// The followers send on the stream, so they end (ctx is cancelled first)
	// before the handler returns.
	var followers sync.WaitGroup
	defer followers.Wait()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	noHeartbeat := func(uint64) error { return nil }
	var sendMu sync.Mutex
	send := func(resp *echov1.ConnectResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(resp)
	}
	var owners sync.Map // action id -> request id
	all := &echov1.StreamRequest{}
	start := f.position(all)
	followers.Go(func() {
		_ = f.follow(ctx, all, start, func(e *echov1.ActionEvent) error {
			if owner, ok := owners.Load(e.GetActionId()); ok {
				return send(&echov1.ConnectResponse{RequestId: owner.(string), Kind: &echov1.ConnectResponse_Event{Event: e}})
			}
			return nil
		}, noHeartbeat)
	})
	for {
		req, err := stream.Recv()
		if err != nil {
			_ = send(&echov1.ConnectResponse{Kind: &echov1.ConnectResponse_End{End: &echov1.StreamEnd{Reason: "client closed"}}})
			return nil
		}
		var resp *echov1.ConnectResponse
		var subscribed func() // starts a subscription once its reply is out
		switch kind := req.GetKind().(type) {
		case *echov1.ConnectRequest_Assign:
			var a *echov1.Action
			claim := func(id string) { owners.Store(id, req.GetRequestId()) }
			if a, err = f.assign(kind.Assign.GetAction(), claim); err == nil {
				resp = &echov1.ConnectResponse{Kind: &echov1.ConnectResponse_Assigned{Assigned: &echov1.AssignResponse{Action: a}}}
			}
		case *echov1.ConnectRequest_Cancel:
			var a *echov1.Action
			if a, err = f.cancel(kind.Cancel.GetId()); err == nil {
				resp = &echov1.ConnectResponse{Kind: &echov1.ConnectResponse_Cancelled{Cancelled: &echov1.CancelResponse{Action: a}}}
			}
		case *echov1.ConnectRequest_Subscribe:
			filter, rid := kind.Subscribe, req.GetRequestId()
			f.set(func() { f.subscribes = append(f.subscribes, filter) })
			if err = checkStates(filter, "subscribe."); err == nil {
				last := f.position(&echov1.StreamRequest{})
				start := last
				if filter.AfterSequence != nil {
					start = int(filter.GetAfterSequence())
				}
				resp = &echov1.ConnectResponse{Kind: &echov1.ConnectResponse_Subscribed{Subscribed: &echov1.Subscribed{LastSequence: uint64(last)}}}
				subscribed = func() {
					followers.Go(func() {
						_ = f.follow(ctx, filter, start, func(e *echov1.ActionEvent) error {
							return send(&echov1.ConnectResponse{RequestId: rid, Kind: &echov1.ConnectResponse_Event{Event: e}})
						}, noHeartbeat)
					})
				}
			}
		default:
			continue
		}
		if err != nil {
			resp = &echov1.ConnectResponse{Kind: &echov1.ConnectResponse_Error{Error: requestError(err)}}
		}
		resp.RequestId = req.GetRequestId()
		if err := send(resp); err != nil {
			return err
		}
		if subscribed != nil {
			subscribed()
		}
	}
}

// requestError is err as a session reports it, field violations included.
func requestError(err error) *echov1.RequestError {
	st := status.Convert(err)
	out := &echov1.RequestError{Code: int32(st.Code()), Message: st.Message()}
	for _, detail := range st.Details() {
		if bad, ok := detail.(*errdetails.BadRequest); ok {
			for _, v := range bad.GetFieldViolations() {
				out.FieldViolations = append(out.FieldViolations, &echov1.FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	return out
}
