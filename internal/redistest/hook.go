package redistest

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// CommandHook is a go-redis hook (Client.AddHook) that passes dials and
// pipelines through and runs each single command through the function:
// tests use it to fail, hold or repeat a chosen command (next runs it).
type CommandHook func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error

// DialHook passes dials through.
func (h CommandHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook passes pipelines through.
func (h CommandHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook runs each command through h.
func (h CommandHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { return h(ctx, cmd, next) }
}
