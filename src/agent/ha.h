/* The HA loop (DESIGN.md): one thread that observes (DCS cache, local PostgreSQL, peers when the
 * cluster is unlocked), calls decide(), carries the decision out, publishes a snapshot and
 * touches the member key. It sleeps until loop_wait has passed or something wakes it: a watch
 * event, the postmaster exiting (pidfd), a signal. */
#pragma once

#include "agent/agent.h"

int ha_run(Agent *a);
