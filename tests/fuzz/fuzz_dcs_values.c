/* libFuzzer target: the DCS value codec (src/dcs/cluster.c). Every key Patroni keeps under the cluster
 * prefix (members, leader, /sync, /status, /optime/leader, /history, /config, /failover, /failsafe,
 * /initialize) is decoded into the cluster view, and the view is then used the way the agent and the REST
 * API use it: the member helpers, the encoders (with a round-trip check), the dynamic configuration parsed
 * from /config, the /cluster document, the clone source and the quorum pre-promotion.
 *
 * Input: sections separated by a line "%%"; each is one key: a first line "<key relative to the cluster
 * base> [<mod_revision> [<lease>]]", then the value (any bytes, NUL included). A section without a second
 * line is a key without a value. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/decide.h"
#include "agent/sync.h"
#include "common/config.h"
#include "common/json.h"
#include "common/yamltree.h"
#include "dcs/cluster.h"
#include "fuzz_common.h"
#include "restapi/restapi.h"

#define BASE "/service/batman"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    return 0;
}

/* encode(decode(encode(decode(x)))) == encode(decode(x)): what pgha writes, it reads back unchanged. */
static void check_member_round_trip(const Member *m) {
    char *once = cluster_encode_member(m);
    Member again = {0};
    member_decode(&again, m->name, once);
    char *twice = cluster_encode_member(&again);
    if (strcmp(once, twice) != 0) {
        fprintf(stderr, "member round trip differs:\n  %s\n  %s\n", once, twice);
        abort();
    }
    member_free_contents(&again);
    free(once);
    free(twice);
}

static void use_member(const Member *m) {
    char *host = NULL;
    int port = 0;
    if (member_conn_host_port(m, &host, &port) && (port <= 0 || port > 65535 || !host || !*host))
        abort();
    free(host);
    (void)member_failover_priority(m);
    (void)member_nofailover(m);
    (void)member_tag_bool(m, "nosync");
    (void)member_tag_bool(m, "noloadbalance");
    (void)member_tag_bool(m, "clonefrom");
    check_member_round_trip(m);
}

static void use_dynamic_config(const Cluster *c) {
    if (!c->config)
        return;
    char *compact = json_dumps(c->config, false);
    cJSON *back = json_parse(compact);
    if (!back) {
        fprintf(stderr, "json_dumps wrote what json_parse refuses: %s\n", compact);
        abort();
    }
    cJSON_Delete(back);
    free(compact);
    YNode *n = ynode_from_json(c->config, "DCS /config");
    DynConfig dyn;
    CfgDiag diag = {0};
    (void)dyn_config_parse_ex(n, false, &dyn, &diag);
    dyn_config_free(&dyn);
    cfg_diag_clear(&diag);
    (void)dyn_config_parse_ex(n, true, &dyn, &diag);
    dyn_config_free(&dyn);
    cfg_diag_clear(&diag);
    ynode_free(n);
}

static void use_cluster(const Cluster *c) {
    for (size_t i = 0; i < c->n_members; i++) {
        use_member(&c->members[i]);
        (void)sync_matches(&c->sync, c->members[i].name);
    }
    (void)cluster_is_unlocked(c);
    (void)cluster_timeline(c);
    (void)failover_is_empty(&c->failover);
    free(cluster_encode_failover(c->failover.leader, c->failover.candidate, c->failover.scheduled_at));
    free(cluster_encode_sync(c->sync.leader, c->sync.quorum, &c->sync.members));
    free(cluster_encode_status(c->status.optime, c->status.slots, &c->status.retain_slots));
    if (c->history)
        free(json_dumps(c->history, true));
    if (c->failsafe)
        free(json_dumps(c->failsafe, true));
    use_dynamic_config(c);
    bool paused = false;
    if (c->config)
        (void)json_get_bool(c->config, "pause", &paused);
    free(cluster_to_json(c, "batman", paused));
    if (c->leader)
        (void)decide_clone_source(c, "pg2");
    for (int strict = 0; strict < 2; strict++) {
        StrList names = {0};
        long long num = 0;
        sync_quorum_pre_promote(&c->sync, "pg2", strict, &names, &num);
        strlist_clear(&names);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FuzzSections secs;
    fuzz_split(data, size, &secs);
    DcsKv kvs[FUZZ_MAX_SECTIONS];
    size_t n = 0;
    for (size_t i = 0; i < secs.n; i++) {
        const char *value;
        size_t value_len;
        char *head = fuzz_first_line(&secs.v[i], &value, &value_len);
        /* "<rel> [rev [lease]]" */
        char *save = NULL;
        const char *rel = strtok_r(head, " ", &save);
        const char *rev = strtok_r(NULL, " ", &save);
        const char *lease = strtok_r(NULL, " ", &save);
        DcsKv *kv = &kvs[n++];
        *kv = (DcsKv){0};
        kv->key = xasprintf(BASE "/%s", rel ? rel : "");
        if (value) {
            kv->value = xmalloc(value_len + 1);
            memcpy(kv->value, value, value_len);
            kv->value[value_len] = '\0';
            kv->value_len = value_len;
        }
        long long v = 0;
        kv->mod_revision = rev && parse_ll(rev, &v) == 0 ? v : (long long)i + 1;
        kv->create_revision = kv->mod_revision;
        kv->lease = lease ? xstrdup(lease) : NULL;
        free(head);
    }
    fuzz_sections_free(&secs);

    Cluster *c = cluster_from_kvs(kvs, n, BASE);
    use_cluster(c);
    cluster_free(c);
    for (size_t i = 0; i < n; i++)
        dcs_kv_free_contents(&kvs[i]);
    return 0;
}
