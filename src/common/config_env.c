/* Environment overrides of patroni.yml (spec §3.10): PATRONI_* variables, with PGHA_* accepted
 * as aliases (a PGHA_ variable wins over the PATRONI_ one of the same name). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/config_int.h"

typedef enum EnvKind {
    EV_STR,       /* the value as a string */
    EV_SCALAR,    /* resolved like a YAML plain scalar: PORT, bool and int settings */
    EV_LIST,      /* YAML list; a bare `a,b` stays a comma-separated string */
    EV_MAP,       /* YAML mapping */
    EV_LOGFORMAT, /* a %-format string, or a YAML list when it has no "%(" */
} EnvKind;

typedef struct EnvMapping {
    const char *suffix; /* after PATRONI_ / PGHA_ */
    const char *path;
    EnvKind kind;
} EnvMapping;

static const EnvMapping env_map[] = {
    {"NAME", "name", EV_STR},
    {"NAMESPACE", "namespace", EV_STR},
    {"SCOPE", "scope", EV_STR},

    {"LOGLEVEL", "log.level", EV_STR},         /* legacy */
    {"LOGFORMAT", "log.format", EV_LOGFORMAT}, /* legacy */
    {"LOG_DATEFMT", "log.dateformat", EV_STR}, /* legacy */
    {"LOG_TYPE", "log.type", EV_STR},
    {"LOG_LEVEL", "log.level", EV_STR},
    {"LOG_TRACEBACK_LEVEL", "log.traceback_level", EV_STR},
    {"LOG_FORMAT", "log.format", EV_LOGFORMAT},
    {"LOG_DATEFORMAT", "log.dateformat", EV_STR},
    {"LOG_STATIC_FIELDS", "log.static_fields", EV_MAP},
    {"LOG_MAX_QUEUE_SIZE", "log.max_queue_size", EV_SCALAR},
    {"LOG_DIR", "log.dir", EV_STR},
    {"LOG_MODE", "log.mode", EV_SCALAR},
    {"LOG_FILE_SIZE", "log.file_size", EV_SCALAR},
    {"LOG_FILE_NUM", "log.file_num", EV_SCALAR},
    {"LOG_LOGGERS", "log.loggers", EV_MAP},

    {"RESTAPI_LISTEN", "restapi.listen", EV_STR},
    {"RESTAPI_CONNECT_ADDRESS", "restapi.connect_address", EV_STR},
    {"RESTAPI_CERTFILE", "restapi.certfile", EV_STR},
    {"RESTAPI_KEYFILE", "restapi.keyfile", EV_STR},
    {"RESTAPI_KEYFILE_PASSWORD", "restapi.keyfile_password", EV_STR},
    {"RESTAPI_CAFILE", "restapi.cafile", EV_STR},
    {"RESTAPI_CIPHERS", "restapi.ciphers", EV_STR},
    {"RESTAPI_VERIFY_CLIENT", "restapi.verify_client", EV_STR},
    {"RESTAPI_HTTP_EXTRA_HEADERS", "restapi.http_extra_headers", EV_MAP},
    {"RESTAPI_HTTPS_EXTRA_HEADERS", "restapi.https_extra_headers", EV_MAP},
    {"RESTAPI_ALLOWLIST", "restapi.allowlist", EV_LIST},
    {"RESTAPI_ALLOWLIST_INCLUDE_MEMBERS", "restapi.allowlist_include_members", EV_SCALAR},
    {"RESTAPI_REQUEST_QUEUE_SIZE", "restapi.request_queue_size", EV_SCALAR},
    {"RESTAPI_SERVER_TOKENS", "restapi.server_tokens", EV_STR},
    {"RESTAPI_USERNAME", "restapi.authentication.username", EV_STR},
    {"RESTAPI_PASSWORD", "restapi.authentication.password", EV_STR},

    {"CTL_INSECURE", "ctl.insecure", EV_SCALAR},
    {"CTL_CACERT", "ctl.cacert", EV_STR},
    {"CTL_CERTFILE", "ctl.certfile", EV_STR},
    {"CTL_KEYFILE", "ctl.keyfile", EV_STR},
    {"CTL_KEYFILE_PASSWORD", "ctl.keyfile_password", EV_STR},
    {"CTL_USERNAME", "ctl.authentication.username", EV_STR},
    {"CTL_PASSWORD", "ctl.authentication.password", EV_STR},

    {"POSTGRESQL_LISTEN", "postgresql.listen", EV_STR},
    {"POSTGRESQL_CONNECT_ADDRESS", "postgresql.connect_address", EV_STR},
    {"POSTGRESQL_PROXY_ADDRESS", "postgresql.proxy_address", EV_STR},
    {"POSTGRESQL_CONFIG_DIR", "postgresql.config_dir", EV_STR},
    {"POSTGRESQL_DATA_DIR", "postgresql.data_dir", EV_STR},
    {"POSTGRESQL_PGPASS", "postgresql.pgpass", EV_STR},
    {"POSTGRESQL_BIN_DIR", "postgresql.bin_dir", EV_STR},
    {"POSTGRESQL_BIN_PG_CTL", "postgresql.bin_name.pg_ctl", EV_STR},
    {"POSTGRESQL_BIN_INITDB", "postgresql.bin_name.initdb", EV_STR},
    {"POSTGRESQL_BIN_PG_CONTROLDATA", "postgresql.bin_name.pg_controldata", EV_STR},
    {"POSTGRESQL_BIN_PG_BASEBACKUP", "postgresql.bin_name.pg_basebackup", EV_STR},
    {"POSTGRESQL_BIN_POSTGRES", "postgresql.bin_name.postgres", EV_STR},
    {"POSTGRESQL_BIN_PG_ISREADY", "postgresql.bin_name.pg_isready", EV_STR},
    {"POSTGRESQL_BIN_PG_REWIND", "postgresql.bin_name.pg_rewind", EV_STR},

    /* Patroni's raft DCS: read so that pgha can say that it does not support it */
    {"RAFT_DATA_DIR", "raft.data_dir", EV_STR},
    {"RAFT_SELF_ADDR", "raft.self_addr", EV_STR},
    {"RAFT_PARTNER_ADDRS", "raft.partner_addrs", EV_LIST},
    {"RAFT_PASSWORD", "raft.password", EV_STR},
    {"RAFT_BIND_ADDR", "raft.bind_addr", EV_STR},

    {"CITUS_GROUP", "citus.group", EV_SCALAR},
    {"CITUS_DATABASE", "citus.database", EV_STR},
};

