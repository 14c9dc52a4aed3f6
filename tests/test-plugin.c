/* zltk tests — the plugin loader and ABI (suite "plugin"; zltk/loader.h,
 * zltk/plugin.h).
 *
 * The test plugins (tests/plugins/NAME.c) are built by make check into
 * $top_builddir/tests/plugins/.libs.  They export nothing but their entry,
 * so what they see is observed through a trace file: each appends a line
 * per init/destroy call to the file named by $ZLTK_TEST_PLUGIN_TRACE.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NOLOAD */
#endif

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "test.h"

#define TRACE_ENV "ZLTK_TEST_PLUGIN_TRACE"

static char *plugin_dir; /* absolute path of tests/plugins/.libs */
static char *tmpdir;
static char *trace_file;
static char *junk_path; /* tmpdir/notaplugin.so: not ELF at all */
static char *crash_dir; /* tests/plugins/crash/.libs: constructors that crash */
static char *host_path; /* the build's zltk-host: the probe program */

/* ------------------------------------------------------------ helpers */

#define CHECK ZL_TEST_CHECK

static char *plugin_path(const char *base)
{
    return g_strdup_printf("%s/%s.so", plugin_dir, base);
}

/* The trace so far (g_free it; "" if none), and start a new one. */
static char *trace_take(void)
{
    char *s = NULL;

    if (!g_file_get_contents(trace_file, &s, NULL, NULL))
        s = g_strdup("");
    g_unlink(trace_file);
    return s;
}

static void trace_reset(void)
{
    g_unlink(trace_file);
}

/* Lines of text that are "EVENT ID" or start with "EVENT ID ". */
static int trace_count(const char *text, const char *event, const char *id)
{
    char *head = g_strdup_printf("%s %s", event, id);
    size_t n = strlen(head);
    char **lines = g_strsplit(text, "\n", -1);
    int count = 0;

    for (char **l = lines; *l; l++)
        if (!strncmp(*l, head, n) && ((*l)[n] == '\0' || (*l)[n] == ' '))
            count++;
    g_strfreev(lines);
    g_free(head);
    return count;
}

/* Index of the first line equal to line, or -1. */
static int trace_index(const char *text, const char *line)
{
    char **lines = g_strsplit(text, "\n", -1);
    int idx = -1;

    for (int i = 0; lines[i]; i++)
        if (!strcmp(lines[i], line)) {
            idx = i;
            break;
        }
    g_strfreev(lines);
    return idx;
}

/* Whether msg contains one of the '|'-separated alternatives (any case). */
static bool has_word(const char *msg, const char *alternatives)
{
    char *lmsg = g_ascii_strdown(msg, -1);
    char **alts = g_strsplit(alternatives, "|", -1);
    bool found = false;

    for (char **a = alts; *a && !found; a++) {
        char *la = g_ascii_strdown(*a, -1);
        found = strstr(lmsg, la) != NULL;
        g_free(la);
    }
    g_strfreev(alts);
    g_free(lmsg);
    return found;
}

/* A refusal message: present, one line, names path, carries every word. */
static void check_msg(int line, const char *msg, const char *path,
                      const char *const *words)
{
    if (!zl_test_check_at(__FILE__, line, msg != NULL, "an error message is set"))
        return;
    zl_test_check_at(__FILE__, line, *msg != '\0' && !strchr(msg, '\n'),
             "message is one line: \"%s\"", msg);
    if (path)
        zl_test_check_at(__FILE__, line, strstr(msg, path) != NULL,
                 "message names the file %s: \"%s\"", path, msg);
    for (; words && *words; words++)
        zl_test_check_at(__FILE__, line, has_word(msg, *words), "message says \"%s\": \"%s\"",
                 *words, msg);
}
#define WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Load path expecting rc and a message naming path with words; nothing of
 * the plugin may stay in the registry. */
static void refuse_at(int line, zl_plugin_registry_t *reg, const char *path,
                      int rc, const char *const *words)
{
    size_t before = zl_plugins_count(reg);
    char *err = NULL;
    int r = zl_plugins_load_file(reg, path, &err);

    zl_test_check_at(__FILE__, line, r == rc, "load %s returns %d (%s), expected %d (%s)", path,
             r, zl_err_name(r), rc, zl_err_name(rc));
    check_msg(line, err, path, words);
    zl_test_check_at(__FILE__, line, zl_plugins_count(reg) == before,
             "a refused plugin is not counted");
    free(err);
}

/* good's two providers, registered by good and found by kind. */
static void check_good_providers(int line, zl_plugin_registry_t *reg,
                                 zl_plugin_t *good)
{
    const zl_registration_t *r;
    zl_plugin_t *owner = NULL;

    r = zl_plugins_find_provider(reg, ZL_PROVIDES_SERVER, "good-echo", &owner);
    if (zl_test_check_at(__FILE__, line, r != NULL, "server good-echo is found")) {
        zl_test_check_at(__FILE__, line, owner == good, "server good-echo is owned by good");
        zl_test_check_at(__FILE__, line, r->kind == ZL_PROVIDES_SERVER, "good-echo is a server");
        zl_test_check_at(__FILE__, line, r->name && !strcmp(r->name, "good-echo"),
                 "good-echo is named good-echo");
        zl_test_check_at(__FILE__, line,
                 r->description &&
                     !strcmp(r->description, "good echo server (test)"),
                 "good-echo has its description");
        zl_test_check_at(__FILE__, line, r->vtable != NULL, "good-echo has its vtable");
    }
    owner = NULL;
    r = zl_plugins_find_provider(reg, ZL_PROVIDES_CLIENT, "good-client",
                                 &owner);
    if (zl_test_check_at(__FILE__, line, r != NULL, "client good-client is found")) {
        zl_test_check_at(__FILE__, line, owner == good, "client good-client is owned by good");
        zl_test_check_at(__FILE__, line, r->kind == ZL_PROVIDES_CLIENT, "good-client is a client");
        zl_test_check_at(__FILE__, line,
                 r->description && !strcmp(r->description, "good client (test)"),
                 "good-client has its description");
    }
    zl_test_check_at(__FILE__, line,
             !zl_plugins_find_provider(reg, ZL_PROVIDES_SERVER, "good-client",
                                       NULL),
             "no server named good-client (wrong kind)");
    zl_test_check_at(__FILE__, line,
             !zl_plugins_find_provider(reg, ZL_PROVIDES_LAYER, "good-echo", NULL),
             "no layer named good-echo (wrong kind)");
    zl_test_check_at(__FILE__, line,
             !zl_plugins_find_provider(reg, ZL_PROVIDES_SERVER, "no-such", NULL),
             "no server named no-such");
}

/* Load good.so into reg; it must work and show its providers. */
static zl_plugin_t *load_good_at(int line, zl_plugin_registry_t *reg)
{
    char *path = plugin_path("good"), *err = NULL;
    int r = zl_plugins_load_file(reg, path, &err);
    zl_plugin_t *p;

    zl_test_check_at(__FILE__, line, r == 0, "good loads: %d %s", r, err ? err : "");
    zl_test_check_at(__FILE__, line, r != 0 || err == NULL, "no message on success");
    free(err);
    g_free(path);
    p = zl_plugins_find(reg, "good");
    if (zl_test_check_at(__FILE__, line, p != NULL, "good is found by name"))
        check_good_providers(line, reg, p);
    return p;
}
#define LOAD_GOOD(reg) load_good_at(__LINE__, (reg))

static zl_plugin_registry_t *new_registry(void)
{
    zl_plugin_registry_t *reg = NULL;

    CU_ASSERT_EQUAL_FATAL(zl_plugins_new(&reg), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 0);
    return reg;
}

/* A plugin refused before init: rc and message; its init and destroy never
 * run; the registry then still loads good. */
static void refuse_before_init_at(int line, const char *path, const char *id,
                                  int rc, const char *const *words)
{
    zl_plugin_registry_t *reg = new_registry();
    char *t;

    trace_reset();
    refuse_at(line, reg, path, rc, words);
    if (id)
        zl_test_check_at(__FILE__, line, zl_plugins_find(reg, id) == NULL, "%s is not found", id);
    LOAD_GOOD(reg);
    zl_test_check_at(__FILE__, line, zl_plugins_count(reg) == 1, "only good is loaded");
    zl_test_check_at(__FILE__, line,
             !zl_plugins_find_provider(reg, ZL_PROVIDES_CLIENT, "good-echo",
                                       NULL),
             "no client named good-echo (wrong kind)");
    zl_plugins_free(reg);
    t = trace_take();
    if (id) {
        zl_test_check_at(__FILE__, line, trace_count(t, "init", id) == 0,
                 "%s's init never runs: %s", id, t);
        zl_test_check_at(__FILE__, line, trace_count(t, "destroy", id) == 0,
                 "%s's destroy never runs: %s", id, t);
    }
    zl_test_check_at(__FILE__, line, trace_count(t, "init", "good") == 1, "good init once: %s", t);
    zl_test_check_at(__FILE__, line, trace_count(t, "destroy", "good") == 1,
             "good destroy once: %s", t);
    g_free(t);
}
#define REFUSE_BEFORE_INIT(base, rc, words)                                  \
    do {                                                                    \
        char *path_ = plugin_path(base);                                    \
        refuse_before_init_at(__LINE__, path_, base, rc, words);            \
        g_free(path_);                                                      \
    } while (0)

