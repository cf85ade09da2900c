package gormstore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/gatehouse/gatehouse/internal/store"
)

// changesChannel is the NOTIFY channel of migration 8's triggers.
const changesChannel = "gatehouse_changes"

// changeKinds maps the tables whose triggers notify to the kinds of Change.
var changeKinds = map[string]string{
	clientsTable.table:     store.ChangeClient,
	authConfigsTable.table: store.ChangeAuthConfig,
}

const (
	// changesPingEvery is how often the listener checks that it hears its
	// own probe, and changesPingTimeout how long the probe may take: a
	// connection cut without a word (a dropped route, a paused server) is
	// found within their sum, and the caches go back to short lifetimes.
	changesPingEvery   = 10 * time.Second
	changesPingTimeout = 5 * time.Second
	// changesRetryMax bounds the wait between reconnection attempts.
	changesRetryMax = 5 * time.Second
)

var _ store.ChangeFeed = (*Store)(nil)

// listenConfig is the configuration of the change feed's own connection:
// the pool's, with a context watcher that only sets a read deadline. The
// default one sends the server a cancel request each time a wait for a
// notification times out, which is needless here and costs a connection.
func listenConfig(pool *pgx.ConnConfig) *pgx.ConnConfig {
	c := pool.Copy()
	c.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	if _, set := c.RuntimeParams["application_name"]; !set {
		c.RuntimeParams["application_name"] = "gatehouse change feed"
	}
	return c
}

// WatchChanges listens on one connection of its own, outside the pool, and
// reconnects with a growing pause (up to changesRetryMax) when it breaks.
func (s *Store) WatchChanges(ctx context.Context, live func(bool), fn func(store.Change)) error {
	if s.listen == nil {
		return store.ErrNoChangeFeed
	}
	pause := 100 * time.Millisecond
	// failing is true from a failure until the feed is heard again: a feed
	// that never works (behind a pooler in transaction mode) warns once,
	// not every few seconds.
	failing := false
	for {
		heard, err := s.listenOnce(ctx, live, fn)
		if ctx.Err() != nil {
			return nil
		}
		if heard {
			failing = false
			pause = 100 * time.Millisecond
		}
		level := slog.LevelWarn
		if failing {
			level = slog.LevelDebug
		}
		failing = true
		s.logger.Log(ctx, level, "change feed interrupted: cached clients and policies live one second until it is back", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, changesRetryMax)
	}
}

// listenOnce runs the feed on one connection until it fails or ctx ends,
// and says whether it was heard at all. The feed counts as heard only once
// a probe it sent itself has come back, and again every changesPingEvery: a
// LISTEN that cannot hear (through a connection pooler in transaction mode,
// say) or a connection cut without a word never passes for a working feed
// for longer than changesPingEvery + changesPingTimeout.
func (s *Store) listenOnce(ctx context.Context, live func(bool), fn func(store.Change)) (heard bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.listen)
	if err != nil {
		return heard, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), changesPingTimeout)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	var schema string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return heard, fmt.Errorf("read the current schema: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+changesChannel); err != nil {
		return heard, fmt.Errorf("listen: %w", err)
	}
	s.listenerPID.Store(conn.PgConn().PID())
	defer func() {
		if heard {
			live(false)
		}
	}()
	var probe string // the payload of the probe awaited, if any
	var probeDue time.Time
	sendProbe := func() error {
		probe = `{"probe":"` + rand.Text() + `"}`
		probeDue = time.Now().Add(s.pingTimeout)
		pctx, cancel := context.WithDeadline(ctx, probeDue)
		defer cancel()
		if _, err := conn.Exec(pctx, "SELECT pg_notify($1, $2)", changesChannel, probe); err != nil {
			return fmt.Errorf("send a probe: %w", err)
		}
		return nil
	}
	if err := sendProbe(); err != nil {
		return heard, err
	}
	for {
		wait := s.pingEvery
		if probe != "" {
			wait = time.Until(probeDue)
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil && probe != "" && n.Payload == probe:
			probe = ""
			if !heard {
				heard = true
				live(true)
			}
		case err == nil:
			if c, ok := parseChange(n.Payload, schema); ok && heard {
				fn(c)
			}
		case ctx.Err() != nil:
			return heard, nil
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			if probe != "" {
				return heard, fmt.Errorf("the feed's own probe was not heard within %v", s.pingTimeout)
			}
			if err := sendProbe(); err != nil {
				return heard, err
			}
		default:
			return heard, fmt.Errorf("wait for a notification: %w", err)
		}
	}
}

// parseChange reads a notification of migration 8's trigger; ok is false
// for one of another schema (another deployment in the same database).
func parseChange(payload, schema string) (store.Change, bool) {
	var n struct {
		Schema string `json:"schema"`
		Table  string `json:"table"`
		ID     string `json:"id"`
	}
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.Schema != schema {
		return store.Change{}, false
	}
	kind, ok := changeKinds[n.Table]
	if !ok {
		return store.Change{}, false
	}
	return store.Change{Kind: kind, ID: n.ID}, true
}
