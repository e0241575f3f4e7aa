#include "agent/ha.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/decide.h"
#include "agent/probe.h"
#include "agent/slots.h"
#include "agent/snapshot.h"
#include "agent/sync.h"
#include "common/json.h"
#include "common/sdnotify.h"
#include "dcs/dcs.h"
#include "dcs/curlinit.h"
#include "pg/pg.h"
#include "restapi/restapi.h"

typedef enum TaskKind { TASK_NONE, TASK_BOOTSTRAP, TASK_CLONE, TASK_REWIND } TaskKind;

typedef struct Task {
    TaskKind kind;
    pthread_t thread;
    _Atomic bool done;
    int result;
    char *error;
    char host[256];
    int port;
    bool crash_recovery; /* rewind: finish crash recovery first */
    PgChild child;       /* the tool it runs, stopped at shutdown (shutdown_ha) */
    struct Ha *ha;
} Task;

/* A copied logical slot waiting for its readiness check, with the catalog_xmin its original had on the
 * primary when the primary's physical slot for us first held one (0: not yet). */
typedef struct PendingSlot {
    char *name;
    long long primary_xmin;
} PendingSlot;

typedef struct Ha {
    Agent *a;
    Dcs *dcs;
    RestServer *rest;
    int wake_fd;

    /* PostgreSQL */
    char *bin_dir;
    int major;
    pid_t pm_pid;
    int pm_pidfd;
    bool pg_starting;
    bool start_as_primary;
    usec_t start_began;
    bool promoting;
    bool expect_stop;
    bool crashed;
    PGconn *conn;
    PgStatus st;
    char sysid[32];
    bool have_controldata;
    ControlData cd;
    char state[64];
    char role[32];
    char following[128];
    bool following_set;
    char *applied_conf;  /* unused */
    bool pending_restart;
    cJSON *pending_reason; /* {"guc":{"old_value":..,"new_value":..}} */
    char *ssn;             /* synchronous_standby_names while pgha manages it (synchronous mode), else NULL */
    long long ssn_flush;   /* primary flush LSN when ssn last took effect (0: not known yet) */
    usec_t sync_grace_until; /* quorum mode after a promotion: remove no voter before this */
    bool leaving_sync;     /* about to stop: publish nosync so that the leader releases us first */
    bool diverged;         /* a replica whose WAL went past the leader's timeline switch: rewind it */
    bool tilt;             /* this cycle is stale (TILT): observe only */
    bool rewind_failed;    /* pg_rewind failed and the data directory was kept: do not loop on it */
    bool diverged_reported;
    int slots_timeout_ms;  /* per statement of slots_sync(): bounded by what is left of the lease */
    char *last_error;

    /* DCS view */
    Cluster *cluster;
    Cluster *last_locked;
    DynConfig dyn;
    long long dyn_version;
    bool dyn_loaded;
    long long dcs_last_seen;
    usec_t cluster_read_at;
    usec_t lock_valid_until;
    char *last_status;   /* last /status value we wrote */

    /* replication slots */
    PgSlot *slot_rows;   /* pg_replication_slots as read this cycle */
    size_t n_slot_rows;
    bool slot_rows_ok;
    bool slots_synced;   /* slots_sync() ran this cycle */
    RetainTimers retain; /* leader: when each member slot was last seen (retain_slots) */
    char *slots_errors_logged;
    /* logical slots on replicas (copied from the primary, Patroni's copy_logical_slots) */
    bool enforce_hsf;         /* hot_standby_feedback forced on: this node (or a cascade below it) carries them */
    StrList slots_recopy;     /* advance failed for lack of WAL or invalidation: copy again */
    PendingSlot *slots_unready; /* copies not yet known to be safe to use after a failover */
    size_t n_slots_unready;
    bool slots_check_local;   /* after a (re)start: check the local logical slots' readiness again */
    usec_t slots_copy_after;  /* back-off after a refused or failed copy */
    StrList slots_copy_logged; /* copy notes already logged (cleared when there is nothing to copy) */

    Task task;
    /* the CHECKPOINT after a promotion (pg_rewind on other nodes needs it): run in a thread */
    pthread_t checkpoint_thread;
    bool checkpoint_running;
    _Atomic bool checkpoint_done;
    bool checkpoint_pending; /* published as checkpoint_after_promote: false */
    usec_t next_cycle;
    usec_t next_watchdog;
    usec_t last_cycle;
    bool reload_pending;
    usec_t not_answering_since;
    bool stopping;
    bool fatal;
    usec_t pre_promote_failed_at;
} Ha;

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                     */

/* "2025-06-01T12:00:00+00:00", "...Z", with optional fractional seconds: epoch seconds. */
static int parse_iso8601(const char *s, double *ret) {
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        p = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!p)
        return -EINVAL;
    double frac = 0;
    if (*p == '.') {
        char *end;
        frac = strtod(p, &end);
        p = end;
    }
    long off = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int hh = 0, mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) < 1 && sscanf(p + 1, "%2d%2d", &hh, &mm) < 1)
            return -EINVAL;
        off = sign * (hh * 3600L + mm * 60L);
        p += strlen(p);
    } else {
        return -EINVAL; /* a timezone is mandatory */
    }
    time_t t = timegm(&tm);
    *ret = (double)t - (double)off + frac;
    return 0;
}

static const PghaConfig *cfg_of(Ha *h) { return &h->a->cfg; }

static void set_state(Ha *h, const char *state) { snprintf(h->state, sizeof h->state, "%s", state); }
static void set_role(Ha *h, const char *role) { snprintf(h->role, sizeof h->role, "%s", role); }

static void wake(void *ud) {
    Ha *h = ud;
    uint64_t one = 1;
    (void)!write(h->wake_fd, &one, sizeof one);
}

static int loop_wait_s(Ha *h) { return (int)(h->dyn_loaded ? h->dyn.loop_wait : cfg_of(h)->bootstrap.dyn.loop_wait); }
static int ttl_s(Ha *h) { return (int)(h->dyn_loaded ? h->dyn.ttl : cfg_of(h)->bootstrap.dyn.ttl); }

static const DynConfig *dyn_of(Ha *h) { return h->dyn_loaded ? &h->dyn : &cfg_of(h)->bootstrap.dyn; }

static bool use_slots(Ha *h) { return dyn_of(h)->use_slots; }

/* The server parameters, with hot_standby_feedback forced on while this node is to carry logical slots
 * (Patroni's enforce_hot_standby_feedback). */
static YNode *build_params(Ha *h, StrList *warnings) {
    YNode *params = pg_build_parameters(cfg_of(h), dyn_of(h)->parameters, h->major, warnings);
    if (h->enforce_hsf)
        ynode_set(params, "hot_standby_feedback", ynode_new_str("on", "parameters", 0));
    return params;
}

static bool sync_mode_on(struct Ha *h);
static void slots_on_promote(Ha *h);

/* Local connection: the unix socket when use_unix_socket, else the first listen address. */
static void local_conn_params(Ha *h, PgConnParams *p, char *hostbuf, size_t hostlen) {
    const PghaConfig *cfg = cfg_of(h);
    StrList addrs = {0};
    int port = 5432;
    (void)parse_listen(cfg->postgresql.listen, &addrs, &port);
    const char *host = addrs.n ? addrs.v[0] : "127.0.0.1";
    if (strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    snprintf(hostbuf, hostlen, "%s", host);
    if (cfg->postgresql.use_unix_socket) {
        const YNode *sd = cfg->postgresql.parameters ? ynode_get(cfg->postgresql.parameters, "unix_socket_directories")
                                                     : NULL;
        if (sd && sd->type == Y_STR) {
            _cleanup_free_ char *first = xstrdup(sd->text);
            char *comma = strchr(first, ',');
            if (comma)
                *comma = '\0';
            str_trim(first);
            if (*first)
                snprintf(hostbuf, hostlen, "%s", first);
        } else {
            snprintf(hostbuf, hostlen, "/var/run/postgresql");
        }
    }
    strlist_clear(&addrs);
    *p = (PgConnParams){.host = hostbuf, .port = port, .user = cfg->postgresql.superuser.username,
                        .password = cfg->postgresql.superuser.password, .dbname = cfg->postgresql.database,
                        .application_name = "Patroni", .connect_timeout = 3, .ssl = &cfg->postgresql.superuser,
                        /* a local connection needs no Kerberos: skipping it saves its start-up cost */
                        .gssencmode_default = "disable"};
}

static void close_conn(Ha *h) {
    if (h->conn)
        PQfinish(h->conn);
    h->conn = NULL;
}

static PGconn *get_conn(Ha *h) {
    if (h->conn && PQstatus(h->conn) == CONNECTION_OK)
        return h->conn;
    close_conn(h);
    PgConnParams p;
    char host[256];
    local_conn_params(h, &p, host, sizeof host);
    char *err = NULL;
    h->conn = pg_connect(&p, &err);
    if (!h->conn) {
        log_debug("cannot connect to the local PostgreSQL: %s", err);
        free(err);
    }
    return h->conn;
}

static char *conn_url(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    _cleanup_free_ char *host = NULL;
    int port = 5432;
    if (cfg->postgresql.connect_address) {
        (void)parse_host_port(cfg->postgresql.connect_address, 5432, &host, &port);
    } else {
        StrList addrs = {0};
        (void)parse_listen(cfg->postgresql.listen, &addrs, &port);
        host = xstrdup(addrs.n ? addrs.v[0] : "127.0.0.1");
        strlist_clear(&addrs);
    }
    if (host && strchr(host, ':'))
        return xasprintf("postgres://[%s]:%d/%s", host, port, cfg->postgresql.database);
    return xasprintf("postgres://%s:%d/%s", host ? host : "127.0.0.1", port, cfg->postgresql.database);
}

static char *api_url(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    return xasprintf("%s://%s/patroni", cfg->restapi.certfile ? "https" : "http", cfg->restapi.connect_address);
}

/* Effective tags as Patroni publishes them: predefined booleans only when true. */
static cJSON *effective_tags(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    cJSON *t = cJSON_CreateObject();
    static const char *const bool_tags[] = {"nofailover", "clonefrom", "noloadbalance", "nosync", "nostream"};
    const YNode *all = cfg->tags.all;
    for (size_t i = 0; all && i < all->n; i++) {
        const char *k = all->keys[i];
        bool predefined = false;
        for (size_t b = 0; b < ELEMENTSOF(bool_tags); b++)
            if (strcmp(k, bool_tags[b]) == 0)
                predefined = true;
        if (predefined) {
            bool v = false;
            if (strcmp(k, "nofailover") == 0)
                v = cfg->tags.nofailover;
            else if (strcmp(k, "clonefrom") == 0)
                v = cfg->tags.clonefrom;
            else if (strcmp(k, "noloadbalance") == 0)
                v = cfg->tags.noloadbalance;
            else if (strcmp(k, "nosync") == 0)
                v = cfg->tags.nosync || h->leaving_sync;
            else
                v = cfg->tags.nostream;
            if (v)
                cJSON_AddTrueToObject(t, k);
            continue;
        }
        if (strcmp(k, "failover_priority") == 0) {
            char buf[32];
            snprintf(buf, sizeof buf, "%lld", cfg->tags.failover_priority);
            cJSON_AddItemToObject(t, k, cJSON_CreateRaw(buf));
            continue;
        }
        if (all->items[i]->type != Y_NULL)
            cJSON_AddItemToObject(t, k, ynode_to_json(all->items[i]));
    }
    if (config_is_set(cfg, "tags.failover_priority") && !cJSON_GetObjectItemCaseSensitive(t, "nofailover") &&
        cfg->tags.nofailover)
        cJSON_AddTrueToObject(t, "nofailover");
    if (h->leaving_sync && !cJSON_GetObjectItemCaseSensitive(t, "nosync"))
        cJSON_AddTrueToObject(t, "nosync");
    return t;
}

static const Member *member_by_name(Ha *h, const char *name) { return cluster_get_member(h->cluster, name); }

static bool member_host_port(const Member *m, char *host, size_t hostlen, int *port) {
    char *hst = NULL;
    if (!member_conn_host_port(m, &hst, port))
        return false;
    snprintf(host, hostlen, "%s", hst);
    free(hst);
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* PostgreSQL control                                                                          */

static void write_pgpass(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    if (!cfg->postgresql.pgpass)
        return;
    StrList lines = {0};
    const PgAuth *auths[] = {&cfg->postgresql.replication, &cfg->postgresql.superuser, &cfg->postgresql.rewind};
    for (size_t i = 0; i < ELEMENTSOF(auths); i++)
        if (auths[i]->username && auths[i]->password) {
            _cleanup_free_ char *l = pg_pgpass_line("*", "*", auths[i]->username, auths[i]->password);
            if (!strlist_contains(&lines, l))
                strlist_add(&lines, l);
        }
    char *err = NULL;
    if (pg_write_pgpass(cfg->postgresql.pgpass, &lines, &err) < 0) {
        log_error("%s", err);
        free(err);
    }
    strlist_clear(&lines);
}

static char *read_small_file(const char *path) {
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    StrBuf b;
    sb_init(&b);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0 && b.len < 16 * 1024 * 1024)
        sb_addn(&b, buf, n);
    fclose(f);
    return sb_steal(&b);
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "re");
    if (!in)
        return -errno;
    int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        fclose(in);
        return -e;
    }
    char buf[8192];
    size_t n;
    int r = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (write(fd, buf, n) != (ssize_t)n) {
            r = -EIO;
            break;
        }
    fclose(in);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

/* With config_dir outside data_dir, the files initdb or pg_basebackup left in data_dir are the
 * starting point of the ones in config_dir (Patroni's behaviour with a Debian-style layout). */
static void prepare_config_dir(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    if (streq(cfg->postgresql.config_dir, cfg->postgresql.data_dir))
        return;
    if (mkdir(cfg->postgresql.config_dir, 0700) < 0 && errno != EEXIST)
        log_warning("cannot create %s: %s", cfg->postgresql.config_dir, strerror(errno));
    static const struct {
        const char *from, *to;
    } files[] = {{"pg_hba.conf", "pg_hba.conf"}, {"pg_ident.conf", "pg_ident.conf"},
                 {"postgresql.conf", "postgresql.base.conf"}};
    for (size_t i = 0; i < ELEMENTSOF(files); i++) {
        _cleanup_free_ char *from = xasprintf("%s/%s", cfg->postgresql.data_dir, files[i].from);
        _cleanup_free_ char *to = xasprintf("%s/%s", cfg->postgresql.config_dir, files[i].to);
        struct stat st;
        if (stat(to, &st) == 0 || stat(from, &st) < 0)
            continue;
        int r = copy_file(from, to);
        if (r < 0)
            log_warning("cannot copy %s to %s: %s", from, to, strerror(-r));
    }
}

/* Write postgresql.conf (and standby.signal) for a start as primary or as a replica of `target`. */
static int write_configuration(Ha *h, bool as_primary, const char *target) {
    const PghaConfig *cfg = cfg_of(h);
    prepare_config_dir(h);
    StrList warnings = {0};
    YNode *params = build_params(h, &warnings);
    if (h->ssn) {
        /* owned by pgha in synchronous mode: the user's value does not apply (spec §3.7.1) */
        if (*h->ssn)
            ynode_set(params, "synchronous_standby_names", ynode_new_str(h->ssn, "sync", 0));
        else
            ynode_remove(params, "synchronous_standby_names");
    } else if (sync_mode_on(h)) {
        ynode_remove(params, "synchronous_standby_names");
    }
    for (size_t i = 0; i < warnings.n; i++)
        log_warning("%s", warnings.v[i]);
    strlist_clear(&warnings);
    YNode *recovery = NULL;
    if (!as_primary) {
        recovery = ynode_new(Y_MAP, "recovery", 0);
        const Member *m = target ? member_by_name(h, target) : NULL;
        char host[256];
        int port;
        if (m && member_host_port(m, host, sizeof host, &port)) {
            _cleanup_free_ char *ci = pg_primary_conninfo(cfg, host, port);
            ynode_set(recovery, "primary_conninfo", ynode_new_str(ci, "recovery", 0));
            if (use_slots(h) && !cfg->tags.nostream) {
                _cleanup_free_ char *slot = slot_name_from_member_name(cfg->name);
                ynode_set(recovery, "primary_slot_name", ynode_new_str(slot, "recovery", 0));
            }
        }
        ynode_set(recovery, "recovery_target_timeline", ynode_new_str("latest", "recovery", 0));
        const YNode *rc = cfg->postgresql.recovery_conf ? cfg->postgresql.recovery_conf : dyn_of(h)->recovery_conf;
        for (size_t i = 0; rc && i < rc->n; i++)
            if (!ynode_get(recovery, rc->keys[i]))
                ynode_set(recovery, rc->keys[i], ynode_clone(rc->items[i]));
    }
    char *err = NULL;
    /* unchanged content: nothing to write (and nothing to reload) */
    _cleanup_free_ char *text = pg_render_postgresql_conf(cfg, params, recovery);
    _cleanup_free_ char *conf_path = xasprintf("%s/postgresql.conf", cfg->postgresql.config_dir);
    _cleanup_free_ char *current = read_small_file(conf_path);
    bool changed = !streq(text, current);
    int r = changed ? pg_write_postgresql_conf(cfg, params, recovery, &err) : 0;
    if (r == 0)
        r = pg_set_standby_signal(cfg->postgresql.data_dir, !as_primary, &err);
    /* pg_hba / pg_ident: the local configuration wins over the dynamic one */
    const YNode *hba = cfg->postgresql.pg_hba ? cfg->postgresql.pg_hba : dyn_of(h)->pg_hba;
    if (r == 0 && hba) {
        _cleanup_free_ char *path = xasprintf("%s/pg_hba.conf", cfg->postgresql.config_dir);
        r = pg_write_hba(path, hba, false, &err);
    }
    const YNode *ident = cfg->postgresql.pg_ident ? cfg->postgresql.pg_ident : dyn_of(h)->pg_ident;
    if (r == 0 && ident) {
        _cleanup_free_ char *path = xasprintf("%s/pg_ident.conf", cfg->postgresql.config_dir);
        r = pg_write_hba(path, ident, false, &err);
    }
    if (r < 0) {
        log_error("cannot write the PostgreSQL configuration: %s", err);
        free(err);
    }
    ynode_free(params);
    ynode_free(recovery);
    snprintf(h->following, sizeof h->following, "%s", as_primary || !target ? "" : target);
    h->following_set = true;
    write_pgpass(h);
    return r < 0 ? r : changed ? 1 : 0;
}

