/* A planned switchover on the leader (spec §4.7, issue "planned operations that keep the lease"): the
 * leader steps down without letting its lease lapse. A CHECKPOINT runs first in a worker thread (so that
 * the shutdown checkpoint is short), then PostgreSQL is asked to stop (fast) and watched; the HA loop keeps
 * renewing the leader key all along (decide() sees the long action "switchover"). Only once PostgreSQL has
 * stopped — its shutdown checkpoint streamed to the replicas — is /status written with that checkpoint and the
 * leader key deleted, so that the candidate, woken by the watch, promotes at once and the old primary can
 * follow it without pg_rewind. Patroni 4.0 does the CHECKPOINT and the stop on its HA thread and renews
 * nothing meanwhile: a slow stop lets the candidate promote while the old primary still ships WAL. */
#include <errno.h>
#include <string.h>

#include "agent/ha_int.h"

static void *checkpoint_main(void *arg) {
    Ha *h = arg;
    char *err = NULL;
    PGconn *c = pg_instance_connect_db(&h->pg.inst, NULL, "pgha switchover checkpoint", &err);
    if (c) {
        /* no statement timeout: the loop stops waiting after pg_ctl_timeout and stops PostgreSQL anyway */
        (void)pg_checkpoint(c, 0, &err);
        PQfinish(c);
    }
    h->stepdown.checkpoint_error = err;
    atomic_store(&h->stepdown.checkpoint_done, true);
    ha_wake(h);
    return NULL;
}

/* The checkpoint thread has ended: collect it (wait = block until it ends). */
static void join_checkpoint(Ha *h, bool wait) {
    HaStepdown *s = &h->stepdown;
    if (!s->thread_running || (!wait && !atomic_load(&s->checkpoint_done)))
        return;
    pthread_join(s->thread, NULL);
    s->thread_running = false;
    if (s->checkpoint_error) {
        log_warning("CHECKPOINT before the switchover failed: %s", s->checkpoint_error);
        free(s->checkpoint_error);
        s->checkpoint_error = NULL;
    }
}

const char *stepdown_action(const Ha *h) { return h->stepdown.phase != STEPDOWN_IDLE ? "switchover" : NULL; }

void stepdown_begin(Ha *h, const char *candidate) {
    HaStepdown *s = &h->stepdown;
    if (s->phase != STEPDOWN_IDLE || s->thread_running)
        return;
    snprintf(s->candidate, sizeof s->candidate, "%s", candidate ? candidate : "");
    s->began = now_monotonic();
    atomic_store(&s->checkpoint_done, false);
    s->checkpoint_error = NULL;
    log_info("switchover: running a CHECKPOINT before stopping PostgreSQL%s%s", candidate ? "; candidate " : "",
             candidate ? candidate : "");
    if (pthread_create(&s->thread, NULL, checkpoint_main, h) == 0) {
        s->thread_running = true;
        s->phase = STEPDOWN_CHECKPOINT;
    } else {
        log_warning("cannot start the CHECKPOINT thread: %s; stopping PostgreSQL without it", strerror(errno));
        s->phase = STEPDOWN_STOPPING;
        if (stop_postgres_begin(h, PG_STOP_FAST, "switchover") < 0)
            s->phase = STEPDOWN_IDLE;
    }
}

void stepdown_abort(Ha *h) {
    HaStepdown *s = &h->stepdown;
    if (s->phase == STEPDOWN_IDLE)
        return;
    log_warning("the switchover was interrupted");
    s->phase = STEPDOWN_IDLE; /* the thread, if still running, is collected when it ends */
}

/* PostgreSQL stopped cleanly: hand over. */
static void hand_over(Ha *h) {
    HaStepdown *s = &h->stepdown;
    s->phase = STEPDOWN_IDLE;
    usec_t now = now_monotonic();
    if (!is_lock_holder(h) || h->view.lock_valid_until <= now) {
        /* the lease ran out meanwhile (etcd unreachable): nothing of ours to release */
        log_warning("switchover: PostgreSQL stopped, but the leader key is no longer ours");
        demote_finish(h, DEMOTE_GRACEFUL, false);
        return;
    }
    log_info("switchover: PostgreSQL stopped after %.1f s; releasing the leader key",
             (double)(now - s->began) / USEC_PER_SEC);
    demote_finish(h, DEMOTE_GRACEFUL, true);
    h->next_cycle = now_monotonic(); /* follow the new leader as soon as it holds the key */
}

bool stepdown_step(Ha *h) {
    HaStepdown *s = &h->stepdown;
    join_checkpoint(h, false);
    switch (s->phase) {
    case STEPDOWN_IDLE: return false;
    case STEPDOWN_CHECKPOINT: {
        usec_t limit = (usec_t)cfg_of(h)->postgresql.pg_ctl_timeout * USEC_PER_SEC;
        bool late = now_monotonic() - s->began > limit;
        if (s->thread_running && !late)
            return false;
        if (late)
            log_warning("switchover: the CHECKPOINT takes longer than pg_ctl_timeout; stopping PostgreSQL anyway");
        if (h->pg.inst.pid <= 0) {
            hand_over(h);
            return false;
        }
        s->phase = STEPDOWN_STOPPING;
        if (stop_postgres_begin(h, PG_STOP_FAST, "switchover") < 0) {
            s->phase = STEPDOWN_IDLE;
            log_error("switchover: PostgreSQL could not be stopped; keeping the leader key");
        }
        return false;
    }
    case STEPDOWN_STOPPING:
        if (h->pg.inst.pid > 0)
            return false; /* observe_pg escalates a stop that takes too long */
        hand_over(h);
        return true;
    }
    return false;
}

void stepdown_free(Ha *h) { join_checkpoint(h, true); }
