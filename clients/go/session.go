package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	echov1 "github.com/echo-actions/echo/clients/go/gen/echo/v1"
)

// Session is a bidirectional Connect session: requests go out as they are
// made and each answer comes back tied to its request id; events of the
// session's actions and subscriptions arrive on Events.
//
// Concurrency: one receiver goroutine owns the response stream; it settles
// the channel waiting under a reply's request id, or queues an event. One
// forwarder goroutine hands queued events to Events (acknowledging each), so
// a slow reader never holds up replies. sendMu serialises Send, which gRPC
// allows from one goroutine at a time; mu guards the rest.
//
// A session is not resumed after a broken connection: what was in flight is
// unknown, so waiting requests fail with the session's error.
type Session struct {
	stream  grpc.BidiStreamingClient[echov1.ConnectRequest, echov1.ConnectResponse]
	ctx     context.Context
	cancel  context.CancelFunc
	autoAck bool
	events  chan SessionEvent
	done    chan struct{} // closed when the receiver is over; err is final then

	sendMu sync.Mutex

	mu      sync.Mutex
	pending map[string]chan *echov1.ConnectResponse
	queue   []SessionEvent
	wake    chan struct{} // capacity 1: the queue grew or the receiver ended
	err     error
	end     *echov1.StreamEnd
	counter int
}

// SessionEvent is an event and the request (assign or subscribe) it belongs to.
type SessionEvent struct {
	RequestID string
	Event     *echov1.ActionEvent
}

// SessionAssigned is the answer to a session's assign.
type SessionAssigned struct {
	RequestID string
	Action    *echov1.Action
	// Duplicate is true when the idempotency key named an earlier action.
	Duplicate bool
}

// SessionOption configures a session.
type SessionOption func(*Session)

// ManualAck turns off acknowledging each event as Events hands it over; call
// Ack yourself. The server holds back events once too many are unacknowledged.
func ManualAck() SessionOption {
	return func(s *Session) { s.autoAck = false }
}

// Connect opens a session that lives as long as ctx, or until Close.
func (c *Client) Connect(ctx context.Context, opts ...SessionOption) (*Session, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.raw.Connect(ctx)
	if err != nil {
		cancel()
		return nil, toError(err)
	}
	s := &Session{
		stream:  stream,
		ctx:     ctx,
		cancel:  cancel,
		autoAck: true,
		events:  make(chan SessionEvent),
		done:    make(chan struct{}),
		pending: map[string]chan *echov1.ConnectResponse{},
		wake:    make(chan struct{}, 1),
	}
	for _, opt := range opts {
		opt(s)
	}
	go s.receive()
	go s.forward()
	return s, nil
}

func (s *Session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Session) receive() {
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			s.finish(err)
			return
		}
		s.mu.Lock()
		switch kind := resp.GetKind().(type) {
		case *echov1.ConnectResponse_Event:
			s.queue = append(s.queue, SessionEvent{RequestID: resp.GetRequestId(), Event: kind.Event})
			s.signal()
		case *echov1.ConnectResponse_End:
			s.end = kind.End
		case *echov1.ConnectResponse_Heartbeat:
		default:
			if waiter, ok := s.pending[resp.GetRequestId()]; ok {
				delete(s.pending, resp.GetRequestId())
				waiter <- resp // buffered: never blocks
			}
		}
		s.mu.Unlock()
	}
}

func (s *Session) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.end != nil:
		s.err = newError(codes.Unavailable, "the server ended the session: %s", s.end.GetReason())
	case errors.Is(err, io.EOF):
		s.err = newError(codes.Unavailable, "the session closed without an end message")
	default:
		s.err = toError(err)
	}
	for id, waiter := range s.pending {
		delete(s.pending, id)
		close(waiter)
	}
	close(s.done)
	s.signal()
}

