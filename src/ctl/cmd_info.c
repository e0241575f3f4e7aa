/* The commands that only read: list, topology, history, show-config, dsn, version. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "ctl/ctl_int.h"

static void sleep_until(double start, double interval) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double left = start + interval - ((double)now.tv_sec + (double)now.tv_nsec / 1e9);
    if (left > 0) {
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static double mono_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* patronictl's watching(): clear the screen (a terminal only) before each round. */
static void clear_screen(void) {
    if (isatty(STDOUT_FILENO))
        fputs("\033[2J\033[1;1H", stdout);
}

static int members_command(Ctl *c, int argc, char **argv, bool topology) {
    static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
                                         {"extended", no_argument, NULL, 'e'},
                                         {"timestamp", no_argument, NULL, 't'},
                                         {"watch", required_argument, NULL, 'w'},
                                         {"group", required_argument, NULL, 'g'},
                                         {0}};
    bool extended = false, ts = false;
    double watch = 0;
    CtlFormat fmt = topology ? FMT_TOPOLOGY : FMT_PRETTY;
    int o;
    while ((o = ctl_getopt(argc, argv, topology ? "Ww:" : "f:etWw:", opts)) != -1) {
        switch (o) {
        case 'f':
            if (ctl_format_arg(optarg, &fmt) < 0)
                return CTL_USAGE;
            break;
        case 'e': extended = true; break;
        case 't': ts = true; break;
        case 'W':
        case 'w':
            if (ctl_watch_arg(o == 'W' ? NULL : optarg, &watch) < 0)
                return CTL_USAGE;
            break;
        case 'g': break; /* Citus groups: accepted, there are none */
        default: return CTL_USAGE;
        }
    }
    StrList names = {0};
    for (int i = optind; i < argc; i++)
        strlist_add(&names, argv[i]);
    if (!names.n && c->scope_given)
        strlist_add(&names, c->cfg.scope);
    if (!names.n) {
        ctl_error("Listing members: No cluster names were provided");
        return CTL_ERROR;
    }
    int rc = CTL_OK;
    for (;;) {
        double start = mono_now();
        if (watch)
            clear_screen();
        if (ts) {
            char *t = ctl_timestamp(0);
            puts(t);
            free(t);
        }
        for (size_t i = 0; i < names.n; i++) {
            /* one connection while a single cluster is watched */
            Cluster *cl = (names.n == 1 && c->dcs) || ctl_connect(c, names.v[i]) == 0 ? ctl_read_cluster(c) : NULL;
            if (!cl) {
                rc = CTL_ERROR;
                continue;
            }
            char *out = ctl_members_output(cl, names.v[i], extended, fmt);
            fputs(out, stdout);
            free(out);
            cluster_free(cl);
        }
        fflush(stdout);
        if (!watch)
            break;
        sleep_until(start, watch);
    }
    strlist_clear(&names);
    return rc;
}

int cmd_list(Ctl *c, int argc, char **argv) { return members_command(c, argc, argv, false); }
int cmd_topology(Ctl *c, int argc, char **argv) { return members_command(c, argc, argv, true); }

/* The cluster named by the first positional argument (else the configuration's scope), read fresh. */
static Cluster *read_named(Ctl *c, int argc, char **argv) {
    if (ctl_connect(c, optind < argc ? argv[optind] : NULL) < 0)
        return NULL;
    return ctl_read_cluster(c);
}

int cmd_history(Ctl *c, int argc, char **argv) {
    CtlFormat fmt = FMT_PRETTY;
    if (ctl_format_opts(argc, argv, &fmt) != CTL_OK)
        return CTL_USAGE;
    Cluster *cl = read_named(c, argc, argv);
    if (!cl)
        return CTL_ERROR;
    static const char *const cols[] = {"TL", "LSN", "Reason", "Timestamp", "New Leader"};
    Table t;
    table_init(&t, cols, ELEMENTSOF(cols));
    table_set_right(&t, "TL");
    table_set_right(&t, "LSN");
    const cJSON *e;
    cJSON_ArrayForEach(e, cl->history) {
        cJSON *row = cJSON_IsArray(e) ? cJSON_Duplicate(e, true) : cJSON_CreateArray();
        while (cJSON_GetArraySize(row) < (int)ELEMENTSOF(cols))
            cJSON_AddItemToArray(row, cJSON_CreateString(""));
        cJSON_AddItemToArray(t.rows, row);
    }
    char *out = table_render(&t, fmt, "\t");
    fputs(out, stdout);
    free(out);
    table_free(&t);
    cluster_free(cl);
    return CTL_OK;
}

int cmd_show_config(Ctl *c, int argc, char **argv) {
    static const struct option opts[] = {{"group", required_argument, NULL, 'g'}, {0}};
    int o;
    while ((o = ctl_getopt(argc, argv, "", opts)) != -1)
        if (o != 'g')
            return CTL_USAGE;
    Cluster *cl = read_named(c, argc, argv);
    if (!cl)
        return CTL_ERROR;
    int rc = CTL_OK;
    if (!cl->has_config) {
        ctl_error("The config key does not exist in the cluster %s", c->cfg.scope);
        rc = CTL_ERROR;
    } else {
        char *y = yaml_dump(cl->config, false);
        printf("%s\n", y);
        free(y);
    }
    cluster_free(cl);
    return rc;
}