/* ------------------------------------------------------------ suite */

static int suite_init(void)
{
    const char *top = getenv("top_builddir");
    char *rel, *abs, *probe;
    GString *junk;
    bool ok;

    rel = g_build_filename(top && *top ? top : ".", "tests", "plugins", ".libs",
                           NULL);
    abs = realpath(rel, NULL);
    if (!abs) {
        fprintf(stderr, "plugin suite: no %s (build it with make check)\n", rel);
        g_free(rel);
        return -1;
    }
    g_free(rel);
    plugin_dir = g_strdup(abs);
    free(abs);
    probe = plugin_path("good");
    ok = g_file_test(probe, G_FILE_TEST_EXISTS);
    if (!ok)
        fprintf(stderr, "plugin suite: no %s (build it with make check)\n",
                probe);
    g_free(probe);
    if (!ok)
        return -1;

    rel = g_build_filename(top && *top ? top : ".", "tests", "plugins", "crash",
                           ".libs", NULL);
    crash_dir = realpath(rel, NULL);
    g_free(rel);
    rel = g_build_filename(top && *top ? top : ".", "zltk-host", NULL);
    host_path = realpath(rel, NULL);
    g_free(rel);
    if (!crash_dir || !host_path) {
        fprintf(stderr, "plugin suite: no tests/plugins/crash/.libs or "
                        "zltk-host (build them with make check)\n");
        return -1;
    }

    tmpdir = g_strdup("/tmp/zltk-plugin-XXXXXX");
    if (!g_mkdtemp(tmpdir)) {
        g_free(tmpdir);
        tmpdir = NULL;
        return -1;
    }
    trace_file = g_build_filename(tmpdir, "trace.log", NULL);
    g_setenv(TRACE_ENV, trace_file, TRUE);

    junk_path = g_build_filename(tmpdir, "notaplugin.so", NULL);
    junk = g_string_new(NULL);
    for (int i = 0; i < 64; i++)
        g_string_append(junk, "this is not a shared object, only text\n");
    ok = g_file_set_contents(junk_path, junk->str, (gssize)junk->len, NULL);
    g_string_free(junk, TRUE);
    return ok ? 0 : -1;
}

static int suite_cleanup(void)
{
    g_unsetenv(TRACE_ENV);
    if (tmpdir)
        zl_test_rm_tree(tmpdir);
    g_free(tmpdir);
    g_free(trace_file);
    g_free(junk_path);
    g_free(plugin_dir);
    free(crash_dir);
    free(host_path);
    crash_dir = host_path = NULL;
    tmpdir = trace_file = junk_path = plugin_dir = NULL;
    return 0;
}

/* ------------------------------------------------------------ host API */

static void test_host_api_fields(void)
{
    const zl_host_api_t *api = zl_plugins_host_api();

    CU_ASSERT_PTR_NOT_NULL_FATAL(api);
    CU_ASSERT_EQUAL(api->struct_size, sizeof(zl_host_api_t));
    CU_ASSERT_EQUAL(api->abi_major, ZLTK_PLUGIN_ABI_MAJOR);
    CU_ASSERT_EQUAL(api->abi_minor, ZLTK_PLUGIN_ABI_MINOR);
    CU_ASSERT_PTR_NOT_NULL(api->register_provider);
    CU_ASSERT_PTR_NOT_NULL(api->log);
    CU_ASSERT_PTR_NOT_NULL(api->get_string);
    CU_ASSERT_PTR_NOT_NULL(api->get_int);
    CU_ASSERT_PTR_NOT_NULL(api->get_bool);
    CU_ASSERT_PTR_NOT_NULL(api->name);
    for (size_t i = 0; i < G_N_ELEMENTS(api->reserved); i++)
        CU_ASSERT_PTR_NULL(api->reserved[i]);
    CU_ASSERT_PTR_EQUAL(zl_plugins_host_api(), api);
    /* The prefix the header promises never moves. */
    CU_ASSERT_EQUAL(offsetof(zl_plugin_desc_t, magic), 0);
    CU_ASSERT_EQUAL(offsetof(zl_plugin_desc_t, abi_major), 4);
    CU_ASSERT_EQUAL(offsetof(zl_plugin_desc_t, abi_minor), 6);
    CU_ASSERT_EQUAL(offsetof(zl_plugin_desc_t, struct_size), 8);
    CU_ASSERT_EQUAL(ZLTK_PLUGIN_MAGIC, 0x4b544c5au);
    CU_ASSERT_EQUAL(memcmp(&(uint32_t){ZLTK_PLUGIN_MAGIC}, "ZLTK", 4) == 0,
                    G_BYTE_ORDER == G_LITTLE_ENDIAN);
    CU_ASSERT_STRING_EQUAL(ZLTK_PLUGIN_ENTRY_SYMBOL, "zltk_plugin_entry");
}

/* ------------------------------------------------------------ refusals */

static void test_refuse_missing_file(void)
{
    char *path = g_build_filename(tmpdir, "no-such-plugin.so", NULL);

    refuse_before_init_at(__LINE__, path, NULL, -ENOENT,
                          WORDS("no such file|not found|does not exist|"
                                "cannot find|missing"));
    g_free(path);
}

static void test_refuse_not_shared_object(void)
{
    refuse_before_init_at(__LINE__, junk_path, NULL, -ENOEXEC,
                          WORDS("shared object", "not a|invalid"));
}

static void test_refuse_no_entry(void)
{
    REFUSE_BEFORE_INIT("noentry", -ENOENT,
                       WORDS(ZLTK_PLUGIN_ENTRY_SYMBOL,
                             "exports zltk_plugin_entry_v0 instead"));
}

static void test_refuse_bad_magic(void)
{
    REFUSE_BEFORE_INIT("badmagic", -EPROTO, WORDS("magic"));
}

static void test_refuse_abi_major(void)
{
    char *plugin_v = g_strdup_printf("%d.%d", ZLTK_PLUGIN_ABI_MAJOR + 1,
                                     ZLTK_PLUGIN_ABI_MINOR);
    char *host_v = g_strdup_printf("%d.%d", ZLTK_PLUGIN_ABI_MAJOR,
                                   ZLTK_PLUGIN_ABI_MINOR);

    REFUSE_BEFORE_INIT("major", -EPROTO,
                       WORDS("ABI", plugin_v, host_v, "rebuild"));
    g_free(plugin_v);
    g_free(host_v);
}

static void test_refuse_abi_minor_newer(void)
{
    char *plugin_v = g_strdup_printf("%d.%d", ZLTK_PLUGIN_ABI_MAJOR,
                                     ZLTK_PLUGIN_ABI_MINOR + 1);
    char *host_v = g_strdup_printf("%d.%d", ZLTK_PLUGIN_ABI_MAJOR,
                                   ZLTK_PLUGIN_ABI_MINOR);

    REFUSE_BEFORE_INIT("minor", -EPROTO,
                       WORDS("ABI", plugin_v, host_v,
                             "rebuild|upgrade|update|newer"));
    g_free(plugin_v);
    g_free(host_v);
}

/* struct_size short of the ABI 1.0 fields: an ABI (layout) mismatch. */
static void test_refuse_small_struct(void)
{
    REFUSE_BEFORE_INIT("smallsize", -EPROTO, WORDS("size"));
}

static void test_refuse_no_init(void)
{
    REFUSE_BEFORE_INIT("noinit", -EINVAL,
                       WORDS("init", "missing|mandatory|required|lacks|no "
                                     "init|without"));
}

static void test_refuse_no_version(void)
{
    REFUSE_BEFORE_INIT("noversion", -EINVAL,
                       WORDS("version", "missing|mandatory|required|lacks|no "
                                        "version|without"));
}

static void test_refuse_bad_name(void)
{
    REFUSE_BEFORE_INIT("badname", -EINVAL, WORDS("Bad Name!", "name"));
}

static void test_refuse_init_failure(void)
{
    zl_plugin_registry_t *reg = new_registry();
    char *path = plugin_path("initfail");
    /* init's error, as text or by name */
    char *eio = g_strdup_printf("%s|%s|EIO", zl_strerror(-EIO), strerror(EIO));
    char *t;

    trace_reset();
    refuse_at(__LINE__, reg, path, -EIO, WORDS("init", "initfail", eio));
    g_free(eio);
    CU_ASSERT_PTR_NULL(zl_plugins_find(reg, "initfail"));
    /* A skipped plugin leaves no provider behind. */
    CU_ASSERT_PTR_NULL(zl_plugins_find_provider(reg, ZL_PROVIDES_CLIENT,
                                                "initfail-client", NULL));
    LOAD_GOOD(reg);
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 1);
    zl_plugins_free(reg);
    t = trace_take();
    CHECK(trace_index(t, "init initfail client=0") >= 0,
          "initfail's registration succeeded during init: %s", t);
    CHECK(trace_count(t, "init", "initfail") == 1, "init once: %s", t);
    CHECK(trace_count(t, "destroy", "initfail") == 1,
          "destroy still called, once: %s", t);
    CHECK(trace_count(t, "destroy", "good") == 1, "good destroyed: %s", t);
    g_free(t);
    g_free(path);
}

