/* zltk test plugin "ctor-hang": a valid plugin whose constructor
 * never returns.  Never in tests/plugins/.libs (the plugin suite loads that
 * whole directory in-process): it lands in tests/plugins/crash/.libs, and
 * only probes (zl_plugins_set_probe) or a host run meant to die load it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <zltk/plugin.h>

__attribute__((constructor)) static void crash_ctor(void)
{
    fprintf(stderr, "ctor-hang: in its constructor\n");
    for (;;)
        pause();
}

static int crash_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    (void)self, (void)host;
    return 0;
}

ZLTK_PLUGIN_DEFINE(
    .name = "ctor-hang",
    .version = "1.0",
    .description = "its constructor never returns (test)",
    .init = crash_init,
)
