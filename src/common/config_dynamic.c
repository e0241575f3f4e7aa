/* The dynamic configuration (spec §3.7): `/config` in the DCS, or bootstrap.dcs in patroni.yml.
 * Its keys are config_table.c's dyn_table; the timing rule is config_validate.c's. */
#include <errno.h>
#include <string.h>

#include "common/config_int.h"

/* Where the permanent slots come from: the first non-empty of these. */
static const char *const slot_keys[] = {"permanent_replication_slots", "permanent_slots", "slots"};

void dyn_config_free(DynConfig *c) {
    cfg_table_free(&cfg_dyn, c);
    c->raw = ynode_free(c->raw);
}

void dyn_config_defaults(DynConfig *ret) {
    CfgDiag d = {0};
    YNode *empty = ynode_new(Y_MAP, "defaults", 0);
    (void)dyn_config_parse(empty, ret, &d);
    ynode_free(empty);
    cfg_diag_clear(&d);
}

/* Keys the dynamic configuration may carry: the table's and the slot aliases. */
static const char *const dyn_known_top[] = {
    "ttl", "loop_wait", "retry_timeout", "maximum_lag_on_failover", "maximum_lag_on_syncnode",
    "max_timelines_history", "primary_start_timeout", "master_start_timeout", "primary_stop_timeout",
    "master_stop_timeout", "synchronous_mode", "synchronous_mode_strict", "synchronous_node_count",
    "failsafe_mode", "check_timeline", "pause", "member_slots_ttl", "postgresql", "slots", "permanent_slots",
    "permanent_replication_slots", "ignore_slots", "standby_cluster", NULL};

static bool in_list(const char *const *list, const char *s) {
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

static bool dyn_allowed(const char *path, const YNode *root) {
    (void)root;
    /* postgresql.* in /config may carry anything the local postgresql section can (spec §3.1) */
    if (str_startswith(path, "postgresql."))
        return true;
    const char *dot = strchr(path, '.');
    if (!dot)
        return in_list(dyn_known_top, path);
    _cleanup_free_ char *top = xstrndup(path, (size_t)(dot - path));
    return in_list(dyn_known_top, top);
}

int cfg_dyn_parse_at(const YNode *obj, const char *prefix, bool short_ttl, DynConfig *ret, CfgDiag *diag) {
    *ret = (DynConfig){0};
    size_t nerr = diag->errors.n;
    const char *src = obj && obj->file && *obj->file ? obj->file : "dynamic configuration";
    if (!obj || obj->type != Y_MAP) {
        cfg_diag_error(diag, obj, src, prefix, "the dynamic configuration must be a mapping");
        YNode *empty = ynode_new(Y_MAP, src, 0);
        cfg_apply_table(&cfg_dyn, empty, prefix, ret, ret->present, src, diag);
        ret->raw = empty;
        return -EINVAL;
    }
    cfg_apply_table(&cfg_dyn, obj, prefix, ret, ret->present, src, diag);
    cfg_warn_unknown(&cfg_dyn, obj, prefix, dyn_allowed, src, diag);

    for (size_t i = 0; i < ELEMENTSOF(slot_keys); i++) {
        const YNode *s = ynode_get(obj, slot_keys[i]);
        if (s && s->type == Y_MAP && s->n > 0) {
            ynode_free(ret->slots);
            ret->slots = ynode_clone(s);
            break;
        }
    }

    ret->raw = ynode_clone(obj);
    long long ttl = ret->ttl, lw = ret->loop_wait, rt = ret->retry_timeout;
    cfg_adjust_timeouts(obj, src, prefix, &ttl, &lw, &rt, short_ttl, diag);
    const struct {
        const char *key;
        long long before, after;
    } adj[] = {{"ttl", ret->ttl, ttl},
               {"loop_wait", ret->loop_wait, lw},
               {"retry_timeout", ret->retry_timeout, rt}};
    for (size_t i = 0; i < ELEMENTSOF(adj); i++)
        if (adj[i].before != adj[i].after)
            ynode_set(ret->raw, adj[i].key, ynode_new_int(adj[i].after, src, 0));
    ret->ttl = ttl;
    ret->loop_wait = lw;
    ret->retry_timeout = rt;
    return diag->errors.n > nerr ? -EINVAL : 0;
}

int dyn_config_parse(const YNode *obj, DynConfig *ret, CfgDiag *diag) {
    return cfg_dyn_parse_at(obj, NULL, false, ret, diag);
}

int dyn_config_parse_ex(const YNode *obj, bool allow_short_ttl, DynConfig *ret, CfgDiag *diag) {
    return cfg_dyn_parse_at(obj, NULL, allow_short_ttl, ret, diag);
}

bool dyn_config_is_set(const DynConfig *c, const char *path) {
    return cfg_table_is_set(&cfg_dyn, c->present, path);
}
