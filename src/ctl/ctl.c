#include "ctl/ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "common/config.h"
#include "common/util.h"

#define DEFAULT_CTL_CONFIG "~/.config/patroni/patronictl.yaml"

static void usage(FILE *f) {
    fprintf(f,
            "Usage: pgha-ctl [OPTIONS] COMMAND [ARGS]...\n"
            "\n"
            "Command-line interface for a pgha/Patroni cluster (mirrors patronictl).\n"
            "\n"
            "Options:\n"
            "  -c, --config-file PATH   configuration file (default: $PATRONICTL_CONFIG_FILE or\n"
            "                           " DEFAULT_CTL_CONFIG ")\n"
            "  --version                print the version and exit\n"
            "  -h, --help               show this help and exit\n"
            "\n"
            "Commands:\n"
            "  version                  print the version\n");
}

int ctl_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config-file", required_argument, NULL, 'c'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *config_file = getenv("PATRONICTL_CONFIG_FILE");
    int c;
    while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_file = optarg; break;
        case 'V': printf("pgha-ctl version %s (Patroni %s compatible)\n", PGHA_VERSION, PGHA_PATRONI_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    (void)config_file;
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    if (strcmp(cmd, "version") == 0) {
        printf("pgha-ctl version %s (Patroni %s compatible)\n", PGHA_VERSION, PGHA_PATRONI_VERSION);
        return 0;
    }
    fprintf(stderr, "pgha-ctl: unknown command '%s' (see pgha-ctl --help)\n", cmd);
    return 2;
}
