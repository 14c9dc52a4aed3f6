/* zltk test plugin "ctor-segv": a valid plugin whose constructor stores
 * to an unmapped address.  Never in tests/plugins/.libs (the plugin suite
 * loads that whole directory in-process): it lands in
 * tests/plugins/crash/.libs, and only probes (zl_plugins_set_probe) or a
 * host run meant to die load it. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <zltk/plugin.h>

__attribute__((constructor)) static void crash_ctor(void)
{
    /* Not NULL, which UBSan would catch as undefined before the store:
     * an address far below any mapping (mmap_min_addr), so that the store
     * faults for real.  volatile: the compiler keeps it. */
    volatile uintptr_t nowhere = 16;

    fprintf(stderr, "ctor-segv: in its constructor\n");
    *(volatile int *)nowhere = 1;
}

static int crash_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    (void)self, (void)host;
    return 0;
}

ZLTK_PLUGIN_DEFINE(
    .name = "ctor-segv",
    .version = "1.0",
    .description = "its constructor stores to an unmapped address (test)",
    .init = crash_init,
)
