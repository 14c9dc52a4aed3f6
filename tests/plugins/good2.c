/* zltk test plugin "good2": a second valid plugin.
 *
 * Registers client "good-echo" (the same name as good's server: names are
 * unique per kind only) and layer "good2-layer" from a registration on its
 * stack, which it then scribbles over (the host copies registrations), then
 * tries malformed registrations and traces the results (see good.c for the
 * trace file). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"


static const int vtable = 2;

static const zl_registration_t client_reg = {
    .struct_size = sizeof(zl_registration_t),
    .kind = ZL_PROVIDES_CLIENT,
    .name = "good-echo",
    .description = "good2 client (test)",
    .vtable = &test_handler,
};
/* Malformed: never recorded. */
static const zl_registration_t two_kinds = {
    .struct_size = sizeof(zl_registration_t),
    .kind = ZL_PROVIDES_CLIENT | ZL_PROVIDES_SERVER,
    .name = "good2-two",
    .vtable = &vtable,
};
static const zl_registration_t no_kind = {
    .struct_size = sizeof(zl_registration_t),
    .kind = 0,
    .name = "good2-none",
    .vtable = &vtable,
};
static const zl_registration_t null_name = {
    .struct_size = sizeof(zl_registration_t),
    .kind = ZL_PROVIDES_CLIENT,
    .name = NULL,
    .vtable = &vtable,
};
static const zl_registration_t zero_size = {
    .struct_size = 0,
    .kind = ZL_PROVIDES_CLIENT,
    .name = "good2-zero",
    .vtable = &vtable,
};

static int good2_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    zl_registration_t layer_reg = {
        .struct_size = sizeof(zl_registration_t),
        .kind = ZL_PROVIDES_LAYER,
        .name = "good2-layer",
        .description = "good2 layer (test)",
        .vtable = &test_layer,
    };
    int r_client = host->register_provider(self, &client_reg);
    int r_layer = host->register_provider(self, &layer_reg);
    int r_two = host->register_provider(self, &two_kinds);
    int r_none = host->register_provider(self, &no_kind);
    int r_null = host->register_provider(self, &null_name);
    int r_zero = host->register_provider(self, &zero_size);
    int r_nullreg = host->register_provider(self, NULL);

    /* volatile: a plain memset of a dying local may be optimised away. */
    for (size_t i = 0; i < sizeof layer_reg; i++)
        ((volatile unsigned char *)&layer_reg)[i] = 0xa5;

    host->log(self, ZL_LOG_DEBUG, "init");
    trace("init good2 client=%d layer=%d two-kinds=%d no-kind=%d "
          "null-name=%d zero-size=%d null-reg=%d",
          r_client, r_layer, r_two, r_none, r_null, r_zero, r_nullreg);
    return r_client ? r_client : r_layer;
}

static void good2_destroy(zl_plugin_t *self)
{
    trace("destroy good2");
}

ZLTK_PLUGIN_DEFINE(
    .name = "good2",
    .version = "2.0",
    .description = "second good test plugin",
    .init = good2_init,
    .destroy = good2_destroy,
)