// forward hands queued events to Events until the queue is drained after
// the receiver ended, or the session is closed.
func (s *Session) forward() {
	defer close(s.events)
	for {
		s.mu.Lock()
		var next *SessionEvent
		if len(s.queue) > 0 {
			next = &s.queue[0]
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
		if next == nil {
			select {
			case <-s.done:
				s.mu.Lock()
				empty := len(s.queue) == 0
				s.mu.Unlock()
				if empty {
					return
				}
			case <-s.wake:
			case <-s.ctx.Done():
				return
			}
			continue
		}
		select {
		case s.events <- *next:
			if s.autoAck {
				_ = s.Ack(next.Event.GetSequence()) // fails only once the session is over
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// Events delivers the session's events in arrival order; it is closed when
// the session ends, and Err then says why.
func (s *Session) Events() <-chan SessionEvent { return s.events }

// Err is why the session ended: nil while it runs, and after Close.
func (s *Session) Err() error {
	select {
	case <-s.done:
	default:
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var mapped *Error
	if s.ctx.Err() != nil || s.end != nil && !s.end.GetRetryable() || errors.As(s.err, &mapped) && mapped.Code == codes.Canceled {
		return nil
	}
	return s.err
}

func (s *Session) send(req *echov1.ConnectRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.stream.Send(req); err != nil {
		// Send reports io.EOF when the stream is over; the real reason comes
		// from the receiving side.
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.err
	}
	return nil
}

// request sends req under its id and waits for the reply.
func (s *Session) request(ctx context.Context, req *echov1.ConnectRequest) (*echov1.ConnectResponse, error) {
	s.mu.Lock()
	if req.RequestId == "" {
		s.counter++
		req.RequestId = fmt.Sprintf("r%d", s.counter)
	}
	if _, taken := s.pending[req.RequestId]; taken {
		s.mu.Unlock()
		return nil, newError(codes.InvalidArgument, "request id %s is already waiting", req.RequestId)
	}
	select {
	case <-s.done:
		err := s.err
		s.mu.Unlock()
		return nil, err
	default:
	}
	waiter := make(chan *echov1.ConnectResponse, 1)
	s.pending[req.RequestId] = waiter
	s.mu.Unlock()

	if err := s.send(req); err != nil {
		return nil, err
	}
	select {
	case resp, ok := <-waiter:
		if !ok {
			s.mu.Lock()
			defer s.mu.Unlock()
			return nil, s.err
		}
		if failure := resp.GetError(); failure != nil {
			return nil, fromRequestError(failure)
		}
		return resp, nil
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.pending, req.RequestId)
		s.mu.Unlock()
		return nil, toError(ctx.Err())
	}
}

// Assign assigns an action in the session; its events arrive on Events
// under the returned request id. An empty requestID gets a generated one.
func (s *Session) Assign(ctx context.Context, requestID, name string, args []any, opts ...ActionOption) (SessionAssigned, error) {
	action, err := Spec{Name: name, Args: args, Options: opts}.action()
	if err != nil {
		return SessionAssigned{}, err
	}
	resp, err := s.request(ctx, &echov1.ConnectRequest{
		RequestId: requestID,
		Kind:      &echov1.ConnectRequest_Assign{Assign: &echov1.AssignRequest{Action: action}},
	})
	if err != nil {
		return SessionAssigned{}, err
	}
	assigned := resp.GetAssigned()
	if assigned == nil {
		return SessionAssigned{}, newError(codes.Internal, "unexpected reply %T to an assign", resp.GetKind())
	}
	return SessionAssigned{RequestID: resp.GetRequestId(), Action: assigned.GetAction(), Duplicate: assigned.GetDuplicate()}, nil
}

// Cancel cancels an action through the session.
func (s *Session) Cancel(ctx context.Context, id, reason string) (*echov1.Action, error) {
	resp, err := s.request(ctx, &echov1.ConnectRequest{
		Kind: &echov1.ConnectRequest_Cancel{Cancel: &echov1.CancelRequest{Id: id, Reason: reason}},
	})
	if err != nil {
		return nil, err
	}
	if resp.GetCancelled() == nil {
		return nil, newError(codes.Internal, "unexpected reply %T to a cancel", resp.GetKind())
	}
	return resp.GetCancelled().GetAction(), nil
}

// Subscribe adds the events filter selects (its Reconnect is ignored); they
// arrive under the returned request id. lastSequence is the highest
// sequence committed when the subscription began. A state the server
// refuses in filter.States fails this subscribe with INVALID_ARGUMENT, not
// the session.
func (s *Session) Subscribe(ctx context.Context, filter EventFilter) (requestID string, lastSequence uint64, err error) {
	req := filter.request(filter.AfterSequence)
	resp, err := s.request(ctx, &echov1.ConnectRequest{Kind: &echov1.ConnectRequest_Subscribe{Subscribe: req}})
	if err != nil {
		return "", 0, err
	}
	if resp.GetSubscribed() == nil {
		return "", 0, newError(codes.Internal, "unexpected reply %T to a subscribe", resp.GetKind())
	}
	return resp.GetRequestId(), resp.GetSubscribed().GetLastSequence(), nil
}

// Ack acknowledges every event up to and including sequence.
func (s *Session) Ack(sequence uint64) error {
	s.mu.Lock()
	s.counter++
	id := fmt.Sprintf("r%d", s.counter)
	s.mu.Unlock()
	return s.send(&echov1.ConnectRequest{RequestId: id, Kind: &echov1.ConnectRequest_Ack{Ack: &echov1.Ack{Sequence: sequence}}})
}

// Close half-closes the session and waits up to grace for the server to
// end it, then cancels it. Events is closed afterwards.
func (s *Session) Close(grace time.Duration) error {
	s.sendMu.Lock()
	err := s.stream.CloseSend()
	s.sendMu.Unlock()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
	}
	s.cancel()
	<-s.done
	return err
}
