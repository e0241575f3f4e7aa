/* The leader renewal's wait for the caller-side etcd connection (src/dcs/etcd3.c): another thread (the
 * watch rebuilding its cache) may hold it; the wait must not eat the time the renewal's own requests
 * have (retry_timeout). No etcd runs: the endpoint refuses connections, so each request uses all the
 * time it is given. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dcs/dcs.h"
#include "dcs/etcd3_int.h"

static Dcs *refusing_dcs(PghaConfig *cfg) {
    load_config(cfg, "node1", NULL);
    char *err = NULL;
    Dcs *d = dcs_new(cfg, &err);
    assert_non_null(d);
    /* port 1 on the loopback: nothing listens, connections are refused at once */
    strlist_clear(&d->configured);
    strlist_clear(&d->endpoints);
    strlist_add(&d->configured, "http://127.0.0.1:1");
    strlist_add(&d->endpoints, "http://127.0.0.1:1");
    dcs_set_timings(d, 30, 10, 2);
    return d;
}

typedef struct Holder {
    Dcs *d;
    long hold_ms;
    usec_t released;
    bool locked;
} Holder;

static void *hold_req_lock(void *arg) {
    Holder *h = arg;
    pthread_mutex_lock(&h->d->req_lock);
    __atomic_store_n(&h->locked, true, __ATOMIC_SEQ_CST);
    struct timespec ts = {.tv_sec = h->hold_ms / 1000, .tv_nsec = (h->hold_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    h->released = now_monotonic();
    pthread_mutex_unlock(&h->d->req_lock);
    return NULL;
}

/* The watch holds the connection for 1.5 s of the 2 s retry_timeout: the renewal still gets its 2 s for
 * the keepalive and the txn once it has the connection (before: 0.5 s were left). */
static void test_lock_wait_does_not_eat_the_request_deadline(void **state) {
    (void)state;
    PghaConfig cfg = {0};
    Dcs *d = refusing_dcs(&cfg);
    Holder h = {.d = d, .hold_ms = 1500};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hold_req_lock, &h), 0);
    while (!__atomic_load_n(&h.locked, __ATOMIC_SEQ_CST))
        sched_yield();
    int r = dcs_update_leader(d, NULL);
    usec_t done = now_monotonic();
    pthread_join(t, NULL);
    assert_true(r < 0);
    usec_t after_lock = done - h.released;
    print_message("# the requests ran %lld ms after the connection was free\n", (long long)(after_lock / 1000));
    assert_true(after_lock >= 1800 * USEC_PER_MSEC);
    assert_true(after_lock < 4000 * USEC_PER_MSEC);
    dcs_free(d);
    config_free(&cfg);
}

/* A connection busy for longer than retry_timeout: the renewal gives up after waiting retry_timeout for
 * it (a monotonic wait: a step of the wall clock changes nothing). */
static void test_lock_wait_is_bounded(void **state) {
    (void)state;
    PghaConfig cfg = {0};
    Dcs *d = refusing_dcs(&cfg);
    Holder h = {.d = d, .hold_ms = 3000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hold_req_lock, &h), 0);
    while (!__atomic_load_n(&h.locked, __ATOMIC_SEQ_CST))
        sched_yield();
    usec_t t0 = now_monotonic();
    int r = dcs_update_leader(d, NULL);
    usec_t waited = now_monotonic() - t0;
    pthread_join(t, NULL);
    assert_int_equal(r, -ETIMEDOUT);
    assert_true(waited >= 1900 * USEC_PER_MSEC && waited < 2900 * USEC_PER_MSEC);
    assert_non_null(strstr(dcs_error(d), "busy"));
    dcs_free(d);
    config_free(&cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_wait_does_not_eat_the_request_deadline),
        cmocka_unit_test(test_lock_wait_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
