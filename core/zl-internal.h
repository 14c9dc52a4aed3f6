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

/* Pin the calling thread to one CPU.  Returns 0 or -errno. */
int zl__thread_pin(int cpu);

#endif
