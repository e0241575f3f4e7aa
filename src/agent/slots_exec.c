/* Replication slots on this node (spec §4.11): the plan is slots.c's, the statements src/pg's; this
 * file runs the plan every cycle, copies permanent logical slots to replicas and checks that the
 * copies are safe to use after a failover. */
#include "agent/ha_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void slot_rows_clear(Ha *h) {
    pg_slots_free(h->slots.rows, h->slots.n_rows);
    h->slots.rows = NULL;
    h->slots.n_rows = 0;
    h->slots.rows_ok = false;
}

/* One query of pg_replication_slots; the rows stay in h until the next one. */
static int load_slot_rows(Ha *h, PGconn *c) {
    slot_rows_clear(h);
    char *err = NULL;
    if (pg_slots_read(c, h->slots.timeout_ms, &h->slots.rows, &h->slots.n_rows, &err) < 0) {
        log_error("Failed to read replication slots: %s", err);
        free(err);
        return -EIO;
    }
    h->slots.rows_ok = true;
    return 0;
}

void slots_input(Ha *h, SlotsInput *in) {
    const PghaConfig *cfg = cfg_of(h);
    const DynConfig *dyn = dyn_of(h);
    bool standby_cluster = dyn_is_standby_cluster(dyn);
    SlotRole role = !h->pg.st.in_recovery                  ? SLOT_ROLE_PRIMARY
                    : standby_cluster && is_lock_holder(h) ? SLOT_ROLE_STANDBY_LEADER
                                                           : SLOT_ROLE_REPLICA;
    long long v = h->pg.st.server_version;
    *in = (SlotsInput){.cluster = h->view.cluster,
                       .dyn = dyn,
                       .name = cfg->name,
                       .role = role,
                       .pg_major = (int)(v >= 100000 ? v / 10000 : v / 100),
                       .nofailover = cfg->tags.nofailover,
                       .nostream = cfg->tags.nostream,
                       .replicatefrom = cfg->tags.replicatefrom,
                       .paused = dyn->pause,
                       .slots = h->slots.rows,
                       .n_slots = h->slots.n_rows,
                       .replay_lsn = h->pg.st.replay_lsn,
                       .recopy = &h->slots.recopy};
}

/* A connection to the slot's database on the local server. */
static PGconn *db_conn(Ha *h, const char *dbname, char **err) {
    return pg_instance_connect_db(&h->pg.inst, dbname, NULL, err);
}

/* Drop a slot unless it is active. Returns 1 dropped, 0 active (kept), negative on error. */
static int drop_slot(Ha *h, PGconn *c, const char *name) {
    char *err = NULL;
    int ret = pg_slot_drop(c, name, h->slots.timeout_ms, &err);
    if (ret == 1)
        log_info("Dropped replication slot '%s'", name);
    else if (ret == 0)
        log_warning("Unable to drop replication slot '%s', slot is active", name);
    else
        log_error("Failed to drop replication slot '%s': %s", name, err);
    free(err);
    return ret;
}

