/* Addresses and names: host:port and `listen` parsing, member slot names, and the checks of the
 * host that `--validate-config` makes (listen ports free, binaries present, data_dir usable). */
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config_int.h"

/* ------------------------------------------------------------------------------------------ */
/* host:port, listen, slot names                                                               */

static int parse_port(const char *s, int *ret) {
    long long v;
    if (parse_ll(s, &v) < 0 || v < 1 || v > 65535)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

int parse_host_port(const char *s, int default_port, char **ret_host, int *ret_port) {
    if (!s || !*s)
        return -EINVAL;
    const char *colon;
    char *host;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return -EINVAL;
        host = xstrndup(s + 1, (size_t)(close - s - 1));
        colon = close[1] == ':' ? close + 1 : NULL;
        if (!colon && close[1] != '\0') {
            free(host);
            return -EINVAL;
        }
    } else {
        colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon) { /* bare IPv6 without brackets and without a port */
            colon = NULL;
            host = xstrdup(s);
        } else {
            host = colon ? xstrndup(s, (size_t)(colon - s)) : xstrdup(s);
        }
    }
    int port = default_port;
    if (colon && parse_port(colon + 1, &port) < 0) {
        free(host);
        return -EINVAL;
    }
    if (port < 0 || strpbrk(host, " \t/,")) {
        free(host);
        return -EINVAL;
    }
    *ret_host = host;
    *ret_port = port;
    return 0;
}

int parse_listen(const char *s, StrList *ret_addresses, int *ret_port) {
    if (!s || !*s)
        return -EINVAL;
    const char *colon = strrchr(s, ':');
    const char *close = strrchr(s, ']');
    if (!colon || (close && colon < close))
        return -EINVAL;
    int port;
    if (parse_port(colon + 1, &port) < 0)
        return -EINVAL;
    _cleanup_free_ char *addrs = xstrndup(s, (size_t)(colon - s));
    StrList l = {0};
    char *save = NULL;
    for (char *tok = strtok_r(addrs, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        str_trim(tok);
        size_t len = strlen(tok);
        if (len >= 2 && tok[0] == '[' && tok[len - 1] == ']') {
            tok[len - 1] = '\0';
            tok++;
        }
        if (!*tok || strpbrk(tok, " \t/")) {
            strlist_clear(&l);
            return -EINVAL;
        }
        strlist_add(&l, tok);
    }
    if (l.n == 0)
        strlist_add(&l, "*");
    *ret_addresses = l;
    *ret_port = port;
    return 0;
}

char *slot_name_from_member_name(const char *name) {
    StrBuf b;
    sb_init(&b);
    /* decode UTF-8 so that a non-ASCII character becomes one code point */
    const unsigned char *p = (const unsigned char *)name;
    while (*p) {
        unsigned cp = *p;
        int extra = 0;
        if (cp >= 0xF0) {
            cp &= 0x07;
            extra = 3;
        } else if (cp >= 0xE0) {
            cp &= 0x0F;
            extra = 2;
        } else if (cp >= 0xC0) {
            cp &= 0x1F;
            extra = 1;
        }
        p++;
        for (int i = 0; i < extra && (*p & 0xC0) == 0x80; i++, p++)
            cp = (cp << 6) | (*p & 0x3F);
        if (cp < 128 && isupper((int)cp))
            cp = (unsigned)tolower((int)cp);
        if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9') || cp == '_')
            sb_addc(&b, (char)cp);
        else if (cp == '-' || cp == '.')
            sb_addc(&b, '_');
        else
            sb_addf(&b, "u%04u", cp);
    }
    char *s = sb_steal(&b);
    if (strlen(s) > 63)
        s[63] = '\0';
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* environment checks for --validate-config                                                    */

static void check_listen_port(const char *what, const char *host, int port, bool ignore_port, const YNode *where,
                              const char *src, CfgDiag *diag) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    const char *h = (!host || !*host || strcmp(host, "*") == 0) ? NULL : host;
    int r = getaddrinfo(h, portstr, &hints, &res);
    if (r != 0) {
        cfg_diag_error(diag, where, src, what, "cannot resolve '%s': %s", host, gai_strerror(r));
        return;
    }
    /* bind, never connect: validation sends no traffic anywhere */
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            if (errno == EADDRINUSE && !ignore_port)
                cfg_diag_error(diag, where, src, what, "port %d on '%s' is already in use", port, host ? host : "*");
            else if (errno == EADDRNOTAVAIL)
                cfg_diag_warn(diag, where, src, what, "address '%s' is not configured on this host", host);
        }
        close(fd);
        break;
    }
    freeaddrinfo(res);
}

void config_validate_environment(const PghaConfig *c, bool ignore_listen_port, CfgDiag *diag) {
    const char *src = c->source;
    if (c->restapi.listen) {
        _cleanup_free_ char *host = NULL;
        int port;
        if (parse_host_port(c->restapi.listen, -1, &host, &port) == 0)
            check_listen_port("restapi.listen", host, port, ignore_listen_port, NULL, src, diag);
    }
    if (c->postgresql.listen) {
        StrList addrs = {0};
        int port;
        if (parse_listen(c->postgresql.listen, &addrs, &port) == 0)
            for (size_t i = 0; i < addrs.n; i++)
                check_listen_port("postgresql.listen", addrs.v[i], port, ignore_listen_port, NULL, src, diag);
        strlist_clear(&addrs);
    }
    if (c->postgresql.bin_dir && *c->postgresql.bin_dir) {
        struct stat st;
        if (stat(c->postgresql.bin_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
            cfg_diag_warn(diag, NULL, src, "postgresql.bin_dir", "directory '%s' does not exist on this host",
                          c->postgresql.bin_dir);
        } else {
            const char *bins[] = {c->postgresql.bin_name.pg_ctl,         c->postgresql.bin_name.initdb,
                                  c->postgresql.bin_name.pg_controldata, c->postgresql.bin_name.pg_basebackup,
                                  c->postgresql.bin_name.postgres,       c->postgresql.bin_name.pg_isready,
                                  c->postgresql.bin_name.pg_rewind};
            for (size_t i = 0; i < ELEMENTSOF(bins); i++) {
                _cleanup_free_ char *p = xasprintf("%s/%s", c->postgresql.bin_dir, bins[i]);
                if (access(p, X_OK) < 0)
                    cfg_diag_warn(diag, NULL, src, "postgresql.bin_dir", "'%s' is missing or not executable", p);
            }
        }
    }
    if (c->postgresql.data_dir) {
        struct stat st;
        if (stat(c->postgresql.data_dir, &st) == 0 && !S_ISDIR(st.st_mode))
            cfg_diag_error(diag, NULL, src, "postgresql.data_dir", "'%s' exists and is not a directory",
                           c->postgresql.data_dir);
    }
}
