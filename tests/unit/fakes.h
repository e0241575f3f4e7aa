/* Link-seam fakes of the interfaces the HA executor uses: the DCS (fake_dcs.c), the local PostgreSQL's
 * statements and pg_control helpers (fake_pg.c), and the agent files around the executor (fake_agent.c:
 * local.c, publish.c, work.c, slots_exec.c), plus sleep() and usleep() so that nothing waits.
 *
 * A test executable compiles the REAL executor sources (execute.c, sync_exec.c, view.c and the pure
 * modules) together with these files instead of linking libpgha. Every fake appends one line to the
 * ordered event log `fake.events` ("name(arguments)") and returns the scripted result in `fake`, or,
 * when a hook is set, what the hook returns (the quorum model of test_sync.c keeps its own /sync and
 * synchronous_standby_names behind the hooks). */
#pragma once

#include <stdbool.h>

#include "agent/ha_int.h"

typedef struct FakeHooks {
    void *ud;
    /* dcs_set_sync_state() / dcs_delete_sync_state(): the DCS's /sync */
    int (*set_sync_state)(void *ud, const char *json, long long version, long long *ret_new_version);
    int (*delete_sync_state)(void *ud, long long version);
    /* write_configuration(): postgresql.conf written (1 changed, 0 unchanged, negative error) */
    int (*write_configuration)(void *ud, Ha *h, bool as_primary, const char *target);
    /* reload_postgres(): PostgreSQL reads postgresql.conf again */
    void (*reload_postgres)(void *ud, Ha *h);
    /* pg_current_flush_lsn() on the connection local_conn() gave */
    int (*current_flush_lsn)(void *ud, PGconn *c, long long *ret);
    /* dcs_read_cluster(): a fresh view (the caller frees it); unset: the read fails (-EIO) */
    Cluster *(*read_cluster)(void *ud);
} FakeHooks;

typedef struct Fake {
    StrList events; /* every call, in order */
    /* scripted results of the DCS (1 done, 0 lost compare-and-swap, negative errno) */
    int acquire;       /* dcs_attempt_to_acquire_leader */
    int update_leader; /* dcs_update_leader */
    int delete_leader;
    int get_raw;           /* dcs_get_raw: 1 found, 0 absent, negative error */
    const char *raw_value; /* ... and the value it returns */
    int initialize;
    int set_failover;
    int set_sync;           /* dcs_set_sync_state */
    long long sync_version; /* the new version it returns */
    int delete_sync;
    const char *dcs_error;  /* what dcs_error() says */
    usec_t lease_deadline;  /* the last dcs_set_lease_deadline() */
    usec_t lease_refreshed; /* dcs_lease_refreshed_at(): the lease's last keepalive (0: none) */
    bool fail_fast;         /* dcs_set_fail_fast() / dcs_suspend_fail_fast(): calls made in that mode are logged
                            * with " [fail-fast]" */
    /* scripted results of PostgreSQL */
    int start;               /* start_postgres */
    int stop;                /* stop_postgres */
    int promote;             /* promote_postgres */
    int write_configuration; /* 1 changed, 0 unchanged, negative error */
    int checkpoint;          /* pg_checkpoint */
    int flush_result;        /* pg_current_flush_lsn ... */
    long long flush_lsn;     /* ... and the LSN */
    bool have_controldata;   /* refresh_controldata(): h->pg.cd = cd when true */
    ControlData cd;
    pid_t started_pid;   /* the postmaster a successful start_postgres() attaches */
    PeerStatus peers[4]; /* probe_members(): what the other members answer */
    size_t n_peers;
    int identify; /* pg_instance_identify_system: 0 answers identify_tli, else the error */
    long long identify_tli;
    /* pg_remote_timeline: 0 answers remote_tli (and remote_history, a history file's text) or remote_in_recovery,
     * else the error */
    int remote;
    bool remote_in_recovery;
    long long remote_tli;
    const char *remote_history;
    const char *remote_sysid;
    /* observe_pg() during a stop: the n-th call (1-based; 0 never) finds pg_control saying "shut down",
     * and the postmaster gone */
    int observe_calls, observe_shut_down_at, observe_exit_at;
    bool rewind_unusable;     /* pg_rewind_usable() says no (the binary does not run) */
    long long checkpoint_end; /* pg_checkpoint_end(): where the checkpoint record ends (0: unknown) */
    bool failsafe_ok;         /* failsafe_check(): every member accepted POST /failsafe (if before the deadline) */
    long failsafe_delay_us;   /* ... after this long (a real wait) */
    FakeHooks hooks;
} Fake;

extern Fake fake;

/* Defaults: every call succeeds (1 / 0), nothing is hooked, the log is empty. */
void fake_reset(void);
/* Free the event log and whatever fake_reset() allocated. */
void fake_done(void);
void fake_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fake_events_clear(void);

/* Stand-ins the fakes never dereference. */
#define FAKE_DCS ((Dcs *)&fake)
#define FAKE_CONN ((PGconn *)&fake.hooks)
