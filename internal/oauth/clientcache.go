package oauth

import (
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/resource"
)

// ClientCacheTTL is how long a decoded client is used without reading it
// again, unless ForgetClientsAndKeep says otherwise. Reading and decoding the
// client was a sixth of the token endpoint's work and a quarter of
// introspection's. A change made through this process's admin API takes
// effect at once (ForgetClient); one made through another process sharing
// the database (a second server, `gatehouse apply`) within this long, or at
// once where the store's change feed tells of it (PostgreSQL; see
// server.App.WatchChanges).
const ClientCacheTTL = time.Second

// clientCacheMax bounds the cache; past it the cache starts over, which
// costs one read per client.
const clientCacheMax = 10_000

// clientCache keeps decoded clients for ttl. Absent clients are not
// cached, so a client created anywhere is usable at once.
type clientCache struct {
	now func() time.Time

	mu      sync.Mutex
	ttl     time.Duration
	entries map[string]cachedClient
	// gen counts ForgetClient calls: a read that began before one may not
	// store what it read, which could be the version just replaced.
	gen uint64
}

type cachedClient struct {
	sc      resource.StoredClient
	expires time.Time
}

func newClientCache(now func() time.Time) *clientCache {
	return &clientCache{now: now, ttl: ClientCacheTTL, entries: map[string]cachedClient{}}
}

// get returns the cached client id and the generation to hand to put on a
// miss.
func (c *clientCache) get(id string) (resource.StoredClient, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if ok && c.now().Before(e.expires) {
		return e.sc, true, c.gen
	}
	return resource.StoredClient{}, false, c.gen
}

func (c *clientCache) put(id string, sc resource.StoredClient, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.entries) >= clientCacheMax {
		clear(c.entries)
	}
	c.entries[id] = cachedClient{sc: sc, expires: c.now().Add(c.ttl)}
}

func (c *clientCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.entries, id)
}

// forgetAll drops every entry, and keeps entries from now on for ttl.
func (c *clientCache) forgetAll(ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.ttl = ttl
	clear(c.entries)
}
