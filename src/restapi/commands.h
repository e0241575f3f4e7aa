/* The command endpoints (spec §2.5-2.7): POST/DELETE /switchover, POST /failover, PATCH/PUT /config,
 * POST /reload. The request is validated as far as it can be without the cluster, then handed to the
 * HA loop through its command queue; the answer is the loop's. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/commands.h"
#include "agent/snapshot.h"
#include "dcs/dcs.h"

typedef struct RestReply {
    unsigned code;
    char *body;               /* owned; NULL with error_page */
    const char *content_type; /* for body */
    bool error_page;          /* Python's send_error(code) */
    bool close;               /* close the connection without an answer */
    long long lsn;            /* > 0: an `lsn` response header (POST /failsafe) */
} RestReply;

/* POST /failsafe (spec §2.8) for the snapshot s (NULL: none published yet): 502 without failsafe_mode; 500
 * "Running as a leader" on a running primary; else the sender is recorded for the HA loop (no wait for it)
 * and the answer is 200 "Accepted" with our WAL position in the lsn header. */
void rest_failsafe_post(CommandQueue *q, const Snapshot *s, const char *body, size_t len, bool has_length,
                        RestReply *r);

/* Runs in a thread of its own (it may wait for minutes); stopping ends a wait for a switchover's outcome.
 * false when method and path are not a command endpoint (the caller answers 501). */
/* probe_cfg: the fields of the configuration a probe of the members uses (probe_config_dup). */
bool rest_command(CommandQueue *q, Dcs *dcs, const PghaConfig *probe_cfg, const _Atomic bool *stopping,
                  const char *method, const char *url, const char *body, size_t len, bool has_length, RestReply *ret);