static void run_slot_action(Ha *h, PGconn *c, const SlotAction *a, StrList *failed_drops) {
    char *err = NULL;
    int r;
    switch (a->kind) {
    case SLOT_ACT_DROP:
        switch (a->reason) {
        case SLOT_DROP_UNKNOWN: log_info("Trying to drop unknown replication slot '%s'", a->name); break;
        case SLOT_DROP_MISMATCH: log_info("Trying to drop replication slot '%s' because %s", a->name, a->detail); break;
        case SLOT_DROP_XMIN:
        case SLOT_DROP_NO_RESTART_LSN:
        case SLOT_DROP_LOST: log_warning("Dropping physical replication slot %s because %s", a->name, a->detail); break;
        }
        if (drop_slot(h, c, a->name) != 1)
            strlist_add(failed_drops, a->name);
        return;
    case SLOT_ACT_CREATE_PHYSICAL:
        if (strlist_contains(failed_drops, a->name))
            return;
        r = pg_slot_create_physical(c, a->name, h->slots.timeout_ms, &err);
        if (r < 0)
            log_error("Failed to create physical replication slot '%s': %s", a->name, err);
        else if (r > 0)
            log_info("Created physical replication slot '%s'", a->name);
        break;
    case SLOT_ACT_CREATE_LOGICAL: {
        if (strlist_contains(failed_drops, a->name))
            return;
        /* creating a logical slot waits for running transactions: bounded, retried next cycle */
        PGconn *dc = db_conn(h, a->database, &err);
        r = dc ? pg_slot_create_logical(dc, a->name, a->plugin, h->slots.timeout_ms, &err) : -EIO;
        if (dc)
            PQfinish(dc);
        if (r < 0)
            log_error("Failed to create logical replication slot '%s' plugin='%s': %s", a->name, a->plugin, err);
        else if (r > 0)
            log_info("Created logical replication slot '%s' (plugin '%s', database '%s')", a->name, a->plugin,
                     a->database);
        break;
    }
    case SLOT_ACT_ADVANCE:
        if (a->logical) {
            PGconn *dc = db_conn(h, a->database, &err);
            r = dc ? pg_slot_advance(dc, a->name, a->lsn, h->slots.timeout_ms, &err) : -EIO;
            if (dc)
                PQfinish(dc);
            if (r < 0) {
                log_error("Failed to advance logical replication slot '%s': %s", a->name, err);
                /* its WAL is gone here, or it was invalidated: copy it again from the primary */
                if (err && (strstr(err, "SQLSTATE 58P01") || strstr(err, "SQLSTATE 55000")) &&
                    !strlist_contains(&h->slots.recopy, a->name))
                    strlist_add(&h->slots.recopy, a->name);
            }
        } else if (pg_slot_advance(c, a->name, a->lsn, h->slots.timeout_ms, &err) < 0) {
            char lsn[32];
            pg_format_lsn(a->lsn, lsn, sizeof lsn);
            log_error("Error while advancing replication slot %s to position '%s': %s", a->name, lsn, err);
        }
        break;
    }
    free(err);
}

/* A connection to the leader's PostgreSQL with the rewind credentials (they may read files of its
 * data directory; they default to the superuser's), as Patroni's _get_leader_connection_cursor. */
static PGconn *leader_conn(Ha *h, char **err) {
    const Leader *l = h->view.cluster ? h->view.cluster->leader : NULL;
    const Member *m = l ? (l->member ? l->member : member_by_name(h, l->name)) : NULL;
    char host[256];
    int port;
    if (!m || !member_host_port(m, host, sizeof host, &port)) {
        *err = xstrdup("the leader's connection address is unknown");
        return NULL;
    }
    const PghaConfig *cfg = cfg_of(h);
    PgConnParams p = {.host = host,
                      .port = port,
                      .user = cfg->postgresql.rewind.username,
                      .password = cfg->postgresql.rewind.password,
                      .dbname = cfg->postgresql.database,
                      .application_name = "Patroni",
                      .connect_timeout = 3,
                      .ssl = &cfg->postgresql.rewind};
    return pg_connect(&p, err);
}

/* Copy notes are logged once per key (what and which slot) until there is nothing left to copy. */
static void copy_note(Ha *h, LogLevel level, const char *key, const char *msg) {
    if (strlist_contains(&h->slots.copy_logged, key))
        return;
    strlist_add(&h->slots.copy_logged, key);
    log_msg(level, __FILE__, __LINE__, __func__, "%s", msg);
}

static ssize_t unready_find(Ha *h, const char *name) {
    for (size_t i = 0; i < h->slots.n_unready; i++)
        if (streq(h->slots.unready[i].name, name))
            return (ssize_t)i;
    return -1;
}

