/* zltk — error codes.
 *
 * Every function that can fail returns 0 (or a non-negative value) on
 * success and a negative int on failure: either one of the ZL_E* codes
 * below or a system error passed through as -errno (e.g. -EINVAL).
 * zl_strerror() and zl_err_name() understand both.
 */
#ifndef ZLTK_ERROR_H
#define ZLTK_ERROR_H

#include <zltk/common.h>

ZL_BEGIN_DECLS

/* XX(NAME, "message") defines ZL_NAME.  Codes live in [-4095, -4000], far from errno values. */
#define ZL_ERRNO_MAP(XX)                                              \
    XX(EOF, "end of stream")                                          \
    XX(ETIMEOUT, "timed out")                                         \
    XX(EREFUSED, "connection refused")                                \
    XX(ERESET, "connection reset by peer")                            \
    XX(EDNS, "name resolution failed")                                \
    XX(ESHUTDOWN, "shut down")                                        \
    XX(ETLS, "TLS error")                                             \
    XX(ECANCELED, "operation canceled")                               \
    XX(EOTHER, "other error")

#define ZL__ERR_BASE (-4000)

typedef enum {
#define ZL__ERR_ENUM(name, msg) ZL__ERR_IDX_##name,
    ZL_ERRNO_MAP(ZL__ERR_ENUM)
#undef ZL__ERR_ENUM
    ZL__ERR_IDX_MAX
} zl__err_idx_t;

typedef enum {
#define ZL__ERR_CODE(name, msg) ZL_##name = ZL__ERR_BASE - ZL__ERR_IDX_##name,
    ZL_ERRNO_MAP(ZL__ERR_CODE)
#undef ZL__ERR_CODE
} zl_errno_t;

/* Human-readable message for a code (ZL_E* or -errno).  Any thread.
 * Returns a static string, never NULL. */
ZL_API const char *zl_strerror(int err);

/* Symbolic name ("ZL_ETIMEOUT", "ZL_EOF", "ECONNRESET").  Any thread.  Static string,
 * "UNKNOWN" for codes it does not know. */
ZL_API const char *zl_err_name(int err);

ZL_END_DECLS

#endif