/* Only the postmaster is reaped here: a waitpid(-1) could steal the child of a worker thread's
 * run_command (pg_basebackup, pg_rewind) and make its outcome unknown. Callbacks are double-forked. */
static pid_t reap_pid;
static void reap_children(void) {
    if (reap_pid > 0)
        (void)waitpid(reap_pid, NULL, WNOHANG);
}

static void forget_postmaster(Ha *h) {
    if (h->pm_pidfd >= 0)
        close(h->pm_pidfd);
    h->pm_pidfd = -1;
    h->pm_pid = 0;
    close_conn(h);
    pg_status_free(&h->st);
    h->st = (PgStatus){0};
    h->pg_starting = false;
    h->promoting = false;
}

static void attach_postmaster(Ha *h, pid_t pid) {
    h->pm_pid = pid;
    reap_pid = pid;
    h->pm_pidfd = pg_pidfd(pid);
    if (h->pm_pidfd < 0)
        log_warning("cannot watch the postmaster %d with a pidfd (%s); its exit is noticed at the next cycle",
                    (int)pid, strerror(-h->pm_pidfd));
}

static bool postmaster_alive(Ha *h) {
    if (h->pm_pid <= 0)
        return false;
    reap_children();
    return pg_process_alive(h->pm_pid);
}

static void run_callback(Ha *h, const char *action, const char *role) {
    const PghaConfig *cfg = cfg_of(h);
    const char *cmd = NULL;
    if (strcmp(action, "on_start") == 0)
        cmd = cfg->postgresql.callbacks.on_start;
    else if (strcmp(action, "on_stop") == 0)
        cmd = cfg->postgresql.callbacks.on_stop;
    else if (strcmp(action, "on_restart") == 0)
        cmd = cfg->postgresql.callbacks.on_restart;
    else if (strcmp(action, "on_reload") == 0)
        cmd = cfg->postgresql.callbacks.on_reload;
    else if (strcmp(action, "on_role_change") == 0)
        cmd = cfg->postgresql.callbacks.on_role_change;
    if (!cmd)
        return;
    /* everything the child needs is prepared before fork (only async-signal-safe calls after it) */
    char *line = xasprintf("%s %s %s %s", cmd, action, role, cfg->scope);
    pid_t pid = fork();
    if (pid == 0) {
        /* double fork: the callback is re-parented, so no zombie waits for us */
        if (fork() != 0)
            _exit(0);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_DFL);
        setsid();
        for (int fd = 3; fd < 1024; fd++)
            (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        execl("/bin/sh", "sh", "-c", line, (char *)NULL);
        _exit(127);
    }
    free(line);
    if (pid < 0)
        log_warning("cannot run the %s callback: %s", action, strerror(errno));
    else
        (void)waitpid(pid, NULL, 0);
}

static int start_postgres(Ha *h, bool as_primary, const char *target) {
    const PghaConfig *cfg = cfg_of(h);
    if (write_configuration(h, as_primary, target) < 0)
        return -EIO;
    StrList warnings = {0};
    YNode *params = build_params(h, &warnings);
    strlist_clear(&warnings);
    StrList args = {0};
    pg_cmdline_options(params, &args);
    ynode_free(params);
    _cleanup_free_ char *postgres = pg_bin(h->bin_dir, cfg->postgresql.bin_name.postgres);
    _cleanup_free_ char *conf = xasprintf("%s/postgresql.conf", cfg->postgresql.config_dir);
    /* a stale postmaster.pid of a dead postmaster blocks the start: PostgreSQL checks it itself */
    pid_t pid = 0;
    char *err = NULL;
    int r = pg_spawn_postmaster(postgres, cfg->postgresql.data_dir, conf, &args, &pid, &err);
    strlist_clear(&args);
    if (r < 0) {
        log_error("cannot start PostgreSQL: %s", err);
        free(err);
        set_state(h, "start failed");
        return r;
    }
    attach_postmaster(h, pid);
    h->pg_starting = true;
    h->slots_check_local = true;
    h->start_as_primary = as_primary;
    h->start_began = now_monotonic();
    h->expect_stop = false;
    h->crashed = false;
    set_state(h, "starting");
    log_info("postmaster pid=%d", (int)pid);
    return 0;
}

static int stop_postgres(Ha *h, PgStopMode mode, const char *why) {
    if (h->pm_pid <= 0)
        return 0;
    const PghaConfig *cfg = cfg_of(h);
    if (cfg->postgresql.before_stop) {
        StrList argv = {0};
        strlist_add(&argv, "/bin/sh");
        strlist_add(&argv, "-c");
        strlist_add(&argv, cfg->postgresql.before_stop);
        char *out = NULL;
        int r = run_command(&argv, NULL, (usec_t)cfg->postgresql.pg_ctl_timeout * USEC_PER_SEC, &out);
        if (r != 0)
            log_warning("before_stop script exited with %d: %s", r, out ? str_trim(out) : "");
        free(out);
        strlist_clear(&argv);
    }
    log_info("stopping PostgreSQL (%s)%s%s", mode == PG_STOP_FAST ? "fast" : mode == PG_STOP_IMMEDIATE ? "immediate" : "smart",
             why ? ": " : "", why ? why : "");
    h->expect_stop = true;
    set_state(h, "stopping");
    close_conn(h);
    usec_t limit = (usec_t)cfg->postgresql.pg_ctl_timeout * USEC_PER_SEC;
    if (mode == PG_STOP_IMMEDIATE && limit > 10 * USEC_PER_SEC)
        limit = 10 * USEC_PER_SEC; /* an immediate stop is a demotion with the lease ticking */
    int r = pg_signal_stop(h->pm_pid, mode, limit);
    if (r == -ETIMEDOUT && mode != PG_STOP_IMMEDIATE) {
        log_warning("PostgreSQL did not stop within pg_ctl_timeout; sending an immediate shutdown");
        r = pg_signal_stop(h->pm_pid, PG_STOP_IMMEDIATE, 10 * USEC_PER_SEC);
    }
    if (r == -ETIMEDOUT) {
        /* a hung postmaster (stopped, or stuck in the kernel): fence it */
        log_error("PostgreSQL did not stop; killing the postmaster (pid %d)", (int)h->pm_pid);
        (void)kill(h->pm_pid, SIGKILL);
        r = pg_signal_stop(h->pm_pid, PG_STOP_IMMEDIATE, 5 * USEC_PER_SEC);
        if (r == -ESRCH)
            r = 0;
    }
    if (r == -ETIMEDOUT) {
        set_state(h, "stop failed");
        return r;
    }
    forget_postmaster(h);
    reap_children();
    set_state(h, "stopped");
    run_callback(h, "on_stop", h->role);
    return 0;
}