static const struct {
    const char *suffix;
    EnvKind kind;
} etcd3_suffixes[] = {{"HOST", EV_STR},     {"HOSTS", EV_LIST}, {"PORT", EV_SCALAR},    {"USE_PROXIES", EV_SCALAR},
                      {"PROTOCOL", EV_STR}, {"SRV", EV_STR},    {"SRV_SUFFIX", EV_STR}, {"URL", EV_STR},
                      {"PROXY", EV_STR},    {"CACERT", EV_STR}, {"CERT", EV_STR},       {"KEY", EV_STR}};

/* Patroni's generic rule for the DCS sections, PATRONI_<DCS>_<SUFFIX> (config.py): every suffix it knows, with
 * how the value is parsed. The etcd3 ones above are read first; the others make a section pgha then reports
 * (only etcd3 is supported) or a key it warns about. */
static const struct {
    const char *suffix;
    EnvKind kind;
} dcs_suffixes[] = {
    {"HOST", EV_STR},
    {"HOSTS", EV_LIST},
    {"PORT", EV_SCALAR},
    {"USE_PROXIES", EV_SCALAR},
    {"PROTOCOL", EV_STR},
    {"SRV", EV_STR},
    {"SRV_SUFFIX", EV_STR},
    {"URL", EV_STR},
    {"PROXY", EV_STR},
    {"CACERT", EV_STR},
    {"CERT", EV_STR},
    {"KEY", EV_STR},
    {"VERIFY", EV_SCALAR},
    {"TOKEN", EV_STR},
    {"CHECKS", EV_LIST},
    {"DC", EV_STR},
    {"CONSISTENCY", EV_STR},
    {"REGISTER_SERVICE", EV_SCALAR},
    {"SERVICE_CHECK_INTERVAL", EV_STR},
    {"SERVICE_CHECK_TLS_SERVER_NAME", EV_STR},
    {"SERVICE_TAGS", EV_LIST},
    {"NAMESPACE", EV_STR},
    {"CONTEXT", EV_STR},
    {"USE_ENDPOINTS", EV_SCALAR},
    {"SCOPE_LABEL", EV_STR},
    {"ROLE_LABEL", EV_STR},
    {"POD_IP", EV_STR},
    {"PORTS", EV_LIST},
    {"LABELS", EV_MAP},
    {"BYPASS_API_SERVICE", EV_SCALAR},
    {"RETRIABLE_HTTP_CODES", EV_LIST},
    {"KEY_PASSWORD", EV_STR},
    {"USE_SSL", EV_SCALAR},
    {"SET_ACLS", EV_MAP},
    {"GROUP", EV_STR},
    {"DATABASE", EV_STR},
    {"LEADER_LABEL_VALUE", EV_STR},
    {"FOLLOWER_LABEL_VALUE", EV_STR},
    {"STANDBY_LEADER_LABEL_VALUE", EV_STR},
    {"TMP_ROLE_LABEL", EV_STR},
};

