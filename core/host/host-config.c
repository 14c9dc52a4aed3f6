/* zltk-host — configuration file: parse, validate, resolve plugins.
 *
 * Every problem is one line on stderr that names the file, the group and
 * the key, and the checker goes on to find the next one: a user fixes a
 * file in one pass, not one error per run.
 */
#define G_LOG_DOMAIN "zltk-host"
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host-config.h"

/* Control characters as C escapes: a value that carries a newline (a
 * --tls-cert argument, say) stays on its problem line and cannot forge
 * the next one. */
static char *escape_controls(char *msg)
{
    GString *out;

    for (const char *c = msg;; c++) {
        if (!*c)
            return msg;
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            break;
    }
    out = g_string_sized_new(strlen(msg) + 8);
    for (const char *c = msg; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (u == '\n')
            g_string_append(out, "\\n");
        else if (u == '\t')
            g_string_append(out, "\\t");
        else if (u == '\r')
            g_string_append(out, "\\r");
        else if (u < 0x20 || u == 0x7f)
            g_string_append_printf(out, "\\x%02x", u);
        else
            g_string_append_c(out, *c);
    }
    g_free(msg);
    return g_string_free(out, FALSE);
}

void zl_host_cfg_report(zl_host_cfg_t *cfg, bool error, const char *group,
                        const char *key, const char *fmt, ...)
{
    va_list ap;
    char *msg, *line;
    size_t len, off = 0;

    va_start(ap, fmt);
    msg = escape_controls(g_strdup_vprintf(fmt, ap));
    va_end(ap);
    /* One write(2): the log thread shares stderr, and its lines must not
     * land inside this one. */
    line = g_strdup_printf("zltk-host: %s%s: %s%s%s%s%s%s\n",
                           error ? "" : "warning: ", cfg->file,
                           group ? "[" : "", group ? group : "",
                           group ? "] " : "", key ? key : "",
                           key ? ": " : "", msg);
    len = strlen(line);
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    g_free(line);
    g_free(msg);
    if (error)
        cfg->errors++;
    else
        cfg->warnings++;
}

/* What an instance gets when its group does not set the key.  Servers
 * close a silent session after 10 minutes, as nginx's stream module does
 * (proxy_timeout); clients stay open (the client chose to connect, and may
 * wait for its peer as long as it likes).  Keepalive finds a vanished peer
 * of either within about 40 s (30 s of silence, one unanswered probe 10 s
 * later, cut by the send timeout's TCP_USER_TIMEOUT). */
#define HOST_SERVER_IDLE_MS 600000
#define HOST_KEEPALIVE_MS 30000

#define ERR(cfg, g, k, ...) zl_host_cfg_report(cfg, true, g, k, __VA_ARGS__)
#define WARN(cfg, g, k, ...) zl_host_cfg_report(cfg, false, g, k, __VA_ARGS__)
/* A plugin problem: an error, or a warning when running leniently. */
#define PERR(cfg, g, k, ...)                                                \
    zl_host_cfg_report(cfg, !(cfg)->lenient, g, k, __VA_ARGS__)

static char *get_str(zl_host_cfg_t *cfg, const char *g, const char *k)
{
    char *v = g_key_file_get_string(cfg->kf, g, k, NULL);
    if (v)
        g_strstrip(v);
    return v;
}

/* What a key holds, where it goes, and what it may be: each integer,
 * duration and boolean key is read by get_key, through the one grammar of
 * each (zl_parse_int, zl_parse_bool), straight into its field. */
typedef enum {
    KEY_INT,  /* a count or a size */
    KEY_MS,   /* a duration in milliseconds; with min 0, 0 turns it off */
    KEY_BOOL,
} key_kind_t;

typedef struct host_key {
    const char *name;
    key_kind_t kind;
    int64_t min, max;
    const char *example; /* KEY_MS: a value to suggest */
    size_t off, size;    /* the field, in the struct the table is for */
} host_key_t;

