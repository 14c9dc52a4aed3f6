/* zltk — common definitions for every public header.
 *
 * This header is self-contained and installed.  It defines the export
 * macro and the C++ guards; it includes nothing but the C library.
 */
#ifndef ZLTK_COMMON_H
#define ZLTK_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every installed header wraps its declarations in these, so that C++
 * code links against libzltk's C names; ZL_EXTERN_C gives one declaration
 * C linkage (ZLTK_PLUGIN_DEFINE, expanded in the plugin's own code). */
#ifdef __cplusplus
#define ZL_BEGIN_DECLS extern "C" {
#define ZL_END_DECLS }
#define ZL_EXTERN_C extern "C"
#else
#define ZL_BEGIN_DECLS
#define ZL_END_DECLS
#define ZL_EXTERN_C
#endif

/* libzltk is built with -fvisibility=hidden: only ZL_API names are exported. */
#if defined(__GNUC__) || defined(__clang__)
#define ZL_API __attribute__((visibility("default")))
#define ZL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define ZL_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define ZL_API
#define ZL_PRINTF(f, a)
#define ZL_WARN_UNUSED
#endif

ZL_BEGIN_DECLS

/* Called when an object that holds a user pointer no longer needs it. */
typedef void (*zl_destroy_fn)(void *arg);

/* The one boolean grammar of zltk, for every key of zltk.conf (the host's,
 * a handler's, a layer's) and for the host API's get_bool: true/false,
 * yes/no, on/off or 1/0, in any case, with spaces or tabs around it.
 * Returns 0 and sets *out, or -EINVAL (leaving *out alone) for anything
 * else, text NULL included.  Any thread; text stays the caller's. */
ZL_API int zl_parse_bool(const char *text, bool *out);

/* The grammar in words, for messages: "'x' is not a boolean (" ZL_BOOL_WORDS ")". */
#define ZL_BOOL_WORDS "true/false, yes/no, on/off or 1/0"

ZL_END_DECLS

#endif
