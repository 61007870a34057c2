/*  http_stall.c - many HTTP clients that send half a request and stall,
 *  and one normal client measured meanwhile (make strangers;
 *  tools/reliability/strangers.sh, docs/RELIABILITY.md section 5).
 *
 *      http-stall --port P [--host 127.0.0.1] [--stalled 500] [--seconds 10]
 *                 [--baseline 3] [--path /v1/sys/ping] [--max-ms 1000]
 *                 [--wait-close SECONDS]
 *
 *  Why a program: opening 500 connections that each hold half a request,
 *  and timing every request of another client at the same time, is more
 *  than a shell can do reliably.
 *
 *  How it works, in one thread:
 *    1. the baseline: for --baseline seconds, the normal client sends
 *       GET PATH, each request on a new connection (so every one has to
 *       be accepted past whatever the stalled ones hold), with
 *       "Connection: close", and reads the answer to its end; each
 *       request's time runs from connect() to the last byte, and it must
 *       be a 200 within 5 s;
 *    2. --stalled connections, in turn of three kinds: a GET whose head
 *       never ends ("GET /v1/products/... HTTP/1.1\r\nHost: x\r\n"), a
 *       POST announcing Content-Length: 1000 that sends 10 bytes of body,
 *       and a connection that sends nothing at all; each is connected and
 *       written before the next phase, and then left alone;
 *    3. the normal client again, for --seconds, while all of them stall;
 *       then how many stalled connections the server has closed so far;
 *    4. with --wait-close, the stalled connections are watched until the
 *       server closes each one (read gives EOF or a reset) or that many
 *       seconds pass: how long after its last byte each was closed, and
 *       whether the server wrote anything first.
 *  Every request of the normal client counts: the figures are its median,
 *  p99 and max over all of them, and the number that failed.
 *
 *  Exit status 0 when every normal request succeeded, the slowest under
 *  stalls took at most --max-ms, every stalled connection was opened, and
 *  (with --wait-close) every one was closed in time; 1 otherwise; 2 for
 *  bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQUEST_MS 5000
#define STALLED_MAX 20000
#define ANSWER_MAX 65536

typedef struct {
    const char *host, *path;
    int port, stalled, max_ms, wait_close;
    double seconds, baseline;
} options_t;

typedef struct {
    int64_t *us; /* each request's time */
    size_t n, cap;
    int failed;
} samples_t;

typedef struct {
    int fd;          /* -1 once closed */
    int64_t last_ns; /* when its last byte left */
    int64_t closed_ns;
    bool wrote_back; /* the server sent something before closing */
} stalled_t;

static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int s_connect(const struct sockaddr_in *addr, bool nonblocking)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Waits up to the deadline for events on fd; false on timeout or error. */
static bool s_wait(int fd, short events, int64_t deadline_ns)
{
    while (true) {
        int64_t left = (deadline_ns - s_now_ns()) / 1000000;
        if (left < 0)
            return false;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int)left + 1);
        if (rc > 0)
            return true;
        if (rc < 0 && errno != EINTR)
            return false;
    }
}

/* One request of the normal client on a new connection: true for a 200
 * read to its end within REQUEST_MS; *us its time. */
static bool s_request(const struct sockaddr_in *addr, const options_t *opt, int64_t *us)
{
    int64_t start = s_now_ns(), deadline = start + (int64_t)REQUEST_MS * 1000000;
    int fd = s_connect(addr, true);
    if (fd < 0)
        return false;
    bool ok = false;
    char req[512];
    int len =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n",
                 opt->path, opt->host, opt->port);
    if (!s_wait(fd, POLLOUT, deadline))
        goto done;
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
        goto done;
    if (send(fd, req, (size_t)len, MSG_NOSIGNAL) != len)
        goto done;
    char answer[ANSWER_MAX];
    size_t got = 0;
    while (true) {
        if (!s_wait(fd, POLLIN, deadline))
            goto done;
        ssize_t n = recv(fd, answer + got, sizeof answer - 1 - got, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            break; /* the end ("Connection: close"), or a reset */
        got += (size_t)n;
        if (got == sizeof answer - 1)
            break;
    }
    answer[got] = '\0';
    ok = strncmp(answer, "HTTP/1.1 200 ", 13) == 0 && strstr(answer, "\r\n\r\n") != NULL;
done:
    close(fd);
    *us = (s_now_ns() - start) / 1000;
    return ok;
}

static int s_add(samples_t *s, int64_t us)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 4096;
        int64_t *grown = realloc(s->us, cap * sizeof *grown);
        if (!grown)
            return -1;
        s->us = grown;
        s->cap = cap;
    }
    s->us[s->n++] = us;
    return 0;
}