/* A handler without its mandatory on_recv: the registration is refused,
 * init fails with it, and nothing of the plugin is offered. */
static void test_refuse_handler_without_recv(void)
{
    zl_plugin_registry_t *reg = new_registry();
    char *path = plugin_path("norecv");
    char *einval = g_strdup_printf("%s|%s|EINVAL", zl_strerror(-EINVAL),
                                   strerror(EINVAL));
    char *t;

    trace_reset();
    refuse_at(__LINE__, reg, path, -EINVAL, WORDS("init", "norecv", einval));
    CU_ASSERT_PTR_NULL(zl_plugins_find(reg, "norecv"));
    CU_ASSERT_PTR_NULL(zl_plugins_find_provider(reg, ZL_PROVIDES_SERVER,
                                                "norecv-echo", NULL));
    LOAD_GOOD(reg);
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 1);
    zl_plugins_free(reg);
    t = trace_take();
    CHECK(trace_index(t, "init norecv register=-22") >= 0,
          "register_provider refused the handler with -EINVAL: %s", t);
    g_free(t);
    g_free(einval);
    g_free(path);
}

static void test_refuse_dup_name(void)
{
    zl_plugin_registry_t *reg = new_registry();
    char *dup = plugin_path("dupname"), *good = plugin_path("good");
    zl_plugin_t *p;
    char *t;

    trace_reset();
    p = LOAD_GOOD(reg);
    refuse_at(__LINE__, reg, dup, -EEXIST,
              WORDS("good", "already|taken|exists|duplicate|in use"));
    /* The same file twice: the name is taken as well. */
    refuse_at(__LINE__, reg, good, -EEXIST,
              WORDS("good", "already|taken|exists|duplicate|in use"));
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 1);
    CU_ASSERT_PTR_EQUAL(zl_plugins_find(reg, "good"), p);
    if (p)
        CU_ASSERT_STRING_EQUAL(zl_plugin_get_path(p), good);
    check_good_providers(__LINE__, reg, p);
    zl_plugins_free(reg);
    t = trace_take();
    CHECK(trace_count(t, "init", "dupname") == 0, "dupname not init: %s", t);
    CHECK(trace_count(t, "destroy", "dupname") == 0, "nor destroyed: %s", t);
    CHECK(trace_count(t, "init", "good") == 1, "good init once: %s", t);
    CHECK(trace_count(t, "destroy", "good") == 1, "good destroy once: %s", t);
    g_free(t);
    g_free(dup);
    g_free(good);
}

/* dupprov's init registers a client, then fails to register server
 * good-echo (-EEXIST) and returns that: the plugin is skipped with its
 * client, destroy is called, good keeps good-echo. */
static void test_refuse_dup_provider(void)
{
    zl_plugin_registry_t *reg = new_registry();
    char *path = plugin_path("dupprovider");
    zl_plugin_t *good, *owner = NULL;
    char *t;

    trace_reset();
    good = LOAD_GOOD(reg);
    refuse_at(__LINE__, reg, path, -EEXIST, WORDS("init", "dupprov"));
    CU_ASSERT_PTR_NULL(zl_plugins_find(reg, "dupprov"));
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 1);
    CU_ASSERT_PTR_NOT_NULL(zl_plugins_find_provider(reg, ZL_PROVIDES_SERVER,
                                                    "good-echo", &owner));
    CU_ASSERT_PTR_EQUAL(owner, good);
    CU_ASSERT_PTR_NULL(zl_plugins_find_provider(reg, ZL_PROVIDES_CLIENT,
                                                "dupprov-client", NULL));
    check_good_providers(__LINE__, reg, good);
    zl_plugins_free(reg);
    t = trace_take();
    CHECK(trace_index(t, "init dupprov client=0 server=-17") >= 0,
          "register_provider said -EEXIST for the taken name: %s", t);
    CHECK(trace_count(t, "destroy", "dupprov") == 1,
          "dupprov destroyed once: %s", t);
    CHECK(trace_count(t, "destroy", "good") == 1, "good destroyed once: %s", t);
    g_free(t);
    g_free(path);
}

static void test_error_pointer_optional(void)
{
    zl_plugin_registry_t *reg = new_registry();
    const char *dirs[] = {tmpdir, NULL};
    char *major = plugin_path("major");

    CU_ASSERT_EQUAL(zl_plugins_load_file(reg, junk_path, NULL), -ENOEXEC);
    CU_ASSERT_EQUAL(zl_plugins_load_file(reg, major, NULL), -EPROTO);
    CU_ASSERT_EQUAL(zl_plugins_load(reg, "no-such-plugin", dirs, NULL),
                    -ENOENT);
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 0);
    zl_plugins_free(reg);
    g_free(major);
    trace_reset();
}

/* A relative path without a slash names a file in the working directory,
 * as any path does: it must not go through dlopen's library search, which
 * would load another file of that name (or fail on an existing one). */
static void test_relative_path(void)
{
    zl_plugin_registry_t *reg = new_registry();
    char *cwd = g_get_current_dir(), *err = NULL, *libc;
    int r;

    trace_reset();
    CU_ASSERT_EQUAL_FATAL(chdir(plugin_dir), 0);
    r = zl_plugins_load_file(reg, "good.so", &err);
    CHECK(r == 0, "good.so in the working directory loads: %d %s", r,
          err ? err : "");
    free(err);
    err = NULL;
    if (r == 0)
        check_good_providers(__LINE__, reg, zl_plugins_find(reg, "good"));

    /* Junk named like a library the process already has. */
    CU_ASSERT_EQUAL_FATAL(chdir(tmpdir), 0);
    libc = g_build_filename(tmpdir, "libc.so.6", NULL);
    CU_ASSERT(g_file_set_contents(libc, "not a library\n", -1, NULL));
    r = zl_plugins_load_file(reg, "libc.so.6", &err);
    CHECK(r == -ENOEXEC,
          "./libc.so.6 (junk) is refused as not a shared object, not looked "
          "up as the system's libc: %d %s",
          r, err ? err : "");
    free(err);
    g_unlink(libc);
    g_free(libc);

    CU_ASSERT_EQUAL(chdir(cwd), 0);
    g_free(cwd);
    zl_plugins_free(reg);
    trace_reset();
}

/* ------------------------------------------------------------ by name, dir */

static void test_load_by_name(void)
{
    zl_plugin_registry_t *reg = new_registry();
    const char *dirs[] = {tmpdir, plugin_dir, NULL};
    char *err = NULL, *want = plugin_path("good");
    zl_plugin_t *p;
    int r;

    trace_reset();
    r = zl_plugins_load(reg, "good", dirs, &err);
    CHECK(r == 0, "good found in the second dir: %d %s", r, err ? err : "");
    free(err);
    p = zl_plugins_find(reg, "good");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_STRING_EQUAL(zl_plugin_get_path(p), want);
    check_good_providers(__LINE__, reg, p);

    /* Found but refused: the load error, not "not found". */
    err = NULL;
    r = zl_plugins_load(reg, "major", (const char *[]){plugin_dir, NULL}, &err);
    CHECK(r == -EPROTO, "major by name: %d", r);
    if (err)
        CHECK(strstr(err, "major.so") != NULL, "names the file: %s", err);
    free(err);
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 1);
    zl_plugins_free(reg);
    g_free(want);
    trace_reset();
}

static void test_load_by_name_missing(void)
{
    zl_plugin_registry_t *reg = new_registry();
    const char *dirs[] = {tmpdir, "/nonexistent/zltk-plugins", plugin_dir,
                          NULL};
    const char *none[] = {NULL};
    char *err = NULL;
    int r;

    r = zl_plugins_load(reg, "no-such-plugin", dirs, &err);
    CU_ASSERT_EQUAL(r, -ENOENT);
    check_msg(__LINE__, err, NULL,
              WORDS("no-such-plugin", tmpdir, "/nonexistent/zltk-plugins",
                    plugin_dir));
    free(err);
    err = NULL;
    CU_ASSERT_EQUAL(zl_plugins_load(reg, "good", none, &err), -ENOENT);
    check_msg(__LINE__, err, NULL, WORDS("good"));
    free(err);
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 0);
    zl_plugins_free(reg);
}

typedef struct {
    GPtrArray *paths;
    int bad_messages;
} reports_t;

static void on_report(const char *path, const char *message, void *ctx)
{
    reports_t *r = ctx;

    g_ptr_array_add(r->paths, g_strdup(path ? path : "(null)"));
    if (!path || !message || !*message || strchr(message, '\n') ||
        !strstr(message, path)) {
        fprintf(stderr, "\n  report for %s: \"%s\"\n", path ? path : "(null)",
                message ? message : "(null)");
        r->bad_messages++;
    }
}

