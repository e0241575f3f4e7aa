/* libcurl's global initialisation, once per process, for every user of libcurl (etcd client, peer
 * probes, pgha-ctl). */
#pragma once

void pgha_curl_global_init(void);