static void unready_add(Ha *h, const char *name) {
    if (unready_find(h, name) >= 0)
        return;
    h->slots.unready = xrealloc(h->slots.unready, (h->slots.n_unready + 1) * sizeof *h->slots.unready);
    h->slots.unready[h->slots.n_unready++] = (PendingSlot){.name = xstrdup(name)};
}

static void unready_remove(Ha *h, size_t i) {
    free(h->slots.unready[i].name);
    memmove(&h->slots.unready[i], &h->slots.unready[i + 1], (h->slots.n_unready - i - 1) * sizeof *h->slots.unready);
    h->slots.n_unready--;
}

static void unready_clear(Ha *h) {
    while (h->slots.n_unready)
        unready_remove(h, h->slots.n_unready - 1);
    free(h->slots.unready);
    h->slots.unready = NULL;
}

/* On promotion (Patroni's on_promote): copies not known to be safe are reported; the queues reset. */
void slots_on_promote(Ha *h) {
    if (h->slots.n_unready) {
        StrList names = {0};
        for (size_t i = 0; i < h->slots.n_unready; i++)
            strlist_add(&names, h->slots.unready[i].name);
        _cleanup_free_ char *j = strlist_join(&names, "', '");
        log_warning("Logical replication slots that might be unsafe to use after promote: {'%s'}", j);
        strlist_clear(&names);
    }
    unready_clear(h);
    strlist_clear(&h->slots.recopy);
    strlist_clear(&h->slots.copy_logged);
}

static const PgSlot *local_slot(Ha *h, const char *name) {
    for (size_t i = 0; i < h->slots.n_rows; i++)
        if (streq(h->slots.rows[i].name, name))
            return &h->slots.rows[i];
    return NULL;
}

/* Patroni's check_logical_slots_readiness(): the catalog_xmin of our physical slot on the primary
 * (fed by hot_standby_feedback) against those of the logical slots there and here. */
static void check_logical_slots_readiness(Ha *h, const SlotsInput *in) {
    for (size_t i = 0; i < h->slots.n_unready;) {
        const PgSlot *r = local_slot(h, h->slots.unready[i].name);
        if (!r || !r->logical)
            unready_remove(h, i); /* gone here: nothing to check */
        else
            i++;
    }
    if (!h->slots.n_unready || !h->view.cluster || !h->view.cluster->leader || is_lock_holder(h) ||
        !h->pg.st.in_recovery)
        return;
    _cleanup_free_ char *phys = slots_name_on_primary(in);
    if (!phys)
        return;
    char *err = NULL;
    PGconn *lc = leader_conn(h, &err);
    if (!lc) {
        log_error("Failed to check %s physical slot on the primary: %s", phys, err);
        free(err);
        return;
    }
    StrList names = {0};
    for (size_t i = 0; i < h->slots.n_unready; i++)
        if (!h->slots.unready[i].primary_xmin)
            strlist_add(&names, h->slots.unready[i].name);
    strlist_add(&names, phys);
    StrList found = {0};
    long long *xmins = NULL;
    int r = pg_slot_catalog_xmins(lc, &names, &found, &xmins, &err);
    strlist_clear(&names);
    PQfinish(lc);
    if (r < 0) {
        log_error("Failed to check %s physical slot on the primary: %s", phys, err);
        free(err);
        return;
    }
    long long phys_xmin = -1;
    for (size_t i = 0; i < found.n; i++)
        if (streq(found.v[i], phys))
            phys_xmin = xmins[i];
    if (phys_xmin < 0) {
        log_warning("Physical slot %s does not exist on the primary", phys);
    } else if (phys_xmin == 0) {
        /* not streaming through it yet, or hot_standby_feedback is off */
        PGconn *c = local_conn(h);
        bool hsf = true;
        int hr = c ? pg_setting_bool(c, "hot_standby_feedback", &hsf, &err) : 0;
        if (hr == 0 && c && !hsf)
            log_error("Logical slot failover requires \"hot_standby_feedback\". Please check postgresql.auto.conf");
        else if (hr < 0)
            log_error("Failed to check the hot_standby_feedback setting: %s", err);
        free(err);
    } else {
        /* remember the primary's logical catalog_xmin when the physical one became valid */
        for (size_t i = 0; i < found.n; i++) {
            ssize_t k = unready_find(h, found.v[i]);
            if (k >= 0 && !h->slots.unready[k].primary_xmin)
                h->slots.unready[k].primary_xmin = xmins[i];
        }
        for (size_t i = 0; i < h->slots.n_unready;) {
            const PendingSlot *ps = &h->slots.unready[i];
            const PgSlot *ls = local_slot(h, ps->name);
            if (ls && slot_copy_safe(ps->primary_xmin, phys_xmin, ls->catalog_xmin)) {
                log_info("Logical slot %s is safe to be used after a failover", ps->name);
                unready_remove(h, i);
            } else {
                i++;
            }
        }
    }
    strlist_clear(&found);
    free(xmins);
}