/* Reports must be exactly dir/NAME for the expected names, in order. */
static void check_reports(int line, const reports_t *r, const char *dir,
                          const char *const *names)
{
    size_t n = 0;

    for (; names[n]; n++) {
        char *want = g_build_filename(dir, names[n], NULL);
        zl_test_check_at(__FILE__, line,
                 n < r->paths->len &&
                     !strcmp(g_ptr_array_index(r->paths, n), want),
                 "report %zu is %s (got %s)", n, want,
                 n < r->paths->len ? (char *)g_ptr_array_index(r->paths, n)
                                   : "nothing");
        g_free(want);
    }
    zl_test_check_at(__FILE__, line, r->paths->len == n, "%zu reports, expected %zu",
             (size_t)r->paths->len, n);
    zl_test_check_at(__FILE__, line, r->bad_messages == 0,
             "every report is one line naming its file");
}

static const char *plugin_name(const zl_plugin_t *p)
{
    const zl_plugin_desc_t *d = p ? zl_plugin_get_desc(p) : NULL;
    return d && d->name ? d->name : "(none)";
}

/* The build's plugin dir, sorted: cxx.so (C++) loads first; dupname.so
 * (named "good") comes before good.so, so good.so is the duplicate there;
 * dupprov loads since good-echo is free when it comes. */
static void test_load_dir_build(void)
{
    zl_plugin_registry_t *reg = new_registry();
    reports_t rep = {g_ptr_array_new_with_free_func(g_free), 0};
    zl_plugin_t *owner = NULL;
    char *t;
    int n;

    trace_reset();
    n = zl_plugins_load_dir(reg, plugin_dir, on_report, &rep);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 4);
    check_reports(__LINE__, &rep, plugin_dir,
                  WORDS("badmagic.so", "badname.so", "cxxmangled.so",
                        "good.so", "initfail.so", "major.so", "minor.so",
                        "noentry.so", "noinit.so", "norecv.so", "noversion.so",
                        "smallsize.so"));
    if (zl_plugins_count(reg) == 4) {
        char *dupname = plugin_path("dupname");
        CU_ASSERT_STRING_EQUAL(plugin_name(zl_plugins_at(reg, 0)), "cxx");
        CU_ASSERT_STRING_EQUAL(plugin_name(zl_plugins_at(reg, 1)), "good");
        CU_ASSERT_STRING_EQUAL(zl_plugin_get_path(zl_plugins_at(reg, 1)),
                               dupname);
        CU_ASSERT_STRING_EQUAL(plugin_name(zl_plugins_at(reg, 2)), "dupprov");
        CU_ASSERT_STRING_EQUAL(plugin_name(zl_plugins_at(reg, 3)), "good2");
        CU_ASSERT_PTR_NOT_NULL(zl_plugins_find_provider(
            reg, ZL_PROVIDES_SERVER, "good-echo", &owner));
        CU_ASSERT_PTR_EQUAL(owner, zl_plugins_find(reg, "dupprov"));
        g_free(dupname);
    }
    zl_plugins_free(reg);
    t = trace_take();
    CHECK(trace_count(t, "init", "good") == 0, "good.so never init: %s", t);
    CHECK(trace_count(t, "destroy", "dupname") == 1, "dupname: %s", t);
    CHECK(trace_count(t, "destroy", "dupprov") == 1, "dupprov: %s", t);
    CHECK(trace_count(t, "destroy", "good2") == 1, "good2: %s", t);
    CHECK(trace_count(t, "destroy", "initfail") == 1, "initfail: %s", t);
    for (const char *const *id = WORDS("badmagic", "badname", "major", "minor",
                                       "noinit", "noversion", "smallsize");
         *id; id++)
        CHECK(trace_count(t, "init", *id) + trace_count(t, "destroy", *id) == 0,
              "%s never called: %s", *id, t);
    g_free(t);
    g_ptr_array_free(rep.paths, TRUE);
}

static bool link_plugin(const char *dir, const char *base)
{
    char *target = plugin_path(base);
    char *name = g_strdup_printf("%s/%s.so", dir, base);
    bool ok = symlink(target, name) == 0;

    g_free(target);
    g_free(name);
    return ok;
}

/* A directory of our own: only *.so files count, in name order. */
static void test_load_dir_mixed(void)
{
    zl_plugin_registry_t *reg = new_registry();
    reports_t rep = {g_ptr_array_new_with_free_func(g_free), 0};
    char *dir = g_build_filename(tmpdir, "mixed", NULL);
    char *junk = NULL, *p;
    gsize len = 0;
    int n;

    CU_ASSERT_EQUAL_FATAL(g_mkdir(dir, 0700), 0);
    CU_ASSERT_FATAL(link_plugin(dir, "good2") && link_plugin(dir, "good") &&
                    link_plugin(dir, "major"));
    CU_ASSERT_FATAL(g_file_get_contents(junk_path, &junk, &len, NULL));
    for (const char *const *f = WORDS("notaplugin.so", "README", "good.so.bak",
                                      "plugin.sox");
         *f; f++) {
        p = g_build_filename(dir, *f, NULL);
        CU_ASSERT(g_file_set_contents(p, junk, (gssize)len, NULL));
        g_free(p);
    }
    g_free(junk);

    trace_reset();
    n = zl_plugins_load_dir(reg, dir, on_report, &rep);
    CU_ASSERT_EQUAL(n, 2);
    check_reports(__LINE__, &rep, dir, WORDS("major.so", "notaplugin.so"));
    CU_ASSERT_EQUAL_FATAL(zl_plugins_count(reg), 2);
    CU_ASSERT_STRING_EQUAL(plugin_name(zl_plugins_at(reg, 0)), "good");
    CU_ASSERT_STRING_EQUAL(plugin_name(zl_plugins_at(reg, 1)), "good2");
    check_good_providers(__LINE__, reg, zl_plugins_at(reg, 0));
    zl_plugins_free(reg);
    trace_reset();
    g_ptr_array_free(rep.paths, TRUE);
    g_free(dir);
}

static void test_load_dir_missing(void)
{
    zl_plugin_registry_t *reg = new_registry();
    reports_t rep = {g_ptr_array_new_with_free_func(g_free), 0};

    CU_ASSERT_EQUAL(zl_plugins_load_dir(reg, "/nonexistent/zltk-plugins",
                                        on_report, &rep),
                    -ENOENT);
    CU_ASSERT_EQUAL(rep.paths->len, 0);
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 0);
    zl_plugins_free(reg);
    g_ptr_array_free(rep.paths, TRUE);
}

/* ------------------------------------------------------------ damaged files */

/* tmpdir/NAME: the first len bytes of src (all if len is -1), then bytes
 * patched at off (if patch). */
static char *make_copy(const char *src, const char *name, gssize len,
                       size_t off, const void *patch, size_t plen)
{
    char *data = NULL, *dst = g_build_filename(tmpdir, name, NULL);
    gsize size = 0;

    CU_ASSERT_FATAL(g_file_get_contents(src, &data, &size, NULL));
    if (len >= 0 && (gsize)len < size)
        size = (gsize)len;
    if (patch && off + plen <= size)
        memcpy(data + off, patch, plen);
    CU_ASSERT_FATAL(g_file_set_contents(dst, data, (gssize)size, NULL));
    g_free(data);
    return dst;
}

static gsize file_size(const char *path)
{
    char *data = NULL;
    gsize size = 0;

    if (g_file_get_contents(path, &data, &size, NULL))
        g_free(data);
    return size;
}

/* Cut anywhere, a plugin is refused by name before dlopen: mapping a
 * truncated file is what killed the host with SIGBUS. */
static void test_refuse_truncated(void)
{
    char *good = plugin_path("good");
    gsize size = file_size(good);
    const gssize cuts[] = {3, 40, 100, 4000, (gssize)size / 2,
                           (gssize)size - 1};

    CU_ASSERT_FATAL(size > 8192);
    for (size_t i = 0; i < G_N_ELEMENTS(cuts); i++) {
        char *path = make_copy(good, "good.so", cuts[i], 0, NULL, 0);
        refuse_before_init_at(__LINE__, path, NULL, -ENOEXEC,
                              cuts[i] < 4 ? WORDS("not a shared object")
                                          : WORDS("truncated", "reinstall"));
        g_unlink(path);
        g_free(path);
    }
    g_free(good);
}

/* ELF, but not for this host or not a shared object: refused before
 * dlopen with what it is. */
static void test_refuse_foreign_elf(void)
{
    char *good = plugin_path("good");
    ElfW(Half) other_machine = EM_S390, exec_type = ET_EXEC;
    unsigned char other_class =
        sizeof(void *) == 8 ? ELFCLASS32 : ELFCLASS64;
    unsigned char other_order = G_BYTE_ORDER == G_LITTLE_ENDIAN
                                    ? ELFDATA2MSB
                                    : ELFDATA2LSB;
    struct {
        size_t off;
        const void *bytes;
        size_t len;
        const char *const *words;
    } cases[] = {
        {EI_CLASS, &other_class, 1, WORDS("another system", "-bit")},
        {EI_DATA, &other_order, 1, WORDS("another system", "endian")},
        {offsetof(ElfW(Ehdr), e_machine), &other_machine,
         sizeof(other_machine), WORDS("built for s390", "this host is")},
        {offsetof(ElfW(Ehdr), e_type), &exec_type, sizeof(exec_type),
         WORDS("not a shared object", "executable")},
    };

    {
        /* Another machine than the one good.so was built for, this one. */
        char *data = NULL;
        gsize size = 0;
        CU_ASSERT_FATAL(g_file_get_contents(good, &data, &size, NULL) &&
                        size >= sizeof(ElfW(Ehdr)));
        if (((const ElfW(Ehdr) *)(void *)data)->e_machine == EM_S390) {
            other_machine = EM_X86_64;
            cases[2].words = WORDS("built for x86-64", "this host is");
        }
        g_free(data);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        char *path = make_copy(good, "foreign.so", -1, cases[i].off,
                               cases[i].bytes, cases[i].len);
        refuse_before_init_at(__LINE__, path, NULL, -ENOEXEC, cases[i].words);
        g_unlink(path);
        g_free(path);
    }
    g_free(good);
}

