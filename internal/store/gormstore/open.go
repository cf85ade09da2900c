package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/libtnb/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	moderncsqlite "modernc.org/sqlite"

	"github.com/gatehouse/gatehouse/internal/store"
)

const (
	dialectSQLite   = "sqlite"
	dialectPostgres = "postgres"
)

// sqliteBusyTimeout is how long a SQLite writer waits for the write lock
// before failing with SQLITE_BUSY. Writers are serialised, so under load they
// queue here rather than fail.
const sqliteBusyTimeout = 15 * time.Second

// sqliteConns and sqliteCacheKiB size the SQLite pool: with the default 16
// connections of 2 MiB page cache each, SQLite's memory reached ~50 MiB
// under load, more than the rest of the server. Eight connections keep two
// cores busy; the hot pages (B-tree roots and inner pages) fit in 1 MiB,
// and leaf pages come from the operating system's cache.
const (
	sqliteConns    = 4
	sqliteCacheKiB = 512
)

// Store is the gorm implementation of store.Store. It is safe for concurrent
// use; a transaction carried in a context belongs to one goroutine at a time.
type Store struct {
	db      *gorm.DB
	dialect string
	logger  *slog.Logger
	// writers queues this process's SQLite writers (see writelock.go); nil
	// on PostgreSQL.
	writers chan struct{}
	// inserts groups the token INSERTs of SQLite writers (see batch.go).
	inserts insertBatcher
	// Now is the clock for UpdatedAt stamps and session expiry checks.
	Now func() time.Time
	// PurgeBatch bounds the rows one statement of a DeleteExpired… or
	// DeleteStaleCounters purge removes (0: defaultPurgeBatch).
	PurgeBatch int
	// listen configures the change feed's connection (see changes.go); nil
	// on SQLite, which has no feed.
	listen *pgx.ConnConfig
	// listenerPID is the server process of the feed's latest connection,
	// for tests that cut it.
	listenerPID atomic.Uint32
	// pingEvery and pingTimeout pace the feed's probes (changesPingEvery,
	// changesPingTimeout; shorter in tests).
	pingEvery, pingTimeout time.Duration
}

var _ store.Store = (*Store)(nil)

// PostgresOptions size the PostgreSQL connection pool and bound its
// statements. Zero values take the defaults of DefaultPostgresOptions, except
// where a field says 0 turns it off.
type PostgresOptions struct {
	// MaxOpenConns bounds the connections of this process; a request waits
	// for one at most until its context ends.
	MaxOpenConns int
	// MaxIdleConns is how many connections stay open unused; -1 keeps none.
	MaxIdleConns int
	// ConnMaxIdleTime closes connections unused this long; -1: never.
	ConnMaxIdleTime time.Duration
	// ConnMaxLifetime closes connections this long after they were opened; -1: never.
	ConnMaxLifetime time.Duration
	// StatementTimeout is the statement_timeout of every connection, unless
	// the DSN sets one; -1: none. Migrations run without it.
	StatementTimeout time.Duration
}

// DefaultPostgresOptions leave room for other processes and clients: two
// Gatehouse processes take at most 20 of PostgreSQL's default 100
// connections, and give back what they do not use within a minute.
func DefaultPostgresOptions() PostgresOptions {
	return PostgresOptions{
		MaxOpenConns:     10,
		MaxIdleConns:     5,
		ConnMaxIdleTime:  time.Minute,
		ConnMaxLifetime:  30 * time.Minute,
		StatementTimeout: 10 * time.Second,
	}
}

// withDefaults fills the zero fields and turns the -1 "off" values into 0.
func (o PostgresOptions) withDefaults() PostgresOptions {
	d := DefaultPostgresOptions()
	if o.MaxOpenConns <= 0 {
		o.MaxOpenConns = d.MaxOpenConns
	}
	pick := func(v, def time.Duration) time.Duration {
		switch {
		case v == 0:
			return def
		case v < 0:
			return 0
		}
		return v
	}
	switch {
	case o.MaxIdleConns == 0:
		o.MaxIdleConns = min(d.MaxIdleConns, o.MaxOpenConns)
	case o.MaxIdleConns < 0:
		o.MaxIdleConns = 0
	}
	o.MaxIdleConns = min(o.MaxIdleConns, o.MaxOpenConns)
	o.ConnMaxIdleTime = pick(o.ConnMaxIdleTime, d.ConnMaxIdleTime)
	o.ConnMaxLifetime = pick(o.ConnMaxLifetime, d.ConnMaxLifetime)
	o.StatementTimeout = pick(o.StatementTimeout, d.StatementTimeout)
	return o
}

// postgresConnectTimeout bounds the dial and start-up of a connection when
// the DSN sets no connect_timeout, also for work without a deadline of its
// own (migrations, purges): a stalled server must not hold a caller forever.
const postgresConnectTimeout = 10 * time.Second

// Open opens the database named by databaseURL: postgres:// or postgresql://
// URLs (or key=value connection strings) open PostgreSQL; "" opens SQLite at dataDir/gatehouse.db; "sqlite:PATH"
// or a plain file path opens SQLite at PATH. It does not migrate: call Migrate.
func Open(databaseURL, dataDir string, logger *slog.Logger) (*Store, error) {
	return OpenWith(databaseURL, dataDir, PostgresOptions{}, logger)
}

