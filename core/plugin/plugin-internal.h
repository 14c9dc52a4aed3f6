/* zltk — the plugin layer's private header (core/plugin/).  Never
 * installed.
 *
 *   loader.c       finding, checking and dlopen()ing plugins; registrations
 *   plugin-file.c  what is checked before dlopen (ELF headers, the probe)
 *   host-api.c     the zl_host_api_t table and the plugin-facing getters
 *   instance.c     zltk/instance.h: instances, their start and stop
 *   session.c      sessions: connection callbacks, send/close, timers,
 *                  posted tasks and worker jobs
 *   layer.c        transport layers: the lower_* / upper_* calls and the
 *                  handler's calls routed through the layer
 *   embed.c        zl_start/zl_stop, zl_instance_open/close, and the
 *                  process's registry of layers loaded by name
 *
 * Lifetimes.  A session holds one reference to its connection and is itself
 * reference counted: the connection's hold (dropped after on_closed), the
 * instance's hold on a client's session, and one per timer, posted task,
 * worker job or session_ref().  "closed" is set on the owner thread just
 * before the handler's on_closed; timers, tasks and worker completions check
 * it there, so nothing reaches the handler after on_closed.
 */
#ifndef ZLTK_PLUGIN_INTERNAL_H
#define ZLTK_PLUGIN_INTERNAL_H

#include "zl-internal.h"

#include <pthread.h>
#include <stdalign.h>

/* ------------------------------------------------------------ records */

/* What a connection's data points at, the first member of both records:
 * a server connection's data is its instance until srv_on_connect creates
 * the session and stores it with zl_conn_set_data(); a client connection's
 * is its session from the start. */
typedef struct zl__conn_data {
    bool session; /* true: a zl_session_t, false: a zl_instance_t */
} zl__conn_data_t;

typedef struct stimer stimer_t;

struct zl_session {
    zl__conn_data_t hdr; /* .session = true */
    atomic_int refs;
    zl_instance_t *inst;
    zl_conn_t *conn; /* one reference, dropped when the session is freed */
    zl_poller_t *poller;
    stimer_t *timers; /* armed session timers (owner thread) */
    uint32_t serial;  /* the connection's, for names; set once at open */
    bool live;        /* linked in the instance's live list (under mu) */
    /* Poller thread only (one byte-pair of bits: never written by another
     * thread, unlike live).  Backpressure seen by the handler: busy while
     * the connection's queue (cbusy) or the layer's own backlog (lbusy,
     * zl__lnode_t.queued bytes) is above the high mark; ubusy is what the
     * handler was last told. */
    bool opened : 1, refused : 1, closed : 1;
    bool in_layer_err : 1; /* inside the layer's on_err */
    bool swallow_err : 1;  /* the connection reports what the handler knows */
    bool cbusy : 1, lbusy : 1, ubusy : 1;
    bool failed : 1; /* the handler's fail(): keep its error as the last one */
};
/* Every idle connection of a host carries one: keep it to 48 bytes, so
 * that the handler's state follows at 48 (the next 16-byte boundary) and
 * an echo session fits an 80-byte malloc chunk. */
_Static_assert(sizeof(void *) != 8 || sizeof(struct zl_session) <= 48,
               "struct zl_session grew past 48 bytes");

/* What only a layered session needs, after the layer's state in the same
 * allocation: the instance's list of live layered sessions (under the
 * instance's mu) and the layer's own backlog (poller thread). */
typedef struct zl__lnode {
    zl_session_t *next, **pprev;
    size_t queued;
} zl__lnode_t;

#define ZL__ALIGN_UP(n)                                                     \
    (((n) + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1))
#define ZL__STATE_OFFSET ZL__ALIGN_UP(sizeof(struct zl_session))

struct zl_instance {
    zl__conn_data_t hdr; /* .session = false */
    char *name, *host, *local_ip;
    bool server;
    const zl_handler_t *h;
    zl_plugin_t *plugin;
    const zl_layer_t *l; /* NULL: plain transport */
    zl_plugin_t *layer_plugin;
    void *ldata; /* the layer's */
    bool has_ldata;
    size_t loff; /* offset of the layer's state from the handler's */
    zl_instance_config_fn config;
    zl_instance_default_fn config_default;
    zl_instance_report_fn report;
    void *ctx;
    void (*on_finished)(zl_instance_t *inst, void *ctx);
    void *finished_ctx; /* the caller's ctx, for on_finished */
    void *user_data;    /* zl_instance_user_data() */
    /* zl_instance_open()'s settings context, freed with the instance. */
    void *open_ctx;
    void (*open_ctx_free)(void *open_ctx);
    zl_client_options_t copts;
    zl_server_options_t sopts;
    void *data; /* the handler's */
    int errors; /* configuration problems reported (main thread) */
    bool has_data, started;
    atomic_bool stopping;
    zl_server_t *srv;
    zl_session_t *client; /* the instance's reference */
    zl_session_t *live;   /* layered server sessions, for a stop that says
                             goodbye through the layer (under mu) */
    atomic_uint_fast64_t sessions, active, connected, failed;
    atomic_int last_error;
    char last_message[512]; /* under msg_mu */
    pthread_mutex_t msg_mu;
    pthread_mutex_t mu; /* with cv: waiting for active == 0 */
    pthread_cond_t cv;
};

/* The handler's state, and the layer's after it. */
static inline void *zl__state_of(zl_session_t *s)
{
    return (char *)s + ZL__STATE_OFFSET;
}

static inline void *zl__lstate_of(zl_session_t *s)
{
    return (char *)s + ZL__STATE_OFFSET + s->inst->loff;
}

