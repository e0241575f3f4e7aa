/* REST API security (spec §2.1): the allowlist, the access decision for unsafe endpoints (allowlist,
 * client certificate, Basic authentication, in Patroni's order), the Server header (restapi.server_tokens)
 * and TLS (restapi.certfile & co.). The decision functions are pure and unit-tested. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "common/config.h"
#include "dcs/dcs.h"

/* One allowlist entry: an IPv4 or IPv6 network (a host is a /32 or /128). */
typedef struct AclEntry {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix;
} AclEntry;

typedef struct Acl {
    AclEntry *v;
    size_t n;
} Acl;

/* Add "10.0.0.0/8", "fe80::/10", "127.0.0.1", "::1" or a host name (every address it resolves to, now).
 * Host bits of a CIDR are ignored (Python's ip_network(strict=False)). Returns 0, or -EINVAL with a
 * message in *ret_error. */
int acl_add(Acl *acl, const char *entry, char **ret_error);
/* Add the addresses a member's api_url ("http://host:port/patroni") resolves to; -EINVAL when unusable. */
int acl_add_url_host(Acl *acl, const char *url);
void acl_clear(Acl *acl);
/* Is the address inside an entry? IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) match IPv4 entries. */
bool acl_match(const Acl *acl, const struct sockaddr *sa);
bool acl_match_text(const Acl *acl, const char *ip); /* the same for a textual address */

/* Equality that takes the same time whatever the position of the first difference (for credentials). */
bool ct_streq(const char *a, const char *b);

/* The facts about one request to an unsafe endpoint, and the configured requirements. */
typedef struct AccessRequest {
    bool allowlist_active; /* restapi.allowlist set, or allowlist_include_members */
    bool client_allowed;   /* the client address is in the allowlist (or a member's) */
    bool https;
    int verify_client; /* VerifyClient */
    bool client_cert_valid;
    const char *auth_username, *auth_password; /* restapi.authentication; NULL username: none */
    bool auth_header_present;                  /* an Authorization header was sent */
    const char *username, *password;           /* decoded Basic credentials, NULL when not Basic/malformed */
} AccessRequest;

/* 0 when the request may proceed, else the HTTP code (403, 401) with the body in *ret_reason:
 * "Access is denied", "client certificate required", "no auth header received", "not authenticated". */
int access_decide(const AccessRequest *r, const char **ret_reason);

/* restapi.server_tokens: "original" (default), "productonly", "minimal", case-insensitive; NULL when invalid. */
const char *server_header_value(const char *server_tokens);

/* TLS material for the daemon, read and checked at startup. */
typedef struct RestTls {
    char *cert, *key, *ca; /* PEM contents; key is the certfile's when keyfile is not set */
    char *key_password;
    char *priorities; /* restapi.ciphers (a GnuTLS priority string) or NULL */
} RestTls;

/* Read certfile/keyfile/cafile and check them with GnuTLS (key matches the certificate, the password
 * decrypts the key, the CA file has certificates, the priority string parses). 0, or -EINVAL with a
 * message naming the key and the file in *ret_error. */
int rest_tls_load(const PghaConfig *cfg, RestTls *ret, char **ret_error);
void rest_tls_free(RestTls *t);
/* Did the peer of a GnuTLS session (void *: gnutls_session_t) present a certificate that verifies
 * against the trusted CAs? */
bool rest_tls_peer_verified(void *gnutls_session);

/* ---- the server side (libmicrohttpd) ---- */

struct MHD_Connection;
struct MHD_Response;
struct MHD_OptionItem;

/* Everything of the security configuration the REST server needs, fixed at start. */
typedef struct RestSecurity {
    bool https;
    int verify_client; /* VerifyClient */
    Acl allowlist;
    bool allowlist_active; /* allowlist given or allowlist_include_members */
    bool include_members;
    char *auth_username, *auth_password;
    StrList extra_headers; /* name, value, name, value, ... (http_extra_headers, then https_extra_headers) */
    const char *server_header;
    RestTls tls;
} RestSecurity;

int rest_security_init(RestSecurity *sec, const PghaConfig *cfg, char **ret_error);
/* Only the settings a reload changes (allowlist, authentication, extra headers for a server with or
 * without TLS), no TLS material; and exchanging them between two RestSecurity. */
int rest_security_init_access(RestSecurity *sec, const PghaConfig *cfg, bool https, char **ret_error);
void rest_security_swap_access(RestSecurity *a, RestSecurity *b);
void rest_security_free(RestSecurity *sec);
/* Fill MHD options for TLS (terminated with MHD_OPTION_END; just the end without TLS). */
void rest_security_tls_options(const RestSecurity *sec, struct MHD_OptionItem *ops, size_t n);
/* The Server header and the extra headers of every normal response. sec may be NULL. */
void rest_security_add_headers(const RestSecurity *sec, struct MHD_Response *r);
/* false when verify_client is required and the client has no valid certificate. */
bool rest_security_client_cert_ok(const RestSecurity *sec, struct MHD_Connection *conn);
/* Whether allowlist_include_members applies to a request: not to POST /failsafe, which comes while the DCS is
 * unreachable and the members' addresses may be unknown (Patroni's allowlist_check_members=False): only the static
 * allowlist applies to it. */
bool rest_access_checks_members(const char *method, const char *url);
/* Access control of an unsafe request (spec §2.1): 0 when it may proceed, the code of a queued
 * response (403, 401), or -1 when queueing failed (close the connection). */
int rest_security_check(const RestSecurity *sec, Dcs *dcs, struct MHD_Connection *conn, const char *method,
                        const char *url);
