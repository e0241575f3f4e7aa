/* bench/rest's baseline: libmicrohttpd started with pgha's options (src/restapi/server.c: internal polling
 * thread, epoll, a pool of 2 threads, 32 KiB per connection, 512 connections, the listen backlog of
 * restapi.request_queue_size) whose handler answers every request with a fixed body (pgha's own /primary
 * answer, read from a file) and no other work. What wrk measures against it on this machine is the floor
 * that libmicrohttpd, the kernel and the machine set; the difference to pgha is pgha's handler.
 *
 *   mhd_baseline PORT BODY_FILE BACKLOG      (serves 127.0.0.1:PORT until SIGTERM)
 *
 * Not part of pgha; built by bench/rest/run.py --baseline (cc -O2 ... -lmicrohttpd). */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *body;
static size_t body_len;

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    static int marker;
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    if (*con_cls == NULL) {
        *con_cls = &marker;
        return MHD_YES;
    }
    *upload_data_size = 0;
    /* like pgha: a fresh buffer per response, freed by libmicrohttpd */
    char *copy = malloc(body_len);
    if (!copy)
        return MHD_NO;
    memcpy(copy, body, body_len);
    struct MHD_Response *r = MHD_create_response_from_buffer(body_len, copy, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(copy);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_SERVER, "mhd-baseline");
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return ret;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT BODY_FILE BACKLOG\n", argv[0]);
        return 2;
    }
    int port = (int)strtol(argv[1], NULL, 10);
    unsigned backlog = (unsigned)strtoul(argv[3], NULL, 10);
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    static char buf[1 << 20];
    body_len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    body = buf;

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG,
                                            (uint16_t)port, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR,
                                            (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2,
                                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                            (size_t)32 * 1024, MHD_OPTION_CONNECTION_LIMIT, 512u,
                                            MHD_OPTION_LISTEN_BACKLOG_SIZE, backlog, MHD_OPTION_LISTENING_ADDRESS_REUSE,
                                            1u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
