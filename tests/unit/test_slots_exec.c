/* slots_sync() (src/agent/slots_exec.c) on the lock holder against fakes of the slot statements: the
 * time its statements may take together in one cycle. The executor's fakes (fakes.h) stand in for the
 * agent files around it; the slot statements of src/pg are faked here. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fakes.h"

#define BASE "/service/demo"
#define MEMBER(host, role)                                                                                        \
    "{\"conn_url\":\"postgres://" host ":5432/postgres\",\"api_url\":\"http://" host ":8008/patroni\",\"state\":" \
    "\"running\",\"role\":\"" role "\",\"version\":\"4.0.6\",\"xlog_location\":5000,\"timeline\":1}"

/* ---- the slot statements: each create takes `statement_ms` of real time and records its timeout ---- */

static int statement_ms;
static int timeouts[16];
static size_t n_creates;

static void sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int pg_slots_read(PGconn *c, int timeout_ms, PgSlot **ret, size_t *ret_n, char **ret_error) {
    (void)c, (void)timeout_ms, (void)ret_error;
    *ret = NULL;
    *ret_n = 0;
    return 0;
}
void pg_slots_free(PgSlot *slots, size_t n) { (void)slots, (void)n; }
int pg_slot_create_physical(PGconn *c, const char *name, int timeout_ms, char **ret_error) {
    (void)c, (void)ret_error;
    fake_event("create_physical(%s)", name);
    if (n_creates < ELEMENTSOF(timeouts))
        timeouts[n_creates++] = timeout_ms;
    sleep_ms(statement_ms);
    return 1;
}
int pg_slot_drop(PGconn *c, const char *name, int timeout_ms, char **ret_error) {
    (void)c, (void)name, (void)timeout_ms, (void)ret_error;
    return 1;
}
int pg_slot_create_logical(PGconn *c, const char *name, const char *plugin, int timeout_ms, char **ret_error) {
    (void)c, (void)name, (void)plugin, (void)timeout_ms, (void)ret_error;
    return 1;
}
int pg_slot_advance(PGconn *c, const char *name, long long lsn, int timeout_ms, char **ret_error) {
    (void)c, (void)name, (void)lsn, (void)timeout_ms, (void)ret_error;
    return 0;
}
int pg_slot_copy_settings(PGconn *c, PgSlotCopySettings *ret, char **ret_error) {
    (void)c, (void)ret, (void)ret_error;
    return -EIO;
}
int pg_slot_states_read(PGconn *c, const StrList *names, PgSlotState **ret, size_t *ret_n, char **ret_error) {
    (void)c, (void)names, (void)ret, (void)ret_n, (void)ret_error;
    return -EIO;
}
void pg_slot_states_free(PgSlotState *s, size_t n) { (void)s, (void)n; }
int pg_slot_catalog_xmins(PGconn *c, const StrList *names, StrList *ret_names, long long **ret_xmins,
                          char **ret_error) {
    (void)c, (void)names, (void)ret_names, (void)ret_xmins, (void)ret_error;
    return -EIO;
}
int pg_write_slot_state(const char *data_dir, const char *name, const unsigned char *data, size_t len,
                        char **ret_error) {
    (void)data_dir, (void)name, (void)data, (void)len, (void)ret_error;
    return -EIO;
}
long long pg_oldest_wal_lsn(const char *data_dir, long long seg_size) {
    (void)data_dir, (void)seg_size;
    return 0;
}
int pg_setting_bool(PGconn *c, const char *name, bool *ret, char **ret_error) {
    (void)c, (void)name, (void)ret_error;
    *ret = false;
    return 0;
}
PGconn *pg_connect(const PgConnParams *p, char **ret_error) {
    (void)p, (void)ret_error;
    return NULL;
}
void pg_instance_close_conn(PgInstance *pg) { pg->conn = NULL; }
ConnStatusType PQstatus(const PGconn *c) {
    (void)c;
    return CONNECTION_OK;
}

/* ---- the test ---- */

/* node2 leads a cluster of five: four member slots to create. The lease leaves 1.05 s for slot work this
 * cycle (after retry_timeout and loop_wait); each create takes 0.3 s. The statements share the 1.05 s:
 * the first may use all of it, the next what is left, and once less than 0.2 s is left the rest waits
 * for the next cycle (a budget per statement would give each 1.05 s, and run all four). */
static void test_leader_slot_budget_is_per_cycle(void **state) {
    (void)state;
    fake_reset();
    Agent a = {0};
    Ha h = {0};
    load_config(&a.cfg, "node2", NULL);
    h.a = &a;
    h.dcs = FAKE_DCS;
    h.wake_fd = -1;
    h.pg.inst.pidfd = -1;
    h.pg.inst.major = 16;
    h.pg.inst.pid = 4242;
    h.pg.inst.conn = FAKE_CONN;
    h.pg.st.ok = true;
    h.pg.st.server_version = 160004;
    load_dyn(&h.view.dyn, NULL);
    h.view.dyn_loaded = true;
    const Kv keys[] = {
        {"config", "{}"},
        {"leader", "node2"},
        {"members/node1", MEMBER("10.0.0.1", "replica")},
        {"members/node2", MEMBER("10.0.0.2", "primary")},
        {"members/node3", MEMBER("10.0.0.3", "replica")},
        {"members/node4", MEMBER("10.0.0.4", "replica")},
        {"members/node5", MEMBER("10.0.0.5", "replica")},
    };
    h.view.cluster = cluster_of_keys(keys, ELEMENTSOF(keys), BASE, 10);
    usec_t reserve = (usec_t)(dyn_of(&h)->retry_timeout + loop_wait_s(&h)) * USEC_PER_SEC;
    statement_ms = 300;
    n_creates = 0;
    h.view.lock_valid_until = now_monotonic() + reserve + 1050 * USEC_PER_MSEC;

    slots_sync(&h);

    assert_int_equal(n_creates, 3); /* 1.05 s, then about 0.75 s and 0.45 s left; 0.15 s for the fourth */
    assert_in_range(timeouts[0], 950, 1050);
    assert_in_range(timeouts[1], 550, 760);
    assert_in_range(timeouts[2], 250, 460);

    /* the next cycle, with a fresh lease, creates the rest */
    h.slots.synced = false;
    n_creates = 0;
    statement_ms = 0;
    h.view.lock_valid_until = now_monotonic() + reserve + 1000 * USEC_PER_MSEC;
    slots_sync(&h);
    assert_int_equal(n_creates, 4); /* the fakes' pg_replication_slots is still empty */

    slots_free(&h.slots);
    view_free(&h.view);
    config_free(&a.cfg);
    fake_done();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leader_slot_budget_is_per_cycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
