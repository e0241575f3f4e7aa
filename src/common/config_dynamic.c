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

/* Whether `name` (a path of the table, an alias or a slot key) starts with the segment `top`. */
static bool has_top(const char *name, const char *top, size_t len) {
    return name && strncmp(name, top, len) == 0 && (name[len] == '\0' || name[len] == '.');
}

static bool dyn_allowed(const char *path, const YNode *root) {
    (void)root;
    /* postgresql.* in /config may carry anything the local postgresql section can (spec §3.1) */
    if (str_startswith(path, "postgresql."))
        return true;
    /* a top-level key the table knows (by its path or its alias) or a slot key, or one below it */
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    for (size_t i = 0; i < ELEMENTSOF(slot_keys); i++)
        if (has_top(slot_keys[i], path, len))
            return true;
    for (size_t i = 0; i < cfg_dyn.n; i++)
        if (has_top(cfg_dyn.v[i].path, path, len) || has_top(cfg_dyn.v[i].alias, path, len))
            return true;
    return false;
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
    } adj[] = {{"ttl", ret->ttl, ttl}, {"loop_wait", ret->loop_wait, lw}, {"retry_timeout", ret->retry_timeout, rt}};
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

bool dyn_config_is_set(const DynConfig *c, const char *path) { return cfg_table_is_set(&cfg_dyn, c->present, path); }

bool dyn_is_standby_cluster(const DynConfig *c) {
    const YNode *sc = c ? c->standby_cluster : NULL;
    if (!sc || sc->type != Y_MAP)
        return false;
    return ynode_truthy(ynode_get(sc, "host")) || ynode_truthy(ynode_get(sc, "port")) ||
           ynode_truthy(ynode_get(sc, "restore_command"));
}

const char *dyn_standby_str(const DynConfig *c, const char *key) {
    const YNode *sc = c ? c->standby_cluster : NULL;
    const YNode *v = sc && sc->type == Y_MAP ? ynode_get(sc, key) : NULL;
    return v && v->type != Y_NULL && ynode_is_scalar(v) && ynode_truthy(v) ? v->text : NULL;
}

int dyn_standby_port(const DynConfig *c, bool *ret_valid) {
    const char *port_s = dyn_standby_str(c, "port");
    long long port = 5432;
    bool valid = !port_s || (parse_ll(port_s, &port) == 0 && port > 0 && port <= 65535);
    if (ret_valid)
        *ret_valid = valid;
    return valid ? (int)port : 5432;
}
