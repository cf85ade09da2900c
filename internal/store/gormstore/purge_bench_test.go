package gormstore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// BenchmarkTokenWritesDuringPurge is the p99 of the token endpoint's
// statements (store a token, read one back) while the purge removes a
// backlog of 200,000 expired tokens, in batches and, for comparison, as one
// statement. Run it with -benchtime=1x: each run seeds its own backlog.
func BenchmarkTokenWritesDuringPurge(b *testing.B) {
	const backlog = 200_000
	for name, open := range openers(b) {
		for _, batch := range []struct {
			name string
			rows int
		}{{"batches of 1000", 1000}, {"one statement", backlog * 2}} {
			b.Run(name+"/"+batch.name, func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					s := open(b)
					s.PurgeBatch = batch.rows
					ctx := context.Background()
					expired := time.Now().UTC().Add(-time.Hour)
					rows := make([]store.OAuthRequest, 0, 500)
					for i := range backlog {
						tok := benchToken(fmt.Sprintf("old-%040d", i))
						tok.ExpiresAt = expired
						rows = append(rows, tok)
						if len(rows) == cap(rows) {
							if err := s.CreateOAuthRequests(ctx, rows); err != nil {
								b.Fatal(err)
							}
							rows = rows[:0]
						}
					}
					b.StartTimer()

					var (
						done      atomic.Bool
						seq       atomic.Int64
						mu        sync.Mutex
						latencies []time.Duration
						wg        sync.WaitGroup
					)
					for range 16 {
						wg.Go(func() {
							var own []time.Duration
							for !done.Load() {
								sig := fmt.Sprintf("new-%040d", seq.Add(1))
								start := time.Now()
								if err := s.CreateOAuthRequest(ctx, benchToken(sig)); err != nil {
									b.Error(err)
									return
								}
								if _, err := s.GetOAuthRequest(ctx, store.KindAccessToken, sig); err != nil {
									b.Error(err)
									return
								}
								own = append(own, time.Since(start))
							}
							mu.Lock()
							latencies = append(latencies, own...)
							mu.Unlock()
						})
					}
					start := time.Now()
					n, err := s.DeleteExpiredOAuthRequests(ctx, time.Now())
					purge := time.Since(start)
					done.Store(true)
					wg.Wait()
					if err != nil || n != backlog {
						b.Fatalf("purged %d (%v), want %d", n, err, backlog)
					}
					if len(latencies) == 0 {
						b.Fatalf("no write finished during the %v purge", purge)
					}
					slices.Sort(latencies)
					b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
					b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
					b.ReportMetric(purge.Seconds(), "purge-s")
					b.ReportMetric(float64(len(latencies))/purge.Seconds(), "writes/s")
				}
			})
		}
	}
}
