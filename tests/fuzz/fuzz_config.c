/* libFuzzer target: the YAML configuration (src/common/yamltree.c, config*.c). The input is loaded the way
 * `pgha` loads patroni.yml: the YAML text (as PATRONI_CONFIGURATION, so no file is written) with the
 * PATRONI_* / PGHA_* environment overrides merged in, then checked against the table of settings; an
 * accepted configuration is dumped, compared with a reference one (the reload diff), its listen addresses
 * and member name are parsed, and its log settings are applied to format one record. The tree is also
 * parsed as a dynamic configuration (pgha-ctl edit-config) and taken through JSON and back.
 *
 * Input: sections separated by a line "%%": the YAML text, then environment variables, one per section,
 * as "NAME=VALUE" (the value may span lines). No file, directory or network address is touched. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "common/config.h"
#include "common/json.h"
#include "common/yamltree.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reference a reloaded configuration is compared with. */
static const char reference_yaml[] = "scope: batman\n"
                                     "name: pg1\n"
                                     "restapi:\n"
                                     "  listen: 127.0.0.1:8008\n"
                                     "  connect_address: 127.0.0.1:8008\n"
                                     "etcd3:\n"
                                     "  hosts: 127.0.0.1:2379\n"
                                     "postgresql:\n"
                                     "  listen: 127.0.0.1:5432\n"
                                     "  connect_address: 127.0.0.1:5432\n"
                                     "  data_dir: /var/lib/postgresql/data\n"
                                     "  authentication:\n"
                                     "    superuser: {username: postgres, password: pw}\n"
                                     "    replication: {username: replicator, password: pw}\n"
                                     "  parameters:\n"
                                     "    work_mem: 4MB\n"
                                     "tags:\n"
                                     "  nofailover: false\n";

static PghaConfig reference;
static bool have_reference;

typedef struct Env {
    const FuzzSections *secs;
} Env;

/* PATRONI_CONFIGURATION is the first section unless a variable section sets it; the others are looked up
 * among the "NAME=VALUE" sections (the last one wins). */
static char *env_get(const char *name, void *userdata) {
    const Env *env = userdata;
    const char *found = NULL;
    size_t nl = strlen(name);
    for (size_t i = 1; i < env->secs->n; i++) {
        const FuzzSection *s = &env->secs->v[i];
        if (s->len > nl && strncmp(s->s, name, nl) == 0 && s->s[nl] == '=')
            found = s->s + nl + 1;
    }
    if (found)
        return xstrdup(found);
    if (strcmp(name, "PATRONI_CONFIGURATION") == 0 && env->secs->n > 0)
        return xstrdup(env->secs->v[0].s);
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    char *err = NULL;
    YNode *t = yaml_parse_string(reference_yaml, strlen(reference_yaml), "reference", &err);
    CfgDiag diag = {0};
    have_reference = t && config_from_tree(t, "reference", &reference, &diag) == 0;
    if (!have_reference) {
        fprintf(stderr, "fuzz_config: the reference configuration does not load: %s\n", err ? err : "invalid");
        abort();
    }
    ynode_free(t);
    cfg_diag_clear(&diag);
    return 0;
}

/* The log settings of the configuration, applied as the agent applies them (never to a file), and one
 * record formatted with them. */
static void use_log_settings(const PghaConfig *cfg) {
    LogSettings s;
    agent_log_settings(cfg, &s);
    s.dir = NULL;
    cJSON *fmt = NULL, *fields = NULL;
    if (cfg->log.format && cfg->log.format->type != Y_STR)
        fmt = ynode_to_json(cfg->log.format);
    if (cfg->log.static_fields)
        fields = ynode_to_json(cfg->log.static_fields);
    s.format_json = fmt;
    s.static_fields = fields;
    (void)log_configure(&s);
    free(log_format_record(LOG_WARNING, 1700000000123456ULL, "src/agent/ha.c", 42, "ha_cycle",
                           "no action. I am (pg1), the leader with the lock"));
    cJSON_Delete(fmt);
    cJSON_Delete(fields);
    fuzz_quiet_logs();
}

static void use_config(const PghaConfig *cfg) {
    free(config_dump(cfg, false));
    free(config_dump(cfg, true));
    CfgChange *changes = NULL;
    size_t n = config_diff(&reference, cfg, &changes);
    config_changes_free(changes, n);
    char *host = NULL;
    int port = 0;
    if (cfg->restapi.listen && parse_host_port(cfg->restapi.listen, -1, &host, &port) == 0)
        free(host);
    if (cfg->postgresql.listen) {
        StrList addrs = {0};
        (void)parse_listen(cfg->postgresql.listen, &addrs, &port);
        strlist_clear(&addrs);
    }
    if (cfg->name)
        free(slot_name_from_member_name(cfg->name));
    use_log_settings(cfg);
}

/* The tree through JSON and back (the dynamic configuration travels as JSON through the DCS). */
static void use_tree(const YNode *root) {
    cJSON *j = ynode_to_json(root);
    char *text = json_dumps(j, true);
    cJSON *back = json_parse(text);
    if (!back) {
        fprintf(stderr, "json_dumps wrote what json_parse refuses: %s\n", text);
        abort();
    }
    YNode *again = ynode_from_json(back, "json");
    ynode_free(again);
    cJSON_Delete(back);
    free(text);
    cJSON_Delete(j);
    if (root->type == Y_MAP) {
        DynConfig dyn;
        CfgDiag diag = {0};
        (void)dyn_config_parse(root, &dyn, &diag);
        dyn_config_free(&dyn);
        cfg_diag_clear(&diag);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FuzzSections secs;
    fuzz_split(data, size, &secs);
    Env env = {&secs};
    CfgSource src;
    cfg_source_init(&src, NULL, env_get, &env);
    CfgDiag diag = {0};
    YNode *root = cfg_source_load_tree(&src, &diag);
    if (root) {
        use_tree(root);
        PghaConfig cfg;
        if (config_from_tree(root, "PATRONI_CONFIGURATION", &cfg, &diag) == 0) {
            use_config(&cfg);
            config_keep_restart_values(&cfg, &reference);
        }
        config_free(&cfg);
        ynode_free(root);
    }
    cfg_diag_log(&diag);
    cfg_diag_clear(&diag);
    cfg_source_free(&src);
    fuzz_sections_free(&secs);
    return 0;
}
