// Package gormstore implements store.Store on gorm, for SQLite (pure Go:
// modernc.org/sqlite through github.com/libtnb/sqlite) and PostgreSQL. It is
// the only package that imports gorm: it owns the schema and its versioned
// migrations, the mapping between records and rows, the transaction carried
// in a context, and the compiled statements SQLite connections keep.
//
// Race-sensitive operations (optimistic versions, token deactivation, TOTP
// replay guard, attempt reservation, single-use codes, counters) are single
// conditional statements whose affected-row count decides the winner, so they
// hold across processes on PostgreSQL; SQLite serialises writers with
// BEGIN IMMEDIATE and a busy timeout.
//
// Details the interface leaves open, decided here and pinned by the
// conformance suite: deleting one missing record (user, client, auth config,
// OAuth request, browser session, second factor) is ErrNotFound, bulk deletes
// of nothing are not errors; e-mails are stored lower-cased; second factors,
// recovery codes and consents need their user (and consents their client) to
// exist, else ErrNotFound, and go when it is deleted; nested transactions are
// savepoints of the outer one.
package gormstore