#define FIELD(type, f) offsetof(type, f), sizeof(((type *)0)->f)
#define SIZE_KEY_MAX ((int64_t)(SIZE_MAX > INT64_MAX ? INT64_MAX : SIZE_MAX))

/* Store v, already within the key's range, into a bool, a 32-bit or a
 * 64-bit field (signed or not: the range is never negative). */
static void store(void *field, size_t size, int64_t v)
{
    if (size == sizeof(bool)) {
        bool b = v != 0;
        memcpy(field, &b, sizeof(b));
    } else if (size == sizeof(uint32_t)) {
        uint32_t u = (uint32_t)v;
        memcpy(field, &u, sizeof(u));
    } else {
        uint64_t u = (uint64_t)v;
        memcpy(field, &u, sizeof(u));
    }
}

/* Read key k of group g.  Returns true and sets *out when present and
 * valid; when present and invalid, reports an error naming file, group and
 * key with what to write instead. */
static bool get_key(zl_host_cfg_t *cfg, const char *g, const host_key_t *k,
                    int64_t *out)
{
    char *v = g_key_file_get_value(cfg->kf, g, k->name, NULL);
    bool b;
    int rc;

    if (!v)
        return false;
    g_strstrip(v);
    if (k->kind == KEY_BOOL) {
        rc = zl_parse_bool(v, &b);
        if (rc == 0)
            *out = b;
        else
            ERR(cfg, g, k->name, "'%s' is not a boolean (" ZL_BOOL_WORDS ")",
                v);
    } else {
        rc = zl_parse_int(v, k->min, k->max, out);
        if (rc == -ERANGE)
            ERR(cfg, g, k->name,
                "%s is out of range (%" G_GINT64_FORMAT "..%" G_GINT64_FORMAT
                ")", v, k->min, k->max);
        else if (rc < 0 && k->kind == KEY_MS)
            /* A word (true, on, …) too: these keys are times, not switches. */
            ERR(cfg, g, k->name, "'%s' is not a time: give an integer of "
                                 "milliseconds (e.g. %s)%s",
                v, k->example, k->min ? "" : ", or 0 to turn it off");
        else if (rc < 0)
            ERR(cfg, g, k->name, "'%s' is not an integer", v);
    }
    g_free(v);
    return rc == 0;
}

/* Every key of table present in group g, into the struct at base. */
static void get_keys(zl_host_cfg_t *cfg, const char *g,
                     const host_key_t *table, size_t n, void *base)
{
    int64_t v;

    for (size_t i = 0; i < n; i++)
        if (get_key(cfg, g, &table[i], &v))
            store((char *)base + table[i].off, table[i].size, v);
}

/* The host's own keys of instance groups, with the fields they fill. */
static const host_key_t conn_keys[] = {
    {"send-timeout", KEY_MS, 0, INT32_MAX, "10000",
     FIELD(zl_conn_options_t, send_timeout_ms)},
    {"idle-timeout", KEY_MS, 0, INT32_MAX, "600000",
     FIELD(zl_conn_options_t, idle_timeout_ms)},
    {"keepalive", KEY_MS, 0, INT32_MAX, "30000",
     FIELD(zl_conn_options_t, keepalive_ms)},
    {"high-water", KEY_INT, 1, SIZE_KEY_MAX, NULL,
     FIELD(zl_conn_options_t, high_water)},
    {"low-water", KEY_INT, 1, SIZE_KEY_MAX, NULL,
     FIELD(zl_conn_options_t, low_water)},
};
static const host_key_t server_keys[] = {
    {"backlog", KEY_INT, 0, 65535, NULL, FIELD(zl_server_options_t, backlog)},
    {"max-connections", KEY_INT, 0, INT32_MAX, NULL,
     FIELD(zl_server_options_t, max_conns)},
};
static const host_key_t client_keys[] = {
    {"connect-timeout", KEY_MS, 1, INT32_MAX, "5000",
     FIELD(zl_client_options_t, connect_timeout_ms)},
    {"connect-attempt-delay", KEY_MS, 1, INT32_MAX, "250",
     FIELD(zl_client_options_t, attempt_delay_ms)},
    {"reconnect", KEY_BOOL, 0, 1, NULL, FIELD(zl_client_options_t, reconnect)},
    {"reconnect-min", KEY_MS, 1, INT32_MAX, "500",
     FIELD(zl_client_options_t, reconnect_min_ms)},
    {"reconnect-max", KEY_MS, 1, INT32_MAX, "30000",
     FIELD(zl_client_options_t, reconnect_max_ms)},
    {"max-attempts", KEY_INT, 0, INT32_MAX, NULL,
     FIELD(zl_client_options_t, max_attempts)},
};

