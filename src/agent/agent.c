#include "agent/agent.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <pthread.h>

#include "common/sdnotify.h"

void agent_log_settings(const PghaConfig *cfg, LogSettings *ret) {
    *ret = (LogSettings){.level = LOG_INFO, .file_num = -1, .mode = -1};
    ret->json = streq(cfg->log.type, "json");
    LogLevel l;
    if (cfg->log.level && log_level_from_string(cfg->log.level, &l) == 0)
        ret->level = l;
    ret->dateformat = cfg->log.dateformat;
    ret->dir = cfg->log.dir;
    ret->file_size = cfg->log.file_size;
    ret->file_num = (int)cfg->log.file_num;
    ret->mode = config_is_set(cfg, "log.mode") ? (int)cfg->log.mode : -1;
    if (cfg->log.format && cfg->log.format->type == Y_STR)
        ret->format = cfg->log.format->text;
    /* json formats (lists/maps) are converted by the caller, see apply_logging() */
}

static void apply_logging(const PghaConfig *cfg) {
    LogSettings s;
    agent_log_settings(cfg, &s);
    cJSON *fmt = NULL, *fields = NULL;
    if (cfg->log.format && cfg->log.format->type != Y_STR)
        fmt = ynode_to_json(cfg->log.format);
    if (cfg->log.static_fields)
        fields = ynode_to_json(cfg->log.static_fields);
    s.format_json = fmt;
    s.static_fields = fields;
    (void)log_configure(&s);
    cJSON_Delete(fmt);
    cJSON_Delete(fields);
}

int agent_init(Agent *a, const char *config_path) {
    *a = (Agent){.signal_fd = -1};
    cfg_source_init(&a->source, config_path, NULL, NULL);
    cfg_source_unset_env(&a->source); /* Patroni does not let them leak to PostgreSQL either */
    CfgDiag diag = {0};
    int r = config_load(&a->source, &a->cfg, &diag);
    cfg_diag_log(&diag);
    cfg_diag_clear(&diag);
    if (r < 0) {
        log_critical("invalid configuration in %s; not starting", config_path ? config_path : "the environment");
        return r;
    }
    apply_logging(&a->cfg);
    return 0;
}

int agent_reload(Agent *a) {
    log_info("Reloading configuration from %s", a->source.path ? a->source.path : "the environment");
    sdn_reloading();
    PghaConfig next;
    CfgDiag diag = {0};
    int r = config_load(&a->source, &next, &diag);
    cfg_diag_log(&diag);
    cfg_diag_clear(&diag);
    if (r < 0) {
        log_error("new configuration is invalid; keeping the running configuration");
        config_free(&next);
        a->failed_reloads++;
        sdn_ready("configuration reload failed; running with the previous configuration");
        return r;
    }
    CfgChange *changes = NULL;
    size_t n = config_diff(&a->cfg, &next, &changes);
    bool restart = false;
    for (size_t i = 0; i < n; i++) {
        log_info("configuration changed: %s: %s -> %s%s", changes[i].path, changes[i].old_value, changes[i].new_value,
                 changes[i].needs_restart ? " (takes effect after a restart of pgha)" : "");
        restart |= changes[i].needs_restart;
    }
    if (n == 0)
        log_info("configuration reloaded, nothing changed");
    config_changes_free(changes, n);
    if (restart) {
        log_warning("some changes need a restart of pgha; they stay inactive until then");
        config_keep_restart_values(&next, &a->cfg);
    }
    /* the REST server first: when it cannot move (address in use, a bad certificate) it keeps running as it
     * is, and the member key goes on advertising the address it answers on */
    if (a->on_reload && a->on_reload(a->on_reload_ctx, &next) < 0) {
        log_warning("the REST API keeps its previous listen address and TLS settings");
        config_keep_restapi_values(&next, &a->cfg);
    }
    config_free(&a->cfg);
    a->cfg = next;
    apply_logging(&a->cfg);
    a->reloads++;
    sdn_ready(NULL);
    return 0;
}

