/* pgha-ctl: the operator's CLI, a drop-in for patronictl (spec §5). It reads the cluster from etcd with
 * the same configuration file (-c, PATRONICTL_CONFIG_FILE, --dcs-url) and acts through the members'
 * REST API. This file: the command line, the configuration, the etcd connection and the dispatch; the
 * commands live in cmd_*.c (ctl_int.h lists every file). */
#include "ctl/ctl.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "ctl/ctl_int.h"
#include "dcs/curlinit.h"

#define DEFAULT_CTL_CONFIG "~/.config/patroni/patronictl.yaml"

typedef struct Command {
    const char *name;
    int (*fn)(Ctl *, int, char **);
    const char *usage;
} Command;

static const Command COMMANDS[] = {
    {"list", cmd_list, "list [CLUSTER...] [-e] [-t] [-f FMT] [-W | -w SEC]   the members and their state"},
    {"topology", cmd_topology, "topology [CLUSTER...] [-W | -w SEC]              the members as a replication tree"},
    {"switchover", cmd_switchover,
     "switchover [CLUSTER] [--leader NAME] [--candidate NAME] [--scheduled TS] [--force] [--timeout SEC]"},
    {"failover", cmd_failover, "failover [CLUSTER] [--candidate NAME] [--force] [--timeout SEC]"},
    {"pause", cmd_pause, "pause [CLUSTER] [--wait]                          disable automatic failover"},
    {"resume", cmd_resume, "resume [CLUSTER] [--wait]                         enable automatic failover again"},
    {"show-config", cmd_show_config, "show-config [CLUSTER]                             the dynamic configuration"},
    {"edit-config", cmd_edit_config,
     "edit-config [CLUSTER] [-q] [-s K=V]... [-p GUC=V]... [--apply FILE] [--replace FILE] [--force]"},
    {"restart", cmd_restart,
     "restart CLUSTER [MEMBER...] [-r ROLE] [--any] [--scheduled TS] [--pg-version V] [--pending] [--timeout T] "
     "[--force]"},
    {"reload", cmd_reload, "reload CLUSTER [MEMBER...] [-r ROLE] [--force]"},
    {"reinit", cmd_reinit, "reinit CLUSTER [MEMBER...] [--from-leader] [--wait] [--force]"},
    {"flush", cmd_flush, "flush CLUSTER [MEMBER...] restart|switchover [-r ROLE] [--force]"},
    {"demote-cluster", cmd_demote_cluster,
     "demote-cluster [CLUSTER] (--host H [--port P] | --restore-command C) [--primary-slot-name S] [--force]"},
    {"promote-cluster", cmd_promote_cluster,
     "promote-cluster [CLUSTER] [--force]       make a standby cluster standalone"},
    {"history", cmd_history, "history [CLUSTER] [-f FMT]                        the timeline history"},
    {"remove", cmd_remove, "remove CLUSTER [-f FMT]                           delete the cluster from etcd"},
    {"dsn", cmd_dsn, "dsn [CLUSTER] [-r ROLE | -m MEMBER]               host=... port=... of a member"},
    {"query", cmd_query,
     "query [CLUSTER] (-c SQL | -f FILE) [-r ROLE | -m MEMBER] [-U USER] [--password] [-d DB] [--format FMT] "
     "[--delimiter D] [-W | -w SEC]"},
    {"version", cmd_version, "version [CLUSTER [MEMBER...]]                     versions of pgha-ctl and the members"},
};

static void usage(FILE *f) {
    fprintf(f, "Usage: pgha-ctl [OPTIONS] COMMAND [ARGS]...\n"
               "\n"
               "Command-line interface for a pgha/Patroni cluster (a drop-in for patronictl).\n"
               "\n"
               "Options:\n"
               "  -c, --config-file PATH   configuration file (default: $PATRONICTL_CONFIG_FILE or\n"
               "                           " DEFAULT_CTL_CONFIG ")\n"
               "  -d, --dcs-url URL        etcd to use instead of the file's: etcd3://HOST:PORT/NAMESPACE\n"
               "                           (default: $DCS_URL)\n"
               "  -k, --insecure           do not verify the REST API's TLS certificates\n"
               "  --version                print the version and exit\n"
               "  -h, --help               show this help and exit\n"
               "\n"
               "Commands (-f FMT: pretty, tsv, json, yaml; ROLE: leader, primary, standby-leader, replica,\n"
               "standby, any):\n");
    for (size_t i = 0; i < ELEMENTSOF(COMMANDS); i++)
        fprintf(f, "  %s\n", COMMANDS[i].usage);
    fprintf(f, "\nExit codes: 0 done, 1 error, 2 usage; switchover/failover also 3 failed, 4 another member\n"
               "took over, 5 still under way when the wait ended (README.md, \"pgha-ctl\").\n");
}

