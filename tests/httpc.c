/*  httpc.c - see httpc.h. */
#include "tests/httpc.h"

#include "tests/testutil.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_TIMEOUT_MS 20000

static size_t s_on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    hc_response_t *r = userp;
    size_t n = size * nmemb;
    char *grown = realloc(r->text, r->len + n + 1);
    if (!grown)
        return 0; /* libcurl ends the transfer with CURLE_WRITE_ERROR */
    r->text = grown;
    memcpy(r->text + r->len, data, n);
    r->len += n;
    r->text[r->len] = '\0';
    return n;
}

/* Copies the value of "Name: value\r\n" into out when line is that header. */
static bool s_header_value(const char *line, size_t len, const char *name, char *out,
                           size_t out_size)
{
    size_t name_len = strlen(name);
    if (len <= name_len || strncasecmp(line, name, name_len) != 0 || line[name_len] != ':')
        return false;
    const char *v = line + name_len + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t n = (size_t)(end - v);
    if (n >= out_size)
        n = out_size - 1;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

static size_t s_on_header(char *line, size_t size, size_t nmemb, void *userp)
{
    hc_response_t *r = userp;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* a new response (after a 100 Continue, say): forget the last one */
        r->content_type[0] = r->request_id[0] = r->allow[0] = r->retry_after[0] = r->replayed[0] =
            '\0';
        r->has_request_id = false;
    }
    s_header_value(line, n, "Content-Type", r->content_type, sizeof r->content_type);
    if (s_header_value(line, n, "X-Request-Id", r->request_id, sizeof r->request_id))
        r->has_request_id = true;
    s_header_value(line, n, "Allow", r->allow, sizeof r->allow);
    s_header_value(line, n, "Retry-After", r->retry_after, sizeof r->retry_after);
    s_header_value(line, n, "Idempotent-Replayed", r->replayed, sizeof r->replayed);
    return n;
}

static bool s_names(const char *line, const char *name)
{
    size_t n = strlen(name);
    return line && strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* Does the caller send this header itself? */
static bool s_has_header(const hc_request_t *q, const char *name)
{
    if (s_names(q->header, name))
        return true;
    for (int i = 0; q->headers && q->headers[i]; i++)
        if (s_names(q->headers[i], name))
            return true;
    return false;
}

CURL *hc_easy(const hc_request_t *q, hc_response_t *r)
{
    memset(r, 0, sizeof *r);
    CURL *curl = curl_easy_init();
    if (!curl) {
        r->rc = CURLE_FAILED_INIT;
        snprintf(r->error, sizeof r->error, "curl_easy_init failed");
        return NULL;
    }
    /* libcurl copies the strings it is given, except bodies */
    char *url = zsys_sprintf("%s%s", q->url, q->path ? q->path : "");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    zstr_free(&url);
    /* no signals: transfers may run on threads */
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                     q->timeout_ms > 0 ? q->timeout_ms : (long)DEFAULT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, r->error);
    /* a connection of its own for every request, on a multi handle too
     * (which would reuse finished ones): what the server sees of one
     * request does not depend on what ran before it */
    curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (q->cainfo)
        curl_easy_setopt(curl, CURLOPT_CAINFO, q->cainfo);
    if (q->resolve) {
        r->lists[1] = curl_slist_append(NULL, q->resolve);
        curl_easy_setopt(curl, CURLOPT_RESOLVE, r->lists[1]);
    }

    const char *method = q->method ? q->method : "GET";
    bool post = strcmp(method, "POST") == 0;
    bool has_body = q->body || q->read;
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    if (q->token) {
        char *auth = zsys_sprintf("Authorization: Bearer %s", q->token);
        list = curl_slist_append(list, auth);
        zstr_free(&auth);
    }
    if ((has_body || post) && !s_has_header(q, "Content-Type"))
        list =
            curl_slist_append(list, has_body ? "Content-Type: application/json" : "Content-Type:");
    if (q->read)
        list = curl_slist_append(list, "Transfer-Encoding: chunked");
    if (q->header)
        list = curl_slist_append(list, q->header);
    for (int i = 0; q->headers && q->headers[i]; i++)
        list = curl_slist_append(list, q->headers[i]);
    r->lists[0] = list;
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);

    if (q->read) {
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, q->read);
        curl_easy_setopt(curl, CURLOPT_READDATA, q->read_data);
    } else if (q->body) {
        size_t len = q->body_len ? q->body_len : strlen(q->body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, q->body);
    } else if (post && !q->no_length) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
    }
    /* libcurl POSTs what it has a body for and GETs the rest: any other
     * method, and a POST with nothing to post, it must be told */
    bool named = post ? !has_body && q->no_length : has_body || strcmp(method, "GET") != 0;
    if (named)
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    return curl;
}

