/* zltk — instances (zltk/instance.h): a handler, and optionally a
 * transport layer, bound to a client or a server.
 *
 * A client instance has one session for its life (reconnects included); a
 * server instance's sessions are made as connections arrive (session.c).
 * Here: creation from zl_instance_options_t, start, a stop that waits for
 * every session, the instance's host API calls and its configuration keys.
 */
#define G_LOG_DOMAIN "zltk"
#include "plugin-internal.h"
#include "net-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

const char *zl__instance_plugin_name(const zl_instance_t *inst)
{
    return inst->plugin ? zl_plugin_get_desc(inst->plugin)->name : "handler";
}

/* ----------------------------------------------- host API: instances */

const char *zl__instance_name(const zl_instance_t *inst)
{
    return inst->name;
}

bool zl__instance_is_server(const zl_instance_t *inst)
{
    return inst->server;
}

void *zl__instance_data(const zl_instance_t *inst)
{
    return inst->data;
}

const char *zl__instance_config_string(const zl_instance_t *inst,
                                       const char *key)
{
    return inst->config && key ? inst->config(inst->ctx, key) : NULL;
}

bool zl__instance_config_is_default(const zl_instance_t *inst,
                                    const char *key)
{
    return inst->config_default && key &&
           zl__instance_config_string(inst, key) &&
           inst->config_default(inst->ctx, key);
}

void zl__instance_report(zl_instance_t *inst, const char *key,
                         const char *msg)
{
    inst->errors++;
    if (inst->report)
        inst->report(inst->ctx, key, msg);
    else
        g_warning("[%s.%s] %s%s%s", inst->server ? "server" : "client",
                  inst->name, key ? key : "", key ? ": " : "", msg);
}

void zl__instance_config_error(zl_instance_t *inst, const char *key,
                               const char *fmt, ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    zl__instance_report(inst, key, msg);
    g_free(msg);
}

static void instance_complain(void *ctx, const char *key, const char *msg)
{
    zl__instance_report(ctx, key, msg);
}

int zl__instance_config_int(const zl_instance_t *inst, const char *key,
                            int64_t *out)
{
    return zl__typed_value(zl__instance_config_string(inst, key),
                           ZL__VALUE_INT, out, key, instance_complain,
                           (zl_instance_t *)inst);
}

int zl__instance_config_bool(const zl_instance_t *inst, const char *key,
                             bool *out)
{
    return zl__typed_value(zl__instance_config_string(inst, key),
                           ZL__VALUE_BOOL, out, key, instance_complain,
                           (zl_instance_t *)inst);
}

/* ------------------------------------------------- public: instances */

int zl_instance_new(zl_instance_t **out, const zl_instance_options_t *o)
{
    zl_instance_t *inst;
    int rc = 0;

    *out = NULL;
    if (!o || !o->name || !*o->name || !o->handler) {
        g_warning("zl_instance_new: a name and a handler are required");
        return -EINVAL;
    }
    if (o->handler->struct_size < ZL_HANDLER_SIZE_1_0 ||
        !o->handler->on_recv) {
        g_warning("zl_instance_new: %s.%s: the handler is malformed (needs "
                  "struct_size and on_recv)",
                  o->server ? "server" : "client", o->name);
        return -EINVAL;
    }
    if (o->layer && (o->layer->struct_size < ZL_LAYER_SIZE_1_0 ||
                     !o->layer->on_connect || !o->layer->on_recv ||
                     !o->layer->send)) {
        g_warning("zl_instance_new: %s.%s: the layer is malformed (needs "
                  "struct_size, on_connect, on_recv and send)",
                  o->server ? "server" : "client", o->name);
        return -EINVAL;
    }
    inst = calloc(1, sizeof(*inst));
    if (!inst)
        return -ENOMEM;
    inst->l = o->layer;
    inst->layer_plugin = o->layer_plugin;
    inst->loff = ZL__ALIGN_UP(o->handler->state_size);
    inst->hdr.session = false;
    inst->name = g_strdup(o->name);
    inst->server = o->server;
    inst->h = o->handler;
    inst->plugin = o->plugin;
    inst->config = o->config;
    inst->config_default = o->config_default;
    inst->report = o->report;
    inst->ctx = o->ctx;
    inst->on_finished = o->on_finished;
    inst->finished_ctx = o->ctx;
    inst->user_data = o->user_data;
    inst->copts = o->client;
    inst->sopts = o->server_opts;
    inst->host = g_strdup(o->server ? o->server_opts.host : o->client.host);
    inst->local_ip = g_strdup(o->client.local_ip);
    inst->copts.host = inst->host;
    inst->copts.local_ip = inst->local_ip;
    inst->copts.name = inst->name;
    inst->sopts.host = inst->host;
    inst->sopts.name = inst->name;
    atomic_init(&inst->stopping, false);
    pthread_mutex_init(&inst->mu, NULL);
    pthread_mutex_init(&inst->msg_mu, NULL);
    pthread_cond_init(&inst->cv, NULL);
    if (inst->h->instance_new) {
        rc = inst->h->instance_new(inst, &inst->data);
        if (rc < 0 && !inst->errors)
            zl__instance_report(inst, NULL, zl_strerror(rc));
        inst->has_data = rc >= 0;
    }
    if (inst->l && inst->l->instance_new) {
        rc = inst->l->instance_new(inst, &inst->ldata);
        if (rc < 0 && !inst->errors)
            zl__instance_report(inst, "transport", zl_strerror(rc));
        inst->has_ldata = rc >= 0;
    }
    if (inst->errors) {
        zl_instance_free(inst);
        return rc == -ENOMEM ? -ENOMEM : -EINVAL;
    }
    *out = inst;
    return 0;
}

