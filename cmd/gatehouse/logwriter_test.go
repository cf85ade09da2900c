package main

import (
	"testing"
	"time"
)

func TestLogWriter(t *testing.T) {
	t.Run("a line on a quiet writer is written at once", func(t *testing.T) {
		var out syncBuffer
		w := newLogWriter(&out)
		w.Write([]byte("first\n"))
		if out.String() != "first\n" {
			t.Fatalf("written: %q", out.String())
		}
	})
	t.Run("lines that follow closely wait for the flush, then all arrive in order", func(t *testing.T) {
		var out syncBuffer
		now := time.Now()
		w := newLogWriter(&out)
		w.now = func() time.Time { return now } // the burst takes no time
		w.Write([]byte("a\n"))
		for _, l := range []string{"b\n", "c\n", "d\n"} {
			w.Write([]byte(l))
		}
		if out.String() != "a\n" {
			t.Fatalf("the burst should wait in the buffer, written: %q", out.String())
		}
		deadline := time.Now().Add(5 * time.Second)
		for out.String() != "a\nb\nc\nd\n" {
			if time.Now().After(deadline) {
				t.Fatalf("the burst never arrived: %q", out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("Close writes what waits", func(t *testing.T) {
		var out syncBuffer
		w := newLogWriter(&out)
		w.Write([]byte("a\n"))
		w.Write([]byte("b\n"))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if out.String() != "a\nb\n" {
			t.Fatalf("after Close: %q", out.String())
		}
	})
	t.Run("a line long after the last write goes out at once", func(t *testing.T) {
		var out syncBuffer
		now := time.Now()
		w := newLogWriter(&out)
		w.now = func() time.Time { return now }
		w.Write([]byte("a\n"))
		now = now.Add(logFlushEvery)
		w.Write([]byte("b\n"))
		if out.String() != "a\nb\n" {
			t.Fatalf("written: %q", out.String())
		}
	})
}
