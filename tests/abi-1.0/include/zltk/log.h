/* zltk — logging.
 *
 * zltk logs through GLib's structured logging (g_message(), g_debug(), … with
 * a G_LOG_DOMAIN per area).  zl_log_init() installs a writer that formats
 * each line on the calling thread and hands it to one background thread over
 * a bounded queue; when the queue is full the line is dropped and counted,
 * never blocking an event loop.  zl_log_shutdown() flushes synchronously.
 *
 * Fatal lines (g_error(), or levels made fatal with G_DEBUG) are the one
 * exception: they are written synchronously, after a flush, because GLib
 * aborts as soon as the writer returns.
 *
 * Console line format (a line without a domain omits "domain: "):
 *   2026-11-21 10:00:00.123 W [zl-poller 0] zltk-poller: message
 * (local time, level letter E C W M I D, thread name, domain).
 */
#ifndef ZLTK_LOG_H
#define ZLTK_LOG_H

#include <zltk/common.h>

ZL_BEGIN_DECLS

typedef enum {
    ZL_LOG_ERROR = 0,
    ZL_LOG_CRITICAL,
    ZL_LOG_WARNING,
    ZL_LOG_MESSAGE,
    ZL_LOG_INFO,
    ZL_LOG_DEBUG
} zl_log_level_t;

typedef struct zl_log_options {
    /* Most verbose level written; lines below it are discarded cheaply.
     * Zero-initialised options mean ZL_LOG_ERROR: set it. */
    zl_log_level_t level;
    /* Also append lines to this file (NULL: none). */
    const char *file;
    /* Write to standard error (the usual choice). */
    bool console;
    /* Queue capacity in lines; 0: 8192. */
    size_t queue_lines;
} zl_log_options_t;

/* Install the writer and start the log thread.  Returns 0, -EALREADY, or
 * -errno if the file cannot be opened (nothing is started then).  Call once
 * from one thread before other threads log. */
ZL_API int zl_log_init(const zl_log_options_t *opts);

/* Write out every queued line, stop the log thread and close the file.
 * Afterwards lines go synchronously to standard error.  Any thread but the
 * log thread. */
ZL_API void zl_log_shutdown(void);

/* Block until every line queued before the call is written.  Any thread. */
ZL_API void zl_log_flush(void);

/* Change / read the level at run time.  Any thread. */
ZL_API void zl_log_set_level(zl_log_level_t level);
ZL_API zl_log_level_t zl_log_get_level(void);

/* Parse "error", "critical", "warning", "message", "info", "debug" (case
 * insensitive).  Returns 0 and sets *out, or -EINVAL. */
ZL_API int zl_log_level_parse(const char *name, zl_log_level_t *out);
/* Lower-case name of a level; "unknown" out of range.  Static string. */
ZL_API const char *zl_log_level_name(zl_log_level_t level);

/* Lines dropped because the queue was full, since zl_log_init(). */
ZL_API uint64_t zl_log_dropped(void);

/* Name the calling thread (at most 15 bytes are kept); log lines show it.
 * Calling thread only. */
ZL_API void zl_thread_set_name(const char *name);
/* The calling thread's name as log lines show it.  Valid until the thread
 * renames itself or exits. */
ZL_API const char *zl_thread_name(void);

ZL_END_DECLS

#endif
