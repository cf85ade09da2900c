package gormstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	sqlite "modernc.org/sqlite"

	"github.com/gatehouse/gatehouse/internal/store"
)

// unavailableError marks an error of the database that a retry later may
// not meet: it matches store.ErrUnavailable and unwraps to the cause.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string        { return e.err.Error() }
func (e *unavailableError) Unwrap() error        { return e.err }
func (e *unavailableError) Is(target error) bool { return target == store.ErrUnavailable }

// errorf is fmt.Errorf for every error the store returns: the one place
// where driver and pool failures become store.ErrUnavailable, so that no
// method can forget it.
func errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if unavailable(err) {
		return &unavailableError{err}
	}
	return err
}

// SQLite primary result codes that mean the database cannot serve now
// (https://sqlite.org/rescode.html); constraint and logic errors are not
// among them.
var sqliteUnavailable = map[int]bool{
	5:  true, // SQLITE_BUSY: another process holds the write lock
	6:  true, // SQLITE_LOCKED
	7:  true, // SQLITE_NOMEM
	8:  true, // SQLITE_READONLY: read-only file or file system
	9:  true, // SQLITE_INTERRUPT: the context ended
	10: true, // SQLITE_IOERR
	11: true, // SQLITE_CORRUPT
	13: true, // SQLITE_FULL: the disk is full
	14: true, // SQLITE_CANTOPEN
	15: true, // SQLITE_PROTOCOL
	26: true, // SQLITE_NOTADB
}

// unavailable tells failures of the database's availability (connection,
// resources, time) from the outcomes and bugs a retry would not change:
// not found, conflicts, constraint violations, SQL errors.
func unavailable(err error) bool {
	switch {
	case err == nil, errors.Is(err, store.ErrUnavailable):
		return false // nothing to do, or already marked
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, errWriterQueueTimeout), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, pgconn.ErrConnClosed):
		// ErrConnClosed: the connection died under a statement (the
		// server crashed or was restarted) and pgx closed it.
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return postgresUnavailable(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.Timeout(err) {
		return true
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		return sqliteUnavailable[liteErr.Code()&0xff]
	}
	// database/sql's error for a closed pool is not exported.
	return strings.Contains(err.Error(), "sql: database is closed")
}

// postgresUnavailable reads a SQLSTATE
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
func postgresUnavailable(code string) bool {
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "08", // connection exception
		"40", // transaction rollback: serialization failure, deadlock
		"53", // insufficient resources: disk full, out of memory, too many connections
		"57", // operator intervention: statement timeout, query cancelled, shutdown, cannot connect now
		"58": // system error: I/O error
		return true
	}
	switch code {
	case "55P03", // lock_not_available (lock_timeout)
		"25006", // read_only_sql_transaction (a standby, or default_transaction_read_only)
		"25P03": // idle_in_transaction_session_timeout
		return true
	}
	return false
}