static int promote_postgres(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    if (cfg->postgresql.pre_promote) {
        StrList argv = {0};
        strlist_add(&argv, "/bin/sh");
        strlist_add(&argv, "-c");
        strlist_add(&argv, cfg->postgresql.pre_promote);
        /* it runs while we hold the lock: it may not outlive the lease, and the lock is renewed
         * (and checked) before PostgreSQL is promoted */
        usec_t now = now_monotonic();
        usec_t left = h->lock_valid_until > now ? h->lock_valid_until - now : 0;
        usec_t limit = left > (usec_t)loop_wait_s(h) * USEC_PER_SEC ? left - (usec_t)loop_wait_s(h) * USEC_PER_SEC
                                                                    : USEC_PER_SEC;
        char *out = NULL;
        int r = run_command(&argv, NULL, limit, &out);
        strlist_clear(&argv);
        if (r != 0) {
            log_error("pre_promote script failed (%d): %s", r, out ? str_trim(out) : "");
            free(out);
            h->pre_promote_failed_at = now_monotonic();
            return -ECANCELED;
        }
        free(out);
        if (dcs_update_leader(h->dcs, NULL) != 1) {
            log_error("lost the leader lock while pre_promote ran: not promoting");
            h->lock_valid_until = 0;
            return -ECANCELED;
        }
        h->lock_valid_until = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
    }
    /* pg_promote() over the connection we already have: no fork/exec of pg_ctl on the failover path */
    PGconn *c = get_conn(h);
    if (c) {
        char *err = NULL;
        PGresult *pr = pg_query(c, "SELECT pg_catalog.pg_promote(false)", 5000, &err);
        if (pr && PQntuples(pr) == 1 && PQgetvalue(pr, 0, 0)[0] == 't') {
            PQclear(pr);
            h->promoting = true;
            set_role(h, "promoted");
            slots_on_promote(h);
            run_callback(h, "on_role_change", "primary");
            return 0;
        }
        PQclear(pr);
        log_warning("pg_promote() failed (%s); trying pg_ctl promote", err ? err : "returned false");
        free(err);
    }
    StrList argv = {0};
    _cleanup_free_ char *pg_ctl = pg_bin(h->bin_dir, cfg->postgresql.bin_name.pg_ctl);
    strlist_add(&argv, pg_ctl);
    strlist_add(&argv, "promote");
    strlist_add(&argv, "-W");
    strlist_add(&argv, "-D");
    strlist_add(&argv, cfg->postgresql.data_dir);
    char *out = NULL;
    int r = run_command(&argv, NULL, (usec_t)cfg->postgresql.pg_ctl_timeout * USEC_PER_SEC, &out);
    strlist_clear(&argv);
    if (r != 0) {
        log_error("pg_ctl promote failed (%d): %s", r, out ? str_trim(out) : "");
        free(out);
        return -EIO;
    }
    free(out);
    h->promoting = true;
    set_role(h, "promoted");
    slots_on_promote(h);
    run_callback(h, "on_role_change", "primary");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* long actions in a worker thread                                                             */

static void *task_main(void *arg) {
    Task *t = arg;
    Ha *h = t->ha;
    const PghaConfig *cfg = cfg_of(h);
    char *err = NULL;
    int r = 0;
    pg_child_bind(&t->child);
    switch (t->kind) {
    case TASK_BOOTSTRAP: r = pg_initdb(cfg, h->bin_dir, &err); break;
    case TASK_CLONE: r = pg_basebackup(cfg, h->bin_dir, t->host, t->port, &err); break;
    case TASK_REWIND:
        if (t->crash_recovery)
            r = pg_crash_recovery(cfg, h->bin_dir, &err);
        if (r == 0)
            r = pg_rewind(cfg, h->bin_dir, t->host, t->port, &err);
        break;
    default: break;
    }
    pg_child_bind(NULL);
    t->result = r;
    t->error = err;
    t->done = true;
    wake(h);
    return NULL;
}

static const char *task_name(TaskKind k) {
    switch (k) {
    case TASK_BOOTSTRAP: return "bootstrap";
    case TASK_CLONE: return "clone";
    case TASK_REWIND: return "rewind";
    default: return NULL;
    }
}

static void task_start(Ha *h, TaskKind kind, const char *host, int port, bool crash_recovery) {
    Task *t = &h->task;
    free(t->error);
    *t = (Task){.kind = kind, .ha = h, .port = port, .crash_recovery = crash_recovery};
    pg_child_init(&t->child);
    snprintf(t->host, sizeof t->host, "%s", host ? host : "");
    if (pthread_create(&t->thread, NULL, task_main, t) != 0) {
        log_error("cannot start the %s task: %s", task_name(kind), strerror(errno));
        pg_child_destroy(&t->child);
        t->kind = TASK_NONE;
    }
}

static void *checkpoint_main(void *arg) {
    Ha *h = arg;
    PgConnParams p;
    char host[256];
    local_conn_params(h, &p, host, sizeof host);
    p.application_name = "Patroni checkpoint";
    char *err = NULL;
    PGconn *c = pg_connect(&p, &err);
    if (c) {
        PGresult *r = pg_query(c, "CHECKPOINT", 0, &err);
        PQclear(r);
        PQfinish(c);
    }
    if (err) {
        log_warning("CHECKPOINT after promote failed: %s", err);
        free(err);
    }
    h->checkpoint_done = true;
    wake(h);
    return NULL;
}

static void start_post_promote_checkpoint(Ha *h) {
    if (h->checkpoint_running)
        return;
    h->checkpoint_done = false;
    h->checkpoint_pending = true;
    if (pthread_create(&h->checkpoint_thread, NULL, checkpoint_main, h) == 0)
        h->checkpoint_running = true;
    else
        h->checkpoint_pending = false;
}

static void finish_post_promote_checkpoint(Ha *h, bool wait) {
    if (!h->checkpoint_running || (!wait && !h->checkpoint_done))
        return;
    pthread_join(h->checkpoint_thread, NULL);
    h->checkpoint_running = false;
    h->checkpoint_pending = false;
}

/* ------------------------------------------------------------------------------------------ */
/* observation                                                                                 */

static void refresh_controldata(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    _cleanup_free_ char *bin = pg_bin(h->bin_dir, cfg->postgresql.bin_name.pg_controldata);
    char *err = NULL;
    h->have_controldata = pg_controldata(bin, cfg->postgresql.data_dir, &h->cd, &err) == 0;
    if (h->have_controldata)
        snprintf(h->sysid, sizeof h->sysid, "%s", h->cd.sysid);
    else {
        log_debug("pg_controldata: %s", err);
        free(err);
    }
}

/* Empty as Patroni means it: missing, or nothing but dot-files and lost+found. A directory with other
 * files but no PG_VERSION is not empty (its system identifier is then invalid: no action), and a
 * directory we cannot read is an error, never "empty" (DESIGN.md invariant 4). */
static bool data_dir_empty(Ha *h) {
    if (h->pm_pid > 0)
        return false;
    return pg_data_dir_empty(cfg_of(h)->postgresql.data_dir);
}

static void observe_pg(Ha *h, LocalState *l) {
    *l = (LocalState){0};
    const PghaConfig *cfg = cfg_of(h);
    struct stat st;
    bool exists = stat(cfg->postgresql.data_dir, &st) == 0;
    if (exists ? !S_ISDIR(st.st_mode) : errno != ENOENT) {
        l->data_dir_error = true;
        return;
    }
    if (exists) { /* (st is only valid then: a missing directory is simply empty) */
        DIR *dd = opendir(cfg->postgresql.data_dir);
        if (!dd) {
            l->data_dir_error = true;
            return;
        }
        closedir(dd);
    }
    l->data_dir_empty = data_dir_empty(h);
    if (l->data_dir_empty) {
        if (h->pm_pid <= 0)
            set_role(h, "uninitialized");
        h->sysid[0] = '\0';
        return;
    }
    if (!h->sysid[0] || !h->pm_pid)
        refresh_controldata(h);
    l->sysid = h->sysid[0] ? h->sysid : NULL;

    if (h->pm_pid > 0 && !postmaster_alive(h)) {
        bool expected = h->expect_stop;
        forget_postmaster(h);
        if (!expected) {
            log_warning("postmaster is not running (it exited on its own)");
            h->crashed = true;
            set_state(h, "crashed");
        } else {
            set_state(h, "stopped");
        }
    }
    if (h->pm_pid <= 0) {
        /* adopt a postmaster that runs without us (agent restarted) */
        PidFile pf;
        if (pg_read_pid_file(cfg->postgresql.data_dir, &pf) == 0 && pg_process_alive(pf.pid) &&
            pg_is_postmaster_of(pf.pid, cfg->postgresql.data_dir)) {
            log_info("found an already running postmaster (pid %d); taking it over", (int)pf.pid);
            attach_postmaster(h, pf.pid);
            h->pg_starting = strcmp(pf.status, "ready") != 0 && strcmp(pf.status, "standby") != 0;
            if (h->pg_starting)
                h->start_began = now_monotonic();
        }
    }
    l->pg_running = h->pm_pid > 0;
    l->crashed = h->crashed;
    if (!l->pg_running) {
        refresh_controldata(h);
        l->timeline = h->cd.checkpoint_tli;
        l->wal_position = h->cd.checkpoint_lsn;
        l->was_primary = h->have_controldata && (strcmp(h->cd.state, "in production") == 0 ||
                                                 strcmp(h->cd.state, "shut down") == 0 ||
                                                 strcmp(h->cd.state, "shutting down") == 0 ||
                                                 strcmp(h->cd.state, "in crash recovery") == 0);
        pg_status_free(&h->st);
        h->st = (PgStatus){0};
        if (strcmp(h->state, "crashed") != 0)
            set_state(h, "stopped");
        return;
    }
    PGconn *c = get_conn(h);
    if (c) {
        pg_status_free(&h->st);
        char *err = NULL;
        if (pg_query_status(c, &h->st, &err) < 0) {
            log_debug("status query failed: %s", err);
            free(err);
            close_conn(h);
        }
    } else {
        pg_status_free(&h->st);
        h->st = (PgStatus){0};
    }
    if (h->pg_starting && h->st.ok) {
        h->pg_starting = false;
        log_info("PostgreSQL is running%s", h->st.in_recovery ? " as a replica" : "");
        run_callback(h, "on_start", h->st.in_recovery ? "replica" : "primary");
    }
    l->pg_starting = h->pg_starting;
    l->pg_ready = h->st.ok;
    if (h->st.ok) {
        set_state(h, "running");
        l->in_recovery = h->st.in_recovery;
        l->timeline = h->st.timeline;
        l->wal_position = h->st.wal_position;
        if (!h->st.in_recovery) {
            if (h->promoting) {
                log_info("promotion complete: PostgreSQL is a primary on timeline %lld", h->st.timeline);
                start_post_promote_checkpoint(h);
            }
            h->promoting = false;
            set_role(h, "primary");
        } else if (!h->promoting) {
            set_role(h, "replica");
        }
    } else if (h->pg_starting) {
        set_state(h, "starting");
        long long limit = h->start_as_primary ? dyn_of(h)->primary_start_timeout : cfg->postgresql.pg_ctl_timeout;
        l->start_timed_out = now_monotonic() - h->start_began > (usec_t)limit * USEC_PER_SEC;
    } else {
        /* running but not answering (crash recovery, or a hung server): like a start, with a limit:
         * a lock holder whose PostgreSQL has not answered for ttl lets a healthy replica take over */
        l->pg_starting = true;
        set_state(h, "starting");
        usec_t now = now_monotonic();
        if (!h->not_answering_since)
            h->not_answering_since = now;
        if (now - h->not_answering_since > (usec_t)ttl_s(h) * USEC_PER_SEC) {
            l->start_timed_out = true;
            log_warning("PostgreSQL has not answered for %.0f s", (double)(now - h->not_answering_since) / 1e6);
        }
    }
    if (h->st.ok || h->pm_pid <= 0 || h->pg_starting)
        h->not_answering_since = 0;
    l->following = h->following_set ? (h->following[0] ? h->following : NULL) : NULL;
    if (!h->following_set && h->st.ok && h->st.in_recovery) {
        /* unknown after an agent restart: find the member our primary_conninfo points at */
        l->following = "\x01unknown";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* DCS side effects                                                                            */

static void refresh_dynamic_config(Ha *h) {
    const Cluster *c = h->cluster;
    if (!c || !c->has_config || c->config_version <= 0 || c->config_version == h->dyn_version)
        return;
    YNode *n = ynode_from_json(c->config, "DCS /config");
    DynConfig next;
    CfgDiag diag = {0};
    int r = dyn_config_parse_ex(n, cfg_of(h)->pgha.allow_short_ttl, &next, &diag);
    ynode_free(n);
    for (size_t i = 0; i < diag.warnings.n; i++)
        log_warning("%s", diag.warnings.v[i]);
    if (r < 0) {
        for (size_t i = 0; i < diag.errors.n; i++)
            log_error("%s", diag.errors.v[i]);
        log_error("the dynamic configuration in the DCS is invalid; keeping the previous one");
        dyn_config_free(&next);
    } else {
        if (h->dyn_loaded && (next.ttl != h->dyn.ttl || next.loop_wait != h->dyn.loop_wait ||
                              next.retry_timeout != h->dyn.retry_timeout))
            log_info("dynamic configuration changed: ttl=%lld loop_wait=%lld retry_timeout=%lld", next.ttl,
                     next.loop_wait, next.retry_timeout);
        if (h->dyn_loaded)
            dyn_config_free(&h->dyn);
        h->dyn = next;
        h->dyn_loaded = true;
        dcs_set_timings(h->dcs, (int)h->dyn.ttl, (int)h->dyn.loop_wait, (int)h->dyn.retry_timeout);
    }
    h->dyn_version = c->config_version;
    cfg_diag_clear(&diag);
}

static char *bootstrap_config_json(Ha *h) {
    const YNode *dcs = cfg_of(h)->bootstrap.dcs;
    if (!dcs)
        return xstrdup("{}");
    cJSON *j = ynode_to_json(dcs);
    char *s = json_dumps(j, false);
    cJSON_Delete(j);
    return s;
}

static void touch_member(Ha *h) {
    Member m = {0};
    m.conn_url = conn_url(h);
    m.api_url = api_url(h);
    m.state = xstrdup(h->state);
    m.role = xstrdup(h->role);
    m.version = xstrdup(PGHA_PATRONI_VERSION);
    m.proxy_url = cfg_of(h)->postgresql.proxy_address
                      ? xasprintf("postgres://%s/%s", cfg_of(h)->postgresql.proxy_address, cfg_of(h)->postgresql.database)
                      : NULL;
    m.tags = effective_tags(h);
    if (h->st.ok && h->task.kind == TASK_NONE) {
        m.has_xlog_location = true;
        m.xlog_location = h->st.wal_position;
        if (h->st.in_recovery && h->st.streaming)
            m.replication_state = xstrdup("streaming");
        m.has_timeline = h->st.timeline > 0;
        m.timeline = h->st.timeline;
    }
    m.pause = dyn_of(h)->pause;
    m.checkpoint_after_promote_false = h->checkpoint_pending;
    m.pending_restart = h->pending_restart;
    m.pending_restart_reason = h->pending_reason ? cJSON_Duplicate(h->pending_reason, true) : NULL;
    char *json = cluster_encode_member(&m);
    member_free_contents(&m);
    if (dcs_touch_member(h->dcs, json) < 0)
        log_warning("failed to update the member key: %s", dcs_error(h->dcs));
    free(json);
}

/* /history from the timeline history file of the current timeline (spec §4.9). */
static void update_history(Ha *h) {
    const Cluster *c = h->cluster;
    long long tl = h->st.timeline;
    if (!c || tl <= 0)
        return;
    int n = c->history ? cJSON_GetArraySize(c->history) : -1;
    if (tl == 1) {
        /* as Patroni: no /history without a timeline switch; only a stale one (entries left from an
         * earlier incarnation of the cluster) is reset to [] */
        if (n > 0)
            (void)dcs_set_history(h->dcs, "[]");
        return;
    }
    if (n > 0) {
        const cJSON *last = cJSON_GetArrayItem(c->history, n - 1);
        long long last_tl = 0;
        if (cJSON_IsArray(last) && json_item_ll(cJSON_GetArrayItem(last, 0), &last_tl) && last_tl == tl - 1 &&
            cJSON_GetArraySize(last) >= 5)
            return;
    }
    const PghaConfig *cfg = cfg_of(h);
    char path[4096];
    snprintf(path, sizeof path, "%s/pg_wal/%08llX.history", cfg->postgresql.data_dir, (unsigned long long)tl);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    struct stat st;
    time_t mtime = fstat(fileno(f), &st) == 0 ? st.st_mtime : time(NULL);
    cJSON *arr = cJSON_CreateArray();
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        char *p = str_trim(line);
        if (!*p || *p == '#')
            continue;
        char *save = NULL;
        char *tli = strtok_r(p, "\t ", &save), *lsn = strtok_r(NULL, "\t ", &save), *reason = strtok_r(NULL, "", &save);
        long long lv;
        if (!tli || !lsn || pg_parse_lsn(lsn, &lv) < 0)
            continue;
        cJSON *e = cJSON_CreateArray();
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", atoll(tli));
        cJSON_AddItemToArray(e, cJSON_CreateRaw(buf));
        snprintf(buf, sizeof buf, "%lld", lv);
        cJSON_AddItemToArray(e, cJSON_CreateRaw(buf));
        cJSON_AddItemToArray(e, cJSON_CreateString(reason ? str_trim(reason) : ""));
        cJSON_AddItemToArray(arr, e);
    }
    fclose(f);
    int m = cJSON_GetArraySize(arr);
    /* older entries keep what the DCS already has; the newest gets the timestamp and our name */
    for (int i = 0; i < m; i++) {
        cJSON *e = cJSON_GetArrayItem(arr, i);
        const cJSON *old = n > i ? cJSON_GetArrayItem(c->history, i) : NULL;
        if (i == m - 1) {
            struct tm tm;
            localtime_r(&mtime, &tm);
            char ts[64], tz[8];
            strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
            strftime(tz, sizeof tz, "%z", &tm);
            char iso[80];
            snprintf(iso, sizeof iso, "%s%.3s:%.2s", ts, tz, tz + 3);
            cJSON_AddItemToArray(e, cJSON_CreateString(iso));
            cJSON_AddItemToArray(e, cJSON_CreateString(cfg->name));
        } else if (cJSON_IsArray(old) && cJSON_GetArraySize(old) >= 4) {
            for (int k = 3; k < cJSON_GetArraySize(old); k++)
                cJSON_AddItemToArray(e, cJSON_Duplicate(cJSON_GetArrayItem(old, k), true));
        }
    }
    long long keep = dyn_of(h)->max_timelines_history;
    while (keep > 0 && cJSON_GetArraySize(arr) > keep)
        cJSON_DeleteItemFromArray(arr, 0);
    char *json = json_dumps(arr, false);
    cJSON_Delete(arr);
    if (dcs_set_history(h->dcs, json) < 0)
        log_warning("failed to update /history: %s", dcs_error(h->dcs));
    free(json);
}

/* ------------------------------------------------------------------------------------------ */
/* replication slots (spec §4.11): the plan is slots.c's, this part only runs it                */

static const char slots_sql[] =
    "SELECT slot_name, slot_type, plugin, database, active, xmin IS NOT NULL,"
    " COALESCE(pg_catalog.pg_wal_lsn_diff(restart_lsn, '0/0')::bigint, 0),"
    " COALESCE(pg_catalog.pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint, 0),"
    " COALESCE(catalog_xmin::text::bigint, 0)"
    " FROM pg_catalog.pg_replication_slots WHERE NOT temporary";

static void slot_rows_clear(Ha *h) {
    pg_slots_free(h->slot_rows, h->n_slot_rows);
    h->slot_rows = NULL;
    h->n_slot_rows = 0;
    h->slot_rows_ok = false;
}

/* One query of pg_replication_slots; the rows stay in h until the next one. */
static int load_slot_rows(Ha *h, PGconn *c) {
    slot_rows_clear(h);
    char *err = NULL;
    PGresult *r = pg_query(c, slots_sql, h->slots_timeout_ms, &err);
    if (!r) {
        log_error("Failed to read replication slots: %s", err);
        free(err);
        return -EIO;
    }
    int n = PQntuples(r);
    h->slot_rows = n > 0 ? xcalloc((size_t)n, sizeof *h->slot_rows) : NULL;
    for (int i = 0; i < n; i++) {
        PgSlot *s = &h->slot_rows[h->n_slot_rows++];
        s->name = xstrdup(PQgetvalue(r, i, 0));
        s->logical = strcmp(PQgetvalue(r, i, 1), "logical") == 0;
        s->plugin = PQgetisnull(r, i, 2) ? NULL : xstrdup(PQgetvalue(r, i, 2));
        s->database = PQgetisnull(r, i, 3) ? NULL : xstrdup(PQgetvalue(r, i, 3));
        s->active = PQgetvalue(r, i, 4)[0] == 't';
        s->has_xmin = PQgetvalue(r, i, 5)[0] == 't';
        s->restart_lsn = atoll(PQgetvalue(r, i, 6));
        s->confirmed_flush_lsn = atoll(PQgetvalue(r, i, 7));
        s->catalog_xmin = atoll(PQgetvalue(r, i, 8));
    }
    PQclear(r);
    h->slot_rows_ok = true;
    return 0;
}

static bool is_lock_holder(Ha *h) {
    return h->cluster && h->cluster->leader && streq(h->cluster->leader->name, cfg_of(h)->name);
}

static void slots_input(Ha *h, SlotsInput *in) {
    const PghaConfig *cfg = cfg_of(h);
    const DynConfig *dyn = dyn_of(h);
    bool standby_cluster = dyn->standby_cluster && dyn->standby_cluster->n > 0;
    SlotRole role = !h->st.in_recovery                        ? SLOT_ROLE_PRIMARY
                    : standby_cluster && is_lock_holder(h) ? SLOT_ROLE_STANDBY_LEADER
                                                              : SLOT_ROLE_REPLICA;
    long long v = h->st.server_version;
    *in = (SlotsInput){.cluster = h->cluster, .dyn = dyn, .name = cfg->name, .role = role,
                       .pg_major = (int)(v >= 100000 ? v / 10000 : v / 100), .nofailover = cfg->tags.nofailover,
                       .nostream = cfg->tags.nostream, .replicatefrom = cfg->tags.replicatefrom,
                       .paused = dyn->pause, .slots = h->slot_rows, .n_slots = h->n_slot_rows,
                       .replay_lsn = h->st.replay_lsn, .recopy = &h->slots_recopy};
}

/* A statement on a connection to another database of the local server (logical slots live in one). */
static PGresult *query_in_database(Ha *h, const char *dbname, const char *sql, int timeout_ms, char **err) {
    PgConnParams p;
    char host[256];
    local_conn_params(h, &p, host, sizeof host);
    p.dbname = dbname;
    PGconn *c = pg_connect(&p, err);
    if (!c)
        return NULL;
    PGresult *r = pg_query(c, sql, timeout_ms, err);
    PQfinish(c);
    return r;
}

/* Drop a slot unless it is active. Returns 1 dropped, 0 active (kept), negative on error. */
static int drop_slot(Ha *h, PGconn *c, const char *name) {
    char *lit = PQescapeLiteral(c, name, strlen(name));
    if (!lit)
        return -ENOMEM;
    _cleanup_free_ char *sql = xasprintf(
        "WITH s AS (SELECT slot_name, active FROM pg_catalog.pg_replication_slots WHERE slot_name = %s),"
        " d AS (SELECT pg_catalog.pg_drop_replication_slot(slot_name) IS NULL AS dropped FROM s WHERE NOT active)"
        " SELECT s.active, d.dropped IS NOT NULL FROM s LEFT JOIN d ON true", lit);
    PQfreemem(lit);
    char *err = NULL;
    PGresult *r = pg_query(c, sql, h->slots_timeout_ms, &err);
    if (!r) {
        log_error("Failed to drop replication slot '%s': %s", name, err);
        free(err);
        return -EIO;
    }
    int ret = 1; /* no row: the slot is already gone */
    if (PQntuples(r) > 0)
        ret = PQgetvalue(r, 0, 1)[0] == 't' ? 1 : PQgetvalue(r, 0, 0)[0] == 't' ? 0 : -EIO;
    PQclear(r);
    if (ret == 1)
        log_info("Dropped replication slot '%s'", name);
    else if (ret == 0)
        log_warning("Unable to drop replication slot '%s', slot is active", name);
    else
        log_error("Failed to drop replication slot '%s'", name);
    (void)h;
    return ret;
}

static void run_slot_action(Ha *h, PGconn *c, const SlotAction *a, StrList *failed_drops) {
    char *err = NULL;
    PGresult *r = NULL;
    char lsn[32];
    switch (a->kind) {
    case SLOT_ACT_DROP:
        switch (a->reason) {
        case SLOT_DROP_UNKNOWN: log_info("Trying to drop unknown replication slot '%s'", a->name); break;
        case SLOT_DROP_MISMATCH:
            log_info("Trying to drop replication slot '%s' because %s", a->name, a->detail);
            break;
        case SLOT_DROP_XMIN:
        case SLOT_DROP_NO_RESTART_LSN:
            log_warning("Dropping physical replication slot %s because %s", a->name, a->detail);
            break;
        }
        if (drop_slot(h, c, a->name) != 1)
            strlist_add(failed_drops, a->name);
        return;
    case SLOT_ACT_CREATE_PHYSICAL: {
        if (strlist_contains(failed_drops, a->name))
            return;
        char *lit = PQescapeLiteral(c, a->name, strlen(a->name));
        if (!lit)
            return;
        _cleanup_free_ char *sql = xasprintf(
            "SELECT pg_catalog.pg_create_physical_replication_slot(%s, true) WHERE NOT EXISTS (SELECT 1 FROM"
            " pg_catalog.pg_replication_slots WHERE slot_type = 'physical' AND slot_name = %s)", lit, lit);
        PQfreemem(lit);
        r = pg_query(c, sql, h->slots_timeout_ms, &err);
        if (!r)
            log_error("Failed to create physical replication slot '%s': %s", a->name, err);
        else if (PQntuples(r) > 0)
            log_info("Created physical replication slot '%s'", a->name);
        break;
    }
    case SLOT_ACT_CREATE_LOGICAL: {
        if (strlist_contains(failed_drops, a->name))
            return;
        char *ln = PQescapeLiteral(c, a->name, strlen(a->name));
        char *lp = PQescapeLiteral(c, a->plugin, strlen(a->plugin));
        _cleanup_free_ char *sql =
            ln && lp ? xasprintf("SELECT pg_catalog.pg_create_logical_replication_slot(%s, %s) WHERE NOT EXISTS"
                                 " (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_type = 'logical'"
                                 " AND slot_name = %s)", ln, lp, ln)
                     : NULL;
        PQfreemem(ln);
        PQfreemem(lp);
        if (!sql)
            return;
        /* creating a logical slot waits for running transactions: bounded, retried next cycle */
        r = query_in_database(h, a->database, sql, h->slots_timeout_ms, &err);
        if (!r)
            log_error("Failed to create logical replication slot '%s' plugin='%s': %s", a->name, a->plugin, err);
        else if (PQntuples(r) > 0)
            log_info("Created logical replication slot '%s' (plugin '%s', database '%s')", a->name, a->plugin,
                     a->database);
        break;
    }
    case SLOT_ACT_ADVANCE: {
        pg_format_lsn(a->lsn, lsn, sizeof lsn);
        char *ln = PQescapeLiteral(c, a->name, strlen(a->name));
        _cleanup_free_ char *sql =
            ln ? xasprintf("SELECT pg_catalog.pg_replication_slot_advance(%s, '%s')", ln, lsn) : NULL;
        PQfreemem(ln);
        if (!sql)
            return;
        if (a->logical) {
            r = query_in_database(h, a->database, sql, h->slots_timeout_ms, &err);
            if (!r) {
                log_error("Failed to advance logical replication slot '%s': %s", a->name, err);
                /* its WAL is gone here, or it was invalidated: copy it again from the primary */
                if (err && (strstr(err, "SQLSTATE 58P01") || strstr(err, "SQLSTATE 55000")) &&
                    !strlist_contains(&h->slots_recopy, a->name))
                    strlist_add(&h->slots_recopy, a->name);
            }
        } else {
            r = pg_query(c, sql, h->slots_timeout_ms, &err);
            if (!r)
                log_error("Error while advancing replication slot %s to position '%s': %s", a->name, lsn, err);
        }
        break;
    }
    }
    free(err);
    PQclear(r);
}

/* ---- logical slots on replicas: copy from the primary, readiness ---------------------------- */

/* A connection to the leader's PostgreSQL with the rewind credentials (they may read files of its
 * data directory; they default to the superuser's), as Patroni's _get_leader_connection_cursor. */
static PGconn *leader_conn(Ha *h, char **err) {
    const Leader *l = h->cluster ? h->cluster->leader : NULL;
    const Member *m = l ? (l->member ? l->member : member_by_name(h, l->name)) : NULL;
    char host[256];
    int port;
    if (!m || !member_host_port(m, host, sizeof host, &port)) {
        *err = xstrdup("the leader's connection address is unknown");
        return NULL;
    }
    const PghaConfig *cfg = cfg_of(h);
    PgConnParams p = {.host = host, .port = port, .user = cfg->postgresql.rewind.username,
                      .password = cfg->postgresql.rewind.password, .dbname = cfg->postgresql.database,
                      .application_name = "Patroni", .connect_timeout = 3, .ssl = &cfg->postgresql.rewind};
    return pg_connect(&p, err);
}

/* ARRAY['a', 'b']::text[] */
static char *sql_text_array(PGconn *c, const StrList *names) {
    StrBuf b;
    sb_init(&b);
    sb_add(&b, "ARRAY[");
    for (size_t i = 0; i < names->n; i++) {
        char *lit = PQescapeLiteral(c, names->v[i], strlen(names->v[i]));
        if (!lit) {
            free(sb_steal(&b));
            return NULL;
        }
        sb_addf(&b, "%s%s", i ? ", " : "", lit);
        PQfreemem(lit);
    }
    sb_add(&b, "]::text[]");
    return sb_steal(&b);
}

/* Copy notes are logged once per key (what and which slot) until there is nothing left to copy. */
static void copy_note(Ha *h, LogLevel level, const char *key, const char *msg) {
    if (strlist_contains(&h->slots_copy_logged, key))
        return;
    strlist_add(&h->slots_copy_logged, key);
    log_msg(level, __FILE__, __LINE__, __func__, "%s", msg);
}

static ssize_t unready_find(Ha *h, const char *name) {
    for (size_t i = 0; i < h->n_slots_unready; i++)
        if (streq(h->slots_unready[i].name, name))
            return (ssize_t)i;
    return -1;
}

static void unready_add(Ha *h, const char *name) {
    if (unready_find(h, name) >= 0)
        return;
    h->slots_unready = xrealloc(h->slots_unready, (h->n_slots_unready + 1) * sizeof *h->slots_unready);
    h->slots_unready[h->n_slots_unready++] = (PendingSlot){.name = xstrdup(name)};
}

static void unready_remove(Ha *h, size_t i) {
    free(h->slots_unready[i].name);
    memmove(&h->slots_unready[i], &h->slots_unready[i + 1], (h->n_slots_unready - i - 1) * sizeof *h->slots_unready);
    h->n_slots_unready--;
}

static void unready_clear(Ha *h) {
    while (h->n_slots_unready)
        unready_remove(h, h->n_slots_unready - 1);
    free(h->slots_unready);
    h->slots_unready = NULL;
}

/* On promotion (Patroni's on_promote): copies not known to be safe are reported; the queues reset. */
static void slots_on_promote(Ha *h) {
    if (h->n_slots_unready) {
        StrList names = {0};
        for (size_t i = 0; i < h->n_slots_unready; i++)
            strlist_add(&names, h->slots_unready[i].name);
        _cleanup_free_ char *j = strlist_join(&names, "', '");
        log_warning("Logical replication slots that might be unsafe to use after promote: {'%s'}", j);
        strlist_clear(&names);
    }
    unready_clear(h);
    strlist_clear(&h->slots_recopy);
    strlist_clear(&h->slots_copy_logged);
}

static const PgSlot *local_slot(Ha *h, const char *name) {
    for (size_t i = 0; i < h->n_slot_rows; i++)
        if (streq(h->slot_rows[i].name, name))
            return &h->slot_rows[i];
    return NULL;
}

/* Patroni's check_logical_slots_readiness(): the catalog_xmin of our physical slot on the primary
 * (fed by hot_standby_feedback) against those of the logical slots there and here. */
static void check_logical_slots_readiness(Ha *h, const SlotsInput *in) {
    for (size_t i = 0; i < h->n_slots_unready;) {
        const PgSlot *r = local_slot(h, h->slots_unready[i].name);
        if (!r || !r->logical)
            unready_remove(h, i); /* gone here: nothing to check */
        else
            i++;
    }
    if (!h->n_slots_unready || !h->cluster || !h->cluster->leader || is_lock_holder(h) || !h->st.in_recovery)
        return;
    _cleanup_free_ char *phys = slots_name_on_primary(in);
    if (!phys)
        return;
    char *err = NULL;
    PGconn *lc = leader_conn(h, &err);
    if (!lc) {
        log_error("Failed to check %s physical slot on the primary: %s", phys, err);
        free(err);
        return;
    }
    StrList names = {0};
    for (size_t i = 0; i < h->n_slots_unready; i++)
        if (!h->slots_unready[i].primary_xmin)
            strlist_add(&names, h->slots_unready[i].name);
    strlist_add(&names, phys);
    _cleanup_free_ char *arr = sql_text_array(lc, &names);
    strlist_clear(&names);
    _cleanup_free_ char *sql =
        arr ? xasprintf("SELECT slot_name, COALESCE(catalog_xmin::text::bigint, 0) FROM"
                        " pg_catalog.pg_get_replication_slots() WHERE NOT pg_catalog.pg_is_in_recovery()"
                        " AND slot_name = ANY(%s)", arr)
            : NULL;
    PGresult *r = sql ? pg_query(lc, sql, 2000, &err) : NULL;
    PQfinish(lc);
    if (!r) {
        log_error("Failed to check %s physical slot on the primary: %s", phys, err ? err : "out of memory");
        free(err);
        return;
    }
    long long phys_xmin = -1;
    for (int i = 0; i < PQntuples(r); i++)
        if (streq(PQgetvalue(r, i, 0), phys))
            phys_xmin = atoll(PQgetvalue(r, i, 1));
    if (phys_xmin < 0) {
        log_warning("Physical slot %s does not exist on the primary", phys);
    } else if (phys_xmin == 0) {
        /* not streaming through it yet, or hot_standby_feedback is off */
        PGconn *c = get_conn(h);
        PGresult *hr = c ? pg_query(c, "SELECT pg_catalog.current_setting('hot_standby_feedback')::boolean", 2000,
                                    &err)
                         : NULL;
        if (hr && PQntuples(hr) == 1 && PQgetvalue(hr, 0, 0)[0] != 't')
            log_error("Logical slot failover requires \"hot_standby_feedback\". Please check postgresql.auto.conf");
        else if (!hr && err)
            log_error("Failed to check the hot_standby_feedback setting: %s", err);
        free(err);
        PQclear(hr);
    } else {
        /* remember the primary's logical catalog_xmin when the physical one became valid */
        for (int i = 0; i < PQntuples(r); i++) {
            ssize_t k = unready_find(h, PQgetvalue(r, i, 0));
            if (k >= 0 && !h->slots_unready[k].primary_xmin)
                h->slots_unready[k].primary_xmin = atoll(PQgetvalue(r, i, 1));
        }
        for (size_t i = 0; i < h->n_slots_unready;) {
            const PendingSlot *ps = &h->slots_unready[i];
            const PgSlot *ls = local_slot(h, ps->name);
            if (ls && slot_copy_safe(ps->primary_xmin, phys_xmin, ls->catalog_xmin)) {
                log_info("Logical slot %s is safe to be used after a failover", ps->name);
                unready_remove(h, i);
            } else {
                i++;
            }
        }
    }
    PQclear(r);
}

static int remove_tree_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

static int remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    return nftw(path, remove_tree_cb, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* pg_replslot/<name>/state as PostgreSQL writes it: a .tmp directory (PostgreSQL removes a leftover
 * one at start-up), the file fsync'ed, the directory renamed into place. Modes follow the data
 * directory's (group access or not). */
static int write_slot_state(Ha *h, const char *name, const unsigned char *data, size_t len, char **err) {
    const char *dd = cfg_of(h)->postgresql.data_dir;
    struct stat st;
    bool group = stat(dd, &st) == 0 && (st.st_mode & S_IRWXG);
    mode_t dmode = group ? 0750 : 0700, fmode = group ? 0640 : 0600;
    _cleanup_free_ char *base = xasprintf("%s/pg_replslot", dd);
    _cleanup_free_ char *tmp = xasprintf("%s/%s.tmp", base, name);
    _cleanup_free_ char *dir = xasprintf("%s/%s", base, name);
    _cleanup_free_ char *file = xasprintf("%s/state", tmp);
    int r = remove_tree(tmp);
    if (r < 0) {
        *err = xasprintf("cannot remove %s: %s", tmp, strerror(-r));
        return r;
    }
    if (mkdir(tmp, dmode) < 0 || chmod(tmp, dmode) < 0) {
        r = -errno;
        *err = xasprintf("cannot create %s: %s", tmp, strerror(-r));
        return r;
    }
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, fmode);
    if (fd < 0) {
        r = -errno;
        *err = xasprintf("cannot create %s: %s", file, strerror(-r));
        return r;
    }
    size_t off = 0;
    while (r == 0 && off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            r = n < 0 ? -errno : -EIO;
        else
            off += (size_t)n;
    }
    if (r == 0 && (fchmod(fd, fmode) < 0 || fsync(fd) < 0))
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0)
        r = fsync_path(tmp);
    if (r == 0)
        r = remove_tree(dir);
    if (r == 0 && rename(tmp, dir) < 0)
        r = -errno;
    if (r == 0)
        r = fsync_path(dir);
    if (r == 0)
        r = fsync_path(base);
    if (r < 0) {
        *err = xasprintf("cannot write %s/state: %s", dir, strerror(-r));
        (void)remove_tree(tmp);
    }
    return r;
}

typedef struct SlotCopy {
    char *name;
    unsigned char *state;
    size_t len;
    long long restart_lsn; /* on the primary: the copy needs the WAL from there on */
} SlotCopy;

/* Patroni's copy_logical_slots(): read the slots' state files on the primary, stop PostgreSQL, write
 * them, start it again (PostgreSQL loads slots only at start-up). Only on a streaming replica that
 * has replayed past the slot's position on the primary, with wal_level logical and
 * hot_standby_feedback on. Runs last in slots_sync(): the local connection is gone afterwards. */
static void copy_logical_slots(Ha *h, const SlotsPlan *plan) {
    if (!plan->copy.n) {
        strlist_clear(&h->slots_copy_logged);
        return;
    }
    const Leader *l = h->cluster ? h->cluster->leader : NULL;
    if (!l || is_lock_holder(h) || !h->st.in_recovery || now_monotonic() < h->slots_copy_after)
        return;
    _cleanup_free_ char *list = strlist_join(&plan->copy, "', '");
    if (dyn_of(h)->pause) {
        _cleanup_free_ char *m = xasprintf("Not copying logical slots ['%s'] from the primary: maintenance mode "
                                           "(copying restarts PostgreSQL)", list);
        copy_note(h, LOG_INFO, "pause", m);
        return;
    }
    if (!h->st.streaming) {
        _cleanup_free_ char *m =
            xasprintf("Not copying logical slots ['%s'] from the primary yet: this replica is not streaming", list);
        copy_note(h, LOG_INFO, "streaming", m);
        return;
    }
    char *err = NULL;
    PGconn *c = get_conn(h);
    PGresult *r = c ? pg_query(c,
                               "SELECT pg_catalog.current_setting('wal_level') = 'logical',"
                               " pg_catalog.current_setting('hot_standby_feedback')::boolean,"
                               " pg_catalog.current_setting('max_replication_slots')::bigint - (SELECT count(*) FROM"
                               " pg_catalog.pg_replication_slots WHERE NOT temporary),"
                               " (SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size')",
                               2000, &err)
                    : NULL;
    if (!r || PQntuples(r) != 1) {
        log_error("Failed to read the settings for copying logical slots: %s", err ? err : "no connection");
        free(err);
        PQclear(r);
        return;
    }
    SlotCopyLocal loc = {.replay_lsn = h->st.replay_lsn, .wal_level_logical = PQgetvalue(r, 0, 0)[0] == 't',
                         .hot_standby_feedback = PQgetvalue(r, 0, 1)[0] == 't',
                         .free_slots = atoll(PQgetvalue(r, 0, 2))};
    long long seg_size = atoll(PQgetvalue(r, 0, 3));
    const char *data_dir = cfg_of(h)->postgresql.data_dir;
    loc.oldest_wal_lsn = slots_oldest_wal_lsn(data_dir, seg_size);
    PQclear(r);
    PGconn *lc = leader_conn(h, &err);
    if (!lc) {
        _cleanup_free_ char *m = xasprintf("Failed to copy logical slots from the %s via postgresql connection: %s",
                                           l->name, err);
        copy_note(h, LOG_ERROR, "connect", m);
        free(err);
        h->slots_copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
        return;
    }
    _cleanup_free_ char *arr = sql_text_array(lc, &plan->copy);
    _cleanup_free_ char *sql =
        arr ? xasprintf("SELECT slot_name, slot_type, datname, plugin,"
                        " COALESCE(pg_catalog.pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint, 0),"
                        " pg_catalog.pg_read_binary_file('pg_replslot/' || slot_name || '/state'),"
                        " COALESCE(pg_catalog.pg_wal_lsn_diff(restart_lsn, '0/0')::bigint, 0)"
                        " FROM pg_catalog.pg_get_replication_slots() JOIN pg_catalog.pg_database ON datoid = oid"
                        " WHERE NOT pg_catalog.pg_is_in_recovery() AND slot_name = ANY(%s)", arr)
            : NULL;
    r = sql ? pg_query(lc, sql, 2000, &err) : NULL;
    PQfinish(lc);
    if (!r) {
        _cleanup_free_ char *m = xasprintf("Failed to copy logical slots from the %s via postgresql connection: %s",
                                           l->name, err ? err : "out of memory");
        copy_note(h, LOG_ERROR, "query", m);
        free(err);
        h->slots_copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
        return;
    }
    SlotCopy *todo = NULL;
    size_t n_todo = 0;
    StrList seen = {0};
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        if (!strlist_contains(&plan->copy, name) || strlist_contains(&seen, name))
            continue;
        strlist_add(&seen, name);
        size_t len = 0;
        unsigned char *state = PQgetisnull(r, i, 5) ? NULL
                                                     : PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 5), &len);
        SlotCopySource src = {.name = name, .type = PQgetvalue(r, i, 1),
                              .database = PQgetisnull(r, i, 2) ? NULL : PQgetvalue(r, i, 2),
                              .plugin = PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3),
                              .confirmed_flush_lsn = atoll(PQgetvalue(r, i, 4)), .state = state, .state_len = len,
                              .restart_lsn = atoll(PQgetvalue(r, i, 6))};
        const PgSlot *mine = local_slot(h, name);
        if (mine && strlist_contains(&h->slots_recopy, name))
            src.local_restart_lsn = mine->restart_lsn;
        char *msg = NULL;
        SlotCopyVerdict v = slot_copy_check(slots_plan_find(plan, name), &src, &loc, &msg);
        if (v == SLOT_COPY_OK) {
            todo = xrealloc(todo, (n_todo + 1) * sizeof *todo);
            todo[n_todo].name = xstrdup(name);
            todo[n_todo].len = len;
            todo[n_todo].restart_lsn = src.restart_lsn;
            todo[n_todo].state = xmalloc(len);
            memcpy(todo[n_todo].state, state, len);
            n_todo++;
            if (!local_slot(h, name))
                loc.free_slots--;
        } else {
            _cleanup_free_ char *key = xasprintf("%s:%s", v == SLOT_COPY_REFUSE ? "refuse" : "wait", name);
            copy_note(h, v == SLOT_COPY_REFUSE ? LOG_ERROR : LOG_INFO, key, msg);
            if (v == SLOT_COPY_REFUSE)
                h->slots_copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
        }
        free(msg);
        PQfreemem(state);
    }
    PQclear(r);
    for (size_t i = 0; i < plan->copy.n; i++)
        if (!strlist_contains(&seen, plan->copy.v[i])) {
            _cleanup_free_ char *m = xasprintf("Logical slot '%s' does not exist on the primary %s: not copied",
                                               plan->copy.v[i], l->name);
            _cleanup_free_ char *key = xasprintf("missing:%s", plan->copy.v[i]);
            copy_note(h, LOG_WARNING, key, m);
        }
    strlist_clear(&seen);
    if (n_todo) {
        StrList names = {0};
        for (size_t i = 0; i < n_todo; i++)
            strlist_add(&names, todo[i].name);
        _cleanup_free_ char *j = strlist_join(&names, "', '");
        strlist_clear(&names);
        log_info("Copying logical slots ['%s'] from the primary %s", j, l->name);
        _cleanup_free_ char *target = xstrdup(h->following_set && h->following[0] ? h->following : l->name);
        if (stop_postgres(h, PG_STOP_FAST, "copying logical replication slots from the primary") < 0) {
            log_error("PostgreSQL did not stop: the logical slots are not copied");
            h->slots_copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
        } else {
            /* the shutdown restartpoint may have removed WAL that no slot here held yet: checked again
             * now that nothing runs (the copy holds it from the start on) */
            long long oldest = slots_oldest_wal_lsn(data_dir, seg_size);
            for (size_t i = 0; i < n_todo; i++) {
                if (oldest > 0 && todo[i].restart_lsn > 0 && todo[i].restart_lsn < oldest) {
                    char need[32], have[32];
                    pg_format_lsn(todo[i].restart_lsn, need, sizeof need);
                    pg_format_lsn(oldest, have, sizeof have);
                    log_warning("Not copying logical slot '%s': the WAL from its restart_lsn %s was removed here "
                                "while PostgreSQL stopped (the oldest WAL here starts at %s)", todo[i].name, need, have);
                    h->slots_copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
                    continue;
                }
                if (write_slot_state(h, todo[i].name, todo[i].state, todo[i].len, &err) < 0) {
                    log_error("Failed to copy logical slot '%s': %s", todo[i].name, err);
                    free(err);
                    err = NULL;
                    h->slots_copy_after = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
                    continue;
                }
                log_info("Copied logical slot '%s' from the primary", todo[i].name);
                unready_add(h, todo[i].name);
                for (size_t k = 0; k < h->slots_recopy.n; k++)
                    if (streq(h->slots_recopy.v[k], todo[i].name)) {
                        free(h->slots_recopy.v[k]);
                        memmove(&h->slots_recopy.v[k], &h->slots_recopy.v[k + 1],
                                (h->slots_recopy.n - k - 1) * sizeof *h->slots_recopy.v);
                        h->slots_recopy.n--;
                        break;
                    }
            }
            (void)start_postgres(h, false, target);
        }
    }
    for (size_t i = 0; i < n_todo; i++) {
        free(todo[i].name);
        free(todo[i].state);
    }
    free(todo);
}

