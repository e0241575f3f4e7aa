/* Prompts as click asks them: `text [default]: ` and `text [y/N]: `, on stdout, answers read from
 * stdin (so that a script can pipe them in); the end of the input aborts, as click does. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ctl/ctl_int.h"

/* One line from stdin without its newline, or NULL at the end of the input. */
static char *read_line(void) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

char *ctl_prompt(const char *text, const char *dflt) {
    if (dflt)
        printf("%s [%s]: ", text, dflt);
    else
        printf("%s: ", text);
    fflush(stdout);
    char *line = read_line();
    if (!line) {
        putchar('\n');
        return NULL;
    }
    if (!*line && dflt) {
        free(line);
        return xstrdup(dflt);
    }
    return line;
}

char *ctl_prompt_when(const char *action, const char *gap) {
    char hint[32];
    time_t t = time(NULL) + 3600;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(hint, sizeof hint, "%Y-%m-%dT%H:%M", &tm);
    char *q = xasprintf("When should the %s take place (e.g. %s%s) ", action, hint, gap);
    char *answer = ctl_prompt(q, "now");
    free(q);
    return answer;
}

int ctl_confirm(const char *text) {
    for (;;) {
        printf("%s [y/N]: ", text);
        fflush(stdout);
        char *line = read_line();
        if (!line) {
            putchar('\n');
            return -1;
        }
        str_trim(line);
        int r = -2;
        if (!*line || strcasecmp(line, "n") == 0 || strcasecmp(line, "no") == 0)
            r = 0;
        else if (strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0)
            r = 1;
        free(line);
        if (r >= 0)
            return r;
        printf("Error: invalid input\n");
    }
}

int ctl_aborted(void) {
    fflush(stdout);
    fprintf(stderr, "Aborted!\n");
    return CTL_ERROR;
}
