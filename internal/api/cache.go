package api

import (
	"context"
	"sync"

	"github.com/standbyhq/standby"
)

// generationer is implemented by stores that count the writes of what the
// hot path reads (keys, projects, templates, builds, pool specs):
// sqlite.Store.Generation. A record read after the count was g is current
// while the count is still g.
type generationer interface {
	Generation() uint64
}

// hotCache keeps the records every checkout and every authenticated request
// would otherwise read from the store: API keys by hash, pool specs with
// their resolved build by pool id, and the build a template ref names. It is emptied whenever the store's
// generation moves, so a revoked key is refused by the very next request
// and a changed pool is read afresh. Without a generationer it caches
// nothing. Cached records are shared: callers must not modify them.
type hotCache struct {
	gen generationer // nil: caching off

	mu    sync.RWMutex
	at    uint64 // the generation the maps belong to
	keys  map[string]*standby.APIKey
	pools map[string]poolEntry
	refs  map[refKey]*standby.Build
}

// refKey is a template ref as one project sees it.
type refKey struct{ project, ref string }

// poolEntry is a pool's spec and the build it resolves to.
type poolEntry struct {
	pool  *standby.WarmPool
	build *standby.Build
}

func newHotCache(st standby.Store) *hotCache {
	c := &hotCache{keys: map[string]*standby.APIKey{}, pools: map[string]poolEntry{}, refs: map[refKey]*standby.Build{}}
	c.gen, _ = st.(generationer)
	return c
}

// lookup runs get under the read lock if the maps are current; ok false
// means "ask the store", and g is the generation to store the answer
// under.
func (c *hotCache) lookup(get func() bool) (g uint64, ok bool) {
	if c.gen == nil {
		return 0, false
	}
	g = c.gen.Generation()
	c.mu.RLock()
	defer c.mu.RUnlock()
	return g, c.at == g && get()
}

// store runs put under the write lock, first emptying maps of an older
// generation; an answer read under a generation that is no longer current
// is dropped.
func (c *hotCache) store(g uint64, put func()) {
	if c.gen == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at != g {
		if g < c.at || c.gen.Generation() != g {
			return
		}
		c.at = g
		clear(c.keys)
		clear(c.pools)
		clear(c.refs)
	}
	put()
}

// apiKey returns the unrevoked key with the hash. not_found.
func (c *hotCache) apiKey(ctx context.Context, st standby.Store, hash string) (*standby.APIKey, error) {
	var k *standby.APIKey
	g, ok := c.lookup(func() bool { k = c.keys[hash]; return k != nil })
	if ok {
		return k, nil
	}
	k, err := st.FindAPIKeyByHash(ctx, hash)
	if err != nil {
		return nil, err
	}
	c.store(g, func() { c.keys[hash] = k })
	return k, nil
}

// pool returns a pool (of any project, deleted or not) and, when it has
// one, its resolved build. Status counts are not current: the hot path
// does not read them. not_found.
func (c *hotCache) pool(ctx context.Context, st standby.Store, id string) (*standby.WarmPool, *standby.Build, error) {
	var e poolEntry
	g, ok := c.lookup(func() bool { var ok bool; e, ok = c.pools[id]; return ok })
	if ok {
		return e.pool, e.build, nil
	}
	p, err := st.FindWarmPool(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	e = poolEntry{pool: p}
	if p.ResolvedTemplateBuildID != nil {
		// A build deleted with its template leaves build nil; the caller
		// decides whether it needed it.
		if e.build, err = st.FindBuild(ctx, p.ProjectID, *p.ResolvedTemplateBuildID); err != nil && !standby.IsCode(err, standby.ENotFound) {
			return nil, nil, err
		}
	}
	c.store(g, func() { c.pools[id] = e })
	return e.pool, e.build, nil
}

// templateRef is standby.ResolveTemplateRef through the cache: tags and
// builds are written with the generation moving, so a cached answer is
// current. Errors are not cached.
func (c *hotCache) templateRef(ctx context.Context, st standby.Store, project, ref string) (*standby.Build, error) {
	key := refKey{project, ref}
	var b *standby.Build
	g, ok := c.lookup(func() bool { b = c.refs[key]; return b != nil })
	if ok {
		return b, nil
	}
	b, err := standby.ResolveTemplateRef(ctx, st, project, ref)
	if err != nil {
		return nil, err
	}
	c.store(g, func() { c.refs[key] = b })
	return b, nil
}
