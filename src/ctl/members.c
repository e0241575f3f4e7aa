/* The member table of `list` and `topology` as Patroni 4.1's patronictl prints it (output_members()):
 * built from the same view GET /cluster answers (cluster_to_json, Patroni's cluster_as_json), with the
 * receive and replay positions of every member that does not hold the leader key, and the role
 * filters of the commands that act on members. */
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "common/json.h"
#include "ctl/ctl_int.h"
#include "pg/pg.h"
#include "restapi/restapi.h"

int ctl_parse_role(const char *s, CtlRole *ret) {
    static const char *const names[] = {"leader", "primary", "standby-leader", "replica", "standby", "any"};
    for (size_t i = 0; i < ELEMENTSOF(names); i++)
        if (streq(s, names[i])) {
            *ret = (CtlRole)i;
            return 0;
        }
    return -1;
}

const char *ctl_role_name(CtlRole r) {
    static const char *const names[] = {"leader", "primary", "standby-leader", "replica", "standby", "any"};
    return names[r];
}

static int cmp_members(const void *a, const void *b) {
    return strcmp((*(const Member *const *)a)->name, (*(const Member *const *)b)->name);
}

const Member **ctl_members_with_role(const Cluster *cl, CtlRole role, size_t *ret_n) {
    const Member **v = xcalloc(cl->n_members + 1, sizeof *v);
    size_t n = 0;
    const char *leader = cl->leader && cl->leader->name && *cl->leader->name ? cl->leader->name : NULL;
    if (role == ROLE_LEADER || role == ROLE_PRIMARY || role == ROLE_STANDBY_LEADER) {
        const Member *m = leader ? cl->leader->member : NULL;
        const char *r = m ? m->role : NULL;
        bool primary = streq(r, "primary") || streq(r, "master");
        if (m && (role == ROLE_LEADER || (role == ROLE_STANDBY_LEADER && !primary) ||
                  (role == ROLE_PRIMARY && !streq(r, "standby_leader"))))
            v[n++] = m;
    } else {
        for (size_t i = 0; i < cl->n_members; i++)
            if (role == ROLE_ANY || !streq(cl->members[i].name, leader))
                v[n++] = &cl->members[i];
        qsort(v, n, sizeof *v, cmp_members);
    }
    *ret_n = n;
    return v;
}

const Member **ctl_members_leader_first(const Cluster *cl, size_t *ret_n) {
    const Member **v = xcalloc(cl->n_members + 1, sizeof *v);
    size_t n = 0;
    const Member *lm = cl->leader ? cl->leader->member : NULL;
    if (lm && lm->api_url)
        v[n++] = lm;
    for (size_t i = 0; i < cl->n_members; i++)
        if (cl->members[i].api_url && &cl->members[i] != lm)
            v[n++] = &cl->members[i];
    *ret_n = n;
    return v;
}

/* ---- the rows ---- */

static cJSON *ll_item(long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return cJSON_CreateRaw(buf);
}

/* Python's round(x / 1 MiB): halves to even. */
static long long lag_mb(long long lag) { return (long long)nearbyint((double)lag / 1048576.0); }

/* One position of a member that does not hold the lock (Patroni 4.1's cluster_as_json): unknown when
 * absent or 0, else the LSN and max(0, /status optime - LSN). */
typedef struct Pos {
    bool known;
    long long lsn, lag;
} Pos;

static Pos position(const cJSON *data, const char *key, const Cluster *cl) {
    Pos p = {0};
    if (json_get_ll(data, key, &p.lsn) && p.lsn) {
        long long optime = cl->status.has_optime ? cl->status.optime : 0;
        p.known = true;
        p.lag = optime > p.lsn ? ll_sub_sat(optime, p.lsn) : 0;
    }
    return p;
}

static void add_lsn_cells(cJSON *row, Pos p) {
    char buf[40] = "unknown";
    if (p.known)
        pg_format_lsn(p.lsn, buf, sizeof buf);
    cJSON_AddItemToArray(row, cJSON_CreateString(buf));
    cJSON_AddItemToArray(row, p.known ? ll_item(lag_mb(p.lag)) : cJSON_CreateString(""));
}

