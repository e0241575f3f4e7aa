/* yamltree: YAML -> node tree with PyYAML (YAML 1.1) scalar resolution, anchors and merge keys,
 * errors that name file:line, deep merge, JSON output identical to Python's json.dumps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>

#include "common/yamltree.h"
#include "unit_helpers.h"

static YNode *parse_ok(const char *text) {
    char *err = NULL;
    YNode *n = yaml_parse_string(text, strlen(text), "t.yml", &err);
    if (!n)
        print_error("unexpected parse error: %s\n", err);
    assert_non_null(n);
    assert_null(err);
    return n;
}

static char *parse_err(const char *text) {
    char *err = NULL;
    YNode *n = yaml_parse_string(text, strlen(text), "t.yml", &err);
    assert_null(n);
    assert_non_null(err);
    return err;
}

static char *to_json(const YNode *n) {
    cJSON *j = ynode_to_json(n);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* ---- scalar resolution: the PyYAML table ---- */

typedef struct ScalarCase {
    const char *text;
    YType type;
    long long i; /* Y_INT, Y_BOOL (0/1) */
    double d;    /* Y_FLOAT */
} ScalarCase;

static const ScalarCase scalar_cases[] = {
    /* booleans: YAML 1.1's words, in the three spellings PyYAML accepts */
    {"on", Y_BOOL, 1, 0},
    {"On", Y_BOOL, 1, 0},
    {"ON", Y_BOOL, 1, 0},
    {"off", Y_BOOL, 0, 0},
    {"Off", Y_BOOL, 0, 0},
    {"OFF", Y_BOOL, 0, 0},
    {"yes", Y_BOOL, 1, 0},
    {"Yes", Y_BOOL, 1, 0},
    {"YES", Y_BOOL, 1, 0},
    {"no", Y_BOOL, 0, 0},
    {"No", Y_BOOL, 0, 0},
    {"NO", Y_BOOL, 0, 0},
    {"true", Y_BOOL, 1, 0},
    {"True", Y_BOOL, 1, 0},
    {"TRUE", Y_BOOL, 1, 0},
    {"false", Y_BOOL, 0, 0},
    {"False", Y_BOOL, 0, 0},
    {"FALSE", Y_BOOL, 0, 0},
    /* ... and not other spellings, nor YAML 1.1's y/n (PyYAML leaves those out) */
    {"tRue", Y_STR, 0, 0},
    {"oN", Y_STR, 0, 0},
    {"y", Y_STR, 0, 0},
    {"n", Y_STR, 0, 0},
    {"Y", Y_STR, 0, 0},
    {"enabled", Y_STR, 0, 0},

    /* integers */
    {"0", Y_INT, 0, 0},
    {"-0", Y_INT, 0, 0},
    {"+12", Y_INT, 12, 0},
    {"-17", Y_INT, -17, 0},
    {"800", Y_INT, 800, 0},
    {"2048576", Y_INT, 2048576, 0},
    {"0777", Y_INT, 0777, 0},
    {"-010", Y_INT, -8, 0},
    {"00", Y_INT, 0, 0},
    {"0x1f", Y_INT, 31, 0},
    {"0x1F", Y_INT, 31, 0},
    {"-0x10", Y_INT, -16, 0},
    {"0b101", Y_INT, 5, 0},
    {"1_000", Y_INT, 1000, 0},
    {"1_000_000", Y_INT, 1000000, 0},
    {"1:30", Y_INT, 90, 0},
    {"-1:30", Y_INT, -90, 0},
    {"1:30:00", Y_INT, 5400, 0},
    {"190:20:30", Y_INT, 685230, 0},
    {"9223372036854775807", Y_INT, 9223372036854775807LL, 0},
    {"-9223372036854775808", Y_INT, (-9223372036854775807LL - 1), 0},
    /* not integers: 8 is no octal digit, 60 is no sexagesimal digit */
    {"08", Y_STR, 0, 0},
    {"0779", Y_STR, 0, 0},
    {"1:60", Y_STR, 0, 0},
    {"0o17", Y_STR, 0, 0},
    {"0x", Y_STR, 0, 0},
    {"12abc", Y_STR, 0, 0},

    /* floats: PyYAML requires a dot, and a signed exponent */
    {"0.9", Y_FLOAT, 0, 0.9},
    {".5", Y_FLOAT, 0, 0.5},
    {"5.", Y_FLOAT, 0, 5.0},
    {"-1.5", Y_FLOAT, 0, -1.5},
    {"+2.25", Y_FLOAT, 0, 2.25},
    {"0.01", Y_FLOAT, 0, 0.01},
    {"1.5e-3", Y_FLOAT, 0, 0.0015},
    {"1.0e+5", Y_FLOAT, 0, 100000.0},
    {"1.5E+3", Y_FLOAT, 0, 1500.0},
    {"1_000.5", Y_FLOAT, 0, 1000.5},
    {"1:30.5", Y_FLOAT, 0, 90.5},
    {"1e5", Y_STR, 0, 0},
    {"1.0e5", Y_STR, 0, 0},
    {"1E+5", Y_STR, 0, 0},
    {"-.5", Y_STR, 0, 0},
    {"1.2.3", Y_STR, 0, 0},
    {"0.9.1", Y_STR, 0, 0},

    /* nulls */
    {"~", Y_NULL, 0, 0},
    {"null", Y_NULL, 0, 0},
    {"Null", Y_NULL, 0, 0},
    {"NULL", Y_NULL, 0, 0},
    {"", Y_NULL, 0, 0},
    {"nULL", Y_STR, 0, 0},
    {"None", Y_STR, 0, 0},

    /* strings that look like numbers to a human: PostgreSQL units */
    {"5GB", Y_STR, 0, 0},
    {"15min", Y_STR, 0, 0},
    {"218453kB", Y_STR, 0, 0},
    {"1800s", Y_STR, 0, 0},
    {"1d", Y_STR, 0, 0},
    {"10s", Y_STR, 0, 0},
    {"100M", Y_STR, 0, 0},
    {"192.168.2.96:8008", Y_STR, 0, 0},
    {"cd .", Y_STR, 0, 0},
    {"all", Y_STR, 0, 0},
};

