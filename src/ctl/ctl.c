/* pgha-ctl: the operator's CLI, mirroring patronictl (spec §5). */
#include "ctl/ctl.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "dcs/dcs.h"

#define DEFAULT_CTL_CONFIG "~/.config/patroni/patronictl.yaml"

typedef struct Ctl {
    const char *config_file;
    const char *format; /* pretty, tsv, json, yaml */
    PghaConfig cfg;
    CfgSource src;
    Dcs *dcs;
} Ctl;

static void usage(FILE *f) {
    fprintf(f, "Usage: pgha-ctl [OPTIONS] COMMAND [ARGS]...\n"
               "\n"
               "Command-line interface for a pgha/Patroni cluster (mirrors patronictl).\n"
               "\n"
               "Options:\n"
               "  -c, --config-file PATH   configuration file (default: $PATRONICTL_CONFIG_FILE or\n"
               "                           " DEFAULT_CTL_CONFIG ")\n"
               "  --version                print the version and exit\n"
               "  -h, --help               show this help and exit\n"
               "\n"
               "Commands:\n"
               "  list [-f pretty|tsv|json] [-e] [-t] [CLUSTER]   the members and their state\n"
               "  history [-f pretty|tsv|json] [CLUSTER]          the timeline history\n"
               "  show-config [CLUSTER]                           the dynamic configuration\n"
               "  version                                         print the version\n");
}

static int load(Ctl *c) {
    const char *path = c->config_file;
    _cleanup_free_ char *expanded = NULL;
    bool explicit_file = path != NULL;
    if (!path)
        path = DEFAULT_CTL_CONFIG;
    if (path[0] == '~') {
        const char *home = getenv("HOME");
        expanded = xasprintf("%s%s", home ? home : "", path + 1);
        path = expanded;
    }
    if (explicit_file && access(path, R_OK) < 0) {
        fprintf(stderr, "pgha-ctl: cannot read the configuration file %s\n", path);
        return -1;
    }
    cfg_source_init(&c->src, access(path, R_OK) == 0 ? path : NULL, NULL, NULL);
    CfgDiag diag = {0};
    YNode *root = cfg_source_load_tree(&c->src, &diag);
    for (size_t i = 0; i < diag.errors.n; i++)
        fprintf(stderr, "pgha-ctl: %s\n", diag.errors.v[i]);
    if (!root || diag.errors.n) {
        ynode_free(root);
        cfg_diag_clear(&diag);
        return -1;
    }
    /* patronictl needs only scope, namespace, the DCS section and ctl/restapi credentials:
     * fill the keys the agent would require so that the same parser can be used */
    static const char *const fill[][2] = {{"name", "pgha-ctl"}, {"scope", ""}};
    for (size_t i = 0; i < ELEMENTSOF(fill); i++)
        if (!ynode_get(root, fill[i][0]))
            ynode_set(root, fill[i][0], ynode_new_str(fill[i][1], "pgha-ctl", 0));
    if (!ynode_get(root, "restapi")) {
        YNode *r = ynode_new(Y_MAP, "pgha-ctl", 0);
        ynode_set(r, "listen", ynode_new_str("127.0.0.1:8008", "pgha-ctl", 0));
        ynode_set(root, "restapi", r);
    }
    if (!ynode_get(root, "postgresql")) {
        YNode *p = ynode_new(Y_MAP, "pgha-ctl", 0);
        ynode_set(p, "listen", ynode_new_str("127.0.0.1:5432", "pgha-ctl", 0));
        ynode_set(p, "data_dir", ynode_new_str("/nonexistent", "pgha-ctl", 0));
        YNode *a = ynode_new(Y_MAP, "pgha-ctl", 0);
        YNode *su = ynode_new(Y_MAP, "pgha-ctl", 0), *re = ynode_new(Y_MAP, "pgha-ctl", 0);
        ynode_set(su, "username", ynode_new_str("postgres", "pgha-ctl", 0));
        ynode_set(re, "username", ynode_new_str("replicator", "pgha-ctl", 0));
        ynode_set(a, "superuser", su);
        ynode_set(a, "replication", re);
        ynode_set(p, "authentication", a);
        ynode_set(root, "postgresql", p);
    }
    cfg_diag_clear(&diag);
    int r = config_from_tree(root, path, &c->cfg, &diag);
    ynode_free(root);
    for (size_t i = 0; i < diag.errors.n; i++)
        fprintf(stderr, "pgha-ctl: %s\n", diag.errors.v[i]);
    cfg_diag_clear(&diag);
    return r < 0 ? -1 : 0;
}