int zl_instance_set_address(zl_instance_t *inst, const char *host,
                            uint16_t port)
{
    if (inst->started || inst->server || !host || !*host || !port)
        return -EINVAL;
    g_free(inst->host);
    inst->host = g_strdup(host);
    inst->copts.host = inst->host;
    inst->copts.port = port;
    return 0;
}

/* ":PORT" for a message, "" after a unix:PATH host (buf: 8 bytes). */
static const char *port_text(const char *host, uint16_t port, char *buf)
{
    if (!zl_addr_is_unix_text(host))
        snprintf(buf, 8, ":%u", port);
    return buf;
}

typedef struct start_ctx {
    zl_instance_t *inst;
    zl_session_t *s;
    int rc;
} start_ctx_t;

/* On the client's poller, so that callbacks (which may run inline) and
 * this code see the session from one thread. */
static void client_start(void *arg)
{
    start_ctx_t *sc = arg;
    zl_conn_t *c = NULL;

    sc->rc = zl_client_connect(&c, &sc->inst->copts, &zl__client_conn_handler,
                               sc->s);
    if (sc->rc < 0)
        return;
    if (sc->inst->l)
        zl__client_defer_reset(c);
    if (!sc->s->conn)
        sc->s->conn = c;
    else
        zl_conn_unref(c);
}

int zl_instance_start(zl_instance_t *inst)
{
    int rc;

    if (inst->started)
        return -EALREADY;
    if (!zl_runtime_pollers()) {
        g_warning("%s.%s: the runtime is not running",
                  inst->server ? "server" : "client", inst->name);
        return -EINVAL;
    }
    inst->started = true;
    if (inst->server) {
        rc = zl_server_new(&inst->srv, &inst->sopts, &zl__server_conn_handler,
                           inst);
        if (rc < 0)
            g_warning("server.%s: cannot listen on %s%s: %s", inst->name,
                      inst->host ? inst->host : "*",
                      port_text(inst->host, inst->sopts.port, (char[8]){0}),
                      zl_strerror(rc));
        return rc;
    } else {
        start_ctx_t sc = {.inst = inst};

        if (!inst->copts.poller)
            inst->copts.poller = zl_runtime_get_poller(false);
        sc.s = zl__session_new(inst);
        if (!sc.s)
            return -ENOMEM;
        sc.s->poller = inst->copts.poller;
        inst->client = zl_session_ref(sc.s);
        rc = zl_poller_sync(inst->copts.poller, client_start, &sc);
        if (rc == 0)
            rc = sc.rc;
        if (rc < 0) {
            g_warning("client.%s: cannot start connecting to %s%s: %s",
                      inst->name, inst->host,
                      port_text(inst->host, inst->copts.port, (char[8]){0}),
                      zl_strerror(rc));
            zl_session_unref(inst->client); /* ours */
            inst->client = NULL;
            zl__session_done(inst, false, NULL);
            zl_session_unref(sc.s); /* the connection's, never taken */
        }
        return rc;
    }
}

