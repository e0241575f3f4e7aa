/* query: SQL on a member through libpq, as patronictl runs it (fallback_application_name "Patroni ctl",
 * connect_timeout 5, the role checked with pg_is_in_recovery() for roles other than leader and any),
 * the result printed as a table (tsv by default); an error is a row "<time>  ERROR, SQLSTATE: <code>". */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_int.h"

typedef struct Query {
    const char *member, *user, *dbname;
    char *password;
    CtlRole role;
    bool have_role;
    char *sql;
} Query;

static char *read_password(void) {
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *pw = ctl_prompt("Password", NULL);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        putchar('\n');
    }
    return pw;
}

static cJSON *value_of(const PGresult *res, int row, int col) {
    if (PQgetisnull(res, row, col))
        return cJSON_CreateNull();
    const char *v = PQgetvalue(res, row, col);
    switch (PQftype(res, col)) {
    case 16: return cJSON_CreateBool(v[0] == 't'); /* bool */
    case 20:
    case 21:
    case 23:
    case 26:
    case 700:
    case 701: return cJSON_CreateRaw(v); /* numbers */
    default: return cJSON_CreateString(v);
    }
}

static void error_row(Table *t, const char *message) {
    char *ts = ctl_timestamp(0);
    cJSON *row = cJSON_CreateArray();
    cJSON_AddItemToArray(row, cJSON_CreateString(ts));
    cJSON_AddItemToArray(row, cJSON_CreateString(message));
    cJSON_AddItemToArray(t->rows, row);
    free(ts);
}

/* One run of the query into t (columns and rows, or an error row). false on an error. */
static bool run_query(const Cluster *cl, const Query *q, Table *t) {
    size_t n;
    CtlRole role = q->member ? ROLE_ANY : q->have_role ? q->role : ROLE_LEADER;
    const Member **ms = ctl_members_with_role(cl, role, &n);
    const Member *m = NULL;
    for (size_t i = 0; i < n && !m; i++)
        if (!q->member || streq(ms[i]->name, q->member))
            m = ms[i];
    free(ms);
    char *host = NULL, port[16] = "5432";
    int p = 0;
    if (m && member_conn_host_port(m, &host, &p) && p)
        snprintf(port, sizeof port, "%d", p);
    PGconn *conn = NULL;
    bool ok = false;
    if (m && host) {
        const char *keys[8] = {"host", "port", "fallback_application_name", "connect_timeout"};
        const char *vals[8] = {host, port, "Patroni ctl", "5"};
        int k = 4;
        if (q->user) {
            keys[k] = "user";
            vals[k++] = q->user;
        }
        if (q->password) {
            keys[k] = "password";
            vals[k++] = q->password;
        }
        if (q->dbname) {
            keys[k] = "dbname";
            vals[k++] = q->dbname;
        }
        conn = PQconnectdbParams(keys, vals, 0);
        if (PQstatus(conn) != CONNECTION_OK) {
            char *msg = xasprintf("ERROR, SQLSTATE: %s", PQerrorMessage(conn));
            for (char *c = msg; *c; c++)
                if (*c == '\n')
                    *c = ' ';
            str_trim(msg);
            error_row(t, msg);
            free(msg);
            goto out;
        }
        if (role != ROLE_ANY && role != ROLE_LEADER) {
            PGresult *r = PQexec(conn, "SELECT pg_catalog.pg_is_in_recovery()");
            bool in_recovery = PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1 ||
                               PQgetvalue(r, 0, 0)[0] == 't';
            PQclear(r);
            bool fits = in_recovery ? role == ROLE_REPLICA || role == ROLE_STANDBY || role == ROLE_STANDBY_LEADER
                                    : role == ROLE_PRIMARY;
            if (!fits) {
                PQfinish(conn);
                conn = NULL;
            }
        }
    }
    if (!conn) {
        char *msg = q->member      ? xasprintf("No connection to member %s is available", q->member)
                    : q->have_role ? xasprintf("No connection to role %s is available", ctl_role_name(q->role))
                                   : xstrdup("No connection is available");
        error_row(t, msg);
        free(msg);
        goto out;
    }
    PGresult *res = PQexec(conn, q->sql);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK) {
        int cols = PQnfields(res);
        for (int c = 0; c < cols; c++)
            strlist_add(&t->columns, PQfname(res, c));
        t->right = xrealloc(t->right, ((size_t)cols + 1) * sizeof(bool));
        memset(t->right, 0, ((size_t)cols + 1) * sizeof(bool));
        for (int r = 0; r < PQntuples(res); r++) {
            cJSON *row = cJSON_CreateArray();
            for (int c = 0; c < cols; c++)
                cJSON_AddItemToArray(row, value_of(res, r, c));
            cJSON_AddItemToArray(t->rows, row);
        }
        ok = true;
    } else if (st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
        ok = true;
    } else {
        const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        char *msg = xasprintf("ERROR, SQLSTATE: %s", code ? code : PQresultErrorMessage(res));
        for (char *c = msg; *c; c++)
            if (*c == '\n')
                *c = ' ';
        error_row(t, str_trim(msg));
        free(msg);
    }
    PQclear(res);
