/* Fake of the DCS interface (src/dcs/dcs.h): the calls the executor makes, logged in order, with the
 * results scripted in `fake` or answered by the hooks. */
#include "fakes.h"

#include <errno.h>
#include <string.h>

/* " [fail-fast]" after a call made in fail-fast mode */
static const char *ff(void) { return fake.fail_fast ? " [fail-fast]" : ""; }

int dcs_attempt_to_acquire_leader(Dcs *d) {
    (void)d;
    fake_event("dcs_attempt_to_acquire_leader");
    return fake.acquire;
}

int dcs_update_leader(Dcs *d, const Cluster *c) {
    (void)d;
    fake_event("dcs_update_leader%s%s", c ? "" : "(no view)", ff());
    return fake.update_leader;
}

int dcs_delete_leader(Dcs *d) {
    (void)d;
    fake_event("dcs_delete_leader%s", ff());
    return fake.delete_leader;
}

int dcs_get_raw(Dcs *d, const char *rel_key, char **ret_value, long long *ret_mod_revision) {
    (void)d;
    fake_event("dcs_get_raw(%s)", rel_key);
    *ret_value = fake.get_raw == 1 && fake.raw_value ? xstrdup(fake.raw_value) : NULL;
    if (ret_mod_revision)
        *ret_mod_revision = fake.get_raw == 1 ? 42 : 0;
    return fake.get_raw;
}

int dcs_initialize(Dcs *d, bool create_new, const char *sysid) {
    (void)d;
    fake_event("dcs_initialize(%s, \"%s\")", create_new ? "create" : "update", sysid ? sysid : "");
    return fake.initialize;
}

int dcs_set_failover(Dcs *d, const char *json, long long version) {
    (void)d;
    fake_event("dcs_set_failover(%s, %lld)", json, version);
    return fake.set_failover;
}

int dcs_set_config(Dcs *d, const char *json, long long version) {
    (void)d;
    fake_event("dcs_set_config(%s, %lld)", json, version);
    return 1;
}

int dcs_set_sync_state(Dcs *d, const char *json, long long version, long long *ret_new_version) {
    (void)d;
    fake_event("dcs_set_sync_state(%s, %lld)", json, version);
    if (fake.hooks.set_sync_state)
        return fake.hooks.set_sync_state(fake.hooks.ud, json, version, ret_new_version);
    if (fake.set_sync == 1 && ret_new_version)
        *ret_new_version = fake.sync_version;
    return fake.set_sync;
}

int dcs_delete_sync_state(Dcs *d, long long version) {
    (void)d;
    fake_event("dcs_delete_sync_state(%lld)", version);
    if (fake.hooks.delete_sync_state)
        return fake.hooks.delete_sync_state(fake.hooks.ud, version);
    return fake.delete_sync;
}

/* Reads: the executor's sources read the view from h->view; these are not scripted. */
int dcs_get_cluster(Dcs *d, Cluster **ret) {
    (void)d;
    fake_event("dcs_get_cluster");
    *ret = NULL;
    return -EIO;
}

/* (the watch cache, no network call: not an event; "not ready", so the view stays as the test built it) */
int dcs_get_cluster_cached(Dcs *d, Cluster **ret) {
    (void)d;
    *ret = NULL;
    return -EAGAIN;
}

int dcs_read_cluster(Dcs *d, bool linearizable, Cluster **ret) {
    (void)d;
    fake_event("dcs_read_cluster(%s)", linearizable ? "linearizable" : "serializable");
    *ret = fake.hooks.read_cluster ? fake.hooks.read_cluster(fake.hooks.ud) : NULL;
    return *ret ? 0 : -EIO;
}

/* Not calls to the DCS: not logged. */
const char *dcs_error(const Dcs *d) {
    (void)d;
    return fake.dcs_error;
}

long long dcs_lease_id(const Dcs *d) {
    (void)d;
    return 0;
}

usec_t dcs_lease_refreshed_at(Dcs *d) {
    (void)d;
    return fake.lease_refreshed;
}

void dcs_set_timings(Dcs *d, int ttl, int loop_wait, int retry_timeout) {
    (void)d;
    (void)ttl;
    (void)loop_wait;
    (void)retry_timeout;
}

void dcs_set_call_deadline(usec_t deadline) { (void)deadline; }

void dcs_set_lease_deadline(usec_t deadline) { fake.lease_deadline = deadline; /* not a call: not logged */ }

void dcs_set_fail_fast(bool on) { fake.fail_fast = on; }

bool dcs_suspend_fail_fast(void) {
    bool was = fake.fail_fast;
    fake.fail_fast = false;
    return was;
}

void dcs_restore_fail_fast(bool was_on) { fake.fail_fast = was_on; }