/* Once per HA cycle on every node whose PostgreSQL runs: read pg_replication_slots, plan, act on
 * the differences. A failure is logged and retried next cycle. */
static void slots_sync(Ha *h) {
    if (h->slots_synced)
        return;
    h->slots_synced = true;
    slot_rows_clear(h);
    if (!h->st.ok || h->pg_starting || h->pm_pid <= 0 || !h->cluster || !h->cluster->has_config)
        return;
    /* Slot work must never cost the lock: on the lock holder, each statement may use what is left of
     * the lease after the next renewal's worst case (retry_timeout) and the loop's wait; when that is
     * less than 0.2 s (a slow PostgreSQL or DCS this cycle), the slots wait for the next cycle. */
    h->slots_timeout_ms = 5000;
    if (is_lock_holder(h)) {
        usec_t now = now_monotonic();
        usec_t reserve = (usec_t)(dyn_of(h)->retry_timeout + loop_wait_s(h)) * USEC_PER_SEC;
        usec_t budget = h->lock_valid_until > now + reserve ? h->lock_valid_until - now - reserve : 0;
        if (budget < 200 * USEC_PER_MSEC) {
            log_debug("replication slots: skipped this cycle, the lease leaves no time for them");
            return;
        }
        if (budget < 5000 * USEC_PER_MSEC)
            h->slots_timeout_ms = (int)(budget / USEC_PER_MSEC);
    }
    PGconn *c = get_conn(h);
    if (!c || load_slot_rows(h, c) < 0)
        return;
    SlotsInput in;
    slots_input(h, &in);
    SlotsPlan plan;
    slots_plan(&in, &plan);
    /* configuration problems: logged when they change, not every cycle */
    _cleanup_free_ char *errors = strlist_join(&plan.errors, "\n");
    if (!streq(errors, h->slots_errors_logged)) {
        for (size_t i = 0; i < plan.errors.n; i++)
            log_error("%s", plan.errors.v[i]);
        free(h->slots_errors_logged);
        h->slots_errors_logged = TAKE_PTR(errors);
    }
    StrList failed_drops = {0};
    for (size_t i = 0; i < plan.n_actions; i++) {
        run_slot_action(h, c, &plan.actions[i], &failed_drops);
        if (PQstatus(c) != CONNECTION_OK) {
            log_warning("lost the connection to PostgreSQL while changing replication slots");
            close_conn(h);
            c = NULL;
            break;
        }
    }
    bool changed = plan.n_actions > 0;
    /* the leader publishes the positions: read them again after a change */
    if (changed && c && (load_slot_rows(h, c) < 0))
        slot_rows_clear(h);
    if (in.role != SLOT_ROLE_REPLICA) {
        unready_clear(h);
        strlist_clear(&h->slots_recopy);
        h->slots_check_local = false;
    } else if (c && h->slot_rows_ok) {
        /* after a (re)start: the logical slots found here are checked again (Patroni's schedule()) */
        if (h->slots_check_local)
            for (size_t i = 0; i < h->n_slot_rows; i++) {
                const ExpectedSlot *e = slots_plan_find(&plan, h->slot_rows[i].name);
                if (h->slot_rows[i].logical && e && e->logical)
                    unready_add(h, h->slot_rows[i].name);
            }
        h->slots_check_local = false;
        check_logical_slots_readiness(h, &in);
        /* a drop that failed leaves the slot in place: not copied over it this cycle */
        for (size_t i = 0; i < plan.copy.n;)
            if (strlist_contains(&failed_drops, plan.copy.v[i])) {
                free(plan.copy.v[i]);
                memmove(&plan.copy.v[i], &plan.copy.v[i + 1], (plan.copy.n - i - 1) * sizeof *plan.copy.v);
                plan.copy.n--;
            } else {
                i++;
            }
        copy_logical_slots(h, &plan); /* last: it may restart PostgreSQL */
    }
    strlist_clear(&failed_drops);
    slots_plan_free(&plan);
}

