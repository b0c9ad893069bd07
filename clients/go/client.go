package echo

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	echov1 "github.com/echo-actions/echo/clients/go/gen/echo/v1"
)

// Client is a client of one Echo server, safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	raw  echov1.EchoServiceClient
	opts options
}

type options struct {
	callTimeout time.Duration
	reconnect   Backoff
	headers     []string
	trace       func(context.Context) (TraceContext, bool)
	dial        []grpc.DialOption
	// sleep waits between a stream's reconnects; tests replace it to count
	// the delays.
	sleep func(context.Context, time.Duration) error
}

// Option configures a Client.
type Option func(*options)

// WithCallTimeout sets the deadline of unary calls whose context has none.
// Default 30 s; 0 means none.
func WithCallTimeout(d time.Duration) Option {
	return func(o *options) { o.callTimeout = d }
}

// WithReconnect sets how event streams space their reconnects.
func WithReconnect(b Backoff) Option {
	return func(o *options) { o.reconnect = b }
}

// WithHeader sends a metadata entry with every call, such as
// "authorization: Bearer ...".
func WithHeader(key, value string) Option {
	return func(o *options) { o.headers = append(o.headers, key, value) }
}

// WithTraceProvider asks provider for the trace context of calls whose
// context carries none from WithTrace (an OpenTelemetry propagator fits).
// When it reports none either, the call starts a new trace.
func WithTraceProvider(provider func(context.Context) (TraceContext, bool)) Option {
	return func(o *options) { o.trace = provider }
}

// WithDialOptions adds gRPC dial options, such as transport credentials
// (the default is plaintext).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// Dial returns a client of the server at target ("host:port" or any gRPC
// target). Connecting is lazy: the first call connects.
func Dial(target string, opts ...Option) (*Client, error) {
	c := &Client{opts: options{callTimeout: 30 * time.Second, sleep: sleep}}
	for _, opt := range opts {
		opt(&c.opts)
	}
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// gRPC's own reconnect backoff starts at 1 s; stacked under the
		// stream's, it would keep a stream down for seconds after a short
		// outage. Reconnecting follows the stream's spacing instead.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           connectBackoff(c.opts.reconnect.resolved()),
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithChainUnaryInterceptor(c.unaryInterceptor),
		grpc.WithChainStreamInterceptor(c.streamInterceptor),
	}, c.opts.dial...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, err
	}
	c.conn, c.raw = conn, echov1.NewEchoServiceClient(conn)
	return c, nil
}

func connectBackoff(b Backoff) backoff.Config {
	return backoff.Config{BaseDelay: b.Initial, Multiplier: b.Multiplier, Jitter: max(b.Jitter, 0), MaxDelay: b.Max}
}

// Close closes the connection; calls still running fail.
func (c *Client) Close() error { return c.conn.Close() }

// Raw returns the generated client, for what the wrapper does not cover.
func (c *Client) Raw() echov1.EchoServiceClient { return c.raw }

// outgoing adds the client's headers and a traceparent to ctx's metadata.
func (c *Client) outgoing(ctx context.Context) context.Context {
	if len(c.opts.headers) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, c.opts.headers...)
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get("traceparent")) > 0 {
		return ctx
	}
	tc, ok := TraceFrom(ctx)
	if !ok && c.opts.trace != nil {
		tc, ok = c.opts.trace(ctx)
	}
	if !ok || tc.Traceparent == "" {
		tc = TraceContext{Traceparent: NewTraceparent()}
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tc.Traceparent)
	if tc.Tracestate != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "tracestate", tc.Tracestate)
	}
	return ctx
}

func (c *Client) unaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok && c.opts.callTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.callTimeout)
		defer cancel()
	}
	return invoker(c.outgoing(ctx), method, req, reply, cc, opts...)
}

// streamInterceptor adds metadata only: a stream's deadline is its
// context's, since streams live as long as their reader wants.
func (c *Client) streamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(c.outgoing(ctx), desc, cc, method, opts...)
}

// Assign assigns one action; it returns once the server has journaled it.
func (c *Client) Assign(ctx context.Context, name string, args []any, opts ...ActionOption) (*echov1.Action, error) {
	action, err := Spec{Name: name, Args: args, Options: opts}.action()
	if err != nil {
		return nil, err
	}
	resp, err := c.raw.Assign(ctx, &echov1.AssignRequest{Action: action})
	if err != nil {
		return nil, toError(err)
	}
	return resp.GetAction(), nil
}

