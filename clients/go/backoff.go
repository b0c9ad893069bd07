package echo

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Backoff spaces the reconnects of an event stream. Zero fields take the
// defaults given. The delay grows with each reconnect since the stream last
// delivered an event, so a server that ends every stream at once is asked
// ever more slowly; only an event starts it from Initial again.
type Backoff struct {
	// Initial is the delay before the first reconnect. Default 100 ms.
	Initial time.Duration
	// Max bounds one delay. Default 5 s.
	Max time.Duration
	// Multiplier grows each further delay. Default 2; at least 1.
	Multiplier float64
	// Jitter scales each delay by a random factor in [1-Jitter, 1+Jitter].
	// Default 0.2; negative means none.
	Jitter float64
	// MaxAttempts is how many reconnects in a row, without a heartbeat or
	// an event in between, end the stream with the last error. Default 10.
	// Either starts the count again: the server is there, so a quiet stream
	// cut now and then is never given up on.
	MaxAttempts int
}

func (b Backoff) resolved() Backoff {
	if b.Initial <= 0 {
		b.Initial = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Second
	}
	if b.Multiplier < 1 {
		b.Multiplier = 2
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = 0.2
	case b.Jitter < 0:
		// None, kept negative: a stream resolves its Backoff and Delay
		// resolves it again, which would read a zero as the default.
		b.Jitter = -1
	case b.Jitter > 1:
		b.Jitter = 1
	}
	if b.MaxAttempts <= 0 {
		b.MaxAttempts = 10
	}
	return b
}

// Delay is the wait before reconnect number attempt (1 for the first),
// with r a uniform random number in [0, 1).
func (b Backoff) Delay(attempt int, r float64) time.Duration {
	b = b.resolved()
	base := math.Min(float64(b.Max), float64(b.Initial)*math.Pow(b.Multiplier, float64(attempt-1)))
	return time.Duration(base * (1 + max(b.Jitter, 0)*(2*r-1)))
}

// sleep waits d or until ctx ends, and returns ctx's error in that case.
func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func jitter() float64 { return rand.Float64() }