/* hot_standby_feedback is forced on while this node (or a member cascading from it) is to carry
 * permanent logical slots; the configuration is rewritten and reloaded by apply_config_changes(). */
static void update_enforce_hsf(Ha *h) {
    SlotsInput in;
    slots_input(h, &in);
    if (!in.pg_major)
        in.pg_major = h->major; /* PostgreSQL is not running: the data directory's version */
    bool v = slots_enforce_hot_standby_feedback(&in);
    if (v != h->enforce_hsf)
        log_info("%s hot_standby_feedback (permanent logical replication slots)", v ? "enforcing" : "no longer enforcing");
    h->enforce_hsf = v;
}

/* /status (spec §1.2), with the leader update: optime, the slots' positions, retain_slots. Written
 * only when the content changed. */
static void update_status(Ha *h) {
    if (!h->st.ok || h->st.in_recovery)
        return;
    cJSON *slots = NULL;
    SlotsInput in;
    slots_input(h, &in);
    if (h->slot_rows_ok) {
        SlotsPlan expected; /* only the expected set is used here: the actions ran in slots_sync() */
        slots_plan(&in, &expected);
        slots = slots_status_slots(&in, &expected, h->st.flush_lsn);
        slots_plan_free(&expected);
    }
    StrList retain = {0}, expired = {0};
    retain_update(&h->retain, &in, slots, (double)now_monotonic() / USEC_PER_SEC, &retain, &expired);
    for (size_t i = 0; i < expired.n; i++)
        log_info("Replication slot '%s' for absent cluster member is expired after %lld sec.", expired.v[i],
                 dyn_of(h)->member_slots_ttl);
    char *json = cluster_encode_status(h->st.flush_lsn, slots, &retain);
    cJSON_Delete(slots);
    strlist_clear(&retain);
    strlist_clear(&expired);
    if (!streq(json, h->last_status)) {
        if (dcs_set_status(h->dcs, json) == 1) {
            free(h->last_status);
            h->last_status = json;
            json = NULL;
        }
    }
    free(json);
}

/* A /status write with only a new optime (demotion): slots and retain_slots as last published. */
static void write_status_optime_only(Ha *h, long long optime) {
    const ClusterStatus *st = h->cluster ? &h->cluster->status : NULL;
    char *json = cluster_encode_status(optime, st ? st->slots : NULL, st ? &st->retain_slots : NULL);
    (void)dcs_set_status(h->dcs, json);
    free(json);
}

/* The configuration may have changed (/config, a SIGHUP of pgha): rewrite postgresql.conf, reload
 * PostgreSQL, and find the changes that need a restart (pending_restart). */
static void apply_config_changes(Ha *h) {
    if (!h->st.ok || h->pg_starting || h->task.kind != TASK_NONE || h->pm_pid <= 0 || !h->following_set)
        return;
    bool primary = !h->st.in_recovery;
    int r = write_configuration(h, primary, primary || !h->following[0] ? NULL : h->following);
    if (r == 1) {
        log_info("Reloading PostgreSQL configuration.");
        if (kill(h->pm_pid, SIGHUP) < 0)
            log_warning("cannot reload PostgreSQL: %s", strerror(errno));
        run_callback(h, "on_reload", h->role);
        usleep(100 * 1000); /* let the postmaster read the file before pending_restart is queried */
    }
    PGconn *c = get_conn(h);
    if (!c)
        return;
    char *err = NULL;
    PGresult *res = pg_query(c, "SELECT name, setting FROM pg_catalog.pg_settings WHERE pending_restart", 2000, &err);
    if (!res) {
        log_debug("pending_restart query failed: %s", err);
        free(err);
        return;
    }
    cJSON_Delete(h->pending_reason);
    h->pending_reason = NULL;
    h->pending_restart = PQntuples(res) > 0;
    if (h->pending_restart) {
        StrList warnings = {0};
        YNode *params = build_params(h, &warnings);
        strlist_clear(&warnings);
        h->pending_reason = cJSON_CreateObject();
        for (int i = 0; i < PQntuples(res); i++) {
            const char *name = PQgetvalue(res, i, 0);
            const YNode *nv = ynode_get(params, name);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "old_value", PQgetvalue(res, i, 1));
            cJSON_AddStringToObject(e, "new_value", nv && nv->text ? nv->text : "");
            cJSON_AddItemToObject(h->pending_reason, name, e);
        }
        ynode_free(params);
    }
    PQclear(res);
}

/* ------------------------------------------------------------------------------------------ */
/* synchronous replication (spec §4.10, non-quorum)                                            */

static bool sync_mode_on(struct Ha *h) {
    const DynConfig *d = dyn_of(h);
    return d->synchronous_mode != SYNC_OFF && !(d->standby_cluster && d->standby_cluster->n);
}

static void set_ssn(Ha *h, const char *ssn) {
    if (streq(h->ssn, ssn))
        return;
    free(h->ssn);
    h->ssn = xstrdup(ssn);
}

static long long current_flush_lsn(Ha *h) {
    PGconn *c = get_conn(h);
    if (!c)
        return 0;
    char *err = NULL;
    PGresult *r = pg_query(c, "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_flush_lsn(), '0/0')::bigint", 2000,
                           &err);
    long long v = 0;
    if (r && PQntuples(r) == 1)
        v = atoll(PQgetvalue(r, 0, 0));
    else
        log_warning("could not read the current WAL flush position: %s", err ? err : "no result");
    PQclear(r);
    free(err);
    return v;
}

/* Write synchronous_standby_names now and reload, so that PostgreSQL uses it before /sync moves.
 * Records the flush LSN from when it took effect: a standby that reaches it holds every commit
 * acknowledged before the change. */
static void apply_ssn(Ha *h, const char *ssn) {
    set_ssn(h, ssn);
    int r = write_configuration(h, true, NULL);
    if (r == 1 && h->pm_pid > 0) {
        log_info("synchronous_standby_names = '%s'", ssn);
        (void)kill(h->pm_pid, SIGHUP);
        usleep(100 * 1000);
        long long f = current_flush_lsn(h);
        /* unknown: nobody counts as caught up until the next cycle records it */
        h->ssn_flush = f > 0 ? f : 0;
        /* Commits already waiting are released only when a standby reports again, which it does when
         * WAL arrives (or after wal_receiver_status_interval, 10 s). A tiny WAL record makes every
         * standby reply within the WAL writer's delay instead. */
        PGconn *c = get_conn(h);
        char *err = NULL;
        PGresult *res = c ? pg_query(c, "SELECT pg_catalog.pg_logical_emit_message(false, 'pgha', "
                                        "'synchronous_standby_names changed')", 2000, &err)
                          : NULL;
        if (c && !res)
            log_debug("could not write a WAL record to wake the standbys: %s", err ? err : "?");
        PQclear(res);
        free(err);
    }
}

static int write_sync_q(Ha *h, long long quorum, const StrList *standbys, long long *version) {
    char *json = cluster_encode_sync(cfg_of(h)->name, quorum, standbys);
    long long nv = 0;
    int r = dcs_set_sync_state(h->dcs, json, *version, &nv);
    if (r == 1) {
        *version = nv;
        log_info("/sync = %s", json);
    } else {
        log_warning("failed to write /sync%s%s", r < 0 ? ": " : " (it changed meanwhile)", r < 0 ? dcs_error(h->dcs) : "");
    }
    free(json);
    return r;
}

static int write_sync(Ha *h, const StrList *standbys, long long *version) {
    return write_sync_q(h, 0, standbys, version);
}

/* Before a replica promotes in synchronous mode: /sync names only us, and the first commits wait
 * for a standby (strict) or go through (not strict) until one is confirmed. */
static int sync_before_promote(Ha *h) {
    if (!sync_mode_on(h))
        return 0;
    const DynConfig *d = dyn_of(h);
    h->ssn_flush = 0; /* recorded again on the first cycle as primary */
    if (d->synchronous_mode == SYNC_QUORUM) {
        /* /sync stays as it is until after the promotion; the first commits wait for enough of
         * the former voters that the old /sync still covers them (spec §4.10) */
        h->sync_grace_until = now_monotonic() + (usec_t)loop_wait_s(h) * USEC_PER_SEC + 2 * USEC_PER_SEC;
        const SyncState *s = h->cluster ? &h->cluster->sync : NULL;
        _cleanup_free_ char *ssn = NULL;
        if (s && s->leader) {
            StrList names;
            long long num;
            sync_quorum_pre_promote(s, cfg_of(h)->name, d->synchronous_mode_strict, &names, &num);
            ssn = sync_render_ssn_quorum(&names, num, d->synchronous_mode_strict && names.n == 0);
            strlist_clear(&names);
        } else {
            ssn = xstrdup(d->synchronous_mode_strict ? "ANY 1 (*)" : "");
        }
        set_ssn(h, ssn);
    } else {
        long long version = h->cluster && h->cluster->sync.present ? h->cluster->sync.version : 0;
        StrList none = {0};
        if (write_sync(h, &none, &version) != 1)
            return -EAGAIN;
        set_ssn(h, d->synchronous_mode_strict ? "*" : "");
    }
    /* in force before the promotion, so that no commit is acknowledged unprotected in strict mode */
    if (write_configuration(h, false, h->following[0] ? h->following : NULL) == 1 && h->pm_pid > 0) {
        log_info("synchronous_standby_names = '%s' before the promotion", h->ssn);
        (void)kill(h->pm_pid, SIGHUP);
        usleep(100 * 1000);
    }
    return 0;
}

