package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// logFlushEvery bounds how long a log line may wait in logWriter's buffer.
const logFlushEvery = 100 * time.Millisecond

// logWriter batches log lines into few writes. The access log writes a line
// per request, and a write(2) per line was 2–4 % of the server's CPU on the
// cheapest endpoints (introspection, JWKS). A line goes out at once when the
// previous write is older than logFlushEvery, so a quiet server logs as it
// goes; under load, lines wait at most that long in a 64 KiB buffer (or until
// it fills). Close writes what is left; serve closes it on the way out.
type logWriter struct {
	now func() time.Time

	mu    sync.Mutex
	buf   *bufio.Writer
	last  time.Time   // of the last write to the underlying writer
	timer *time.Timer // armed while lines wait
}

func newLogWriter(w io.Writer) *logWriter {
	return &logWriter{now: time.Now, buf: bufio.NewWriterSize(w, 64<<10)}
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	if err != nil {
		return n, err
	}
	since := l.now().Sub(l.last)
	switch {
	case since >= logFlushEvery:
		err = l.flushLocked()
	case l.timer == nil:
		l.timer = time.AfterFunc(logFlushEvery-since, l.flushLater)
	}
	return n, err
}

func (l *logWriter) flushLater() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	_ = l.flushLocked() // nowhere left to report a failing log output
}

func (l *logWriter) flushLocked() error {
	l.last = l.now()
	return l.buf.Flush()
}

// Close writes the buffered lines. The writer stays usable: a line logged
// after Close is written as any other.
func (l *logWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	return l.flushLocked()
}