static const char *const BASE_COLUMNS[] = {"Cluster", "Member",      "Host",        "Role",       "State",
                                           "TL",      "Receive LSN", "Receive Lag", "Replay LSN", "Replay Lag"};
static const char *const EXTRA_COLUMNS[] = {"Pending restart", "Pending restart reason", "Scheduled restart", "Tags"};
static const char *const EXTRA_KEYS[] = {"pending_restart", "pending_restart_reason", "scheduled_restart", "tags"};

static cJSON *restart_reason(const cJSON *reasons, bool hide_long) {
    StrBuf b;
    sb_init(&b);
    const cJSON *r;
    cJSON_ArrayForEach(r, reasons) {
        const char *o = json_get_string(r, "old_value"), *n = json_get_string(r, "new_value");
        char *full = xasprintf("%s: %s->%s", r->string, o ? o : "", n ? n : "");
        if (b.len)
            sb_addc(&b, '\n');
        if (hide_long && strlen(full) > 50)
            sb_addf(&b, "%s: [hidden - too long]", r->string);
        else
            sb_add(&b, full);
        free(full);
    }
    char *s = sb_steal(&b);
    cJSON *v = cJSON_CreateString(s);
    free(s);
    return v;
}

/* Python's str.title() of the role with '_' as ' ': "sync_standby" -> "Sync Standby". */
static char *title_case(const char *s) {
    char *r = xstrdup(s);
    bool start = true;
    for (char *p = r; *p; p++) {
        if (*p == '_')
            *p = ' ';
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z');
        if (alpha && start && *p >= 'a')
            *p = (char)(*p - 32);
        else if (alpha && !start && *p <= 'Z')
            *p = (char)(*p + 32);
        start = !alpha;
    }
    return r;
}

static void add_row(Table *t, const cJSON *e, const char *name, const Cluster *cl, const char *scope, const bool *extra,
                    bool append_port, CtlFormat fmt) {
    cJSON *row = cJSON_CreateArray();
    const char *mname = json_get_string(e, "name");
    const Member *m = cluster_get_member(cl, mname);
    cJSON_AddItemToArray(row, cJSON_CreateString(scope));
    cJSON_AddItemToArray(row, cJSON_CreateString(name));
    const char *host = json_get_string(e, "host");
    long long port = 0;
    if (append_port && host && *host && json_get_ll(e, "port", &port)) {
        char *hp = xasprintf("%s:%lld", host, port);
        cJSON_AddItemToArray(row, cJSON_CreateString(hp));
        free(hp);
    } else {
        cJSON_AddItemToArray(row, cJSON_CreateString(host ? host : ""));
    }
    const char *role = json_get_string(e, "role");
    char *rt = title_case(role ? role : "");
    cJSON_AddItemToArray(row, cJSON_CreateString(rt));
    free(rt);
    const char *state = json_get_string(e, "state");
    cJSON_AddItemToArray(row, cJSON_CreateString(state ? state : ""));
    long long tl;
    cJSON_AddItemToArray(row, json_get_ll(e, "timeline", &tl) ? ll_item(tl) : cJSON_CreateString(""));
    bool holder = cl->leader && streq(cl->leader->name, mname);
    if (holder || !m) {
        for (int i = 0; i < 4; i++)
            cJSON_AddItemToArray(row, cJSON_CreateString(""));
    } else {
        Pos receive = position(m->data, "receive_lsn", cl), replay = position(m->data, "replay_lsn", cl);
        Pos lsn = position(m->data, "xlog_location", cl);
        /* a member that publishes neither position (Patroni < 4.1, pgha before it): its xlog_location is
         * the receive position while it streams, else the replay position */
        if (!receive.known && !replay.known && lsn.known) {
            if (streq(state, "streaming"))
                receive = lsn;
            else
                replay = lsn;
        }
        add_lsn_cells(row, receive);
        add_lsn_cells(row, replay);
    }
    if (extra[0])
        cJSON_AddItemToArray(row,
                             cJSON_CreateString(cJSON_IsTrue(cJSON_GetObjectItem(e, "pending_restart")) ? "*" : ""));
    if (extra[1]) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(e, "pending_restart_reason");
        cJSON_AddItemToArray(row, cJSON_IsObject(r) ? restart_reason(r, fmt == FMT_PRETTY || fmt == FMT_TOPOLOGY)
                                                    : cJSON_CreateString(""));
    }
    if (extra[2]) {
        const cJSON *sr = cJSON_GetObjectItemCaseSensitive(e, "scheduled_restart");
        const char *at = json_get_string(sr, "schedule");
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(sr, "postgres_version");
        char *vs = ver ? py_str(ver) : NULL;
        char *s = !sr ? xstrdup("") : vs ? xasprintf("%s if version < %s", at ? at : "", vs) : xstrdup(at ? at : "");
        cJSON_AddItemToArray(row, cJSON_CreateString(s));
        free(s);
        free(vs);
    }
    if (extra[3]) {
        const cJSON *tags = cJSON_GetObjectItemCaseSensitive(e, "tags");
        cJSON_AddItemToArray(row, cJSON_IsObject(tags) ? cJSON_Duplicate(tags, true) : cJSON_CreateString(""));
    }
    cJSON_AddItemToArray(t->rows, row);
}

