package oauth

import (
	"context"
	"sync"

	"github.com/gatehouse/gatehouse/internal/store"
)

// fosite reads the same stored records several times in one request: a
// code exchange reads the code in two handlers, then its PKCE record, then
// its OpenID record, each rebuilt with its client. Two request-scoped
// helpers keep that to one round trip per kind of work:
//
//   - recordMemo remembers, for one request, the records read and what this
//     request wrote to them. Reading a code fetches its PKCE and OpenID
//     records in the same statement. The memo lives in the request's
//     context and dies with it; correctness still rests on the conditional
//     writes (a code is redeemed by flipping it inactive, exactly once), not
//     on what was read.
//   - writeBatch holds the records a flow creates until its transaction
//     commits (or CompleteAuthorize ends), then stores them in one
//     multi-row INSERT, which is atomic by itself.

type recordKey struct {
	kind      store.OAuthKind
	signature string
}

type memoRecord struct {
	rec   store.OAuthRequest
	found bool
	// deleted: this request already deleted the record (with the code it
	// belongs to) and kept what it read for the handler still to come.
	deleted bool
}

type recordMemo struct {
	mu   sync.Mutex
	rows map[recordKey]memoRecord
}

type recordMemoKey struct{}

// withRecordMemo gives ctx a fresh record memo unless it has one.
func withRecordMemo(ctx context.Context) context.Context {
	if recordMemoOf(ctx) != nil {
		return ctx
	}
	return context.WithValue(ctx, recordMemoKey{}, &recordMemo{rows: map[recordKey]memoRecord{}})
}

func recordMemoOf(ctx context.Context) *recordMemo {
	m, _ := ctx.Value(recordMemoKey{}).(*recordMemo)
	return m
}

func (m *recordMemo) lookup(kind store.OAuthKind, sig string) (memoRecord, bool) {
	if m == nil {
		return memoRecord{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.rows[recordKey{kind, sig}]
	return e, ok
}

func (m *recordMemo) put(kind store.OAuthKind, sig string, e memoRecord) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows[recordKey{kind, sig}] = e
}

// forget drops one record (a write whose outcome is not known exactly).
func (m *recordMemo) forget(kind store.OAuthKind, sig string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.rows, recordKey{kind, sig})
}

// forgetAll drops everything: a write that reached records by request id
// or subject, which the memo does not index.
func (m *recordMemo) forgetAll() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.rows)
}

// deactivated notes that this request flipped a record inactive.
func (m *recordMemo) deactivated(kind store.OAuthKind, sig string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := recordKey{kind, sig}
	if e, ok := m.rows[k]; ok && e.found {
		e.rec.Active = false
		m.rows[k] = e
	}
}

type writeBatch struct {
	mu   sync.Mutex
	recs []store.OAuthRequest
}

type writeBatchKey struct{}

func withWriteBatch(ctx context.Context) context.Context {
	return context.WithValue(ctx, writeBatchKey{}, &writeBatch{})
}

func writeBatchOf(ctx context.Context) *writeBatch {
	b, _ := ctx.Value(writeBatchKey{}).(*writeBatch)
	return b
}

// add queues rec; false when ctx has no batch (the caller writes at once).
func (b *writeBatch) add(rec store.OAuthRequest) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recs = append(b.recs, rec)
	return true
}

// flush stores the queued records in one statement. Every other statement
// of the flow flushes first, so the database sees the writes in the order
// fosite made them.
func (b *writeBatch) flush(ctx context.Context, st store.Store) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	recs := b.recs
	b.recs = nil
	b.mu.Unlock()
	if len(recs) == 0 {
		return nil
	}
	if len(recs) == 1 {
		return st.CreateOAuthRequest(ctx, recs[0])
	}
	return st.CreateOAuthRequests(ctx, recs)
}

// discard drops the queue (a rollback).
func (b *writeBatch) discard() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recs = nil
}
