/* pgha's composition root: the agent (HA loop) and the REST API meet only here. The REST server reads
 * the snapshot the agent publishes and the DCS client's cache; the agent does not know it exists. */
#include "agent/agent.h"
#include "agent/ha.h"
#include "common/sdnotify.h"
#include "restapi/restapi.h"

static int rest_on_reload(void *ctx, const PghaConfig *cfg) { return rest_reload(ctx, cfg); }

static int run_daemon(Agent *a) {
    int code = 1;
    /* the systemd watchdog during the start (DCS connection, the first reads): as long as a cycle may
     * take; ha_run() takes the promises over */
    const DynConfig *d = &a->cfg.bootstrap.dyn;
    sdn_watchdog_alive_until(now_monotonic() + (usec_t)(d->loop_wait + 2 * d->retry_timeout + 5) * USEC_PER_SEC);
    if (sdn_watchdog_start() < 0)
        log_warning("cannot start the systemd watchdog thread: systemd may restart the agent");
    Ha *h = ha_new(a, &code);
    if (!h) {
        sdn_watchdog_stop();
        return code;
    }
    char *err = NULL;
    RestServer *rest = rest_start(&a->cfg, ha_dcs(h), ha_commands(h), &err);
    if (!rest) {
        log_critical("REST API: %s", err);
        free(err);
        ha_free(h);
        sdn_watchdog_stop();
        return 1;
    }
    a->on_reload = rest_on_reload;
    a->on_reload_ctx = rest;
    code = ha_run(h);
    a->on_reload = NULL;
    rest_stop(rest);
    ha_free(h);
    sdn_watchdog_stop();
    return code;
}

int main(int argc, char **argv) { return pgha_main(argc, argv, run_daemon); }