/* Patroni's truthiness of a member field (absent, false, "", {} are not set). */
static bool truthy(const cJSON *v) {
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return false;
    if (cJSON_IsString(v))
        return *v->valuestring != '\0';
    if (cJSON_IsObject(v) || cJSON_IsArray(v))
        return cJSON_GetArraySize(v) > 0;
    return true;
}

/* ---- topology order ---- */

static bool str_endswith_leader(const char *role) {
    size_t n = role ? strlen(role) : 0;
    return n >= 6 && strcmp(role + n - 6, "leader") == 0;
}

typedef struct Topo {
    const cJSON **members;
    size_t n;
    bool *done;
    const char *leader; /* NULL: no member holds the leader role */
} Topo;

static void topo_visit(Table *t, Topo *tp, const char *parent, int level, const Cluster *cl, const char *scope,
                       const bool *extra, bool append_port) {
    for (size_t i = 0; i < tp->n; i++) {
        const cJSON *e = tp->members[i];
        if (tp->done[i] || str_endswith_leader(json_get_string(e, "role")))
            continue;
        const cJSON *tags = cJSON_GetObjectItemCaseSensitive(e, "tags");
        const char *name = json_get_string(e, "name"), *from = json_get_string(tags, "replicatefrom");
        bool from_replica = false;
        for (size_t k = 0; from && !streq(from, name) && k < tp->n; k++)
            from_replica |= streq(json_get_string(tp->members[k], "name"), from) &&
                            !str_endswith_leader(json_get_string(tp->members[k], "role"));
        if (!streq(from_replica ? from : tp->leader, parent))
            continue;
        tp->done[i] = true;
        StrBuf b;
        sb_init(&b);
        for (int s = 0; s < (level - 1) * 2; s++)
            sb_addc(&b, ' ');
        sb_addf(&b, "+ %s", name);
        add_row(t, e, b.s, cl, scope, extra, append_port, FMT_TOPOLOGY);
        sb_free(&b);
        topo_visit(t, tp, name, level + 1, cl, scope, extra, append_port);
    }
}