/* Sections whose PATRONI_<SECTION>_PASSWORD is never a user of PATRONI_<user>_PASSWORD (Patroni takes an
 * unread PATRONI_ETCD3_PASSWORD for a user "ETCD3"; pgha does not turn a DCS password into a user). */
static const char *const not_users[] = {"RESTAPI",     "CTL",       "POSTGRESQL", "LOG",        "CITUS",
                                        "REPLICATION", "SUPERUSER", "REWIND",     "ETCD",       "ETCD3",
                                        "CONSUL",      "ZOOKEEPER", "EXHIBITOR",  "KUBERNETES", "RAFT"};

typedef struct EnvCtx {
    EnvGetter get;
    EnvLister list;
    void *userdata;
    CfgSource *src;
} EnvCtx;

static char *default_getter(const char *name, void *userdata) {
    (void)userdata;
    const char *v = getenv(name);
    return v ? xstrdup(v) : NULL;
}

extern char **environ;

static void default_lister(StrList *ret, void *userdata) {
    (void)userdata;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq && eq > *e) {
            _cleanup_free_ char *name = xstrndup(*e, (size_t)(eq - *e));
            strlist_add(ret, name);
        }
    }
}

/* Look up PATRONI_<suffix> and PGHA_<suffix>; returns the value (caller frees) and its name. */
static char *lookup(EnvCtx *ctx, const char *suffix, char **ret_name) {
    char *value = NULL;
    *ret_name = NULL;
    const char *prefixes[] = {"PATRONI_", "PGHA_"};
    for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
        _cleanup_free_ char *name = xasprintf("%s%s", prefixes[i], suffix);
        char *v = ctx->get(name, ctx->userdata);
        if (!v)
            continue;
        strlist_add(&ctx->src->env_consumed, name);
        free(value);
        free(*ret_name);
        value = v;
        *ret_name = TAKE_PTR(name);
    }
    return value;
}

static YNode *make_node(const char *value, EnvKind kind, const char *origin) {
    switch (kind) {
    case EV_STR: return ynode_new_str(value, origin, 0);
    case EV_SCALAR: return ynode_new_scalar(value, false, origin, 0);
    case EV_LOGFORMAT:
        if (strstr(value, "%("))
            return ynode_new_str(value, origin, 0);
        __attribute__((fallthrough)); /* a YAML list of field names */
    case EV_LIST:
    case EV_MAP: {
        if (kind == EV_LIST && value[0] != '[')
            return ynode_new_str(value, origin, 0); /* "h1:2379,h2:2379" */
        char *err = NULL;
        YNode *n = yaml_parse_string(value, strlen(value), origin, &err);
        if (!n) {
            /* keep it as a string: the table then reports the wrong type with the variable's name */
            free(err);
            return ynode_new_str(value, origin, 0);
        }
        return n;
    }
    }
    return ynode_new_str(value, origin, 0);
}

/* Set a dotted path in a map, creating the intermediate maps. */
static void set_path(YNode *root, const char *path, YNode *val) {
    _cleanup_free_ char *copy = xstrdup(path);
    YNode *cur = root;
    char *save = NULL;
    char *tok = strtok_r(copy, ".", &save);
    for (char *next; tok; tok = next) {
        next = strtok_r(NULL, ".", &save);
        if (!next) {
            ynode_set(cur, tok, val);
            return;
        }
        YNode *child = ynode_get(cur, tok);
        if (!child || child->type != Y_MAP) {
            child = ynode_new(Y_MAP, val->file, 0);
            ynode_set(cur, tok, child);
        }
        cur = child;
    }
    ynode_free(val);
}

