package gormstore

import (
	"context"
	"slices"
	"strings"

	"gorm.io/gorm"
)

// migration is one schema change. Statements are written once for both
// dialects with type placeholders ({{TIME}}, {{BLOB}}, {{BOOL}}) that
// migrationTypes fills in.
type migration struct {
	Version    int
	Name       string
	Statements []string
	// Postgres runs after Statements on PostgreSQL only.
	Postgres []string
}

var migrationTypes = map[string]*strings.Replacer{
	// DATETIME is the declared type go-sqlite recognises to hand back
	// time.Time values; times are stored as UTC text that sorts correctly.
	dialectSQLite:   strings.NewReplacer("{{TIME}}", "DATETIME", "{{BLOB}}", "BLOB", "{{BOOL}}", "BOOLEAN"),
	dialectPostgres: strings.NewReplacer("{{TIME}}", "TIMESTAMPTZ", "{{BLOB}}", "BYTEA", "{{BOOL}}", "BOOLEAN"),
}

// migrations is the ordered history of the schema. Append only: a released
// migration is never edited, a change is a new version.
var migrations = []migration{
	{
		Version: 1,
		Name:    "initial schema",
		Statements: []string{
			`CREATE TABLE users (
				id             TEXT PRIMARY KEY,
				email          TEXT,
				phone_number   TEXT NOT NULL DEFAULT '',
				email_verified {{BOOL}} NOT NULL DEFAULT FALSE,
				phone_verified {{BOOL}} NOT NULL DEFAULT FALSE,
				password_hash  TEXT NOT NULL DEFAULT '',
				inactive       {{BOOL}} NOT NULL DEFAULT FALSE,
				doc            {{BLOB}},
				version        BIGINT NOT NULL,
				created_at     {{TIME}} NOT NULL,
				updated_at     {{TIME}} NOT NULL
			)`,
			// NULL (not "") marks an unset e-mail, so uniqueness applies
			// only to set ones.
			`CREATE UNIQUE INDEX users_email_key ON users (email)`,

			`CREATE TABLE clients (
				id          TEXT PRIMARY KEY,
				secret_hash TEXT NOT NULL DEFAULT '',
				doc         {{BLOB}},
				version     BIGINT NOT NULL,
				created_at  {{TIME}} NOT NULL,
				updated_at  {{TIME}} NOT NULL
			)`,

			`CREATE TABLE auth_configs (
				id         TEXT PRIMARY KEY,
				doc        {{BLOB}},
				version    BIGINT NOT NULL,
				created_at {{TIME}} NOT NULL,
				updated_at {{TIME}} NOT NULL
			)`,

			`CREATE TABLE oauth_requests (
				kind             TEXT NOT NULL,
				signature        TEXT NOT NULL,
				request_id       TEXT NOT NULL,
				client_id        TEXT NOT NULL DEFAULT '',
				subject          TEXT NOT NULL DEFAULT '',
				requested_at     {{TIME}},
				expires_at       {{TIME}},
				active           {{BOOL}} NOT NULL,
				scopes           TEXT NOT NULL DEFAULT '[]',
				granted_scopes   TEXT NOT NULL DEFAULT '[]',
				audience         TEXT NOT NULL DEFAULT '[]',
				granted_audience TEXT NOT NULL DEFAULT '[]',
				form             TEXT NOT NULL DEFAULT '',
				session          {{BLOB}},
				PRIMARY KEY (kind, signature)
			)`,
			`CREATE INDEX oauth_requests_request_id ON oauth_requests (request_id, kind)`,
			`CREATE INDEX oauth_requests_subject ON oauth_requests (subject)`,
			`CREATE INDEX oauth_requests_expires_at ON oauth_requests (expires_at)`,

			`CREATE TABLE browser_sessions (
				id         TEXT PRIMARY KEY,
				user_id    TEXT,
				auth_time  {{TIME}},
				amr        TEXT NOT NULL DEFAULT '[]',
				state      {{BLOB}},
				created_at {{TIME}} NOT NULL,
				updated_at {{TIME}} NOT NULL,
				expires_at {{TIME}} NOT NULL
			)`,
			`CREATE INDEX browser_sessions_user_id ON browser_sessions (user_id)`,
			`CREATE INDEX browser_sessions_expires_at ON browser_sessions (expires_at)`,

			`CREATE TABLE signing_keys (
				id          TEXT PRIMARY KEY,
				algorithm   TEXT NOT NULL,
				private_key {{BLOB}},
				public_jwk  {{BLOB}},
				created_at  {{TIME}} NOT NULL,
				retired_at  {{TIME}},
				not_after   {{TIME}}
			)`,
			`CREATE INDEX signing_keys_created_at ON signing_keys (created_at)`,

			`CREATE TABLE consents (
				user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
				client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
				scopes     TEXT NOT NULL DEFAULT '[]',
				granted_at {{TIME}} NOT NULL,
				PRIMARY KEY (user_id, client_id)
			)`,
			`CREATE INDEX consents_client_id ON consents (client_id)`,

			`CREATE TABLE audit_events (
				id          TEXT PRIMARY KEY,
				occurred_at {{TIME}} NOT NULL,
				event_type  TEXT NOT NULL,
				user_id     TEXT NOT NULL DEFAULT '',
				client_id   TEXT NOT NULL DEFAULT '',
				remote_addr TEXT NOT NULL DEFAULT '',
				request_id  TEXT NOT NULL DEFAULT '',
				detail      TEXT NOT NULL DEFAULT '{}'
			)`,
			`CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at, id)`,
			`CREATE INDEX audit_events_user_id ON audit_events (user_id, occurred_at)`,
			`CREATE INDEX audit_events_event_type ON audit_events (event_type, occurred_at)`,

			// One row per key and window length: the current window's start
			// and its hits.
			`CREATE TABLE counters (
				counter_key  TEXT NOT NULL,
				window_ns    BIGINT NOT NULL,
				window_start {{TIME}} NOT NULL,
				hits         BIGINT NOT NULL,
				PRIMARY KEY (counter_key, window_ns)
			)`,

			`CREATE TABLE two_factors (
				user_id      TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
				method       TEXT NOT NULL,
				enabled      {{BOOL}} NOT NULL DEFAULT FALSE,
				secret       {{BLOB}},
				destination  TEXT NOT NULL DEFAULT '',
				last_step    BIGINT NOT NULL DEFAULT 0,
				enrolled_at  {{TIME}},
				failures     BIGINT NOT NULL DEFAULT 0,
				locked_until {{TIME}},
				lockouts     BIGINT NOT NULL DEFAULT 0,
				updated_at   {{TIME}} NOT NULL
			)`,

			`CREATE TABLE recovery_codes (
				user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
				hash    TEXT NOT NULL,
				used_at {{TIME}},
				PRIMARY KEY (user_id, hash)
			)`,

			`CREATE TABLE one_time_codes (
				id          TEXT PRIMARY KEY,
				user_id     TEXT NOT NULL DEFAULT '',
				purpose     TEXT NOT NULL DEFAULT '',
				channel     TEXT NOT NULL DEFAULT '',
				destination TEXT NOT NULL DEFAULT '',
				binding_id  TEXT NOT NULL,
				code_hash   TEXT NOT NULL,
				created_at  {{TIME}} NOT NULL,
				expires_at  {{TIME}} NOT NULL,
				used_at     {{TIME}}
			)`,
			`CREATE INDEX one_time_codes_binding_id ON one_time_codes (binding_id)`,
			`CREATE INDEX one_time_codes_user_id ON one_time_codes (user_id, created_at)`,
			`CREATE INDEX one_time_codes_destination ON one_time_codes (destination, created_at)`,
			`CREATE INDEX one_time_codes_expires_at ON one_time_codes (expires_at)`,
		},
	},
	{
		Version: 2,
		Name:    "phone number look-up",
		Statements: []string{
			// FindUserByPhone. Not unique: see the note on FindUserByPhone
			// in internal/store for why several users may hold a number.
			`CREATE INDEX users_phone_number ON users (phone_number)`,
		},
	},
	{
		Version: 3,
		Name:    "timed attempt reservations, counter purge",
		Statements: []string{
			// When the latest code attempt was reserved, on the caller's
			// clock: a reservation at the limit that was never followed by
			// a lock or a clear expires from here (ReserveFactorAttempt).
			`ALTER TABLE two_factors ADD COLUMN reserved_at {{TIME}}`,
			// DeleteStaleCounters, per window length.
			`CREATE INDEX counters_window ON counters (window_ns, window_start)`,
		},
	},
	{
		Version: 4,
		Name:    "passkeys",
		Statements: []string{
			// Public key credentials: nothing here is secret.
			`CREATE TABLE webauthn_credentials (
				id               TEXT PRIMARY KEY,
				user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
				public_key       {{BLOB}} NOT NULL,
				attestation_type TEXT NOT NULL DEFAULT '',
				attestation_fmt  TEXT NOT NULL DEFAULT '',
				aaguid           {{BLOB}},
				sign_count       BIGINT NOT NULL DEFAULT 0,
				transports       TEXT NOT NULL DEFAULT '[]',
				attachment       TEXT NOT NULL DEFAULT '',
				user_present     {{BOOL}} NOT NULL DEFAULT FALSE,
				user_verified    {{BOOL}} NOT NULL DEFAULT FALSE,
				backup_eligible  {{BOOL}} NOT NULL DEFAULT FALSE,
				backup_state     {{BOOL}} NOT NULL DEFAULT FALSE,
				name             TEXT NOT NULL DEFAULT '',
				created_at       {{TIME}} NOT NULL,
				last_used_at     {{TIME}}
			)`,
			`CREATE INDEX webauthn_credentials_user_id ON webauthn_credentials (user_id, created_at)`,
			// Ceremony state between options and answer: single use (the
			// consuming DELETE), expiring, bound to what it was issued for.
			`CREATE TABLE webauthn_challenges (
				challenge  TEXT PRIMARY KEY,
				user_id    TEXT NOT NULL DEFAULT '',
				binding_id TEXT NOT NULL,
				purpose    TEXT NOT NULL,
				session    {{BLOB}} NOT NULL,
				created_at {{TIME}} NOT NULL,
				expires_at {{TIME}} NOT NULL
			)`,
			`CREATE INDEX webauthn_challenges_expires_at ON webauthn_challenges (expires_at)`,
		},
	},
	{
		Version: 5,
		Name:    "remembered devices",
		Statements: []string{
			`CREATE TABLE remembered_devices (
				id           TEXT PRIMARY KEY,
				user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
				token_hash   TEXT NOT NULL,
				strategy     TEXT NOT NULL DEFAULT '',
				label        TEXT NOT NULL DEFAULT '',
				created_at   {{TIME}} NOT NULL,
				last_used_at {{TIME}},
				expires_at   {{TIME}} NOT NULL
			)`,
			`CREATE UNIQUE INDEX remembered_devices_token_hash ON remembered_devices (token_hash)`,
			`CREATE INDEX remembered_devices_user_id ON remembered_devices (user_id, created_at)`,
			`CREATE INDEX remembered_devices_expires_at ON remembered_devices (expires_at)`,
		},
	},
	{
		Version: 6,
		Name:    "two-factor enrolment grace",
		Statements: []string{
			// When a second factor first became required for the user: the
			// start of the enrolment grace period.
			`CREATE TABLE two_factor_requirements (
				user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
				since   {{TIME}} NOT NULL
			)`,
		},
	},
	{
		Version: 7,
		Name:    "oauth requests by client",
		Statements: []string{
			// Deleting a client deletes every token and code issued to it.
			`CREATE INDEX oauth_requests_client_id ON oauth_requests (client_id)`,
		},
	},
	{
		Version: 8,
		Name:    "change notifications",
		// Every committed write of a client or an AuthConfig, by any
		// process or by hand, is told to the listeners of changesChannel
		// (see changes.go). The schema is in the payload because channels
		// are per database, not per schema.
		Postgres: []string{
			`CREATE FUNCTION gatehouse_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				PERFORM pg_notify('` + changesChannel + `', json_build_object(
					'schema', TG_TABLE_SCHEMA,
					'table', TG_TABLE_NAME,
					'id', CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END)::text);
				RETURN NULL;
			END
			$$`,
			`CREATE TRIGGER clients_notify_change AFTER INSERT OR UPDATE OR DELETE ON clients
				FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_change()`,
			`CREATE TRIGGER auth_configs_notify_change AFTER INSERT OR UPDATE OR DELETE ON auth_configs
				FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_change()`,
		},
	},
}