int cmd_dsn(Ctl *c, int argc, char **argv) {
    static const struct option opts[] = {{"role", required_argument, NULL, 'r'},
                                         {"member", required_argument, NULL, 'm'},
                                         {"group", required_argument, NULL, 'g'},
                                         {0}};
    const char *member = NULL;
    CtlRole role = ROLE_LEADER;
    bool have_role = false;
    int o;
    while ((o = ctl_getopt(argc, argv, "r:m:", opts)) != -1) {
        switch (o) {
        case 'r':
            if (ctl_role_arg(optarg, &role) < 0)
                return CTL_USAGE;
            have_role = true;
            break;
        case 'm': member = optarg; break;
        case 'g': break;
        default: return CTL_USAGE;
        }
    }
    if (have_role && member) {
        ctl_error("--role and --member are mutually exclusive options");
        return CTL_USAGE;
    }
    Cluster *cl = read_named(c, argc, argv);
    if (!cl)
        return CTL_ERROR;
    size_t n;
    const Member **ms = ctl_members_with_role(cl, member ? ROLE_ANY : role, &n);
    const Member *m = NULL;
    for (size_t i = 0; i < n && !m; i++)
        if (!member || streq(ms[i]->name, member))
            m = ms[i];
    free(ms);
    char *host = NULL;
    int port = 0;
    int rc = CTL_OK;
    if (!m) {
        if (member)
            ctl_error("Can not find a suitable member: %s is not a member of cluster %s", member, c->cfg.scope);
        else
            ctl_error("Can not find a suitable member: no %s in cluster %s", ctl_role_name(role), c->cfg.scope);
        rc = CTL_ERROR;
    } else if (!member_conn_host_port(m, &host, &port)) {
        ctl_error("member %s publishes no connection address (conn_url)", m->name);
        rc = CTL_ERROR;
    } else {
        printf("host=%s port=%d\n", host, port ? port : 5432);
    }
    free(host);
    cluster_free(cl);
    return rc;
}

/* patronictl's format_pg_version(). */
static char *pg_version_string(long long v) {
    if (v < 100000)
        return xasprintf("%lld.%lld.%lld", v / 10000, v / 100 % 100, v % 100);
    return xasprintf("%lld.%lld", v / 10000, v % 100);
}

int cmd_version(Ctl *c, int argc, char **argv) {
    static const struct option opts[] = {{"group", required_argument, NULL, 'g'}, {0}};
    int o;
    while ((o = ctl_getopt(argc, argv, "", opts)) != -1)
        if (o != 'g')
            return CTL_USAGE;
    printf("pgha-ctl version %s (Patroni %s compatible)\n", PGHA_VERSION, PGHA_PATRONI_VERSION);
    if (optind >= argc)
        return CTL_OK;
    Cluster *cl = read_named(c, argc, argv);
    if (!cl)
        return CTL_ERROR;
    int rc = CTL_OK;
    for (int i = optind + 1; i < argc; i++)
        if (!cluster_get_member(cl, argv[i])) {
            ctl_error("%s is not a member of cluster %s", argv[i], c->cfg.scope);
            rc = CTL_ERROR;
        }
    if (rc == CTL_OK) {
        putchar('\n');
        size_t n;
        const Member **ms = ctl_members_with_role(cl, ROLE_ANY, &n);
        for (size_t i = 0; i < n; i++) {
            bool wanted = optind + 1 >= argc;
            for (int k = optind + 1; k < argc; k++)
                wanted |= streq(argv[k], ms[i]->name);
            if (!wanted || !ms[i]->api_url)
                continue;
            RestResponse r;
            ctl_rest(c, ms[i], "GET", "patroni", NULL, 10000, &r);
            cJSON *j = r.status == 200 ? json_parse(r.body) : NULL;
            const char *ver = json_get_string(cJSON_GetObjectItemCaseSensitive(j, "patroni"), "version");
            long long pg = 0;
            if (j) {
                char *pgs = json_get_ll(j, "server_version", &pg) && pg ? pg_version_string(pg) : NULL;
                printf("%s: Patroni %s%s%s\n", ms[i]->name, ver ? ver : "None", pgs ? " PostgreSQL " : "",
                       pgs ? pgs : "");
                free(pgs);
            } else {
                printf("%s: failed to get version: %s\n", ms[i]->name,
                       r.error              ? r.error
                       : r.status && r.body ? r.body
                                            : "not a JSON answer");
                rc = CTL_ERROR;
            }
            cJSON_Delete(j);
            rest_response_clear(&r);
        }
        free(ms);
    }
    cluster_free(cl);
    return rc;
}
