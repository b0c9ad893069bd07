package echo

import (
	"encoding/json"
	"math"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestInt64ExtremesRoundTripExactly(t *testing.T) {
	for _, n := range []int64{math.MaxInt64, math.MinInt64, 0, 1} {
		v, err := ToValue(n)
		if err != nil || v.GetIntValue() != n || FromValue(v) != n {
			t.Fatalf("%d came back as %v (%v)", n, FromValue(v), err)
		}
	}
}

func TestEveryIntegerTypeIsAnInt64AndAFloatIsADouble(t *testing.T) {
	for _, arg := range []any{int(7), int8(7), int16(7), int32(7), int64(7), uint8(7), uint16(7), uint32(7), uint(7), uint64(7)} {
		if v, err := ToValue(arg); err != nil || FromValue(v) != int64(7) {
			t.Errorf("%T: %v, %v", arg, v, err)
		}
	}
	if v, _ := ToValue(7.0); FromValue(v) != 7.0 || v.GetKind() == nil || v.GetIntValue() != 0 {
		t.Errorf("a float64 must stay a double: %v", v)
	}
	if v, _ := ToValue(Double(7)); v.GetDoubleValue() != 7 {
		t.Errorf("Double must be a double: %v", v)
	}
	if _, err := ToValue(uint64(math.MaxInt64) + 1); err == nil {
		t.Error("a uint64 beyond int64 must be refused, not wrapped")
	}
	if _, err := ToValue(struct{}{}); err == nil {
		t.Error("a struct has no Echo form")
	}
}

func TestStringsBytesBoolsAndMessagesRoundTrip(t *testing.T) {
	for _, arg := range []any{"héllo", true, []byte{0, 1, 255}} {
		v, err := ToValue(arg)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := json.Marshal(FromValue(v)); string(got) != string(must(json.Marshal(arg))) {
			t.Errorf("%v came back as %v", arg, FromValue(v))
		}
	}
	v, err := ToValue(durationpb.New(3))
	if err != nil {
		t.Fatal(err)
	}
	packed := FromValue(v).(*anypb.Any)
	d := &durationpb.Duration{}
	if err := packed.UnmarshalTo(d); err != nil || !proto.Equal(d, durationpb.New(3)) {
		t.Fatalf("message came back as %v (%v)", d, err)
	}
}

func TestJSONKeepsBigIntegersDigitForDigit(t *testing.T) {
	doc, err := JSONOf(map[string]any{"max": int64(math.MaxInt64), "min": int64(math.MinInt64), "one": 1, "half": 0.5})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"half":0.5,"max":9223372036854775807,"min":-9223372036854775808,"one":1}`
	if doc.String() != want {
		t.Fatalf("JSON = %s", doc)
	}
	var loose map[string]any
	if err := doc.Decode(&loose); err != nil {
		t.Fatal(err)
	}
	if loose["max"] != json.Number("9223372036854775807") || loose["one"] != json.Number("1") {
		t.Fatalf("decoded into any = %v; numbers must keep their digits", loose)
	}
	var typed struct{ Max, Min int64 }
	if err := doc.Decode(&typed); err != nil || typed.Max != math.MaxInt64 || typed.Min != math.MinInt64 {
		t.Fatalf("typed = %+v (%v)", typed, err)
	}
	if err := JSON(`{} {}`).Decode(&loose); err == nil {
		t.Error("text after the value must be refused")
	}
}

func TestCodeNamesAreCanonical(t *testing.T) {
	for code, want := range map[int]string{1: "CANCELLED", 3: "INVALID_ARGUMENT", 8: "RESOURCE_EXHAUSTED", 14: "UNAVAILABLE"} {
		if got := CodeName(codesOf(code)); got != want {
			t.Errorf("CodeName(%d) = %s; want %s", code, got, want)
		}
	}
}

func TestTraceIDReadsOnlyValidTraceparents(t *testing.T) {
	if id, err := TraceID(NewTraceparent()); err != nil || len(id) != 32 {
		t.Fatalf("TraceID(new) = %q, %v", id, err)
	}
	for _, bad := range []string{"", "00-00000000000000000000000000000000-b7ad6b7169203331-01", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"} {
		if _, err := TraceID(bad); err == nil {
			t.Errorf("TraceID(%q) accepted", bad)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func codesOf(n int) codes.Code { return codes.Code(n) }
