/* Strict RFC 4648 base64 (etcd's JSON gateway encodes every key and value with it). */
#pragma once

#include <stddef.h>

char *base64_encode(const void *data, size_t len);
/* Returns a NUL-terminated buffer (the NUL is not counted in *ret_len), or NULL when the input
 * is not valid base64. */
char *base64_decode(const char *s, size_t *ret_len);
