/* libmicrohttpd server: routing (method + first path segment, spec §2.1), GET endpoints. */
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netdb.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "agent/probe.h"
#include "restapi/access.h"
#include "restapi/commands.h"
#include "restapi/metrics.h"
#include "restapi/restapi.h"

/* Request bounds (robustness): headers plus the connection's buffers, and the body of a command. */
#define REST_MEMORY_LIMIT ((size_t)32 * 1024)
#define REST_MAX_BODY ((unsigned long long)64 * 1024)
#define REST_CONNECTION_TIMEOUT 10u

/* One libmicrohttpd daemon. A reload that changes the listen address or the TLS settings starts a new one and
 * retires the running one: it stops accepting at once and is stopped by its reaper thread when its requests
 * are answered (suspended commands resumed, connections closed, or the connection timeout passed). */
typedef struct RestListener {
    struct RestServer *srv;
    struct MHD_Daemon *mhd;
    RestSecurity sec; /* retired: the settings (TLS material) it was started with, freed when it stops */
    unsigned threads; /* command threads holding a suspended connection of this daemon (srv->threads_lock) */
    bool closing;     /* its reaper decided to stop it: no new command threads (srv->threads_lock) */
    pthread_t reaper;
    bool has_reaper;
    _Atomic bool stopped;
    struct RestListener *next; /* the list of retired ones */
} RestListener;

struct RestServer {
    RestListener *cur;     /* the daemon that accepts */
    RestListener *retired; /* daemons finishing their requests (changed only by the reloading thread) */
    long long backlog;     /* cur's restapi.request_queue_size */
    Dcs *dcs;
    CommandQueue *commands; /* the HA loop's (commands.h) */
    _Atomic bool stopping;
    pthread_mutex_t threads_lock;
    pthread_cond_t threads_done;
    unsigned threads;      /* command threads running */
    PghaConfig *probe_cfg; /* under sec_lock: what a probe of the members uses (probe_config_dup) */
    char *scope;
    char *listen;
    RestSecurity sec;          /* access control, TLS, common headers (access.c): cur's */
    pthread_rwlock_t sec_lock; /* sec changes on reload (rest_reload) */
};

/* The one server of the process, for the response helpers (read-only while the daemon runs). */
static RestServer *rest_server;

typedef struct Params {
    QueryParam v[32];
    size_t n;
} Params;

static enum MHD_Result collect_param(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    Params *p = cls;
    if (p->n < ELEMENTSOF(p->v))
        p->v[p->n++] = (QueryParam){key, value ? value : ""};
    return MHD_YES;
}

static enum MHD_Result respond_hdr(struct MHD_Connection *conn, unsigned code, char *body, const char *content_type,
                                   const char *hname, const char *hvalue);

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned code, char *body, const char *content_type) {
    return respond_hdr(conn, code, body, content_type, NULL, NULL);
}