static bool in_table(const char *k, const host_key_t *table, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(k, table[i].name))
            return true;
    return false;
}

static bool in_list(const char *k, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(k, *list))
            return true;
    return false;
}

/* ------------------------------------------------------------ sections */

static void parse_host(zl_host_cfg_t *cfg)
{
    static const char *const known[] = {"pollers", "workers", "backend",
                                        "log-level", "plugin-dir", NULL};
    static const char *const backends[] = {"epoll", "poll", "kqueue", NULL};
    static const char *const levels[] = {"error",   "critical", "warning",
                                         "message", "info",     "debug",
                                         NULL};
    static const host_key_t pollers = {"pollers", KEY_INT, 0, 1024, NULL,
                                       FIELD(zl_host_cfg_t, pollers)};
    static const host_key_t workers = {"workers", KEY_INT, 0, 1024, NULL,
                                       FIELD(zl_host_cfg_t, workers)};
    const char *g = "host";
    char **keys = g_key_file_get_keys(cfg->kf, g, NULL, NULL);
    char *v;

    for (size_t i = 0; keys && keys[i]; i++)
        if (!in_list(keys[i], known))
            WARN(cfg, g, keys[i], "unknown key (known: pollers, workers, "
                                  "backend, log-level, plugin-dir); ignored");
    g_strfreev(keys);
    get_keys(cfg, g, &pollers, 1, cfg);
    get_keys(cfg, g, &workers, 1, cfg);
    if ((v = get_str(cfg, g, "backend"))) {
        if (!in_list(v, backends))
            ERR(cfg, g, "backend", "'%s' is not a backend (epoll, poll or "
                                   "kqueue)", v);
        else
            cfg->backend = g_strdup(v);
        g_free(v);
    }
    if ((v = get_str(cfg, g, "log-level"))) {
        if (!in_list(v, levels))
            ERR(cfg, g, "log-level", "'%s' is not a level (error, critical, "
                                     "warning, message, info or debug)", v);
        else
            cfg->log_level = g_strdup(v);
        g_free(v);
    }
    if ((v = get_str(cfg, g, "plugin-dir"))) {
        if (!g_file_test(v, G_FILE_TEST_IS_DIR))
            ERR(cfg, g, "plugin-dir", "'%s' is not a directory", v);
        else
            cfg->plugin_dir = g_strdup(v);
        g_free(v);
    }
}

/* "unix:PATH": its length, and for a server its directory and what is at
 * the path already, checked here so that --check-config finds them (a
 * client's missing directory is only a warning: it may appear later). */