/* Quorum mode on the primary (spec §4.10): one /sync write and/or one synchronous_standby_names
 * change per cycle, each safe on its own (sync_quorum_plan). */
static void sync_process_quorum(Ha *h) {
    const Cluster *c = h->cluster;
    const DynConfig *d = dyn_of(h);
    const char *me = cfg_of(h)->name;
    if (h->ssn_flush <= 0)
        h->ssn_flush = h->st.flush_lsn > 0 ? h->st.flush_lsn : 0;
    SsnValue cur;
    sync_parse_ssn_full(h->st.synchronous_standby_names, &cur);
    StrList active, confirmed;
    sync_quorum_rows(h->st.replication, c, me, h->st.synchronous_commit, d->synchronous_node_count,
                     d->maximum_lag_on_syncnode, h->st.flush_lsn, h->ssn_flush > 0 ? h->ssn_flush : LLONG_MAX,
                     &active, &confirmed);
    QuorumInput in = {.me = me, .sync = &c->sync, .ssn = &cur, .active = &active, .confirmed = &confirmed,
                      .wanted = d->synchronous_node_count, .strict = d->synchronous_mode_strict,
                      .grace = now_monotonic() < h->sync_grace_until};
    QuorumPlan plan;
    sync_quorum_plan(&in, &plan);
    long long version = c->sync.present ? c->sync.version : 0;
    if (plan.write_sync && write_sync_q(h, plan.quorum, &plan.voters, &version) != 1)
        goto out;
    if (plan.write_ssn) {
        _cleanup_free_ char *ssn = sync_render_ssn_quorum(&plan.ssn.names, plan.ssn.num, plan.ssn.star);
        apply_ssn(h, ssn);
    }
out:
    quorum_plan_clear(&plan);
    ssn_value_clear(&cur);
    strlist_clear(&active);
    strlist_clear(&confirmed);
}

static void sync_process(Ha *h) {
    const Cluster *c = h->cluster;
    const DynConfig *d = dyn_of(h);
    const char *me = cfg_of(h)->name;
    if (!c || !h->st.ok || h->st.in_recovery)
        return;
    if (!sync_mode_on(h)) {
        if (h->ssn) {
            /* synchronous mode was switched off: drop /sync, give synchronous_standby_names back */
            if (c->sync.present)
                (void)dcs_delete_sync_state(h->dcs, c->sync.version);
            free(h->ssn);
            h->ssn = NULL;
            (void)write_configuration(h, true, NULL);
            if (h->pm_pid > 0)
                (void)kill(h->pm_pid, SIGHUP);
        }
        return;
    }
    if (!h->ssn)
        h->ssn = xstrdup(h->st.synchronous_standby_names);
    if (d->synchronous_mode == SYNC_QUORUM) {
        sync_process_quorum(h);
        return;
    }
    if (h->ssn_flush <= 0)
        h->ssn_flush = h->st.flush_lsn > 0 ? h->st.flush_lsn : 0;
    long long version = c->sync.present ? c->sync.version : 0;
    StrList in_sync = {0}; /* /sync standbys, when /sync is ours */
    if (!c->sync.leader) {
        StrList none = {0};
        if (write_sync(h, &none, &version) != 1)
            return;
    } else if (strcasecmp(c->sync.leader, me) != 0) {
        StrList none = {0};
        if (write_sync(h, &none, &version) != 1)
            return;
    } else {
        strlist_copy(&in_sync, &c->sync.members);
    }
    StrList current;
    sync_parse_ssn(h->st.synchronous_standby_names, &current);
    long long count = d->synchronous_node_count;
    StrList picked, confirmed;
    sync_pick(h->st.replication, c, me, h->st.synchronous_commit, count, d->maximum_lag_on_syncnode, h->st.flush_lsn,
              &current, &in_sync, h->ssn_flush > 0 ? h->ssn_flush : LLONG_MAX, &picked, &confirmed);
    /* a standby already in /sync stays confirmed while PostgreSQL reports it sync */
    if (strlist_same_set(&picked, &in_sync) && !strlist_same_set(&in_sync, &confirmed)) {
        if (write_sync(h, &confirmed, &version) == 1) {
            strlist_clear(&in_sync);
            strlist_copy(&in_sync, &confirmed);
        } else
            goto out;
    }
    bool ssn_ok = strlist_same_set(&picked, &current) && (long long)picked.n <= count;
    if (strlist_same_set(&picked, &in_sync) && ssn_ok)
        goto out;
    /* shrink /sync first: a member leaves /sync before it leaves synchronous_standby_names */
    {
        StrList keep = {0};
        for (size_t i = 0; i < in_sync.n; i++)
            if (strlist_contains(&confirmed, in_sync.v[i]))
                strlist_add(&keep, in_sync.v[i]);
        if (keep.n != in_sync.n) {
            if (write_sync(h, &keep, &version) != 1) {
                strlist_clear(&keep);
                goto out;
            }
            strlist_clear(&in_sync);
            in_sync = keep;
        } else {
            strlist_clear(&keep);
        }
    }
    /* then synchronous_standby_names: the picked standbys (or "*" in strict mode without any) */
    {
        _cleanup_free_ char *ssn = sync_render_ssn(&picked, count, d->synchronous_mode_strict);
        apply_ssn(h, ssn);
    }
    /* and /sync grows only with what PostgreSQL confirms as synchronous (next cycles) */
    if (confirmed.n && !strlist_same_set(&confirmed, &in_sync)) {
        StrList grow = {0};
        for (size_t i = 0; i < confirmed.n; i++)
            if (strlist_contains(&current, confirmed.v[i]))
                strlist_add(&grow, confirmed.v[i]);
        if (grow.n && !strlist_same_set(&grow, &in_sync))
            (void)write_sync(h, &grow, &version);
        strlist_clear(&grow);
    }
out:
    strlist_clear(&in_sync);
    strlist_clear(&current);
    strlist_clear(&picked);
    strlist_clear(&confirmed);
}

/* ------------------------------------------------------------------------------------------ */
/* carrying a decision out                                                                     */

static void after_lock_acquired(Ha *h) {
    h->lock_valid_until = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
    const Cluster *c = h->cluster;
    if (c && c->failover.present && !failover_is_empty(&c->failover)) {
        if (dyn_of(h)->pause && c->failover.leader && c->failover.candidate) {
            /* paused: keep the candidate so that the next cycle does not release the lock mid-promotion */
            char *json = cluster_encode_failover(NULL, c->failover.candidate, c->failover.scheduled_at);
            (void)dcs_set_failover(h->dcs, json, c->failover.version);
            free(json);
        } else {
            (void)dcs_set_failover(h->dcs, "{}", c->failover.version);
        }
    }
}

static void demote(Ha *h, DemoteMode mode) {
    bool release = mode == DEMOTE_GRACEFUL || mode == DEMOTE_IMMEDIATE;
    long long checkpoint = 0;
    if (mode == DEMOTE_GRACEFUL && h->st.ok && !h->st.in_recovery) {
        PGconn *c = get_conn(h);
        char *err = NULL;
        usec_t now = now_monotonic();
        long budget_ms = h->lock_valid_until > now ? (long)((h->lock_valid_until - now) / USEC_PER_MSEC) / 2 : 1000;
        PGresult *r = c ? pg_query(c, "CHECKPOINT", (int)(budget_ms > 1000 ? budget_ms : 1000), &err) : NULL;
        if (!r && err) {
            log_warning("CHECKPOINT before demotion failed: %s", err);
            free(err);
        }
        PQclear(r);
    }
    int sr = stop_postgres(h, mode == DEMOTE_GRACEFUL || mode == DEMOTE_OFFLINE ? PG_STOP_FAST : PG_STOP_IMMEDIATE,
                           demote_mode_name(mode));
    if (sr < 0) {
        log_error("could not stop PostgreSQL for the demotion; keeping the leader key");
        return;
    }
    set_role(h, "demoted");
    free(h->ssn);
    h->ssn = NULL;
    run_callback(h, "on_role_change", "demoted");
    refresh_controldata(h);
    checkpoint = h->cd.checkpoint_lsn;
    if (release) {
        if (mode == DEMOTE_GRACEFUL && checkpoint > 0) {
            write_status_optime_only(h, checkpoint);
        }
        if (dcs_delete_leader(h->dcs) < 0)
            log_warning("failed to delete the leader key: %s", dcs_error(h->dcs));
        h->lock_valid_until = 0;
        if (mode == DEMOTE_GRACEFUL)
            sleep(2); /* let a replica take the key before we race again */
    }
    h->lock_valid_until = 0;
    if (mode == DEMOTE_OFFLINE) {
        /* read-only, without upstream, until the DCS comes back */
        (void)start_postgres(h, false, NULL);
    }
}

/* pg_control of a stopped node that last ran as a replica */
static bool was_replica_before(Ha *h) {
    return h->have_controldata && (strcmp(h->cd.state, "in archive recovery") == 0 ||
                                   strcmp(h->cd.state, "shut down in recovery") == 0);
}

/* The LSN at which timeline `tl` ended in the cluster's history (/history entries [tl, lsn, ...]). */
static bool history_switch_lsn(const Cluster *c, long long tl, long long *ret) {
    if (!c || !c->has_history || !cJSON_IsArray(c->history))
        return false;
    const cJSON *e;
    cJSON_ArrayForEach(e, c->history) {
        long long etl, lsn;
        if (cJSON_IsArray(e) && json_item_ll(cJSON_GetArrayItem(e, 0), &etl) && etl == tl &&
            json_item_ll(cJSON_GetArrayItem(e, 1), &lsn)) {
            *ret = lsn;
            return true;
        }
    }
    return false;
}

/* Spec §4.8 (Patroni's check of timeline and LSN): a node on an older timeline than the cluster's
 * whose WAL went past the point where the leader's history left that timeline has diverged; it
 * cannot stream from the leader until it is rewound. */
static bool wal_diverged(Ha *h, long long my_tl, long long my_lsn) {
    const Cluster *c = h->cluster;
    long long ctl = cluster_timeline(c), switch_lsn;
    if (my_tl <= 0 || my_lsn <= 0 || ctl <= my_tl || !history_switch_lsn(c, my_tl, &switch_lsn))
        return false;
    if (my_lsn <= switch_lsn)
        return false;
    char mine[32], sw[32];
    pg_format_lsn(my_lsn, mine, sizeof mine);
    pg_format_lsn(switch_lsn, sw, sizeof sw);
    log_warning("my WAL position %s on timeline %lld is past the point %s where the cluster's history left "
                "timeline %lld: it diverged from the leader", mine, my_tl, sw, my_tl);
    return true;
}

/* A stopped former replica: its position from pg_control, as Patroni reads it (minimum recovery
 * ending location and its timeline; the checkpoint when those are zero). */
static bool stopped_replica_diverged(Ha *h) {
    if (!h->have_controldata)
        return false;
    long long tl = h->cd.min_recovery_tli, lsn = h->cd.min_recovery_lsn;
    if (tl <= 0 || lsn <= 0) {
        tl = h->cd.checkpoint_tli;
        lsn = h->cd.checkpoint_lsn;
    }
    return wal_diverged(h, tl, lsn);
}

/* A running replica following the leader: stop it when its WAL diverged, so that the next cycle
 * starts it again through pg_rewind (execute_start). */
static bool check_running_replica(Ha *h) {
    if (h->tilt || dyn_of(h)->pause || h->pm_pid <= 0 || !h->st.ok || !h->st.in_recovery ||
        h->task.kind != TASK_NONE || !h->cluster ||
        !h->cluster->leader || h->cluster->leader->corrupt || streq(h->cluster->leader->name, cfg_of(h)->name))
        return false;
    long long lsn = h->st.replay_lsn > 0 ? h->st.replay_lsn : h->st.receive_lsn;
    if (h->diverged_reported || !wal_diverged(h, h->st.timeline, lsn))
        return false;
    const PghaConfig *cfg = cfg_of(h);
    if (h->rewind_failed || !(dyn_of(h)->use_pg_rewind || cfg->postgresql.use_pg_rewind ||
                              cfg->postgresql.remove_data_directory_on_diverged_timelines)) {
        log_error("this replica cannot stream from the leader until it is rebuilt: %s",
                  h->rewind_failed ? "pg_rewind failed" : "use_pg_rewind and remove_data_directory_on_diverged_timelines are off");
        h->diverged_reported = true; /* once: it keeps running as it is */
        return false;
    }
    h->diverged = true;
    (void)stop_postgres(h, PG_STOP_FAST, "the replica's WAL diverged from the leader's timeline");
    return true;
}

static bool needs_rewind(Ha *h, const char *target) {
    const Member *m = member_by_name(h, target);
    if (!m || !h->have_controldata || streq(target, cfg_of(h)->name))
        return false;
    bool was_primary = strcmp(h->cd.state, "in production") == 0 || strcmp(h->cd.state, "shut down") == 0 ||
                       strcmp(h->cd.state, "in crash recovery") == 0 || strcmp(h->cd.state, "shutting down") == 0;
    /* A former primary joining another leader: its WAL may have diverged. The leader's published
     * timeline can still be the old one right after its promotion, so it is not compared here:
     * pg_rewind itself finds out ("no rewind required") once the leader's promotion checkpoint is done.
     * A former replica: only when its position is past the switch point of its timeline. */
    return was_primary || h->diverged || stopped_replica_diverged(h);
}

static void execute_start(Ha *h, const Decision *d) {
    const PghaConfig *cfg = cfg_of(h);
    if (d->as_primary) {
        /* the cached view says the key is ours: make sure before starting a primary */
        int r = dcs_update_leader(h->dcs, h->cluster);
        if (r != 1) {
            log_warning("could not renew the leader lock (%s): starting as a replica instead",
                        r < 0 ? dcs_error(h->dcs) : "someone else has it");
            h->lock_valid_until = 0;
            (void)start_postgres(h, false, NULL);
            return;
        }
        h->lock_valid_until = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
        (void)start_postgres(h, !was_replica_before(h), NULL);
        return;
    }
    const char *target = d->target[0] ? d->target : NULL;
    if (target && needs_rewind(h, target)) {
        const Member *m = member_by_name(h, target);
        char host[256];
        int port;
        bool leader_ready = m && m->role && strcmp(m->role, "primary") == 0 && !m->checkpoint_after_promote_false;
        if (dyn_of(h)->use_pg_rewind || cfg->postgresql.use_pg_rewind) {
            if (!leader_ready) {
                log_info("waiting for the leader %s to finish its promotion before pg_rewind", target);
                return;
            }
            if (member_host_port(m, host, sizeof host, &port)) {
                bool crash = strcmp(h->cd.state, "in production") == 0 || strcmp(h->cd.state, "in crash recovery") == 0;
                log_info("running pg_rewind from %s%s", target, crash ? " (after crash recovery)" : "");
                write_pgpass(h);
                set_state(h, "running custom bootstrap script");
                task_start(h, TASK_REWIND, host, port, crash);
                return;
            }
        } else if (cfg->postgresql.remove_data_directory_on_diverged_timelines) {
            log_warning("timelines diverged and remove_data_directory_on_diverged_timelines is set: removing the "
                        "data directory to clone it again");
            char *err = NULL;
            if (pg_remove_data_directory(cfg->postgresql.data_dir, &err) < 0) {
                log_error("%s", err);
                free(err);
            }
            h->sysid[0] = '\0';
            return;
        } else {
            log_warning("the timeline of %s is newer than mine and use_pg_rewind is off: starting as a replica "
                        "anyway; it may not be able to stream", target);
        }
    }
    (void)start_postgres(h, false, target);
}

static void execute_follow(Ha *h, const char *target) {
    /* PostgreSQL 13+ reloads primary_conninfo and primary_slot_name without a restart */
    if (write_configuration(h, false, target) < 0)
        return;
    if (h->major >= 13 && h->pm_pid > 0) {
        if (kill(h->pm_pid, SIGHUP) < 0)
            log_warning("cannot reload PostgreSQL: %s", strerror(errno));
    } else if (h->pm_pid > 0) {
        (void)stop_postgres(h, PG_STOP_FAST, "restart to follow a new upstream");
        (void)start_postgres(h, false, target);
    }
}

