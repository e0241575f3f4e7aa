/* JSON output exactly as Python's json.dumps writes it (Patroni's wire format): ASCII-only with
 * \uXXXX escapes, integers printed exactly, floats as repr(); compact (`,` `:`) for the DCS,
 * spaced (`, ` `: `) for the REST API. Parsing is cJSON's. */
#pragma once

#include <stdbool.h>

#include "common/util.h"

typedef struct cJSON cJSON;

void json_add_string(StrBuf *b, const char *s);
void json_add_value(StrBuf *b, const cJSON *v, bool spaced);
char *json_dumps(const cJSON *v, bool spaced);

/* Parse a whole JSON text as Python's json.loads accepts it (NULL when invalid, including trailing data
 * after the value). Integer literals beyond 2^53 (within int64) become raw number items carrying the
 * literal, so that json_item_ll() and json_dumps() keep them exact. */
cJSON *json_parse(const char *s);

/* Lookups that tolerate a missing or wrongly typed field (return false / NULL). */
const char *json_get_string(const cJSON *obj, const char *key);
bool json_get_ll(const cJSON *obj, const char *key, long long *ret);
bool json_get_bool(const cJSON *obj, const char *key, bool *ret);
/* An int64 sent as a JSON string (etcd's gateway) or a number. */
bool json_get_i64str(const cJSON *obj, const char *key, long long *ret);
/* Integer value of a number item (exact for raw numbers). */
bool json_item_ll(const cJSON *item, long long *ret);
