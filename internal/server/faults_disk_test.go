package server

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// TestSQLiteOnAFullDisk puts the database on a file system of its own (a
// 16 MiB tmpfs) and fills it to the last byte. Every surface that writes
// answers 503 with Retry-After (never 500), readiness says not ready, the
// database stays intact, and once space is freed service resumes without a
// restart and nothing acknowledged is missing.
func TestSQLiteOnAFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a full disk needs a small file system of the test's own: mounting a tmpfs needs root (CI runs as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs for the full disk: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	path := filepath.Join(dir, "gatehouse.db")
	app := startApp(t, gormstoretest.OpenSQLiteAt(t, path))
	app.mustPut("/Client/svc", "secret: svc-secret-0123456789\ngrant_types: [client_credentials]\n")
	app.mustPut("/Client/spa", "grant_types: [password]\nallowed_origins: ['https://app.example']\n")
	app.mustPut("/User/alice", "email: alice@example.com\npassword: alice-password-1\n")
	reqs := stalledRequests(t, app)
	// A few hundred acknowledged writes before the disk fills.
	var acked []string
	for i := range 200 {
		id := fmt.Sprintf("before-%d", i)
		app.mustPut("/User/"+id, "email: "+id+"@example.com\n")
		acked = append(acked, id)
	}

	// Fill the file system: first a file up to ENOSPC, then the last blocks.
	filler := filepath.Join(dir, "filler")
	fill := func(t *testing.T) {
		f, err := os.Create(filler)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		chunk := bytes.Repeat([]byte{0xff}, 64<<10)
		for _, size := range []int{64 << 10, 4 << 10, 512, 1} {
			for {
				if _, err := f.Write(chunk[:size]); err != nil {
					if !errors.Is(err, syscall.ENOSPC) {
						t.Fatalf("fill the disk: %v", err)
					}
					break
				}
			}
		}
	}
	fill(t)

	t.Run("writes answer 503 with Retry-After on every surface, and readiness says not ready", func(t *testing.T) {
		// Writes go on fitting in the pages SQLite already has (free pages,
		// the write-ahead log's length) until one needs a new block.
		var status []int
		for i := 0; i < 5000 && len(status) < 20; i++ {
			id := fmt.Sprintf("full-%d", i)
			a := call(t, http.MethodPut, app.URL+"/User/"+id, "text/yaml", "email: "+id+"@example.com\nname: {givenName: '"+strings.Repeat("x", 200)+"', familyName: '"+strings.Repeat("y", 200)+"'}\n", [2]string{"admin", testAdminPassword})
			switch a.status {
			case http.StatusCreated:
				acked = append(acked, id) // it fitted
			case http.StatusServiceUnavailable:
				status = append(status, a.status)
				if a.header.Get("Retry-After") == "" || !strings.Contains(a.body, `"transient"`) {
					t.Fatalf("PUT on a full disk: 503 without Retry-After or transient OperationOutcome: %s", a.body)
				}
			default:
				t.Fatalf("PUT on a full disk: %d %.300s", a.status, a.body)
			}
		}
		if len(status) == 0 {
			t.Fatalf("5,000 PUTs on a full disk all succeeded")
		}
		t.Logf("%d writes fitted in the space SQLite had before the first refusal", len(acked)-200)
		for _, q := range reqs {
			a := q.do(t, app)
			if a.status >= 500 && a.status != http.StatusServiceUnavailable {
				t.Errorf("%s on a full disk: %d %.300s; want 503 or a success", q.name, a.status, a.body)
			}
			if a.status == http.StatusServiceUnavailable && a.header.Get("Retry-After") == "" {
				t.Errorf("%s on a full disk: 503 without Retry-After", q.name)
			}
		}
		if r := call(t, http.MethodGet, app.URL+"/health/ready", "", "", [2]string{}); r.status != http.StatusServiceUnavailable {
			t.Errorf("ready %d on a full disk, want 503", r.status)
		}
		if r := call(t, http.MethodGet, app.URL+"/User/alice", "", "", [2]string{"admin", testAdminPassword}); r.status != http.StatusOK {
			t.Errorf("a read on a full disk: %d %.200s", r.status, r.body)
		}
	})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	t.Run("once space is freed, writes work again without a restart", func(t *testing.T) {
		if r := call(t, http.MethodGet, app.URL+"/health/ready", "", "", [2]string{}); r.status != http.StatusOK {
			t.Fatalf("ready %d %s after space was freed", r.status, r.body)
		}
		for _, q := range reqs {
			if a := q.do(t, app); a.status >= 300 {
				t.Errorf("%s after space was freed: %d %.200s", q.name, a.status, a.body)
			}
		}
		app.mustPut("/User/after", "email: after@example.com\n")
	})

	t.Run("the database is intact and every acknowledged write is in it", func(t *testing.T) {
		raw, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		var check string
		if err := raw.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
			t.Fatalf("integrity_check: %q, %v", check, err)
		}
		for _, id := range append(acked, "after") {
			if status, body := app.admin(http.MethodGet, "/User/"+id, "", ""); status != http.StatusOK {
				t.Fatalf("acknowledged PUT /User/%s is missing: %d %.200s", id, status, body)
			}
		}
	})
}