void agent_done(Agent *a) {
    if (a->signal_fd >= 0)
        close(a->signal_fd);
    config_free(&a->cfg);
    cfg_source_free(&a->source);
    a->signal_fd = -1;
}

static int setup_signals(Agent *a) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    a->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (a->signal_fd < 0)
        return -errno;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int agent_setup_signals(Agent *a) {
    int r = setup_signals(a);
    if (r < 0)
        log_critical("cannot set up signal handling: %s", strerror(-r));
    return r;
}

/* ---- command line ---- */

static void usage(FILE *f) {
    fprintf(f,
            "Usage: pgha [OPTIONS] CONFIG\n"
            "\n"
            "PostgreSQL high-availability agent, a drop-in replacement for Patroni %s.\n"
            "CONFIG is a patroni.yml file, or a directory of *.yml/*.yaml files merged in order.\n"
            "Without CONFIG the configuration comes from PATRONI_CONFIGURATION or PATRONI_* variables.\n"
            "\n"
            "Options:\n"
            "  --validate-config      check the configuration and exit (0: valid, 1: errors)\n"
            "  --ignore-listen-port   with --validate-config: do not fail when a listen port is in use\n"
            "  --print                with --validate-config: also print the effective configuration\n"
            "  --print-config         print the effective configuration (secrets masked) and exit\n"
            "  --show-secrets         with --print/--print-config: do not mask passwords\n"
            "  --version              print the version and exit\n"
            "  -h, --help             show this help and exit\n",
            PGHA_PATRONI_VERSION);
}

int pgha_main(int argc, char **argv, int (*run)(Agent *a)) {
    enum { OPT_VALIDATE = 256, OPT_IGNORE_PORT, OPT_PRINT, OPT_PRINT_CONFIG, OPT_SHOW_SECRETS, OPT_VERSION };
    static const struct option opts[] = {
        {"validate-config", no_argument, NULL, OPT_VALIDATE},
        {"ignore-listen-port", no_argument, NULL, OPT_IGNORE_PORT},
        {"print", no_argument, NULL, OPT_PRINT},
        {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
        {"show-secrets", no_argument, NULL, OPT_SHOW_SECRETS},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    bool validate = false, ignore_port = false, print = false, print_config = false, secrets = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_VALIDATE: validate = true; break;
        case OPT_IGNORE_PORT: ignore_port = true; break;
        case OPT_PRINT: print = true; break;
        case OPT_PRINT_CONFIG: print_config = true; break;
        case OPT_SHOW_SECRETS: secrets = true; break;
        case OPT_VERSION: printf("pgha %s (Patroni %s compatible)\n", PGHA_VERSION, PGHA_PATRONI_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "pgha: too many arguments\n");
        usage(stderr);
        return 2;
    }
    const char *path = optind < argc ? argv[optind] : NULL;

    if (validate || print_config) {
        CfgSource src;
        cfg_source_init(&src, path, NULL, NULL);
        PghaConfig cfg;
        CfgDiag diag = {0};
        int r = config_load(&src, &cfg, &diag);
        if (r == 0 && validate)
            config_validate_environment(&cfg, ignore_port, &diag);
        for (size_t i = 0; i < diag.warnings.n; i++)
            fprintf(stderr, "WARNING: %s\n", diag.warnings.v[i]);
        for (size_t i = 0; i < diag.errors.n; i++)
            fprintf(stderr, "ERROR: %s\n", diag.errors.v[i]);
        bool ok = diag.errors.n == 0;
        if (ok && (print || print_config)) {
            char *dump = config_dump(&cfg, secrets);
            fputs(dump, stdout);
            free(dump);
        }
        if (validate)
            fprintf(ok ? stdout : stderr, "%s: configuration is %s\n", path ? path : "environment",
                    ok ? "valid" : "invalid");
        cfg_diag_clear(&diag);
        config_free(&cfg);
        cfg_source_free(&src);
        return ok ? 0 : 1;
    }

    Agent a;
    int r = agent_init(&a, path);
    if (r < 0) {
        agent_done(&a);
        return 1;
    }
    int code = agent_setup_signals(&a) < 0 ? 1 : run(&a);
    agent_done(&a);
    return code;
}