typedef struct SlotCopy {
    char *name;
    unsigned char *state;
    size_t len;
    long long restart_lsn; /* on the primary: the copy needs the WAL from there on */
} SlotCopy;

/* Patroni's copy_logical_slots(): read the slots' state files on the primary, stop PostgreSQL, write
 * them, start it again (PostgreSQL loads slots only at start-up). Only on a streaming replica that
 * has replayed past the slot's position on the primary, with wal_level logical and
 * hot_standby_feedback on. Runs last in slots_sync(): the local connection is gone afterwards. */
static void copy_logical_slots(Ha *h, const SlotsPlan *plan) {
    if (!plan->copy.n) {
        strlist_clear(&h->slots.copy_logged);
        return;
    }
    const Leader *l = h->view.cluster ? h->view.cluster->leader : NULL;
    if (!l || is_lock_holder(h) || !h->pg.st.in_recovery || now_monotonic() < h->slots.copy_after)
        return;
    _cleanup_free_ char *list = strlist_join(&plan->copy, "', '");
    if (dyn_of(h)->pause) {
        _cleanup_free_ char *m = xasprintf("Not copying logical slots ['%s'] from the primary: maintenance mode "
                                           "(copying restarts PostgreSQL)",
                                           list);
        copy_note(h, LOG_INFO, "pause", m);
        return;
    }
    if (!h->pg.st.streaming) {
        _cleanup_free_ char *m = xasprintf(
            "Not copying logical slots ['%s'] from the primary yet: this replica is not streaming", list);
        copy_note(h, LOG_INFO, "streaming", m);
        return;
    }
    char *err = NULL;
    PGconn *c = local_conn(h);
    PgSlotCopySettings set;
    if (!c || pg_slot_copy_settings(c, &set, &err) < 0) {
        log_error("Failed to read the settings for copying logical slots: %s", err ? err : "no connection");
        free(err);
        return;
    }
    SlotCopyLocal loc = {.replay_lsn = h->pg.st.replay_lsn,
                         .wal_level_logical = set.wal_level_logical,
                         .hot_standby_feedback = set.hot_standby_feedback,
                         .free_slots = set.free_slots};
    const char *data_dir = cfg_of(h)->postgresql.data_dir;
    loc.oldest_wal_lsn = pg_oldest_wal_lsn(data_dir, set.wal_segment_size);
    PGconn *lc = leader_conn(h, &err);
    if (!lc) {
        _cleanup_free_ char *m = xasprintf("Failed to copy logical slots from the %s via postgresql connection: %s",
                                           l->name, err);
        copy_note(h, LOG_ERROR, "connect", m);
        free(err);
        h->slots.copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
        return;
    }
    PgSlotState *rows = NULL;
    size_t n_rows = 0;
    int rr = pg_slot_states_read(lc, &plan->copy, &rows, &n_rows, &err);
    PQfinish(lc);
    if (rr < 0) {
        _cleanup_free_ char *m = xasprintf("Failed to copy logical slots from the %s via postgresql connection: %s",
                                           l->name, err);
        copy_note(h, LOG_ERROR, "query", m);
        free(err);
        h->slots.copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
        return;
    }
    SlotCopy *todo = NULL;
    size_t n_todo = 0;
    StrList seen = {0};
    for (size_t i = 0; i < n_rows; i++) {
        const PgSlotState *row = &rows[i];
        const char *name = row->name;
        if (!strlist_contains(&plan->copy, name) || strlist_contains(&seen, name))
            continue;
        strlist_add(&seen, name);
        const unsigned char *state = row->state;
        size_t len = row->state_len;
        SlotCopySource src = {.name = name,
                              .type = row->type,
                              .database = row->database,
                              .plugin = row->plugin,
                              .confirmed_flush_lsn = row->confirmed_flush_lsn,
                              .state = state,
                              .state_len = len,
                              .restart_lsn = row->restart_lsn};
        const PgSlot *mine = local_slot(h, name);
        if (mine && strlist_contains(&h->slots.recopy, name))
            src.local_restart_lsn = mine->restart_lsn;
        char *msg = NULL;
        SlotCopyVerdict v = slot_copy_check(slots_plan_find(plan, name), &src, &loc, &msg);
        if (v == SLOT_COPY_OK) {
            todo = xrealloc(todo, (n_todo + 1) * sizeof *todo);
            todo[n_todo].name = xstrdup(name);
            todo[n_todo].len = len;
            todo[n_todo].restart_lsn = src.restart_lsn;
            todo[n_todo].state = xmalloc(len);
            memcpy(todo[n_todo].state, state, len);
            n_todo++;
            if (!local_slot(h, name))
                loc.free_slots--;
        } else {
            _cleanup_free_ char *key = xasprintf("%s:%s", v == SLOT_COPY_REFUSE ? "refuse" : "wait", name);
            copy_note(h, v == SLOT_COPY_REFUSE ? LOG_ERROR : LOG_INFO, key, msg);
            if (v == SLOT_COPY_REFUSE)
                h->slots.copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
        }
        free(msg);
    }
    pg_slot_states_free(rows, n_rows);
    for (size_t i = 0; i < plan->copy.n; i++)
        if (!strlist_contains(&seen, plan->copy.v[i])) {
            _cleanup_free_ char *m = xasprintf("Logical slot '%s' does not exist on the primary %s: not copied",
                                               plan->copy.v[i], l->name);
            _cleanup_free_ char *key = xasprintf("missing:%s", plan->copy.v[i]);
            copy_note(h, LOG_WARNING, key, m);
        }
    strlist_clear(&seen);
    if (n_todo) {
        StrList names = {0};
        for (size_t i = 0; i < n_todo; i++)
            strlist_add(&names, todo[i].name);
        _cleanup_free_ char *j = strlist_join(&names, "', '");
        strlist_clear(&names);
        log_info("Copying logical slots ['%s'] from the primary %s", j, l->name);
        _cleanup_free_ char *target = xstrdup(h->pg.following_set && h->pg.following[0] ? h->pg.following : l->name);
        if (stop_postgres(h, PG_STOP_FAST, "copying logical replication slots from the primary") < 0) {
            log_error("PostgreSQL did not stop: the logical slots are not copied");
            h->slots.copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
        } else {
            /* the shutdown restartpoint may have removed WAL that no slot here held yet: checked again
             * now that nothing runs (the copy holds it from the start on) */
            long long oldest = pg_oldest_wal_lsn(data_dir, set.wal_segment_size);
            for (size_t i = 0; i < n_todo; i++) {
                if (oldest > 0 && todo[i].restart_lsn > 0 && todo[i].restart_lsn < oldest) {
                    char need[32], have[32];
                    pg_format_lsn(todo[i].restart_lsn, need, sizeof need);
                    pg_format_lsn(oldest, have, sizeof have);
                    log_warning("Not copying logical slot '%s': the WAL from its restart_lsn %s was removed here "
                                "while PostgreSQL stopped (the oldest WAL here starts at %s)",
                                todo[i].name, need, have);
                    h->slots.copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
                    continue;
                }
                if (pg_write_slot_state(cfg_of(h)->postgresql.data_dir, todo[i].name, todo[i].state, todo[i].len,
                                        &err) < 0) {
                    log_error("Failed to copy logical slot '%s': %s", todo[i].name, err);
                    free(err);
                    err = NULL;
                    h->slots.copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
                    continue;
                }
                log_info("Copied logical slot '%s' from the primary", todo[i].name);
                unready_add(h, todo[i].name);
                for (size_t k = 0; k < h->slots.recopy.n; k++)
                    if (streq(h->slots.recopy.v[k], todo[i].name)) {
                        free(h->slots.recopy.v[k]);
                        memmove(&h->slots.recopy.v[k], &h->slots.recopy.v[k + 1],
                                (h->slots.recopy.n - k - 1) * sizeof *h->slots.recopy.v);
                        h->slots.recopy.n--;
                        break;
                    }
            }
            (void)start_postgres(h, false, target);
        }
    }
    for (size_t i = 0; i < n_todo; i++) {
        free(todo[i].name);
        free(todo[i].state);
    }
    free(todo);
}

