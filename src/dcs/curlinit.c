#include "dcs/curlinit.h"

#include <curl/curl.h>
#include <pthread.h>
#ifdef PGHA_HAVE_LIBSSH2
#include <libssh2.h>
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void) {
#ifdef PGHA_HAVE_LIBSSH2
    /* curl_global_init() initialises libssh2 (for scp:// and sftp:// URLs, which pgha never uses:
     * every handle is limited to http and https), and libssh2 initialises OpenSSL's engines and
     * algorithm tables, about 1.5 MB of resident memory in an agent whose TLS (etcd, peers) goes
     * through GnuTLS. Initialising libssh2 first without its crypto makes curl's call a reference
     * count; OpenSSL 3 initialises itself on first use anyway. */
    (void)libssh2_init(LIBSSH2_INIT_NO_CRYPTO);
#endif
    (void)curl_global_init(CURL_GLOBAL_DEFAULT);
}

void pgha_curl_global_init(void) { pthread_once(&once, init); }
