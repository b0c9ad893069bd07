// Package echo is the Go client of the Echo action service.
//
// Dial a server, assign actions, wait for them, follow their events and hold
// bidirectional sessions:
//
//	client, err := echo.Dial("localhost:50051")
//	if err != nil { ... }
//	defer client.Close()
//	sum, err := client.Run(ctx, "Add", []any{int64(2), int64(40)})
//
// Every unary call has a deadline: the context's, or the client's call
// timeout (30 s unless WithCallTimeout says otherwise) when the context has
// none. Every call carries a W3C traceparent: the one WithTrace put in the
// context, else the client's trace provider's, else a new trace per call.
// Event streams reconnect by themselves after a dropped connection, an
// UNAVAILABLE status or a retryable end message, with a jittered,
// growing delay, and resume after the last sequence number they delivered.
//
// A failed call returns an *Error carrying the status code, the
// google.rpc.BadRequest field violations and the google.rpc.RetryInfo delay;
// errors.Is matches it against ErrInvalidArgument, ErrNotFound and the other
// sentinels, and status.Code reads its code. The stubs generated from the
// contract are in the gen/echo/v1 package.
package echo