static bool parse_unix_address(zl_host_cfg_t *cfg, const char *g,
                               const char *text, zl_host_instance_t *in)
{
    zl_addr_t a;
    const char *path;
    struct stat st;
    char *dir;
    int rc = zl_addr_from_unix(&a, text);

    if (rc == -ENAMETOOLONG) {
        ERR(cfg, g, "address", "'%s' is too long: a Unix socket path holds "
            "at most %d bytes, this one has %zu", text, ZL_ADDR_UNIX_PATH_MAX,
            strlen(text) - 5);
        return false;
    }
    if (rc < 0) {
        ERR(cfg, g, "address", "'%s' has no path: unix:/PATH, unix:RELATIVE "
            "or unix:@ABSTRACT", text);
        return false;
    }
    path = zl_addr_unix_path(&a);
    if (path[0] != '@') {
        dir = g_path_get_dirname(path);
        if (!g_file_test(dir, G_FILE_TEST_IS_DIR))
            zl_host_cfg_report(cfg, in->server, g, "address",
                               "the directory %s of the socket file %s does "
                               "not exist", dir, path);
        else if (in->server && lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
            ERR(cfg, g, "address", "%s exists and is not a socket: a server "
                "never removes it (remove it or choose another path)", path);
        g_free(dir);
    }
    in->host = g_strdup(text);
    in->client.port = in->srv.port = 0;
    return true;
}

/* unix-mode = 0660: a server's socket file permission bits, octal. */
static void parse_unix_mode(zl_host_cfg_t *cfg, const char *g,
                            zl_host_instance_t *in)
{
    char *v = get_str(cfg, g, "unix-mode"), *end;
    unsigned long m;

    if (!v)
        return;
    m = strtoul(v, &end, 8);
    if (!g_ascii_isdigit(*v) || *end || m > 07777)
        ERR(cfg, g, "unix-mode", "'%s' is not a file mode: octal, such as "
            "0660 (at most 07777; 0: as the umask leaves it)", v);
    else if (!in->server || !zl_addr_is_unix_text(in->host) ||
             in->host[5] == '@')
        ERR(cfg, g, "unix-mode", "goes with a server's address = unix:/PATH "
            "(a socket file)");
    else
        in->srv.unix_mode = (unsigned)m;
    g_free(v);
}

/* "HOST:PORT" or "[V6]:PORT", with a message that says which part is wrong. */
static bool parse_address(zl_host_cfg_t *cfg, const char *g, const char *text,
                          zl_host_instance_t *in)
{
    char host[256];
    uint16_t port;
    const char *colon = strrchr(text, ':');

    if (!in->server && text[0] == '@') {
        /* Checked once every group is known (zl_host_cfg_load). */
        in->peer_server = g_strdup(text + 1);
        return true;
    }
    if (zl_addr_is_unix_text(text))
        return parse_unix_address(cfg, g, text, in);
    if (zl_addr_split(text, host, sizeof(host), &port, in->server) == 0) {
        zl_addr_t tmp;
        if (in->server && zl_addr_from_ip(&tmp, host, port) < 0) {
            ERR(cfg, g, "address", "'%s' is not an IP address: a server "
                                   "listens on an IP literal (0.0.0.0 or [::] "
                                   "for every address)", host);
            return false;
        }
        in->host = g_strdup(host);
        in->client.port = in->srv.port = port;
        return true;
    }
    if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
        unsigned long v = strtoul(colon + 1, NULL, 10);
        if ((v == 0 && !in->server) || v > 65535) {
            ERR(cfg, g, "address", "port %s is out of range (%s..65535)",
                colon + 1, in->server ? "0" : "1");
            return false;
        }
    }
    ERR(cfg, g, "address",
        "'%s' is not HOST:PORT, [IPv6]:PORT or unix:PATH%s", text,
        in->server ? "" : " (or @NAME for the address of [server.NAME])");
    return false;
}

/* The instance's options, parsed once: over ZL_*_OPTIONS_INIT (set with
 * the instance), the host's own defaults, then the group's keys, with the file's meanings (0 is off;
 * backlog 0 is the default; low-water is high-water / 4 unless given, and
 * at most high-water; reconnect-max is at least reconnect-min). */
