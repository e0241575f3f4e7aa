/* Private to the configuration code (src/common/config*.c), not for use elsewhere: the declarative
 * tables, the value conversions and the diagnostics the files share.
 *
 *   config.c           loading (file, directory, PATRONI_CONFIGURATION), dump, diff on reload
 *   config_table.c     the tables (local and dynamic) and applying one to a YAML tree
 *   config_value.c     the value types: converting a node, freeing, rendering for dump and diff
 *   config_validate.c  diagnostics, the timing rule, the rules across keys of the local config
 *   config_dynamic.c   the dynamic configuration (DynConfig)
 *   config_hosts.c     host:port and listen parsing, member slot names, --validate-config checks
 *   config_env.c       PATRONI_* / PGHA_* environment overrides */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"

/* ------------------------------------------------------------------------------------------ */
/* diagnostics (config_validate.c)                                                             */

/* One message into d->errors / d->warnings, as "file:line: path: message": the location is
 * `where`'s, or `src` when `where` has none; `path` (or NULL) is the key's dotted path. */
void cfg_diag_error(CfgDiag *d, const YNode *where, const char *src, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void cfg_diag_warn(CfgDiag *d, const YNode *where, const char *src, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ------------------------------------------------------------------------------------------ */
/* the declarative tables (config_table.c)                                                     */

typedef enum CfgType {
    CT_SECTION, /* a mapping that holds other entries */
    CT_STR,
    CT_INT,
    CT_BOOL,
    CT_STRLIST,  /* list of scalars, or one comma-separated string */
    CT_MAP,      /* raw mapping kept as a YNode */
    CT_LIST,     /* raw list kept as a YNode */
    CT_ANY,      /* raw value of any shape */
    CT_DURATION, /* seconds: an integer or "30min", "2h", "90s", "1d" */
    CT_SYNCMODE,
    CT_WATCHDOG,
    CT_ENUM, /* a string among `choices` */
} CfgType;

enum {
    CF_REQUIRED = 1 << 0,
    CF_SECRET = 1 << 1,
    CF_RESTART = 1 << 2,  /* a change needs a pgha restart */
    CF_HOSTPORT = 1 << 3, /* host:port */
    CF_LISTEN = 1 << 4,   /* addr[,addr...]:port */
    CF_NOWARN = 1 << 5,   /* accepted and ignored (an implementation detail of Patroni) */
    CF_INDEX = 1 << 6,    /* CT_ENUM stored as the int index into choices, not as a string */
    CF_RESTAPI = 1 << 7,  /* the REST server's socket or TLS: a reload starts a new server (rest_reload) */
};

typedef struct CfgEntry {
    const char *path;
    CfgType type;
    size_t offset;      /* of the value in PghaConfig / DynConfig, or NO_OFFSET */
    const char *def;    /* default, parsed like a YAML plain scalar; NULL: absent */
    long long min, max; /* CT_INT / CT_DURATION bounds (min > max: unbounded) */
    unsigned flags;
    const char *const *choices;
    const char *alias; /* legacy name accepted when `path` is absent */
} CfgEntry;

#define NO_OFFSET ((size_t)-1)

typedef struct CfgTable {
    const CfgEntry *v;
    size_t n;
} CfgTable;

extern const CfgTable cfg_local; /* PghaConfig: patroni.yml; present[] is PghaConfig.present */
extern const CfgTable cfg_dyn;   /* DynConfig: /config or bootstrap.dcs; present[] is DynConfig.present */

/* Apply a table: defaults for absent keys, conversion and validation for present ones.
 * `prefix` (or NULL) is where `root` sits in the file, for messages. */
void cfg_apply_table(const CfgTable *t, const YNode *root, const char *prefix, void *base, bool *present,
                     const char *src, CfgDiag *diag);

/* Warn about keys of `root` no entry knows. `allowed(path, root)` may accept extra keys (custom
 * sections); `display_prefix` (or NULL) is where `root` sits in the file. */
typedef bool (*AllowFn)(const char *path, const YNode *root);
void cfg_warn_unknown(const CfgTable *t, const YNode *root, const char *display_prefix, AllowFn allowed,
                      const char *src, CfgDiag *diag);

bool cfg_table_is_set(const CfgTable *t, const bool *present, const char *path);
void cfg_table_free(const CfgTable *t, void *base);

/* ------------------------------------------------------------------------------------------ */
/* values (config_value.c)                                                                     */

#define CFG_SECRET_MASK "********" /* a secret's value in the dump and the diff */

/* The node's type with its article, for "got %s". */
const char *cfg_describe(const YNode *n);

/* Set one entry from a node. Returns false (and records an error) when the value is invalid. */
bool cfg_set_value(const CfgEntry *e, void *base, const YNode *n, const char *src, CfgDiag *diag);
void cfg_free_value(const CfgEntry *e, void *base);
/* The value as one line of text (dump, diff), or NULL when it has none. A secret shows as
 * CFG_SECRET_MASK unless show_secrets. */
char *cfg_value_string(const CfgEntry *e, const void *base, bool present, bool show_secrets);

/* ------------------------------------------------------------------------------------------ */
/* rules across keys (config_validate.c)                                                       */

/* Patroni's minimums and the rule loop_wait + 2*retry_timeout <= ttl, applied in place (with the
 * shorter minimums of pgha.allow_short_ttl when short_ttl); the warnings name `where`/`src`/`path`
 * when given. */
void cfg_adjust_timeouts(const YNode *where, const char *src, const char *path, long long *ttl, long long *loop_wait,
                         long long *retry_timeout, bool short_ttl, CfgDiag *diag);

/* The keys of patroni.yml the table does not list but that are not unknown either. */
bool cfg_local_allowed(const char *path, const YNode *root);

/* After the table: the rules across keys, the values derived from others (rewind credentials,
 * config_dir, ...), the custom method sections and bootstrap.dcs. */
void cfg_post_process(const YNode *root, PghaConfig *c, const char *src, CfgDiag *diag);

/* ------------------------------------------------------------------------------------------ */
/* the dynamic configuration (config_dynamic.c)                                                */

/* dyn_config_parse_ex for an object at `prefix` in a file (bootstrap.dcs), or NULL for /config. */
int cfg_dyn_parse_at(const YNode *obj, const char *prefix, bool short_ttl, DynConfig *ret, CfgDiag *diag);
