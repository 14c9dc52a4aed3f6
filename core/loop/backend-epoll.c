/* zltk — epoll backend (Linux).  Edge-triggered unless ZL_EV_LT. */
#define G_LOG_DOMAIN "zltk-poller"
#include "poller-internal.h"

#include <sys/epoll.h>
#include <unistd.h>

typedef struct {
    int epfd;
    struct epoll_event evs[ZL__MAX_EVENTS];
} ep_t;

static int ep_init(zl_poller_t *p)
{
    ep_t *ep = malloc(sizeof(*ep));

    if (!ep)
        return -ENOMEM;
    ep->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ep->epfd < 0) {
        int e = errno;
        free(ep);
        return -e;
    }
    p->bdata = ep;
    return 0;
}

static void ep_destroy(zl_poller_t *p)
{
    ep_t *ep = p->bdata;

    if (!ep)
        return;
    close(ep->epfd);
    free(ep);
    p->bdata = NULL;
}

static int ep_ctl(zl_poller_t *p, int op, int fd, uint32_t gen,
                  unsigned events)
{
    ep_t *ep = p->bdata;
    struct epoll_event ev = {0};

    if (events & ZL_EV_READ)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (events & ZL_EV_WRITE)
        ev.events |= EPOLLOUT;
    if (!(events & ZL_EV_LT))
        ev.events |= EPOLLET;
    /* fd and generation travel with the event (see zl__bev_t). */
    ev.data.u64 = (uint64_t)(uint32_t)fd | ((uint64_t)gen << 32);
    return epoll_ctl(ep->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

static int ep_add(zl_poller_t *p, int fd, uint32_t gen, unsigned events)
{
    return ep_ctl(p, EPOLL_CTL_ADD, fd, gen, events);
}

static int ep_mod(zl_poller_t *p, int fd, uint32_t gen, unsigned events)
{
    return ep_ctl(p, EPOLL_CTL_MOD, fd, gen, events);
}

static int ep_del(zl_poller_t *p, int fd)
{
    ep_t *ep = p->bdata;
    /* ENOENT/EBADF: the caller closed the fd before removing it; the kernel
     * already dropped it, which is all we wanted. */
    return epoll_ctl(ep->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 ? -errno : 0;
}

static int ep_wait(zl_poller_t *p, zl__bev_t *out, int n, int timeout_ms)
{
    ep_t *ep = p->bdata;
    int got = epoll_wait(ep->epfd, ep->evs, n, timeout_ms);

    if (got < 0)
        return -errno;
    for (int i = 0; i < got; i++) {
        uint32_t e = ep->evs[i].events;
        unsigned m = 0;

        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLPRI))
            m |= ZL_EV_READ;
        if (e & EPOLLRDHUP) /* the peer shut down its sending side */
            m |= ZL_EV_HUP;
        if (e & EPOLLOUT)
            m |= ZL_EV_WRITE;
        if (e & EPOLLERR)
            m |= ZL_EV_ERROR;
        if (e & EPOLLHUP)
            m |= ZL_EV_HUP;
        out[i].fd = (int)(uint32_t)ep->evs[i].data.u64;
        out[i].gen = (uint32_t)(ep->evs[i].data.u64 >> 32);
        out[i].events = m;
    }
    return got;
}

const zl__backend_ops_t zl__backend_epoll = {
    .name = "epoll",
    .edge = true,
    .init = ep_init,
    .destroy = ep_destroy,
    .add = ep_add,
    .mod = ep_mod,
    .del = ep_del,
    .wait = ep_wait,
};
