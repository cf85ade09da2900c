package twofactor_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// t0 starts a 30-second step: 1_800_000_000 = 60_000_000 × 30.
var t0 = time.Unix(1_800_000_000, 0).UTC()

// clock is the injected time source; tests move it by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var testMaster = bytes.Repeat([]byte{7}, secret.MasterKeyLen)

type fixture struct {
	st    store.Store
	svc   *twofactor.Service
	clock *clock
	logs  *syncBuffer
}

func newFixture(t testing.TB, st store.Store) *fixture {
	t.Helper()
	sealer, err := secret.NewSealer(secret.Derive(testMaster, secret.PurposeAtRest))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: t0}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &fixture{
		st:    st,
		clock: c,
		logs:  logs,
		svc: &twofactor.Service{
			Store:   st,
			Sealer:  sealer,
			CodeKey: secret.Derive(testMaster, secret.PurposeCodeMAC),
			Audit:   &audit.Recorder{Store: st, Logger: logger, Now: c.Now},
			Logger:  logger,
			Now:     c.Now,
		},
	}
}

func (f *fixture) user(t testing.TB, id string) store.User {
	t.Helper()
	u, _, err := f.st.PutUser(context.Background(), store.User{ID: id, Email: id + "@example.com"}, 0)
	if err != nil {
		t.Fatalf("create user %s: %v", id, err)
	}
	return u
}

// enrol creates a user with TOTP enabled at the clock's current time and
// returns the user, the base32 secret and the recovery codes. The step of
// the confirmation code is used up, as after a real enrolment.
func (f *fixture) enrol(t testing.TB, id string) (store.User, string, []string) {
	t.Helper()
	u := f.user(t, id)
	en, err := f.svc.BeginTOTP(u, "Gatehouse")
	if err != nil {
		t.Fatalf("begin totp: %v", err)
	}
	codes, err := f.svc.ConfirmTOTP(context.Background(), twofactor.ConfirmInput{
		UserID: u.ID, Secret: en.Secret, Code: oathtool(t, en.Secret, f.clock.Now()), PastSteps: 1,
	})
	if err != nil {
		t.Fatalf("confirm totp: %v", err)
	}
	return u, en.Secret, codes
}

func (f *fixture) verify(userID, code string, past int) (twofactor.Result, error) {
	return f.svc.Verify(context.Background(), twofactor.VerifyInput{
		UserID: userID, Code: code, PastSteps: past, AllowRecovery: true,
	})
}

func (f *fixture) audits(t testing.TB, userID, typ string) []store.AuditEvent {
	t.Helper()
	evs, _, err := f.st.ListAudit(context.Background(), store.AuditFilter{UserID: userID, Type: typ}, store.Page{Count: 1000, Page: 1})
	if err != nil {
		t.Fatalf("list audit: %v", err)
	}
	return evs
}

// oathtool computes a TOTP code with Debian's oathtool, an implementation
// independent of the one the service uses. Missing tool → the test fails.
func oathtool(t testing.TB, b32secret string, at time.Time) string {
	t.Helper()
	path, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatalf("oathtool is required for the TOTP tests (Debian package oathtool: apt-get install oathtool): %v", err)
	}
	out, err := exec.Command(path, "--totp", "-b", b32secret, "--now", "@"+strconv.FormatInt(at.Unix(), 10)).CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool: %v: %s", err, out)
	}
	code := strings.TrimSpace(string(out))
	if len(code) != 6 {
		t.Fatalf("oathtool printed %q", out)
	}
	return code
}

// zbarimg decodes a QR data URI with Debian's zbarimg.
func zbarimg(t testing.TB, dataURI string) string {
	t.Helper()
	path, err := exec.LookPath("zbarimg")
	if err != nil {
		t.Fatalf("zbarimg is required for the QR test (Debian package zbar-tools: apt-get install zbar-tools): %v", err)
	}
	const prefix = "data:image/png;base64,"
	if !strings.HasPrefix(dataURI, prefix) {
		t.Fatalf("QR is not a PNG data URI: %.40q", dataURI)
	}
	png, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(dataURI, prefix))
	if err != nil {
		t.Fatalf("decode QR data URI: %v", err)
	}
	file := filepath.Join(t.TempDir(), "qr.png")
	if err := os.WriteFile(file, png, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(path, "--raw", "-q", file)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zbarimg: %v: %s", err, stderr.String())
	}
	return strings.TrimRight(string(out), "\n")
}

// forEachBackend runs fn on SQLite and, when configured, PostgreSQL.
func forEachBackend(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run("on "+b.Name, func(t *testing.T) {
			fn(t, newFixture(t, b.Open(t)))
		})
	}
}

func step(n int) time.Duration { return time.Duration(n) * 30 * time.Second }

func userID(prefix string, i int) string { return fmt.Sprintf("%s-%d", prefix, i) }