static void finish_task(Ha *h) {
    Task *t = &h->task;
    if (t->kind == TASK_NONE || !t->done)
        return;
    pthread_join(t->thread, NULL);
    pg_child_destroy(&t->child);
    TaskKind kind = t->kind;
    int r = t->result;
    char *err = t->error;
    t->error = NULL;
    t->kind = TASK_NONE;
    const PghaConfig *cfg = cfg_of(h);
    switch (kind) {
    case TASK_BOOTSTRAP:
        if (r < 0) {
            log_error("%s", err);
            set_state(h, "initdb failed");
            (void)dcs_cancel_initialization(h->dcs);
            char *e2 = NULL;
            if (pg_move_data_directory_aside(cfg->postgresql.data_dir, &e2) < 0) {
                log_error("%s", e2);
                free(e2);
            }
            log_critical("bootstrap failed; the initialize key was released so that another node can try");
            h->fatal = true;
            break;
        }
        /* hba additions from bootstrap.pg_hba (unless postgresql.pg_hba replaces the file); into the
         * data directory, so that replicas cloned from it have them too */
        if (!cfg->postgresql.pg_hba && cfg->bootstrap.pg_hba) {
            _cleanup_free_ char *path = xasprintf("%s/pg_hba.conf", cfg->postgresql.data_dir);
            char *e2 = NULL;
            if (pg_write_hba(path, cfg->bootstrap.pg_hba, true, &e2) < 0) {
                log_error("%s", e2);
                free(e2);
            }
        }
        refresh_controldata(h);
        set_state(h, "initializing new cluster");
        if (start_postgres(h, true, NULL) < 0) {
            (void)dcs_cancel_initialization(h->dcs);
            h->fatal = true;
        }
        h->task.kind = TASK_NONE;
        h->task.result = 1; /* post-bootstrap pending: see post_bootstrap() */
        break;
    case TASK_CLONE:
        if (r < 0) {
            log_error("failed to bootstrap from the leader: %s", err);
            set_state(h, "stopped");
            break;
        }
        log_info("replica has been created using basebackup");
        refresh_controldata(h);
        (void)start_postgres(h, false, h->cluster && h->cluster->leader ? h->cluster->leader->name : NULL);
        break;
    case TASK_REWIND:
        if (r < 0) {
            log_error("%s", err);
            if (cfg->postgresql.remove_data_directory_on_rewind_failure ||
                cfg->postgresql.remove_data_directory_on_diverged_timelines) {
                log_warning("removing the data directory after the pg_rewind failure, as configured");
                char *e2 = NULL;
                if (pg_remove_data_directory(cfg->postgresql.data_dir, &e2) < 0) {
                    log_error("%s", e2);
                    free(e2);
                }
                h->sysid[0] = '\0';
            } else {
                log_warning("pg_rewind failed; starting as a replica anyway");
                h->rewind_failed = true;
                refresh_controldata(h);
                (void)start_postgres(h, false, h->cluster && h->cluster->leader ? h->cluster->leader->name : NULL);
            }
            break;
        }
        log_info("pg_rewind finished");
        h->diverged = false;
        h->rewind_failed = false;
        h->diverged_reported = false;
        refresh_controldata(h);
        (void)start_postgres(h, false, h->cluster && h->cluster->leader ? h->cluster->leader->name : NULL);
        break;
    default: break;
    }
    free(err);
}

/* After the bootstrap's PostgreSQL is up: roles, post_bootstrap, then the DCS keys (§4.2). */
static bool bootstrap_pending;

static void post_bootstrap(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    PGconn *c = get_conn(h);
    char *err = NULL;
    char *json = NULL;
    if (!c || pg_create_roles(c, cfg, h->major, &err) < 0) {
        log_error("failed to create the roles after bootstrap: %s", err ? err : "no connection");
        free(err);
        goto cancel;
    }
    if (cfg->bootstrap.post_bootstrap) {
        PgConnParams p;
        char host[256];
        local_conn_params(h, &p, host, sizeof host);
        _cleanup_free_ char *dsn = xasprintf("host=%s port=%d user=%s dbname=%s", p.host, p.port, p.user,
                                             p.dbname ? p.dbname : "postgres");
        StrList argv = {0}, env = {0};
        strlist_add(&argv, "/bin/sh");
        strlist_add(&argv, "-c");
        _cleanup_free_ char *line = xasprintf("%s '%s'", cfg->bootstrap.post_bootstrap, dsn);
        strlist_add(&argv, line);
        if (cfg->postgresql.pgpass) {
            _cleanup_free_ char *e = xasprintf("PGPASSFILE=%s", cfg->postgresql.pgpass);
            strlist_add(&env, e);
        }
        strlist_add(&env, "PGOPTIONS=-c synchronous_commit=local -c statement_timeout=0");
        char *out = NULL;
        int r = run_command(&argv, &env, 3600 * USEC_PER_SEC, &out);
        strlist_clear(&argv);
        strlist_clear(&env);
        if (r != 0) {
            log_error("post_bootstrap script %s failed (%d): %s", cfg->bootstrap.post_bootstrap, r,
                      out ? str_trim(out) : "");
            free(out);
            goto cancel;
        }
        free(out);
    }
    refresh_controldata(h);
    if (dcs_initialize(h->dcs, false, h->sysid) < 0) {
        log_error("failed to write /initialize: %s", dcs_error(h->dcs));
        goto cancel;
    }
    json = bootstrap_config_json(h);
    if (dcs_set_config(h->dcs, json, 0) < 0)
        log_error("failed to write /config: %s", dcs_error(h->dcs));
    free(json);
    json = NULL;
    if (dcs_take_leader(h->dcs) < 0) {
        log_error("failed to take the leader key after bootstrap: %s", dcs_error(h->dcs));
        goto cancel;
    }
    h->lock_valid_until = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
    set_role(h, "primary");
    log_info("initialized a new cluster");
    bootstrap_pending = false;
    run_callback(h, "on_start", "primary");
    return;
cancel:
    log_critical("cancelling the bootstrap");
    (void)stop_postgres(h, PG_STOP_IMMEDIATE, "bootstrap failed");
    (void)dcs_cancel_initialization(h->dcs);
    char *e2 = NULL;
    if (pg_move_data_directory_aside(cfg->postgresql.data_dir, &e2) < 0) {
        log_error("%s", e2);
        free(e2);
    }
    bootstrap_pending = false;
    h->fatal = true;
}

static void execute(Ha *h, Decision *d, const LocalState *l) {
    const PghaConfig *cfg = cfg_of(h);
    switch (d->action) {
    case HA_NONE:
        (void)check_running_replica(h);
        break;
    case HA_FATAL:
        log_critical("%s", d->message);
        h->fatal = true;
        break;
    case HA_WRITE_INITIALIZE:
        if (dcs_initialize(h->dcs, !(h->cluster && h->cluster->has_initialize), l->sysid) < 0)
            log_warning("failed to write /initialize: %s", dcs_error(h->dcs));
        break;
    case HA_BOOTSTRAP: {
        int r = dcs_initialize(h->dcs, true, "");
        if (r == 1) {
            log_info("Lock owner: None; I am %s", cfg->name);
            log_info("trying to bootstrap a new cluster");
            set_state(h, "initializing new cluster");
            bootstrap_pending = true;
            task_start(h, TASK_BOOTSTRAP, NULL, 0, false);
        } else if (r == 0) {
            log_info("failed to acquire initialize lock");
        } else {
            log_warning("bootstrap: %s", dcs_error(h->dcs));
        }
        break;
    }
    case HA_CLONE: {
        const Member *m = member_by_name(h, d->target);
        char host[256];
        int port;
        if (!m || !member_host_port(m, host, sizeof host, &port)) {
            log_warning("cannot clone from %s: its connection address is unknown", d->target);
            break;
        }
        write_pgpass(h);
        set_state(h, "creating replica");
        task_start(h, TASK_CLONE, host, port, false);
        break;
    }
    case HA_START: execute_start(h, d); break;
    case HA_ACQUIRE_LOCK: {
        int r = dcs_attempt_to_acquire_leader(h->dcs);
        if (r == 1) {
            after_lock_acquired(h);
            if (l->in_recovery && sync_before_promote(h) < 0) {
                snprintf(d->message, sizeof d->message, "postponing the promotion: /sync could not be updated");
            } else if (l->in_recovery && promote_postgres(h) < 0) {
                (void)dcs_delete_leader(h->dcs);
                h->lock_valid_until = 0;
            }
        } else if (r == 0) {
            snprintf(d->message, sizeof d->message, "failed to acquire the leader lock: another member was faster");
            if (l->pg_ready && !l->in_recovery && !dyn_of(h)->pause) {
                /* our cache may lag our own write: ask etcd whose key it is before demoting */
                char *holder = NULL;
                if (dcs_get_raw(h->dcs, "leader", &holder, NULL) == 1 && streq(holder, cfg_of(h)->name)) {
                    after_lock_acquired(h);
                    snprintf(d->message, sizeof d->message, "the leader lock is already mine");
                } else {
                    demote(h, DEMOTE_IMMEDIATE_NOLOCK);
                }
                free(holder);
            }
        } else {
            snprintf(d->message, sizeof d->message, "failed to acquire the leader lock: %s", dcs_error(h->dcs));
            if (l->pg_ready && !l->in_recovery && !dyn_of(h)->pause)
                demote(h, DEMOTE_OFFLINE);
        }
        break;
    }
    case HA_UPDATE_LOCK:
    case HA_UPDATE_LOCK_ONLY:
    case HA_SWITCHOVER:
    case HA_CLEAR_FAILOVER: {
        int r = dcs_update_leader(h->dcs, h->cluster);
        if (r == 1) {
            h->lock_valid_until = now_monotonic() + (usec_t)ttl_s(h) * USEC_PER_SEC;
            if (d->action == HA_UPDATE_LOCK && l->pg_ready && l->in_recovery && !h->promoting) {
                if (sync_before_promote(h) < 0) {
                    snprintf(d->message, sizeof d->message, "postponing the promotion: /sync could not be updated");
                } else if (promote_postgres(h) < 0) {
                    (void)dcs_delete_leader(h->dcs);
                    h->lock_valid_until = 0;
                }
            } else if (d->action == HA_SWITCHOVER) {
                log_info("%s", d->message);
                demote(h, DEMOTE_GRACEFUL);
            } else if (d->action == HA_CLEAR_FAILOVER && h->cluster) {
                log_info("%s", d->message);
                (void)dcs_set_failover(h->dcs, "{}", h->cluster->failover.version);
            }
            if (l->pg_ready && !l->in_recovery) {
                slots_sync(h); /* before /status: it publishes the slots' positions */
                update_status(h);
                update_history(h);
                sync_process(h);
            }
        } else {
            h->lock_valid_until = 0;
            if (l->pg_starting && h->start_as_primary && !dyn_of(h)->pause) {
                log_error("failed to update the leader lock while starting as primary: stopping PostgreSQL");
                (void)stop_postgres(h, PG_STOP_IMMEDIATE, "lost the lock while starting");
            } else if (l->pg_ready && !l->in_recovery && !dyn_of(h)->pause) {
                log_error("failed to update the leader lock%s%s: demoting", r < 0 ? ": " : "",
                          r < 0 ? dcs_error(h->dcs) : "");
                demote(h, r < 0 ? DEMOTE_OFFLINE : DEMOTE_IMMEDIATE_NOLOCK);
            } else {
                log_warning("failed to update the leader lock%s%s", r < 0 ? ": " : "", r < 0 ? dcs_error(h->dcs) : "");
            }
        }
        break;
    }
    case HA_RELEASE_LOCK:
        (void)dcs_delete_leader(h->dcs);
        h->lock_valid_until = 0;
        break;
    case HA_DEMOTE:
        log_info("%s", d->message);
        demote(h, d->demote_mode);
        break;
    case HA_FOLLOW:
        if (!check_running_replica(h))
            execute_follow(h, d->target[0] ? d->target : NULL);
        break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* snapshot                                                                                    */

static void publish(Ha *h, const Decision *d) {
    (void)d;
    const PghaConfig *cfg = cfg_of(h);
    Snapshot *s = snapshot_new();
    s->scope = xstrdup(cfg->scope);
    s->name = xstrdup(cfg->name);
    s->state = xstrdup(h->state);
    s->role = xstrdup(h->role);
    s->pg_running = h->st.ok;
    if (h->st.ok) {
        s->server_version = h->st.server_version;
        s->postmaster_start_time = xstrdup(h->st.postmaster_start_str);
        s->postmaster_start_epoch = h->st.postmaster_start_time;
        s->in_recovery = h->st.in_recovery;
        s->has_timeline = h->st.timeline > 0;
        s->timeline = h->st.timeline;
        s->xlog_location = h->st.flush_lsn;
        s->received_location = h->st.receive_lsn;
        s->replayed_location = h->st.replay_lsn;
        s->replayed_timestamp = h->st.has_replay_timestamp ? xstrdup(h->st.replay_timestamp) : NULL;
        s->replay_paused = h->st.replay_paused;
        s->replication_state = h->st.in_recovery && h->st.streaming ? xstrdup("streaming") : NULL;
        s->replication = h->st.replication ? cJSON_Duplicate(h->st.replication, true) : NULL;
    }
    s->pause = dyn_of(h)->pause;
    usec_t now = now_monotonic();
    s->has_cluster = h->cluster && now - h->cluster_read_at < (usec_t)ttl_s(h) * USEC_PER_SEC;
    s->cluster_unlocked = !h->cluster || !h->cluster->leader;
    s->dcs_last_seen = h->dcs_last_seen;
    s->tags = effective_tags(h);
    s->sysid = h->sysid[0] ? xstrdup(h->sysid) : NULL;
    s->pending_restart = h->pending_restart;
    s->is_leader = h->lock_valid_until > now && h->cluster && h->cluster->leader &&
                   streq(h->cluster->leader->name, cfg->name);
    if (h->cluster && h->cluster->sync.leader && h->st.ok && h->st.in_recovery &&
        sync_matches(&h->cluster->sync, cfg->name) && !strcaseeq(h->cluster->sync.leader, cfg->name)) {
        s->sync_standby = true;
        s->quorum_standby = dyn_of(h)->synchronous_mode == SYNC_QUORUM;
    }
    s->has_optime = h->cluster && h->cluster->status.has_optime;
    s->cluster_optime = s->has_optime ? h->cluster->status.optime : 0;
    s->standby_cluster = dyn_of(h)->standby_cluster && dyn_of(h)->standby_cluster->n > 0;
    s->next_cycle = h->next_cycle;
    s->ttl = ttl_s(h);
    s->loop_wait = loop_wait_s(h);
    s->published = now;
    snapshot_publish(s);
}

/* ------------------------------------------------------------------------------------------ */
/* the cycle                                                                                   */

static void run_cycle(Ha *h, bool stale) {
    h->tilt = stale;
    usec_t now = now_monotonic();
    /* 1. the cluster view */
    Cluster *c = NULL;
    if (dcs_get_cluster(h->dcs, &c) == 0) {
        cluster_free(h->cluster);
        h->cluster = c;
        h->dcs_last_seen = (long long)(now_realtime() / USEC_PER_SEC);
        h->cluster_read_at = now;
        if (c->leader) {
            Cluster *copy = NULL;
            /* remember the last locked view for the candidate set of the next race */
            if (dcs_get_cluster(h->dcs, &copy) == 0) {
                cluster_free(h->last_locked);
                h->last_locked = copy;
            }
        }
        refresh_dynamic_config(h);
        update_enforce_hsf(h);
    } else {
        cluster_free(h->cluster);
        h->cluster = NULL;
    }
    if (h->cluster && h->cluster->leader && streq(h->cluster->leader->name, cfg_of(h)->name)) {
        char lease[32];
        snprintf(lease, sizeof lease, "%lld", dcs_lease_id(h->dcs));
        if (h->cluster->leader->session && dcs_lease_id(h->dcs) && !streq(h->cluster->leader->session, lease))
            log_debug("the leader key is ours but on another lease (%s != %s)", h->cluster->leader->session, lease);
    } else {
        h->lock_valid_until = 0;
    }

    /* 2. long actions */
    /* a stale (TILT) cycle observes only: nothing that starts PostgreSQL or writes to the DCS */
    if (!stale)
        finish_task(h);
    finish_post_promote_checkpoint(h, false);

    /* 3. the local PostgreSQL */
    LocalState l;
    observe_pg(h, &l);
    l.async_action = task_name(h->task.kind);
    if (bootstrap_pending && !l.async_action)
        l.async_action = "bootstrap";
    l.leader_lock_valid = h->lock_valid_until > now;
    l.pre_promote_backoff = h->pre_promote_failed_at &&
                            now - h->pre_promote_failed_at < (usec_t)ttl_s(h) * USEC_PER_SEC;

    if (stale) {
        /* observe only */
    } else if (bootstrap_pending && h->task.kind == TASK_NONE && l.pg_ready) {
        post_bootstrap(h);
        observe_pg(h, &l);
        l.async_action = NULL;
        if (h->cluster) {
            Cluster *c2 = NULL;
            if (dcs_get_cluster(h->dcs, &c2) == 0) {
                cluster_free(h->cluster);
                h->cluster = c2;
            }
        }
    } else if (bootstrap_pending && h->task.kind == TASK_NONE && !l.pg_running && !h->fatal) {
        log_error("PostgreSQL did not start after initdb");
        bootstrap_pending = false;
        (void)dcs_cancel_initialization(h->dcs);
        h->fatal = true;
    }

    /* 4. peers, when a race or a switchover needs them */
    PeerStatus *peers = NULL;
    size_t n_peers = 0;
    bool am_lock_holder = h->cluster && h->cluster->leader && streq(h->cluster->leader->name, cfg_of(h)->name);
    bool probe = h->cluster && !l.data_dir_empty && l.pg_running && !l.async_action &&
                 ((!h->cluster->leader && !cfg_of(h)->tags.nofailover) || (am_lock_holder && l.start_timed_out) ||
                  (h->cluster->leader && streq(h->cluster->leader->name, cfg_of(h)->name) &&
                   !failover_is_empty(&h->cluster->failover)) ||
                  (!h->cluster->leader && !failover_is_empty(&h->cluster->failover)));
    if (probe)
        peers = probe_members(h->cluster, h->last_locked, cfg_of(h)->name, cfg_of(h), 2000, &n_peers);

    Observation o = {.cfg = cfg_of(h), .dyn = dyn_of(h), .cluster = h->cluster, .last_locked = h->last_locked,
                     .local = &l, .peers = peers, .n_peers = n_peers, .peers_probed = probe, .stale_tick = stale,
                     .now = now};
    if (h->cluster && h->cluster->failover.scheduled_at) {
        double at;
        if (parse_iso8601(h->cluster->failover.scheduled_at, &at) == 0) {
            double wall = (double)now_realtime() / 1e6;
            double lw = loop_wait_s(h);
            o.scheduled_stale = wall - at > (double)(long long)(1.5 * lw);
            o.scheduled_due = !o.scheduled_stale && at - wall <= 0;
            if (!o.scheduled_due && !o.scheduled_stale && at - wall <= lw)
                h->next_cycle = now + (usec_t)((at - wall) * 1e6) + 1000; /* wake up exactly then */
        } else {
            o.scheduled_stale = true; /* unparsable: Patroni drops it as well */
        }
    }
    Decision d;
    decide(&o, &d);
    h->slots_synced = false;
    if (!is_lock_holder(h))
        retain_timers_clear(&h->retain); /* a new term as leader restarts the retention timers */
    if (!h->fatal)
        execute(h, &d, &l);
    free(peers);
    /* replication slots on every node whose PostgreSQL runs (the leader did it with its lock update) */
    if (!h->fatal && !stale && h->task.kind == TASK_NONE && !bootstrap_pending &&
        (d.action == HA_NONE || d.action == HA_UPDATE_LOCK || d.action == HA_UPDATE_LOCK_ONLY ||
         d.action == HA_CLEAR_FAILOVER || d.action == HA_FOLLOW))
        slots_sync(h);

    if (!h->fatal && (d.action == HA_NONE || d.action == HA_UPDATE_LOCK))
        if (!stale)
            apply_config_changes(h);

    /* 5. our member key, the snapshot, the summary line */
    if (h->cluster && !h->fatal && !stale) {
        /* re-read what the action changed (role, lsn) before publishing */
        if (d.action != HA_NONE && h->pm_pid > 0 && !h->pg_starting) {
            LocalState l2;
            observe_pg(h, &l2);
        }
        touch_member(h);
    }
    publish(h, &d);
    if (d.action == HA_NONE || d.action == HA_UPDATE_LOCK || d.action == HA_UPDATE_LOCK_ONLY)
        log_heartbeat(LOG_INFO, now_monotonic(), "%s", d.message);
    else
        log_info("%s", d.message);
    sdn_watchdog();
}

/* Between cycles: has PostgreSQL finished starting or promoting (or died)? */
static bool quick_check(Ha *h) {
    bool was_starting = h->pg_starting, was_promoting = h->promoting;
    LocalState l;
    observe_pg(h, &l);
    publish(h, NULL);
    return (was_starting && !h->pg_starting) || (was_promoting && !h->promoting) || h->pm_pid <= 0;
}

/* ------------------------------------------------------------------------------------------ */
/* startup and shutdown                                                                        */

static bool dyn_of_cfg_failsafe(const PghaConfig *cfg) { return cfg->bootstrap.dyn.failsafe_mode; }

static int setup(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    h->bin_dir = xstrdup(cfg->postgresql.bin_dir);
    _cleanup_free_ char *postgres = pg_bin(h->bin_dir, cfg->postgresql.bin_name.postgres);
    int v = pg_bin_version(postgres);
    if (v < 0) {
        log_critical("cannot run %s --version: %s; check postgresql.bin_dir", postgres, strerror(-v));
        return -EINVAL;
    }
    h->major = v >= 100000 ? v / 10000 : v / 100;
    if (h->major < 13 || h->major > 17)
        log_warning("PostgreSQL %d is outside the supported range 13-17", h->major);
    int dmaj = pg_data_dir_major(cfg->postgresql.data_dir);
    if (dmaj > 0 && dmaj != h->major) {
        log_critical("the data directory %s is PostgreSQL %d but %s is %d", cfg->postgresql.data_dir, dmaj, postgres,
                     h->major);
        return -EINVAL;
    }
    if (cfg->watchdog.mode == WATCHDOG_REQUIRED) {
        log_critical("watchdog.mode is 'required', but pgha does not drive /dev/watchdog yet; refusing to run "
                     "without the fencing the configuration asks for (set watchdog.mode to off or automatic)");
        return -EINVAL;
    }
    if (cfg->watchdog.mode == WATCHDOG_AUTOMATIC)
        log_warning("watchdog.mode is 'automatic', but pgha does not drive /dev/watchdog yet: running without it");
    if (dyn_of_cfg_failsafe(cfg))
        log_warning("failsafe_mode is set, but pgha does not implement failsafe mode yet: a primary that loses "
                    "the DCS demotes");
    char *err = NULL;
    h->dcs = dcs_new(cfg, &err);
    if (!h->dcs) {
        log_critical("%s", err);
        free(err);
        return -EINVAL;
    }
    const DynConfig *bd = &cfg->bootstrap.dyn;
    dcs_set_timings(h->dcs, (int)bd->ttl, (int)bd->loop_wait, (int)bd->retry_timeout);
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    h->pm_pidfd = -1;
    set_state(h, "stopped");
    set_role(h, "uninitialized");
    return 0;
}

static bool wait_for_dcs(Ha *h, int sfd) {
    usec_t last_log = 0;
    for (;;) {
        int r = dcs_connect(h->dcs);
        if (r == 0)
            return true;
        if (r == -EACCES || r == -EPROTONOSUPPORT) {
            log_critical("%s", dcs_error(h->dcs));
            return false;
        }
        if (now_monotonic() - last_log > 30 * USEC_PER_SEC || !last_log) {
            log_info("waiting on etcd: %s", dcs_error(h->dcs));
            last_log = now_monotonic();
        }
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        if (poll(&p, 1, 2000) > 0) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGQUIT)
                    return false;
        }
    }
}