static int connect_dcs(Ctl *c, const char *cluster_name) {
    if (cluster_name) {
        free(c->cfg.scope);
        c->cfg.scope = xstrdup(cluster_name);
    }
    if (!c->cfg.scope || !*c->cfg.scope) {
        fprintf(stderr, "pgha-ctl: no cluster name: give CLUSTER or set scope in the configuration\n");
        return -1;
    }
    char *err = NULL;
    c->dcs = dcs_new(&c->cfg, &err);
    if (!c->dcs) {
        fprintf(stderr, "pgha-ctl: %s\n", err);
        free(err);
        return -1;
    }
    dcs_set_timings(c->dcs, 30, 10, 10);
    if (dcs_connect(c->dcs) < 0) {
        fprintf(stderr, "pgha-ctl: %s\n", dcs_error(c->dcs));
        return -1;
    }
    return 0;
}

/* ---- tables ---- */

typedef struct Table {
    StrList headers;
    StrList *rows;
    size_t n_rows;
    bool *right; /* right-aligned columns */
} Table;

static void table_add_row(Table *t, StrList *row) {
    t->rows = xrealloc(t->rows, (t->n_rows + 1) * sizeof(StrList));
    t->rows[t->n_rows++] = *row;
    *row = (StrList){0};
}

static void table_free(Table *t) {
    strlist_clear(&t->headers);
    for (size_t i = 0; i < t->n_rows; i++)
        strlist_clear(&t->rows[i]);
    free(t->rows);
    free(t->right);
}