static void parse_options(zl_host_cfg_t *cfg, const char *g,
                          zl_host_instance_t *in)
{
    const zl_server_options_t sd = ZL_SERVER_OPTIONS_INIT;
    zl_conn_options_t *co = in->server ? &in->srv.conn : &in->client.conn;

    if (in->server)
        co->idle_timeout_ms = HOST_SERVER_IDLE_MS;
    co->keepalive_ms = HOST_KEEPALIVE_MS;
    get_keys(cfg, g, conn_keys, G_N_ELEMENTS(conn_keys), co);
    if (!g_key_file_has_key(cfg->kf, g, "low-water", NULL))
        co->low_water = co->high_water / 4;
    if (co->low_water > co->high_water)
        co->low_water = co->high_water;
    if (in->server && !co->send_timeout_ms && !co->idle_timeout_ms &&
        !co->keepalive_ms)
        WARN(cfg, g, NULL, "send-timeout, idle-timeout and keepalive are all "
                           "0: a session whose peer vanished is never "
                           "closed; give one of them a time");
    if (in->server) {
        get_keys(cfg, g, server_keys, G_N_ELEMENTS(server_keys), &in->srv);
        if (!in->srv.backlog)
            in->srv.backlog = sd.backlog;
    } else {
        get_keys(cfg, g, client_keys, G_N_ELEMENTS(client_keys), &in->client);
        if (in->client.reconnect_max_ms < in->client.reconnect_min_ms)
            in->client.reconnect_max_ms = in->client.reconnect_min_ms;
    }
}

static void parse_instance(zl_host_cfg_t *cfg, const char *g, bool server)
{
    zl_host_instance_t *in = g_new0(zl_host_instance_t, 1);
    char *v;

    in->cfg = cfg;
    in->group = g_strdup(g);
    in->server = server;
    in->client = (zl_client_options_t)ZL_CLIENT_OPTIONS_INIT;
    in->srv = (zl_server_options_t)ZL_SERVER_OPTIONS_INIT;
    in->values = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    in->defaults = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                         g_free);
    in->name = g_strdup(strchr(g, '.') + 1);
    if (!*in->name)
        ERR(cfg, g, NULL, "the instance needs a name: [%s.NAME]",
            server ? "server" : "client");
    in->plugin = get_str(cfg, g, "plugin");
    if (!in->plugin || !*in->plugin)
        ERR(cfg, g, "plugin", "missing: required, the %s handler to run",
            server ? "server" : "client");
    v = get_str(cfg, g, "address");
    if (!v || !*v)
        ERR(cfg, g, "address", "missing: required, %s",
            server ? "HOST:PORT to listen on" : "HOST:PORT to connect to");
    else
        parse_address(cfg, g, v, in);
    g_free(v);
    if ((v = get_str(cfg, g, "transport"))) {
        /* tcp, or a layer resolved with the plugins (zl_host_cfg_resolve). */
        if (!*v)
            ERR(cfg, g, "transport", "empty: tcp, or a layer such as tls");
        else if (strcmp(v, "tcp"))
            in->transport = g_strdup(v);
        g_free(v);
    }
    parse_options(cfg, g, in);
    parse_unix_mode(cfg, g, in);
    g_ptr_array_add(server ? cfg->servers : cfg->clients, in);
}

static void instance_free(gpointer p)
{
    zl_host_instance_t *in = p;
    g_free(in->group);
    g_free(in->name);
    g_free(in->plugin);
    g_free(in->host);
    g_free(in->peer_server);
    g_free(in->transport);
    if (in->inst)
        zl_instance_free(in->inst);
    g_hash_table_destroy(in->values);
    g_hash_table_destroy(in->defaults);
    g_free(in);
}

/* ------------------------------------------------------------ public */

static void cfg_init(zl_host_cfg_t *cfg, const char *file)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->file = g_strdup(file);
    cfg->kf = g_key_file_new();
    cfg->clients = g_ptr_array_new_with_free_func(instance_free);
    cfg->servers = g_ptr_array_new_with_free_func(instance_free);
    cfg->plugins = g_ptr_array_new_with_free_func(g_free);
}

static zl_host_instance_t *find_server(zl_host_cfg_t *cfg, const char *name)
{
    for (guint i = 0; i < cfg->servers->len; i++) {
        zl_host_instance_t *in = cfg->servers->pdata[i];
        if (!strcmp(in->name, name))
            return in;
    }
    return NULL;
}