static void test_scalar_resolution_table(void **state) {
    (void)state;
    for (size_t k = 0; k < ELEMENTSOF(scalar_cases); k++) {
        const ScalarCase *c = &scalar_cases[k];
        YNode *n = ynode_new_scalar(c->text, false, "t.yml", 1);
        if (n->type != c->type)
            print_error("'%s': got %s, expected %s\n", c->text, ytype_name(n->type), ytype_name(c->type));
        assert_int_equal(n->type, c->type);
        assert_string_equal(n->text, c->text); /* the source text is always kept */
        switch (c->type) {
        case Y_BOOL: assert_int_equal(n->b, c->i != 0); break;
        case Y_INT:
            if (n->i != c->i)
                print_error("'%s': got %lld, expected %lld\n", c->text, n->i, c->i);
            assert_true(n->i == c->i);
            break;
        case Y_FLOAT:
            if (n->d != c->d)
                print_error("'%s': got %.17g, expected %.17g\n", c->text, n->d, c->d);
            assert_true(n->d == c->d);
            break;
        default: break;
        }
        ynode_free(n);
    }
}

static void test_scalar_special_floats(void **state) {
    (void)state;
    const char *pos[] = {".inf", ".Inf", ".INF", "+.inf"};
    for (size_t i = 0; i < ELEMENTSOF(pos); i++) {
        YNode *n = ynode_new_scalar(pos[i], false, NULL, 0);
        assert_int_equal(n->type, Y_FLOAT);
        assert_true(isinf(n->d) && n->d > 0);
        ynode_free(n);
    }
    YNode *n = ynode_new_scalar("-.inf", false, NULL, 0);
    assert_int_equal(n->type, Y_FLOAT);
    assert_true(isinf(n->d) && n->d < 0);
    ynode_free(n);
    const char *nans[] = {".nan", ".NaN", ".NAN"};
    for (size_t i = 0; i < ELEMENTSOF(nans); i++) {
        n = ynode_new_scalar(nans[i], false, NULL, 0);
        assert_int_equal(n->type, Y_FLOAT);
        assert_true(isnan(n->d));
        ynode_free(n);
    }
    /* not floats */
    const char *strs[] = {"inf", "-.nan", ".infinity", "nan"};
    for (size_t i = 0; i < ELEMENTSOF(strs); i++) {
        n = ynode_new_scalar(strs[i], false, NULL, 0);
        assert_int_equal(n->type, Y_STR);
        ynode_free(n);
    }
}

