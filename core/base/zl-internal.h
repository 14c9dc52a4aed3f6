/* zltk — private helpers shared by core/ files.  Never installed. */
#ifndef ZLTK_ZL_INTERNAL_H
#define ZLTK_ZL_INTERNAL_H

#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include <zltk/zltk.h>

#define ZL__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ZL__LIKELY(x) __builtin_expect(!!(x), 1)
#define ZL__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Number of online CPUs (at least 1). */
int zl__ncpu(void);

/* Reference counting of pollers: objects that may outlive zl_poller_free()
 * (timer handles, worker jobs replying to a poller) hold a reference, so
 * that posting to a stopped poller fails cleanly with ZL_ESHUTDOWN instead
 * of touching freed memory. */
void zl__poller_ref(zl_poller_t *p);
void zl__poller_unref(zl_poller_t *p);

/* Tell the poller of the calling thread that bytes of send-queue memory
 * were just freed (nothing on other threads).  Once enough piled up, one
 * rate-limited malloc_trim() runs on a worker, so RSS falls back after a
 * burst of slow peers (core/poller.c, "memory").  Cheap: an add and a
 * compare. */
void zl__poller_note_freed(size_t bytes);

/* Pin the calling thread to one CPU.  Returns 0 or -errno. */
int zl__thread_pin(int cpu);

/* Plugin files, before dlopen (core/plugin-file.c).  file_check: 0, or
 * -ENOEXEC (-errno) with *error set, when the ELF headers do not describe
 * a shared object of this machine that lies whole in the file.
 * similar_symbol: a defined dynamic symbol containing name but not equal
 * to it (free() it), or NULL.  probe: load path in argv... path, a child
 * process, within timeout_ms; 0 or -ENOEXEC with *error naming the crash. */
int zl__plugin_file_check(const char *path, char **error);
char *zl__plugin_file_similar_symbol(const char *path, const char *name);
int zl__plugin_probe(const char *const *argv, unsigned timeout_ms,
                     const char *path, char **error);

/* The host API's instance and session functions (core/session.c). */
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
int zl__session_send(zl_session_t *s, const void *data, size_t len);
int zl__session_send_buf(zl_session_t *s, zl_buf_t *buf);
void zl__session_close(zl_session_t *s);
void zl__session_abort(zl_session_t *s);
void zl__session_shutdown(zl_session_t *s);
void zl__session_fail(zl_session_t *s, int code, const char *fmt, ...)
    ZL_PRINTF(3, 4);
void zl__session_pause(zl_session_t *s);
void zl__session_resume(zl_session_t *s);
const zl_addr_t *zl__session_peer(const zl_session_t *s);
const zl_addr_t *zl__session_local(const zl_session_t *s);
const char *zl__session_name(const zl_session_t *s);
zl_instance_t *zl__session_instance(const zl_session_t *s);
zl_poller_t *zl__session_poller(const zl_session_t *s);
size_t zl__session_queued(const zl_session_t *s);
zl_session_t *zl__session_ref(zl_session_t *s);
void zl__session_unref(zl_session_t *s);
int zl__session_add_timer(zl_session_t *s, uint64_t delay_ms,
                          zl_session_timer_fn fn, void *arg,
                          zl_destroy_fn destroy);
int zl__session_post(zl_session_t *s, zl_session_fn fn, void *arg,
                     zl_destroy_fn destroy);
int zl__session_submit(zl_session_t *s, zl_work_fn work, zl_session_fn done,
                       void *arg, zl_destroy_fn destroy);
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
const char *zl__session_transport_info(zl_session_t *s, const char *key);
void zl__session_log(zl_session_t *s, zl_log_level_t level, const char *fmt,
                     ...) G_GNUC_PRINTF(3, 4);

#endif