/* ------------------------------------------------------------ probes */

static char *crash_path(const char *base)
{
    return g_strdup_printf("%s/%s.so", crash_dir, base);
}

/* The build's zltk-host runs the probe (zltk-host --probe-plugin FILE). */
static zl_plugin_registry_t *probing_registry(unsigned timeout_ms)
{
    zl_plugin_registry_t *reg = new_registry();
    const char *argv[] = {host_path, "--probe-plugin", NULL};

    CU_ASSERT_EQUAL(zl_plugins_set_probe(reg, argv, timeout_ms), 0);
    return reg;
}

/* A sanitizer's own handler would turn a SIGSEGV in the probe child into
 * exit(1) with a report; let the children show the signal itself. */
static char *saved_asan, *saved_tsan;
static void sanitizer_env_begin(void)
{
    const char *a = g_getenv("ASAN_OPTIONS"), *t = g_getenv("TSAN_OPTIONS");
    char *na = g_strconcat(a ? a : "", a && *a ? ":" : "", "handle_segv=0",
                           NULL);
    char *nt = g_strconcat(t ? t : "", t && *t ? ":" : "", "handle_segv=0",
                           NULL);

    saved_asan = g_strdup(a);
    saved_tsan = g_strdup(t);
    g_setenv("ASAN_OPTIONS", na, TRUE);
    g_setenv("TSAN_OPTIONS", nt, TRUE);
    g_free(na);
    g_free(nt);
}

static void sanitizer_env_end(void)
{
    if (saved_asan)
        g_setenv("ASAN_OPTIONS", saved_asan, TRUE);
    else
        g_unsetenv("ASAN_OPTIONS");
    if (saved_tsan)
        g_setenv("TSAN_OPTIONS", saved_tsan, TRUE);
    else
        g_unsetenv("TSAN_OPTIONS");
    g_free(saved_asan);
    g_free(saved_tsan);
    saved_asan = saved_tsan = NULL;
}

/* Constructors that abort, crash or exit: with a probe, this process
 * survives each, and each is refused by name with what happened and where;
 * the registry still loads good afterwards. */
static void test_probe_crashing_constructors(void)
{
    const struct {
        const char *base;
        const char *const *words;
    } cases[] = {
        {"ctor-abort", WORDS("SIGABRT", "constructor", "probe",
                             "\"ctor-abort: in its constructor\"")},
        {"ctor-segv", WORDS("SIGSEGV", "constructor", "probe",
                            "\"ctor-segv: in its constructor\"")},
        {"ctor-exit", WORDS("exit(3)", "constructor", "probe",
                            "\"ctor-exit: in its constructor\"")},
    };
    zl_plugin_registry_t *reg = probing_registry(0);

    sanitizer_env_begin();
    trace_reset();
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        char *path = crash_path(cases[i].base);
        refuse_at(__LINE__, reg, path, -ENOEXEC, cases[i].words);
        CU_ASSERT_PTR_NULL(zl_plugins_find(reg, cases[i].base));
        g_free(path);
    }
    sanitizer_env_end();
    /* good passes its probe and is initialised once, here: the probe
     * child runs no init. */
    LOAD_GOOD(reg);
    zl_plugins_free(reg);
    {
        char *t = trace_take();
        CHECK(trace_count(t, "init", "good") == 1, "good init once: %s", t);
        g_free(t);
    }
}

/* A constructor that never returns: the probe is killed at its time-out. */
static void test_probe_hang(void)
{
    zl_plugin_registry_t *reg = probing_registry(300);
    char *path = crash_path("ctor-hang");
    gint64 t0 = g_get_monotonic_time();

    refuse_at(__LINE__, reg, path, -ENOEXEC,
              WORDS("within 300 ms", "probe"));
    CHECK(g_get_monotonic_time() - t0 < 5 * G_USEC_PER_SEC,
          "refused at the time-out, not later: %" G_GINT64_FORMAT " us",
          g_get_monotonic_time() - t0);
    zl_plugins_free(reg);
    g_free(path);
}

/* A probe program that cannot run, or is no probe: refused, saying so; no
 * probe: loads. */
static void test_probe_cannot_run(void)
{
    zl_plugin_registry_t *reg = new_registry();
    const char *argv[] = {"/nonexistent/zltk-probe", NULL};
    char *path = plugin_path("good");

    CU_ASSERT_EQUAL(zl_plugins_set_probe(reg, (const char *[]){"", NULL}, 0),
                    -EINVAL);
    CU_ASSERT_EQUAL(zl_plugins_set_probe(reg, argv, 0), 0);
    refuse_at(__LINE__, reg, path, -ENOENT,
              WORDS("cannot probe", "/nonexistent/zltk-probe"));
    /* A program that runs but is no probe: it reports nothing. */
    {
        char *t = g_find_program_in_path("true");
        if (CHECK(t != NULL, "true(1) is on PATH")) {
            CU_ASSERT_EQUAL(zl_plugins_set_probe(
                                reg, (const char *[]){t, NULL}, 0), 0);
            refuse_at(__LINE__, reg, path, -ENOEXEC,
                      WORDS("cannot probe", "reported anything",
                            "zl_plugins_probe_child"));
        }
        g_free(t);
    }
    CU_ASSERT_EQUAL(zl_plugins_set_probe(reg, NULL, 0), 0);
    LOAD_GOOD(reg);
    zl_plugins_free(reg);
    trace_reset();
    g_free(path);
}

/* ------------------------------------------------------------ C++ */

/* Built by the C++ compiler with ZLTK_PLUGIN_DEFINE, calling libzltk
 * directly: its entry and those calls link by their C names. */
static void test_cxx_plugin(void)
{
    zl_plugin_registry_t *reg = new_registry();
    char *path = plugin_path("cxx"), *err = NULL;
    zl_plugin_t *owner = NULL;
    int r = zl_plugins_load_file(reg, path, &err);

    CHECK(r == 0, "the C++ plugin loads: %d %s", r, err ? err : "");
    free(err);
    CU_ASSERT_PTR_NOT_NULL(zl_plugins_find_provider(reg, ZL_PROVIDES_SERVER,
                                                    "cxx-echo", &owner));
    CU_ASSERT_PTR_EQUAL(owner, zl_plugins_find(reg, "cxx"));
    zl_plugins_free(reg);
    g_free(path);
}

/* An entry exported under a C++-mangled name: the message says so, and
 * does not merely send the author back to the macro. */
static void test_refuse_cxx_mangled(void)
{
    REFUSE_BEFORE_INIT("cxxmangled", -ENOENT,
                       WORDS("_Z17zltk_plugin_entryv",
                             "built as C++ without extern \"C\""));
}

/* ------------------------------------------------------------ a path */

typedef struct {
    GPtrArray *refused, *shadowed; /* paths */
    GPtrArray *notes;              /* shadowed messages */
} path_reports_t;

static void on_path_report(const char *path, zl_plugin_report_t what,
                           const char *message, void *ctx)
{
    path_reports_t *r = ctx;

    CHECK(path && message && strstr(message, path) && !strchr(message, '\n'),
          "one line naming %s: %s", path ? path : "(null)",
          message ? message : "(null)");
    if (what == ZL_PLUGIN_SHADOWED) {
        g_ptr_array_add(r->shadowed, g_strdup(path));
        g_ptr_array_add(r->notes, g_strdup(message));
    } else {
        CHECK(what == ZL_PLUGIN_REFUSED, "report kind %d", (int)what);
        g_ptr_array_add(r->refused, g_strdup(path));
    }
}

/* As an installed zltk next to a build: the same file names in two
 * directories.  The earlier directory wins, the later copies are a note,
 * not a refusal; a directory given twice shadows nothing. */