// migrationLockKey names Gatehouse's advisory lock (with the schema's hash as
// the second key), so two processes starting at once migrate one after the
// other instead of both creating the same tables.
const migrationLockKey = 0x6761_7465 // "gate"

// Migrate applies the migrations the database has not seen, each in its own
// transaction with its schema_migrations row. Safe to run from several
// processes at once: PostgreSQL takes a transaction-scoped advisory lock,
// SQLite's IMMEDIATE transactions are already exclusive between writers.
func (s *Store) Migrate(ctx context.Context) error {
	return s.MigrateTo(ctx, migrations[len(migrations)-1].Version)
}

// MigrateTo applies the migrations up to and including version, leaving the
// schema as the release that stopped there had it; tests of upgrades build
// their "old" databases with it.
func (s *Store) MigrateTo(ctx context.Context, version int) error {
	if version < 1 || version > migrations[len(migrations)-1].Version {
		return errorf("migrate to version %d: this build knows versions 1 to %d", version, migrations[len(migrations)-1].Version)
	}
	for _, m := range migrations {
		if m.Version > version {
			break
		}
		if err := s.applyMigration(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) applyMigration(ctx context.Context, m migration) error {
	unlock, err := s.lockWriter(ctx)
	if err != nil {
		return errorf("migrate to version %d (%s): %w", m.Version, m.Name, err)
	}
	defer unlock()
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if s.dialect == dialectPostgres {
			// A migration may rewrite a large table, and wait for another
			// process's migration: the connections' statement timeout is
			// for requests, not for this.
			if err := tx.Exec("SET LOCAL statement_timeout = 0").Error; err != nil {
				return errorf("lift the statement timeout for the migration: %w", err)
			}
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?, hashtext(coalesce(current_schema(), '')))", migrationLockKey).Error; err != nil {
				return errorf("take migration lock: %w", err)
			}
		}
		if err := tx.Exec(s.migrationsTableSQL()).Error; err != nil {
			return errorf("create schema_migrations: %w", err)
		}
		var applied int64
		if err := tx.Raw("SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.Version).Row().Scan(&applied); err != nil {
			return errorf("read schema_migrations: %w", err)
		}
		if applied > 0 {
			return nil
		}
		rep := migrationTypes[s.dialect]
		stmts := m.Statements
		if s.dialect == dialectPostgres {
			stmts = append(slices.Clone(stmts), m.Postgres...)
		}
		for i, stmt := range stmts {
			if err := tx.Exec(rep.Replace(stmt)).Error; err != nil {
				return errorf("statement %d: %w", i+1, err)
			}
		}
		if err := tx.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
			m.Version, m.Name, s.now()).Error; err != nil {
			return errorf("record migration: %w", err)
		}
		s.logger.InfoContext(ctx, "applied database migration", "version", m.Version, "name", m.Name, "dialect", s.dialect)
		return nil
	})
	if err != nil {
		return errorf("migrate to version %d (%s): %w", m.Version, m.Name, err)
	}
	return nil
}

func (s *Store) migrationsTableSQL() string {
	return migrationTypes[s.dialect].Replace(`CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at {{TIME}} NOT NULL
	)`)
}

// MigrationStatus lists the versions recorded in schema_migrations, oldest
// first, and the newest version this build knows.
func (s *Store) MigrationStatus(ctx context.Context) (applied []int, latest int, err error) {
	latest = migrations[len(migrations)-1].Version
	rows, err := s.db.WithContext(ctx).Raw("SELECT version FROM schema_migrations ORDER BY version").Rows()
	if err != nil {
		return nil, latest, errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, latest, errorf("read schema_migrations: %w", err)
		}
		applied = append(applied, v)
	}
	if err := rows.Err(); err != nil {
		return nil, latest, errorf("read schema_migrations: %w", err)
	}
	return applied, latest, nil
}
