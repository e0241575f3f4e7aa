/* Asking the other members how they are (GET <api_url> during the leader race, spec §4.5): all
 * in parallel, 2 s timeout, no retries. */
#pragma once

#include <curl/curl.h>

#include "agent/decide.h"
#include "common/config.h"
#include "dcs/cluster.h"

/* Probe every member of `c` (and of `also`, when not already in c) except `me` that has an
 * api_url. Returns an array (names point into the clusters) and its length in *ret_n. */
PeerStatus *probe_members(const Cluster *c, const Cluster *also, const char *me, const PghaConfig *cfg, long timeout_ms,
                          size_t *ret_n);
/* The same, and the members of `extra` (an object name -> api_url: the /failsafe key) not already probed. */
PeerStatus *probe_members_with(const Cluster *c, const Cluster *also, const cJSON *extra, const char *me,
                               const PghaConfig *cfg, long timeout_ms, size_t *ret_n);
/* A copy of the fields of cfg a probe uses (the rest zeroed), for a thread that may not read the
 * agent's configuration while a reload replaces it; probe_config_free() releases it. */
PghaConfig *probe_config_dup(const PghaConfig *cfg);
void probe_config_free(PghaConfig *p);
/* Does a REST API answer at api_url's /liveness (the duplicate-name check at start-up)? *ret_url: the
 * URL asked (caller frees). */
bool probe_liveness(const char *api_url, const PghaConfig *cfg, long timeout_ms, char **ret_url);
/* One client for every request to another member's REST API (the probes here, pgha-ctl): the
 * ctl/restapi credentials and TLS settings (ctl.insecure, cacert, certfile, keyfile, keyfile_password),
 * a total and a connect timeout (timeout_ms; 0: none), the answer's body into *body (at most 1 MiB). */
CURL *probe_new_handle(const char *url, const PghaConfig *cfg, long timeout_ms, StrBuf *body);
/* Parse one /patroni answer into a PeerStatus (exposed for tests). */
void probe_parse(const char *body, PeerStatus *p);
