/* zltk — version of the installed SDK: a fixed copy of the header configure
 * generated for plugin ABI 1.0 (zltk 0.1.0), frozen for tests/abi-1.0. */
#ifndef ZLTK_VERSION_H
#define ZLTK_VERSION_H

#include <zltk/common.h>

#define ZLTK_VERSION "0.1.0"
/* Plugin ABI of these headers: a plugin built with MAJOR.MINOR loads into a
 * host with the same MAJOR and a MINOR at least as new. */
#define ZLTK_PLUGIN_ABI_MAJOR 1
#define ZLTK_PLUGIN_ABI_MINOR 0

ZL_BEGIN_DECLS

/* Version string of the libzltk actually loaded.  Any thread. Static string. */
ZL_API const char *zl_version(void);

ZL_END_DECLS

#endif
