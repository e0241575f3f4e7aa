/* The HA loop (DESIGN.md): one thread that observes (DCS cache, local PostgreSQL, peers when a race
 * needs them), calls decide(), carries the decision out, publishes a snapshot and touches the member
 * key. The composition root (src/main.c) creates it, starts the REST server on what it exposes, and
 * runs it. */
#pragma once

#include "agent/agent.h"
#include "agent/commands.h"
#include "dcs/dcs.h"

typedef struct Ha Ha;

/* Check the PostgreSQL binaries and data directory, build the DCS client, wait for the DCS (until a
 * signal stops the agent), refuse a member name a live node already uses. NULL on failure, with the
 * process exit code in *ret_code. */
Ha *ha_new(Agent *a, int *ret_code);
/* The DCS client, for readers of its cache (the REST API). */
Dcs *ha_dcs(Ha *h);
/* The queue of commands for the loop (REST switchover, config, reload). */
CommandQueue *ha_commands(Ha *h);
/* Run until SIGTERM/SIGINT (or a fatal condition); stops PostgreSQL and releases the leader key as
 * Patroni does. Returns the process exit code. */
int ha_run(Ha *h);
Ha *ha_free(Ha *h);
