/* Commands for the HA loop (REST POST /switchover, /failover, DELETE /switchover, PATCH/PUT /config,
 * POST /reload). A submitter (a REST thread) fills a Command, queues it and waits, bounded, for the loop
 * to carry it out; the loop drains the queue when woken and between cycles. The submitter never
 * touches PostgreSQL or the DCS for a command itself. This interface does not know who submits. */
#pragma once

#include <stdbool.h>

#include "common/config.h"
#include "dcs/cluster.h"

typedef struct cJSON cJSON;

typedef enum CommandKind {
    CMD_SWITCHOVER,
    CMD_FAILOVER,
    CMD_DELETE_SWITCHOVER,
    CMD_PATCH_CONFIG,
    CMD_PUT_CONFIG,
    CMD_RELOAD,
    CMD_RESTART,
    CMD_DELETE_RESTART,
    CMD_REINITIALIZE,
} CommandKind;

typedef struct Command {
    CommandKind kind;
    /* parameters */
    char *leader, *candidate, *scheduled_at; /* switchover / failover ("" counts as absent) */
    cJSON *body;                             /* PATCH / PUT /config, POST /restart: the request's JSON object */
    bool force, from_leader;                 /* POST /reinitialize */
    /* an immediate switchover / failover: the members the submitter found eligible (they answered
     * GET /patroni within 2 s, not nofailover, watchdog fine); the loop does not probe */
    char **good;
    size_t n_good;
    /* the result, set by the loop */
    int code;     /* HTTP code; 0: the failover key was written, the submitter watches for the outcome */
    char *result; /* the body: plain text, JSON when json is set, NULL for an error page */
    bool json;
    char *old_leader; /* switchover written: the leader it started from */
    int wait_s;       /* switchover written: how long to watch for the outcome */
    /* private to commands.c */
    int refs;
    enum { CMD_QUEUED, CMD_RUNNING, CMD_DONE } state;
    struct Command *next;
} Command;

typedef struct CommandQueue CommandQueue;

/* At most this many commands wait in the queue; a submission beyond it is refused (-EBUSY). */
#define COMMAND_QUEUE_MAX 16

/* wake(ud) is called after a command was queued (the HA loop's command wake: no HA cycle). */
CommandQueue *command_queue_new(void (*wake)(void *ud), void *ud);
void command_queue_free(CommandQueue *q);
/* The loop has ended: answer what is queued and anything submitted later with 503 at once. */
void command_queue_close(CommandQueue *q);

Command *command_new(CommandKind kind);
void command_unref(Command *c);

/* Queue c and wait up to timeout_ms (<= 0: the queue's timeout, command_queue_set_timeout) for its
 * result: 0; -EBUSY when the queue is full (c was not queued); -ETIMEDOUT when the loop had not taken c
 * by then (it is taken out of the queue and never runs). Once the loop runs c, the wait goes on until
 * it is done (the loop bounds a command's run). c stays valid for the caller. No lock of the loop is
 * held while waiting. */
int command_submit(CommandQueue *q, Command *c, int timeout_ms);
/* Queue c without waiting (it runs once the loop takes it): 0 or -EBUSY. */
int command_enqueue(CommandQueue *q, Command *c);
/* How long a submitter waits by default: the loop's worst case between taking two commands. */
void command_queue_set_timeout(CommandQueue *q, int timeout_ms);
/* How many commands wait. */
size_t command_queue_length(CommandQueue *q);

/* ---- the loop's side ---- */
/* The next queued command, now running (the caller owns a reference), or NULL. */
Command *command_queue_pop(CommandQueue *q);
/* Store the result (takes result), wake the submitter and drop the loop's reference. */
void command_complete(CommandQueue *q, Command *c, int code, char *result, bool json);

/* ---- POST /failsafe (spec §2.8, §4.12) ---- */
/* Not a command: the REST thread records the leader that asked (its name, the time: monotonic) and answers at
 * once; the loop reads it (a replica does not race while a leader asked less than ttl ago). */
void command_failsafe_record(CommandQueue *q, const char *leader, usec_t at);
/* The leader of the last POST /failsafe if it came at or after `since` (copied into buf), else NULL. */
const char *command_failsafe_leader(CommandQueue *q, usec_t since, char *buf, size_t len);

/* ---- pure validation, exposed for tests ---- */

/* Parse the body of POST /switchover or /failover (leader, candidate or member, scheduled_at). 0, or
 * 400 when the body is not a non-empty JSON object. */
int failover_request_parse(const char *body, Command *c);

/* Steps 1-4 of spec §2.6 for a request: 0 when valid, else the HTTP code with *ret_body (plain text).
 * now: wall clock in s. */
int failover_request_check(const Command *c, bool paused, double now, char **ret_body);

/* The scheduled time as Patroni writes it to the failover key (datetime.isoformat() of the parsed time:
 * "2030-01-01T00:00:00+00:00" for "2030-01-01 00:00Z"), or NULL when s does not parse with a timezone. */
char *failover_scheduled_iso(const char *s);

/* Step 5 (the pre-checks of an immediate request) without the probe: 0, else 412 with *ret_body.
 * *ret_candidates (caller frees the list, not the names) is the members a probe must consider. */
int failover_precheck(const Command *c, const Cluster *cl, const DynConfig *dyn, char **ret_body,
                      const char ***ret_candidates, size_t *ret_n);

/* POST /restart's body (spec §2.7), checked key by key in the order received, as Patroni does: 0 with
 * *ret_norm (the accepted request, keys in the same order: `schedule` as ISO-8601, `timeout` as int
 * seconds), else the HTTP code with *ret_body (plain text). now: wall clock in s. */
int restart_request_check(const cJSON *req, bool paused, double now, cJSON **ret_norm, char **ret_body);

/* Patroni's postgres_version_to_int(): "15.2" -> 150002, "9.6.24" -> 90624. 0, or -EINVAL with *ret_error. */
int postgres_version_to_int(const char *s, long long *ret, char **ret_error);

/* Patroni's patch_config(): merge patch into config (null deletes, objects merge, scalars replace when
 * their string forms differ). Returns whether config changed. */
bool config_patch(cJSON *config, const cJSON *patch);