static int cfg_parse(zl_host_cfg_t *cfg)
{
    char **groups = g_key_file_get_groups(cfg->kf, NULL);

    for (size_t i = 0; groups[i]; i++) {
        const char *g = groups[i];
        if (!strcmp(g, "host"))
            parse_host(cfg);
        else if (g_str_has_prefix(g, "plugin.") && g[7])
            g_ptr_array_add(cfg->plugins, g_strdup(g + 7));
        else if (g_str_has_prefix(g, "server."))
            parse_instance(cfg, g, true);
        else if (g_str_has_prefix(g, "client."))
            parse_instance(cfg, g, false);
        else
            WARN(cfg, g, NULL, "unknown group (use [host], [plugin.NAME], "
                               "[client.NAME] or [server.NAME]); ignored");
    }
    g_strfreev(groups);
    for (guint i = 0; i < cfg->clients->len; i++) {
        zl_host_instance_t *in = cfg->clients->pdata[i];
        if (in->peer_server && !find_server(cfg, in->peer_server))
            ERR(cfg, in->group, "address",
                "@%s names no server: there is no [server.%s] group",
                in->peer_server, in->peer_server);
    }
    return cfg->errors ? -1 : 0;
}

int zl_host_cfg_load(zl_host_cfg_t *cfg, const char *file)
{
    GError *e = NULL;

    cfg_init(cfg, file);
    if (!g_key_file_load_from_file(cfg->kf, file, G_KEY_FILE_NONE, &e)) {
        ERR(cfg, NULL, NULL, "%s", e->message);
        g_error_free(e);
        return -1;
    }
    return cfg_parse(cfg);
}

int zl_host_cfg_load_keyfile(zl_host_cfg_t *cfg, const char *name,
                             GKeyFile *kf)
{
    cfg_init(cfg, name);
    g_key_file_free(cfg->kf);
    cfg->kf = kf;
    return cfg_parse(cfg);
}

int zl_host_cfg_load_data(zl_host_cfg_t *cfg, const char *name,
                          const char *data)
{
    GError *e = NULL;

    cfg_init(cfg, name);
    if (!g_key_file_load_from_data(cfg->kf, data, (gsize)-1, G_KEY_FILE_NONE,
                                   &e)) {
        ERR(cfg, NULL, NULL, "%s", e->message);
        g_error_free(e);
        return -1;
    }
    return cfg_parse(cfg);
}

static const char *setting(void *ctx, const char *plugin, const char *key)
{
    zl_host_cfg_t *cfg = ctx;
    char *group = g_strconcat("plugin.", plugin, NULL);
    char *v = g_key_file_get_value(cfg->kf, group, key, NULL);
    const char *interned = v ? g_intern_string(g_strstrip(v)) : NULL;

    /* Interned: valid for the process, as the host API promises. */
    g_free(v);
    g_free(group);
    return interned;
}

static const char *kind_text(bool server)
{
    return server ? "server handler" : "client handler";
}

/* Keys the host itself reads in instance groups, besides its tables. */
static const char *const host_keys[] = {"plugin", "address", "transport",
                                        "unix-mode", NULL};

static void check_keys(zl_host_cfg_t *cfg, zl_host_instance_t *in)
{
    char **keys = g_key_file_get_keys(cfg->kf, in->group, NULL, NULL);
    const char *const *own = in->handler->keys;
    const char *const *lkeys = in->layer ? in->layer->keys : NULL;

    for (size_t i = 0; keys && keys[i]; i++) {
        const char *k = keys[i];
        if (in_list(k, host_keys) ||
            in_table(k, conn_keys, G_N_ELEMENTS(conn_keys)) ||
            (in->server ? in_table(k, server_keys, G_N_ELEMENTS(server_keys))
                        : in_table(k, client_keys, G_N_ELEMENTS(client_keys))) ||
            (own && in_list(k, own)) || (lkeys && in_list(k, lkeys)))
            continue;
        if (own && *own) {
            char *list = g_strjoinv(", ", (char **)own);
            WARN(cfg, in->group, k, "unknown key, ignored (handler '%s' "
                                    "reads: %s)", in->plugin, list);
            g_free(list);
        } else {
            WARN(cfg, in->group, k, "unknown key, ignored (handler '%s' "
                                    "reads no keys of its own)", in->plugin);
        }
    }
    g_strfreev(keys);
}

