/* zltk test plugin "good": a well-behaved plugin.
 *
 * Registers server "good-echo" and client "good-client", reads its
 * [plugin.good] settings and, when $ZLTK_TEST_PLUGIN_TRACE names a file,
 * appends one line per init/destroy call with what it saw, so the tests can
 * observe it without the plugin exporting anything but its entry. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"



/* The keys its handlers read (the host warns about others). */
static const char *const good_keys[] = {"some-handler-key", "handler-own",
                                        NULL};
static const zl_handler_t good_handler = {
    .struct_size = sizeof(zl_handler_t),
    .keys = good_keys,
    .on_recv = test_on_recv,
};

static const zl_registration_t echo_reg = {
    .struct_size = sizeof(zl_registration_t),
    .kind = ZL_PROVIDES_SERVER,
    .name = "good-echo",
    .description = "good echo server (test)",
    .vtable = &good_handler,
};

static const zl_registration_t client_reg = {
    .struct_size = sizeof(zl_registration_t),
    .kind = ZL_PROVIDES_CLIENT,
    .name = "good-client",
    .description = "good client (test)",
    .vtable = &good_handler,
};

static int good_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    int64_t count = 0, big = 0, junk = 0;
    bool enabled = false, bjunk = false;
    const char *greeting, *missing_str, *name;
    int r_server, r_client, r_count, r_big, r_enabled, r_badint, r_badbool,
        r_missing;

    /* Every field used here is ABI 1.0; check anyway, as the header asks. */
    if (host->struct_size < offsetof(zl_host_api_t, reserved))
        return -EPROTO;

    r_server = host->register_provider(self, &echo_reg);
    r_client = host->register_provider(self, &client_reg);
    greeting = host->get_string(self, "greeting");
    missing_str = host->get_string(self, "missing");
    r_count = host->get_int(self, "count", &count);
    r_big = host->get_int(self, "big", &big);
    r_enabled = host->get_bool(self, "enabled", &enabled);
    r_badint = host->get_int(self, "bad-int", &junk);
    r_badbool = host->get_bool(self, "bad-bool", &bjunk);
    r_missing = host->get_int(self, "missing", &junk);
    name = host->name(self);

    host->log(self, ZL_LOG_INFO, "init: greeting=%s count=%" PRId64,
              greeting ? greeting : "(none)", count);
    trace("init good name=%s server=%d client=%d count=%d:%" PRId64
          " big=%d:%" PRId64 " enabled=%d:%d bad-int=%d bad-bool=%d"
          " missing=%d missing-str=%s greeting=[%s]",
          name ? name : "(null)", r_server, r_client, r_count,
          r_count ? 0 : count, r_big, r_big ? 0 : big, r_enabled,
          r_enabled ? 0 : (int)enabled, r_badint, r_badbool, r_missing,
          missing_str ? missing_str : "(null)",
          greeting ? greeting : "(null)");
    if (r_server)
        return r_server;
    return r_client;
}

static void good_destroy(zl_plugin_t *self)
{
    trace("destroy good");
}

ZLTK_PLUGIN_DEFINE(
    .name = "good",
    .version = "1.2.3",
    .description = "good test plugin",
    .init = good_init,
    .destroy = good_destroy,
)