static void test_load_path_precedence(void)
{
    zl_plugin_registry_t *reg = new_registry();
    path_reports_t rep = {g_ptr_array_new_with_free_func(g_free),
                          g_ptr_array_new_with_free_func(g_free),
                          g_ptr_array_new_with_free_func(g_free)};
    char *d1 = g_build_filename(tmpdir, "first", NULL);
    char *d2 = g_build_filename(tmpdir, "second", NULL);
    char *g1 = g_build_filename(d1, "good.so", NULL);
    char *g2 = g_build_filename(d2, "good.so", NULL);
    char *m1 = g_build_filename(d1, "major.so", NULL);
    char *m2 = g_build_filename(d2, "major.so", NULL);
    const char *dirs[] = {d1, "/nonexistent/zltk-plugins", d2, d1, NULL};
    int n;

    CU_ASSERT_EQUAL_FATAL(g_mkdir(d1, 0700), 0);
    CU_ASSERT_EQUAL_FATAL(g_mkdir(d2, 0700), 0);
    CU_ASSERT_FATAL(link_plugin(d1, "good") && link_plugin(d1, "major") &&
                    link_plugin(d2, "good") && link_plugin(d2, "good2") &&
                    link_plugin(d2, "major"));
    trace_reset();
    n = zl_plugins_load_path(reg, dirs, on_path_report, &rep);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL_FATAL(zl_plugins_count(reg), 2);
    CU_ASSERT_STRING_EQUAL(zl_plugin_get_path(zl_plugins_find(reg, "good")),
                           g1);
    CU_ASSERT_PTR_NOT_NULL(zl_plugins_find(reg, "good2"));
    CU_ASSERT_EQUAL_FATAL(rep.refused->len, 1);
    CU_ASSERT_STRING_EQUAL(g_ptr_array_index(rep.refused, 0), m1);
    CU_ASSERT_EQUAL_FATAL(rep.shadowed->len, 2);
    CU_ASSERT_STRING_EQUAL(g_ptr_array_index(rep.shadowed, 0), g2);
    CU_ASSERT_STRING_EQUAL(g_ptr_array_index(rep.shadowed, 1), m2);
    CHECK(strstr(g_ptr_array_index(rep.notes, 0), g1) != NULL,
          "the note names the file that wins: %s",
          (char *)g_ptr_array_index(rep.notes, 0));
    zl_plugins_free(reg);
    {
        char *t = trace_take();
        CHECK(trace_count(t, "init", "good") == 1, "good init once: %s", t);
        g_free(t);
    }
    g_ptr_array_free(rep.refused, TRUE);
    g_ptr_array_free(rep.shadowed, TRUE);
    g_ptr_array_free(rep.notes, TRUE);
    g_free(d1);
    g_free(d2);
    g_free(g1);
    g_free(g2);
    g_free(m1);
    g_free(m2);
}

/* ------------------------------------------------------------ settings */

typedef struct {
    int calls, foreign;
} settings_ctx_t;

static const char *lookup(void *ctx, const char *plugin, const char *key)
{
    static const struct {
        const char *key, *value;
    } good[] = {
        {"greeting", "hello world"}, {"count", "42"},
        {"big", "-9000000000"},      {"enabled", "true"},
        {"bad-int", "forty"},        {"bad-bool", "maybe"},
    };
    settings_ctx_t *c = ctx;

    c->calls++;
    if (!plugin || strcmp(plugin, "good")) {
        c->foreign++;
        return NULL;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(good); i++)
        if (key && !strcmp(key, good[i].key))
            return good[i].value;
    return NULL;
}

static void test_settings(void)
{
    zl_plugin_registry_t *reg = new_registry();
    const zl_host_api_t *api = zl_plugins_host_api();
    settings_ctx_t ctx = {0, 0};
    zl_plugin_t *p;
    int64_t v = 0;
    bool b = false;
    const char *s;
    char *t;

    zl_plugins_set_settings(reg, lookup, &ctx, "test.conf");
    trace_reset();
    p = LOAD_GOOD(reg);
    t = trace_take();
    CHECK(trace_index(t, "init good name=good server=0 client=0 count=0:42 "
                         "big=0:-9000000000 enabled=0:1 bad-int=-22 "
                         "bad-bool=-22 missing=-2 missing-str=(null) "
                         "greeting=[hello world]") >= 0,
          "what good's init read: %s", t);
    g_free(t);
    CU_ASSERT(ctx.calls > 0);
    CU_ASSERT_EQUAL(ctx.foreign, 0);

    /* The same through the host API, after init (any thread, any time). */
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    s = api->get_string(p, "greeting");
    CU_ASSERT(s && !strcmp(s, "hello world"));
    CU_ASSERT_PTR_NULL(api->get_string(p, "missing"));
    CU_ASSERT_EQUAL(api->get_int(p, "count", &v), 0);
    CU_ASSERT_EQUAL(v, 42);
    CU_ASSERT_EQUAL(api->get_int(p, "big", &v), 0);
    CU_ASSERT_EQUAL(v, INT64_C(-9000000000));
    CU_ASSERT_EQUAL(api->get_bool(p, "enabled", &b), 0);
    CU_ASSERT_TRUE(b);
    CU_ASSERT_EQUAL(api->get_int(p, "bad-int", &v), -EINVAL);
    CU_ASSERT_EQUAL(api->get_int(p, "greeting", &v), -EINVAL);
    CU_ASSERT_EQUAL(api->get_bool(p, "bad-bool", &b), -EINVAL);
    CU_ASSERT_EQUAL(api->get_bool(p, "count", &b), -EINVAL);
    CU_ASSERT_EQUAL(api->get_int(p, "missing", &v), -ENOENT);
    CU_ASSERT_EQUAL(api->get_bool(p, "missing", &b), -ENOENT);
    zl_plugins_free(reg);
    trace_reset();
}

static void test_settings_absent(void)
{
    zl_plugin_registry_t *reg = new_registry();
    const zl_host_api_t *api = zl_plugins_host_api();
    zl_plugin_t *p;
    int64_t v;
    char *t;

    trace_reset();
    p = LOAD_GOOD(reg);
    t = trace_take();
    CHECK(trace_index(t, "init good name=good server=0 client=0 count=-2:0 "
                         "big=-2:0 enabled=-2:0 bad-int=-2 bad-bool=-2 "
                         "missing=-2 missing-str=(null) greeting=[(null)]") >=
              0,
          "no settings: every key absent: %s", t);
    g_free(t);
    if (p) {
        CU_ASSERT_PTR_NULL(api->get_string(p, "greeting"));
        CU_ASSERT_EQUAL(api->get_int(p, "count", &v), -ENOENT);
    }
    zl_plugins_free(reg);
    trace_reset();
}

/* ------------------------------------------------------------ host API use */

static void test_register_outside_init(void)
{
    zl_plugin_registry_t *reg = new_registry();
    const zl_host_api_t *api = zl_plugins_host_api();
    static const int vt = 1;
    const zl_registration_t late = {
        .struct_size = sizeof(zl_registration_t),
        .kind = ZL_PROVIDES_CLIENT,
        .name = "late",
        .description = "registered after init",
        .vtable = &vt,
    };
    const zl_registration_t *regs = NULL;
    zl_plugin_t *p;
    const char *name;

    p = LOAD_GOOD(reg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(api->register_provider(p, &late), -EPERM);
    CU_ASSERT_PTR_NULL(
        zl_plugins_find_provider(reg, ZL_PROVIDES_CLIENT, "late", NULL));
    CU_ASSERT_EQUAL(zl_plugin_registrations(p, &regs), 2);
    name = api->name(p);
    CU_ASSERT(name && !strcmp(name, "good"));
    api->log(p, ZL_LOG_DEBUG, "logged by the test on good's behalf: %d", 42);
    zl_plugins_free(reg);
    trace_reset();
}

/* good2: same name, other kind is fine; malformed registrations are
 * refused; a registration is copied. */
static void test_registrations(void)
{
    zl_plugin_registry_t *reg = new_registry();
    char *path = plugin_path("good2"), *err = NULL, *t;
    const zl_registration_t *regs = NULL, *r;
    zl_plugin_t *good2, *good, *owner = NULL;
    size_t n;
    int rc;

    trace_reset();
    rc = zl_plugins_load_file(reg, path, &err);
    CHECK(rc == 0, "good2 loads: %d %s", rc, err ? err : "");
    free(err);
    t = trace_take();
    CHECK(trace_index(t, "init good2 client=0 layer=0 two-kinds=-22 "
                         "no-kind=-22 null-name=-22 zero-size=-22 "
                         "null-reg=-22") >= 0,
          "malformed registrations are -EINVAL: %s", t);
    g_free(t);
    good2 = zl_plugins_find(reg, "good2");
    CU_ASSERT_PTR_NOT_NULL_FATAL(good2);
    n = zl_plugin_registrations(good2, &regs);
    CU_ASSERT_EQUAL(n, 2);
    for (size_t i = 0; regs && i < n; i++)
        CU_ASSERT(regs[i].kind == ZL_PROVIDES_CLIENT ||
                  regs[i].kind == ZL_PROVIDES_LAYER);

    r = zl_plugins_find_provider(reg, ZL_PROVIDES_LAYER, "good2-layer", &owner);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_PTR_EQUAL(owner, good2);
    CU_ASSERT_EQUAL(r->kind, ZL_PROVIDES_LAYER);
    CU_ASSERT_STRING_EQUAL(r->name, "good2-layer");
    CU_ASSERT_STRING_EQUAL(r->description, "good2 layer (test)");
    CU_ASSERT_PTR_NULL(
        zl_plugins_find_provider(reg, ZL_PROVIDES_CLIENT, "good2-two", NULL));
    CU_ASSERT_PTR_NULL(
        zl_plugins_find_provider(reg, ZL_PROVIDES_CLIENT, "good2-zero", NULL));

    good = LOAD_GOOD(reg); /* its server good-echo vs good2's client good-echo */
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 2);
    owner = NULL;
    r = zl_plugins_find_provider(reg, ZL_PROVIDES_CLIENT, "good-echo", &owner);
    CU_ASSERT_PTR_NOT_NULL(r);
    CU_ASSERT_PTR_EQUAL(owner, good2);
    if (r)
        CU_ASSERT_STRING_EQUAL(r->description, "good2 client (test)");
    owner = NULL;
    r = zl_plugins_find_provider(reg, ZL_PROVIDES_SERVER, "good-echo", &owner);
    CU_ASSERT_PTR_NOT_NULL(r);
    CU_ASSERT_PTR_EQUAL(owner, good);
    zl_plugins_free(reg);
    trace_reset();
    g_free(path);
}

