/* placeholder: replaced by the tcp plugin */
#include <zltk/plugin.h>
static int tcp_init(zl_plugin_t *self, const zl_host_api_t *api)
{
    (void)self, (void)api;
    return 0;
}
ZLTK_PLUGIN_DEFINE(.name = "tcp", .version = "0", .init = tcp_init)
