/* patronictl's print_output(): a table as prettytable draws it (a title in the top border, multi-line
 * cells, horizontal rules between rows when a cell has several lines), tab-separated values, or a JSON /
 * YAML list of objects keyed by column name. */
#include <cjson/cJSON.h>
#include <string.h>

#include "common/json.h"
#include "ctl/ctl_int.h"

int ctl_parse_format(const char *s, bool allow_topology, CtlFormat *ret) {
    static const struct {
        const char *name;
        CtlFormat fmt;
    } names[] = {{"pretty", FMT_PRETTY}, {"tsv", FMT_TSV},  {"json", FMT_JSON},
                 {"yaml", FMT_YAML},     {"yml", FMT_YAML}, {"topology", FMT_TOPOLOGY}};
    for (size_t i = 0; i < ELEMENTSOF(names); i++)
        if (streq(s, names[i].name) && (allow_topology || names[i].fmt != FMT_TOPOLOGY)) {
            *ret = names[i].fmt;
            return 0;
        }
    return -1;
}

void table_init(Table *t, const char *const *columns, size_t n) {
    *t = (Table){0};
    for (size_t i = 0; i < n; i++)
        strlist_add(&t->columns, columns[i]);
    t->rows = cJSON_CreateArray();
    t->right = xcalloc(n + 1, sizeof(bool));
}

void table_set_right(Table *t, const char *column) {
    for (size_t i = 0; i < t->columns.n; i++)
        if (streq(t->columns.v[i], column))
            t->right[i] = true;
}

void table_free(Table *t) {
    strlist_clear(&t->columns);
    cJSON_Delete(t->rows);
    free(t->right);
    *t = (Table){0};
}

char *py_str(const cJSON *v) {
    long long n;
    if (!v || cJSON_IsNull(v))
        return xstrdup("None");
    if (cJSON_IsString(v))
        return xstrdup(v->valuestring);
    if (cJSON_IsBool(v))
        return xstrdup(cJSON_IsTrue(v) ? "True" : "False");
    if (cJSON_IsRaw(v))
        return xstrdup(v->valuestring);
    if (cJSON_IsNumber(v) && json_item_ll(v, &n) && (double)n == v->valuedouble)
        return xasprintf("%lld", n);
    return json_dumps(v, true);
}

