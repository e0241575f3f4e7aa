/* The cluster view: what the DCS says this cycle, the dynamic configuration it carries, and whether
 * the leader lease is ours and until when. */
#include "agent/ha_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* "2025-06-01T12:00:00+00:00", "...Z", with optional fractional seconds: epoch seconds. */
int parse_iso8601(const char *s, double *ret) {
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        p = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!p)
        return -EINVAL;
    double frac = 0;
    if (*p == '.') {
        char *end;
        frac = strtod(p, &end);
        p = end;
    }
    long off = 0;
    if (*p == 'Z') {
        /* UTC */
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int hh = 0, mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) < 1 && sscanf(p + 1, "%2d%2d", &hh, &mm) < 1)
            return -EINVAL;
        off = sign * (hh * 3600L + mm * 60L);
    } else {
        return -EINVAL; /* a timezone is mandatory */
    }
    time_t t = timegm(&tm);
    *ret = (double)t - (double)off + frac;
    return 0;
}

int loop_wait_s(const Ha *h) {
    return (int)(h->view.dyn_loaded ? h->view.dyn.loop_wait : cfg_of(h)->bootstrap.dyn.loop_wait);
}

int ttl_s(const Ha *h) { return (int)(h->view.dyn_loaded ? h->view.dyn.ttl : cfg_of(h)->bootstrap.dyn.ttl); }

const DynConfig *dyn_of(const Ha *h) { return h->view.dyn_loaded ? &h->view.dyn : &cfg_of(h)->bootstrap.dyn; }

bool use_slots(const Ha *h) { return dyn_of(h)->use_slots; }

const Member *member_by_name(const Ha *h, const char *name) { return cluster_get_member(h->view.cluster, name); }

bool member_host_port(const Member *m, char *host, size_t hostlen, int *port) {
    char *hst = NULL;
    if (!member_conn_host_port(m, &hst, port))
        return false;
    snprintf(host, hostlen, "%s", hst);
    free(hst);
    return true;
}

bool is_lock_holder(const Ha *h) {
    return h->view.cluster && h->view.cluster->leader && streq(h->view.cluster->leader->name, cfg_of(h)->name);
}

void refresh_dynamic_config(Ha *h) {
    const Cluster *c = h->view.cluster;
    if (!c || !c->has_config || c->config_version <= 0 || c->config_version == h->view.dyn_version)
        return;
    YNode *n = ynode_from_json(c->config, "DCS /config");
    DynConfig next;
    CfgDiag diag = {0};
    int r = dyn_config_parse_ex(n, cfg_of(h)->pgha.allow_short_ttl, &next, &diag);
    ynode_free(n);
    for (size_t i = 0; i < diag.warnings.n; i++)
        log_warning("%s", diag.warnings.v[i]);
    if (r < 0) {
        for (size_t i = 0; i < diag.errors.n; i++)
            log_error("%s", diag.errors.v[i]);
        log_error("the dynamic configuration in the DCS is invalid; keeping the previous one");
        dyn_config_free(&next);
    } else {
        if (h->view.dyn_loaded && (next.ttl != h->view.dyn.ttl || next.loop_wait != h->view.dyn.loop_wait ||
                                   next.retry_timeout != h->view.dyn.retry_timeout))
            log_info("dynamic configuration changed: ttl=%lld loop_wait=%lld retry_timeout=%lld", next.ttl,
                     next.loop_wait, next.retry_timeout);
        if (h->view.dyn_loaded)
            dyn_config_free(&h->view.dyn);
        h->view.dyn = next;
        h->view.dyn_loaded = true;
        dcs_set_timings(h->dcs, (int)h->view.dyn.ttl, (int)h->view.dyn.loop_wait, (int)h->view.dyn.retry_timeout);
    }
    h->view.dyn_version = c->config_version;
    cfg_diag_clear(&diag);
}

/* The leader key is ours until our lease can expire: ttl after the later of the request's send time and
 * the lease's last keepalive, whichever came first (acquiring the key attaches the lease without a
 * keepalive when one was sent less than loop_wait ago). */
void lease_renewed(Ha *h, usec_t sent_at) {
    usec_t since = dcs_lease_refreshed_at(h->dcs);
    if (since && since < sent_at)
        sent_at = since;
    h->view.lock_valid_until = sent_at + (usec_t)ttl_s(h) * USEC_PER_SEC;
    dcs_set_lease_deadline(lease_fence_at(h));
    failsafe_licence_end(h); /* §4.3 step 14: the leader with its lock marks failsafe inactive */
    /* the watchdog is kept alive by the loop itself, after each renewal: a stuck loop lets it fire */
    WatchdogSettings ws = watchdog_settings(h);
    watchdog_keepalive(&h->wd, &ws);
}

WatchdogSettings watchdog_settings(const Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    return (WatchdogSettings){.mode = cfg->watchdog.mode,
                              .device = cfg->watchdog.device,
                              .safety_margin = cfg->watchdog.safety_margin,
                              .ttl = ttl_s(h),
                              .loop_wait = loop_wait_s(h),
                              .fire_by = primary_fence_at(h)}; /* the lease, or failsafe's licence */
}

