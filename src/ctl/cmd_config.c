/* edit-config (the dynamic configuration in etcd, written with compare-and-set), pause and resume
 * (PATCH /config through the first member that answers, the leader first). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/commands.h"
#include "common/json.h"
#include "ctl/ctl_int.h"

/* A YAML mapping from a file ("-": stdin). NULL with the error printed. */
static cJSON *load_yaml_file(const char *path) {
    FILE *f = streq(path, "-") ? stdin : fopen(path, "r");
    if (!f) {
        ctl_error("cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = ctl_read_stream(f);
    if (f != stdin)
        fclose(f);
    char *err = NULL;
    cJSON *j = ctl_yaml_to_json(text, streq(path, "-") ? "<stdin>" : path, &err);
    free(text);
    if (!j) {
        ctl_error("%s", err);
        free(err);
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        ctl_error("%s: the configuration must be a mapping", path);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* $EDITOR (else `editor`, else `vi`) on a temporary <cluster>-config-XXXXXX.yaml holding `before`.
 * Returns the edited text, or NULL with the error printed. */
static char *invoke_editor(const char *before, const char *cluster) {
    const char *editor = getenv("EDITOR");
    static const char *const fallbacks[] = {"editor", "vi"};
    char *found = NULL;
    for (size_t i = 0; (!editor || !*editor) && i < ELEMENTSOF(fallbacks); i++) {
        const char *path = getenv("PATH");
        char *dirs = xstrdup(path ? path : "/usr/bin:/bin"), *save = NULL;
        for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
            char *cand = xasprintf("%s/%s", d, fallbacks[i]);
            if (access(cand, X_OK) == 0)
                found = cand;
            else
                free(cand);
        }
        free(dirs);
        editor = found;
    }
    if (!editor || !*editor) {
        ctl_error("EDITOR environment variable is not set. editor or vi are not available");
        return NULL;
    }
    char *safe = xstrdup(cluster);
    for (char *p = safe; *p; p++)
        if (*p == '/')
            *p = '_';
    const char *tmp = getenv("TMPDIR");
    char *path = xasprintf("%s/%s-config-XXXXXX.yaml", tmp && *tmp ? tmp : "/tmp", safe);
    free(safe);
    char *after = NULL;
    int fd = mkstemps(path, 5);
    if (fd < 0) {
        ctl_error("cannot create a temporary file %s: %s", path, strerror(errno));
        goto out;
    }
    size_t len = strlen(before);
    bool written = write(fd, before, len) == (ssize_t)len;
    close(fd);
    if (!written) {
        ctl_error("cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    fflush(stdout);
    /* through the shell, so that EDITOR may carry arguments ("vim -u NONE") */
    char *cmd = xasprintf("%s \"$1\"", editor);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, "sh", path, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int code = pid < 0 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0) {
        ctl_error("Editor exited with return code %d", code);
        goto out;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        ctl_error("cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    after = ctl_read_stream(f);
    fclose(f);
out:
    unlink(path);
    free(path);
    free(found);
    return after;
}

int cmd_edit_config(Ctl *c, int argc, char **argv) {
    static const struct option opts[] = {
        {"quiet", no_argument, NULL, 'q'},         {"set", required_argument, NULL, 's'},
        {"pg", required_argument, NULL, 'p'},      {"apply", required_argument, NULL, 'a'},
        {"replace", required_argument, NULL, 'r'}, {"force", no_argument, NULL, 'F'},
        {"group", required_argument, NULL, 'g'},   {0}};
    bool quiet = false, force = false;
    const char *apply = NULL, *replace = NULL;
    StrList sets = {0};
    int o;
    while ((o = ctl_getopt(argc, argv, "qs:p:", opts)) != -1) {
        switch (o) {
        case 'q': quiet = true; break;
        case 's': strlist_add(&sets, optarg); break;
        case 'p': {
            const char *v = optarg;
            while (*v == ' ' || *v == '\t')
                v++;
            strlist_addf(&sets, "postgresql.parameters.%s", v);
            break;
        }
        case 'a': apply = optarg; break;
        case 'r': replace = optarg; break;
        case 'F': force = true; break;
        case 'g': break;
        default: strlist_clear(&sets); return CTL_USAGE;
        }
    }
    int rc = CTL_ERROR;
    Cluster *cl = NULL;
    cJSON *changed = NULL;
    char *before = NULL, *after = NULL, *err = NULL;
    if (ctl_connect(c, optind < argc ? argv[optind] : NULL) < 0 || !(cl = ctl_read_cluster(c)))
        goto out;
    if (!cl->has_config) {
        ctl_error("The config key does not exist in the cluster %s", c->cfg.scope);
        goto out;
    }
    before = yaml_dump(cl->config, false);
    changed = cJSON_Duplicate(cl->config, true);
    if (replace) {
        cJSON *data = load_yaml_file(replace);
        if (!data)
            goto out;
        cJSON_Delete(changed);
        changed = cJSON_CreateObject();
        config_patch(changed, data);
        cJSON_Delete(data);
        after = yaml_dump(changed, false);
    }
    if (apply) {
        cJSON *data = load_yaml_file(apply);
        if (!data)
            goto out;
        config_patch(changed, data);
        cJSON_Delete(data);
        free(after);
        after = yaml_dump(changed, false);
    }
    for (size_t i = 0; i < sets.n; i++)
        if (ctl_apply_set(changed, sets.v[i], &err) < 0) {
            ctl_error("%s", err);
            goto out;
        }
    if (sets.n) {
        free(after);
        after = yaml_dump(changed, false);
    }
    if (!after) {
        if (!(after = invoke_editor(before, c->cfg.scope)))
            goto out;
        cJSON_Delete(changed);
        if (!(changed = ctl_yaml_to_json(after, "the edited configuration", &err))) {
            ctl_error("%s", err);
            goto out;
        }
        if (!cJSON_IsObject(changed)) {
            ctl_error("the edited configuration must be a mapping");
            goto out;
        }
    }
    if (ctl_json_equal(cl->config, changed)) {
        if (!quiet)
            printf("Not changed\n");
        rc = CTL_OK;
        goto out;
    }
    if (!quiet) {
        char *d = unified_diff(before, after);
        fputs(d ? d : "", stdout);
        free(d);
    }
    if ((streq(apply, "-") || streq(replace, "-")) && !force) {
        printf("Use --force option to apply changes\n");
        goto out;
    }
    int yes = force ? 1 : ctl_confirm("Apply these changes?");
    if (yes < 0) {
        rc = ctl_aborted();
        goto out;
    }
    if (!yes)
        goto out;
    char *json = json_dumps(changed, false);
    int r = dcs_set_config(c->dcs, json, cl->config_version);
    free(json);
    if (r == 0)
        ctl_error("Config modification aborted due to concurrent changes");
    else if (r < 0)
        ctl_error("cannot write the configuration to etcd (%s): %s", c->endpoints, dcs_error(c->dcs));
    else {
        printf("Configuration changed\n");
        rc = CTL_OK;
    }
out:
    strlist_clear(&sets);
    cJSON_Delete(changed);
    free(before);
    free(after);
    free(err);
    cluster_free(cl);
    return rc;
}

/* patronictl's wait_until_pause_is_applied(). */
static int wait_pause(Ctl *c, const Cluster *old, bool paused) {
    printf("'%s' request sent, waiting until it is recognized by all nodes\n", paused ? "pause" : "resume");
    fflush(stdout);
    long long loop_wait = ctl_config_ll(old, "loop_wait", 10);
    usec_t until = now_monotonic() + (usec_t)(loop_wait + 1) * USEC_PER_SEC;
    StrList remaining = {0};
    for (;;) {
        strlist_clear(&remaining);
        Cluster *cl = ctl_read_cluster(c);
        if (!cl)
            return CTL_ERROR;
        bool all = true;
        for (size_t i = 0; i < old->n_members; i++) {
            const Member *was = &old->members[i], *m = was->api_url ? cluster_get_member(cl, was->name) : NULL;
            if (m && m->pause != paused) {
                all = false;
                if (m->revision != was->revision)
                    strlist_add(&remaining, m->name);
            }
        }
        cluster_free(cl);
        if (all) {
            strlist_clear(&remaining);
            break;
        }
        if (now_monotonic() >= until)
            break;
        sleep(1);
    }
    if (remaining.n) {
        char *names = strlist_join(&remaining, ", ");
        printf("%s members didn't recognized pause state after %lld seconds\n", names, loop_wait);
        free(names);
        strlist_clear(&remaining);
        return CTL_ERROR;
    }
    printf("Success: cluster management is %s\n", paused ? "paused" : "resumed");
    return CTL_OK;
}

static int toggle_pause(Ctl *c, int argc, char **argv, bool paused) {
    static const struct option opts[] = {{"wait", no_argument, NULL, 'w'},
                                         {"group", required_argument, NULL, 'g'},
                                         {0}};
    bool wait = false;
    int o;
    while ((o = ctl_getopt(argc, argv, "", opts)) != -1) {
        if (o == 'w')
            wait = true;
        else if (o != 'g')
            return CTL_USAGE;
    }
    if (ctl_connect(c, optind < argc ? argv[optind] : NULL) < 0)
        return CTL_ERROR;
    Cluster *cl = ctl_read_cluster(c);
    if (!cl)
        return CTL_ERROR;
    int rc = CTL_ERROR;
    if (ctl_is_paused(cl) == paused) {
        ctl_error("Cluster is %s paused", paused ? "already" : "not");
        cluster_free(cl);
        return rc;
    }
    size_t n;
    const Member **ms = ctl_members_leader_first(cl, &n);
    bool asked = false;
    for (size_t i = 0; i < n && !asked; i++) {
        RestResponse r;
        ctl_rest(c, ms[i], "PATCH", "config", paused ? "{\"pause\": true}" : "{\"pause\": null}", 30000, &r);
        if (!r.status) {
            fprintf(stderr, "Warning: member %s is not accessible (%s: %s)\n", ms[i]->name, r.url, r.error);
        } else {
            asked = true;
            if (r.status == 200) {
                if (wait)
                    rc = wait_pause(c, cl, paused);
                else {
                    printf("Success: cluster management is %s\n", paused ? "paused" : "resumed");
                    rc = CTL_OK;
                }
            } else {
                printf("Failed: %s cluster management status code=%ld, (%s)\n", paused ? "pause" : "resume", r.status,
                       r.body);
                ctl_rest_auth_failed(&r, ms[i]->name);
            }
        }
        rest_response_clear(&r);
    }
    if (!asked)
        ctl_error("Can not find accessible cluster member");
    free(ms);
    cluster_free(cl);
    return rc;
}

int cmd_pause(Ctl *c, int argc, char **argv) { return toggle_pause(c, argc, argv, true); }
int cmd_resume(Ctl *c, int argc, char **argv) { return toggle_pause(c, argc, argv, false); }
