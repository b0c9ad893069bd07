package echo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// TraceContext is a W3C trace context (https://www.w3.org/TR/trace-context/).
type TraceContext struct {
	Traceparent string
	Tracestate  string
}

type traceKey struct{}

// WithTrace returns a context whose calls carry tc instead of a new trace.
func WithTrace(ctx context.Context, tc TraceContext) context.Context {
	return context.WithValue(ctx, traceKey{}, tc)
}

// TraceFrom returns the trace context WithTrace put in ctx.
func TraceFrom(ctx context.Context) (TraceContext, bool) {
	tc, ok := ctx.Value(traceKey{}).(TraceContext)
	return tc, ok
}

var traceparentPattern = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$`)

// NewTraceparent returns a sampled traceparent with new random ids.
func NewTraceparent() string {
	var ids [24]byte
	_, _ = rand.Read(ids[:]) // crypto/rand.Read never fails on supported platforms.
	return fmt.Sprintf("00-%s-%s-01", hex.EncodeToString(ids[:16]), hex.EncodeToString(ids[16:]))
}

// TraceID returns the 32-hex-digit trace id of a version-00 traceparent.
func TraceID(traceparent string) (string, error) {
	m := traceparentPattern.FindStringSubmatch(traceparent)
	if m == nil || strings.Trim(m[1], "0") == "" || strings.Trim(m[2], "0") == "" {
		return "", fmt.Errorf("echo: bad traceparent %q", traceparent)
	}
	return m[1], nil
}