/* The map under `key` in `parent` (created, or replacing a scalar); keys are taken as they are (no dots). */
static YNode *child_map(YNode *parent, const char *key, const char *origin) {
    YNode *child = ynode_get(parent, key);
    if (!child || child->type != Y_MAP) {
        child = ynode_new(Y_MAP, origin, 0);
        ynode_set(parent, key, child);
    }
    return child;
}

/* A YAML list from a value: "a,b" is read as "[a,b]" (Patroni's _parse_list); NULL when it is not one. */
static YNode *parse_list(const char *value, const char *origin) {
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    _cleanup_free_ char *text = *p == '-' || strchr(value, '[') ? xstrdup(value) : xasprintf("[%s]", value);
    char *err = NULL;
    YNode *n = yaml_parse_string(text, strlen(text), origin, &err);
    free(err);
    if (n && n->type != Y_SEQ) {
        ynode_free(n);
        n = NULL;
    }
    return n;
}

/* Returns whether the variable was set. */
static bool apply(EnvCtx *ctx, YNode *overlay, const char *suffix, const char *path, EnvKind kind) {
    _cleanup_free_ char *name = NULL;
    _cleanup_free_ char *value = lookup(ctx, suffix, &name);
    if (!value)
        return false;
    _cleanup_free_ char *origin = xasprintf("environment variable %s", name);
    set_path(overlay, path, make_node(value, kind, origin));
    return true;
}

/* Patroni's generic PATRONI_<DCS>_<SUFFIX> rule for the variables not read yet (`names`: the environment). */
static void apply_dcs_generic(EnvCtx *ctx, YNode *overlay, const StrList *names) {
    for (size_t i = 0; i < names->n; i++) {
        const char *name = names->v[i];
        if (!str_startswith(name, "PATRONI_") || strlist_contains(&ctx->src->env_consumed, name))
            continue;
        const char *rest = name + strlen("PATRONI_");
        const char *us = strchr(rest, '_');
        if (!us || us == rest)
            continue;
        _cleanup_free_ char *section = xstrndup(rest, (size_t)(us - rest));
        const char *suffix = us + 1;
        if (strcmp(section, "CITUS") == 0)
            continue; /* only GROUP and DATABASE, read above */
        for (size_t k = 0; k < ELEMENTSOF(dcs_suffixes); k++) {
            if (strcmp(suffix, dcs_suffixes[k].suffix) != 0)
                continue;
            _cleanup_free_ char *value = ctx->get(name, ctx->userdata);
            if (!value)
                break;
            strlist_add(&ctx->src->env_consumed, name);
            _cleanup_free_ char *origin = xasprintf("environment variable %s", name);
            _cleanup_free_ char *lsection = xstrdup(section), *key = xstrdup(suffix);
            for (char *p = lsection; *p; p++)
                *p = (char)tolower((unsigned char)*p);
            for (char *p = key; *p; p++)
                *p = (char)tolower((unsigned char)*p);
            YNode *v = dcs_suffixes[k].kind == EV_LIST ? parse_list(value, origin) : NULL;
            ynode_set(child_map(overlay, lsection, origin), key,
                      v ? v : make_node(value, dcs_suffixes[k].kind, origin));
            break;
        }
    }
}

/* PATRONI_<user>_PASSWORD and PATRONI_<user>_OPTIONS: Patroni's bootstrap.users (removed in Patroni 4.0, so
 * config validation says that they are ignored). Read (and taken out of the environment) all the same. */