// OpenWith is Open with the PostgreSQL pool and statement settings (unused
// for SQLite).
func OpenWith(databaseURL, dataDir string, pg PostgresOptions, logger *slog.Logger) (*Store, error) {
	switch {
	case strings.HasPrefix(databaseURL, "postgres://"), strings.HasPrefix(databaseURL, "postgresql://"):
		return OpenPostgresWith(databaseURL, pg, logger)
	case strings.Contains(databaseURL, "host=") || strings.Contains(databaseURL, "dbname="):
		// A key=value PostgreSQL connection string.
		return OpenPostgresWith(databaseURL, pg, logger)
	case databaseURL == "":
		if dataDir == "" {
			return nil, errors.New("open store: neither a database URL nor a data directory is set")
		}
		return OpenSQLite(filepath.Join(dataDir, "gatehouse.db"), logger)
	case strings.HasPrefix(databaseURL, "sqlite://"):
		return OpenSQLite(strings.TrimPrefix(databaseURL, "sqlite://"), logger)
	case strings.HasPrefix(databaseURL, "sqlite:"):
		return OpenSQLite(strings.TrimPrefix(databaseURL, "sqlite:"), logger)
	case strings.Contains(databaseURL, "://"):
		u, err := url.Parse(databaseURL)
		scheme := "unknown"
		if err == nil {
			scheme = u.Scheme
		}
		return nil, errorf("open store: unsupported database URL scheme %q", scheme)
	default:
		return OpenSQLite(databaseURL, logger)
	}
}

// OpenSQLite opens (creating if needed) the SQLite database file at path in
// WAL mode with foreign keys on. Transactions begin IMMEDIATE, so writers are
// serialised: SQLite has no SELECT … FOR UPDATE, and a deferred transaction
// that upgrades to a writer could fail instead of waiting.
func OpenSQLite(path string, logger *slog.Logger) (*Store, error) {
	if path == "" {
		return nil, errors.New("open sqlite: empty path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, errorf("open sqlite %q: the path may not contain '?' or '#'", path)
	}
	memory := path == ":memory:"
	if !memory {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, errorf("open sqlite: create directory: %w", err)
		}
		// The file holds password hashes and sealed keys: create it private
		// (SQLite gives the -wal and -shm files the same mode).
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, errorf("open sqlite: %w", err)
		}
		_ = f.Close()
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	if !memory {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", sqliteCacheKiB))
	}
	q.Set("_txlock", "immediate")
	// Times written as earlier versions (glebarez/go-sqlite) wrote them,
	// "2006-01-02 15:04:05.999999999-07:00" (modernc's default is
	// time.Time.String); both read DATETIME text back as time.Time. The
	// driver's _texttotime and _inttotime would also turn date-like text of
	// expressions, and integers, into times, which the old driver did not.
	q.Set("_time_format", "sqlite")
	connector, err := moderncsqlite.NewConnector(path + "?" + q.Encode())
	if err != nil {
		return nil, errorf("open sqlite %q: %w", path, err)
	}
	sqlDB := sql.OpenDB(keepingConnector{Connector: connector, keep: sqliteKeptStatements})

	logger = orDiscard(logger)
	db, err := gorm.Open(sqlite.New(sqlite.Config{Conn: sqlDB}), gormConfig(logger))
	if err != nil {
		_ = sqlDB.Close()
		return nil, errorf("open sqlite %q: %w", path, err)
	}
	if memory {
		// Each connection to :memory: is its own empty database.
		sqlDB.SetMaxOpenConns(1)
	} else {
		// Writers queue on the writer lock anyway; a small pool keeps readers
		// concurrent without piling up connections that only wait. Each
		// connection has its own page cache (sqliteCacheKiB) in memory
		// outside the Go heap, so the pool size is also a memory bound.
		sqlDB.SetMaxOpenConns(sqliteConns)
		sqlDB.SetMaxIdleConns(sqliteConns)
	}
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{db: db, dialect: dialectSQLite, logger: logger, writers: newWriterQueue(), Now: time.Now}
	if err := s.queueStatementWriters(db); err != nil {
		_ = sqlDB.Close()
		return nil, errorf("open sqlite %q: %w", path, err)
	}
	if err := s.Ping(context.Background()); err != nil {
		_ = sqlDB.Close()
		return nil, errorf("open sqlite %q: %w", path, err)
	}
	return s, nil
}

// OpenPostgres connects to PostgreSQL with DefaultPostgresOptions. The DSN
// may carry runtime parameters such as search_path.
func OpenPostgres(dsn string, logger *slog.Logger) (*Store, error) {
	return OpenPostgresWith(dsn, PostgresOptions{}, logger)
}

