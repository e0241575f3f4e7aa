/* pgha-ctl's internals, shared by its files:
 *   ctl.c          command line, configuration (-c, --dcs-url, -k), etcd connection, dispatch, usage
 *   yaml_out.c     YAML as PyYAML's safe_dump writes it (show-config, edit-config, -f yaml, tags)
 *   output.c       tables: pretty (prettytable), tsv, json, yaml; Python's str() of values
 *   members.c      the member table of list/topology (Patroni 4.1's columns), role filters, member choice
 *   text.c         pure helpers: unified diff, scheduled timestamps, --set paths, --dcs-url, JSON equality
 *   prompt.c       interactive prompts and confirmations as click asks them
 *   rest.c         requests to the members' REST API (the ctl/restapi credentials and TLS settings)
 *   cmd_info.c     list, topology, history, show-config, dsn, version
 *   cmd_switch.c   switchover, failover: the request, then the outcome watched in etcd
 *   cmd_config.c   edit-config, pause, resume
 *   cmd_cluster_role.c  demote-cluster, promote-cluster (standby_cluster in /config)
 *   cmd_members.c  restart, reload, reinit, flush, remove
 *   cmd_query.c    query (libpq)
 * Every pure function here is unit-tested (tests/unit/test_ctl.c). */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "common/config.h"
#include "common/util.h"
#include "dcs/dcs.h"

typedef struct cJSON cJSON;

/* Exit codes (README "pgha-ctl"). */
enum {
    CTL_OK = 0,
    CTL_ERROR = 1,        /* an error: nothing (more) was done, the message says why */
    CTL_USAGE = 2,        /* a wrong option or argument */
    CTL_FAILED = 3,       /* switchover/failover: requested, and it did not happen */
    CTL_OTHER_LEADER = 4, /* switchover/failover: a member other than the candidate took over */
    CTL_UNKNOWN = 5,      /* switchover/failover: still under way when the wait ended */
};

typedef struct Ctl {
    const char *config_file;
    const char *dcs_url;
    bool insecure;
    bool scope_given; /* the configuration names a scope (else cfg.scope is a placeholder) */
    PghaConfig cfg;
    CfgSource src;
    Dcs *dcs;
    char *endpoints; /* the etcd endpoints, for messages */
} Ctl;

