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

#endif
