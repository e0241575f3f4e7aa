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

static ClientSettings *settings_dup(const ClientSettings *s) {
    ClientSettings *c = xcalloc(1, sizeof *c);
    c->protocol = xstrdup(s->protocol);
    strlist_copy(&c->configured, &s->configured);
    c->use_proxies = s->use_proxies;
    c->username = xstrdup(s->username);
    c->password = xstrdup(s->password);
    c->cacert = xstrdup(s->cacert);
    c->cert = xstrdup(s->cert);
    c->key = xstrdup(s->key);
    return c;
}

static bool settings_equal(const ClientSettings *a, const ClientSettings *b) {
    return streq(a->protocol, b->protocol) && strlist_equal(&a->configured, &b->configured) &&
           a->use_proxies == b->use_proxies && streq(a->username, b->username) && streq(a->password, b->password) &&
           streq(a->cacert, b->cacert) && streq(a->cert, b->cert) && streq(a->key, b->key);
}

static char *endpoints_text(const StrList *l) {
    StrBuf b;
    sb_init(&b);
    for (size_t i = 0; i < l->n; i++)
        sb_addf(&b, "%s%s", i ? ", " : "", l->v[i]);
    return b.s ? b.s : xstrdup("");
}

/* Seconds between two tests of settings that timed out: loop_wait, at least 1 s and at most 30 s. */
static int retry_interval(Dcs *d) {
    int s = d->loop_wait;
    return s < 1 ? 1 : s > 30 ? 30 : s;
}

/* A client of its own for the test: the new settings, the running client's name, prefix, timings and etcd
 * cluster (an answer from another cluster is refused there as in the running client). */
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
    pthread_mutex_lock(&d->lock);
    int ttl = d->ttl, loop_wait = d->loop_wait, retry_timeout = d->retry_timeout;
    side->cluster_id = d->cluster_id;
    side->raft_term = d->raft_term;
    pthread_mutex_unlock(&d->lock);
    side->cluster_pinned = true; /* the probe refuses another cluster, whatever the time since an answer */
    dcs_set_timings(side, ttl, loop_wait, retry_timeout);
    etcd3_settings_swap(side, s); /* s is left empty */
    strlist_copy(&side->endpoints, &side->configured);
    side->api_prefix = xstrdup("/v3");
    return side;
}

/* Swap the tested settings in (caller holds req_lock and lock); the old handle goes to *old_conn, to be freed
 * after the locks. */
static void swap_locked(Dcs *d, ClientSettings *s, const EtcdProbe *p, Conn *old_conn) {
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
    d->cluster_seen = now_monotonic(); /* the test's answers */
    d->cluster_next = 0;
    d->members_refreshed = p->members.n ? now_monotonic() : 0; /* else: looked up on the next read */
    d->settings_gen++;                                         /* the watch makes a new handle with the new TLS files */
    /* the watch is rebuilt on the new endpoint: set here, under req_lock, where the watch clears it before it
     * reads settings_gen (etcd3_watch.c), so that no swap goes unseen */
    d->watch_reconnect = true;
    *old_conn = d->conn; /* a new connection for the next request, with the new TLS files */
    d->conn = (Conn){0};
}

static void set_refusal(Dcs *d, char *why) {
    pthread_mutex_lock(&d->reload_lock);
    free(d->reload_refusal);
    d->reload_refusal = why;
    pthread_mutex_unlock(&d->reload_lock);
}