/* With one extra header (hname: NULL for none). */
static enum MHD_Result respond_hdr(struct MHD_Connection *conn, unsigned code, char *body, const char *content_type,
                                   const char *hname, const char *hvalue) {
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body ? body : (char *)"",
                                                             body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    if (content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (hname && hvalue)
        MHD_add_response_header(r, hname, hvalue);
    /* status-only responses (no body, no type) carry no headers of ours, as in Patroni */
    if ((body || content_type) && rest_server) {
        pthread_rwlock_rdlock(&rest_server->sec_lock);
        rest_security_add_headers(&rest_server->sec, r);
        pthread_rwlock_unlock(&rest_server->sec_lock);
    }
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_error_page(struct MHD_Connection *conn, unsigned code, const char *msg) {
    char *body = xasprintf("<!DOCTYPE HTML>\n<html>\n<head><title>Error response</title></head>\n<body>\n"
                           "<h1>Error response</h1>\n<p>Error code: %u</p>\n<p>Message: %s.</p>\n</body>\n</html>\n",
                           code, msg);
    return respond(conn, code, body, "text/html;charset=utf-8");
}

/* The status document (the body of /patroni and of every health check) depends on the snapshot only, and a
 * snapshot changes once per HA cycle: each REST thread renders it once per snapshot and answers copies of it.
 * Thread-local, so that no lock is added to a request; the cache holds a reference to its snapshot, so the
 * pointer it compares with cannot be reused by a newer one; freed when the thread exits (MHD_stop_daemon). */
typedef struct StatusCache {
    Snapshot *snap;
    char *json;
    size_t len;
} StatusCache;

static pthread_key_t status_cache_key;
static pthread_once_t status_cache_once = PTHREAD_ONCE_INIT;

static void status_cache_free(void *p) {
    StatusCache *c = p;
    snapshot_unref(c->snap);
    free(c->json);
    free(c);
}

static void status_cache_init(void) { (void)pthread_key_create(&status_cache_key, status_cache_free); }

static char *status_json(Snapshot *s) {
    (void)pthread_once(&status_cache_once, status_cache_init);
    StatusCache *c = pthread_getspecific(status_cache_key);
    if (!c) {
        c = xcalloc(1, sizeof *c);
        if (pthread_setspecific(status_cache_key, c) != 0) {
            free(c);
            return snapshot_status_json(s);
        }
    }
    if (c->snap != s) {
        char *json = snapshot_status_json(s);
        snapshot_unref(c->snap);
        free(c->json);
        c->snap = snapshot_ref(s);
        c->json = json;
        c->len = strlen(json);
    }
    char *copy = xmalloc(c->len + 1);
    memcpy(copy, c->json, c->len + 1);
    return copy;
}

static enum MHD_Result handle_get(RestServer *srv, struct MHD_Connection *conn, const char *url, bool status_only,
                                  Snapshot *s) {
    Params params = {0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_param, &params);
    /* the first path segment selects the handler */
    char first[64] = "";
    const char *p = url[0] == '/' ? url + 1 : url;
    size_t seg = strcspn(p, "/");
    snprintf(first, sizeof first, "%.*s", (int)(seg < sizeof first - 1 ? seg : sizeof first - 1), p);

    if (!status_only) {
        if (strcmp(first, "patroni") == 0)
            return respond(conn, 200, status_json(s), "application/json");
        if (strcmp(first, "metrics") == 0)
            return respond(conn, 200, metrics_render(s, now_monotonic()), "text/plain");
        if (strcmp(first, "liveness") == 0)
            return respond(conn, (unsigned)liveness_code(s, now_monotonic()), NULL, NULL);
        if (strcmp(first, "readiness") == 0)
            return respond(conn, (unsigned)readiness_code(s, params.v, params.n, NULL, 0, now_monotonic()), NULL, NULL);
        if (strcmp(first, "cluster") == 0 || strcmp(first, "history") == 0 || strcmp(first, "config") == 0 ||
            strcmp(first, "failsafe") == 0) {
            Cluster *c = NULL;
            /* the watch cache only, without waiting: a REST thread never blocks on etcd */
            if (dcs_get_cluster_cached(srv->dcs, &c) < 0)
                return MHD_NO; /* Patroni closes the connection when the DCS cannot be read */
            char *body = NULL;
            unsigned code = 200;
            if (strcmp(first, "cluster") == 0) {
                bool paused = false;
                if (c->config)
                    (void)json_get_bool(c->config, "pause", &paused);
                body = cluster_to_json(c, srv->scope, paused);
            } else if (strcmp(first, "history") == 0) {
                body = c->history ? json_dumps(c->history, true) : xstrdup("[]");
            } else if (strcmp(first, "config") == 0) {
                if (c->has_config && c->config_version > 0)
                    body = json_dumps(c->config, true);
                else
                    code = 502;
            } else {
                if (c->failsafe)
                    body = json_dumps(c->failsafe, true);
                else
                    code = 502;
            }
            cluster_free(c);
            if (code != 200)
                return respond_error_page(conn, code, "Bad Gateway");
            return respond(conn, 200, body, "application/json");
        }
    }
    /* the generic health-check handler, on the full path */
    int code = health_check_code(s, url, params.v, params.n, now_monotonic());
    if (status_only)
        return respond(conn, (unsigned)code, NULL, NULL);
    return respond(conn, (unsigned)code, status_json(s), "application/json");
}

/* Per-request state (*con_cls): markers for requests without a body to read, else the body received so
 * far (unsafe methods). */
static int safe_marker, answered_marker;

typedef struct Body {
    char *buf; /* NUL-terminated */
    size_t len;
    /* a command runs in a thread of its own while the connection is suspended: a REST poll thread is
     * not held up (health checks keep answering) */
    RestServer *srv;
    RestListener *l; /* the daemon of the connection */
    struct MHD_Connection *conn;
    char *url, *method;
    bool has_length;
    bool started;
    _Atomic bool finished;
    RestReply reply;
} Body;

static const char *reason_phrase(unsigned code) {
    switch (code) {
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static void *command_thread(void *arg) {
    Body *b = arg;
    RestServer *srv = b->srv;
    RestListener *l = b->l; /* b may be freed once the connection is resumed */
    pthread_rwlock_rdlock(&srv->sec_lock);
    PghaConfig *probe_cfg = probe_config_dup(srv->probe_cfg);
    pthread_rwlock_unlock(&srv->sec_lock);
    if (!rest_command(srv->commands, srv->dcs, probe_cfg, &srv->stopping, b->method, b->url, b->buf ? b->buf : "",
                      b->len, b->has_length, &b->reply))
        b->reply = (RestReply){.code = 501, .error_page = true};
    probe_config_free(probe_cfg);
    atomic_store(&b->finished, true);
    pthread_mutex_lock(&srv->threads_lock);
    MHD_resume_connection(b->conn);
    srv->threads--;
    l->threads--;
    pthread_cond_broadcast(&srv->threads_done);
    pthread_mutex_unlock(&srv->threads_lock);
    return NULL;
}

/* The final call of an unsafe request (access control passed, body read). */
static enum MHD_Result handle_command(RestListener *l, struct MHD_Connection *conn, const char *url, const char *method,
                                      Body *b, bool *ret_pending) {
    RestServer *srv = l->srv;
    *ret_pending = false;
    if (atomic_load(&b->finished)) {
        RestReply *rep = &b->reply;
        if (rep->close)
            return MHD_NO;
        if (rep->code == 501)
            return respond_error_page(conn, 501, "Unsupported method");
        if (rep->error_page)
            return respond_error_page(conn, rep->code, reason_phrase(rep->code));
        char *body = rep->body;
        rep->body = NULL;
        char lsn[24];
        snprintf(lsn, sizeof lsn, "%lld", rep->lsn);
        return respond_hdr(conn, rep->code, body, rep->content_type, rep->lsn > 0 ? "lsn" : NULL, lsn);
    }
    if (b->started) {
        *ret_pending = true;
        return MHD_YES;
    }
    if (!srv->commands)
        return respond_error_page(conn, 501, "Unsupported method");
    b->srv = srv;
    b->l = l;
    b->conn = conn;
    b->url = xstrdup(url);
    b->method = xstrdup(method);
    b->has_length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) != NULL;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    /* `stopping` and `threads` in one section: rest_stop() either sees this thread counted (and waits for
     * it to resume the connection) or we see it stopping (and suspend nothing) */
    pthread_mutex_lock(&srv->threads_lock);
    bool stopping = atomic_load(&srv->stopping) || l->closing;
    int r = EAGAIN;
    if (!stopping) {
        MHD_suspend_connection(conn);
        r = pthread_create(&t, &attr, command_thread, b);
        if (r == 0) {
            srv->threads++;
            l->threads++;
        } else
            MHD_resume_connection(conn);
    }
    pthread_mutex_unlock(&srv->threads_lock);
    b->started = r == 0;
    pthread_attr_destroy(&attr);
    if (r != 0) {
        *ret_pending = false;
        return respond_error_page(conn, 503, "Service Unavailable");
    }
    return MHD_YES;
}

static bool safe_method(const char *method) {
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 || strcmp(method, "OPTIONS") == 0;
}

/* The first call of an unsafe request (headers read, body not yet): access control, the body bound.
 * MHD_YES with *ret_queued when a response was queued (the body is then not read). */
static enum MHD_Result unsafe_request_start(RestServer *srv, struct MHD_Connection *conn, const char *method,
                                            const char *url, bool *ret_queued) {
    *ret_queued = true;
    pthread_rwlock_rdlock(&srv->sec_lock);
    int code = rest_security_check(&srv->sec, srv->dcs, conn, method, url);
    pthread_rwlock_unlock(&srv->sec_lock);
    if (code < 0)
        return MHD_NO;
    if (code > 0)
        return MHD_YES;
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    long long len = 0;
    if (cl && (parse_ll(cl, &len) < 0 || len < 0))
        return respond_error_page(conn, 400, "Bad request (invalid Content-Length)");
    if ((unsigned long long)len > REST_MAX_BODY)
        return respond_error_page(conn, 413, "Request body too large");
    *ret_queued = false;
    return MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    (void)version;
    RestListener *l = cls;
    RestServer *srv = l->srv;
    if (*con_cls == NULL) {
        *con_cls = &safe_marker;
        /* verify_client: required refuses a client without a valid certificate, whatever it asks
         * (Patroni's TLS handshake fails): the connection is closed without an answer */
        pthread_rwlock_rdlock(&srv->sec_lock);
        bool cert_ok = rest_security_client_cert_ok(&srv->sec, conn);
        pthread_rwlock_unlock(&srv->sec_lock);
        if (!cert_ok)
            return MHD_NO;
        if (safe_method(method))
            return MHD_YES;
        bool queued = false;
        enum MHD_Result r = unsafe_request_start(srv, conn, method, url, &queued);
        *con_cls = queued ? (void *)&answered_marker : xcalloc(1, sizeof(Body));
        if (queued)
            rest_metrics_count_connection(conn, url); /* 401, 403, 413, ... answered here */
        return r;
    }
    if (*con_cls == &answered_marker) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        /* bodies are read by the command endpoints; a chunked body beyond the bound closes the connection
         * (a Content-Length beyond it was answered with 413 before) */
        if (*con_cls != &safe_marker) {
            Body *b = *con_cls;
            if ((unsigned long long)b->len + *upload_data_size > REST_MAX_BODY)
                return MHD_NO;
            b->buf = xrealloc(b->buf, b->len + *upload_data_size + 1);
            memcpy(b->buf + b->len, upload_data, *upload_data_size);
            b->len += *upload_data_size;
            b->buf[b->len] = '\0';
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*con_cls != &safe_marker) {
        /* access control passed in the first call; commands do not need the snapshot */
        bool pending = false;
        enum MHD_Result r = handle_command(l, conn, url, method, *con_cls, &pending);
        if (!pending)
            rest_metrics_count_connection(conn, url);
        return r;
    }
    Snapshot *s = snapshot_current();
    enum MHD_Result r;
    if (!s) {
        r = respond(conn, 503, NULL, NULL);
    } else if (strcmp(method, "GET") == 0) {
        r = handle_get(srv, conn, url, false, s);
    } else if (strcmp(method, "HEAD") == 0 || strcmp(method, "OPTIONS") == 0) {
        r = handle_get(srv, conn, url, true, s);
    } else {
        r = respond_error_page(conn, 501, "Unsupported method");
    }
    rest_metrics_count_connection(conn, url);
    snapshot_unref(s);
    return r;
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    (void)toe;
    if (*con_cls && *con_cls != &safe_marker && *con_cls != &answered_marker) {
        Body *b = *con_cls;
        /* a suspended connection is completed only after its thread resumed it */
        free(b->buf);
        free(b->url);
        free(b->method);
        free(b->reply.body);
        free(b);
    }
    *con_cls = NULL;
}

/* libmicrohttpd's format: the attribute lets the compiler check the vsnprintf() below (clang's
 * -Wformat-nonliteral) */
__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t l = strlen(buf);
    while (l && (buf[l - 1] == '\n' || buf[l - 1] == '\r'))
        buf[--l] = '\0';
    log_debug("REST API: %s", buf);
}

/* Start a daemon on `listen` with the TLS settings of `sec` (which it borrows). NULL with a message. */
static RestListener *listener_start(RestServer *srv, const char *listen, const RestSecurity *sec, long long backlog,
                                    char **ret_error) {
    _cleanup_free_ char *host = NULL;
    int port = 8008;
    if (parse_host_port(listen, 8008, &host, &port) < 0) {
        *ret_error = xasprintf("restapi.listen: '%s' is not a valid host:port", listen);
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    const char *h = (!host[0] || strcmp(host, "*") == 0) ? NULL : host;
    int gr = getaddrinfo(h, portstr, &hints, &res);
    if (gr != 0) {
        *ret_error = xasprintf("restapi.listen: cannot resolve '%s': %s", host, gai_strerror(gr));
        return NULL;
    }
    RestListener *l = xcalloc(1, sizeof *l);
    l->srv = srv;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (res->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (sec->https)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem tls_options[8];
    rest_security_tls_options(sec, tls_options, ELEMENTSOF(tls_options));
    /* restapi.request_queue_size is the listen backlog, as in Patroni. SO_REUSEPORT (ADDRESS_REUSE): a new
     * daemon on the same address binds while the old one still listens, then the old one stops accepting. */
    l->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handler, l, MHD_OPTION_SOCK_ADDR, res->ai_addr,
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2, MHD_OPTION_CONNECTION_TIMEOUT,
                              REST_CONNECTION_TIMEOUT, MHD_OPTION_CONNECTION_MEMORY_LIMIT, REST_MEMORY_LIMIT,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)512, MHD_OPTION_LISTEN_BACKLOG_SIZE,
                              (unsigned)backlog, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
                              MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
                              NULL, MHD_OPTION_ARRAY, tls_options, MHD_OPTION_END);
    freeaddrinfo(res);
    if (!l->mhd) {
        if (sec->https)
            *ret_error = xasprintf("cannot listen on %s (address in use or not available, or the TLS settings "
                                   "were refused: see the debug log)",
                                   listen);
        else
            *ret_error = xasprintf("cannot listen on %s (address in use or not available)", listen);
        free(l);
        return NULL;
    }
    return l;
}

static void log_listening(const char *listen, const RestSecurity *sec) {
    if (sec->https)
        log_info("REST API: HTTPS on %s (verify_client: %s)", listen,
                 sec->verify_client == VERIFY_REQUIRED   ? "required"
                 : sec->verify_client == VERIFY_OPTIONAL ? "optional"
                                                         : "none");
}

RestServer *rest_start(const PghaConfig *cfg, Dcs *dcs, CommandQueue *commands, char **ret_error) {
    RestServer *srv = xcalloc(1, sizeof *srv);
    if (rest_security_init(&srv->sec, cfg, ret_error) < 0) {
        free(srv);
        return NULL;
    }
    pthread_rwlock_init(&srv->sec_lock, NULL);
    srv->dcs = dcs;
    srv->commands = commands;
    pthread_mutex_init(&srv->threads_lock, NULL);
    pthread_cond_init(&srv->threads_done, NULL);
    srv->scope = xstrdup(cfg->scope);
    srv->listen = xstrdup(cfg->restapi.listen);
    srv->backlog = cfg->restapi.request_queue_size;
    srv->probe_cfg = probe_config_dup(cfg);
    rest_server = srv;
    srv->cur = listener_start(srv, cfg->restapi.listen, &srv->sec, cfg->restapi.request_queue_size, ret_error);
    if (!srv->cur) {
        rest_server = NULL;
        pthread_mutex_destroy(&srv->threads_lock);
        pthread_cond_destroy(&srv->threads_done);
        rest_security_free(&srv->sec);
        pthread_rwlock_destroy(&srv->sec_lock);
        probe_config_free(srv->probe_cfg);
        free(srv->scope);
        free(srv->listen);
        free(srv);
        return NULL;
    }
    log_listening(cfg->restapi.listen, &srv->sec);
    return srv;
}

/* How long a retired daemon's open connections may take (idle keep-alive ones close after the timeout). */
#define REST_RETIRE_MAX_USEC ((usec_t)(REST_CONNECTION_TIMEOUT + 2) * USEC_PER_SEC)

static void *reaper_thread(void *arg) {
    RestListener *l = arg;
    RestServer *srv = l->srv;
    usec_t deadline = now_monotonic() + REST_RETIRE_MAX_USEC;
    for (;;) {
        /* a suspended connection must be resumed before its daemon stops: its command ends by itself. The
         * decision to stop and `closing` in one section with `threads`: a worker thread starting a command
         * now either is counted (and waited for) or sees `closing` (and answers 503) */
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        bool idle = !info || info->num_connections == 0; /* (read outside our lock: libmicrohttpd's own) */
        pthread_mutex_lock(&srv->threads_lock);
        bool done = false;
        if (l->threads == 0) {
            done = atomic_load(&srv->stopping) || idle || now_monotonic() >= deadline;
            l->closing = done;
        }
        pthread_mutex_unlock(&srv->threads_lock);
        if (done)
            break;
        usleep(50 * 1000);
    }
    MHD_stop_daemon(l->mhd);
    l->mhd = NULL;
    atomic_store(&l->stopped, true);
    return NULL;
}

/* Free the retired daemons whose reaper is done (all of them with `all`, waiting for them). */
static void reap_retired(RestServer *r, bool all) {
    RestListener **p = &r->retired;
    while (*p) {
        RestListener *l = *p;
        if (!all && l->has_reaper && !atomic_load(&l->stopped)) {
            p = &l->next;
            continue;
        }
        if (l->has_reaper)
            pthread_join(l->reaper, NULL);
        else if (l->mhd)
            MHD_stop_daemon(l->mhd); /* rest_stop(): its command threads are done */
        *p = l->next;
        rest_security_free(&l->sec);
        free(l);
    }
}

void rest_stop(RestServer *r) {
    if (!r)
        return;
    /* let running commands answer (they see `stopping` within a second) before the server goes; set
     * under threads_lock, so that no command thread starts after this */
    pthread_mutex_lock(&r->threads_lock);
    atomic_store(&r->stopping, true);
    while (r->threads)
        pthread_cond_wait(&r->threads_done, &r->threads_lock);
    pthread_mutex_unlock(&r->threads_lock);
    MHD_stop_daemon(r->cur->mhd);
    free(r->cur);
    reap_retired(r, true);
    pthread_mutex_destroy(&r->threads_lock);
    pthread_cond_destroy(&r->threads_done);
    if (rest_server == r)
        rest_server = NULL;
    rest_security_free(&r->sec);
    pthread_rwlock_destroy(&r->sec_lock);
    probe_config_free(r->probe_cfg);
    free(r->scope);
    free(r->listen);
    free(r);
}

/* Does a daemon started with `b` serve differently from one with `a` (certificate files compared by content:
 * a renewed certificate at the same path counts)? */
static bool tls_changed(const RestSecurity *a, const RestSecurity *b) {
    if (a->https != b->https)
        return true;
    if (!a->https)
        return false;
    return a->verify_client != b->verify_client || !streq(a->tls.cert, b->tls.cert) || !streq(a->tls.key, b->tls.key) ||
           !streq(a->tls.ca, b->tls.ca) || !streq(a->tls.key_password, b->tls.key_password) ||
           !streq(a->tls.priorities, b->tls.priorities);
}

int rest_reload(RestServer *r, const PghaConfig *cfg) {
    if (!r)
        return 0;
    reap_retired(r, false);
    RestSecurity next;
    char *err = NULL;
    /* built (host names resolved, certificate files read) before taking the lock: requests are not held up */
    if (rest_security_init(&next, cfg, &err) < 0) {
        log_error("REST API: %s; keeping the running server and its settings", err);
        free(err);
        return -1;
    }
    bool moved = !streq(r->listen, cfg->restapi.listen);
    bool tls = tls_changed(&r->sec, &next);
    bool restart = moved || tls || r->backlog != cfg->restapi.request_queue_size;
    RestListener *l = NULL;
    if (restart) {
        l = listener_start(r, cfg->restapi.listen, &next, cfg->restapi.request_queue_size, &err);
        if (!l) {
            log_error("REST API: %s; keeping the running server on %s", err, r->listen);
            free(err);
            rest_security_free(&next);
            return -1;
        }
    }
    pthread_rwlock_wrlock(&r->sec_lock);
    if (l) {
        RestSecurity running = r->sec;
        r->sec = next;
        next = running; /* the retired daemon's settings now */
    } else {
        rest_security_swap_access(&r->sec, &next);
    }
    PghaConfig *old_probe = r->probe_cfg;
    r->probe_cfg = probe_config_dup(cfg);
    pthread_rwlock_unlock(&r->sec_lock);
    probe_config_free(old_probe);
    if (!l) {
        rest_security_free(&next);
        return 0;
    }
    RestListener *old = r->cur;
    r->cur = l;
    old->sec = next;
    /* no new connection for the old daemon; the accepted ones are answered */
    MHD_socket fd = MHD_quiesce_daemon(old->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    old->has_reaper = pthread_create(&old->reaper, NULL, reaper_thread, old) == 0;
    old->next = r->retired;
    r->retired = old;
    if (moved)
        log_info("REST API: listening on %s (was %s)", cfg->restapi.listen, r->listen);
    else
        log_info("REST API: listening on %s with %s", r->listen, tls ? "new TLS settings" : "a new request_queue_size");
    free(r->listen);
    r->listen = xstrdup(cfg->restapi.listen);
    r->backlog = cfg->restapi.request_queue_size;
    log_listening(r->listen, &r->sec);
    return 0;
}
