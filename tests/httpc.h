/*  httpc.h - the HTTP client of the integration tests, over libcurl.
 *
 *  What it is for: the integration tests talk to a real retaild as any
 *  HTTP client would, and each of them used to carry its own copy of the
 *  same libcurl code. This is that code once: one request in, one
 *  response out, with the parts the tests judge (status, body, a few
 *  headers, how long it took, why a transfer failed).
 *
 *  How it works: a request is described by hc_request_t (only url is
 *  required; every other field may be zero); hc_easy turns it into a
 *  libcurl easy handle whose callbacks fill an hc_response_t, and
 *  hc_finish ends the transfer: status, the body parsed as JSON, the
 *  handle and header lists freed. hc_try does both around one
 *  curl_easy_perform, and hc_status keeps only the status; hc_send and
 *  hc_request do it with a cmocka assert that the transfer completed (any
 *  status is fine). hc_easy and
 *  hc_finish are public for tests that run many transfers at once on a
 *  curl multi handle.
 *
 *  Headers sent: "Expect:" always (no 100-continue round trip), the
 *  bearer token when given, then a Content-Type of application/json when
 *  a body is sent and the caller names none (a POST without a body sends
 *  an empty one, so that libcurl adds no form type of its own), then the
 *  caller's lines. Every transfer has a deadline and uses no signals, so
 *  hc_try, hc_status and hc_easy may run on threads; hc_send, hc_request and the
 *  helpers that assert belong on the cmocka thread.
 *
 *  Ownership: an hc_response_t owns its body and text (and, between
 *  hc_easy and hc_finish, the header lists); hc_response_free releases
 *  them and leaves a zeroed response. The header values are copied into
 *  the response's own arrays: nothing there to free. To keep the body
 *  past hc_response_free, take a reference first (json_incref). A
 *  request's strings and body are the caller's and are only read, and
 *  only until the transfer ends.
 */
#ifndef RETAIL_HTTPC_H
#define RETAIL_HTTPC_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What to send. */
typedef struct {
    const char *url;            /* "http://127.0.0.1:PORT", or a whole URL */
    const char *path;           /* appended to url when set, with the query */
    const char *method;         /* NULL: GET */
    const char *token;          /* sent as "Authorization: Bearer <token>" */
    const void *body;           /* sent with Content-Length; NULL: no body */
    size_t body_len;            /* bytes of body; 0: strlen(body) */
    const char *header;         /* one more header line ("If-Match: 3") */
    const char *const *headers; /* more header lines, NULL-terminated */
    bool no_length;             /* a POST with no body and no Content-Length */
    curl_read_callback read;    /* a body from this callback, sent chunked */
    void *read_data;            /* for read */
    long timeout_ms;            /* for the whole transfer; 0: 20 s */
    const char *cainfo;         /* CA file for a TLS server; NULL: libcurl's store */
    const char *resolve;        /* "host:port:address", to reach a name on loopback */
} hc_request_t;

/* What came back. */
typedef struct {
    CURLcode rc;                 /* CURLE_OK when the transfer completed */
    long status;                 /* the HTTP status; 0 when none came */
    json_t *body;                /* text parsed as JSON; NULL when empty or not JSON */
    char *text;                  /* the body as received, NUL-terminated; never
                                    NULL after hc_finish */
    size_t len;                  /* bytes in text, the NUL not counted */
    char content_type[128];      /* "" when absent, as are the next ones */
    char request_id[256];        /* X-Request-Id */
    bool has_request_id;         /* there was an X-Request-Id, even empty */
    char allow[128];             /* Allow (of a 405) */
    char retry_after[16];        /* Retry-After (of a 429) */
    char replayed[8];            /* Idempotent-Replayed ("true" on a replay) */
    char error[CURL_ERROR_SIZE]; /* why rc is not CURLE_OK */
    int64_t elapsed_ms;          /* hc_try and up: the transfer's duration */
    struct curl_slist *lists[2]; /* httpc's own, from hc_easy to hc_finish */
} hc_response_t;

/* One request to url + path: method, bearer token, JSON body and one
 * more header line (each but url and method may be NULL). Asserts that
 * the transfer completed. */
hc_response_t hc_request(const char *url, const char *method, const char *path, const char *token,
                         const char *json, const char *header);

/* Any request; asserts that the transfer completed, saying why not. */
hc_response_t hc_send(const hc_request_t *q);

/* Any request, with no assert: rc and error tell how it went. */
hc_response_t hc_try(const hc_request_t *q);

/* Any request, with no assert: the status it was answered, 0 when no
 * response came; the body is not kept. For threads that only count what
 * was answered how. */
long hc_status(const hc_request_t *q);

/* Prepares the transfer of q into r and returns its easy handle without
 * running it; NULL (r->rc set) when libcurl has none to give. r must stay
 * where it is until hc_finish. */
CURL *hc_easy(const hc_request_t *q, hc_response_t *r);

/* Ends a transfer of hc_easy, which ran to rc (after curl_easy_perform,
 * or a multi handle's CURLMSG_DONE, the handle removed from it): reads
 * the status, parses the body, cleans the handle up. */
void hc_finish(CURL *curl, CURLcode rc, hc_response_t *r);

/* Frees what r owns; r is left zeroed. */
void hc_response_free(hc_response_t *r);

/* The "error.code" of an error body (API.md section 3), or NULL. */
const char *hc_error_code(const hc_response_t *r);

/* Asserts r's status, printing what (the step) and the body when it
 * differs. */
void hc_expect(const hc_response_t *r, long status, const char *what);
/* Asserts r's status and error code, then frees r. */
void hc_expect_error(hc_response_t *r, long status, const char *code, const char *what);
/* The integer key of obj; asserts that it is one. */
json_int_t hc_int(json_t *obj, const char *key);

/* The string at a dotted path ("user.email") in json, or NULL. */
const char *hc_str(json_t *json, const char *path);

#endif
