package echo_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"testing"
	"time"

	echo "github.com/echo-actions/echo/clients/go"
)

// The README shows Example's body; TestReadmeShowsTheExample keeps the two
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

func target() string {
	if address := os.Getenv("ECHO_TARGET"); address != "" {
		return address
	}
	address, stop, err := echo.StartFake()
	if err != nil {
		log.Fatal(err)
	}
	stopFake = stop
	return address
}

var stopFake = func() {}

func TestMain(m *testing.M) {
	code := m.Run()
	stopFake()
	os.Exit(code)
}
