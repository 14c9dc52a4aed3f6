/* zltk test plugins — shared by the test plugins only (not a plugin API).
 *
 * trace() appends one line to the file named by $ZLTK_TEST_PLUGIN_TRACE, so
 * the plugin suite can see which plugin functions ran and what they read
 * without the plugins exporting anything but zltk_plugin_entry. */
#ifndef ZLTK_TEST_PLUGIN_TRACE_H
#define ZLTK_TEST_PLUGIN_TRACE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

/* A minimal valid handler for test registrations. */
static void test_on_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    (void)s, (void)state, (void)buf;
}
__attribute__((unused)) static const zl_handler_t test_handler = {
    .struct_size = sizeof(zl_handler_t),
    .on_recv = test_on_recv,
};

/* A minimal valid layer. */
static void test_layer_connect(zl_session_t *s, void *state)
{
    (void)s, (void)state;
}
static int test_layer_send(zl_session_t *s, void *state, const void *data,
                           size_t len)
{
    (void)s, (void)state, (void)data, (void)len;
    return 0;
}
__attribute__((unused)) static const zl_layer_t test_layer = {
    .struct_size = sizeof(zl_layer_t),
    .on_connect = test_layer_connect,
    .on_recv = test_on_recv,
    .send = test_layer_send,
};

static void trace(const char *fmt, ...) ZL_PRINTF(1, 2);
static void trace(const char *fmt, ...)
{
    const char *path = getenv("ZLTK_TEST_PLUGIN_TRACE");
    va_list ap;
    FILE *f;

    if (!path || !(f = fopen(path, "a")))
        return;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

#endif
