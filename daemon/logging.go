package daemon

import (
	"io"
	"log/slog"

	"github.com/pnap-project/pnap/configs"
)

// NewLogger is the logger [log] asks for, writing to w, with its level
// held in level so that a reload can change it while pnapd runs.
func NewLogger(w io.Writer, c configs.Log, level *slog.LevelVar) *slog.Logger {
	level.Set(slogLevel(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == configs.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func slogLevel(l configs.LogLevel) slog.Level {
	switch l {
	case configs.LogDebug:
		return slog.LevelDebug
	case configs.LogWarn:
		return slog.LevelWarn
	case configs.LogError:
		return slog.LevelError
	}
	return slog.LevelInfo
}
