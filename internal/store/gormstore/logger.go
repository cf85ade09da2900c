package gormstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

// gormLogger routes gorm's messages to slog. SQL is logged without its
// parameter values (ParamsFilter drops them): secrets and hashes pass through
// some columns.
type gormLogger struct {
	logger *slog.Logger
	slow   time.Duration
	// statements counts every SQL statement run, for the round-trip
	// budget tests (Store.Statements).
	statements atomic.Int64
}

var (
	_ gormlogger.Interface = (*gormLogger)(nil)
	_ gorm.ParamsFilter    = (*gormLogger)(nil)
)

func (l *gormLogger) LogMode(gormlogger.LogLevel) gormlogger.Interface { return l }

func (l *gormLogger) Info(ctx context.Context, msg string, args ...any) {
	l.logger.DebugContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

func (l *gormLogger) Warn(ctx context.Context, msg string, args ...any) {
	l.logger.WarnContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

func (l *gormLogger) Error(ctx context.Context, msg string, args ...any) {
	l.logger.ErrorContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

// LevelSQL logs every statement (without its parameter values), below
// debug so that debug logs stay readable: set log.level to DEBUG-4 to see
// which statements a request runs.
const LevelSQL = slog.LevelDebug - 4

// Trace reports slow statements as warnings, and every statement at
// LevelSQL. Failed statements are logged at
// debug only: the error goes back to the caller, who decides whether it
// matters (a duplicate key or a lost race is an expected outcome).
func (l *gormLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	l.statements.Add(1)
	elapsed := time.Since(begin)
	if l.logger.Enabled(ctx, LevelSQL) {
		sql, rows := fc()
		l.logger.Log(ctx, LevelSQL, "database statement", "sql", sql, "rows", rows, "elapsed", elapsed, "err", err)
	}
	switch {
	case err != nil && !errors.Is(err, gorm.ErrRecordNotFound):
		if !l.logger.Enabled(ctx, slog.LevelDebug) {
			return
		}
		sql, rows := fc()
		l.logger.DebugContext(ctx, "database statement failed", "sql", sql, "rows", rows, "elapsed", elapsed, "err", err)
	case l.slow > 0 && elapsed > l.slow:
		sql, rows := fc()
		l.logger.WarnContext(ctx, "slow database statement", "sql", sql, "rows", rows, "elapsed", elapsed)
	}
}

// ParamsFilter keeps parameter values out of the SQL handed to Trace.
func (l *gormLogger) ParamsFilter(_ context.Context, sql string, _ ...any) (string, []any) {
	return sql, nil
}