/* Test the settings in *s (owned; left as they were) for reload number seq; swap them in when they work. */
static int test_and_swap(Dcs *d, ClientSettings *s, unsigned long long seq, bool retry) {
    _cleanup_free_ char *eps = endpoints_text(&s->configured);
    Dcs *side = side_client(d, s);
    EtcdProbe p;
    usec_t deadline = now_monotonic() + (usec_t)side->retry_timeout * USEC_PER_SEC;
    int r = etcd3_probe(side, deadline, &d->reload_stop, &p);
    etcd3_settings_swap(side, s); /* the tested settings back into s */
    if (r < 0) {
        const char *why = r == -EACCES      ? "authentication failed"
                          : r == -ETIMEDOUT ? "etcd is not reachable there"
                          : r == -EXDEV     ? "another etcd cluster there"
                          : r == -ECANCELED ? "cancelled"
                                            : "no usable etcd there";
        if (r != -ECANCELED) {
            char *msg = xasprintf("new etcd3 settings (%s) not applied: %s: %s", eps, why, dcs_error(side));
            if (r == -ETIMEDOUT)
                log_error("%s; keeping the running etcd client (%stested again in %d s)", msg,
                          retry ? "still not reachable; " : "", retry_interval(d));
            else if (r == -EXDEV)
                log_error("%s: the lease and the leader key are not there; keeping the running etcd client (restart "
                          "pgha to move to another etcd cluster)",
                          msg);
            else
                log_error("%s; keeping the running etcd client (a reload tries again)", msg);
            set_refusal(d, msg);
        }
        dcs_free(side);
        return r;
    }
    dcs_free(side);

    Conn old_conn = {0};
    pthread_mutex_lock(&d->req_lock);
    pthread_mutex_lock(&d->lock);
    /* under lock, as dcs_reload() compares and bumps it: a reload back to the running settings either comes
     * before (and this test is not applied) or after the swap (and is tested itself) */
    pthread_mutex_lock(&d->reload_lock);
    bool superseded = seq != d->reload_seq;
    pthread_mutex_unlock(&d->reload_lock);
    unsigned long long running = d->cluster_id;
    long long lease = d->lease_id;
    /* a client that never had an answer has no lease either (a grant's answer names the cluster) */
    bool same = running == p.cluster_id || (running == 0 && lease == 0);
    if (!superseded && same) {
        swap_locked(d, s, &p, &old_conn); /* s gets the old settings */
    }
    pthread_mutex_unlock(&d->lock);
    pthread_mutex_unlock(&d->req_lock);
    etcd3_conn_free(&old_conn);
    if (superseded) {
        log_info("new etcd3 settings (%s) tested but not applied: the settings changed again meanwhile", eps);
        r = -ECANCELED;
    } else if (!same) {
        char *msg = xasprintf("new etcd3 settings (%s) not applied: %s belongs to another etcd cluster (id %llx, this "
                              "client talks to cluster %llx)",
                              eps, p.endpoint, p.cluster_id, running);
        log_error("%s: the lease and the leader key are not there; keeping the running etcd client (restart pgha to "
                  "move to another etcd cluster)",
                  msg);
        set_refusal(d, msg);
        r = -EXDEV;
    } else {
        set_refusal(d, NULL);
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
        bool retry = false;
        while (!d->reload_stop) {
            if (!d->reload_queued) {
                pthread_cond_wait(&d->reload_cond, &d->reload_lock);
            } else if (d->reload_retry_at && now_monotonic() < d->reload_retry_at) {
                struct timespec until = {.tv_sec = (time_t)(d->reload_retry_at / USEC_PER_SEC),
                                         .tv_nsec = (long)(d->reload_retry_at % USEC_PER_SEC) * 1000};
                (void)pthread_cond_timedwait(&d->reload_cond, &d->reload_lock, &until);
            } else {
                retry = d->reload_retry_at != 0;
                break;
            }
        }
        if (d->reload_stop)
            break;
        ClientSettings *s = d->reload_queued;
        d->reload_queued = NULL;
        d->reload_retry_at = 0;
        d->reload_testing = settings_dup(s);
        unsigned long long seq = d->reload_seq;
        d->reload_testing_seq = seq;
        d->reload_busy = true;
        pthread_mutex_unlock(&d->reload_lock);
        int r = test_and_swap(d, s, seq, retry);
        pthread_mutex_lock(&d->reload_lock);
        settings_drop(TAKE_PTR(d->reload_testing));
        /* timed out (new members not up yet, a network partition): tested again while the file still asks for
         * them; a reload of other settings or of the running ones ends that */
        if (r == -ETIMEDOUT && seq == d->reload_seq && !d->reload_queued && !d->reload_stop) {
            d->reload_queued = TAKE_PTR(s);
            d->reload_retry_at = now_monotonic() + (usec_t)retry_interval(d) * USEC_PER_SEC;
        }
        settings_drop(s);
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
        char *msg = xasprintf("new etcd3 settings not applied: %s", err);
        log_error("%s; keeping the running etcd client", msg);
        set_refusal(d, msg);
        free(err);
        settings_drop(s);
        return -EINVAL;
    }
    /* lock across the compare with the running settings and the sequence bump: a swap under way (which checks
     * the sequence under lock) happens wholly before or after */
    pthread_mutex_lock(&d->lock);
    d->cluster_pinned = !cfg->pgha.follow_etcd_cluster_change;
    bool same = etcd3_settings_same(d, s);
    pthread_mutex_lock(&d->reload_lock);
    /* the settings whose test will be applied: queued, or under way and not superseded yet (a test superseded by
     * a reload back to the running settings is not applied: the same settings again are queued anew) */
    const ClientSettings *testing = d->reload_busy && d->reload_testing_seq == d->reload_seq ? d->reload_testing : NULL;
    const ClientSettings *pending = d->reload_queued ? d->reload_queued : testing;
    ClientSettings *old = NULL;
    int r = 0;
    if (!same && pending && settings_equal(pending, s)) {
        /* the settings being tested (another SIGHUP, e.g. for the tags): the test goes on; one waiting for its
         * next try is tried now */
        if (d->reload_queued && d->reload_retry_at) {
            d->reload_retry_at = 0;
            pthread_cond_broadcast(&d->reload_cond);
        }
        r = 1;
    } else {
        if (pending) {
            _cleanup_free_ char *eps = endpoints_text(&pending->configured);
            log_info("etcd3 settings changed again: the test of the previous ones (%s) is superseded", eps);
        }
        d->reload_seq++; /* a test of older settings under way is not applied */
        old = TAKE_PTR(d->reload_queued);
        d->reload_retry_at = 0;
        if (same) {
            free(TAKE_PTR(d->reload_refusal));
        } else {
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
                log_info("etcd3 settings changed: testing them on a side connection before the etcd client takes "
                         "them");
                r = 1;
            }
        }
    }
    pthread_mutex_unlock(&d->reload_lock);
    pthread_mutex_unlock(&d->lock);
    settings_drop(old);
    settings_drop(s);
    return r;
}

char *dcs_reload_status(Dcs *d) {
    pthread_mutex_lock(&d->reload_lock);
    char *r = xstrdup(d->reload_refusal);
    pthread_mutex_unlock(&d->reload_lock);
    return r;
}

int etcd3_reload_wait(Dcs *d, usec_t deadline, int *ret_result) {
    struct timespec until = {.tv_sec = (time_t)(deadline / USEC_PER_SEC),
                             .tv_nsec = (long)(deadline % USEC_PER_SEC) * 1000};
    int r = 0;
    pthread_mutex_lock(&d->reload_lock);
    /* (settings waiting for their next try after a time-out count as done) */
    while (((d->reload_queued && !d->reload_retry_at) || d->reload_busy) && r == 0)
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
    settings_drop(TAKE_PTR(d->reload_testing));
    free(TAKE_PTR(d->reload_refusal));
    pthread_mutex_unlock(&d->reload_lock);
}