/* Patroni refuses to start when a live node already uses our name (spec §3.2). */
static bool duplicate_name(Ha *h) {
    Cluster *c = NULL;
    if (dcs_read_cluster(h->dcs, false, &c) < 0)
        return false;
    const Member *m = cluster_get_member(c, cfg_of(h)->name);
    bool dup = false;
    if (m && m->api_url) {
        _cleanup_free_ char *own = api_url(h);
        char *base = xstrdup(m->api_url);
        char *p = strstr(base, "/patroni");
        if (p)
            *p = '\0';
        _cleanup_free_ char *url = xasprintf("%s/liveness", base);
        free(base);
        CURL *curl = curl_easy_init();
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 3000L);
        curl_easy_setopt(curl, CURLOPT_NOBODY, 0L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, fwrite);
        FILE *null = fopen("/dev/null", "we");
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, null);
        dup = curl_easy_perform(curl) == CURLE_OK;
        curl_easy_cleanup(curl);
        if (null)
            fclose(null);
        if (dup)
            log_critical("Can't start; there is already a node named '%s' running (%s answers)", cfg_of(h)->name, url);
    }
    cluster_free(c);
    return dup;
}

/* A synchronous standby about to stop asks to be released first (spec §4.10 "leaving sync duty"):
 * it publishes nosync and waits up to 2 x loop_wait until /sync no longer names it, so that the
 * primary moves the duty to another standby instead of finding out when commits start waiting. */
static bool named_in_sync(const Cluster *c, const char *me) {
    return c && c->sync.leader && sync_matches(&c->sync, me) && !strcaseeq(c->sync.leader, me);
}

static void leave_sync_duty(Ha *h) {
    const char *me = cfg_of(h)->name;
    if (!sync_mode_on(h) || cfg_of(h)->tags.nosync || !h->st.ok || !h->st.in_recovery || dyn_of(h)->pause)
        return;
    Cluster *n = NULL;
    if (dcs_read_cluster(h->dcs, false, &n) < 0) /* fresh: /sync may have named us a moment ago */
        return;
    bool named = named_in_sync(n, me);
    cluster_free(n);
    if (!named)
        return;
    log_info("asking the leader to release me from synchronous duty before stopping");
    h->leaving_sync = true;
    touch_member(h);
    usec_t until = now_monotonic() + 2 * (usec_t)loop_wait_s(h) * USEC_PER_SEC;
    while (now_monotonic() < until) {
        usleep(200 * 1000);
        n = NULL;
        if (dcs_read_cluster(h->dcs, false, &n) < 0)
            continue;
        named = named_in_sync(n, me);
        cluster_free(n);
        if (!named) {
            log_info("released from synchronous duty");
            return;
        }
    }
    log_warning("still named in /sync after %d s; stopping anyway", 2 * loop_wait_s(h));
}

static void shutdown_ha(Ha *h) {
    sdn_stopping();
    const PghaConfig *cfg = cfg_of(h);
    if (h->task.kind != TASK_NONE) {
        /* Like Patroni's cancellable subprocesses: a clone or rewind is stopped, not waited for
         * (pg_basebackup can run for hours). pg_basebackup's failure path removes the half-cloned
         * data directory; an interrupted pg_rewind leaves a data directory that the next start
         * rewinds again (its control file is only updated when it finishes). initdb is waited for. */
        Task *t = &h->task;
        if (t->kind != TASK_BOOTSTRAP && !t->done) {
            log_info("stopping the %s task", task_name(t->kind));
            pg_child_cancel(&t->child, SIGTERM);
            for (int i = 0; i < 50 && !t->done; i++)
                usleep(100 * 1000);
            if (!t->done) {
                log_warning("the %s task did not stop within 5 s; killing it", task_name(t->kind));
                pg_child_cancel(&t->child, SIGKILL);
            }
        } else {
            log_info("waiting for the %s task to finish", task_name(t->kind));
        }
        pthread_join(t->thread, NULL);
        pg_child_destroy(&t->child);
        free(t->error);
        t->error = NULL;
        t->kind = TASK_NONE;
    }
    bool paused = dyn_of(h)->pause;
    bool leader = h->cluster && h->cluster->leader && streq(h->cluster->leader->name, cfg->name);
    if (paused) {
        log_info("leaving PostgreSQL running and the leader key in place: the cluster is paused");
    } else if (h->pm_pid > 0) {
        if (!leader)
            leave_sync_duty(h);
        int r = stop_postgres(h, PG_STOP_FAST, "pgha is shutting down");
        if (r == 0 && leader) {
            refresh_controldata(h);
            if (h->cd.checkpoint_lsn > 0) {
                write_status_optime_only(h, h->cd.checkpoint_lsn);
            }
            if (dcs_delete_leader(h->dcs) == 1)
                log_info("Leader key released");
        } else if (r < 0) {
            log_error("PostgreSQL could not be stopped; keeping the leader key");
        }
    } else if (leader) {
        (void)dcs_delete_leader(h->dcs);
    }
    if (!paused) {
        set_state(h, "stopped");
        touch_member(h);
    }
}

int ha_run(Agent *a) {
    Ha h = {.a = a, .pm_pidfd = -1, .wake_fd = -1, .slots_check_local = true};
    int rc = 0;
    if (setup(&h) < 0) {
        rc = 1;
        goto out;
    }
    pgha_curl_global_init();
    if (!wait_for_dcs(&h, a->signal_fd)) {
        rc = h.stopping ? 0 : 1;
        goto out;
    }
    if (duplicate_name(&h)) {
        rc = 1;
        goto out;
    }
    char *err = NULL;
    h.rest = rest_start(&a->cfg, h.dcs, &err);
    if (!h.rest) {
        log_critical("REST API: %s", err);
        free(err);
        rc = 1;
        goto out;
    }
    dcs_start_watch(h.dcs, wake, &h);
    sdn_ready("running");
    log_info("pgha %s (Patroni %s compatible) started: member %s of cluster %s, PostgreSQL %d", PGHA_VERSION,
             PGHA_PATRONI_VERSION, a->cfg.name, a->cfg.scope, h.major);

    h.next_cycle = now_monotonic();
    h.last_cycle = 0;
    while (!a->stopping && !h.fatal) {
        usec_t now = now_monotonic();
        bool due = now >= h.next_cycle;
        if (!due) {
            usec_t wait = h.next_cycle - now;
            /* while PostgreSQL starts or promotes, look often: that is where failover time goes */
            usec_t fast = h.promoting ? 20 * USEC_PER_MSEC : 100 * USEC_PER_MSEC;
            if ((h.pg_starting || h.promoting || bootstrap_pending) && wait > fast)
                wait = fast;
            usec_t wd = sdn_watchdog_interval();
            if (wd) {
                if (now >= h.next_watchdog) {
                    sdn_watchdog();
                    h.next_watchdog = now + wd;
                }
                if (h.next_watchdog - now < wait)
                    wait = h.next_watchdog - now;
            }
            struct pollfd p[3] = {{.fd = a->signal_fd, .events = POLLIN},
                                  {.fd = h.wake_fd, .events = POLLIN},
                                  {.fd = h.pm_pidfd, .events = POLLIN}};
            int pr = poll(p, h.pm_pidfd >= 0 ? 3 : 2, (int)(wait / USEC_PER_MSEC) + 1);
            if (pr < 0 && errno != EINTR) {
                log_critical("poll: %s", strerror(errno));
                rc = 1;
                break;
            }
            if (pr > 0 && (p[0].revents & POLLIN)) {
                struct signalfd_siginfo si;
                while (read(a->signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
                    if (si.ssi_signo == SIGHUP) {
                        h.reload_pending = true; /* applied below, when no worker thread reads the config */
                        sdn_reloading();
                    } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGQUIT) {
                        log_info("received %s, shutting down", strsignal((int)si.ssi_signo));
                        a->stopping = true;
                    }
                }
                if (a->stopping)
                    break;
            }
            if (h.reload_pending && h.task.kind == TASK_NONE && !h.checkpoint_running) {
                h.reload_pending = false;
                if (agent_reload(a) == 0)
                    write_pgpass(&h);
            }
            bool woken = false;
            if (pr > 0 && (p[1].revents & POLLIN)) {
                uint64_t v;
                (void)!read(h.wake_fd, &v, sizeof v);
                woken = true;
            }
            if (pr > 0 && h.pm_pidfd >= 0 && (p[2].revents & (POLLIN | POLLHUP)))
                woken = true; /* the postmaster exited: act now, not at the next loop */
            now = now_monotonic();
            if (!woken && now < h.next_cycle) {
                /* between cycles, while PostgreSQL starts or promotes, only look at PostgreSQL (no DCS
                 * traffic); a full cycle runs as soon as it is ready */
                if (!(h.pg_starting || h.promoting || bootstrap_pending) || !quick_check(&h))
                    continue;
            }
        }
        if (h.reload_pending && h.task.kind == TASK_NONE && !h.checkpoint_running) {
            h.reload_pending = false;
            if (agent_reload(a) == 0)
                write_pgpass(&h);
        }
        now = now_monotonic();
        /* TILT: a cycle that starts far later than planned observes but does not act */
        bool stale = h.last_cycle && now - h.last_cycle > (usec_t)(loop_wait_s(&h) + ttl_s(&h) / 2) * USEC_PER_SEC &&
                     now - h.next_cycle > (usec_t)ttl_s(&h) / 2 * USEC_PER_SEC;
        if (stale)
            log_warning("the HA loop was delayed by %.1f s; observing without acting this cycle",
                        (double)(now - h.next_cycle) / 1e6);
        h.last_cycle = now;
        if (now >= h.next_cycle)
            h.next_cycle = now + (usec_t)loop_wait_s(&h) * USEC_PER_SEC;
        run_cycle(&h, stale);
        if (stale)
            h.next_cycle = now_monotonic(); /* act on fresh observations right away */
    }
    if (!h.fatal || h.pm_pid > 0)
        shutdown_ha(&h);
    if (h.fatal)
        rc = 1;
out:
    finish_post_promote_checkpoint(&h, true);
    if (h.dcs)
        dcs_stop_watch(h.dcs);
    rest_stop(h.rest);
    snapshot_publish(NULL);
    close_conn(&h);
    pg_status_free(&h.st);
    if (h.pm_pidfd >= 0)
        close(h.pm_pidfd);
    if (h.wake_fd >= 0)
        close(h.wake_fd);
    cluster_free(h.cluster);
    cluster_free(h.last_locked);
    if (h.dyn_loaded)
        dyn_config_free(&h.dyn);
    dcs_free(h.dcs);
    free(h.bin_dir);
    free(h.last_status);
    pg_slots_free(h.slot_rows, h.n_slot_rows);
    retain_timers_clear(&h.retain);
    free(h.slots_errors_logged);
    strlist_clear(&h.slots_recopy);
    strlist_clear(&h.slots_copy_logged);
    unready_clear(&h);
    free(h.applied_conf);
    cJSON_Delete(h.pending_reason);
    free(h.ssn);
    free(h.last_error);
    sdn_stopping();
    log_info("pgha stopped");
    return rc;
}
