/* A YAML document as a tree of nodes that remember where they came from (file, line), with
 * scalars resolved exactly as PyYAML's safe_load resolves them (YAML 1.1: `on`/`off`/`yes`/`True`
 * are booleans, `0777` is octal, `1_000` is 1000, `5GB` is a string), because patroni.yml files
 * are written against that behaviour. Parsing is libyaml's; this module only builds the tree. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct cJSON cJSON;

typedef enum YType {
    Y_NULL,
    Y_BOOL,
    Y_INT,
    Y_FLOAT,
    Y_STR,
    Y_MAP,
    Y_SEQ,
} YType;

typedef struct YNode YNode;
struct YNode {
    YType type;
    char *text;    /* scalars: the source text (for Y_STR the value); NULL for collections */
    bool quoted;   /* scalar was quoted or a block scalar */
    bool b;        /* Y_BOOL */
    long long i;   /* Y_INT */
    double d;      /* Y_FLOAT */
    char *file;    /* where it was defined: a path, or e.g. "environment variable PATRONI_NAME" */
    int line;      /* 1-based, 0 when unknown */
    size_t n;      /* children of Y_MAP / Y_SEQ */
    char **keys;   /* Y_MAP keys (strings) */
    YNode **items; /* children */
};

const char *ytype_name(YType t);

/* Parse YAML text. On error returns NULL and sets *ret_error to a message naming file and line. */
YNode *yaml_parse_string(const char *text, size_t len, const char *filename, char **ret_error);
YNode *yaml_parse_file(const char *path, char **ret_error);

YNode *ynode_new(YType type, const char *file, int line);
YNode *ynode_new_str(const char *s, const char *file, int line);
YNode *ynode_new_int(long long v, const char *file, int line);
YNode *ynode_new_bool(bool v, const char *file, int line);
/* A plain (unquoted) scalar resolved as PyYAML would. */
YNode *ynode_new_scalar(const char *text, bool quoted, const char *file, int line);
YNode *ynode_clone(const YNode *n);
YNode *ynode_free(YNode *n);

YNode *ynode_get(const YNode *map, const char *key);
YNode *ynode_get_path(const YNode *root, const char *dotted); /* "a.b.c" through maps */
/* Insert or replace (takes ownership of val). */
void ynode_set(YNode *map, const char *key, YNode *val);
void ynode_append(YNode *seq, YNode *val);
bool ynode_remove(YNode *map, const char *key);

/* Deep merge src into dst (both maps): nested maps merge, a null in src deletes the key,
 * everything else replaces. src is not modified. */
void ynode_merge(YNode *dst, const YNode *src);

bool ynode_is_scalar(const YNode *n);
/* Python's truth value of a YAML value (Patroni's `if value`): null, false, 0, 0.0, "" and empty collections are
 * false; a non-empty string is true, whatever it says. */
bool ynode_truthy(const YNode *v);
/* The scalar's value as Python's str() would print it for ints/bools/floats, or the string. */
char *ynode_scalar_string(const YNode *n);
bool ynode_equal(const YNode *a, const YNode *b);

/* JSON conversion. Integers and floats are emitted as raw numbers so that 64-bit values and
 * Python's float repr survive (json.dumps compatibility). */
cJSON *ynode_to_json(const YNode *n);
YNode *ynode_from_json(const cJSON *j, const char *file);

/* Python's repr() of a float: shortest round-trip form, "1.0", "1e+16". */
void py_float_repr(double d, char *buf, size_t len);
