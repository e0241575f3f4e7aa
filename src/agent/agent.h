/* The pgha daemon: configuration lifecycle (load, SIGHUP reload with validate-then-swap),
 * logging setup, signals and systemd notifications around the HA loop. */
#pragma once

#include "common/config.h"
#include "common/log.h"

typedef struct Agent {
    CfgSource source;
    PghaConfig cfg;
    int signal_fd;
    bool stopping;
    unsigned reloads;        /* successful reloads */
    unsigned failed_reloads; /* reloads rejected, old configuration kept */
    /* Called on a successful reload with the new configuration before it is swapped in (main.c: the REST
     * server, which may start a new daemon), or NULL. < 0: the REST server could not take the new listen
     * address or TLS settings and kept its own: the running values of those keys are kept (CF_RESTAPI). */
    int (*on_reload)(void *ctx, const PghaConfig *cfg);
    void *on_reload_ctx;
} Agent;

/* Fill log settings from a configuration (pointers borrow from cfg). */
void agent_log_settings(const PghaConfig *cfg, LogSettings *ret);

/* Load the configuration at startup: 0, or -EINVAL with the reasons logged. */
int agent_init(Agent *a, const char *config_path);
/* Re-read the configuration: on success swap it in and log what changed; on any error keep
 * the running configuration and log why. Returns 0 or -EINVAL. */
int agent_reload(Agent *a);
/* Block SIGHUP/SIGTERM/SIGINT/SIGQUIT and read them from a->signal_fd. 0 or -errno (logged). */
int agent_setup_signals(Agent *a);
void agent_done(Agent *a);

/* The pgha command line: --validate-config, --print-config, ... or, for the daemon, load the
 * configuration, set up signals and call run(). */
int pgha_main(int argc, char **argv, int (*run)(Agent *a));
