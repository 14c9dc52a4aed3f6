/* zltk plugin "proxy": connections per source address.  A hash table of
 * source address -> count behind one mutex per instance: an accept costs
 * one lookup under the lock, and only when max-connections-per-source is
 * set.  Entries go when their count returns to zero, so the table holds
 * only sources that hold connections now. */
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy-internal.h"

/* A source: the 16 bytes of its IPv6 address, IPv4 as v4-mapped. */
typedef struct {
    uint8_t b[16];
} proxy_src_t;

/* What the table holds: a source and its count (the key is first, so a
 * proxy_src_t finds its entry). */
typedef struct {
    proxy_src_t src;
    uint32_t n;
} src_entry_t;

static bool src_of(const zl_addr_t *a, proxy_src_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!a || !a->len)
        return false;
    if (a->u.sa.sa_family == AF_INET) {
        out->b[10] = out->b[11] = 0xff;
        memcpy(out->b + 12, &a->u.in.sin_addr, 4);
        return true;
    }
    if (a->u.sa.sa_family == AF_INET6) {
        memcpy(out->b, &a->u.in6.sin6_addr, 16);
        return true;
    }
    return false;
}

static guint src_hash(gconstpointer k)
{
    const proxy_src_t *s = k;
    guint h = 2166136261u;

    for (int i = 0; i < 16; i++)
        h = (h ^ s->b[i]) * 16777619u;
    return h;
}

static gboolean src_equal(gconstpointer a, gconstpointer b)
{
    return memcmp(a, b, sizeof(proxy_src_t)) == 0;
}

void proxy__limit_init(proxy_limit_t *l, uint32_t max)
{
    pthread_mutex_init(&l->lock, NULL);
    /* A set of entries, looked up by their leading proxy_src_t. */
    l->count = g_hash_table_new_full(src_hash, src_equal, g_free, NULL);
    l->max = max;
}

void proxy__limit_fini(proxy_limit_t *l)
{
    g_hash_table_destroy(l->count);
    pthread_mutex_destroy(&l->lock);
}

bool proxy__limit_acquire(proxy_limit_t *l, const zl_addr_t *addr)
{
    proxy_src_t key;
    src_entry_t *e;
    bool ok = true;

    /* Addresses that are not IP (a Unix peer) are not limited. */
    if (l->max == 0 || !src_of(addr, &key))
        return true;
    pthread_mutex_lock(&l->lock);
    e = g_hash_table_lookup(l->count, &key);
    if (!e) {
        e = g_new(src_entry_t, 1);
        e->src = key;
        e->n = 0;
        g_hash_table_add(l->count, e);
    }
    if (e->n >= l->max)
        ok = false;
    else
        e->n++;
    pthread_mutex_unlock(&l->lock);
    return ok;
}

void proxy__limit_release(proxy_limit_t *l, const zl_addr_t *addr)
{
    proxy_src_t key;
    src_entry_t *e;

    if (l->max == 0 || !src_of(addr, &key))
        return;
    pthread_mutex_lock(&l->lock);
    e = g_hash_table_lookup(l->count, &key);
    if (e && --e->n == 0)
        g_hash_table_remove(l->count, &key);
    pthread_mutex_unlock(&l->lock);
}

size_t proxy__limit_sources(proxy_limit_t *l)
{
    size_t n;

    pthread_mutex_lock(&l->lock);
    n = g_hash_table_size(l->count);
    pthread_mutex_unlock(&l->lock);
    return n;
}
