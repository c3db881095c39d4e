package sqlite

import (
	"sync"

	"github.com/hearth-fhir/hearth/store"
)

// cache holds current versions for reads by id. The writer invalidates the
// keys it touched after each commit and bumps the generation; a reader that
// missed fills the cache only if no commit happened since it started, so a
// version older than the committed one is never cached.
type cache struct {
	mu      sync.RWMutex
	entries map[string]store.Resource
	max     int
	gen     uint64
}

func newCache(max int) *cache {
	return &cache{entries: make(map[string]store.Resource), max: max}
}

func (c *cache) get(key string) (store.Resource, bool) {
	c.mu.RLock()
	r, ok := c.entries[key]
	c.mu.RUnlock()
	return r, ok
}

func (c *cache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

func (c *cache) putIfGeneration(key string, r store.Resource, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if len(c.entries) >= c.max {
		// Evict an arbitrary entry: map iteration order is unspecified, which
		// is as good as random for a cache this simple.
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = r
}

func (c *cache) invalidate(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		delete(c.entries, k)
	}
	c.gen++
}
