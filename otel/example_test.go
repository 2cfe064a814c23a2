package tierotel_test

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	tierotel "github.com/tiercache/tiercache/otel"
	"github.com/tiercache/tiercache/tier"
)

func ExampleNew() {
	ctx := context.Background()
	// In an application, tp is the SDK TracerProvider exporting OTLP (see
	// the README); here spans are kept in memory.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(ctx) }()

	c, err := tier.New(&tier.Options[string]{
		Name:     "profiles",
		Observer: tierotel.New(tierotel.WithTracerProvider(tp)),
	})
	if err != nil {
		panic(err)
	}
	defer func() { _ = c.Close() }()

	ctx, req := tp.Tracer("app").Start(ctx, "GET /profile")
	_, _ = c.GetOrLoad(ctx, "user:42", func(context.Context, string) (string, error) { return "Ada", nil })
	req.End()

	for _, s := range spans.Ended() {
		fmt.Print(s.Name())
		for _, a := range s.Attributes() {
			if a.Key != "cache.key.hash" { // an HMAC of the key
				fmt.Printf(" %s=%s", a.Key, a.Value.String())
			}
		}
		for _, e := range s.Events() {
			fmt.Printf(" event=%s", e.Name)
		}
		fmt.Println()
	}
	// Output:
	// tiercache load cache.name=profiles cache.tier=origin cache.load.found=true
	// GET /profile event=cache.miss
}
