/* The HA loop's side of the REST commands (commands_exec.c) against the fake DCS: one command per pass,
 * only when the next cycle is far enough away (its DCS calls are bounded by it), the loop re-woken when
 * more wait, a reload without the DCS, a cluster that cannot be read closes the connection. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "unit_helpers.h"
// clang-format on
#include <errno.h>
#include <string.h>

#include "fakes.h"

static int wakes;

/* ha.c's: the loop's command wake-up */
void ha_commands_wake(void *ud) {
    (void)ud;
    wakes++;
}

typedef struct T {
    Agent a;
    Ha h;
} T;

static void t_init(T *t) {
    fake_reset();
    *t = (T){0};
    load_config(&t->a.cfg, "node2", NULL);
    t->h.a = &t->a;
    t->h.dcs = FAKE_DCS;
    t->h.wake_fd = t->h.cmd_fd = -1;
    t->h.pg.inst.pidfd = -1;
    load_dyn(&t->h.view.dyn, NULL);
    t->h.view.dyn_loaded = true;
    t->h.commands = command_queue_new(ha_commands_wake, &t->h);
    wakes = 0;
}

static void t_done(T *t) {
    command_queue_free(t->h.commands);
    view_free(&t->h.view);
    config_free(&t->a.cfg);
    fake_done();
}

static size_t count_events(const char *prefix) {
    size_t n = 0;
    for (size_t i = 0; i < fake.events.n; i++)
        n += strncmp(fake.events.v[i], prefix, strlen(prefix)) == 0;
    return n;
}

static void test_one_per_pass_and_budget(void **state) {
    (void)state;
    T t;
    t_init(&t);
    Command *a = command_new(CMD_DELETE_SWITCHOVER), *b = command_new(CMD_PATCH_CONFIG);
    assert_int_equal(command_enqueue(t.h.commands, a), 0);
    assert_int_equal(command_enqueue(t.h.commands, b), 0);
    assert_int_equal(wakes, 2);
    /* the next cycle is due in 0.5 s: nothing runs, nothing is read */
    t.h.next_cycle = now_monotonic() + 500 * USEC_PER_MSEC;
    commands_run(&t.h);
    assert_int_equal(command_queue_length(t.h.commands), 2);
    assert_int_equal(count_events("dcs_read_cluster"), 0);
    /* 10 s away: one command per pass, the loop woken again for the other */
    t.h.next_cycle = now_monotonic() + 10 * USEC_PER_SEC;
    wakes = 0;
    commands_run(&t.h);
    assert_int_equal(command_queue_length(t.h.commands), 1);
    assert_int_equal(count_events("dcs_read_cluster"), 1);
    assert_int_equal(wakes, 1);
    /* the fake cannot read the cluster: Patroni closes the connection (code < 0) */
    assert_true(a->code < 0);
    assert_null(a->result);
    commands_run(&t.h);
    assert_int_equal(command_queue_length(t.h.commands), 0);
    assert_int_equal(wakes, 1); /* nothing left: not woken again */
    assert_true(b->code < 0);
    command_unref(a);
    command_unref(b);
    t_done(&t);
}

/* loop_wait 1: every cycle leaves less than the budget; right after a cycle one command runs anyway and the
 * next cycle waits for it (the commands were starved for good: PATCH /config never answered) */
static void test_short_loop_wait_does_not_starve(void **state) {
    (void)state;
    T t;
    t_init(&t);
    Command *a = command_new(CMD_DELETE_SWITCHOVER);
    assert_int_equal(command_enqueue(t.h.commands, a), 0);
    usec_t due = now_monotonic() + 300 * USEC_PER_MSEC;
    t.h.next_cycle = due;
    commands_run(&t.h); /* between cycles: not with 0.3 s left */
    assert_int_equal(command_queue_length(t.h.commands), 1);
    commands_run_after_cycle(&t.h);
    assert_int_equal(command_queue_length(t.h.commands), 0);
    assert_int_equal(count_events("dcs_read_cluster"), 1);
    assert_true(t.h.next_cycle > due);
    assert_true(t.h.next_cycle <= now_monotonic() + USEC_PER_SEC);
    /* nothing queued: the cycle is not moved */
    t.h.next_cycle = due;
    commands_run_after_cycle(&t.h);
    assert_true(t.h.next_cycle == due);
    /* a cycle due at once (after TILT, a hand-over, an overrun): it comes first, the command waits */
    Command *b = command_new(CMD_DELETE_SWITCHOVER);
    assert_int_equal(command_enqueue(t.h.commands, b), 0);
    usec_t at_once = now_monotonic();
    t.h.next_cycle = at_once;
    commands_run_after_cycle(&t.h);
    assert_int_equal(command_queue_length(t.h.commands), 1);
    assert_true(t.h.next_cycle == at_once);
    command_unref(b);
    command_unref(a);
    t_done(&t);
}

static void test_reload(void **state) {
    (void)state;
    T t;
    t_init(&t);
    Command *c = command_new(CMD_RELOAD);
    assert_int_equal(command_enqueue(t.h.commands, c), 0);
    t.h.next_cycle = now_monotonic() + 10 * USEC_PER_SEC;
    commands_run(&t.h);
    assert_int_equal(c->code, 202);
    assert_true(t.h.reload_pending);
    assert_int_equal(count_events("dcs_"), 0);
    command_unref(c);
    t_done(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_per_pass_and_budget),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_short_loop_wait_does_not_starve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