/* Layered sessions only (s->inst->l set). */
static inline zl__lnode_t *zl__lnode_of(zl_session_t *s)
{
    return (zl__lnode_t *)((char *)s + ZL__STATE_OFFSET + s->inst->loff +
                           ZL__ALIGN_UP(s->inst->l->state_size));
}

/* The session of an open-or-closing connection; NULL while a server
 * connection still carries its instance (or nothing). */
static inline zl_session_t *zl__session_of(zl_conn_t *c)
{
    zl__conn_data_t *d = zl_conn_get_data(c);

    return d && d->session ? (zl_session_t *)d : NULL;
}

/* ------------------------------------------------- loader.c (plugins) */

/* The calls behind the host API's plugin-level entries: register_provider
 * (only inside init), the [plugin.NAME] key (NULL if absent or no settings
 * source), and the settings' source name for messages (a file name, or
 * "configuration"). */
int zl__plugin_register(zl_plugin_t *self, const zl_registration_t *r);
const char *zl__plugin_setting(zl_plugin_t *self, const char *key);
const char *zl__plugin_source(const zl_plugin_t *self);

/* Plugin files, before dlopen (plugin-file.c).  file_check: 0, or
 * -ENOEXEC (-errno) with *error set, when the ELF headers do not describe
 * a shared object of this machine that lies whole in the file.
 * similar_symbol: a defined dynamic symbol containing name but not equal
 * to it (free() it), or NULL.  probe: load path in argv... path, a child
 * process, within timeout_ms; 0 or -ENOEXEC with *error naming the crash. */
int zl__plugin_file_check(const char *path, char **error);
char *zl__plugin_file_similar_symbol(const char *path, const char *name);
int zl__plugin_probe(const char *const *argv, unsigned timeout_ms,
                     const char *path, char **error);

/* ------------------------------------------ host-api.c (typed values) */

/* The one typed getter behind get_int/get_bool and config_int/config_bool:
 * v (NULL: -ENOENT) parsed with zl_parse_int (int64_t range) or
 * zl_parse_bool.  A bad value is -EINVAL, and complain(ctx, key, msg)
 * gets the message ("'v' is not an integer", ...) to report with the
 * file and group it knows. */
typedef enum { ZL__VALUE_INT, ZL__VALUE_BOOL } zl__value_type_t;
typedef void (*zl__complain_fn)(void *ctx, const char *key, const char *msg);
int zl__typed_value(const char *v, zl__value_type_t type, void *out,
                    const char *key, zl__complain_fn complain, void *ctx);

/* ------------------------------------------- instance.c (host API) */

const char *zl__instance_plugin_name(const zl_instance_t *inst);
const char *zl__instance_name(const zl_instance_t *inst);
bool zl__instance_is_server(const zl_instance_t *inst);
void *zl__instance_data(const zl_instance_t *inst);
bool zl__instance_config_is_default(const zl_instance_t *inst,
                                    const char *key);
const char *zl__instance_config_string(const zl_instance_t *inst,
                                       const char *key);
int zl__instance_config_int(const zl_instance_t *inst, const char *key,
                            int64_t *out);
int zl__instance_config_bool(const zl_instance_t *inst, const char *key,
                             bool *out);
void zl__instance_config_error(zl_instance_t *inst, const char *key,
                               const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* Count one configuration problem and hand it to the instance's report
 * callback (or log it as "[server.NAME] key: msg"). */
void zl__instance_report(zl_instance_t *inst, const char *key,
                         const char *msg);

/* ------------------------------------------------ session.c (sessions) */

/* The connection handlers of client and server instances. */
extern const zl_conn_handler_t zl__client_conn_handler;
extern const zl_conn_handler_t zl__server_conn_handler;

/* A new session of inst (counted in sessions and active), holding one
 * reference: the connection's. */
zl_session_t *zl__session_new(zl_instance_t *inst);
/* A session is over: unlink it from the live list and count it out of
 * active, under the instance's lock; finished: call on_finished. */
void zl__session_done(zl_instance_t *inst, bool finished, zl_session_t *s);
/* Record err as the instance's last error (and message, for a client). */
void zl__session_note_error(zl_instance_t *inst, const zl_error_t *err);
/* Tell the handler when the union of the two busy sources changes. */
void zl__session_busy_note(zl_session_t *s);
/* Tell the handler of err: on_eof for ZL_EOF when it has one (the
 * handler's half-close), else on_err (if set). */
void zl__session_handler_err(zl_session_t *s, const zl_error_t *err);

/* The public session calls (zltk/session.h) live in session.c too. */
void zl__session_log(zl_session_t *s, zl_log_level_t level, const char *fmt,
                     ...) G_GNUC_PRINTF(3, 4);

/* ------------------------------------------------ layer.c (layers) */

/* The handler's calls on a layered session, run by the layer on the
 * session's poller (posted there from other threads). */
int zl__layer_send(zl_session_t *s, const void *data, size_t len);
int zl__layer_send_buf(zl_session_t *s, zl_buf_t *buf);
void zl__layer_close(zl_session_t *s);
void zl__layer_shutdown(zl_session_t *s);
void zl__layer_pause(zl_session_t *s, bool paused);

int zl__session_lower_send(zl_session_t *s, const void *data, size_t len);
int zl__session_lower_send_buf(zl_session_t *s, zl_buf_t *buf);
void zl__session_lower_close(zl_session_t *s);
int zl__session_layer_queued(zl_session_t *s, size_t bytes);
void zl__session_lower_shutdown(zl_session_t *s);
void zl__session_upper_connect(zl_session_t *s);
void zl__session_upper_recv(zl_session_t *s, zl_buf_t *buf);
void zl__session_upper_err(zl_session_t *s, const zl_error_t *err);
void *zl__instance_layer_data(const zl_instance_t *inst);
const char *zl__instance_host(const zl_instance_t *inst);

#endif