void hc_finish(CURL *curl, CURLcode rc, hc_response_t *r)
{
    if (curl) {
        r->rc = rc;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_cleanup(curl);
    }
    for (size_t i = 0; i < sizeof r->lists / sizeof r->lists[0]; i++) {
        curl_slist_free_all(r->lists[i]);
        r->lists[i] = NULL;
    }
    if (r->rc != CURLE_OK && !r->error[0])
        snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(r->rc));
    if (!r->text)
        r->text = calloc(1, 1);
    if (r->len > 0)
        r->body = json_loadb(r->text, r->len, 0, NULL);
}

hc_response_t hc_try(const hc_request_t *q)
{
    hc_response_t r;
    CURL *curl = hc_easy(q, &r);
    int64_t start = zclock_mono();
    CURLcode rc = curl ? curl_easy_perform(curl) : r.rc;
    r.elapsed_ms = zclock_mono() - start;
    hc_finish(curl, rc, &r);
    return r;
}

long hc_status(const hc_request_t *q)
{
    hc_response_t r = hc_try(q);
    long status = r.rc == CURLE_OK ? r.status : 0;
    hc_response_free(&r);
    return status;
}

hc_response_t hc_send(const hc_request_t *q)
{
    hc_response_t r = hc_try(q);
    if (r.rc != CURLE_OK)
        print_error("%s %s%s: %s\n", q->method ? q->method : "GET", q->url, q->path ? q->path : "",
                    r.error);
    assert_int_equal(r.rc, CURLE_OK);
    assert_non_null(r.text);
    return r;
}

hc_response_t hc_request(const char *url, const char *method, const char *path, const char *token,
                         const char *json, const char *header)
{
    hc_request_t q = {
        .url = url, .path = path, .method = method, .token = token, .body = json, .header = header};
    return hc_send(&q);
}

void hc_response_free(hc_response_t *r)
{
    json_decref(r->body);
    free(r->text);
    for (size_t i = 0; i < sizeof r->lists / sizeof r->lists[0]; i++)
        curl_slist_free_all(r->lists[i]);
    memset(r, 0, sizeof *r);
}

const char *hc_error_code(const hc_response_t *r)
{
    return hc_str(r->body, "error.code");
}

const char *hc_str(json_t *json, const char *path)
{
    json_t *node = json;
    const char *p = path;
    while (node && *p) {
        size_t n = strcspn(p, ".");
        char *key = strndup(p, n);
        node = json_object_get(node, key);
        free(key);
        p += n + (p[n] == '.');
    }
    return json_string_value(node);
}

void hc_expect(const hc_response_t *r, long status, const char *what)
{
    if (r->status != status)
        print_error("%s: expected %ld, got %ld %s\n", what, status, r->status,
                    r->text ? r->text : "");
    assert_int_equal(r->status, status);
}

void hc_expect_error(hc_response_t *r, long status, const char *code, const char *what)
{
    hc_expect(r, status, what);
    const char *got = hc_error_code(r);
    if (!got || strcmp(got, code) != 0)
        print_error("%s: expected code %s, got %s\n", what, code, got ? got : "(none)");
    assert_non_null(got);
    assert_string_equal(got, code);
    hc_response_free(r);
}

json_int_t hc_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        print_error("no integer \"%s\" in the answer\n", key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}