out:
    if (conn)
        PQfinish(conn);
    free(host);
    return ok;
}

int cmd_query(Ctl *c, int argc, char **argv) {
    static const struct option opts[] = {
        {"role", required_argument, NULL, 'r'},      {"member", required_argument, NULL, 'm'},
        {"command", required_argument, NULL, 'c'},   {"file", required_argument, NULL, 'f'},
        {"username", required_argument, NULL, 'U'},  {"password", no_argument, NULL, 'P'},
        {"dbname", required_argument, NULL, 'd'},    {"format", required_argument, NULL, 'F'},
        {"delimiter", required_argument, NULL, 'D'}, {"watch", required_argument, NULL, 'w'},
        {"group", required_argument, NULL, 'g'},     {0}};
    Query q = {0};
    const char *command = NULL, *file = NULL, *delimiter = "\t";
    bool password = false;
    CtlFormat fmt = FMT_TSV;
    double watch = 0;
    int o;
    while ((o = ctl_getopt(argc, argv, "r:m:c:f:U:d:Ww:", opts)) != -1) {
        switch (o) {
        case 'r':
            if (ctl_role_arg(optarg, &q.role) < 0)
                return CTL_USAGE;
            q.have_role = true;
            break;
        case 'm': q.member = optarg; break;
        case 'c': command = optarg; break;
        case 'f': file = optarg; break;
        case 'U': q.user = optarg; break;
        case 'P': password = true; break;
        case 'd': q.dbname = optarg; break;
        case 'F':
            if (ctl_format_arg(optarg, &fmt) < 0)
                return CTL_USAGE;
            break;
        case 'D': delimiter = optarg; break;
        case 'W':
        case 'w':
            if (ctl_watch_arg(o == 'W' ? NULL : optarg, &watch) < 0)
                return CTL_USAGE;
            break;
        case 'g': break;
        default: return CTL_USAGE;
        }
    }
    if (q.have_role && q.member) {
        ctl_error("--role and --member are mutually exclusive options");
        return CTL_USAGE;
    }
    if (file && command) {
        ctl_error("--file and --command are mutually exclusive options");
        return CTL_USAGE;
    }
    if (!file && !command) {
        ctl_error("You need to specify either --command or --file");
        return CTL_USAGE;
    }
    if (file) {
        FILE *f = fopen(file, "r");
        if (!f) {
            ctl_error("Invalid value for '--file' / '-f': '%s': cannot be read", file);
            return CTL_USAGE;
        }
        q.sql = ctl_read_stream(f);
        fclose(f);
    } else {
        q.sql = xstrdup(command);
    }
    int rc = CTL_ERROR;
    Cluster *cl = NULL;
    if (password && !(q.password = read_password())) {
        rc = ctl_aborted();
        goto out;
    }
    if (ctl_connect(c, optind < argc ? argv[optind] : NULL) < 0 || !(cl = ctl_read_cluster(c)))
        goto out;
    for (;;) {
        usec_t start = now_monotonic();
        Table t;
        table_init(&t, NULL, 0);
        rc = run_query(cl, &q, &t) ? CTL_OK : CTL_ERROR;
        char *out = table_render(&t, fmt, delimiter);
        fputs(out, stdout);
        fflush(stdout);
        free(out);
        table_free(&t);
        if (!watch)
            break;
        usec_t next = start + (usec_t)(watch * 1e6), now = now_monotonic();
        if (next > now)
            usleep((useconds_t)(next - now));
    }
out:
    cluster_free(cl);
    free(q.sql);
    free(q.password);
    return rc;
}
