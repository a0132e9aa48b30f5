package bgp

import (
	"context"
	"log/slog"
)

// levelFilter passes GoBGP's records to the daemon's handler only at or
// above a level that GoBGP's own SetLogLevel API (the gobgp CLI) can move.
type levelFilter struct {
	next  slog.Handler
	level *slog.LevelVar
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.level.Level() && f.next.Enabled(ctx, l)
}

func (f levelFilter) Handle(ctx context.Context, r slog.Record) error { return f.next.Handle(ctx, r) }

func (f levelFilter) WithAttrs(as []slog.Attr) slog.Handler {
	return levelFilter{f.next.WithAttrs(as), f.level}
}

func (f levelFilter) WithGroup(name string) slog.Handler {
	return levelFilter{f.next.WithGroup(name), f.level}
}
