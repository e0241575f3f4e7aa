/* The etcd client's transport: libcurl handles (headers, TLS files, socket options) and one HTTP
 * exchange on them. What is sent where, and what an answer means, is decided by the callers. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dcs/etcd3_int.h"

typedef struct Body {
    StrBuf buf;
    bool overflow;
} Body;

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud) {
    Body *b = ud;
    size_t n = size * nmemb;
    if (b->buf.len + n > MAX_RESPONSE) {
        b->overflow = true;
        return 0;
    }
    sb_addn(&b->buf, ptr, n);
    return n;
}

/* TCP keepalive as Patroni sets it on etcd sockets (spec §1.4). */
static int sockopt_cb(void *ud, curl_socket_t fd, curlsocktype purpose) {
    Dcs *d = ud;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKOPT_OK;
    int ttl = d->ttl, lw = d->loop_wait, rt = d->retry_timeout;
    int on = 1, idle = lw + rt, intvl = (ttl - idle) / 3, cnt = 3;
    unsigned user_timeout = (unsigned)ttl * 1000u;
    if (intvl < 1)
        intvl = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    return CURL_SOCKOPT_OK;
}

void etcd3_conn_prepare(Dcs *d, Conn *c, const char *token) {
    if (!c->curl)
        c->curl = curl_easy_init();
    if (!c->curl)
        abort();
    if (!c->headers || !streq(c->token_in_headers, token)) {
        curl_slist_free_all(c->headers);
        c->headers = curl_slist_append(NULL, "Content-Type: application/json");
        c->headers = curl_slist_append(c->headers, "Expect:");
        if (token) {
            _cleanup_free_ char *h = xasprintf("authorization: %s", token);
            c->headers = curl_slist_append(c->headers, h);
        }
        free(c->token_in_headers);
        c->token_in_headers = xstrdup(token);
    }
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, d->user_agent);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
    curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, d);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (d->cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, d->cacert);
    if (d->cert)
        curl_easy_setopt(h, CURLOPT_SSLCERT, d->cert);
    if (d->key)
        curl_easy_setopt(h, CURLOPT_SSLKEY, d->key);
}

void etcd3_conn_free(Conn *c) {
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    free(c->token_in_headers);
    *c = (Conn){0};
}

CURLcode etcd3_http_perform(Dcs *d, Conn *c, const char *url, const char *body, long timeout_ms, long connect_ms,
                            curl_write_callback write_fn, void *write_data, char *curl_err) {
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_fn);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, write_data);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    d->st_requests++;
    if (body)
        d->st_sent += strlen(body);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    return rc;
}

int etcd3_http_fetch(Dcs *d, Conn *c, const char *token, const char *endpoint, const char *path, const char *body,
                     long timeout_ms, cJSON **ret, long *ret_status, char *err, size_t errlen) {
    *ret = NULL;
    *ret_status = 0;
    etcd3_conn_prepare(d, c, token);
    _cleanup_free_ char *url = xasprintf("%s%s", endpoint, path);
    Body b = {0};
    sb_init(&b.buf);
    char curl_err[CURL_ERROR_SIZE] = "";
    usec_t began = now_monotonic();
    CURLcode rc = etcd3_http_perform(d, c, url, body, timeout_ms, timeout_ms, write_cb, &b, curl_err);
    d->st_request_usec += now_monotonic() - began;
    d->st_received += b.buf.len;
    if (rc != CURLE_OK) {
        d->st_request_errors++;
        const char *why = b.overflow ? "response larger than 64 MiB" : curl_err[0] ? curl_err : curl_easy_strerror(rc);
        snprintf(err, errlen, "%s: %s", endpoint, why);
        sb_free(&b.buf);
        return -1;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, ret_status);
    if (*ret_status >= 400)
        d->st_request_errors++;
    *ret = b.buf.s ? cJSON_ParseWithLength(b.buf.s, b.buf.len) : NULL;
    sb_free(&b.buf);
    return 0;
}