void ctl_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fputs("Error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int ctl_getopt(int argc, char **argv, const char *shortopts, const void *longopts) {
    return getopt_long(argc, argv, shortopts, (const struct option *)longopts, NULL);
}

char *ctl_timestamp(int precision) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char buf[64];
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    if (precision <= 0)
        return xstrdup(buf);
    char frac[32];
    snprintf(frac, sizeof frac, "%06ld", (ts.tv_nsec / 1000) % 1000000);
    frac[precision < 6 ? precision : 6] = '\0';
    return xasprintf("%s.%s", buf, frac);
}

void ctl_say(const char *fmt, ...) {
    char *ts = ctl_timestamp(5);
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    printf("%s %s\n", ts, msg);
    fflush(stdout);
    free(ts);
    free(msg);
}

bool ctl_is_paused(const Cluster *cl) {
    const cJSON *v = cl->config ? cJSON_GetObjectItemCaseSensitive(cl->config, "pause") : NULL;
    if (cJSON_IsString(v))
        return strcaseeq(v->valuestring, "true") || strcaseeq(v->valuestring, "on") ||
               strcaseeq(v->valuestring, "yes") || strcmp(v->valuestring, "1") == 0;
    long long n;
    return cJSON_IsTrue(v) || (v && json_item_ll(v, &n) && n != 0);
}

long long ctl_config_ll(const Cluster *cl, const char *key, long long dflt) {
    long long v;
    return cl && cl->config && json_get_ll(cl->config, key, &v) && v > 0 ? v : dflt;
}

int ctl_format_arg(const char *arg, CtlFormat *ret) {
    if (ctl_parse_format(arg, false, ret) == 0)
        return 0;
    ctl_error("Invalid value for '--format' / '-f': '%s' is not one of 'pretty', 'tsv', 'json', 'yaml', 'yml'.", arg);
    return -1;
}

int ctl_role_arg(const char *arg, CtlRole *ret) {
    if (ctl_parse_role(arg, ret) == 0)
        return 0;
    ctl_error("Invalid value for '--role' / '-r': '%s' is not one of 'leader', 'primary', 'standby-leader', "
              "'replica', 'standby', 'any'.",
              arg);
    return -1;
}

int ctl_watch_arg(const char *arg, double *ret) {
    if (!arg) { /* -W: every 2 s, unless -w says otherwise */
        if (!*ret)
            *ret = 2;
        return 0;
    }
    if (parse_double(arg, ret) == 0 && *ret > 0)
        return 0;
    ctl_error("Invalid value for '-w' / '--watch': '%s' is not a valid float.", arg);
    return -1;
}

int ctl_format_opts(int argc, char **argv, CtlFormat *fmt) {
    static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
                                         {"group", required_argument, NULL, 'g'},
                                         {0}};
    int o;
    while ((o = ctl_getopt(argc, argv, "f:", opts)) != -1)
        if ((o == 'f' && ctl_format_arg(optarg, fmt) < 0) || (o != 'f' && o != 'g'))
            return CTL_USAGE;
    return CTL_OK;
}

/* ---- configuration ---- */

static YNode *map_node(YNode *parent, const char *key) {
    YNode *n = ynode_get(parent, key);
    if (n && n->type == Y_MAP)
        return n;
    n = ynode_new(Y_MAP, "pgha-ctl", 0);
    ynode_set(parent, key, n);
    return n;
}