char *ctl_members_output(const Cluster *cl, const char *scope, bool extended, CtlFormat fmt) {
    char *js = cluster_to_json(cl, scope, ctl_is_paused(cl));
    cJSON *view = json_parse(js);
    free(js);
    const cJSON *members = cJSON_GetObjectItemCaseSensitive(view, "members");
    bool extra[4] = {0};
    size_t with_host = 0, n_members = (size_t)cJSON_GetArraySize(members);
    bool append_port = false;
    StrList hosts = {0};
    const cJSON *e;
    cJSON_ArrayForEach(e, members) {
        const char *host = json_get_string(e, "host");
        if (!host)
            continue;
        with_host++;
        for (int i = 0; i < 4; i++)
            extra[i] |= extended || truthy(cJSON_GetObjectItemCaseSensitive(e, EXTRA_KEYS[i]));
        long long port;
        if (json_get_ll(e, "port", &port) && port != 5432)
            append_port = true;
        if (!strlist_contains(&hosts, host))
            strlist_add(&hosts, host);
    }
    append_port |= hosts.n < with_host;
    strlist_clear(&hosts);
    for (int i = 0; i < 4; i++)
        extra[i] |= extended;

    Table t;
    table_init(&t, BASE_COLUMNS, ELEMENTSOF(BASE_COLUMNS));
    for (int i = 0; i < 4; i++)
        if (extra[i])
            strlist_add(&t.columns, EXTRA_COLUMNS[i]);
    t.right = xrealloc(t.right, (t.columns.n + 1) * sizeof(bool));
    memset(t.right, 0, (t.columns.n + 1) * sizeof(bool));
    bool pretty = fmt == FMT_PRETTY || fmt == FMT_TOPOLOGY;
    if (pretty)
        for (size_t i = 0; i < t.columns.n; i++)
            if (strstr(t.columns.v[i], " Lag")) {
                free(t.columns.v[i]);
                t.columns.v[i] = xstrdup("Lag");
            }
    static const char *const right[] = {"TL", "Receive LSN", "Replay LSN", "Lag"};
    for (size_t i = 0; i < ELEMENTSOF(right); i++)
        table_set_right(&t, right[i]);

    if (fmt == FMT_TOPOLOGY) {
        Topo tp = {.members = xcalloc(n_members + 1, sizeof(cJSON *)), .done = xcalloc(n_members + 1, 1)};
        cJSON_ArrayForEach(e, members)
            tp.members[tp.n++] = e;
        for (size_t i = 0; i < tp.n && !tp.leader; i++)
            if (str_endswith_leader(json_get_string(tp.members[i], "role"))) {
                tp.leader = json_get_string(tp.members[i], "name");
                add_row(&t, tp.members[i], tp.leader, cl, scope, extra, append_port, fmt);
            }
        /* the replicas under the leader (or, without one, under nobody), cascading ones under theirs */
        topo_visit(&t, &tp, tp.leader, 1, cl, scope, extra, append_port);
        free(tp.members);
        free(tp.done);
    } else {
        cJSON_ArrayForEach(e, members)
            add_row(&t, e, json_get_string(e, "name"), cl, scope, extra, append_port, fmt);
    }
    const char *init = !cl->has_initialize ? "uninitialized" : *cl->initialize ? cl->initialize : "initializing";
    char *title = xasprintf(" Cluster: %s (%s) ", scope, init);
    t.title = title;
    char *out = table_render(&t, fmt, "\t");
    StrBuf b;
    sb_init(&b);
    sb_add(&b, out);
    free(out);
    if (pretty) {
        StrList info = {0};
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(view, "pause")))
            strlist_add(&info, "Maintenance mode: on");
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(view, "scheduled_switchover");
        if (sw) {
            StrBuf s;
            sb_init(&s);
            sb_addf(&s, "Switchover scheduled at: %s", json_get_string(sw, "at"));
            static const char *const keys[] = {"from", "to"};
            for (size_t i = 0; i < 2; i++)
                if (json_get_string(sw, keys[i]))
                    sb_addf(&s, "\n%24s: %s", keys[i], json_get_string(sw, keys[i]));
            strlist_add(&info, s.s);
            sb_free(&s);
        }
        if (info.n) {
            char *j = strlist_join(&info, "\n ");
            sb_addf(&b, " %s\n", j);
            free(j);
        }
        strlist_clear(&info);
    }
    free(title);
    table_free(&t);
    cJSON_Delete(view);
    return sb_steal(&b);
}

void ctl_print_members(const Cluster *cl, const char *scope) {
    char *s = ctl_members_output(cl, scope, false, FMT_PRETTY);
    fputs(s, stdout);
    free(s);
}
