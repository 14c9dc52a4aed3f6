/* zltk tests — shared helpers for the CUnit suites. */
#ifndef ZLTK_TEST_H
#define ZLTK_TEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <CUnit/CUnit.h>

#include <zltk/zltk.h>

/* Each test-*.c defines one registration function, listed in runner.c.
 * It adds one suite with CU_add_suite() and its tests, and returns 0 or a
 * CUnit error.  Suite names: error, poller, task, timer, pool, worker,
 * runtime, log. */
int zl_test_register_error(void);
int zl_test_register_poller(void);
int zl_test_register_task(void);
int zl_test_register_timer(void);
int zl_test_register_pool(void);
int zl_test_register_worker(void);
int zl_test_register_runtime(void);
int zl_test_register_log(void);
int zl_test_register_net(void);
int zl_test_register_conn(void);
int zl_test_register_halfclose(void);
int zl_test_register_plugin(void);
int zl_test_register_handlers(void);
int zl_test_register_instance(void);
int zl_test_register_tls(void);
int zl_test_register_tls_interop(void);
int zl_test_register_embed(void);
int zl_test_register_proxy_units(void);
int zl_test_register_proxy_peers(void);
int zl_test_register_unix(void);

/* Wait until *flag becomes non-zero or timeout_ms passes; returns the final
 * value.  Polls every millisecond. */
int zl_test_wait_flag(atomic_int *flag, unsigned timeout_ms);
/* Wait until *v >= want or timeout_ms passes; returns the last value. */
int zl_test_wait_ge(atomic_int *v, int want, unsigned timeout_ms);
/* Wait until *counter >= target or timeout_ms passes; returns the value. */
long zl_test_wait_count(atomic_long *counter, long target, unsigned timeout_ms);
/* Sleep for ms milliseconds. */
void zl_test_sleep_ms(unsigned ms);
/* Scale factor for time limits: 1 normally, larger under sanitizers
 * ($ZLTK_TEST_SLOW, default 1). */
unsigned zl_test_slow(void);

/* A new poller (backend from $ZLTK_POLLER_BACKEND); fails the test fatally
 * if it cannot be created.  Free it with zl_poller_free(). */
zl_poller_t *zl_test_new_poller(void);
/* A task that does nothing (for zl_poller_sync barriers). */
void zl_test_noop(void *arg);
/* Entries of a /proc/self directory ("/proc/self/task": threads,
 * "/proc/self/fd": descriptors); -1 if it cannot be read. */
int zl_test_count_entries(const char *dir);
/* Wait (bounded) until the process has want threads again: a joined
 * thread may linger in /proc for a moment.  Returns the last count. */
int zl_test_wait_threads(int want);
/* Remove a directory tree the test created. */
void zl_test_rm_tree(const char *path);

/* Register a suite's tests from a NULL-terminated table. */
typedef struct {
    const char *name;
    CU_TestFunc fn;
} zl_test_case_t;
int zl_test_add_suite(const char *name, CU_InitializeFunc init,
                      CU_CleanupFunc cleanup, const zl_test_case_t *cases);

/* A CUnit assertion with a formatted explanation, reported at file:line;
 * returns ok.  ZL_TEST_CHECK(cond, fmt, ...) passes the caller's place. */
bool zl_test_check_at(const char *file, int line, bool ok, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));
#define ZL_TEST_CHECK(cond, ...)                                            \
    zl_test_check_at(__FILE__, __LINE__, (cond), __VA_ARGS__)

/* Blocking-socket helpers for peers written by hand.  Receive and send
 * timeouts of ms on fd. */
void zl_test_sock_timeouts(int fd, unsigned ms);
/* Send all n bytes (MSG_NOSIGNAL) / receive exactly n: false on error or
 * end of stream. */
bool zl_test_send_all(int fd, const void *data, size_t n);
bool zl_test_recv_exact(int fd, void *dst, size_t n);
/* Read and discard until end of stream: 0, or the errno (EAGAIN: the
 * receive timeout passed).  *discarded (may be NULL) counts the bytes. */
int zl_test_read_end(int fd, size_t *discarded);
/* A port on 127.0.0.1 where nothing listens (bound, then released). */
uint16_t zl_test_closed_port(void);

#endif
