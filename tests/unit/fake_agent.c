/* Fakes of the agent files around the executor (local.c, publish.c, work.c, slots_exec.c), of sleep()
 * and usleep(), and the event log all fakes write to. The state changes the executor relies on are
 * kept (a stop forgets the postmaster and its status, a start attaches one, a promotion marks it
 * promoting); everything else is only logged. */
#include "fakes.h"
#include "agent/probe.h"
#include "common/sdnotify.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

Fake fake;

void fake_event(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = xvasprintf(fmt, ap);
    va_end(ap);
    strlist_add(&fake.events, s);
    free(s);
}

void fake_events_clear(void) { strlist_clear(&fake.events); }

void fake_done(void) { fake_events_clear(); }

void fake_reset(void) {
    fake_done();
    fake = (Fake){
        .acquire = 1,
        .update_leader = 1,
        .delete_leader = 1,
        .get_raw = 1,
        .initialize = 1,
        .set_failover = 1,
        .set_sync = 1,
        .sync_version = 100,
        .delete_sync = 1,
        .dcs_error = "fake DCS error",
        .write_configuration = 1,
        .flush_lsn = 0x3000000,
        .started_pid = 4343,
    };
}

/* ---- sleep(), usleep(): the executor's waits, logged instead of waited ---- */

unsigned int sleep(unsigned int seconds) {
    fake_event("sleep(%u)", seconds);
    return 0;
}

int usleep(useconds_t usec) {
    fake_event("usleep(%u)", (unsigned)usec);
    return 0;
}

/* ---- local.c ---- */

static const char *stop_mode_name(PgStopMode m) {
    return m == PG_STOP_FAST ? "fast" : m == PG_STOP_IMMEDIATE ? "immediate" : "smart";
}

void set_state(Ha *h, const char *state) {
    fake_event("set_state(%s)", state);
    snprintf(h->pg.state, sizeof h->pg.state, "%s", state);
}

void set_role(Ha *h, const char *role) {
    fake_event("set_role(%s)", role);
    snprintf(h->pg.role, sizeof h->pg.role, "%s", role);
}

/* The agent's connection: the instance's (a test sets h->pg.inst.conn to FAKE_CONN), not a call. */
PGconn *local_conn(Ha *h) { return h->pg.inst.pid > 0 ? h->pg.inst.conn : NULL; }

void write_pgpass(Ha *h) {
    (void)h;
    fake_event("write_pgpass");
}

int write_configuration(Ha *h, bool as_primary, const char *target) {
    if (h->sync.ssn)
        fake_event("write_configuration(%s, %s, ssn='%s')", as_primary ? "primary" : "replica", target ? target : "-",
                   h->sync.ssn);
    else
        fake_event("write_configuration(%s, %s)", as_primary ? "primary" : "replica", target ? target : "-");
    int r = fake.write_configuration;
    if (fake.hooks.write_configuration)
        r = fake.hooks.write_configuration(fake.hooks.ud, h, as_primary, target);
    if (r >= 0) {
        char next[sizeof h->pg.following]; /* target may be h->pg.following itself */
        snprintf(next, sizeof next, "%s", as_primary || !target ? "" : target);
        memcpy(h->pg.following, next, sizeof next);
        h->pg.following_set = true;
    }
    return r;
}

void reload_postgres(Ha *h) {
    fake_event("reload_postgres");
    if (fake.hooks.reload_postgres)
        fake.hooks.reload_postgres(fake.hooks.ud, h);
}

void run_callback(Ha *h, const char *action, const char *role) {
    (void)h;
    fake_event("run_callback(%s, %s)", action, role);
}

int start_postgres(Ha *h, bool as_primary, const char *target) {
    fake_event("start_postgres(%s, %s)", as_primary ? "primary" : "replica", target ? target : "-");
    if (fake.start < 0)
        return fake.start;
    h->pg.inst.pid = fake.started_pid;
    h->pg.starting = true;
    h->pg.start_as_primary = as_primary;
    snprintf(h->pg.following, sizeof h->pg.following, "%s", as_primary || !target ? "" : target);
    return 0;
}

int stop_postgres(Ha *h, PgStopMode mode, const char *why) {
    (void)why;
    fake_event("stop_postgres(%s)", stop_mode_name(mode));
    if (fake.stop < 0)
        return fake.stop;
    /* as local_forget(): the postmaster and what was known about it are gone */
    h->pg.inst.pid = 0;
    cJSON_Delete(h->pg.st.replication);
    h->pg.st = (PgStatus){0};
    h->pg.starting = false;
    h->pg.promoting = false;
    return 0;
}

int stop_postgres_begin(Ha *h, PgStopMode mode, const char *why) {
    (void)why;
    fake_event("stop_postgres_begin(%s)", stop_mode_name(mode));
    if (fake.stop < 0)
        return fake.stop;
    h->pg.stopping = true;
    h->pg.stop_mode = mode;
    h->pg.expect_stop = true;
    cJSON_Delete(h->pg.st.replication);
    h->pg.st = (PgStatus){0};
    return 0;
}

void local_set_quiet(Ha *h, bool quiet) { h->pg.quiet = quiet; }

void local_set_start_timeout(Ha *h, long long s) { h->pg.start_timeout = s; }

void local_set_stop_patience(Ha *h, bool patient) { h->pg.stop_patient = patient; }

int promote_postgres(Ha *h) {
    fake_event("promote_postgres");
    if (fake.promote < 0)
        return fake.promote;
    h->pg.promoting = true;
    return 0;
}