static bool resolve_one(zl_host_cfg_t *cfg, zl_plugin_registry_t *reg,
                        const char *const *dirs, zl_host_instance_t *in)
{
    zl_provides_t kind = in->server ? ZL_PROVIDES_SERVER : ZL_PROVIDES_CLIENT;
    const zl_registration_t *r;
    zl_plugin_t *owner = NULL;
    char *err = NULL;

    if (!in->plugin || !*in->plugin)
        return false;
    r = zl_plugins_find_provider(reg, kind, in->plugin, &owner);
    if (!r && zl_plugins_find_provider(reg, in->server ? ZL_PROVIDES_CLIENT
                                                       : ZL_PROVIDES_SERVER,
                                       in->plugin, &owner)) {
        ERR(cfg, in->group, "plugin",
            "'%s' (from plugin %s) is a %s, not a %s: use it in a "
            "[%s.NAME] group",
            in->plugin, zl_plugin_get_desc(owner)->name,
            kind_text(!in->server), kind_text(in->server),
            in->server ? "client" : "server");
        return false;
    }
    if (!r) {
        /* Not provided by what is loaded: load the plugin of that name
         * (an instance needs no [plugin.NAME] group). */
        owner = zl_plugins_find(reg, in->plugin);
        if (!owner && zl_plugins_load(reg, in->plugin, dirs, &err) < 0) {
            PERR(cfg, in->group, "plugin",
                 "%s (if '%s' is a handler of a plugin with another name, "
                 "load that plugin with a [plugin.NAME] group)%s",
                 err ? err : "cannot load", in->plugin,
                 cfg->lenient ? "; this instance does not run" : "");
            free(err);
            return false;
        }
        free(err);
        r = zl_plugins_find_provider(reg, kind, in->plugin, &owner);
    }
    if (!r) {
        ERR(cfg, in->group, "plugin",
            "plugin '%s' provides no %s named '%s' (see "
            "zltk-host --list-plugins)",
            in->plugin, kind_text(in->server), in->plugin);
        return false;
    }
    in->handler = r->vtable;
    in->owner = owner;
    if (in->transport) {
        r = zl_plugins_find_provider(reg, ZL_PROVIDES_LAYER, in->transport,
                                     &owner);
        if (!r && !zl_plugins_find(reg, in->transport) &&
            zl_plugins_load(reg, in->transport, dirs, &err) < 0) {
            PERR(cfg, in->group, "transport", "'%s' is not tcp, and no layer "
                 "plugin of that name loads: %s%s", in->transport,
                 err ? err : "cannot load",
                 cfg->lenient ? "; this instance does not run" : "");
            free(err);
            in->handler = NULL;
            return false;
        }
        free(err);
        if (!r)
            r = zl_plugins_find_provider(reg, ZL_PROVIDES_LAYER, in->transport,
                                         &owner);
        if (!r) {
            ERR(cfg, in->group, "transport",
                "plugin '%s' provides no layer named '%s' (see zltk-host "
                "--list-plugins)", in->transport, in->transport);
            in->handler = NULL;
            return false;
        }
        in->layer = r->vtable;
        in->layer_owner = owner;
    }
    check_keys(cfg, in);
    return true;
}

int zl_host_cfg_resolve(zl_host_cfg_t *cfg, zl_plugin_registry_t *reg,
                        const char *const *dirs)
{
    zl_plugins_set_settings(reg, setting, cfg, cfg->file);
    for (guint i = 0; i < cfg->plugins->len; i++) {
        const char *name = cfg->plugins->pdata[i];
        char *group = g_strconcat("plugin.", name, NULL), *err = NULL;
        if (!zl_plugins_find(reg, name) &&
            zl_plugins_load(reg, name, dirs, &err) < 0)
            PERR(cfg, group, NULL, "%s", err ? err : "cannot load");
        free(err);
        g_free(group);
    }
    /* Servers first: "plugin = echo" in a client group then finds echo
     * loaded and is told it is a server handler. */
    for (int s = 1; s >= 0; s--) {
        GPtrArray *list = s ? cfg->servers : cfg->clients;
        for (guint i = 0; i < list->len; i++)
            resolve_one(cfg, reg, dirs, list->pdata[i]);
    }
    return cfg->errors ? -1 : 0;
}