static void test_quoted_scalars_stay_strings(void **state) {
    (void)state;
    YNode *root = parse_ok("a: '123456'\n"
                           "b: \"on\"\n"
                           "c: '0.9'\n"
                           "d: ''\n"
                           "e: \"~\"\n"
                           "f: |\n  123\n"
                           "g: >-\n  true\n"
                           "h: ! 42\n"
                           "i: 123456\n");
    const struct {
        const char *key, *value;
    } want[] = {{"a", "123456"}, {"b", "on"},    {"c", "0.9"},  {"d", ""},
                {"e", "~"},      {"f", "123\n"}, {"g", "true"}, {"h", "42"}};
    for (size_t i = 0; i < ELEMENTSOF(want); i++) {
        YNode *n = ynode_get(root, want[i].key);
        assert_non_null(n);
        assert_int_equal(n->type, Y_STR);
        assert_true(n->quoted);
        assert_string_equal(n->text, want[i].value);
    }
    YNode *i = ynode_get(root, "i");
    assert_int_equal(i->type, Y_INT);
    assert_false(i->quoted);
    assert_int_equal(i->i, 123456);
    ynode_free(root);
}

static void test_explicit_tags(void **state) {
    (void)state;
    YNode *root = parse_ok("a: !!str 123\n"
                           "b: !!int \"12\"\n"
                           "c: !!float 1\n"
                           "d: !!bool yes\n"
                           "e: !!null ''\n"
                           "f: !!float 2.5\n");
    assert_int_equal(ynode_get(root, "a")->type, Y_STR);
    assert_string_equal(ynode_get(root, "a")->text, "123");
    assert_int_equal(ynode_get(root, "b")->type, Y_INT);
    assert_int_equal(ynode_get(root, "b")->i, 12);
    assert_int_equal(ynode_get(root, "c")->type, Y_FLOAT);
    assert_true(ynode_get(root, "c")->d == 1.0);
    assert_int_equal(ynode_get(root, "d")->type, Y_BOOL);
    assert_true(ynode_get(root, "d")->b);
    assert_int_equal(ynode_get(root, "e")->type, Y_NULL);
    assert_true(ynode_get(root, "f")->d == 2.5);
    _cleanup_free_ char *js = to_json(root);
    assert_string_equal(js, "{\"a\":\"123\",\"b\":12,\"c\":1.0,\"d\":true,\"e\":null,\"f\":2.5}");
    ynode_free(root);

    /* a tag that does not fit the value, and tags safe_load refuses */
    char *err = parse_err("a: 1\nb: !!int abc\n");
    assert_non_null(strstr(err, "t.yml:2:"));
    assert_non_null(strstr(err, "not a valid integer"));
    free(err);
    err = parse_err("cmd: !!python/name:os.system x\n");
    assert_non_null(strstr(err, "t.yml:1:"));
    assert_non_null(strstr(err, "unsupported YAML tag"));
    free(err);
}

static void test_tree_shapes_and_lines(void **state) {
    (void)state;
    const char *text = "---\n"
                       "scope: demo\n"
                       "empty:\n"
                       "list:\n"
                       "  - one\n"
                       "  - 2\n"
                       "  - {k: v}\n"
                       "nested:\n"
                       "  inner:\n"
                       "    deep: 0.5\n";
    YNode *root = parse_ok(text);
    assert_int_equal(root->type, Y_MAP);
    assert_int_equal(root->n, 4);
    assert_string_equal(root->keys[0], "scope");
    assert_string_equal(root->keys[3], "nested");
    assert_string_equal(root->file, "t.yml");

    YNode *scope = ynode_get(root, "scope");
    assert_int_equal(scope->line, 2);
    assert_string_equal(scope->file, "t.yml");
    assert_int_equal(ynode_get(root, "empty")->type, Y_NULL);
    assert_int_equal(ynode_get(root, "empty")->line, 3);

    YNode *list = ynode_get(root, "list");
    assert_int_equal(list->type, Y_SEQ);
    assert_int_equal(list->n, 3);
    assert_int_equal(list->items[0]->type, Y_STR);
    assert_int_equal(list->items[1]->type, Y_INT);
    assert_int_equal(list->items[2]->type, Y_MAP);
    assert_int_equal(list->items[1]->line, 6);

    YNode *deep = ynode_get_path(root, "nested.inner.deep");
    assert_non_null(deep);
    assert_int_equal(deep->type, Y_FLOAT);
    assert_int_equal(deep->line, 10);
    assert_null(ynode_get_path(root, "nested.inner.missing"));
    assert_null(ynode_get_path(root, "scope.below_a_scalar"));
    assert_null(ynode_get(list, "0")); /* not a map */
    ynode_free(root);

    /* an empty document is null, a scalar document is a scalar */
    root = parse_ok("");
    assert_int_equal(root->type, Y_NULL);
    ynode_free(root);
    root = parse_ok("# only a comment\n");
    assert_int_equal(root->type, Y_NULL);
    ynode_free(root);
    root = parse_ok("hello\n");
    assert_int_equal(root->type, Y_STR);
    ynode_free(root);
}

