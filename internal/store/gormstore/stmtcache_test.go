package gormstore

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// rawSQLite opens a store on a new file and hands one of its connections to
// the test, with the store closed at the end.
func rawSQLite(t *testing.T) (*sql.DB, *sql.Conn) {
	t.Helper()
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "kept.db"), nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close the store with kept statements: %v", err)
		}
	})
	sqlDB, err := s.SQLDB()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	for _, q := range []string{"CREATE TABLE kept (n INTEGER)", "INSERT INTO kept (n) VALUES (1), (2), (3)"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return sqlDB, conn
}

func keeping(t *testing.T, conn *sql.Conn) *keepingConn {
	t.Helper()
	var kc *keepingConn
	if err := conn.Raw(func(dc any) error { kc = dc.(*keepingConn); return nil }); err != nil {
		t.Fatal(err)
	}
	return kc
}

func sum(t *testing.T, rows *sql.Rows) int {
	t.Helper()
	total := 0
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

func TestSQLiteConnectionsKeepTheirCompiledStatements(t *testing.T) {
	ctx := context.Background()
	const q = "SELECT n FROM kept WHERE n >= ?"

	t.Run("a query run again on a connection reuses the statement compiled the first time", func(t *testing.T) {
		_, conn := rawSQLite(t)
		var first *keptStmt
		for i := range 3 {
			rows, err := conn.QueryContext(ctx, q, 2)
			if err != nil {
				t.Fatal(err)
			}
			if got := sum(t, rows); got != 5 {
				t.Fatalf("run %d: sum %d, want 5", i, got)
			}
			_ = rows.Close()
			e, ok := keeping(t, conn).byQuery[q]
			if !ok {
				t.Fatalf("run %d: the query is not kept", i)
			}
			k := e.Value.(*keptStmt)
			if first == nil {
				first = k
			} else if k != first {
				t.Fatalf("run %d: the statement was compiled again", i)
			}
			if k.open {
				t.Fatalf("run %d: the kept statement is still marked open after its rows closed", i)
			}
		}
	})

	t.Run("the same query runs again while rows of the first run are still open", func(t *testing.T) {
		_, conn := rawSQLite(t)
		outer, err := conn.QueryContext(ctx, q, 1)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for outer.Next() {
			var n int
			if err := outer.Scan(&n); err != nil {
				t.Fatal(err)
			}
			inner, err := conn.QueryContext(ctx, q, n)
			if err != nil {
				t.Fatal(err)
			}
			total += sum(t, inner)
			_ = inner.Close()
		}
		_ = outer.Close()
		// n=1: 1+2+3, n=2: 2+3, n=3: 3.
		if total != 14 {
			t.Fatalf("nested runs summed %d, want 14", total)
		}
	})

	t.Run("a statement pushed out while its rows are open still reads them and is closed with them", func(t *testing.T) {
		_, conn := rawSQLite(t)
		kc := keeping(t, conn)
		kc.keep = 2
		rows, err := conn.QueryContext(ctx, q, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		held := kc.byQuery[q].Value.(*keptStmt)
		for _, other := range []string{"SELECT COUNT(*) FROM kept", "SELECT MAX(n) FROM kept"} {
			var n int
			if err := conn.QueryRowContext(ctx, other).Scan(&n); err != nil {
				t.Fatalf("%s: %v", other, err)
			}
		}
		if _, kept := kc.byQuery[q]; kept || !held.dropped {
			t.Fatalf("the least recently used statement was not pushed out (kept %d)", len(kc.byQuery))
		}
		if got := sum(t, rows); got != 6 {
			t.Fatalf("rows of the pushed-out statement summed %d, want 6", got)
		}
		if err := rows.Close(); err != nil {
			t.Fatalf("close rows of a pushed-out statement: %v", err)
		}
		if kc.recent.Len() != 2 || len(kc.byQuery) != 2 {
			t.Fatalf("kept %d statements (%d by query), want 2", kc.recent.Len(), len(kc.byQuery))
		}
	})

	t.Run("a statement that does not compile is an error of the query, not of the connection", func(t *testing.T) {
		_, conn := rawSQLite(t)
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT n FROM no_such_table").Scan(&n); err == nil {
			t.Fatal("a query of a missing table succeeded")
		}
		if _, kept := keeping(t, conn).byQuery["SELECT n FROM no_such_table"]; kept {
			t.Fatal("a statement that failed to compile was kept")
		}
		if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM kept").Scan(&n); err != nil || n != 3 {
			t.Fatalf("the connection after a failed compile: n=%d err=%v", n, err)
		}
	})

	t.Run("every connection of the pool runs with the store's settings", func(t *testing.T) {
		sqlDB, _ := rawSQLite(t)
		var conns []*sql.Conn
		for range sqliteConns - 1 {
			c, err := sqlDB.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for i, c := range conns {
			var fk, busy int
			var journal string
			if err := c.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
				t.Fatal(err)
			}
			if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
				t.Fatal(err)
			}
			if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
				t.Fatal(err)
			}
			if fk != 1 || busy != int(sqliteBusyTimeout.Milliseconds()) || journal != "wal" {
				t.Errorf("connection %d: foreign_keys=%d busy_timeout=%d journal_mode=%s", i, fk, busy, journal)
			}
			_ = c.Close()
		}
	})
}