/* Display width of UTF-8 text (code points; the values are names, hosts and states). */
static size_t text_width(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* The lines of a cell. */
static void split_lines(const char *s, StrList *ret) {
    for (;;) {
        const char *nl = strchr(s, '\n');
        if (!nl) {
            strlist_add(ret, s);
            return;
        }
        char *line = xstrndup(s, (size_t)(nl - s));
        strlist_add(ret, line);
        free(line);
        s = nl + 1;
    }
}

static void add_rule(StrBuf *b, const size_t *w, size_t cols, const char *title) {
    size_t start = b->len;
    sb_addc(b, '+');
    for (size_t i = 0; i < cols; i++) {
        for (size_t k = 0; k < w[i] + 2; k++)
            sb_addc(b, '-');
        sb_addc(b, '+');
    }
    if (title) {
        /* written into the top border after the first '+', cut to leave its last character */
        size_t line = b->len - start, tl = strlen(title);
        if (tl > line - 2)
            tl = line - 2;
        memcpy(b->s + start + 1, title, tl);
    }
    sb_addc(b, '\n');
}

static void add_cells(StrBuf *b, StrList *cells, const size_t *w, const bool *right, size_t cols) {
    StrList *lines = xcalloc(cols, sizeof(StrList));
    size_t height = 1;
    for (size_t i = 0; i < cols; i++) {
        split_lines(cells->v[i], &lines[i]);
        if (lines[i].n > height)
            height = lines[i].n;
    }
    for (size_t l = 0; l < height; l++) {
        sb_addc(b, '|');
        for (size_t i = 0; i < cols; i++) {
            const char *s = l < lines[i].n ? lines[i].v[l] : "";
            size_t pad = w[i] - text_width(s, strlen(s));
            sb_addc(b, ' ');
            if (right[i])
                for (size_t k = 0; k < pad; k++)
                    sb_addc(b, ' ');
            sb_add(b, s);
            if (!right[i])
                for (size_t k = 0; k < pad; k++)
                    sb_addc(b, ' ');
            sb_add(b, " |");
        }
        sb_addc(b, '\n');
    }
    for (size_t i = 0; i < cols; i++)
        strlist_clear(&lines[i]);
    free(lines);
}

static size_t cell_width(const char *s) {
    size_t w = 0;
    for (;;) {
        const char *nl = strchr(s, '\n');
        size_t lw = text_width(s, nl ? (size_t)(nl - s) : strlen(s));
        if (lw > w)
            w = lw;
        if (!nl)
            return w;
        s = nl + 1;
    }
}

static void render_pretty(StrBuf *b, const StrList *columns, StrList *rows, size_t n_rows, const bool *right,
                          const char *title) {
    size_t cols = columns->n;
    size_t *w = xcalloc(cols + 1, sizeof(size_t));
    bool multiline = false;
    for (size_t i = 0; i < cols; i++) {
        w[i] = cell_width(columns->v[i]);
        for (size_t r = 0; r < n_rows; r++) {
            size_t cw = cell_width(rows[r].v[i]);
            if (cw > w[i])
                w[i] = cw;
            multiline |= strchr(rows[r].v[i], '\n') != NULL;
        }
    }
    add_rule(b, w, cols, title);
    StrList hdr = {0};
    strlist_copy(&hdr, columns);
    add_cells(b, &hdr, w, right, cols);
    strlist_clear(&hdr);
    add_rule(b, w, cols, NULL);
    for (size_t r = 0; r < n_rows; r++) {
        add_cells(b, &rows[r], w, right, cols);
        if (multiline && r + 1 < n_rows)
            add_rule(b, w, cols, NULL);
    }
    add_rule(b, w, cols, NULL);
    free(w);
}

static char *render_objects(const Table *t, CtlFormat fmt) {
    cJSON *arr = cJSON_CreateArray();
    const cJSON *row;
    cJSON_ArrayForEach(row, t->rows) {
        cJSON *o = cJSON_CreateObject();
        for (size_t i = 0; i < t->columns.n; i++) {
            const cJSON *v = cJSON_GetArrayItem(row, (int)i);
            /* with a title (the member table) the empty values are left out */
            if (t->title && cJSON_IsString(v) && !*v->valuestring)
                continue;
            cJSON_AddItemToObject(o, t->columns.v[i], v ? cJSON_Duplicate(v, true) : cJSON_CreateNull());
        }
        cJSON_AddItemToArray(arr, o);
    }
    char *s;
    if (fmt == FMT_JSON) {
        char *j = json_dumps(arr, true);
        s = xasprintf("%s\n", j);
        free(j);
    } else {
        s = yaml_dump(arr, false);
    }
    cJSON_Delete(arr);
    return s;
}

char *table_render(const Table *t, CtlFormat fmt, const char *delimiter) {
    if (fmt == FMT_JSON || fmt == FMT_YAML)
        return render_objects(t, fmt);
    bool list_cluster = t->title && t->columns.n && streq(t->columns.v[0], "Cluster");
    size_t skip = list_cluster && fmt != FMT_TSV ? 1 : 0;
    size_t n_rows = (size_t)cJSON_GetArraySize(t->rows), r = 0;
    StrList *rows = xcalloc(n_rows + 1, sizeof(StrList));
    const cJSON *row;
    cJSON_ArrayForEach(row, t->rows) {
        /* without columns (query's error rows) every value of the row */
        size_t n_cells = t->columns.n ? t->columns.n : (size_t)cJSON_GetArraySize(row);
        for (size_t i = skip; i < n_cells; i++) {
            const cJSON *v = cJSON_GetArrayItem(row, (int)i);
            if (list_cluster && streq(t->columns.v[i], "Tags") && cJSON_IsObject(v)) {
                /* tags as YAML: block style in pretty, flow style in tsv and topology */
                char *y = yaml_dump(v, fmt != FMT_PRETTY);
                strlist_add(&rows[r], str_trim(y));
                free(y);
            } else {
                char *s = py_str(v);
                strlist_add(&rows[r], s);
                free(s);
            }
        }
        r++;
    }
    StrList columns = {0};
    for (size_t i = skip; i < t->columns.n; i++)
        strlist_add(&columns, t->columns.v[i]);
    if (!t->columns.n && n_rows && fmt != FMT_TSV) /* prettytable's names for unnamed columns */
        for (size_t i = 0; i < rows[0].n; i++)
            strlist_addf(&columns, "Field %zu", i + 1);
    StrBuf b;
    sb_init(&b);
    if (fmt == FMT_TSV) {
        const char *d = delimiter ? delimiter : "\t";
        if (columns.n) {
            char *line = strlist_join(&columns, d);
            sb_addf(&b, "%s\n", line);
            free(line);
        }
        for (r = 0; r < n_rows; r++) {
            char *line = strlist_join(&rows[r], d);
            sb_addf(&b, "%s\n", line);
            free(line);
        }
    } else {
        bool *right = xcalloc(columns.n + 1, sizeof(bool));
        for (size_t i = 0; i + skip < t->columns.n; i++)
            right[i] = t->right[i + skip];
        render_pretty(&b, &columns, rows, n_rows, right, t->title);
        free(right);
    }
    for (r = 0; r < n_rows; r++)
        strlist_clear(&rows[r]);
    free(rows);
    strlist_clear(&columns);
    return sb_steal(&b);
}