static size_t utf8_len(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

static void print_rule(const size_t *w, size_t cols, const char *title) {
    StrBuf b;
    sb_init(&b);
    sb_addc(&b, '+');
    for (size_t i = 0; i < cols; i++) {
        for (size_t k = 0; k < w[i] + 2; k++)
            sb_addc(&b, '-');
        sb_addc(&b, '+');
    }
    if (title) {
        /* the title is written into the top border after the first '+' */
        size_t tl = strlen(title);
        if (tl > b.len - 2)
            tl = b.len - 2;
        memcpy(b.s + 1, title, tl);
    }
    puts(b.s);
    sb_free(&b);
}

static void table_print_pretty(const Table *t, const char *title) {
    size_t cols = t->headers.n;
    size_t *w = xcalloc(cols, sizeof(size_t));
    for (size_t i = 0; i < cols; i++) {
        w[i] = utf8_len(t->headers.v[i]);
        for (size_t r = 0; r < t->n_rows; r++)
            if (utf8_len(t->rows[r].v[i]) > w[i])
                w[i] = utf8_len(t->rows[r].v[i]);
    }
    print_rule(w, cols, title);
    for (size_t r = 0; r <= t->n_rows; r++) {
        const StrList *row = r == 0 ? &t->headers : &t->rows[r - 1];
        StrBuf b;
        sb_init(&b);
        sb_addc(&b, '|');
        for (size_t i = 0; i < cols; i++) {
            size_t pad = w[i] - utf8_len(row->v[i]);
            sb_addc(&b, ' ');
            if (t->right[i] && r > 0)
                for (size_t k = 0; k < pad; k++)
                    sb_addc(&b, ' ');
            sb_add(&b, row->v[i]);
            if (!(t->right[i] && r > 0))
                for (size_t k = 0; k < pad; k++)
                    sb_addc(&b, ' ');
            sb_add(&b, " |");
        }
        puts(b.s);
        sb_free(&b);
        if (r == 0)
            print_rule(w, cols, NULL);
    }
    print_rule(w, cols, NULL);
    free(w);
}

static void table_print_tsv(const Table *t) {
    for (size_t r = 0; r <= t->n_rows; r++) {
        const StrList *row = r == 0 ? &t->headers : &t->rows[r - 1];
        _cleanup_free_ char *line = strlist_join(row, "\t");
        puts(line);
    }
}

static void table_print_json(const Table *t, const bool *numeric) {
    cJSON *arr = cJSON_CreateArray();
    for (size_t r = 0; r < t->n_rows; r++) {
        cJSON *o = cJSON_CreateObject();
        for (size_t i = 0; i < t->headers.n; i++) {
            const char *v = t->rows[r].v[i];
            if (!*v)
                continue; /* keys with empty values are omitted */
            long long n;
            if (numeric[i] && parse_ll(v, &n) == 0)
                cJSON_AddItemToObject(o, t->headers.v[i], cJSON_CreateRaw(v));
            else
                cJSON_AddStringToObject(o, t->headers.v[i], v);
        }
        cJSON_AddItemToArray(arr, o);
    }
    char *s = json_dumps(arr, true);
    puts(s);
    free(s);
    cJSON_Delete(arr);
}

static int cmp_members(const void *a, const void *b) {
    return strcmp((*(const Member *const *)a)->name, (*(const Member *const *)b)->name);
}

/* Python's round(): halves to even. */
static long long py_round(double x) {
    double r = nearbyint(x);
    return (long long)r;
}

/* synchronous_mode: quorum in /config (patronictl labels the /sync members "Quorum Standby" then) */
static bool quorum_mode(const Cluster *cl) {
    const cJSON *v = cl->config ? cJSON_GetObjectItemCaseSensitive(cl->config, "synchronous_mode") : NULL;
    return cJSON_IsString(v) && strcasecmp(v->valuestring, "quorum") == 0;
}

static int cmd_list(Ctl *c, int argc, char **argv) {
    bool extended = false, timestamp = false;
    const char *fmt = c->format;
    int o;
    optind = 1;
    static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
                                         {"extended", no_argument, NULL, 'e'},
                                         {"timestamp", no_argument, NULL, 't'},
                                         {0}};
    while ((o = getopt_long(argc, argv, "f:et", opts, NULL)) != -1) {
        switch (o) {
        case 'f': fmt = optarg; break;
        case 'e': extended = true; break;
        case 't': timestamp = true; break;
        default: return 2;
        }
    }
    const char *cluster_name = optind < argc ? argv[optind] : NULL;
    if (connect_dcs(c, cluster_name) < 0)
        return 1;
    Cluster *cl = NULL;
    if (dcs_read_cluster(c->dcs, true, &cl) < 0) {
        fprintf(stderr, "pgha-ctl: %s\n", dcs_error(c->dcs));
        return 1;
    }
    const Member **sorted = xcalloc(cl->n_members + 1, sizeof(Member *));
    for (size_t i = 0; i < cl->n_members; i++)
        sorted[i] = &cl->members[i];
    qsort(sorted, cl->n_members, sizeof(Member *), cmp_members);
    /* host:port for everybody when a port differs from 5432 or two members share a host */
    bool with_port = false;
    for (size_t i = 0; i < cl->n_members; i++) {
        char *hi = NULL;
        int pi = 0;
        if (member_conn_host_port(sorted[i], &hi, &pi)) {
            if (pi != 5432)
                with_port = true;
            for (size_t k = 0; k < i; k++) {
                char *hk = NULL;
                int pk = 0;
                if (member_conn_host_port(sorted[k], &hk, &pk) && strcmp(hk, hi) == 0)
                    with_port = true;
                free(hk);
            }
        }
        free(hi);
    }
    bool any_pending = false, any_tags = false;
    for (size_t i = 0; i < cl->n_members; i++) {
        any_pending |= sorted[i]->pending_restart;
        any_tags |= sorted[i]->tags && cJSON_GetArraySize(sorted[i]->tags) > 0;
    }
    bool show_pending = extended || any_pending, show_tags = extended || any_tags;
    Table t = {0};
    const char *hdrs[] = {"Cluster", "Member", "Host", "Role", "State", "TL", "Lag in MB"};
    for (size_t i = 0; i < ELEMENTSOF(hdrs); i++)
        strlist_add(&t.headers, hdrs[i]);
    if (show_pending)
        strlist_add(&t.headers, "Pending restart");
    if (show_tags)
        strlist_add(&t.headers, "Tags");
    t.right = xcalloc(t.headers.n, sizeof(bool));
    bool *numeric = xcalloc(t.headers.n, sizeof(bool));
    t.right[5] = t.right[6] = numeric[5] = numeric[6] = true;
    const char *leader = cl->leader ? cl->leader->name : NULL;
    for (size_t i = 0; i < cl->n_members; i++) {
        const Member *m = sorted[i];
        StrList row = {0};
        strlist_add(&row, c->cfg.scope);
        strlist_add(&row, m->name);
        char *host = NULL;
        int port = 0;
        if (member_conn_host_port(m, &host, &port)) {
            _cleanup_free_ char *hp = with_port ? xasprintf("%s:%d", host, port) : xstrdup(host);
            strlist_add(&row, hp);
        } else {
            strlist_add(&row, "");
        }
        free(host);
        bool is_leader = leader && strcmp(leader, m->name) == 0;
        const char *role = "Replica";
        if (is_leader)
            role = streq(m->role, "standby_leader") ? "Standby Leader" : "Leader";
        else if (cl->sync.leader && sync_matches(&cl->sync, m->name))
            role = quorum_mode(cl) ? "Quorum Standby" : "Sync Standby";
        strlist_add(&row, role);
        const char *state = m->state ? m->state : "";
        if (!(is_leader && !streq(m->role, "standby_leader")) && m->replication_state)
            state = m->replication_state;
        strlist_add(&row, state);
        char buf[64] = "";
        if (m->has_timeline)
            snprintf(buf, sizeof buf, "%lld", m->timeline);
        strlist_add(&row, buf);
        buf[0] = '\0';
        if (!is_leader) {
            if (!m->has_xlog_location)
                snprintf(buf, sizeof buf, "unknown");
            else {
                long long lag = (cl->status.has_optime ? cl->status.optime : 0) - m->xlog_location;
                snprintf(buf, sizeof buf, "%lld", py_round((double)(lag > 0 ? lag : 0) / 1048576.0));
            }
        }
        strlist_add(&row, buf);
        if (show_pending)
            strlist_add(&row, m->pending_restart ? "*" : "");
        if (show_tags) {
            if (m->tags && cJSON_GetArraySize(m->tags) > 0) {
                /* flow-style YAML for one line */
                StrBuf b;
                sb_init(&b);
                sb_addc(&b, '{');
                const cJSON *tg;
                bool first = true;
                cJSON_ArrayForEach(tg, m->tags) {
                    sb_addf(&b, "%s%s: ", first ? "" : ", ", tg->string);
                    first = false;
                    if (cJSON_IsString(tg))
                        sb_add(&b, tg->valuestring);
                    else {
                        char *v = json_dumps(tg, false);
                        sb_add(&b, v);
                        free(v);
                    }
                }
                sb_addc(&b, '}');
                strlist_add(&row, b.s);
                sb_free(&b);
            } else {
                strlist_add(&row, "");
            }
        }
        table_add_row(&t, &row);
    }
    if (timestamp) {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char ts[32];
        strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
        puts(ts);
    }
    int rc = 0;
    if (!fmt || strcmp(fmt, "pretty") == 0) {
        /* the Cluster column goes into the title */
        for (size_t r = 0; r < t.n_rows; r++) {
            free(t.rows[r].v[0]);
            memmove(&t.rows[r].v[0], &t.rows[r].v[1], (t.rows[r].n - 1) * sizeof(char *));
            t.rows[r].n--;
        }
        free(t.headers.v[0]);
        memmove(&t.headers.v[0], &t.headers.v[1], (t.headers.n - 1) * sizeof(char *));
        t.headers.n--;
        memmove(&t.right[0], &t.right[1], t.headers.n * sizeof(bool));
        const char *init = !cl->has_initialize ? "uninitialized" : cl->initialize[0] ? cl->initialize : "initializing";
        _cleanup_free_ char *title = xasprintf(" Cluster: %s (%s) ", c->cfg.scope, init);
        table_print_pretty(&t, title);
        bool paused = false;
        if (cl->config)
            (void)json_get_bool(cl->config, "pause", &paused);
        if (paused)
            puts(" Maintenance mode: on");
        if (cl->failover.present && cl->failover.scheduled_at) {
            printf(" Switchover scheduled at: %s\n", cl->failover.scheduled_at);
            if (cl->failover.leader)
                printf("                    from: %s\n", cl->failover.leader);
            if (cl->failover.candidate)
                printf("                      to: %s\n", cl->failover.candidate);
        }
    } else if (strcmp(fmt, "tsv") == 0) {
        table_print_tsv(&t);
    } else if (strcmp(fmt, "json") == 0) {
        table_print_json(&t, numeric);
    } else {
        fprintf(stderr, "pgha-ctl: unknown format '%s' (pretty, tsv, json)\n", fmt);
        rc = 2;
    }
    free(numeric);
    free(sorted);
    table_free(&t);
    cluster_free(cl);
    return rc;
}