static void apply_users(EnvCtx *ctx, YNode *overlay, const StrList *names) {
    for (size_t i = 0; i < names->n; i++) {
        const char *name = names->v[i];
        size_t len = strlen(name), fixed = strlen("PATRONI_") + strlen("_PASSWORD");
        if (len <= fixed || !str_startswith(name, "PATRONI_") ||
            strcmp(name + len - strlen("_PASSWORD"), "_PASSWORD") != 0 ||
            strlist_contains(&ctx->src->env_consumed, name))
            continue;
        size_t ulen = len - fixed;
        _cleanup_free_ char *user = xstrndup(name + strlen("PATRONI_"), ulen);
        bool excluded = false;
        for (size_t k = 0; k < ELEMENTSOF(not_users); k++)
            excluded = excluded || strcmp(user, not_users[k]) == 0;
        if (excluded)
            continue;
        _cleanup_free_ char *password = ctx->get(name, ctx->userdata);
        if (!password || !*password)
            continue;
        strlist_add(&ctx->src->env_consumed, name);
        _cleanup_free_ char *origin = xasprintf("environment variable %s", name);
        YNode *u = child_map(child_map(child_map(overlay, "bootstrap", origin), "users", origin), user, origin);
        ynode_set(u, "password", ynode_new_str(password, origin, 0));
        _cleanup_free_ char *oname = xasprintf("PATRONI_%s_OPTIONS", user);
        _cleanup_free_ char *options = ctx->get(oname, ctx->userdata);
        if (options) {
            strlist_add(&ctx->src->env_consumed, oname);
            _cleanup_free_ char *oorigin = xasprintf("environment variable %s", oname);
            YNode *list = parse_list(options, oorigin);
            if (list && list->n > 0)
                ynode_set(u, "options", list);
            else
                ynode_free(list);
        }
    }
}

void cfg_source_init(CfgSource *src, const char *path, EnvGetter get, void *userdata) {
    cfg_source_init_env(src, path, get, get ? NULL : default_lister, userdata);
}

void cfg_source_init_env(CfgSource *src, const char *path, EnvGetter get, EnvLister list, void *userdata) {
    *src = (CfgSource){0};
    src->path = xstrdup(path);
    EnvCtx ctx = {.get = get ? get : default_getter, .list = list, .userdata = userdata, .src = src};
    YNode *overlay = ynode_new(Y_MAP, "environment", 0);

    for (size_t i = 0; i < ELEMENTSOF(env_map); i++)
        apply(&ctx, overlay, env_map[i].suffix, env_map[i].path, env_map[i].kind);

    /* PATRONI_<USER>_<KEY> for every postgresql.authentication.<user>.<key> of the table */
    static const char auth_prefix[] = "postgresql.authentication.";
    for (size_t i = 0; i < cfg_local.n; i++) {
        const CfgEntry *e = &cfg_local.v[i];
        if (e->type != CT_STR || !str_startswith(e->path, auth_prefix))
            continue;
        _cleanup_free_ char *suffix = xstrdup(e->path + strlen(auth_prefix));
        for (char *p = suffix; *p; p++)
            *p = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
        apply(&ctx, overlay, suffix, e->path, EV_STR);
    }

    bool etcd3_any = false;
    for (size_t i = 0; i < ELEMENTSOF(etcd3_suffixes); i++) {
        _cleanup_free_ char *suffix = xasprintf("ETCD3_%s", etcd3_suffixes[i].suffix);
        _cleanup_free_ char *dotted = xasprintf("etcd3.%s", etcd3_suffixes[i].suffix);
        for (char *p = dotted; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        if (apply(&ctx, overlay, suffix, dotted, etcd3_suffixes[i].kind))
            etcd3_any = true;
    }
    /* Patroni's quirk: credentials only count when another PATRONI_ETCD3_* is set */
    if (etcd3_any) {
        apply(&ctx, overlay, "ETCD3_USERNAME", "etcd3.username", EV_STR);
        apply(&ctx, overlay, "ETCD3_PASSWORD", "etcd3.password", EV_STR);
    }

    /* the rest needs the names in the environment */
    if (ctx.list) {
        StrList names = {0};
        ctx.list(&names, ctx.userdata);
        apply_dcs_generic(&ctx, overlay, &names);
        apply_users(&ctx, overlay, &names);
        strlist_clear(&names);
    }

    _cleanup_free_ char *cname = NULL;
    src->env_configuration = lookup(&ctx, "CONFIGURATION", &cname);
    src->env_overlay = overlay;
}

void cfg_source_free(CfgSource *src) {
    free(src->path);
    ynode_free(src->env_overlay);
    free(src->env_configuration);
    strlist_clear(&src->env_consumed);
    *src = (CfgSource){0};
}

void cfg_source_unset_env(const CfgSource *src) {
    for (size_t i = 0; i < src->env_consumed.n; i++)
        (void)unsetenv(src->env_consumed.v[i]);
}
