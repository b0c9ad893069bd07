package echo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	echov1 "github.com/echo-actions/echo/clients/go/gen/echo/v1"
)

// JSON is a JSON document kept as text, so that no integer loses a digit on
// its way (google.protobuf.Struct would have made every number a double).
type JSON []byte

// JSONOf encodes v with encoding/json, which writes every Go integer exactly.
func JSONOf(v any) (JSON, error) {
	text, err := json.Marshal(v)
	return JSON(text), err
}

// Decode decodes the document into v. Decoded into an interface, a number
// becomes a json.Number, which keeps its digits; a typed int64 field takes
// the exact value too.
func (j JSON) Decode(v any) error {
	decoder := json.NewDecoder(bytes.NewReader(j))
	decoder.UseNumber()
	if err := decoder.Decode(v); err != nil {
		return err
	}
	if decoder.More() {
		return fmt.Errorf("echo: text after the JSON value")
	}
	return nil
}

func (j JSON) String() string { return string(j) }

// Double marks an integer-valued number to be sent as a double. A float64
// is always sent as a double; the type exists for symmetry with the other
// clients and for values computed as integers.
type Double float64

// ToValue converts one Go value to the contract's Value:
//
//	string                         string_value
//	int, int8..int64, uint8..uint32 int_value (uint and uint64 when they fit)
//	float32, float64, Double       double_value
//	bool                           bool_value
//	[]byte                         bytes_value
//	JSON, json.RawMessage          json_value
//	*anypb.Any, proto.Message      message_value (a message is packed)
//	*echov1.Value                  itself
func ToValue(arg any) (*echov1.Value, error) {
	switch v := arg.(type) {
	case *echov1.Value:
		return v, nil
	case string:
		return &echov1.Value{Kind: &echov1.Value_StringValue{StringValue: v}}, nil
	case bool:
		return &echov1.Value{Kind: &echov1.Value_BoolValue{BoolValue: v}}, nil
	case int:
		return intValue(int64(v)), nil
	case int8:
		return intValue(int64(v)), nil
	case int16:
		return intValue(int64(v)), nil
	case int32:
		return intValue(int64(v)), nil
	case int64:
		return intValue(v), nil
	case uint8:
		return intValue(int64(v)), nil
	case uint16:
		return intValue(int64(v)), nil
	case uint32:
		return intValue(int64(v)), nil
	case uint:
		return uintValue(uint64(v))
	case uint64:
		return uintValue(v)
	case float32:
		return doubleValue(float64(v)), nil
	case float64:
		return doubleValue(v), nil
	case Double:
		return doubleValue(float64(v)), nil
	case []byte:
		return &echov1.Value{Kind: &echov1.Value_BytesValue{BytesValue: v}}, nil
	case JSON:
		return &echov1.Value{Kind: &echov1.Value_JsonValue{JsonValue: string(v)}}, nil
	case json.RawMessage:
		return &echov1.Value{Kind: &echov1.Value_JsonValue{JsonValue: string(v)}}, nil
	case *anypb.Any:
		return &echov1.Value{Kind: &echov1.Value_MessageValue{MessageValue: v}}, nil
	case proto.Message:
		packed, err := anypb.New(v)
		if err != nil {
			return nil, err
		}
		return &echov1.Value{Kind: &echov1.Value_MessageValue{MessageValue: packed}}, nil
	}
	return nil, fmt.Errorf("echo: cannot send a %T as a value", arg)
}

func intValue(v int64) *echov1.Value {
	return &echov1.Value{Kind: &echov1.Value_IntValue{IntValue: v}}
}

func doubleValue(v float64) *echov1.Value {
	return &echov1.Value{Kind: &echov1.Value_DoubleValue{DoubleValue: v}}
}

func uintValue(v uint64) (*echov1.Value, error) {
	if v > math.MaxInt64 {
		return nil, fmt.Errorf("echo: %d does not fit int64", v)
	}
	return intValue(int64(v)), nil
}

// FromValue converts a Value back to Go: string, int64, float64, bool,
// []byte, JSON or *anypb.Any; nil when v or its kind is unset.
func FromValue(v *echov1.Value) any {
	switch k := v.GetKind().(type) {
	case *echov1.Value_StringValue:
		return k.StringValue
	case *echov1.Value_IntValue:
		return k.IntValue
	case *echov1.Value_DoubleValue:
		return k.DoubleValue
	case *echov1.Value_BoolValue:
		return k.BoolValue
	case *echov1.Value_BytesValue:
		return k.BytesValue
	case *echov1.Value_JsonValue:
		return JSON(k.JsonValue)
	case *echov1.Value_MessageValue:
		return k.MessageValue
	}
	return nil
}

func toValues(args []any) ([]*echov1.Value, error) {
	values := make([]*echov1.Value, len(args))
	for i, arg := range args {
		v, err := ToValue(arg)
		if err != nil {
			return nil, fmt.Errorf("args[%d]: %w", i, err)
		}
		values[i] = v
	}
	return values, nil
}