/* destroy: once per initialised plugin, at free, in reverse load order;
 * a plugin whose init failed is destroyed once as well. */
static void test_destroy_order_once(void)
{
    zl_plugin_registry_t *reg = new_registry();
    char *good2 = plugin_path("good2"), *initfail = plugin_path("initfail");
    char *t;

    trace_reset();
    LOAD_GOOD(reg);
    CU_ASSERT_EQUAL(zl_plugins_load_file(reg, good2, NULL), 0);
    CU_ASSERT_EQUAL(zl_plugins_load_file(reg, initfail, NULL), -EIO);
    CU_ASSERT_EQUAL(zl_plugins_count(reg), 2);
    t = trace_take();
    CHECK(trace_count(t, "destroy", "good") == 0 &&
              trace_count(t, "destroy", "good2") == 0,
          "nothing loaded is destroyed before free: %s", t);
    CHECK(trace_count(t, "destroy", "initfail") <= 1, "initfail: %s", t);
    zl_plugins_free(reg);
    {
        char *after = trace_take();
        char *all = g_strconcat(t, after, NULL);
        CHECK(trace_count(all, "destroy", "good") == 1, "good once: %s", all);
        CHECK(trace_count(all, "destroy", "good2") == 1, "good2 once: %s", all);
        CHECK(trace_count(all, "destroy", "initfail") == 1,
              "initfail once: %s", all);
        CHECK(trace_index(after, "destroy good2") >= 0 &&
                  trace_index(after, "destroy good2") <
                      trace_index(after, "destroy good"),
              "reverse load order: %s", after);
        g_free(after);
        g_free(all);
    }
    g_free(t);
    g_free(good2);
    g_free(initfail);
}