/* --dcs-url replaces every DCS section of the file; -k sets ctl.insecure. */
static int apply_overrides(Ctl *c, YNode *root) {
    if (c->dcs_url) {
        char *hostport, *ns, *err = NULL;
        if (ctl_parse_dcs_url(c->dcs_url, &hostport, &ns, &err) < 0) {
            ctl_error("%s", err);
            free(err);
            return -1;
        }
        static const char *const sections[] = {"etcd",      "etcd3",      "consul", "zookeeper",
                                               "exhibitor", "kubernetes", "raft"};
        for (size_t i = 0; i < ELEMENTSOF(sections); i++)
            ynode_remove(root, sections[i]);
        ynode_set(map_node(root, "etcd3"), "host", ynode_new_str(hostport, "--dcs-url", 0));
        if (ns)
            ynode_set(root, "namespace", ynode_new_str(ns, "--dcs-url", 0));
        free(hostport);
        free(ns);
    }
    if (c->insecure)
        ynode_set(map_node(root, "ctl"), "insecure", ynode_new_bool(true, "--insecure", 0));
    return 0;
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
        ctl_error("Provided config file %s not existing or no read rights. Check the -c/--config-file parameter", path);
        return -1;
    }
    cfg_source_init(&c->src, access(path, R_OK) == 0 ? path : NULL, NULL, NULL);
    CfgDiag diag = {0};
    YNode *root = cfg_source_load_tree(&c->src, &diag);
    for (size_t i = 0; i < diag.errors.n; i++)
        ctl_error("%s", diag.errors.v[i]);
    if (!root && !diag.errors.n)
        root = ynode_new(Y_MAP, "pgha-ctl", 0); /* no file and no PATRONI_* variables */
    if (!root || diag.errors.n || apply_overrides(c, root) < 0) {
        ynode_free(root);
        cfg_diag_clear(&diag);
        return -1;
    }
    /* patronictl needs only scope, namespace, the DCS section and the ctl/restapi client settings: fill
     * the keys the agent's parser requires so that the same parser (and its PATRONI_* handling) applies */
    const YNode *sc = ynode_get(root, "scope");
    c->scope_given = sc && sc->type == Y_STR && *sc->text;
    static const char *const fill[][2] = {{"name", "pgha-ctl"}, {"scope", "pgha-ctl"}};
    for (size_t i = 0; i < ELEMENTSOF(fill); i++)
        if (!ynode_get(root, fill[i][0]))
            ynode_set(root, fill[i][0], ynode_new_str(fill[i][1], "pgha-ctl", 0));
    YNode *r = map_node(root, "restapi");
    if (!ynode_get(r, "listen"))
        ynode_set(r, "listen", ynode_new_str("127.0.0.1:8008", "pgha-ctl", 0));
    if (!ynode_get(root, "postgresql")) {
        YNode *p = map_node(root, "postgresql");
        ynode_set(p, "listen", ynode_new_str("127.0.0.1:5432", "pgha-ctl", 0));
        ynode_set(p, "data_dir", ynode_new_str("/nonexistent", "pgha-ctl", 0));
        YNode *a = map_node(p, "authentication");
        ynode_set(map_node(a, "superuser"), "username", ynode_new_str("postgres", "pgha-ctl", 0));
        ynode_set(map_node(a, "replication"), "username", ynode_new_str("replicator", "pgha-ctl", 0));
    }
    cfg_diag_clear(&diag);
    int rc = config_from_tree(root, path, &c->cfg, &diag);
    ynode_free(root);
    for (size_t i = 0; i < diag.errors.n; i++)
        ctl_error("%s", diag.errors.v[i]);
    cfg_diag_clear(&diag);
    return rc < 0 ? -1 : 0;
}

static char *describe_endpoints(const PghaConfig *cfg) {
    if (cfg->etcd3.hosts.n)
        return strlist_join(&cfg->etcd3.hosts, ",");
    if (cfg->etcd3.host)
        return xstrdup(cfg->etcd3.host);
    if (cfg->etcd3.url)
        return xstrdup(cfg->etcd3.url);
    if (cfg->etcd3.proxy)
        return xstrdup(cfg->etcd3.proxy);
    return NULL;
}