// AssignMany assigns many actions at once, all or none; the results are in
// request order.
func (c *Client) AssignMany(ctx context.Context, specs []Spec) ([]*echov1.Action, error) {
	req := &echov1.AssignManyRequest{Actions: make([]*echov1.Action, len(specs))}
	for i, spec := range specs {
		action, err := spec.action()
		if err != nil {
			return nil, err
		}
		req.Actions[i] = action
	}
	resp, err := c.raw.AssignMany(ctx, req)
	if err != nil {
		return nil, toError(err)
	}
	actions := make([]*echov1.Action, len(resp.GetResults()))
	for i, result := range resp.GetResults() {
		actions[i] = result.GetAction()
	}
	return actions, nil
}

// Get returns the action as journaled now.
func (c *Client) Get(ctx context.Context, id string) (*echov1.Action, error) {
	resp, err := c.raw.GetAction(ctx, &echov1.GetActionRequest{Id: id})
	if err != nil {
		return nil, toError(err)
	}
	return resp.GetAction(), nil
}

// Cancel cancels an action: at once if waiting, through its token if running.
func (c *Client) Cancel(ctx context.Context, id, reason string) (*echov1.Action, error) {
	resp, err := c.raw.Cancel(ctx, &echov1.CancelRequest{Id: id, Reason: reason})
	if err != nil {
		return nil, toError(err)
	}
	return resp.GetAction(), nil
}

// ListSignatures returns the signatures of the server's plan, by name.
func (c *Client) ListSignatures(ctx context.Context) ([]*echov1.ActionSignature, error) {
	resp, err := c.raw.ListSignatures(ctx, &echov1.ListSignaturesRequest{})
	if err != nil {
		return nil, toError(err)
	}
	return resp.GetSignatures(), nil
}

// finals are the states IsFinal holds for; Wait asks for these alone.
var finals = []echov1.ActionState{
	echov1.ActionState_ACTION_STATE_SUCCEEDED, echov1.ActionState_ACTION_STATE_FAILED, echov1.ActionState_ACTION_STATE_CANCELLED,
}

// IsFinal reports whether state is SUCCEEDED, FAILED or CANCELLED.
func IsFinal(state echov1.ActionState) bool {
	return slices.Contains(finals, state)
}

// Wait returns the action once it is final. It waits as long as ctx allows.
func (c *Client) Wait(ctx context.Context, id string) (*echov1.Action, error) {
	// Replaying the action's journaled events from the start sees a final
	// event even when it came before the stream opened; asking for the final
	// states alone keeps the transitions before it off the wire. A heartbeat
	// re-reads the action, in case its events were pruned.
	filter := EventFilter{ActionIDs: []string{id}, States: slices.Clone(finals), AfterSequence: Ptr[uint64](0)}
	for msg, err := range c.messages(ctx, filter) {
		if err != nil {
			return nil, err
		}
		switch {
		case msg.GetEvent() != nil && IsFinal(msg.GetEvent().GetState()):
			return c.Get(ctx, id)
		case msg.GetHeartbeat() != nil:
			action, err := c.Get(ctx, id)
			if err != nil || IsFinal(action.GetState()) {
				return action, err
			}
		}
	}
	action, err := c.Get(ctx, id)
	if err == nil && !IsFinal(action.GetState()) {
		err = newError(codes.Unavailable, "the server ended the event stream before action %s finished", id)
	}
	return action, err
}

// Run assigns an action, waits for it and returns its result (see
// FromValue); an action that failed or was cancelled returns an
// *ActionFailedError.
func (c *Client) Run(ctx context.Context, name string, args []any, opts ...ActionOption) (any, error) {
	action, err := c.Assign(ctx, name, args, opts...)
	if err != nil {
		return nil, err
	}
	if action, err = c.Wait(ctx, action.GetId()); err != nil {
		return nil, err
	}
	if action.GetState() != echov1.ActionState_ACTION_STATE_SUCCEEDED {
		return nil, &ActionFailedError{Action: action}
	}
	return FromValue(action.GetResult()), nil
}