/* The normal client for `seconds`, one request after another. */
static int s_measure(const struct sockaddr_in *addr, const options_t *opt, double seconds,
                     samples_t *out)
{
    int64_t end = s_now_ns() + (int64_t)(seconds * 1e9);
    while (s_now_ns() < end) {
        int64_t us;
        if (!s_request(addr, opt, &us))
            out->failed++;
        if (s_add(out, us) != 0)
            return -1;
    }
    return 0;
}

static void s_report(const char *what, samples_t *s)
{
    if (s->n == 0) {
        printf("%s: no requests\n", what);
        return;
    }
    qsort(s->us, s->n, sizeof *s->us, s_cmp);
    size_t p99 = (s->n * 99 + 99) / 100; /* the nearest rank */
    printf("%s: %zu requests, %d failed; median %.2f ms, p99 %.2f ms, max %.2f ms\n", what, s->n,
           s->failed, (double)s->us[s->n / 2] / 1000.0, (double)s->us[p99 - 1] / 1000.0,
           (double)s->us[s->n - 1] / 1000.0);
}

/* Opens the stalled connections: kinds in turn (see the top). The number
 * that could not be opened and written. */
static int s_open_stalled(const struct sockaddr_in *addr, const options_t *opt, stalled_t *st)
{
    static const char *const kinds[] = {
        "GET /v1/products/p00000000000000000001 HTTP/1.1\r\nHost: x\r\n",
        "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n{\"email\":",
        "",
    };
    int failed = 0;
    for (int i = 0; i < opt->stalled; i++) {
        st[i].fd = s_connect(addr, true);
        st[i].closed_ns = 0;
        st[i].wrote_back = false;
        if (st[i].fd < 0) {
            failed++;
            continue;
        }
        int64_t deadline = s_now_ns() + (int64_t)REQUEST_MS * 1000000;
        int err = 0;
        socklen_t elen = sizeof err;
        const char *text = kinds[i % 3];
        size_t len = strlen(text);
        if (!s_wait(st[i].fd, POLLOUT, deadline) ||
            getsockopt(st[i].fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0 ||
            (len && send(st[i].fd, text, len, MSG_NOSIGNAL) != (ssize_t)len)) {
            close(st[i].fd);
            st[i].fd = -1;
            failed++;
            continue;
        }
        st[i].last_ns = s_now_ns();
    }
    return failed;
}

/* Reads what the server sent to each open stalled connection without
 * waiting; marks those it closed. How many are still open. */
static int s_check_stalled(stalled_t *st, int n)
{
    int open = 0;
    for (int i = 0; i < n; i++) {
        if (st[i].fd < 0)
            continue;
        char buf[4096];
        ssize_t got;
        while ((got = recv(st[i].fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
            st[i].wrote_back = true;
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
            st[i].closed_ns = s_now_ns();
            close(st[i].fd);
            st[i].fd = -1;
        } else
            open++;
    }
    return open;
}

/* Watches the stalled connections until the server closed them all or
 * `seconds` passed; prints when they were closed. true if all were. */
static bool s_wait_closed(stalled_t *st, int n, int seconds)
{
    int64_t end = s_now_ns() + (int64_t)seconds * 1000000000;
    struct pollfd *p = calloc((size_t)n, sizeof *p);
    if (!p)
        return false;
    int open;
    while ((open = s_check_stalled(st, n)) > 0 && s_now_ns() < end) {
        int k = 0;
        for (int i = 0; i < n; i++)
            if (st[i].fd >= 0)
                p[k++] = (struct pollfd){.fd = st[i].fd, .events = POLLIN | POLLRDHUP};
        int64_t left = (end - s_now_ns()) / 1000000;
        if (poll(p, (nfds_t)k, left > 1000 ? 1000 : (int)left + 1) < 0 && errno != EINTR)
            break;
    }
    free(p);
    int64_t *after = calloc((size_t)n, sizeof *after);
    int closed = 0, wrote = 0;
    for (int i = 0; after && i < n; i++)
        if (st[i].closed_ns) {
            after[closed++] = st[i].closed_ns - st[i].last_ns;
            wrote += st[i].wrote_back;
        }
    if (after && closed) {
        qsort(after, (size_t)closed, sizeof *after, s_cmp);
        printf("closed by the server: %d of %d stalled connections, %.1f s after their last byte "
               "(min %.1f, median %.1f, max %.1f s); %d got bytes first\n",
               closed, n, (double)after[closed / 2] / 1e9, (double)after[0] / 1e9,
               (double)after[closed / 2] / 1e9, (double)after[closed - 1] / 1e9, wrote);
    } else
        printf("closed by the server: none of %d stalled connections within %d s\n", n, seconds);
    free(after);
    return open == 0;
}

static void s_usage(FILE *to)
{
    fprintf(to, "usage: http-stall --port P [--host ADDR] [--stalled N] [--seconds S]\n"
                "                  [--baseline S] [--path PATH] [--max-ms MS] [--wait-close S]\n");
}

static bool s_num(const char *text, double min, double max, double *out)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (!*text || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    options_t opt = {.host = "127.0.0.1",
                     .path = "/v1/sys/ping",
                     .stalled = 500,
                     .max_ms = 1000,
                     .seconds = 10,
                     .baseline = 3};
    static const struct option longs[] = {
        {"port", required_argument, NULL, 'P'},     {"host", required_argument, NULL, 'H'},
        {"stalled", required_argument, NULL, 'n'},  {"seconds", required_argument, NULL, 's'},
        {"baseline", required_argument, NULL, 'b'}, {"path", required_argument, NULL, 'p'},
        {"max-ms", required_argument, NULL, 'm'},   {"wait-close", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        double v = 0;
        bool good = true;
        switch (ch) {
        case 'P':
            good = s_num(optarg, 1, 65535, &v);
            opt.port = (int)v;
            break;
        case 'H':
            opt.host = optarg;
            break;
        case 'n':
            good = s_num(optarg, 0, STALLED_MAX, &v);
            opt.stalled = (int)v;
            break;
        case 's':
            good = s_num(optarg, 0.1, 3600, &opt.seconds);
            break;
        case 'b':
            good = s_num(optarg, 0, 3600, &opt.baseline);
            break;
        case 'p':
            good = optarg[0] == '/' && strlen(optarg) < 256 && !strpbrk(optarg, " \r\n");
            opt.path = optarg;
            break;
        case 'm':
            good = s_num(optarg, 1, 600000, &v);
            opt.max_ms = (int)v;
            break;
        case 'w':
            good = s_num(optarg, 0, 3600, &v);
            opt.wait_close = (int)v;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
        if (!good) {
            fprintf(stderr, "http-stall: bad value '%s'\n", optarg);
            return 2;
        }
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (optind != argc || opt.port == 0 || inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) {
        s_usage(stderr);
        return 2;
    }
    /* One descriptor per stalled connection, and a few more. */
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &files) != 0)
            perror("http-stall: setrlimit");
    }
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < (rlim_t)opt.stalled + 64) {
        fprintf(stderr, "http-stall: %d connections need more descriptors than the limit %llu\n",
                opt.stalled, (unsigned long long)files.rlim_cur);
        return 2;
    }

    int status = 1;
    samples_t base = {0}, under = {0};
    stalled_t *st = calloc((size_t)(opt.stalled ? opt.stalled : 1), sizeof *st);
    if (!st)
        goto cleanup;
    if (opt.baseline > 0 && s_measure(&addr, &opt, opt.baseline, &base) != 0)
        goto cleanup;
    int64_t opened = s_now_ns();
    int refused = s_open_stalled(&addr, &opt, st);
    printf("stalled connections: %d opened in %.0f ms (a third each: an unfinished head, a body "
           "10 of 1000 bytes long, nothing), %d could not be\n",
           opt.stalled - refused, (double)(s_now_ns() - opened) / 1e6, refused);
    if (s_measure(&addr, &opt, opt.seconds, &under) != 0)
        goto cleanup;
    int still = s_check_stalled(st, opt.stalled);
    if (opt.baseline > 0)
        s_report("normal client, alone", &base);
    s_report("normal client, while they stall", &under);
    printf("stalled connections still open after %.0f s: %d of %d\n", opt.seconds, still,
           opt.stalled - refused);
    bool closed = true;
    if (opt.wait_close > 0)
        closed = s_wait_closed(st, opt.stalled, opt.wait_close);
    int64_t worst = under.n ? under.us[under.n - 1] : 0;
    status = base.failed == 0 && under.failed == 0 && under.n > 0 &&
                     worst <= (int64_t)opt.max_ms * 1000 && refused == 0 && closed
                 ? 0
                 : 1;
    if (worst > (int64_t)opt.max_ms * 1000)
        printf("FAIL: a request took over %d ms while they stalled\n", opt.max_ms);
cleanup:
    for (int i = 0; st && i < opt.stalled; i++)
        if (st[i].fd >= 0)
            close(st[i].fd);
    free(st);
    free(base.us);
    free(under.us);
    return status;
}
