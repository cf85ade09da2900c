package gormstore

import (
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gatehouse/gatehouse/internal/store"
)

// utc normalises a time the way the database keeps it: UTC, microsecond
// precision (PostgreSQL's), so a record reads back equal to what was written.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// tv is a time as a statement argument: NULL for the zero time.
func tv(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return utc(t)
}

// dbTime scans a nullable time column. SQLite hands back text when it cannot
// see the column's declared type (RETURNING, expressions); PostgreSQL hands
// back Local times.
type dbTime struct{ T time.Time }

var _ sql.Scanner = (*dbTime)(nil)

var sqliteTimeFormats = []string{
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	time.RFC3339Nano,
}

func (d *dbTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		d.T = time.Time{}
		return nil
	case time.Time:
		d.T = utc(x)
		return nil
	case string:
		return d.parse(x)
	case []byte:
		return d.parse(string(x))
	default:
		return errorf("scan time: unsupported type %T", v)
	}
}

func (d *dbTime) parse(s string) error {
	s = strings.TrimSuffix(s, "Z")
	for _, f := range sqliteTimeFormats {
		if t, err := time.ParseInLocation(f, s, time.UTC); err == nil {
			d.T = utc(t)
			return nil
		}
	}
	return errorf("scan time: unrecognised format %q", s)
}

// Value lets a dbTime be an argument too.
func (d dbTime) Value() (driver.Value, error) { return tv(d.T), nil }

// nullString maps "" to NULL, for columns that are unique or indexed only
// when set.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// dbString scans a nullable text column into "".
type dbString struct{ S string }

func (d *dbString) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		d.S = ""
	case string:
		d.S = x
	case []byte:
		d.S = string(x)
	default:
		return errorf("scan string: unsupported type %T", v)
	}
	return nil
}

func encodeStrings(v []string) (string, error) {
	if len(v) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func decodeStrings(s string) ([]string, error) {
	if s == "" || s == "[]" || s == "null" {
		return nil, nil
	}
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	return v, nil
}

func encodeMap(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func decodeMap(s string) (map[string]string, error) {
	if s == "" || s == "{}" || s == "null" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, err
	}
	return m, nil
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// translate maps driver errors that surface outside gorm's own error path
// (a *sql.Row scanned by hand) the way TranslateError maps the others.
func (s *Store) translate(err error) error {
	if err == nil {
		return nil
	}
	if tr, ok := s.db.Dialector.(gorm.ErrorTranslator); ok {
		if t := tr.Translate(err); t != nil {
			return t
		}
	}
	return err
}

func isDuplicate(err error) bool { return errors.Is(err, gorm.ErrDuplicatedKey) }

func isForeignKey(err error) bool { return errors.Is(err, gorm.ErrForeignKeyViolated) }

// keyErr turns the duplicate-key and foreign-key errors of a write into the
// store's sentinels; anything else is returned as it is.
func keyErr(err error) error {
	switch {
	case isDuplicate(err):
		return store.ErrConflict
	case isForeignKey(err):
		return store.ErrNotFound
	default:
		return err
	}
}

// pageSQL renders the LIMIT/OFFSET of a page; Count <= 0 lists everything.
func pageSQL(p store.Page) (string, []any) {
	if p.Count <= 0 {
		return "", nil
	}
	return " LIMIT ? OFFSET ?", []any{p.Count, p.Offset()}
}
