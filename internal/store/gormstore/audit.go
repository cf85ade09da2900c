package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// ---- audit log

// AppendAudit stores an event; an empty ID gets a random one and a zero Time
// becomes now.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEvent) error {
	if e.Type == "" {
		return errors.New("append audit event: empty type")
	}
	if e.ID == "" {
		e.ID = newID()
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	detail, err := encodeMap(e.Detail)
	if err != nil {
		return errorf("append audit event %s: %w", e.Type, err)
	}
	err = s.conn(ctx).Exec("INSERT INTO audit_events (id, occurred_at, event_type, user_id, client_id, remote_addr, request_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		e.ID, tv(e.Time), e.Type, e.UserID, e.ClientID, e.RemoteAddr, e.RequestID, detail).Error
	if isDuplicate(err) {
		return errorf("append audit event %s: id %q exists: %w", e.Type, e.ID, store.ErrConflict)
	}
	if err != nil {
		return errorf("append audit event %s: %w", e.Type, err)
	}
	return nil
}

// ListAudit lists matching events newest first, with the total.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter, p store.Page) ([]store.AuditEvent, int, error) {
	var where []string
	var args []any
	if f.UserID != "" {
		where = append(where, "user_id = ?")
		args = append(args, f.UserID)
	}
	if f.Type != "" {
		where = append(where, "event_type = ?")
		args = append(args, f.Type)
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	lim, largs := pageSQL(p)
	rows, err := s.conn(ctx).Raw("SELECT id, occurred_at, event_type, user_id, client_id, remote_addr, request_id, detail, COUNT(*) OVER () FROM audit_events"+
		cond+" ORDER BY occurred_at DESC, id DESC"+lim, append(args, largs...)...).Rows()
	if err != nil {
		return nil, 0, errorf("list audit events: %w", err)
	}
	defer rows.Close()
	var out []store.AuditEvent
	var total int64
	for rows.Next() {
		var e store.AuditEvent
		var t dbTime
		var detail string
		if err := rows.Scan(&e.ID, &t, &e.Type, &e.UserID, &e.ClientID, &e.RemoteAddr, &e.RequestID, &detail, &total); err != nil {
			return nil, 0, errorf("list audit events: %w", err)
		}
		e.Time = t.T
		if e.Detail, err = decodeMap(detail); err != nil {
			return nil, 0, errorf("list audit events: decode detail: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, errorf("list audit events: %w", err)
	}
	if len(out) == 0 {
		var n int64
		if err := s.conn(ctx).Raw("SELECT COUNT(*) FROM audit_events"+cond, args...).Row().Scan(&n); err != nil {
			return nil, 0, errorf("list audit events: %w", err)
		}
		return nil, int(n), nil
	}
	return out, int(total), nil
}

// ---- counters

// windowStart is the start of the fixed window of length w containing now,
// counted from the Unix epoch so every process agrees on the boundaries.
func windowStart(now time.Time, w time.Duration) time.Time {
	n := now.UnixNano()
	start := n - n%int64(w)
	if n < 0 && n%int64(w) != 0 {
		start -= int64(w)
	}
	return time.Unix(0, start).UTC()
}

// HitCounter is one atomic upsert: a hit in the stored window increments it,
// a hit in a later window starts it again at one. A hit carrying an older
// window (a process whose clock lags) counts towards the current one rather
// than resetting it.
func (s *Store) HitCounter(ctx context.Context, key string, window time.Duration, now time.Time) (int, error) {
	if window < time.Microsecond {
		return 0, errorf("hit counter: window %s is too short", window)
	}
	start := windowStart(now, window)
	ctx, unlock, err := s.lockedWrite(ctx)
	if err != nil {
		return 0, errorf("hit counter: %w", err)
	}
	defer unlock()
	var hits int64
	err = s.conn(ctx).Raw(`INSERT INTO counters (counter_key, window_ns, window_start, hits) VALUES (?, ?, ?, 1)
		ON CONFLICT (counter_key, window_ns) DO UPDATE SET
			hits = CASE WHEN excluded.window_start > counters.window_start THEN 1 ELSE counters.hits + 1 END,
			window_start = CASE WHEN excluded.window_start > counters.window_start THEN excluded.window_start ELSE counters.window_start END
		RETURNING hits`, key, int64(window), tv(start)).Row().Scan(&hits)
	if err != nil {
		return 0, errorf("hit counter: %w", s.translate(err))
	}
	return int(hits), nil
}

// GetCounter returns the hits in the window containing now (0 when the stored
// window is an older one).
func (s *Store) GetCounter(ctx context.Context, key string, window time.Duration, now time.Time) (int, error) {
	if window < time.Microsecond {
		return 0, errorf("get counter: window %s is too short", window)
	}
	var hits int64
	err := s.conn(ctx).Raw("SELECT hits FROM counters WHERE counter_key = ? AND window_ns = ? AND window_start >= ?",
		key, int64(window), tv(windowStart(now, window))).Row().Scan(&hits)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, errorf("get counter: %w", err)
	}
	return int(hits), nil
}

// GetCounters reads every key's row of this window length in one query;
// keys without a row in the current window count 0.
func (s *Store) GetCounters(ctx context.Context, keys []string, window time.Duration, now time.Time) ([]int, error) {
	if window < time.Microsecond {
		return nil, errorf("get counters: window %s is too short", window)
	}
	out := make([]int, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	args := make([]any, 0, len(keys)+2)
	marks := make([]string, len(keys))
	for i, k := range keys {
		marks[i] = "?"
		args = append(args, k)
	}
	args = append(args, int64(window), tv(windowStart(now, window)))
	rows, err := s.conn(ctx).Raw("SELECT counter_key, hits FROM counters WHERE counter_key IN ("+strings.Join(marks, ", ")+") AND window_ns = ? AND window_start >= ?", args...).Rows()
	if err != nil {
		return nil, errorf("get counters: %w", err)
	}
	defer rows.Close()
	hits := make(map[string]int, len(keys))
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, errorf("get counters: %w", err)
		}
		hits[k] = int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, errorf("get counters: %w", err)
	}
	for i, k := range keys {
		out[i] = hits[k]
	}
	return out, nil
}

// ReserveCounters is HitCounter with a guard in the same upsert, for every
// key in one statement: a key's row is updated only when its stored window
// is older or still below the key's Max, so the row lock (PostgreSQL) or
// the single writer (SQLite) makes check and count one step.
func (s *Store) ReserveCounters(ctx context.Context, limits []store.CounterLimit, window time.Duration, now time.Time) ([]store.CounterReservation, error) {
	if window < time.Microsecond {
		return nil, errorf("reserve counters: window %s is too short", window)
	}
	if len(limits) == 0 {
		return nil, nil
	}
	start := windowStart(now, window)
	values := make([]string, len(limits))
	var args, guard []any
	for i, l := range limits {
		if l.Max < 1 {
			return nil, errorf("reserve counters: limit %d of %q is below one", l.Max, l.Key)
		}
		// PostgreSQL refuses an upsert that reaches one row twice.
		if slices.ContainsFunc(limits[:i], func(o store.CounterLimit) bool { return o.Key == l.Key }) {
			return nil, errorf("reserve counters: key %q is given twice", l.Key)
		}
		values[i] = "(?, ?, ?, 1)"
		args = append(args, l.Key, int64(window), tv(start))
		guard = append(guard, l.Key, l.Max)
	}
	args = append(args, guard...)
	ctx, unlock, err := s.lockedWrite(ctx)
	if err != nil {
		return nil, errorf("reserve counters: %w", err)
	}
	defer unlock()
	rows, err := s.conn(ctx).Raw(`INSERT INTO counters (counter_key, window_ns, window_start, hits) VALUES `+strings.Join(values, ", ")+`
		ON CONFLICT (counter_key, window_ns) DO UPDATE SET
			hits = CASE WHEN excluded.window_start > counters.window_start THEN 1 ELSE counters.hits + 1 END,
			window_start = CASE WHEN excluded.window_start > counters.window_start THEN excluded.window_start ELSE counters.window_start END
		WHERE excluded.window_start > counters.window_start
			OR counters.hits < CASE excluded.counter_key`+strings.Repeat(" WHEN ? THEN CAST(? AS BIGINT)", len(limits))+` END
		RETURNING counter_key, hits`, args...).Rows()
	if err != nil {
		return nil, errorf("reserve counters: %w", s.translate(err))
	}
	defer rows.Close()
	taken := make(map[string]int, len(limits))
	for rows.Next() {
		var key string
		var hits int64
		if err := rows.Scan(&key, &hits); err != nil {
			return nil, errorf("reserve counters: %w", s.translate(err))
		}
		taken[key] = int(hits)
	}
	if err := rows.Err(); err != nil {
		return nil, errorf("reserve counters: %w", s.translate(err))
	}
	out := make([]store.CounterReservation, len(limits))
	var refused []string
	for i, l := range limits {
		hits, ok := taken[l.Key]
		out[i] = store.CounterReservation{Hits: hits, Reserved: ok}
		if !ok {
			refused = append(refused, l.Key)
		}
	}
	if len(refused) == 0 {
		return out, nil
	}
	counts, err := s.GetCounters(ctx, refused, window, now)
	if err != nil {
		return nil, errorf("reserve counters: %w", err)
	}
	for i := range out {
		if !out[i].Reserved {
			out[i].Hits, counts = counts[0], counts[1:]
		}
	}
	return out, nil
}

// ReleaseCounters decrements the current window's rows of keys that have hits.
func (s *Store) ReleaseCounters(ctx context.Context, keys []string, window time.Duration, now time.Time) error {
	if window < time.Microsecond {
		return errorf("release counters: window %s is too short", window)
	}
	if len(keys) == 0 {
		return nil
	}
	ctx, unlock, err := s.lockedWrite(ctx)
	if err != nil {
		return errorf("release counters: %w", err)
	}
	defer unlock()
	args := make([]any, 0, len(keys)+2)
	marks := make([]string, len(keys))
	for i, k := range keys {
		marks[i] = "?"
		args = append(args, k)
	}
	args = append(args, int64(window), tv(windowStart(now, window)))
	if err := s.conn(ctx).Exec("UPDATE counters SET hits = hits - 1 WHERE counter_key IN ("+strings.Join(marks, ", ")+") AND window_ns = ? AND window_start >= ? AND hits > 0", args...).Error; err != nil {
		return errorf("release counters: %w", s.translate(err))
	}
	return nil
}

// ResetCounter clears the key in every window length.
func (s *Store) ResetCounter(ctx context.Context, key string) error {
	if err := s.conn(ctx).Exec("DELETE FROM counters WHERE counter_key = ?", key).Error; err != nil {
		return errorf("reset counter: %w", err)
	}
	return nil
}

// DeleteStaleCounters deletes per window length, so that the cut-off
// (before minus the length) is a plain time comparison on both dialects.
func (s *Store) DeleteStaleCounters(ctx context.Context, before time.Time) (n int64, err error) {
	var windows []int64
	if err := s.conn(ctx).Raw("SELECT DISTINCT window_ns FROM counters").Scan(&windows).Error; err != nil {
		return 0, errorf("delete stale counters: %w", err)
	}
	for _, w := range windows {
		m, err := s.deleteInBatches(ctx, "counters", "counter_key, window_ns", "window_ns = ? AND window_start < ?", w, utc(before.Add(-time.Duration(w))))
		n += m
		if err != nil {
			return n, errorf("delete stale counters: %w", err)
		}
	}
	return n, nil
}