static int cmd_history(Ctl *c, int argc, char **argv) {
    const char *fmt = c->format;
    int o;
    optind = 1;
    static const struct option opts[] = {{"format", required_argument, NULL, 'f'}, {0}};
    while ((o = getopt_long(argc, argv, "f:", opts, NULL)) != -1) {
        if (o == 'f')
            fmt = optarg;
        else
            return 2;
    }
    if (connect_dcs(c, optind < argc ? argv[optind] : NULL) < 0)
        return 1;
    Cluster *cl = NULL;
    if (dcs_read_cluster(c->dcs, true, &cl) < 0) {
        fprintf(stderr, "pgha-ctl: %s\n", dcs_error(c->dcs));
        return 1;
    }
    Table t = {0};
    const char *hdrs[] = {"TL", "LSN", "Reason", "Timestamp", "New Leader"};
    for (size_t i = 0; i < ELEMENTSOF(hdrs); i++)
        strlist_add(&t.headers, hdrs[i]);
    t.right = xcalloc(t.headers.n, sizeof(bool));
    bool numeric[5] = {true, true, false, false, false};
    t.right[0] = t.right[1] = true;
    const cJSON *e;
    cJSON_ArrayForEach(e, cl->history) {
        StrList row = {0};
        for (int i = 0; i < 5; i++) {
            const cJSON *v = cJSON_GetArrayItem(e, i);
            if (!v)
                strlist_add(&row, "");
            else if (cJSON_IsString(v))
                strlist_add(&row, v->valuestring);
            else {
                char *s = json_dumps(v, false);
                strlist_add(&row, s);
                free(s);
            }
        }
        table_add_row(&t, &row);
    }
    if (fmt && strcmp(fmt, "tsv") == 0)
        table_print_tsv(&t);
    else if (fmt && strcmp(fmt, "json") == 0)
        table_print_json(&t, numeric);
    else
        table_print_pretty(&t, NULL);
    table_free(&t);
    cluster_free(cl);
    return 0;
}

