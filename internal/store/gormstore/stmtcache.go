package gormstore

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
)

// sqliteKeptStatements is how many compiled statements each SQLite
// connection keeps. The hot paths use a few dozen; the rest (admin searches,
// batched INSERTs of every width up to maxBatch) take turns in the others.
const sqliteKeptStatements = 128

// keepingConnector gives database/sql SQLite connections that keep their
// compiled statements. modernc.org/sqlite compiles a statement from its text
// at every Exec or Query called on the connection (about a tenth of the
// server's CPU per login and per introspection), but only resets and
// rebinds a driver.Stmt it has compiled once. Keeping them in the
// connection, rather than as database/sql or gorm prepared statements, keeps
// them out of the pool's bookkeeping, serves transactions and plain
// statements alike, and leaves a failed prepare to surface as the
// statement's error (gorm's PrepareStmt answers it with an empty sql.Row,
// whose Scan panics).
type keepingConnector struct {
	driver.Connector
	keep int
}

// sqliteConn is what the wrapper needs of modernc.org/sqlite's connection.
type sqliteConn interface {
	driver.Conn
	driver.ConnPrepareContext
	driver.ConnBeginTx
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// sqliteRows is what database/sql and gorm read of modernc.org/sqlite's rows
// besides the values: the declared column types.
type sqliteRows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeLength
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypePrecisionScale
	driver.RowsColumnTypeScanType
}

// sqliteStmt is what the wrapper runs of a compiled statement.
type sqliteStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// narrow returns v as the driver interface T the wrapper needs, or closes v
// and names what it lacks: a driver update that drops a method fails to
// connect rather than losing a feature.
func narrow[T any](v interface{ Close() error }, lacks string) (T, error) {
	t, ok := v.(T)
	if !ok {
		_ = v.Close()
		return t, fmt.Errorf("sqlite driver %T lacks %s", v, lacks)
	}
	return t, nil
}

func (c keepingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, err := narrow[sqliteConn](conn, "a context method")
	if err != nil {
		return nil, err
	}
	return &keepingConn{sqliteConn: sc, keep: c.keep, byQuery: map[string]*list.Element{}, recent: list.New()}, nil
}

// keepingConn is one connection and its kept statements, least recently used
// at the back. database/sql uses a connection from one goroutine at a time,
// so it needs no lock.
type keepingConn struct {
	sqliteConn
	keep    int
	byQuery map[string]*list.Element // of *keptStmt
	recent  *list.List
}

type keptStmt struct {
	query string
	stmt  sqliteStmt
	// open: rows read from it are still open (a transaction may run the same
	// query again inside the loop), so it cannot be reset for another run.
	open bool
	// dropped: pushed out of the cache while open; closed with its rows.
	dropped bool
}

// kept returns the connection's compiled statement for query, compiling it
// on first use, or nil when the statement is busy with open rows and the
// query should run on its own.
func (c *keepingConn) kept(ctx context.Context, query string) (*keptStmt, error) {
	if e, ok := c.byQuery[query]; ok {
		k := e.Value.(*keptStmt)
		if k.open {
			return nil, nil
		}
		c.recent.MoveToFront(e)
		return k, nil
	}
	ds, err := c.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	st, err := narrow[sqliteStmt](ds, "a context method")
	if err != nil {
		return nil, err
	}
	k := &keptStmt{query: query, stmt: st}
	c.byQuery[query] = c.recent.PushFront(k)
	for c.recent.Len() > c.keep {
		c.drop(c.recent.Back())
	}
	return k, nil
}

func (c *keepingConn) drop(e *list.Element) {
	k := c.recent.Remove(e).(*keptStmt)
	delete(c.byQuery, k.query)
	if k.open {
		k.dropped = true
		return
	}
	_ = k.stmt.Close()
}

func (c *keepingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	k, err := c.kept(ctx, query)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	return k.stmt.ExecContext(ctx, args)
}

func (c *keepingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	k, err := c.kept(ctx, query)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := k.stmt.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	sr, err := narrow[sqliteRows](rows, "column types")
	if err != nil {
		return nil, err
	}
	k.open = true
	return &keptRows{sqliteRows: sr, from: k}, nil
}

// Close closes the kept statements before the connection: SQLite refuses to
// close a connection with statements left.
func (c *keepingConn) Close() error {
	var errs []error
	for e := c.recent.Front(); e != nil; e = e.Next() {
		errs = append(errs, e.Value.(*keptStmt).stmt.Close())
	}
	return errors.Join(append(errs, c.sqliteConn.Close())...)
}

// keptRows gives its statement back when closed (database/sql closes rows
// before it reuses the connection).
type keptRows struct {
	sqliteRows
	from *keptStmt
}

func (r *keptRows) Close() error {
	err := r.sqliteRows.Close()
	if k := r.from; k != nil {
		r.from = nil
		k.open = false
		if k.dropped {
			err = errors.Join(err, k.stmt.Close())
		}
	}
	return err
}
