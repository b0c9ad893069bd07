package echo_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"testing"
	"time"

	echo "github.com/echo-actions/echo/clients/go"
	echov1 "github.com/echo-actions/echo/clients/go/gen/echo/v1"
)

// The README shows Example's body; TestReadmeShowsTheExamples keeps the two
// the same. It runs against ECHO_TARGET, or a stand-in server without one.
func Example() {
	client, err := echo.Dial(target())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	sum, err := client.Run(ctx, "Add", []any{int64(1) << 62, int64(1)<<62 - 1})
	fmt.Println("sum:", sum, err) // an int64, exactly
	_, err = client.Assign(ctx, "Add", []any{int64(1), "two"})
	var refused *echo.Error
	if errors.As(err, &refused) && errors.Is(err, echo.ErrInvalidArgument) {
		fmt.Println("refused:", refused.FieldViolations[0].Field)
	}
	// Output:
	// sum: 9223372036854775807 <nil>
	// refused: action.args[1]
}

// ExampleClient_Events waits only for a result: the filter asks for the
// final states, so no transition before them is sent. The README shows its
// body under "Event filters".
func ExampleClient_Events() {
	client, err := echo.Dial(target())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	added, err := client.Assign(ctx, "Add", []any{1, 2})
	if err != nil {
		log.Fatal(err)
	}
	final := []echov1.ActionState{
		echov1.ActionState_ACTION_STATE_SUCCEEDED,
		echov1.ActionState_ACTION_STATE_FAILED,
		echov1.ActionState_ACTION_STATE_CANCELLED,
	}
	filter := echo.EventFilter{ActionIDs: []string{added.GetId()}, States: final, AfterSequence: echo.Ptr[uint64](0)}
	for event, err := range client.Events(ctx, filter) {
		fmt.Println("first event:", event.GetState(), err)
		break
	}
	// Output:
	// first event: ACTION_STATE_SUCCEEDED <nil>
}

// target is ECHO_TARGET, or one stand-in server shared by the examples.
func target() string {
	if address := os.Getenv("ECHO_TARGET"); address != "" {
		return address
	}
	startFake.Do(func() {
		address, stop, err := echo.StartFake()
		if err != nil {
			log.Fatal(err)
		}
		fakeAddress, stopFake = address, stop
	})
	return fakeAddress
}

var (
	startFake   sync.Once
	fakeAddress string
	stopFake    = func() {}
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopFake()
	os.Exit(code)
}