// OpenPostgresWith connects to PostgreSQL with the given pool and statement
// settings. A statement_timeout or connect_timeout in the DSN wins over
// opts and the default.
func OpenPostgresWith(dsn string, opts PostgresOptions, logger *slog.Logger) (*Store, error) {
	logger = orDiscard(logger)
	opts = opts.withDefaults()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// The DSN may hold a password: name the failure, not the DSN.
		return nil, errors.New("open postgres: the connection string does not parse")
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = postgresConnectTimeout
	}
	if _, set := cfg.RuntimeParams["statement_timeout"]; !set && opts.StatementTimeout > 0 {
		cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(max(opts.StatementTimeout.Milliseconds(), 1), 10)
	}
	sqlDB := stdlib.OpenDB(*cfg)
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), gormConfig(logger))
	if err != nil {
		_ = sqlDB.Close()
		return nil, errorf("open postgres: %w", err)
	}
	// Fewer idle slots than open ones re-dial connections in a burst (the
	// load benchmark saw half the throughput with 25 open and 5 idle); a
	// dedicated database can set maxIdleConns = maxOpenConns.
	sqlDB.SetMaxOpenConns(opts.MaxOpenConns)
	sqlDB.SetMaxIdleConns(opts.MaxIdleConns)
	sqlDB.SetConnMaxIdleTime(opts.ConnMaxIdleTime)
	sqlDB.SetConnMaxLifetime(opts.ConnMaxLifetime)
	s := &Store{db: db, dialect: dialectPostgres, logger: logger, Now: time.Now,
		listen: listenConfig(cfg), pingEvery: changesPingEvery, pingTimeout: changesPingTimeout}
	ctx, cancel := context.WithTimeout(context.Background(), postgresConnectTimeout)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, errorf("open postgres: %w", err)
	}
	return s, nil
}

// PoolStats reports the connection pool (open, in use, idle, waits), for
// tests and diagnostics.
func (s *Store) PoolStats() sql.DBStats {
	sqlDB, err := s.db.DB()
	if err != nil {
		return sql.DBStats{}
	}
	return sqlDB.Stats()
}

// Statements is the number of SQL statements this store has run, BEGIN,
// COMMIT and ROLLBACK included: each is a round trip to a database server.
// Tests use it to hold hot paths to a budget of database round trips.
func (s *Store) Statements() int64 {
	if l, ok := s.db.Logger.(*gormLogger); ok {
		return l.statements.Load()
	}
	return 0
}

// roundTrip counts a statement gorm does not trace (BEGIN, COMMIT, ROLLBACK
// of a whole transaction; savepoints are ordinary statements).
func (s *Store) roundTrip() {
	if l, ok := s.db.Logger.(*gormLogger); ok {
		l.statements.Add(1)
	}
}

func gormConfig(logger *slog.Logger) *gorm.Config {
	return &gorm.Config{
		TranslateError: true,
		// Every statement here is either single and atomic or runs inside
		// an explicit transaction.
		SkipDefaultTransaction: true,
		Logger:                 &gormLogger{logger: logger, slow: 500 * time.Millisecond},
		NowFunc:                func() time.Time { return time.Now().UTC() },
	}
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return errorf("ping database: %w", err)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return errorf("ping database: %w", err)
	}
	return nil
}

// withoutStatementTimeout runs fn in a transaction free of PostgreSQL's
// statement timeout: for the purges' batches, which keep no request waiting
// and may wait on a lock held by maintenance work. Elsewhere (SQLite, or
// inside a caller's transaction) it runs fn as it is.
func (s *Store) withoutStatementTimeout(ctx context.Context, fn func(ctx context.Context) error) error {
	if s.dialect != dialectPostgres || s.current(ctx) != nil {
		return fn(ctx)
	}
	return s.InTx(ctx, func(ctx context.Context) error {
		if err := s.conn(ctx).Exec("SET LOCAL statement_timeout = 0").Error; err != nil {
			return errorf("lift the statement timeout: %w", err)
		}
		return fn(ctx)
	})
}

// readyProbeKey names the counters row CheckWrites rewrites. Its window is
// 0, so no throttling counter can share it; DeleteStaleCounters purges it
// like any other once probes stop.
const readyProbeKey = "gatehouse:ready-probe"

// CheckWrites is one UPSERT of the probe row, committed on its own (on
// SQLite it queues with the other writers, as a real write would).
func (s *Store) CheckWrites(ctx context.Context) error {
	err := s.conn(ctx).Exec(`INSERT INTO counters (counter_key, window_ns, window_start, hits) VALUES (?, 0, ?, 1)
		ON CONFLICT (counter_key, window_ns) DO UPDATE SET window_start = excluded.window_start, hits = counters.hits % 1000000 + 1`,
		readyProbeKey, tv(s.now())).Error
	if err != nil {
		return errorf("write probe: %w", err)
	}
	return nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return errorf("close database: %w", err)
	}
	if err := sqlDB.Close(); err != nil {
		return errorf("close database: %w", err)
	}
	return nil
}

// Dialect names the backend: "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

func (s *Store) now() time.Time {
	if s.Now == nil {
		return utc(time.Now())
	}
	return utc(s.Now())
}

// SQLDB is the connection pool under the store (the server exports its
// figures as metrics).
func (s *Store) SQLDB() (*sql.DB, error) { return s.db.DB() }
