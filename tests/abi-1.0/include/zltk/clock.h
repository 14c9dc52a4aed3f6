/* zltk — monotonic clock.
 *
 * Read straight from clock_gettime(CLOCK_MONOTONIC) through the vDSO: no
 * clock-updating thread.  All functions: any thread, no allocation.
 */
#ifndef ZLTK_CLOCK_H
#define ZLTK_CLOCK_H

#include <zltk/common.h>

ZL_BEGIN_DECLS

/* Milliseconds on the monotonic clock (arbitrary epoch). */
ZL_API uint64_t zl_now_ms(void);
/* Microseconds on the monotonic clock. */
ZL_API uint64_t zl_now_us(void);
/* Nanoseconds on the monotonic clock. */
ZL_API uint64_t zl_now_ns(void);

ZL_END_DECLS

#endif