void observe_pg(Ha *h, LocalState *l) {
    *l = (LocalState){0};
    fake.observe_calls++;
    if (fake.observe_calls == fake.observe_shut_down_at)
        snprintf(fake.cd.state, sizeof fake.cd.state, "shut down");
    if (fake.observe_exit_at && fake.observe_calls >= fake.observe_exit_at && h->pg.inst.pid > 0) {
        fake_event("postmaster exited");
        h->pg.inst.pid = 0;
        h->pg.stopping = false;
    }
    l->pg_running = h->pg.inst.pid > 0;
}

void refresh_controldata(Ha *h) {
    fake_event("refresh_controldata");
    h->pg.have_controldata = fake.have_controldata;
    if (fake.have_controldata)
        h->pg.cd = fake.cd;
}

/* ---- publish.c ---- */

void touch_member(Ha *h) {
    (void)h;
    fake_event("touch_member");
}

void publish(Ha *h) {
    (void)h;
    fake_event("publish");
}

void publish_stopping(Ha *h) {
    (void)h;
    fake_event("publish_stopping");
}

void update_status(Ha *h) {
    (void)h;
    fake_event("update_status");
}

void update_history(Ha *h) {
    (void)h;
    fake_event("update_history");
}

void write_status_optime_only(Ha *h, long long optime) {
    (void)h;
    fake_event("write_status_optime_only(%lld)", optime);
}

/* ---- work.c ---- */

void task_start(Ha *h, TaskKind kind, const char *host, int port, bool crash_recovery) {
    static const char *const names[] = {[TASK_NONE] = "none",
                                        [TASK_BOOTSTRAP] = "bootstrap",
                                        [TASK_CLONE] = "clone",
                                        [TASK_REWIND] = "rewind",
                                        [TASK_REINIT] = "reinitialize"};
    fake_event("task_start(%s, %s:%d%s)", names[kind], host ? host : "-", port,
               crash_recovery ? ", crash recovery" : "");
    h->work.task.kind = kind;
}

void task_start_rewind(Ha *h, TaskKind kind, const char *host, int port, bool crash_recovery, long long source_tli) {
    task_start(h, kind, host, port, crash_recovery);
    if (source_tli)
        fake_event("  source timeline %lld", source_tli);
}

const char *task_name(TaskKind k) {
    switch (k) {
    case TASK_BOOTSTRAP: return "bootstrap";
    case TASK_CLONE: return "clone";
    case TASK_REWIND: return "rewind";
    case TASK_REINIT: return "reinitialize";
    default: return NULL;
    }
}

void task_stop(Ha *h) {
    fake_event("task_stop");
    h->work.task.kind = TASK_NONE;
}

void bootstrap_begin(Ha *h) {
    h->work.bootstrap_pending = true;
    task_start(h, TASK_BOOTSTRAP, NULL, 0, false);
}

void standby_bootstrap_begin(Ha *h) {
    h->work.bootstrap_pending = true;
    h->work.standby_bootstrap = true;
    task_start(h, TASK_CLONE, dyn_standby_str(dyn_of(h), "host"), 5432, false);
}

void local_mark_diverged(Ha *h) { h->pg.diverged = true; }

void local_divergence_reported(Ha *h) { h->pg.diverged_reported = true; }

void remove_data_directory(Ha *h) {
    fake_event("remove_data_directory");
    h->pg.sysid[0] = '\0';
}

/* ---- slots_exec.c (test_slots_exec runs the real one) ---- */

#ifndef FAKE_REAL_SLOTS_EXEC
void slots_sync(Ha *h) {
    (void)h;
    fake_event("slots_sync");
}
#endif

/* ---- ha.c ---- */

/* failsafe.c: the POST /failsafe round as scripted (fake.failsafe_ok), the key writes logged */
void failsafe_remember_key(Ha *h) { (void)h; }

bool failsafe_check(Ha *h, usec_t deadline) {
    h->failsafe.round_sent = now_monotonic();
    fake_event("failsafe_check(%s)", deadline > h->failsafe.round_sent ? "in time" : "past the fence point");
    if (fake.failsafe_delay_us > 0) {
        struct timespec ts = {.tv_sec = fake.failsafe_delay_us / 1000000,
                              .tv_nsec = fake.failsafe_delay_us % 1000000 * 1000};
        nanosleep(&ts, NULL);
    }
    return fake.failsafe_ok && deadline > now_monotonic(); /* an answer after the deadline counts for nothing */
}

void failsafe_update_key(Ha *h) {
    (void)h;
    fake_event("failsafe_update_key");
}

void ha_wake(void *ud) { (void)ud; /* called from worker threads: no event */ }

void local_data_replaced(Ha *h) {
    fake_event("local_data_replaced");
    h->pg.diverged = h->pg.diverged_reported = h->pg.rewind_failed = false;
}

/* ---- probe.c ---- */

PeerStatus *probe_members(const Cluster *c, const Cluster *also, const char *me, const PghaConfig *cfg, long timeout_ms,
                          size_t *ret_n) {
    (void)c;
    (void)also;
    (void)me;
    (void)cfg;
    (void)timeout_ms;
    fake_event("probe_members");
    PeerStatus *p = xcalloc(fake.n_peers + 1, sizeof *p);
    memcpy(p, fake.peers, fake.n_peers * sizeof *p);
    *ret_n = fake.n_peers;
    return p;
}

/* ---- common/sdnotify.c: the systemd watchdog's promise, not kept by the tests ---- */

void sdn_watchdog_extend(usec_t deadline) { (void)deadline; }