int ctl_connect(Ctl *c, const char *cluster_name) {
    if (cluster_name) {
        free(c->cfg.scope);
        c->cfg.scope = xstrdup(cluster_name);
        c->scope_given = true;
    }
    if (!c->scope_given) {
        ctl_error("no cluster name: give CLUSTER or set scope in the configuration");
        return -1;
    }
    c->dcs = dcs_free(c->dcs);
    free(c->endpoints);
    c->endpoints = describe_endpoints(&c->cfg);
    if (!c->endpoints) {
        ctl_error("no etcd to read the cluster from: give a configuration file with an etcd3 section (-c), or "
                  "--dcs-url etcd3://HOST:PORT");
        return -1;
    }
    char *err = NULL;
    c->dcs = dcs_new(&c->cfg, &err);
    if (!c->dcs) {
        ctl_error("%s", err);
        free(err);
        return -1;
    }
    dcs_set_timings(c->dcs, 30, 10, 10);
    if (dcs_connect(c->dcs) < 0) {
        ctl_error("etcd is unreachable (%s): %s", c->endpoints, dcs_error(c->dcs));
        return -1;
    }
    return 0;
}

Cluster *ctl_read_cluster(Ctl *c) {
    Cluster *cl = NULL;
    if (dcs_read_cluster(c->dcs, true, &cl) < 0) {
        ctl_error("cannot read the cluster %s from etcd (%s): %s", c->cfg.scope, c->endpoints, dcs_error(c->dcs));
        return NULL;
    }
    return cl;
}

static void version_line(void) {
    printf("pgha-ctl version %s (Patroni %s compatible)\n", PGHA_VERSION, PGHA_PATRONI_VERSION);
}

static LogLevel env_log_level(void) {
    LogLevel level = LOG_WARNING;
    static const char *const vars[] = {"LOGLEVEL", "PATRONI_LOGLEVEL", "PATRONI_LOG_LEVEL"};
    for (size_t i = 0; i < ELEMENTSOF(vars); i++) {
        const char *v = getenv(vars[i]);
        LogLevel l;
        if (v && log_level_from_string(v, &l) == 0)
            level = l;
    }
    return level;
}

int ctl_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config-file", required_argument, NULL, 'c'},
        {"dcs-url", required_argument, NULL, 'd'},
        {"dcs", required_argument, NULL, 'd'},
        {"insecure", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    Ctl c = {.config_file = getenv("PATRONICTL_CONFIG_FILE"), .dcs_url = getenv("DCS_URL")};
    if (c.config_file && !*c.config_file)
        c.config_file = NULL;
    LogSettings ls = {.level = env_log_level(), .file_num = -1, .mode = -1};
    (void)log_configure(&ls);
    int o;
    while ((o = getopt_long(argc, argv, "+c:d:kh", opts, NULL)) != -1) {
        switch (o) {
        case 'c': c.config_file = optarg; break;
        case 'd': c.dcs_url = optarg; break;
        case 'k': c.insecure = true; break;
        case 'V': version_line(); return CTL_OK;
        case 'h': usage(stdout); return CTL_OK;
        default: usage(stderr); return CTL_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CTL_USAGE;
    }
    const char *cmd = argv[optind];
    const Command *command = NULL;
    for (size_t i = 0; i < ELEMENTSOF(COMMANDS); i++)
        if (streq(cmd, COMMANDS[i].name))
            command = &COMMANDS[i];
    if (!command) {
        fprintf(stderr, "Usage: pgha-ctl [OPTIONS] COMMAND [ARGS]...\nError: No such command '%s'.\n", cmd);
        return CTL_USAGE;
    }
    /* `version` without a cluster needs no configuration */
    if (streq(cmd, "version") && optind + 1 >= argc) {
        version_line();
        return CTL_OK;
    }
    pgha_curl_global_init();
    int rc = CTL_ERROR;
    if (load(&c) == 0) {
        int first = optind;
        optind = 0; /* the command's own options: a full reset of getopt */
        rc = command->fn(&c, argc - first, argv + first);
    }
    dcs_free(c.dcs);
    free(c.endpoints);
    config_free(&c.cfg);
    cfg_source_free(&c.src);
    return rc;
}
