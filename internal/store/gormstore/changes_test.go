package gormstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// feed is a running WatchChanges of a test, its calls turned into channels.
type feed struct {
	t       *testing.T
	live    chan bool
	changes chan store.Change
}

func watch(t *testing.T, s *gormstore.Store) *feed {
	t.Helper()
	f := &feed{t: t, live: make(chan bool, 16), changes: make(chan store.Change, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.WatchChanges(ctx, func(l bool) { f.live <- l }, func(c store.Change) { f.changes <- c })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchChanges returned %v when its context ended, want nil", err)
		}
	})
	return f
}

func (f *feed) wantLive(want bool) { f.t.Helper(); receive(f.t, f.live, want) }

func (f *feed) wantChange(want store.Change) { f.t.Helper(); receive(f.t, f.changes, want) }

// receive fails the test unless the next value on ch, within 30 s, is want.
func receive[T comparable](t *testing.T, ch <-chan T, want T) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no %+v within 30 s", want)
	}
}

func TestChangeFeed(t *testing.T) {
	ctx := context.Background()

	t.Run("SQLite has no change feed and says so at once", func(t *testing.T) {
		s := gormstoretest.OpenSQLite(t)
		err := s.WatchChanges(ctx, func(bool) { t.Error("live called") }, func(store.Change) { t.Error("fn called") })
		if !errors.Is(err, store.ErrNoChangeFeed) {
			t.Fatalf("WatchChanges on SQLite = %v, want ErrNoChangeFeed", err)
		}
	})

	dsn := gormstoretest.PostgresDSN(t)
	if dsn == "" {
		t.Skip(gormstoretest.PostgresEnv + " is not set")
	}
	// Two processes on one schema: writer writes, reader listens.
	writer := gormstoretest.OpenPostgresAt(t, dsn)
	reader := gormstoretest.OpenPostgresAt(t, dsn)
	f := watch(t, reader)
	f.wantLive(true)

	putClient := func(s *gormstore.Store, ctx context.Context, id string) error {
		_, _, err := s.PutClient(ctx, store.Client{ID: id, Doc: []byte(`{"id":"` + id + `"}`)}, 0)
		return err
	}

	t.Run("a committed write of a client or an AuthConfig by another process is heard", func(t *testing.T) {
		if err := putClient(writer, ctx, "web"); err != nil {
			t.Fatal(err)
		}
		f.wantChange(store.Change{Kind: store.ChangeClient, ID: "web"})
		if _, _, err := writer.PutAuthConfig(ctx, store.AuthConfig{ID: "default", Doc: []byte(`{}`)}, 0); err != nil {
			t.Fatal(err)
		}
		f.wantChange(store.Change{Kind: store.ChangeAuthConfig, ID: "default"})
		if err := writer.DeleteAuthConfig(ctx, "default"); err != nil {
			t.Fatal(err)
		}
		f.wantChange(store.Change{Kind: store.ChangeAuthConfig, ID: "default"})
		if err := writer.DeleteClient(ctx, "web"); err != nil {
			t.Fatal(err)
		}
		f.wantChange(store.Change{Kind: store.ChangeClient, ID: "web"})
	})

	t.Run("a rolled-back write is not heard", func(t *testing.T) {
		err := writer.InTx(ctx, func(ctx context.Context) error {
			if err := putClient(writer, ctx, "rolled-back"); err != nil {
				return err
			}
			return errors.New("roll back")
		})
		if err == nil {
			t.Fatal("the transaction committed")
		}
		// Notifications arrive in commit order: the next one heard is the
		// next commit's.
		if err := putClient(writer, ctx, "after-rollback"); err != nil {
			t.Fatal(err)
		}
		f.wantChange(store.Change{Kind: store.ChangeClient, ID: "after-rollback"})
	})

	t.Run("a write in another schema of the same database is not heard", func(t *testing.T) {
		other := gormstoretest.OpenPostgres(t)
		if err := putClient(other, ctx, "elsewhere"); err != nil {
			t.Fatal(err)
		}
		if err := putClient(writer, ctx, "here"); err != nil {
			t.Fatal(err)
		}
		f.wantChange(store.Change{Kind: store.ChangeClient, ID: "here"})
	})

	t.Run("a cut connection says changes may be missed, then reconnects and is heard again", func(t *testing.T) {
		pid := reader.ChangeListenerPID()
		if pid == 0 {
			t.Fatal("no listener connection")
		}
		if _, err := writer.QueryString(ctx, fmt.Sprintf("SELECT pg_terminate_backend(%d)::text", pid)); err != nil {
			t.Fatal(err)
		}
		f.wantLive(false)
		f.wantLive(true)
		if got := reader.ChangeListenerPID(); got == pid {
			t.Fatalf("the feed still reports server process %d", pid)
		}
		if err := putClient(writer, ctx, "after-reconnect"); err != nil {
			t.Fatal(err)
		}
		f.wantChange(store.Change{Kind: store.ChangeClient, ID: "after-reconnect"})
	})
}

// freezer is a TCP proxy that can go silent: it keeps its connections open
// and reads them, but passes nothing on, as a dropped route or a paused
// server does.
type freezer struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
}

func startFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); up.Close() })
			go f.pipe(up, c)
			go f.pipe(c, up)
		}
	}()
	return f
}

func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			dst.Close()
			return
		}
		if f.frozen.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			src.Close()
			return
		}
	}
}

func TestChangeFeedThatGoesSilent(t *testing.T) {
	dsn := gormstoretest.PostgresDSN(t)
	if dsn == "" {
		t.Skip(gormstoretest.PostgresEnv + " is not set")
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skipf("%s is not a URL with a host: no proxy can stand in front of it", gormstoretest.PostgresEnv)
	}
	writer := gormstoretest.OpenPostgresAt(t, dsn)
	proxy := startFreezer(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	reader := gormstoretest.OpenPostgresAt(t, u.String())
	reader.SetChangeProbes(50*time.Millisecond, 200*time.Millisecond)
	f := watch(t, reader)
	f.wantLive(true)

	t.Run("a connection that stops answering without closing is given up within a probe", func(t *testing.T) {
		proxy.frozen.Store(true)
		f.wantLive(false)
	})

	t.Run("the feed comes back by itself when the route does", func(t *testing.T) {
		proxy.frozen.Store(false)
		f.wantLive(true)
		if _, _, err := writer.PutClient(context.Background(), store.Client{ID: "back", Doc: []byte(`{}`)}, 0); err != nil {
			t.Fatal(err)
		}
		f.wantChange(store.Change{Kind: store.ChangeClient, ID: "back"})
	})
}
