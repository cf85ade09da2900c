package conformance

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

func testRememberedDevices(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	for _, id := range []string{"dev-u1", "dev-u2"} {
		_, _, err := s.PutUser(ctx, store.User{ID: id}, 0)
		must(t, err, "put user "+id)
	}
	device := func(id, user string, created time.Time) store.RememberedDevice {
		return store.RememberedDevice{ID: id, UserID: user, TokenHash: "hash-" + id, Strategy: "totp", Label: "Firefox",
			CreatedAt: created, ExpiresAt: created.Add(30 * 24 * time.Hour)}
	}

	t.Run("a device is found by its token hash until it expires, with every field", func(t *testing.T) {
		in := device("d-find", "dev-u1", base)
		must(t, s.CreateRememberedDevice(ctx, in, 10), "create")
		got, err := s.FindRememberedDevice(ctx, "hash-d-find", base.Add(time.Hour))
		must(t, err, "find")
		if got.ID != in.ID || got.UserID != in.UserID || got.Strategy != "totp" || got.Label != "Firefox" || !got.LastUsedAt.IsZero() {
			t.Errorf("find = %+v, want %+v", got, in)
		}
		sameTime(t, "created at", got.CreatedAt, in.CreatedAt)
		sameTime(t, "expires at", got.ExpiresAt, in.ExpiresAt)
		_, err = s.FindRememberedDevice(ctx, "hash-d-find", in.ExpiresAt)
		wantErr(t, err, store.ErrNotFound, "find at expiry")
		_, err = s.FindRememberedDevice(ctx, "hash-unknown", base)
		wantErr(t, err, store.ErrNotFound, "find an unknown hash")
	})

	t.Run("touching a device records its last use", func(t *testing.T) {
		must(t, s.TouchRememberedDevice(ctx, "d-find", base.Add(2*time.Hour)), "touch")
		got, err := s.FindRememberedDevice(ctx, "hash-d-find", base)
		must(t, err, "find")
		sameTime(t, "last used", got.LastUsedAt, base.Add(2*time.Hour))
		wantErr(t, s.TouchRememberedDevice(ctx, "d-missing", base), store.ErrNotFound, "touch a missing device")
	})

	t.Run("a token hash is stored once and a device needs an existing user", func(t *testing.T) {
		dup := device("d-dup", "dev-u1", base)
		dup.TokenHash = "hash-d-find"
		wantErr(t, s.CreateRememberedDevice(ctx, dup, 10), store.ErrConflict, "create with a stored hash")
		wantErr(t, s.CreateRememberedDevice(ctx, device("d-nouser", "dev-nobody", base), 10), store.ErrNotFound, "create for a missing user")
	})

	t.Run("a user keeps only the newest devices up to the cap", func(t *testing.T) {
		for i := range 5 {
			must(t, s.CreateRememberedDevice(ctx, device(fmt.Sprintf("d-cap-%d", i), "dev-u2", base.Add(time.Duration(i)*time.Minute)), 3), "create")
		}
		got, err := s.ListRememberedDevices(ctx, "dev-u2", base)
		must(t, err, "list")
		var ids []string
		for _, d := range got {
			ids = append(ids, d.ID)
		}
		if fmt.Sprint(ids) != "[d-cap-4 d-cap-3 d-cap-2]" {
			t.Errorf("devices = %v, want the three newest, newest first", ids)
		}
	})

	t.Run("expired devices are not listed and are purged", func(t *testing.T) {
		old := device("d-old", "dev-u1", base.Add(-40*24*time.Hour))
		must(t, s.CreateRememberedDevice(ctx, old, 10), "create")
		got, err := s.ListRememberedDevices(ctx, "dev-u1", base)
		must(t, err, "list")
		if len(got) != 1 || got[0].ID != "d-find" {
			t.Errorf("devices = %+v, want d-find alone", got)
		}
		n, err := s.DeleteExpiredRememberedDevices(ctx, base)
		must(t, err, "purge")
		if n != 1 {
			t.Errorf("purged %d, want 1", n)
		}
	})

	t.Run("a device is deleted only by its own user", func(t *testing.T) {
		wantErr(t, s.DeleteRememberedDevice(ctx, "dev-u2", "d-find"), store.ErrNotFound, "delete another user's device")
		must(t, s.DeleteRememberedDevice(ctx, "dev-u1", "d-find"), "delete")
		_, err := s.FindRememberedDevice(ctx, "hash-d-find", base)
		wantErr(t, err, store.ErrNotFound, "find a deleted device")
		wantErr(t, s.DeleteRememberedDevice(ctx, "dev-u1", "d-find"), store.ErrNotFound, "delete twice")
	})

	t.Run("every device of a user goes at once, and with the user", func(t *testing.T) {
		n, err := s.DeleteRememberedDevices(ctx, "dev-u2")
		must(t, err, "delete all")
		if n != 3 {
			t.Errorf("deleted %d, want 3", n)
		}
		must(t, s.CreateRememberedDevice(ctx, device("d-gone", "dev-u1", base), 10), "create")
		must(t, s.DeleteUser(ctx, "dev-u1"), "delete user")
		_, err = s.FindRememberedDevice(ctx, "hash-d-gone", base)
		wantErr(t, err, store.ErrNotFound, "find a device of a deleted user")
	})
}