void lease_lost(Ha *h) {
    h->view.lock_valid_until = 0;
    dcs_set_lease_deadline(0);
}

usec_t lease_fence_margin(const Ha *h) {
    usec_t margin = 2 * USEC_PER_SEC, quarter = (usec_t)ttl_s(h) * USEC_PER_SEC / 4;
    return margin < quarter ? margin : quarter;
}

usec_t lease_fence_at(const Ha *h) {
    usec_t until = h->view.lock_valid_until, margin = lease_fence_margin(h);
    if (!until)
        return 0;
    return until > margin ? until - margin : 1;
}

usec_t primary_fence_at(const Ha *h) {
    usec_t fence = lease_fence_at(h), licence = h->failsafe.licence_until;
    return licence > fence ? licence : fence;
}

/* On the licence, the DCS calls end early enough for the POSTs that decide whether it is extended. */
static void failsafe_dcs_deadline(Ha *h) {
    usec_t fence = primary_fence_at(h);
    dcs_set_lease_deadline(fence > FAILSAFE_POST_BUDGET ? fence - FAILSAFE_POST_BUDGET : 1);
}

void failsafe_carry_licence(Ha *h, usec_t fence) {
    if (fence > h->failsafe.licence_until)
        h->failsafe.licence_until = fence;
    failsafe_dcs_deadline(h);
}

void failsafe_licence_extend(Ha *h) {
    usec_t margin = lease_fence_margin(h), sent = h->failsafe.round_sent;
    usec_t bound = sent + (usec_t)ttl_s(h) * USEC_PER_SEC;
    bound = bound > margin ? bound - margin : 0;
    /* the next decision: the next cycle (loop_wait), its DCS calls (retry_timeout), its POSTs, the margin */
    usec_t next = now_monotonic() + (usec_t)(loop_wait_s(h) + dyn_of(h)->retry_timeout) * USEC_PER_SEC +
                  FAILSAFE_POST_BUDGET + margin;
    h->failsafe.licence_until = next < bound ? next : bound;
    h->failsafe.active = true;
    failsafe_dcs_deadline(h);
    /* surviving on failsafe keeps the watchdog alive as a renewal does (spec §4.12), up to the licence's end */
    WatchdogSettings ws = watchdog_settings(h);
    watchdog_keepalive(&h->wd, &ws);
}

void failsafe_licence_end(Ha *h) {
    h->failsafe.licence_until = 0;
    h->failsafe.active = false;
    dcs_set_lease_deadline(lease_fence_at(h));
}

usec_t lease_work_deadline(const Ha *h) {
    usec_t fence = lease_fence_at(h), reserve = (usec_t)dyn_of(h)->retry_timeout * USEC_PER_SEC;
    if (!fence)
        return 0;
    return fence > reserve ? fence - reserve : 1;
}

/* Step 1 of a cycle: the cluster view (the watch cache or a read), the dynamic configuration in it,
 * and the last view with a leader for the candidate set of the next race. */
void view_read_cluster(Ha *h, usec_t now) {
    Cluster *c = NULL;
    if (dcs_get_cluster(h->dcs, &c) == 0) {
        cluster_free(h->view.cluster);
        h->view.cluster = c;
        h->view.dcs_last_seen = (long long)(now_realtime() / USEC_PER_SEC);
        h->view.cluster_read_at = now;
        if (c->leader) {
            Cluster *copy = NULL;
            if (dcs_get_cluster(h->dcs, &copy) == 0) {
                cluster_free(h->view.last_locked);
                h->view.last_locked = copy;
            }
        }
        refresh_dynamic_config(h);
        failsafe_remember_key(h);
    } else {
        cluster_free(h->view.cluster);
        h->view.cluster = NULL;
    }
    if (is_lock_holder(h)) {
        char lease[32];
        snprintf(lease, sizeof lease, "%lld", dcs_lease_id(h->dcs));
        if (h->view.cluster->leader->session && dcs_lease_id(h->dcs) && !streq(h->view.cluster->leader->session, lease))
            log_debug("the leader key is ours but on another lease (%s != %s)", h->view.cluster->leader->session,
                      lease);
    } else {
        lease_lost(h);
    }
}

/* Read the cluster again after this cycle's own writes (the bootstrap's keys). */
void view_reread(Ha *h) {
    Cluster *c = NULL;
    if (h->view.cluster && dcs_get_cluster(h->dcs, &c) == 0) {
        cluster_free(h->view.cluster);
        h->view.cluster = c;
    }
}

void view_reread_cached(Ha *h) {
    Cluster *c = NULL;
    if (h->view.cluster && dcs_get_cluster_cached(h->dcs, &c) == 0) {
        cluster_free(h->view.cluster);
        h->view.cluster = c;
    }
}

void view_free(HaView *v) {
    cluster_free(v->cluster);
    cluster_free(v->last_locked);
    if (v->dyn_loaded)
        dyn_config_free(&v->dyn);
    *v = (HaView){0};
}
