/* A reload of the etcd client's settings (etcd3.hosts, host, url, proxy, protocol, use_proxies, username,
 * password, cacert, cert, key), as Patroni takes them on SIGHUP, without losing the lease.
 *
 * dcs_reload() (the HA thread) does no network I/O: it hands the new settings to a thread of the client's own.
 * That thread tests them on a side connection (a Dcs of its own, bounded by retry_timeout): connect,
 * authenticate when a user is set, read the leader key, whose answer names the etcd cluster. Only when that
 * works AND the cluster is the one the client talks to are the settings swapped, under req_lock and lock (no
 * request runs, no I/O is done meanwhile): the caller-side handle is dropped (the next request makes a new
 * connection with the new TLS files), the token, API prefix and member list the test obtained are taken, and
 * the watch is rebuilt on the new endpoint. The lease, its id and the
 * member key stay. Otherwise the running client stays as it is and the error is logged; the next reload tries
 * again (the same file reloaded again is enough).
 *
 * Another etcd cluster behind the new addresses is refused: our lease and leader key do not exist there, a
 * primary moved to it would keep running while the lease in the old cluster expires and another member takes
 * over there. Moving to another etcd cluster takes a restart of pgha (replicas first, then the primary, whose
 * shutdown hands over). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "dcs/etcd3_int.h"

static void settings_drop(ClientSettings *s) {
    if (s) {
        etcd3_settings_free(s);
        free(s);
    }
}

static char *endpoints_text(const StrList *l) {
    StrBuf b;
    sb_init(&b);
    for (size_t i = 0; i < l->n; i++)
        sb_addf(&b, "%s%s", i ? ", " : "", l->v[i]);
    return b.s ? b.s : xstrdup("");
}

/* A client of its own for the test: the new settings, the running client's name, prefix and timings. */
static Dcs *side_client(Dcs *d, ClientSettings *s) {
    Dcs *side = xcalloc(1, sizeof *side);
    pthread_mutex_init(&side->lock, NULL);
    pthread_mutex_init(&side->req_lock, NULL);
    pthread_mutex_init(&side->cache_lock, NULL);
    pthread_mutex_init(&side->reload_lock, NULL);
    pthread_cond_init(&side->cache_cond, NULL);
    pthread_cond_init(&side->reload_cond, NULL);
    side->name = xstrdup(d->name);
    side->base = xstrdup(d->base);
    side->prefix_key = xstrdup(d->prefix_key);
    side->range_end = xstrdup(d->range_end);
    side->user_agent = xstrdup(d->user_agent);
    dcs_set_timings(side, d->ttl, d->loop_wait, d->retry_timeout);
    etcd3_settings_swap(side, s); /* s is left empty */
    strlist_copy(&side->endpoints, &side->configured);
    side->api_prefix = xstrdup("/v3");
    return side;
}

/* Swap the tested settings in (caller holds req_lock and lock). */
static void swap_locked(Dcs *d, ClientSettings *s, const EtcdProbe *p) {
    etcd3_settings_swap(d, s);
    strlist_clear(&d->endpoints);
    /* the members the test found (as a connect does), else the configured endpoints */
    strlist_copy(&d->endpoints, p->members.n ? &p->members : &d->configured);
    if (!strlist_contains(&d->endpoints, p->endpoint))
        strlist_add(&d->endpoints, p->endpoint);
    d->current = 0;
    for (size_t i = 0; i < d->endpoints.n; i++)
        if (streq(d->endpoints.v[i], p->endpoint))
            d->current = i;
    free(d->api_prefix);
    d->api_prefix = xstrdup(p->api_prefix);
    free(d->token);
    d->token = xstrdup(p->token);
    d->cluster_id = p->cluster_id;
    if (p->raft_term > d->raft_term)
        d->raft_term = p->raft_term;
    d->members_refreshed = p->members.n ? now_monotonic() : 0; /* else: looked up on the next read */
    d->settings_gen++;                                         /* the watch makes a new handle with the new TLS files */
    etcd3_conn_free(&d->conn); /* a new connection for the next request, with the new TLS files */
}

