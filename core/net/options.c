/* zltk — connection, client and server options: the defaults and the check.
 *
 * Every field is literal: 0 is "off" where a field has such a state and is
 * refused where it has none, so a struct that was zero-filled instead of
 * started from ZL_*_OPTIONS_INIT fails loudly at creation.
 */
#define G_LOG_DOMAIN "zltk-conn"
#include "net-internal.h"

#include <stdint.h>

void zl_conn_options_init(zl_conn_options_t *o)
{
    *o = (zl_conn_options_t)ZL_CONN_OPTIONS_INIT;
}

void zl_client_options_init(zl_client_options_t *o)
{
    *o = (zl_client_options_t)ZL_CLIENT_OPTIONS_INIT;
}

void zl_server_options_init(zl_server_options_t *o)
{
    *o = (zl_server_options_t)ZL_SERVER_OPTIONS_INIT;
}

/* A field without an "off" state is 0, or two fields disagree. */
static int refuse(const char *who, const char *field, const char *what,
                  const char *init)
{
    g_warning("%s: %s %s: start from %s", who, field, what, init);
    return -EINVAL;
}

int zl__conn_options_check(const zl_conn_options_t *o, const char *who,
                           const char *init)
{
    if (!o->high_water)
        return refuse(who, "conn.high_water", "is 0", init);
    if (o->low_water > o->high_water)
        return refuse(who, "conn.low_water", "is above conn.high_water",
                      init);
    if (!o->manager_ms)
        return refuse(who, "conn.manager_ms", "is 0", init);
    return 0;
}

int zl__client_options_check(const zl_client_options_t *o)
{
    const char *who = o->name ? o->name : "zl_client_connect";
    const char *init = "ZL_CLIENT_OPTIONS_INIT";

    /* conn first: in a zero-filled struct, that is what tells. */
    if (zl__conn_options_check(&o->conn, who, init) < 0)
        return -EINVAL;
    if (!o->attempt_delay_ms)
        return refuse(who, "attempt_delay_ms", "is 0", init);
    if (!o->reconnect_min_ms)
        return refuse(who, "reconnect_min_ms", "is 0", init);
    if (o->reconnect_max_ms < o->reconnect_min_ms)
        return refuse(who, "reconnect_max_ms", "is below reconnect_min_ms",
                      init);
    return 0;
}

int zl__server_options_check(const zl_server_options_t *o)
{
    const char *who = o->name ? o->name : "zl_server_new";
    const char *init = "ZL_SERVER_OPTIONS_INIT";

    if (zl__conn_options_check(&o->conn, who, init) < 0)
        return -EINVAL;
    if (o->backlog <= 0)
        return refuse(who, "backlog", o->backlog ? "is negative" : "is 0",
                      init);
    if (o->unix_mode > 07777) {
        g_warning("%s: unix_mode %#o is not a file mode (at most 07777)", who,
                  o->unix_mode);
        return -EINVAL;
    }
    if (o->unix_mode && (!zl_addr_is_unix_text(o->host) || o->host[5] == '@')) {
        g_warning("%s: unix_mode is set but the address '%s' has no socket "
                  "file (a unix:/PATH address)", who, o->host ? o->host : "*");
        return -EINVAL;
    }
    return 0;
}
