package bgp

import (
	"context"
	"log/slog"
	"os"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// slogAdapter lets GoBGP log through slog, so the daemon has one log
// stream with one format. It also watches for the one GoBGP message that
// tells us a peer exceeded its prefix limit, which the API reports nowhere
// else.
type slogAdapter struct {
	log         *slog.Logger
	level       gobgplog.LogLevel
	onMaxPrefix func(peer string)
}

func (a *slogAdapter) emit(level slog.Level, msg string, fields gobgplog.Fields) {
	if msg == "prefix limit reached" && level == slog.LevelWarn && a.onMaxPrefix != nil {
		// The warning at the threshold percentage carries "Pct"; the
		// teardown itself does not.
		if _, warnOnly := fields["Pct"]; !warnOnly {
			if key, ok := fields["Key"].(string); ok {
				a.onMaxPrefix(key)
			}
		}
	}
	if !a.log.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		attrs = append(attrs, k, v)
	}
	a.log.Log(context.Background(), level, msg, attrs...)
}

func (a *slogAdapter) Panic(msg string, f gobgplog.Fields) {
	a.emit(slog.LevelError, msg, f)
	panic(msg)
}

// Fatal keeps GoBGP's contract (the process ends): GoBGP uses it where it
// cannot go on, such as its gRPC API port being taken.
func (a *slogAdapter) Fatal(msg string, f gobgplog.Fields) {
	a.emit(slog.LevelError, msg, f)
	os.Exit(1)
}
func (a *slogAdapter) Error(msg string, f gobgplog.Fields) { a.emit(slog.LevelError, msg, f) }
func (a *slogAdapter) Warn(msg string, f gobgplog.Fields)  { a.emit(slog.LevelWarn, msg, f) }
func (a *slogAdapter) Info(msg string, f gobgplog.Fields)  { a.emit(slog.LevelInfo, msg, f) }

// GoBGP's debug output is per message and very chatty; it goes to slog's
// debug level.
func (a *slogAdapter) Debug(msg string, f gobgplog.Fields) { a.emit(slog.LevelDebug, msg, f) }
func (a *slogAdapter) SetLevel(level gobgplog.LogLevel)    { a.level = level }
func (a *slogAdapter) GetLevel() gobgplog.LogLevel         { return a.level }