/* A layered server's sessions are closed through the layer first (TLS
 * sends close_notify), with a bounded wait, before zl_server_free() closes
 * whatever is left at the connection level.  The wait is what the layer
 * says it needs (zl_layer_t.stop_ms), or else the connection's send
 * timeout (a close that sends nothing for that long fails anyway), plus a
 * margin for the posts and the scheduling around it. */
#define LAYER_STOP_MARGIN_MS 1000u
#define SEND_TIMEOUT_DEFAULT_MS 10000u /* zl_conn_options_t's default */

static uint32_t layer_stop_wait_ms(const zl_instance_t *inst)
{
    const zl_layer_t *l = inst->l;
    const zl_conn_options_t *co = &inst->sopts.conn;
    uint32_t ms;

    if (l->struct_size >= offsetof(zl_layer_t, stop_ms) + sizeof(l->stop_ms) &&
        l->stop_ms)
        ms = l->stop_ms(inst, inst->ldata);
    else if (!co->send_timeout_ms)
        /* The send timeout is off: the stop still needs a bounded wait. */
        ms = SEND_TIMEOUT_DEFAULT_MS;
    else
        ms = co->send_timeout_ms;
    return ms > UINT32_MAX - LAYER_STOP_MARGIN_MS ? UINT32_MAX
                                                  : ms + LAYER_STOP_MARGIN_MS;
}

static void close_live_sessions(zl_instance_t *inst)
{
    GPtrArray *all = g_ptr_array_new();
    uint32_t wait_ms = layer_stop_wait_ms(inst);
    struct timespec until;

    pthread_mutex_lock(&inst->mu);
    for (zl_session_t *s = inst->live; s; s = zl__lnode_of(s)->next)
        g_ptr_array_add(all, zl_session_ref(s));
    pthread_mutex_unlock(&inst->mu);
    for (guint i = 0; i < all->len; i++) {
        zl_session_close(all->pdata[i]); /* posted to its poller */
        zl_session_unref(all->pdata[i]);
    }
    g_ptr_array_free(all, TRUE);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&inst->mu);
    while (inst->live &&
           pthread_cond_timedwait(&inst->cv, &inst->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&inst->mu);
}

void zl_instance_stop(zl_instance_t *inst)
{
    if (!inst || atomic_exchange(&inst->stopping, true))
        return;
    if (inst->server) {
        if (inst->l && inst->srv)
            close_live_sessions(inst);
        zl_server_free(inst->srv);
        inst->srv = NULL;
    } else if (inst->client) {
        zl_session_close(inst->client);
    }
    pthread_mutex_lock(&inst->mu);
    while (atomic_load(&inst->active))
        pthread_cond_wait(&inst->cv, &inst->mu);
    pthread_mutex_unlock(&inst->mu);
    zl_session_unref(inst->client);
    inst->client = NULL;
}

void zl_instance_free(zl_instance_t *inst)
{
    if (!inst)
        return;
    zl_instance_stop(inst);
    if (inst->has_ldata && inst->l->instance_free)
        inst->l->instance_free(inst, inst->ldata);
    if (inst->has_data && inst->h->instance_free)
        inst->h->instance_free(inst, inst->data);
    pthread_cond_destroy(&inst->cv);
    pthread_mutex_destroy(&inst->mu);
    pthread_mutex_destroy(&inst->msg_mu);
    g_free(inst->name);
    g_free(inst->host);
    g_free(inst->local_ip);
    if (inst->open_ctx_free)
        inst->open_ctx_free(inst->open_ctx);
    free(inst);
}

const char *zl_instance_get_name(const zl_instance_t *inst)
{
    return inst->name;
}

const zl_addr_t *zl_instance_server_addr(const zl_instance_t *inst)
{
    return inst->srv ? zl_server_addr(inst->srv) : NULL;
}

void zl_instance_get_stats(const zl_instance_t *inst, zl_instance_stats_t *o)
{
    o->sessions = atomic_load(&inst->sessions);
    o->active = atomic_load(&inst->active);
    o->connected = atomic_load(&inst->connected);
    o->failed = atomic_load(&inst->failed);
    o->last_error = atomic_load(&inst->last_error);
}

char *zl_instance_last_error(zl_instance_t *inst, char *buf, size_t len)
{
    pthread_mutex_lock(&inst->msg_mu);
    g_strlcpy(buf, inst->last_message, len);
    pthread_mutex_unlock(&inst->msg_mu);
    return buf;
}