/* Test the settings in *s (owned; left empty) for reload number seq; swap them in when they work. */
static int test_and_swap(Dcs *d, ClientSettings *s, unsigned long long seq) {
    _cleanup_free_ char *eps = endpoints_text(&s->configured);
    Dcs *side = side_client(d, s);
    EtcdProbe p;
    usec_t deadline = now_monotonic() + (usec_t)d->retry_timeout * USEC_PER_SEC;
    int r = etcd3_probe(side, deadline, &d->reload_stop, &p);
    if (r < 0) {
        const char *why = r == -EACCES      ? "authentication failed"
                          : r == -ETIMEDOUT ? "etcd is not reachable there"
                          : r == -ECANCELED ? "cancelled"
                                            : "no usable etcd there";
        if (r != -ECANCELED)
            log_error("new etcd3 settings (%s) not applied: %s: %s; keeping the running etcd client (a reload tries "
                      "again)",
                      eps, why, dcs_error(side));
        etcd3_settings_swap(side, s); /* back to s: freed by the caller */
        dcs_free(side);
        return r;
    }
    etcd3_settings_swap(side, s); /* the tested settings back into s, to be swapped into d */
    dcs_free(side);

    pthread_mutex_lock(&d->req_lock);
    pthread_mutex_lock(&d->reload_lock);
    bool superseded = seq != d->reload_seq;
    pthread_mutex_unlock(&d->reload_lock);
    pthread_mutex_lock(&d->lock);
    unsigned long long running = d->cluster_id;
    long long lease = d->lease_id;
    /* a client that never had an answer has no lease either (a grant's answer names the cluster) */
    bool same = running == p.cluster_id || (running == 0 && lease == 0);
    if (!superseded && same)
        swap_locked(d, s, &p);
    pthread_mutex_unlock(&d->lock);
    pthread_mutex_unlock(&d->req_lock);
    if (superseded) {
        r = -ECANCELED;
    } else if (!same) {
        log_error("new etcd3 settings (%s) not applied: %s belongs to another etcd cluster (id %llx, this client "
                  "talks to cluster %llx): the lease and the leader key are not there; keeping the running etcd "
                  "client (restart pgha to move to another etcd cluster)",
                  eps, p.endpoint, p.cluster_id, running);
        r = -EXDEV;
    } else {
        d->watch_reconnect = true; /* rebuilt on the new endpoint, with a new handle */
        log_info("etcd client reloaded: %s (tested on %s, etcd cluster %llx; lease %lld kept)", eps, p.endpoint,
                 p.cluster_id, lease);
        r = 1;
    }
    etcd3_probe_free(&p);
    return r;
}

static void *reload_main(void *arg) {
    Dcs *d = arg;
    (void)pthread_setname_np(pthread_self(), "pgha-etcdtest");
    pthread_mutex_lock(&d->reload_lock);
    for (;;) {
        while (!d->reload_queued && !d->reload_stop)
            pthread_cond_wait(&d->reload_cond, &d->reload_lock);
        if (d->reload_stop)
            break;
        ClientSettings *s = d->reload_queued;
        d->reload_queued = NULL;
        unsigned long long seq = d->reload_seq;
        d->reload_busy = true;
        pthread_mutex_unlock(&d->reload_lock);
        int r = test_and_swap(d, s, seq);
        settings_drop(s);
        pthread_mutex_lock(&d->reload_lock);
        d->reload_busy = false;
        d->reload_result = r;
        d->reload_done++;
        pthread_cond_broadcast(&d->reload_cond);
    }
    d->reload_busy = false;
    pthread_cond_broadcast(&d->reload_cond);
    pthread_mutex_unlock(&d->reload_lock);
    return NULL;
}

int dcs_reload(Dcs *d, const PghaConfig *cfg) {
    ClientSettings *s = xcalloc(1, sizeof *s);
    char *err = NULL;
    if (etcd3_settings_from_config(cfg, s, &err) < 0) {
        log_error("new etcd3 settings not applied: %s; keeping the running etcd client", err);
        free(err);
        etcd3_settings_free(s);
        free(s);
        return -EINVAL;
    }
    /* the settings change only on the test thread, under lock */
    pthread_mutex_lock(&d->lock);
    bool same = etcd3_settings_same(d, s);
    pthread_mutex_unlock(&d->lock);
    pthread_mutex_lock(&d->reload_lock);
    d->reload_seq++; /* a test of older settings under way is not applied */
    ClientSettings *old = d->reload_queued;
    d->reload_queued = NULL;
    int r = 0;
    if (!same) {
        d->reload_queued = TAKE_PTR(s);
        if (!d->reload_thread_started) {
            int e = pthread_create(&d->reload_thread, NULL, reload_main, d);
            d->reload_thread_started = e == 0;
            if (e != 0) {
                log_error("new etcd3 settings not applied: cannot start a thread to test them: %s", strerror(e));
                s = TAKE_PTR(d->reload_queued);
                r = -e;
            }
        }
        if (r == 0) {
            pthread_cond_broadcast(&d->reload_cond);
            log_info("etcd3 settings changed: testing them on a side connection before the etcd client takes them");
            r = 1;
        }
    }
    pthread_mutex_unlock(&d->reload_lock);
    settings_drop(old);
    settings_drop(s);
    return r;
}

int etcd3_reload_wait(Dcs *d, usec_t deadline, int *ret_result) {
    struct timespec until = {.tv_sec = (time_t)(deadline / USEC_PER_SEC),
                             .tv_nsec = (long)(deadline % USEC_PER_SEC) * 1000};
    int r = 0;
    pthread_mutex_lock(&d->reload_lock);
    while ((d->reload_queued || d->reload_busy) && r == 0)
        if (pthread_cond_timedwait(&d->reload_cond, &d->reload_lock, &until) == ETIMEDOUT)
            r = -ETIMEDOUT;
    if (ret_result)
        *ret_result = d->reload_result;
    pthread_mutex_unlock(&d->reload_lock);
    return r;
}

void etcd3_reload_stop(Dcs *d) {
    pthread_mutex_lock(&d->reload_lock);
    bool started = d->reload_thread_started;
    d->reload_stop = true;
    pthread_cond_broadcast(&d->reload_cond);
    pthread_mutex_unlock(&d->reload_lock);
    if (started)
        pthread_join(d->reload_thread, NULL);
    pthread_mutex_lock(&d->reload_lock);
    d->reload_thread_started = false;
    settings_drop(TAKE_PTR(d->reload_queued));
    pthread_mutex_unlock(&d->reload_lock);
}
