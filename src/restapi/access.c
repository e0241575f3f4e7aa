/* REST API security (spec §2.1): allowlist, access decision, Server header, TLS material. */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "dcs/cluster.h"
#include "restapi/access.h"

static void acl_push(Acl *acl, int family, const void *addr, unsigned prefix) {
    acl->v = xrealloc(acl->v, (acl->n + 1) * sizeof *acl->v);
    AclEntry *e = &acl->v[acl->n++];
    memset(e, 0, sizeof *e);
    e->family = family;
    memcpy(e->addr, addr, family == AF_INET ? 4 : 16);
    e->prefix = prefix;
}

/* A textual address: 0 and the family/bytes, or -1. */
static int parse_ip(const char *s, int *ret_family, unsigned char ret_addr[16]) {
    if (inet_pton(AF_INET, s, ret_addr) == 1) {
        *ret_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, ret_addr) == 1) {
        *ret_family = AF_INET6;
        return 0;
    }
    return -1;
}

static int acl_add_resolved(Acl *acl, const char *host) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET)
            acl_push(acl, AF_INET, &((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr, 32);
        else if (ai->ai_family == AF_INET6)
            acl_push(acl, AF_INET6, &((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr, 128);
    }
    freeaddrinfo(res);
    return 0;
}

int acl_add(Acl *acl, const char *entry, char **ret_error) {
    _cleanup_free_ char *s = xstrdup(entry ? entry : "");
    str_trim(s);
    if (!s[0]) {
        *ret_error = xstrdup("empty allowlist entry");
        return -EINVAL;
    }
    char *slash = strchr(s, '/');
    int family;
    unsigned char addr[16];
    if (slash) {
        *slash = '\0';
        long long prefix;
        if (parse_ip(s, &family, addr) < 0 || parse_ll(slash + 1, &prefix) < 0 || prefix < 0 ||
            prefix > (family == AF_INET ? 32 : 128)) {
            *ret_error = xasprintf("'%s' is not a valid network (address/prefix)", entry);
            return -EINVAL;
        }
        acl_push(acl, family, addr, (unsigned)prefix);
        return 0;
    }
    /* brackets around an IPv6 address are tolerated */
    size_t l = strlen(s);
    if (s[0] == '[' && l > 2 && s[l - 1] == ']') {
        s[l - 1] = '\0';
        memmove(s, s + 1, l - 1);
    }
    if (parse_ip(s, &family, addr) == 0) {
        acl_push(acl, family, addr, family == AF_INET ? 32 : 128);
        return 0;
    }
    if (acl_add_resolved(acl, s) < 0) {
        *ret_error = xasprintf("cannot resolve allowlist host '%s'", entry);
        return -EINVAL;
    }
    return 0;
}

int acl_add_url_host(Acl *acl, const char *url) {
    if (!url)
        return -EINVAL;
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *at = strchr(p, '@');
    size_t hostpart = strcspn(p, "/?#");
    if (at && (size_t)(at - p) < hostpart) {
        hostpart -= (size_t)(at - p) + 1;
        p = at + 1;
    }
    _cleanup_free_ char *host = NULL;
    if (p[0] == '[') {
        const char *close = memchr(p, ']', hostpart);
        if (!close)
            return -EINVAL;
        host = xstrndup(p + 1, (size_t)(close - p - 1));
    } else {
        size_t hl = strcspn(p, ":/?#");
        host = xstrndup(p, hl < hostpart ? hl : hostpart);
    }
    if (!host[0])
        return -EINVAL;
    int family;
    unsigned char addr[16];
    if (parse_ip(host, &family, addr) == 0) {
        acl_push(acl, family, addr, family == AF_INET ? 32 : 128);
        return 0;
    }
    return acl_add_resolved(acl, host) < 0 ? -EINVAL : 0;
}

void acl_clear(Acl *acl) {
    free(acl->v);
    acl->v = NULL;
    acl->n = 0;
}

static bool prefix_match(const unsigned char *a, const unsigned char *b, unsigned bits) {
    size_t full = bits / 8;
    if (memcmp(a, b, full) != 0)
        return false;
    unsigned rest = bits % 8;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

static bool acl_match_addr(const Acl *acl, int family, const unsigned char *addr) {
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    bool mapped = family == AF_INET6 && memcmp(addr, v4mapped, 12) == 0;
    for (size_t i = 0; i < acl->n; i++) {
        const AclEntry *e = &acl->v[i];
        if (e->family == family && prefix_match(e->addr, addr, e->prefix))
            return true;
        if (mapped && e->family == AF_INET && prefix_match(e->addr, addr + 12, e->prefix))
            return true;
        if (family == AF_INET && e->family == AF_INET6 && memcmp(e->addr, v4mapped, 12) == 0 && e->prefix >= 96 &&
            prefix_match(e->addr + 12, addr, e->prefix - 96))
            return true;
    }
    return false;
}

bool acl_match(const Acl *acl, const struct sockaddr *sa) {
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET)
        return acl_match_addr(acl, AF_INET,
                              (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return acl_match_addr(acl, AF_INET6,
                              (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
    return false;
}

bool acl_match_text(const Acl *acl, const char *ip) {
    int family;
    unsigned char addr[16];
    if (!ip || parse_ip(ip, &family, addr) < 0)
        return false;
    return acl_match_addr(acl, family, addr);
}

bool ct_streq(const char *a, const char *b) {
    if (!a || !b)
        return false;
    size_t la = strlen(a), lb = strlen(b);
    /* every byte of b is looked at whatever a holds; the length difference counts too */
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)(b[i] ^ (i < la ? a[i] : 0));
    return diff == 0;
}

int access_decide(const AccessRequest *r, const char **ret_reason) {
    if (r->allowlist_active && !r->client_allowed) {
        *ret_reason = "Access is denied";
        return 403;
    }
    if (r->https && r->verify_client != VERIFY_NONE && !r->client_cert_valid) {
        *ret_reason = "client certificate required";
        return 403;
    }
    if (r->auth_username) {
        if (!r->auth_header_present) {
            *ret_reason = "no auth header received";
            return 401;
        }
        /* both compares always run: no early exit on a wrong user name */
        bool user_ok = ct_streq(r->username, r->auth_username);
        bool pass_ok = ct_streq(r->password, r->auth_password ? r->auth_password : "");
        if (!r->username || !r->password || !(user_ok & pass_ok)) {
            *ret_reason = "not authenticated";
            return 401;
        }
    }
    *ret_reason = NULL;
    return 0;
}

const char *server_header_value(const char *server_tokens) {
    if (!server_tokens || strcaseeq(server_tokens, "original"))
        return "pgha/" PGHA_VERSION;
    if (strcaseeq(server_tokens, "productonly"))
        return "Patroni";
    if (strcaseeq(server_tokens, "minimal"))
        return "Patroni/" PGHA_PATRONI_VERSION;
    return NULL;
}

/* ---- TLS ---- */

static int read_pem(const char *key, const char *path, char **ret, char **ret_error) {
    FILE *f = fopen(path, "re");
    if (!f) {
        *ret_error = xasprintf("restapi.%s: cannot open '%s': %s", key, path, strerror(errno));
        return -EINVAL;
    }
    StrBuf b;
    sb_init(&b);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        sb_addn(&b, buf, n);
        if (b.len > 1024 * 1024)
            break;
    }
    bool err = ferror(f) != 0;
    fclose(f);
    if (err || b.len == 0 || b.len > 1024 * 1024) {
        *ret_error = xasprintf("restapi.%s: cannot read '%s': %s", key, path,
                               err          ? "read error"
                               : b.len == 0 ? "empty file"
                                            : "larger than 1 MiB");
        sb_free(&b);
        return -EINVAL;
    }
    *ret = sb_steal(&b);
    return 0;
}

void rest_tls_free(RestTls *t) {
    free(t->cert);
    free(t->key);
    free(t->ca);
    free(t->key_password);
    free(t->priorities);
    memset(t, 0, sizeof *t);
}

int rest_tls_load(const PghaConfig *cfg, RestTls *ret, char **ret_error) {
    const char *keyfile = cfg->restapi.keyfile ? cfg->restapi.keyfile : cfg->restapi.certfile;
    RestTls t = {0};
    int r = read_pem("certfile", cfg->restapi.certfile, &t.cert, ret_error);
    if (r == 0)
        r = read_pem(cfg->restapi.keyfile ? "keyfile" : "certfile", keyfile, &t.key, ret_error);
    if (r == 0 && cfg->restapi.cafile)
        r = read_pem("cafile", cfg->restapi.cafile, &t.ca, ret_error);
    if (r == 0 && cfg->restapi.verify_client != VERIFY_NONE && !t.ca) {
        *ret_error = xstrdup("restapi.verify_client needs restapi.cafile (the CA that signs client certificates)");
        r = -EINVAL;
    }
    gnutls_certificate_credentials_t cred = NULL;
    if (r == 0 && gnutls_certificate_allocate_credentials(&cred) < 0) {
        *ret_error = xstrdup("restapi: cannot allocate TLS credentials");
        r = -EINVAL;
    }
    if (r == 0) {
        gnutls_datum_t cd = {(unsigned char *)t.cert, (unsigned)strlen(t.cert)};
        gnutls_datum_t kd = {(unsigned char *)t.key, (unsigned)strlen(t.key)};
        int g = gnutls_certificate_set_x509_key_mem2(cred, &cd, &kd, GNUTLS_X509_FMT_PEM, cfg->restapi.keyfile_password,
                                                     0);
        if (g < 0) {
            const char *hint = "";
            if (g == GNUTLS_E_DECRYPTION_FAILED || g == GNUTLS_E_PK_INVALID_PRIVKEY)
                hint = cfg->restapi.keyfile_password ? " (wrong restapi.keyfile_password?)"
                                                     : " (encrypted key without restapi.keyfile_password?)";
            *ret_error = xasprintf("restapi: cannot use certificate '%s' with key '%s': %s%s", cfg->restapi.certfile,
                                   keyfile, gnutls_strerror(g), hint);
            r = -EINVAL;
        }
    }
    if (r == 0 && t.ca) {
        gnutls_datum_t ad = {(unsigned char *)t.ca, (unsigned)strlen(t.ca)};
        int g = gnutls_certificate_set_x509_trust_mem(cred, &ad, GNUTLS_X509_FMT_PEM);
        if (g <= 0) {
            *ret_error = xasprintf("restapi.cafile: no usable CA certificate in '%s'%s%s", cfg->restapi.cafile,
                                   g < 0 ? ": " : "", g < 0 ? gnutls_strerror(g) : "");
            r = -EINVAL;
        }
    }
    if (cred)
        gnutls_certificate_free_credentials(cred);
    if (r == 0 && cfg->restapi.ciphers) {
        gnutls_priority_t prio = NULL;
        const char *errpos = NULL;
        int g = gnutls_priority_init(&prio, cfg->restapi.ciphers, &errpos);
        if (g < 0) {
            *ret_error = xasprintf("restapi.ciphers: '%s' is not a valid GnuTLS priority string (error at '%s')",
                                   cfg->restapi.ciphers, errpos ? errpos : "?");
            r = -EINVAL;
        } else {
            gnutls_priority_deinit(prio);
            t.priorities = xstrdup(cfg->restapi.ciphers);
        }
    }
    if (r < 0) {
        rest_tls_free(&t);
        return r;
    }
    if (cfg->restapi.keyfile_password)
        t.key_password = xstrdup(cfg->restapi.keyfile_password);
    *ret = t;
    return 0;
}

bool rest_tls_peer_verified(void *session) {
    if (!session)
        return false;
    gnutls_session_t s = session;
    unsigned n = 0;
    if (!gnutls_certificate_get_peers(s, &n) || n == 0)
        return false;
    unsigned status = 0;
    if (gnutls_certificate_verify_peers2(s, &status) < 0)
        return false;
    return status == 0;
}

/* ---- the server side ---- */

static void add_headers_from(StrList *l, const YNode *map) {
    if (!map || map->type != Y_MAP)
        return;
    for (size_t i = 0; i < map->n; i++) {
        _cleanup_free_ char *v = ynode_scalar_string(map->items[i]);
        /* a later map (https_extra_headers) replaces a header of the same name */
        for (size_t j = 0; j + 1 < l->n; j += 2)
            if (strcaseeq(l->v[j], map->keys[i])) {
                free(l->v[j + 1]);
                l->v[j + 1] = xstrdup(v ? v : "");
                goto next;
            }
        strlist_add(l, map->keys[i]);
        strlist_add(l, v ? v : "");
    next:;
    }
}

int rest_security_init(RestSecurity *sec, const PghaConfig *cfg, char **ret_error) {
    int r = rest_security_init_access(sec, cfg, cfg->restapi.certfile != NULL, ret_error);
    if (r < 0)
        return r;
    sec->verify_client = cfg->restapi.verify_client;
    if (sec->https && rest_tls_load(cfg, &sec->tls, ret_error) < 0) {
        rest_security_free(sec);
        return -EINVAL;
    }
    return 0;
}

void rest_security_swap_access(RestSecurity *a, RestSecurity *b) {
#define SWAP(field)                         \
    do {                                    \
        __typeof__(a->field) t_ = a->field; \
        a->field = b->field;                \
        b->field = t_;                      \
    } while (0)
    SWAP(allowlist);
    SWAP(allowlist_active);
    SWAP(include_members);
    SWAP(auth_username);
    SWAP(auth_password);
    SWAP(extra_headers);
    SWAP(server_header);
#undef SWAP
}

int rest_security_init_access(RestSecurity *sec, const PghaConfig *cfg, bool https, char **ret_error) {
    memset(sec, 0, sizeof *sec);
    sec->https = https;
    sec->include_members = cfg->restapi.allowlist_include_members;
    sec->allowlist_active = cfg->restapi.allowlist.n > 0 || sec->include_members;
    for (size_t i = 0; i < cfg->restapi.allowlist.n; i++) {
        char *err = NULL;
        if (acl_add(&sec->allowlist, cfg->restapi.allowlist.v[i], &err) < 0) {
            *ret_error = xasprintf("restapi.allowlist: %s", err);
            free(err);
            rest_security_free(sec);
            return -EINVAL;
        }
    }
    if (cfg->restapi.username) {
        sec->auth_username = xstrdup(cfg->restapi.username);
        sec->auth_password = xstrdup(cfg->restapi.password ? cfg->restapi.password : "");
    }
    sec->server_header = server_header_value(cfg->restapi.server_tokens);
    if (!sec->server_header)
        sec->server_header = server_header_value(NULL);
    add_headers_from(&sec->extra_headers, cfg->restapi.http_extra_headers);
    if (sec->https)
        add_headers_from(&sec->extra_headers, cfg->restapi.https_extra_headers);
    return 0;
}

void rest_security_free(RestSecurity *sec) {
    acl_clear(&sec->allowlist);
    free(sec->auth_username);
    free(sec->auth_password);
    strlist_clear(&sec->extra_headers);
    rest_tls_free(&sec->tls);
    memset(sec, 0, sizeof *sec);
}

void rest_security_tls_options(const RestSecurity *sec, struct MHD_OptionItem *ops, size_t n) {
    size_t i = 0;
#define OPT(o, p)                                                    \
    do {                                                             \
        if (i + 1 < n)                                               \
            ops[i++] = (struct MHD_OptionItem){(o), 0, (void *)(p)}; \
    } while (0)
    if (sec->https) {
        OPT(MHD_OPTION_HTTPS_MEM_CERT, sec->tls.cert);
        OPT(MHD_OPTION_HTTPS_MEM_KEY, sec->tls.key);
        if (sec->tls.key_password)
            OPT(MHD_OPTION_HTTPS_KEY_PASSWORD, sec->tls.key_password);
        /* the CA is only given to MHD when client certificates are asked for: with it GnuTLS requests one */
        if (sec->tls.ca && sec->verify_client != VERIFY_NONE)
            OPT(MHD_OPTION_HTTPS_MEM_TRUST, sec->tls.ca);
        if (sec->tls.priorities)
            OPT(MHD_OPTION_HTTPS_PRIORITIES, sec->tls.priorities);
    }
#undef OPT
    ops[i] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
}

void rest_security_add_headers(const RestSecurity *sec, struct MHD_Response *r) {
    if (!sec)
        return;
    if (sec->server_header)
        MHD_add_response_header(r, MHD_HTTP_HEADER_SERVER, sec->server_header);
    for (size_t i = 0; i + 1 < sec->extra_headers.n; i += 2)
        MHD_add_response_header(r, sec->extra_headers.v[i], sec->extra_headers.v[i + 1]);
}

static bool client_cert_valid(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    return ci && rest_tls_peer_verified(ci->tls_session);
}

bool rest_security_client_cert_ok(const RestSecurity *sec, struct MHD_Connection *conn) {
    if (!sec->https || sec->verify_client != VERIFY_REQUIRED)
        return true;
    return client_cert_valid(conn);
}

static bool client_allowed(const RestSecurity *sec, Dcs *dcs, const struct sockaddr *sa, bool check_members) {
    if (acl_match(&sec->allowlist, sa))
        return true;
    if (!check_members || !sec->include_members || !dcs)
        return false;
    Cluster *c = NULL;
    if (dcs_get_cluster_cached(dcs, &c) < 0 || !c)
        return false;
    Acl members = {0};
    for (size_t i = 0; i < c->n_members; i++)
        (void)acl_add_url_host(&members, c->members[i].api_url);
    bool ok = acl_match(&members, sa);
    acl_clear(&members);
    cluster_free(c);
    return ok;
}

/* Patroni's write_response(): the message as a text/html body. */
static int queue_message(const RestSecurity *sec, struct MHD_Connection *conn, unsigned code, const char *msg,
                         bool basic_auth) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(msg), (void *)msg, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return -1;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html");
    rest_security_add_headers(sec, r);
    /* MHD adds WWW-Authenticate: Basic realm="Patroni" itself and answers 401 */
    enum MHD_Result q = basic_auth ? MHD_queue_basic_auth_fail_response(conn, "Patroni", r)
                                   : MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return q == MHD_YES ? (int)code : -1;
}

bool rest_access_checks_members(const char *method, const char *url) {
    /* the router takes the first path segment (as Patroni's): /failsafe, /failsafe/..., /failsafe?... */
    bool failsafe = url && strncmp(url, "/failsafe", 9) == 0 && (url[9] == '\0' || url[9] == '/' || url[9] == '?');
    return !(method && strcmp(method, "POST") == 0 && failsafe);
}

int rest_security_check(const RestSecurity *sec, Dcs *dcs, struct MHD_Connection *conn, const char *method,
                        const char *url) {
    const union MHD_ConnectionInfo *ai = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ai ? ai->client_addr : NULL;
    bool failsafe_post = !rest_access_checks_members(method, url);
    AccessRequest req = {
        .allowlist_active = failsafe_post ? sec->allowlist.n > 0 : sec->allowlist_active,
        .https = sec->https,
        .verify_client = sec->verify_client,
        .auth_username = sec->auth_username,
        .auth_password = sec->auth_password,
    };
    /* each fact is established only when its step is reached, in the order of access_decide() */
    if (req.allowlist_active)
        req.client_allowed = client_allowed(sec, dcs, sa, !failsafe_post);
    if (sec->https && sec->verify_client != VERIFY_NONE && (!req.allowlist_active || req.client_allowed))
        req.client_cert_valid = client_cert_valid(conn);
    char *user = NULL, *pass = NULL;
    if (sec->auth_username) {
        req.auth_header_present = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION) !=
                                  NULL;
        if (req.auth_header_present)
            user = MHD_basic_auth_get_username_password(conn, &pass);
        req.username = user;
        req.password = pass;
    }
    const char *reason = NULL;
    int code = access_decide(&req, &reason);
    if (pass) {
        explicit_bzero(pass, strlen(pass));
        MHD_free(pass);
    }
    if (user)
        MHD_free(user);
    if (code == 0)
        return 0;
    char host[64] = "?";
    if (sa)
        (void)getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
                          host, sizeof host, NULL, 0, NI_NUMERICHOST);
    /* the path as the client sent it may hold anything (MHD has percent-decoded it): printable ASCII only */
    char path[160];
    size_t j = 0;
    for (const char *p = url; p && *p && j + 1 < sizeof path; p++)
        path[j++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    path[j] = '\0';
    log_info("REST API: %s %s from %s refused: %d %s", method, path, host, code, reason);
    return queue_message(sec, conn, (unsigned)code, reason, code == 401);
}