/* ---- ctl.c ---- */
/* "Error: <message>" on stderr, as patronictl (click) writes its errors. */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Connect to etcd for cluster_name (NULL: the configuration's scope). -1 with the error printed. */
int ctl_connect(Ctl *c, const char *cluster_name);
/* A fresh linearizable read of the cluster, or NULL with the error printed. */
Cluster *ctl_read_cluster(Ctl *c);
/* getopt_long over a command's arguments (argv[0] is the command); resets getopt first. */
int ctl_getopt(int argc, char **argv, const char *shortopts, const void *longopts);
/* Is the cluster paused (/config pause)? loop_wait from /config (default 10), ttl (default 30). */
bool ctl_is_paused(const Cluster *cl);
long long ctl_config_ll(const Cluster *cl, const char *key, long long dflt);
/* The local time now, YYYY-MM-DD HH:MM:SS with `precision` fractional digits (0: none). */
char *ctl_timestamp(int precision);
/* A progress line as patronictl prints it: its timestamp() (5 fractional digits), a space, the message. */
void ctl_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- yaml_out.c ---- */
/* yaml.safe_dump(v, default_flow_style=flow, allow_unicode=True): keys sorted, block style with
 * indentless sequences, scalars quoted only where PyYAML quotes them. Ends with a newline. */
char *yaml_dump(const cJSON *v, bool flow);

/* ---- output.c ---- */
typedef enum CtlFormat { FMT_PRETTY, FMT_TSV, FMT_JSON, FMT_YAML, FMT_TOPOLOGY } CtlFormat;
/* pretty, tsv, json, yaml, yml (topology only when allow_topology). -1 when unknown. */
int ctl_parse_format(const char *s, bool allow_topology, CtlFormat *ret);

typedef struct Table {
    StrList columns;
    cJSON *rows;       /* array of arrays of values: strings, numbers, bools, null, objects (tags) */
    bool *right;       /* right-aligned columns (pretty) */
    const char *title; /* written into the top border (pretty); also: empty values omitted in json/yaml */
} Table;
void table_init(Table *t, const char *const *columns, size_t n);
void table_set_right(Table *t, const char *column);
void table_free(Table *t);
/* Python's print_output() of patronictl: the whole output (ends with a newline). */
char *table_render(const Table *t, CtlFormat fmt, const char *delimiter);
/* Python's str() of a value (True, None, 12, text). */
char *py_str(const cJSON *v);

/* ---- members.c ---- */
typedef enum CtlRole { ROLE_LEADER, ROLE_PRIMARY, ROLE_STANDBY_LEADER, ROLE_REPLICA, ROLE_STANDBY, ROLE_ANY } CtlRole;
int ctl_parse_role(const char *s, CtlRole *ret);
const char *ctl_role_name(CtlRole r);
/* The members of cl with that role (patronictl's get_all_members), sorted by name. *ret_n. */
const Member **ctl_members_with_role(const Cluster *cl, CtlRole role, size_t *ret_n);
/* The member table of `list` and `topology` (fmt FMT_TOPOLOGY: the tree order) and the footer lines
 * (maintenance mode, scheduled switchover; pretty/topology only). Returns the whole text. */
char *ctl_members_output(const Cluster *cl, const char *scope, bool extended, CtlFormat fmt);
/* Print the pretty table of cl to stdout. */
void ctl_print_members(const Cluster *cl, const char *scope);
/* Members whose api_url is known, the leader first (patronictl's get_all_members_leader_first). */
const Member **ctl_members_leader_first(const Cluster *cl, size_t *ret_n);

/* ---- ctl.c: option values ---- */
/* Option values, the error printed as click words it: -1 when invalid (the caller exits CTL_USAGE). */
int ctl_format_arg(const char *arg, CtlFormat *ret);
int ctl_role_arg(const char *arg, CtlRole *ret);
int ctl_watch_arg(const char *arg, double *ret); /* arg NULL: -W */
/* A command whose only options are -f FORMAT and --group (history, remove): CTL_OK or CTL_USAGE. */
int ctl_format_opts(int argc, char **argv, CtlFormat *fmt);

/* ---- text.c ---- */
/* difflib.unified_diff of two texts split into lines, 3 lines of context, "--- " / "+++ " headers.
 * NULL when they are equal. */
char *unified_diff(const char *before, const char *after);
/* patronictl's parse_scheduled(): NULL/"now" -> *ret_iso NULL (immediate); a timestamp (a time without
 * a timezone is local time) -> its ISO form with the offset. -1 with *ret_error when unparsable. */
int ctl_parse_scheduled(const char *s, char **ret_iso, char **ret_error);
/* edit-config --set KEY=VALUE: the value as YAML, the key a dotted path (postgresql.parameters.<GUC>
 * keeps the dots of the GUC name); null removes it (and parents left empty). -1 with *ret_error. */
int ctl_apply_set(cJSON *config, const char *pair, char **ret_error);
/* --dcs-url DCS://HOST:PORT/NAMESPACE: *ret_hostport ("host:port"), *ret_namespace (NULL when no
 * path). Only etcd and etcd3 (both etcd v3 here). -1 with *ret_error. */
int ctl_parse_dcs_url(const char *url, char **ret_hostport, char **ret_namespace, char **ret_error);
/* Python's == of two JSON values (1 == 1.0; objects regardless of key order). */
bool ctl_json_equal(const cJSON *a, const cJSON *b);
/* Parse YAML text into JSON (NULL with *ret_error). An empty document is null. */
cJSON *ctl_yaml_to_json(const char *text, const char *name, char **ret_error);

/* The whole of a stream (a file, stdin). */
char *ctl_read_stream(FILE *f);

/* ---- prompt.c ---- */
/* click.prompt(text, default=dflt): "text [dflt]: "; the line typed, or dflt when empty. NULL at end of
 * input (the caller aborts). */
char *ctl_prompt(const char *text, const char *dflt);
/* "When should the <action> take place (e.g. <now + 1 h>)<gap>) [now]: " (patronictl writes a space before
 * the parenthesis for a switchover, none for a restart). NULL at end of input. */
char *ctl_prompt_when(const char *action, const char *gap);
/* click.confirm(text): "text [y/N]: ". -1 at end of input. */
int ctl_confirm(const char *text);
/* End of input at a prompt: "Aborted!" as click says it; returns CTL_ERROR. */
int ctl_aborted(void);

/* ---- rest.c ---- */
typedef struct RestResponse {
    long status; /* 0: no HTTP answer (error says why) */
    char *body;
    char *error;
    char *url;
} RestResponse;
void rest_response_clear(RestResponse *r);
/* One request to a member's REST API: <api_url's scheme://host:port>/<endpoint>, with a JSON body
 * when body is not NULL. timeout_ms 0: no total limit (the connection still has 5 s). */
void ctl_rest(const Ctl *c, const Member *m, const char *method, const char *endpoint, const char *body,
              long timeout_ms, RestResponse *ret);
/* The same without waiting: start it, then poll (wait_ms at most) until it answers (returns true). */
typedef struct RestCall RestCall;
RestCall *ctl_rest_start(const Ctl *c, const Member *m, const char *method, const char *endpoint, const char *body,
                         long timeout_ms);
bool ctl_rest_poll(RestCall *call, int wait_ms, RestResponse *ret);
void ctl_rest_free(RestCall *call);
/* A refusal by access control (401/403): prints a line naming the problem; true when it was one. */
bool ctl_rest_auth_failed(const RestResponse *r, const char *member);

/* ---- cmd_switch.c ---- */
typedef enum Outcome { PENDING, DONE, OTHER, FAILED, UNKNOWN } Outcome;
/* Where a switchover/failover from old_leader (NULL: none) to candidate (NULL/"": any) stands in the
 * cluster, as one line; *outcome set when it is over (requested: the failover key has been written). */
char *ctl_switch_phase(const Cluster *cl, const char *candidate, const char *old_leader, bool requested,
                       Outcome *outcome);

/* ---- commands ---- */
int cmd_list(Ctl *c, int argc, char **argv);
int cmd_topology(Ctl *c, int argc, char **argv);
int cmd_history(Ctl *c, int argc, char **argv);
int cmd_show_config(Ctl *c, int argc, char **argv);
int cmd_dsn(Ctl *c, int argc, char **argv);
int cmd_version(Ctl *c, int argc, char **argv);
int cmd_switchover(Ctl *c, int argc, char **argv);
int cmd_failover(Ctl *c, int argc, char **argv);
int cmd_edit_config(Ctl *c, int argc, char **argv);
int cmd_pause(Ctl *c, int argc, char **argv);
int cmd_resume(Ctl *c, int argc, char **argv);
int cmd_restart(Ctl *c, int argc, char **argv);
int cmd_reload(Ctl *c, int argc, char **argv);
int cmd_reinit(Ctl *c, int argc, char **argv);
int cmd_flush(Ctl *c, int argc, char **argv);
int cmd_remove(Ctl *c, int argc, char **argv);
int cmd_query(Ctl *c, int argc, char **argv);
int cmd_demote_cluster(Ctl *c, int argc, char **argv);
int cmd_promote_cluster(Ctl *c, int argc, char **argv);