/* ------------------------------------------------------ instances */

/* An instance's key: its own group's value, else the default in the
 * [plugin.NAME] group of the plugin whose layer (first) or handler
 * declares the key in its keys.  Raw (not stripped) either way: the reader
 * gets the same text wherever the key is written. */
static const char *inst_config(void *ctx, const char *key)
{
    zl_host_instance_t *in = ctx;
    const char *const *keys[] = {in->layer ? in->layer->keys : NULL,
                                 in->handler->keys};
    zl_plugin_t *owners[] = {in->layer_owner, in->owner};
    char *v = g_hash_table_lookup(in->values, key), *g;

    if (v)
        return v;
    v = g_key_file_get_value(in->cfg->kf, in->group, key, NULL);
    for (int i = 0; !v && i < 2; i++) {
        if (!keys[i] || !owners[i] || !in_list(key, keys[i]))
            continue;
        g = g_strconcat("plugin.", zl_plugin_get_desc(owners[i])->name, NULL);
        v = g_key_file_get_value(in->cfg->kf, g, key, NULL);
        if (v)
            g_hash_table_insert(in->defaults, g_strdup(key), g);
        else
            g_free(g);
    }
    if (!v)
        return NULL;
    g_hash_table_insert(in->values, g_strdup(key), v);
    return v;
}

static bool inst_is_default(void *ctx, const char *key)
{
    zl_host_instance_t *in = ctx;

    return inst_config(ctx, key) && g_hash_table_contains(in->defaults, key);
}

/* A problem with a default is reported where it is written, for each
 * instance that takes it: the same value may suit one instance and not
 * another (a tls-cert for servers, taken by a client). */
static void inst_report(void *ctx, const char *key, const char *message)
{
    zl_host_instance_t *in = ctx;
    const char *from = key ? g_hash_table_lookup(in->defaults, key) : NULL;

    if (from)
        ERR(in->cfg, from, key, "%s (default used by [%s])", message,
            in->group);
    else
        ERR(in->cfg, in->group, key, "%s", message);
}

int zl_host_cfg_instances(zl_host_cfg_t *cfg)
{
    /* Servers first: a client's layer may refer to a server instance
     * (tls-pin = @NAME pins that server's ephemeral certificate). */
    for (int s = 1; s >= 0; s--) {
        GPtrArray *list = s ? cfg->servers : cfg->clients;
        for (guint i = 0; i < list->len; i++) {
            zl_host_instance_t *in = list->pdata[i];
            zl_instance_options_t o = {
                .name = in->name,
                .server = in->server,
                .handler = in->handler,
                .plugin = in->owner,
                .layer = in->layer,
                .layer_plugin = in->layer_owner,
                .config = inst_config,
                .config_default = inst_is_default,
                .report = inst_report,
                .ctx = in,
                .on_finished = cfg->on_finished,
            };

            if (!in->handler || in->inst)
                continue;
            o.client = in->client;
            o.client.host = in->host; /* NULL for @NAME: set at start */
            o.server_opts = in->srv;
            o.server_opts.host = in->host;
            if (zl_instance_new(&in->inst, &o) < 0)
                in->inst = NULL;
        }
    }
    return cfg->errors ? -1 : 0;
}

void zl_host_cfg_free(zl_host_cfg_t *cfg)
{
    if (cfg->kf)
        g_key_file_free(cfg->kf);
    if (cfg->clients)
        g_ptr_array_free(cfg->clients, TRUE);
    if (cfg->servers)
        g_ptr_array_free(cfg->servers, TRUE);
    if (cfg->plugins)
        g_ptr_array_free(cfg->plugins, TRUE);
    g_free(cfg->file);
    g_free(cfg->backend);
    g_free(cfg->log_level);
    g_free(cfg->plugin_dir);
    memset(cfg, 0, sizeof(*cfg));
}
