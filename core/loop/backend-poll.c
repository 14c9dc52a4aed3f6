/* zltk — portable poll(2) backend.  Always compiled; always level-triggered
 * (ZL_EV_LT is implied).  Selected with ZLTK_POLLER_BACKEND=poll so that the
 * suite exercises it on Linux too. */
#define G_LOG_DOMAIN "zltk-poller"
#include "poller-internal.h"

#include <poll.h>

typedef struct {
    struct pollfd *fds; /* dense array */
    uint32_t *gens;     /* generation per entry */
    int *pos;           /* fd -> index in fds, -1 if none */
    size_t n, cap, npos;
} pl_t;

static int pl_init(zl_poller_t *p)
{
    pl_t *pl = calloc(1, sizeof(*pl));

    if (!pl)
        return -ENOMEM;
    p->bdata = pl;
    return 0;
}

static void pl_destroy(zl_poller_t *p)
{
    pl_t *pl = p->bdata;

    if (!pl)
        return;
    free(pl->fds);
    free(pl->gens);
    free(pl->pos);
    free(pl);
    p->bdata = NULL;
}

static short to_poll(unsigned events)
{
    short e = 0;
    if (events & ZL_EV_READ)
        e |= POLLIN;
    if (events & ZL_EV_WRITE)
        e |= POLLOUT;
    return e;
}

static int pl_index(pl_t *pl, int fd)
{
    return (size_t)fd < pl->npos ? pl->pos[fd] : -1;
}

static int pl_add(zl_poller_t *p, int fd, uint32_t gen, unsigned events)
{
    pl_t *pl = p->bdata;

    if (fd < 0)
        return -EBADF;
    if (pl_index(pl, fd) >= 0)
        return -EEXIST;
    if ((size_t)fd >= pl->npos) {
        size_t n = pl->npos ? pl->npos : 64;
        int *np;
        while (n <= (size_t)fd)
            n *= 2;
        np = realloc(pl->pos, n * sizeof(*np));
        if (!np)
            return -ENOMEM;
        for (size_t i = pl->npos; i < n; i++)
            np[i] = -1;
        pl->pos = np;
        pl->npos = n;
    }
    if (pl->n == pl->cap) {
        size_t n = pl->cap ? pl->cap * 2 : 64;
        struct pollfd *nf = realloc(pl->fds, n * sizeof(*nf));
        uint32_t *ng;
        if (!nf)
            return -ENOMEM;
        pl->fds = nf;
        ng = realloc(pl->gens, n * sizeof(*ng));
        if (!ng)
            return -ENOMEM;
        pl->gens = ng;
        pl->cap = n;
    }
    pl->fds[pl->n] = (struct pollfd){.fd = fd, .events = to_poll(events)};
    pl->gens[pl->n] = gen;
    pl->pos[fd] = (int)pl->n++;
    return 0;
}

static int pl_mod(zl_poller_t *p, int fd, uint32_t gen, unsigned events)
{
    pl_t *pl = p->bdata;
    int i = pl_index(pl, fd);

    if (i < 0)
        return -ENOENT;
    pl->fds[i].events = to_poll(events);
    pl->gens[i] = gen;
    return 0;
}

static int pl_del(zl_poller_t *p, int fd)
{
    pl_t *pl = p->bdata;
    int i = pl_index(pl, fd);
    size_t last;

    if (i < 0)
        return -ENOENT;
    last = --pl->n;
    if ((size_t)i != last) {
        pl->fds[i] = pl->fds[last];
        pl->gens[i] = pl->gens[last];
        pl->pos[pl->fds[i].fd] = i;
    }
    pl->pos[fd] = -1;
    return 0;
}

static int pl_wait(zl_poller_t *p, zl__bev_t *out, int n, int timeout_ms)
{
    pl_t *pl = p->bdata;
    int got = poll(pl->fds, pl->n, timeout_ms), k = 0;

    if (got < 0)
        return -errno;
    /* Copy the results out: callbacks may add or remove entries. */
    for (size_t i = 0; i < pl->n && k < got && k < n; i++) {
        short r = pl->fds[i].revents;
        unsigned m = 0;

        if (!r)
            continue;
        if (r & (POLLIN | POLLPRI))
            m |= ZL_EV_READ;
        if (r & POLLOUT)
            m |= ZL_EV_WRITE;
        if (r & (POLLERR | POLLNVAL))
            m |= ZL_EV_ERROR;
        if (r & POLLHUP)
            m |= ZL_EV_HUP;
        out[k].fd = pl->fds[i].fd;
        out[k].gen = pl->gens[i];
        out[k].events = m;
        k++;
    }
    return k;
}

const zl__backend_ops_t zl__backend_poll = {
    .name = "poll",
    .edge = false,
    .init = pl_init,
    .destroy = pl_destroy,
    .add = pl_add,
    .mod = pl_mod,
    .del = pl_del,
    .wait = pl_wait,
};