static void test_accessors(void)
{
    zl_plugin_registry_t *reg = new_registry();
    char *path = plugin_path("good");
    const zl_registration_t *regs = NULL;
    const zl_plugin_desc_t *d;
    zl_plugin_entry_fn entry;
    bool server = false, client = false;
    zl_plugin_t *p;
    void *h;
    size_t n;

    p = LOAD_GOOD(reg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_PTR_EQUAL(zl_plugins_at(reg, 0), p);
    CU_ASSERT_PTR_NULL(zl_plugins_find(reg, "no-such"));
    CU_ASSERT_STRING_EQUAL(zl_plugin_get_path(p), path);

    d = zl_plugin_get_desc(p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_STRING_EQUAL(d->name, "good");
    CU_ASSERT_STRING_EQUAL(d->version, "1.2.3");
    CU_ASSERT_STRING_EQUAL(d->description, "good test plugin");
    /* Still mapped (never dlclosed), and the descriptor is the plugin's own. */
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    CU_ASSERT_PTR_NOT_NULL(h);
    if (h) {
        *(void **)&entry = dlsym(h, ZLTK_PLUGIN_ENTRY_SYMBOL);
        CU_ASSERT_PTR_NOT_NULL(entry);
        if (entry)
            CU_ASSERT_PTR_EQUAL(entry(), d);
        dlclose(h);
    }

    n = zl_plugin_registrations(p, &regs);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(regs);
    for (size_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(regs[i].struct_size, sizeof(zl_registration_t));
        if (regs[i].kind == ZL_PROVIDES_SERVER &&
            !strcmp(regs[i].name, "good-echo"))
            server = true;
        if (regs[i].kind == ZL_PROVIDES_CLIENT &&
            !strcmp(regs[i].name, "good-client"))
            client = true;
    }
    CU_ASSERT_TRUE(server);
    CU_ASSERT_TRUE(client);
    zl_plugins_free(reg);
    trace_reset();
    g_free(path);
}

/* ------------------------------------------------------------ mock host */

static struct {
    zl_plugin_t *self;
    int wrong_self;
    int calls;
    size_t n_regs;
    zl_registration_t regs[8];
    int logs;
    char last_log[256];
} mock;

static int mock_register(zl_plugin_t *self, const zl_registration_t *r)
{
    mock.calls++;
    if (self != mock.self)
        mock.wrong_self++;
    if (!r || r->struct_size < sizeof *r || !r->name ||
        (r->kind != ZL_PROVIDES_CLIENT && r->kind != ZL_PROVIDES_SERVER &&
         r->kind != ZL_PROVIDES_LAYER))
        return -EINVAL;
    for (size_t i = 0; i < mock.n_regs; i++)
        if (mock.regs[i].kind == r->kind && !strcmp(mock.regs[i].name, r->name))
            return -EEXIST;
    if (mock.n_regs == G_N_ELEMENTS(mock.regs))
        return -ENOMEM;
    mock.regs[mock.n_regs++] = *r;
    return 0;
}

static void mock_log(zl_plugin_t *self, zl_log_level_t level, const char *fmt,
                     ...) G_GNUC_PRINTF(3, 4);
static void mock_log(zl_plugin_t *self, zl_log_level_t level, const char *fmt,
                     ...)
{
    va_list ap;

    if (self != mock.self)
        mock.wrong_self++;
    va_start(ap, fmt);
    vsnprintf(mock.last_log, sizeof mock.last_log, fmt, ap);
    va_end(ap);
    mock.logs++;
}

static const char *mock_get_string(zl_plugin_t *self, const char *key)
{
    if (self != mock.self)
        mock.wrong_self++;
    return !strcmp(key, "greeting") ? "mock hello" : NULL;
}

static int mock_get_int(zl_plugin_t *self, const char *key, int64_t *out)
{
    if (self != mock.self)
        mock.wrong_self++;
    if (!strcmp(key, "count")) {
        *out = 7;
        return 0;
    }
    return !strcmp(key, "bad-int") ? -EINVAL : -ENOENT;
}

static int mock_get_bool(zl_plugin_t *self, const char *key, bool *out)
{
    if (self != mock.self)
        mock.wrong_self++;
    if (!strcmp(key, "enabled")) {
        *out = false;
        return 0;
    }
    return !strcmp(key, "bad-bool") ? -EINVAL : -ENOENT;
}

static const char *mock_name(const zl_plugin_t *self)
{
    return "good";
}

/* good driven by hand through a fake host: no loader involved. */
static void test_mock_host(void)
{
    static char fake_self; /* any address: zl_plugin_t is opaque */
    zl_host_api_t host = {
        .struct_size = sizeof(zl_host_api_t),
        .abi_major = ZLTK_PLUGIN_ABI_MAJOR,
        .abi_minor = ZLTK_PLUGIN_ABI_MINOR,
        .register_provider = mock_register,
        .log = mock_log,
        .get_string = mock_get_string,
        .get_int = mock_get_int,
        .get_bool = mock_get_bool,
        .name = mock_name,
    };
    char *path = plugin_path("good");
    const zl_plugin_desc_t *d;
    zl_plugin_entry_fn entry;
    char *t;
    void *h;

    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK(h != NULL, "dlopen %s: %s", path, h ? "" : dlerror());
    g_free(path);
    if (!h)
        return;
    /* Exactly one exported symbol (habit 3). */
    CU_ASSERT_PTR_NULL(dlsym(h, "good_init"));
    CU_ASSERT_PTR_NULL(dlsym(h, "trace"));
    *(void **)&entry = dlsym(h, ZLTK_PLUGIN_ENTRY_SYMBOL);
    CU_ASSERT_PTR_NOT_NULL(entry);
    if (!entry)
        goto out;
    d = entry();
    CU_ASSERT_PTR_NOT_NULL(d);
    if (!d)
        goto out;
    CU_ASSERT_EQUAL(d->magic, ZLTK_PLUGIN_MAGIC);
    CU_ASSERT_EQUAL(d->abi_major, ZLTK_PLUGIN_ABI_MAJOR);
    CU_ASSERT_EQUAL(d->abi_minor, ZLTK_PLUGIN_ABI_MINOR);
    CU_ASSERT_EQUAL(d->struct_size, sizeof(zl_plugin_desc_t));
    CU_ASSERT_EQUAL(d->flags, 0);
    CU_ASSERT_STRING_EQUAL(d->name, "good");
    CU_ASSERT_STRING_EQUAL(d->version, "1.2.3");
    CU_ASSERT_PTR_NOT_NULL(d->init);
    CU_ASSERT_PTR_NULL(d->start);
    CU_ASSERT_PTR_NULL(d->stop);
    CU_ASSERT_PTR_NOT_NULL(d->destroy);
    for (size_t i = 0; i < G_N_ELEMENTS(d->reserved); i++)
        CU_ASSERT_PTR_NULL(d->reserved[i]);
    if (!d->init || !d->destroy)
        goto out;

    memset(&mock, 0, sizeof mock);
    mock.self = (zl_plugin_t *)(void *)&fake_self;
    trace_reset();
    CU_ASSERT_EQUAL(d->init(mock.self, &host), 0);
    CU_ASSERT_EQUAL(mock.wrong_self, 0);
    CU_ASSERT_EQUAL(mock.calls, 2);
    CU_ASSERT_EQUAL_FATAL(mock.n_regs, 2);
    CU_ASSERT_EQUAL(mock.regs[0].kind, ZL_PROVIDES_SERVER);
    CU_ASSERT_STRING_EQUAL(mock.regs[0].name, "good-echo");
    CU_ASSERT_STRING_EQUAL(mock.regs[0].description, "good echo server (test)");
    CU_ASSERT_PTR_NOT_NULL(mock.regs[0].vtable);
    CU_ASSERT_EQUAL(mock.regs[1].kind, ZL_PROVIDES_CLIENT);
    CU_ASSERT_STRING_EQUAL(mock.regs[1].name, "good-client");
    CU_ASSERT(mock.logs >= 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(mock.last_log, "mock hello"));
    d->destroy(mock.self);
    t = trace_take();
    CHECK(trace_index(t, "init good name=good server=0 client=0 count=0:7 "
                         "big=-2:0 enabled=0:0 bad-int=-22 bad-bool=-22 "
                         "missing=-2 missing-str=(null) "
                         "greeting=[mock hello]") >= 0,
          "good read the mock's settings: %s", t);
    CHECK(trace_count(t, "destroy", "good") == 1, "destroy ran: %s", t);
    g_free(t);

    /* A host API too old for the fields good uses: good declines, touching
     * nothing. */
    memset(&mock, 0, sizeof mock);
    mock.self = (zl_plugin_t *)(void *)&fake_self;
    host.struct_size = offsetof(zl_host_api_t, name);
    CU_ASSERT(d->init(mock.self, &host) < 0);
    CU_ASSERT_EQUAL(mock.calls, 0);
    d->destroy(mock.self);
    trace_reset();
out:
    dlclose(h);
}

/* A [plugin.NAME] value of the wrong type is logged as the host's own
 * configuration problems read: "FILE: [plugin.NAME] key: 'v' is not ...",
 * through the typed getter the instances' keys use too. */
static void test_settings_typed_message(void)
{
    char dir[] = "/tmp/zltk-plugin-XXXXXX";
    zl_log_options_t lo = {.level = ZL_LOG_WARNING};
    zl_log_level_t level = zl_log_get_level();
    zl_plugin_registry_t *reg;
    const zl_host_api_t *api = zl_plugins_host_api();
    settings_ctx_t ctx = {0, 0};
    char *path, *text = NULL;
    zl_plugin_t *p;
    int64_t v = 5;

    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    path = g_strdup_printf("%s/log", dir);
    lo.file = path;
    CU_ASSERT_EQUAL_FATAL(zl_log_init(&lo), 0);
    reg = new_registry();
    zl_plugins_set_settings(reg, lookup, &ctx, "test.conf");
    trace_reset();
    p = LOAD_GOOD(reg);
    if (p) {
        CU_ASSERT_EQUAL(api->get_int(p, "bad-int", &v), -EINVAL);
        CU_ASSERT_EQUAL(v, 5);
    }
    zl_plugins_free(reg);
    trace_reset();
    zl_log_shutdown();
    zl_log_set_level(level);

    CU_ASSERT(g_file_get_contents(path, &text, NULL, NULL));
    CHECK(text && strstr(text, "test.conf: [plugin.good] bad-int: 'forty' "
                               "is not an integer"),
          "the log: %s", text ? text : "(none)");
    CHECK(text && strstr(text, "test.conf: [plugin.good] bad-bool: 'maybe' "
                               "is not a boolean ("),
          "the log: %s", text ? text : "(none)");
    g_free(text);
    zl_test_rm_tree(dir);
    g_free(path);
}

/* zl_plugins_search_path(): first, then $ZLTK_PLUGIN_PATH, then the system
 * path; a directory named twice (by inode, or by name if missing) once. */
static void test_search_path(void)
{
    char *old_env = g_strdup(g_getenv("ZLTK_PLUGIN_PATH"));
    char *old_sys = g_strdup(g_getenv("ZLTK_PLUGIN_SYSTEM_PATH"));
    char *tmp = g_dir_make_tmp("zltk-path-XXXXXX", NULL);
    char *again = g_strdup_printf("%s/.", tmp);
    char *env = g_strdup_printf("/no/such/a::%s:/no/such/a", again);
    const char *first[] = {tmp, "/no/such/first", NULL};
    char **p;

    CU_ASSERT_PTR_NOT_NULL_FATAL(tmp);
    g_setenv("ZLTK_PLUGIN_PATH", env, TRUE);
    g_setenv("ZLTK_PLUGIN_SYSTEM_PATH", "/no/such/sys", TRUE);
    p = zl_plugins_search_path(first);
    CU_ASSERT_EQUAL(g_strv_length(p), 4);
    if (g_strv_length(p) == 4) {
        CU_ASSERT_STRING_EQUAL(p[0], tmp);
        CU_ASSERT_STRING_EQUAL(p[1], "/no/such/first");
        CU_ASSERT_STRING_EQUAL(p[2], "/no/such/a");
        CU_ASSERT_STRING_EQUAL(p[3], "/no/such/sys");
    }
    g_strfreev(p);
    g_setenv("ZLTK_PLUGIN_SYSTEM_PATH", "", TRUE);
    g_unsetenv("ZLTK_PLUGIN_PATH");
    p = zl_plugins_search_path(NULL);
    CU_ASSERT_EQUAL(g_strv_length(p), 0);
    g_strfreev(p);
    if (old_env)
        g_setenv("ZLTK_PLUGIN_PATH", old_env, TRUE);
    if (old_sys)
        g_setenv("ZLTK_PLUGIN_SYSTEM_PATH", old_sys, TRUE);
    else
        g_unsetenv("ZLTK_PLUGIN_SYSTEM_PATH");
    g_rmdir(tmp);
    g_free(old_env);
    g_free(old_sys);
    g_free(tmp);
    g_free(again);
    g_free(env);
}

int zl_test_register_plugin(void)
{
    static const zl_test_case_t cases[] = {
        {"search path: order, environment, duplicates once", test_search_path},
        {"host API fields match the headers", test_host_api_fields},
        {"refuse a missing file", test_refuse_missing_file},
        {"refuse a file that is not a shared object",
         test_refuse_not_shared_object},
        {"refuse a shared object without the entry", test_refuse_no_entry},
        {"refuse a wrong magic", test_refuse_bad_magic},
        {"refuse another ABI major", test_refuse_abi_major},
        {"refuse a newer ABI minor", test_refuse_abi_minor_newer},
        {"refuse a descriptor too small", test_refuse_small_struct},
        {"refuse a plugin without init", test_refuse_no_init},
        {"refuse a plugin without version", test_refuse_no_version},
        {"refuse a malformed name", test_refuse_bad_name},
        {"init failure skips the plugin, destroy once",
         test_refuse_init_failure},
        {"a handler without on_recv is refused, the others run",
         test_refuse_handler_without_recv},
        {"refuse a duplicate name", test_refuse_dup_name},
        {"a taken provider name fails init", test_refuse_dup_provider},
        {"error pointer may be NULL", test_error_pointer_optional},
        {"a relative path is a file, not a library name", test_relative_path},
        {"load by name searches dirs in order", test_load_by_name},
        {"load by name: not found lists dirs", test_load_by_name_missing},
        {"load the build's plugin dir", test_load_dir_build},
        {"load a dir: only *.so, sorted", test_load_dir_mixed},
        {"load a missing dir", test_load_dir_missing},
        {"refuse a truncated file before dlopen", test_refuse_truncated},
        {"refuse ELF of another system or type", test_refuse_foreign_elf},
        {"probe: constructors that abort, crash, exit",
         test_probe_crashing_constructors},
        {"probe: a hanging constructor times out", test_probe_hang},
        {"probe: a program that cannot run", test_probe_cannot_run},
        {"a C++ plugin loads", test_cxx_plugin},
        {"refuse a C++-mangled entry, saying so", test_refuse_cxx_mangled},
        {"load a path: earlier directories win, a note",
         test_load_path_precedence},
        {"settings: string, int, bool, wrong type", test_settings},
        {"settings absent", test_settings_absent},
        {"register_provider outside init is -EPERM",
         test_register_outside_init},
        {"registrations: kinds, malformed, copied", test_registrations},
        {"destroy once, reverse order, at free", test_destroy_order_once},
        {"plugin accessors", test_accessors},
        {"good through a mock host", test_mock_host},
        {"settings: a wrong type names file, group and key",
         test_settings_typed_message},
        {NULL, NULL},
    };
    return zl_test_add_suite("plugin", suite_init, suite_cleanup, cases);
}