static int cmd_show_config(Ctl *c, int argc, char **argv) {
    if (connect_dcs(c, argc > 1 ? argv[1] : NULL) < 0)
        return 1;
    Cluster *cl = NULL;
    if (dcs_read_cluster(c->dcs, true, &cl) < 0) {
        fprintf(stderr, "pgha-ctl: %s\n", dcs_error(c->dcs));
        return 1;
    }
    if (!cl->has_config) {
        fprintf(stderr, "pgha-ctl: the cluster has no /config\n");
        cluster_free(cl);
        return 1;
    }
    char *s = cJSON_Print(cl->config);
    puts(s);
    free(s);
    cluster_free(cl);
    return 0;
}

int ctl_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config-file", required_argument, NULL, 'c'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    Ctl c = {.config_file = getenv("PATRONICTL_CONFIG_FILE")};
    LogSettings ls = {.level = LOG_WARNING, .file_num = -1, .mode = -1};
    (void)log_configure(&ls);
    int o;
    while ((o = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': c.config_file = optarg; break;
        case 'V': printf("pgha-ctl version %s (Patroni %s compatible)\n", PGHA_VERSION, PGHA_PATRONI_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    if (strcmp(cmd, "version") == 0) {
        printf("pgha-ctl version %s (Patroni %s compatible)\n", PGHA_VERSION, PGHA_PATRONI_VERSION);
        return 0;
    }
    int (*fn)(Ctl *, int, char **) = NULL;
    if (strcmp(cmd, "list") == 0)
        fn = cmd_list;
    else if (strcmp(cmd, "history") == 0)
        fn = cmd_history;
    else if (strcmp(cmd, "show-config") == 0)
        fn = cmd_show_config;
    if (!fn) {
        fprintf(stderr, "pgha-ctl: unknown command '%s' (see pgha-ctl --help)\n", cmd);
        return 2;
    }
    int rc = 1;
    if (load(&c) == 0)
        rc = fn(&c, sub_argc, sub_argv);
    dcs_free(c.dcs);
    config_free(&c.cfg);
    cfg_source_free(&c.src);
    return rc;
}