/* The timeout of the next slot statement of this cycle (h->slots.timeout_ms): 5 s, or on the lock holder
 * what is left of the cycle's budget; false when less than 0.2 s is left. */
static bool slots_budget_left(Ha *h) {
    h->slots.timeout_ms = 5000;
    if (!h->slots.deadline)
        return true;
    usec_t now = now_monotonic();
    usec_t left = h->slots.deadline > now ? h->slots.deadline - now : 0;
    if (left < 200 * USEC_PER_MSEC)
        return false;
    if (left < 5000 * USEC_PER_MSEC)
        h->slots.timeout_ms = (int)(left / USEC_PER_MSEC);
    return true;
}

/* Once per HA cycle on every node whose PostgreSQL runs: read pg_replication_slots, plan, act on
 * the differences. A failure is logged and retried next cycle. */
void slots_sync(Ha *h) {
    if (h->slots.synced)
        return;
    h->slots.synced = true;
    slot_rows_clear(h);
    if (!h->pg.st.ok || h->pg.status_cached || h->pg.starting || h->pg.inst.pid <= 0 || !h->view.cluster ||
        !h->view.cluster->has_config)
        return;
    /* Slot work must never cost the lock: on the lock holder, the slot statements of a cycle together
     * may use what is left of the lease after the next renewal's worst case (retry_timeout) and the
     * loop's wait (a budget per cycle, not per statement); each statement gets what is left of it (at
     * most 5 s), and once less than 0.2 s is left the rest waits for the next cycle. */
    h->slots.deadline = 0;
    if (is_lock_holder(h)) {
        usec_t reserve = (usec_t)(dyn_of(h)->retry_timeout + loop_wait_s(h)) * USEC_PER_SEC;
        h->slots.deadline = h->view.lock_valid_until > reserve ? h->view.lock_valid_until - reserve : 1;
    }
    if (!slots_budget_left(h)) {
        log_debug("replication slots: skipped this cycle, the lease leaves no time for them");
        return;
    }
    PGconn *c = local_conn(h);
    if (!c || load_slot_rows(h, c) < 0)
        return;
    SlotsInput in;
    slots_input(h, &in);
    SlotsPlan plan;
    slots_plan(&in, &plan);
    /* configuration problems: logged when they change, not every cycle */
    _cleanup_free_ char *errors = strlist_join(&plan.errors, "\n");
    if (!streq(errors, h->slots.errors_logged)) {
        for (size_t i = 0; i < plan.errors.n; i++)
            log_error("%s", plan.errors.v[i]);
        free(h->slots.errors_logged);
        h->slots.errors_logged = TAKE_PTR(errors);
    }
    StrList failed_drops = {0};
    usec_t deadline = lease_work_deadline(h); /* the statements' budgets add up: the lease bounds them all */
    for (size_t i = 0; i < plan.n_actions; i++) {
        if (!slots_budget_left(h) || (deadline && now_monotonic() >= deadline)) {
            log_info("replication slots: %zu change(s) left for the next cycle, the lease leaves no time for them",
                     plan.n_actions - i);
            break;
        }
        run_slot_action(h, c, &plan.actions[i], &failed_drops);
        if (PQstatus(c) != CONNECTION_OK) {
            log_warning("lost the connection to PostgreSQL while changing replication slots");
            pg_instance_close_conn(&h->pg.inst);
            c = NULL;
            break;
        }
    }
    bool changed = plan.n_actions > 0;
    /* the leader publishes the positions: read them again after a change */
    if (changed && c && (!slots_budget_left(h) || load_slot_rows(h, c) < 0))
        slot_rows_clear(h);
    if (in.role != SLOT_ROLE_REPLICA) {
        unready_clear(h);
        strlist_clear(&h->slots.recopy);
        h->slots.check_local = false;
    } else if (c && h->slots.rows_ok) {
        /* after a (re)start: the logical slots found here are checked again (Patroni's schedule()) */
        if (h->slots.check_local)
            for (size_t i = 0; i < h->slots.n_rows; i++) {
                const ExpectedSlot *e = slots_plan_find(&plan, h->slots.rows[i].name);
                if (h->slots.rows[i].logical && e && e->logical)
                    unready_add(h, h->slots.rows[i].name);
            }
        h->slots.check_local = false;
        check_logical_slots_readiness(h, &in);
        /* a drop that failed leaves the slot in place: not copied over it this cycle */
        for (size_t i = 0; i < plan.copy.n;)
            if (strlist_contains(&failed_drops, plan.copy.v[i])) {
                free(plan.copy.v[i]);
                memmove(&plan.copy.v[i], &plan.copy.v[i + 1], (plan.copy.n - i - 1) * sizeof *plan.copy.v);
                plan.copy.n--;
            } else {
                i++;
            }
        copy_logical_slots(h, &plan); /* last: it may restart PostgreSQL */
    }
    strlist_clear(&failed_drops);
    slots_plan_free(&plan);
}