static void test_anchors_aliases_merge(void **state) {
    (void)state;
    YNode *root = parse_ok("base: &base\n"
                           "  x: 1\n"
                           "  y: 2\n"
                           "extra: &extra\n"
                           "  y: 20\n"
                           "  z: 30\n"
                           "merged_first:\n"
                           "  <<: *base\n"
                           "  y: 3\n"
                           "explicit_first:\n"
                           "  y: 4\n"
                           "  <<: *base\n"
                           "multi:\n"
                           "  <<: [*base, *extra]\n"
                           "  w: 0\n"
                           "name: &n ptrn-1\n"
                           "copy: *n\n"
                           "seq: &s [a, b]\n"
                           "seq_copy: *s\n"
                           "*n : keyed by alias\n");
    /* explicit keys win over merged ones, wherever they stand */
    assert_int_equal(ynode_get_path(root, "merged_first.x")->i, 1);
    assert_int_equal(ynode_get_path(root, "merged_first.y")->i, 3);
    assert_int_equal(ynode_get(root, "merged_first")->n, 2);
    assert_int_equal(ynode_get_path(root, "explicit_first.x")->i, 1);
    assert_int_equal(ynode_get_path(root, "explicit_first.y")->i, 4);
    assert_int_equal(ynode_get(root, "explicit_first")->n, 2);
    /* in a list of merges the earlier mapping wins */
    assert_int_equal(ynode_get_path(root, "multi.x")->i, 1);
    assert_int_equal(ynode_get_path(root, "multi.y")->i, 2);
    assert_int_equal(ynode_get_path(root, "multi.z")->i, 30);
    assert_int_equal(ynode_get_path(root, "multi.w")->i, 0);
    assert_null(ynode_get_path(root, "multi.<<"));
    /* aliases are copies */
    assert_string_equal(ynode_get(root, "copy")->text, "ptrn-1");
    YNode *seq_copy = ynode_get(root, "seq_copy");
    assert_int_equal(seq_copy->type, Y_SEQ);
    assert_int_equal(seq_copy->n, 2);
    assert_ptr_not_equal(seq_copy, ynode_get(root, "seq"));
    assert_string_equal(ynode_get(root, "ptrn-1")->text, "keyed by alias");
    /* the anchored mapping itself is untouched by the merges */
    assert_int_equal(ynode_get_path(root, "base.y")->i, 2);
    ynode_free(root);

    /* a quoted "<<" is an ordinary key */
    root = parse_ok("b: &b {x: 1}\nm:\n  '<<': *b\n");
    assert_non_null(ynode_get_path(root, "m.<<"));
    assert_null(ynode_get_path(root, "m.x"));
    ynode_free(root);

    char *err = parse_err("a: 1\nb: *nowhere\n");
    assert_non_null(strstr(err, "t.yml:2:"));
    assert_non_null(strstr(err, "unknown alias"));
    free(err);

    /* an anchored node replaced by a duplicate key before an alias refers to it: the alias gets the node
     * as it was anchored (it used to read the freed node: heap-use-after-free under ASan) */
    root = parse_ok("a: &x {k: v, l: [1, 2]}\na: 1\nb: *x\nc: &y s\nc: t\nd: *y\n");
    assert_int_equal(ynode_get(root, "a")->i, 1);
    assert_string_equal(ynode_get_path(root, "b.k")->text, "v");
    assert_int_equal(ynode_get_path(root, "b.l")->n, 2);
    assert_string_equal(ynode_get(root, "d")->text, "s");
    ynode_free(root);

    /* an alias inside the collection it names refers to nothing yet */
    err = parse_err("a: &r [1, *r]\n");
    assert_non_null(strstr(err, "unknown alias"));
    free(err);

    /* aliases nested to grow exponentially ("billion laughs") stop at 100000 copied nodes */
    err = parse_err("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                    "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                    "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                    "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n");
    assert_non_null(strstr(err, "aliases expand to more than 100000 nodes"));
    free(err);
}

static void test_duplicate_keys_last_wins(void **state) {
    (void)state;
    YNode *root = parse_ok("a: 1\nb: x\na: 2\nb:\n  nested: true\n");
    assert_int_equal(root->n, 2);
    assert_string_equal(root->keys[0], "a"); /* the key keeps its place, as in a Python dict */
    assert_int_equal(ynode_get(root, "a")->i, 2);
    assert_int_equal(ynode_get(root, "a")->line, 3);
    assert_int_equal(ynode_get(root, "b")->type, Y_MAP);
    ynode_free(root);
}

static void test_parse_errors_name_file_and_line(void **state) {
    (void)state;
    char *err = parse_err("a: 1\n---\nb: 2\n");
    assert_non_null(strstr(err, "t.yml:2:"));
    assert_non_null(strstr(err, "single document"));
    free(err);

    const struct {
        const char *text;
        const char *where;
    } bad[] = {
        {"a: 1\nb: c: d\n", "t.yml:2: invalid YAML"}, {"a: 1\nb: [1, 2\nc: 3\n", "t.yml:3: invalid YAML"},
        {"a:\n\tb: 1\n", "t.yml:2: invalid YAML"},    {"a: 1\n  b: 2\n", "t.yml:2: invalid YAML"},
        {"a: 'unterminated\n", "invalid YAML"},       {"[a, b]: 1\n", "t.yml:1: mapping keys must be scalars"},
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        err = parse_err(bad[i].text);
        if (!strstr(err, bad[i].where))
            print_error("case %zu: '%s' does not contain '%s'\n", i, err, bad[i].where);
        assert_non_null(strstr(err, bad[i].where));
        free(err);
    }
}

static void test_parse_file(void **state) {
    (void)state;
    char *dir = tmpdir_make();
    assert_non_null(dir);
    _cleanup_free_ char *good = write_file(dir, "good.yml", "a: 1\nb:\n  - x\n");
    _cleanup_free_ char *bad = write_file(dir, "bad.yml", "a: 1\nb: [\n");
    char *err = NULL;
    YNode *n = yaml_parse_file(good, &err);
    assert_non_null(n);
    assert_string_equal(n->file, good);
    assert_string_equal(ynode_get(n, "b")->items[0]->file, good);
    ynode_free(n);

    n = yaml_parse_file(bad, &err);
    assert_null(n);
    _cleanup_free_ char *want = xasprintf("%s:", bad);
    assert_true(str_startswith(err, want));
    free(err);
    err = NULL;

    _cleanup_free_ char *missing = xasprintf("%s/missing.yml", dir);
    n = yaml_parse_file(missing, &err);
    assert_null(n);
    assert_non_null(strstr(err, "cannot open"));
    assert_non_null(strstr(err, missing));
    free(err);
    dir = tmpdir_remove(dir);
}

/* ---- building and editing trees ---- */

static void test_set_append_remove_clone_equal(void **state) {
    (void)state;
    YNode *m = ynode_new(Y_MAP, "here", 7);
    ynode_set(m, "a", ynode_new_int(1, "here", 1));
    ynode_set(m, "b", ynode_new_str("x", "here", 2));
    ynode_set(m, "a", ynode_new_bool(true, "here", 3)); /* replaces */
    assert_int_equal(m->n, 2);
    assert_int_equal(ynode_get(m, "a")->type, Y_BOOL);
    YNode *s = ynode_new(Y_SEQ, "here", 4);
    ynode_append(s, ynode_new_scalar("0.5", false, "here", 5));
    ynode_append(s, ynode_new(Y_NULL, "here", 6));
    ynode_set(m, "s", s);

    YNode *c = ynode_clone(m);
    assert_true(ynode_equal(m, c));
    assert_string_equal(ynode_get(c, "b")->file, "here");
    assert_int_equal(ynode_get(c, "b")->line, 2);
    ynode_set(c, "b", ynode_new_str("y", NULL, 0));
    assert_false(ynode_equal(m, c));
    assert_true(ynode_remove(c, "b"));
    assert_false(ynode_remove(c, "b"));
    assert_false(ynode_remove(s, "b")); /* not a map */
    assert_int_equal(c->n, 2);
    assert_string_equal(c->keys[0], "a");
    assert_string_equal(c->keys[1], "s");
    assert_false(ynode_equal(m, c));

    /* int 1 and float 1.0 and string "1" are all different values */
    YNode *i1 = ynode_new_scalar("1", false, NULL, 0);
    YNode *f1 = ynode_new_scalar("1.0", false, NULL, 0);
    YNode *s1 = ynode_new_str("1", NULL, 0);
    assert_false(ynode_equal(i1, f1));
    assert_false(ynode_equal(i1, s1));
    assert_true(ynode_equal(NULL, NULL));
    assert_false(ynode_equal(i1, NULL));
    ynode_free(i1);
    ynode_free(f1);
    ynode_free(s1);

    assert_null(ynode_clone(NULL));
    assert_null(ynode_free(NULL));
    assert_null(ynode_free(c));
    ynode_free(m);
}

static void test_merge_null_deletes(void **state) {
    (void)state;
    YNode *dst = parse_ok("a: 1\n"
                          "b:\n  c: 1\n  d: 2\n  keep: k\n"
                          "e: 5\n"
                          "l: [1, 2]\n"
                          "m: {x: 1}\n");
    YNode *src = parse_ok("b:\n  c: 9\n  d: null\n  new: n\n"
                          "e: ~\n"
                          "l: [3]\n"
                          "m: scalar now\n"
                          "f: {g: h}\n"
                          "absent: null\n");
    YNode *src_copy = ynode_clone(src);
    ynode_merge(dst, src);
    assert_true(ynode_equal(src, src_copy)); /* src is not modified */
    _cleanup_free_ char *js = to_json(dst);
    assert_string_equal(js, "{\"a\":1,\"b\":{\"c\":9,\"keep\":\"k\",\"new\":\"n\"},\"l\":[3],"
                            "\"m\":\"scalar now\",\"f\":{\"g\":\"h\"}}");
    /* the merged values are copies */
    assert_ptr_not_equal(ynode_get(dst, "f"), ynode_get(src, "f"));
    ynode_free(src_copy);
    ynode_free(src);

    /* merging into or from a non-map does nothing */
    YNode *seq = parse_ok("[1, 2]");
    ynode_merge(seq, dst);
    assert_int_equal(seq->n, 2);
    ynode_merge(dst, seq);
    ynode_merge(dst, NULL);
    ynode_merge(NULL, dst);
    _cleanup_free_ char *js2 = to_json(dst);
    assert_string_equal(js, js2);
    ynode_free(seq);
    ynode_free(dst);
}

/* ---- output: Python's str(), repr() and json.dumps ---- */

static void test_to_json_exact(void **state) {
    (void)state;
    YNode *root = parse_ok("a: 1\nb: 0.9\nc: true\nd: x\n");
    _cleanup_free_ char *js = to_json(root);
    assert_string_equal(js, "{\"a\":1,\"b\":0.9,\"c\":true,\"d\":\"x\"}");
    ynode_free(root);

    root = parse_ok("one: 1.0\n"
                    "big: 1.0e+16\n"
                    "hundred: 100.0\n"
                    "small: 0.0001\n"
                    "smaller: 0.00001\n"
                    "neg: -2.50\n"
                    "int_big: 9223372036854775807\n"
                    "oct: 0777\n"
                    "sexa: 1:30\n"
                    "flag: off\n"
                    "nothing:\n"
                    "inf: .inf\n"
                    "str: \"quote \\\" and \\\\ and \\n\"\n"
                    "seq: [1, '2', 3.5, null, [], {}]\n");
    _cleanup_free_ char *js2 = to_json(root);
    assert_string_equal(js2, "{\"one\":1.0,\"big\":1e+16,\"hundred\":100.0,\"small\":0.0001,\"smaller\":1e-05,"
                             "\"neg\":-2.5,\"int_big\":9223372036854775807,\"oct\":511,\"sexa\":90,"
                             "\"flag\":false,\"nothing\":null,\"inf\":null,"
                             "\"str\":\"quote \\\" and \\\\ and \\n\",\"seq\":[1,\"2\",3.5,null,[],{}]}");
    ynode_free(root);

    /* the JSON parses back to the same tree (cJSON reads the raw numbers) */
    root = parse_ok("a: 1\nb: 0.9\nc: [true, ~, s]\nd: {e: -7}\n");
    cJSON *j = ynode_to_json(root);
    char *text = cJSON_PrintUnformatted(j);
    cJSON *back = cJSON_Parse(text);
    assert_non_null(back);
    YNode *again = ynode_from_json(back, "json");
    assert_true(ynode_equal(root, again));
    assert_string_equal(again->file, "json");
    free(text);
    cJSON_Delete(j);
    cJSON_Delete(back);
    ynode_free(again);
    ynode_free(root);
}

static void test_py_float_repr(void **state) {
    (void)state;
    const struct {
        double d;
        const char *repr;
    } cases[] = {
        {1.0, "1.0"},
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {100.0, "100.0"},
        {0.9, "0.9"},
        {0.1, "0.1"},
        {0.0001, "0.0001"},
        {0.00001, "1e-05"},
        {0.000015, "1.5e-05"},
        {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},
        {9999999999999998.0, "9999999999999998.0"},
        {1.5e300, "1.5e+300"},
        {1e22, "1e+22"},
        {1e-300, "1e-300"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.0 / 3, "0.3333333333333333"},
        {123456789.125, "123456789.125"},
        {1.2345678901234568e+17, "1.2345678901234568e+17"},
        {-2.5, "-2.5"},
        {2048576.0, "2048576.0"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {INFINITY, "inf"},
        {-INFINITY, "-inf"},
        {NAN, "nan"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        char buf[64];
        py_float_repr(cases[i].d, buf, sizeof buf);
        if (strcmp(buf, cases[i].repr) != 0)
            print_error("%.17g: got '%s', expected '%s'\n", cases[i].d, buf, cases[i].repr);
        assert_string_equal(buf, cases[i].repr);
    }
}

static void test_scalar_string_is_python_str(void **state) {
    (void)state;
    const struct {
        const char *text;
        const char *str;
    } cases[] = {
        {"on", "True"},       {"no", "False"}, {"~", "None"},  {"0777", "511"}, {"1_000", "1000"},
        {"1.0e+16", "1e+16"}, {"0.50", "0.5"}, {"5GB", "5GB"}, {"1:30", "90"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        YNode *n = ynode_new_scalar(cases[i].text, false, NULL, 0);
        _cleanup_free_ char *s = ynode_scalar_string(n);
        assert_string_equal(s, cases[i].str);
        assert_true(ynode_is_scalar(n));
        ynode_free(n);
    }
    YNode *m = ynode_new(Y_MAP, NULL, 0);
    assert_null(ynode_scalar_string(m));
    assert_false(ynode_is_scalar(m));
    assert_false(ynode_is_scalar(NULL));
    assert_null(ynode_scalar_string(NULL));
    ynode_free(m);
    assert_string_equal(ytype_name(Y_SEQ), "list");
    assert_string_equal(ytype_name(Y_MAP), "mapping");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar_resolution_table),
        cmocka_unit_test(test_scalar_special_floats),
        cmocka_unit_test(test_quoted_scalars_stay_strings),
        cmocka_unit_test(test_explicit_tags),
        cmocka_unit_test(test_tree_shapes_and_lines),
        cmocka_unit_test(test_anchors_aliases_merge),
        cmocka_unit_test(test_duplicate_keys_last_wins),
        cmocka_unit_test(test_parse_errors_name_file_and_line),
        cmocka_unit_test(test_parse_file),
        cmocka_unit_test(test_set_append_remove_clone_equal),
        cmocka_unit_test(test_merge_null_deletes),
        cmocka_unit_test(test_to_json_exact),
        cmocka_unit_test(test_py_float_repr),
        cmocka_unit_test(test_scalar_string_is_python_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
