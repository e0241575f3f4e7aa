/* Requests to the members' REST API, as patronictl's PatroniRequest makes them: the URL is the member's
 * api_url with the endpoint as its path, a JSON body when there is one, and the client the agent itself
 * uses to ask its peers (probe_new_handle: the ctl/restapi credentials on every request, ctl.insecure,
 * cacert, client certificate and key). */
#include <curl/curl.h>
#include <string.h>

#include "agent/probe.h"
#include "ctl/ctl_int.h"

#define CONNECT_TIMEOUT_MS 5000L

struct RestCall {
    CURLM *multi;
    CURL *h;
    struct curl_slist *headers;
    StrBuf body;
    char *url;
    char *request;
    bool done;
    RestResponse result;
};

void rest_response_clear(RestResponse *r) {
    free(r->body);
    free(r->error);
    free(r->url);
    *r = (RestResponse){0};
}

/* <scheme>://<host:port>/<endpoint> of a member's api_url. */
static char *endpoint_url(const Member *m, const char *endpoint) {
    const char *api = m->api_url ? m->api_url : "";
    const char *p = strstr(api, "://");
    size_t base = p ? (size_t)(p + 3 - api) + strcspn(p + 3, "/?#") : strlen(api);
    return xasprintf("%.*s/%s", (int)base, api, endpoint);
}

RestCall *ctl_rest_start(const Ctl *c, const Member *m, const char *method, const char *endpoint, const char *body,
                         long timeout_ms) {
    RestCall *call = xcalloc(1, sizeof *call);
    sb_init(&call->body);
    call->url = endpoint_url(m, endpoint);
    call->h = m->api_url ? probe_new_handle(call->url, &c->cfg, timeout_ms, &call->body) : NULL;
    if (!call->h) {
        call->done = true;
        call->result.error = xstrdup(m->api_url ? "cannot create an HTTP client"
                                                : "the member publishes no REST API address (api_url)");
        call->result.url = xstrdup(call->url);
        return call;
    }
    curl_easy_setopt(call->h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(call->h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        call->request = xstrdup(body);
        call->headers = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(call->h, CURLOPT_HTTPHEADER, call->headers);
        curl_easy_setopt(call->h, CURLOPT_POSTFIELDS, call->request);
        curl_easy_setopt(call->h, CURLOPT_POSTFIELDSIZE, (long)strlen(call->request));
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(call->h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(call->h, CURLOPT_POSTFIELDSIZE, 0L);
    }
    call->multi = curl_multi_init();
    curl_multi_add_handle(call->multi, call->h);
    return call;
}

static void finish(RestCall *call) {
    CURLMsg *msg;
    int left;
    CURLcode rc = CURLE_OK;
    while ((msg = curl_multi_info_read(call->multi, &left)))
        if (msg->msg == CURLMSG_DONE)
            rc = msg->data.result;
    RestResponse *r = &call->result;
    r->url = xstrdup(call->url);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(call->h, CURLINFO_RESPONSE_CODE, &r->status);
        r->body = xstrdup(call->body.s ? call->body.s : "");
    } else {
        r->error = xstrdup(curl_easy_strerror(rc));
    }
    call->done = true;
}

bool ctl_rest_poll(RestCall *call, int wait_ms, RestResponse *ret) {
    if (!call->done) {
        int running = 0;
        if (curl_multi_perform(call->multi, &running) == CURLM_OK && running && wait_ms > 0) {
            curl_multi_poll(call->multi, NULL, 0, wait_ms, NULL);
            curl_multi_perform(call->multi, &running);
        }
        if (running)
            return false;
        finish(call);
    }
    *ret = call->result;
    call->result = (RestResponse){0};
    return true;
}

void ctl_rest_free(RestCall *call) {
    if (!call)
        return;
    if (call->multi) {
        curl_multi_remove_handle(call->multi, call->h);
        curl_multi_cleanup(call->multi);
    }
    if (call->h)
        curl_easy_cleanup(call->h);
    curl_slist_free_all(call->headers);
    sb_free(&call->body);
    rest_response_clear(&call->result);
    free(call->url);
    free(call->request);
    free(call);
}

void ctl_rest(const Ctl *c, const Member *m, const char *method, const char *endpoint, const char *body,
              long timeout_ms, RestResponse *ret) {
    RestCall *call = ctl_rest_start(c, m, method, endpoint, body, timeout_ms);
    while (!ctl_rest_poll(call, 1000, ret))
        ;
    ctl_rest_free(call);
}

bool ctl_rest_auth_failed(const RestResponse *r, const char *member) {
    if (r->status == 401) {
        ctl_error("authentication failed on member %s (401 %s): set ctl.authentication (or "
                  "restapi.authentication) to the REST API's username and password",
                  member, r->body ? r->body : "");
        return true;
    }
    if (r->status == 403) {
        ctl_error("member %s refused the request (403 %s): check restapi.allowlist and the client certificate "
                  "(ctl.certfile, ctl.keyfile)",
                  member, r->body ? r->body : "");
        return true;
    }
    return false;
}