/* hot_standby_feedback is forced on while this node (or a member cascading from it) is to carry
 * permanent logical slots; the configuration is rewritten and reloaded by apply_config_changes(). */
void update_enforce_hsf(Ha *h) {
    SlotsInput in;
    slots_input(h, &in);
    if (!in.pg_major)
        in.pg_major = h->pg.inst.major; /* PostgreSQL is not running: the data directory's version */
    bool v = slots_enforce_hot_standby_feedback(&in);
    if (v != h->slots.enforce_hsf)
        log_info("%s hot_standby_feedback (permanent logical replication slots)",
                 v ? "enforcing" : "no longer enforcing");
    h->slots.enforce_hsf = v;
}

/* A new HA cycle: slots_sync() may run again; a node that does not hold the lock restarts the
 * retention timers of its next term as leader. */
void slots_new_cycle(Ha *h) {
    h->slots.synced = false;
    if (!is_lock_holder(h))
        retain_timers_clear(&h->slots.retain);
}

/* PostgreSQL (re)started: the logical slots found there are checked for readiness again. */
void slots_postgres_started(Ha *h) { h->slots.check_local = true; }

void slots_free(HaSlots *s) {
    pg_slots_free(s->rows, s->n_rows);
    retain_timers_clear(&s->retain);
    free(s->errors_logged);
    strlist_clear(&s->recopy);
    strlist_clear(&s->copy_logged);
    for (size_t i = 0; i < s->n_unready; i++)
        free(s->unready[i].name);
    free(s->unready);
    *s = (HaSlots){0};
}
