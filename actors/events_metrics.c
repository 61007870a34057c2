/*  events_metrics.c - /metrics lines for outboxes and relays
 *  (events_metrics.h).
 *
 *  The depth counts from what the relay has sent (relay_stats_sent), not
 *  from the outbox's published mark, which is written only every 100 ms;
 *  the outbox is read in its own read transaction, so a scrape never
 *  waits for a writer.
 */
#include "actors/events_metrics.h"
#include "protocol/clock.h"

#include <czmq.h>

typedef struct {
    zchunk_t *text;
    const char *service;
} s_out_t;

static void s_append(zchunk_t *text, const char *format, ...)
{
    char line[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line, sizeof line, format, args);
    va_end(args);
    if (n > 0)
        zchunk_extend(text, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void s_type(const char *type, uint64_t count, void *arg)
{
    s_out_t *out = arg;
    s_append(out->text, "retail_events_published_total{service=\"%s\",type=\"%s\"} %llu\n",
             out->service, type, (unsigned long long)count);
}

static int s_first_at(const outbox_event_t *event, void *arg)
{
    *(int64_t *)arg = event->at_ms;
    return 1;
}

char *events_metrics(service_t *const *running, size_t n)
{
    zchunk_t *text = zchunk_new(NULL, 4096);
    if (!text)
        return NULL;
    s_append(text, "# HELP retail_events_published_total Events handed to the event stream.\n"
                   "# TYPE retail_events_published_total counter\n");
    for (size_t i = 0; i < n; i++) {
        relay_stats_t *stats = running[i] ? service_relay_stats(running[i]) : NULL;
        if (stats) {
            s_out_t out = {text, service_def(running[i])->name};
            relay_stats_each(stats, s_type, &out);
        }
    }
    /* read each outbox once, then print each family in one group, as
     * the text format wants */
    typedef struct {
        const char *name;
        uint64_t depth, kept;
        double age;
    } s_row_t;
    s_row_t *rows = calloc(n ? n : 1, sizeof *rows);
    if (!rows) {
        zchunk_destroy(&text);
        return NULL;
    }
    size_t count = 0;
    int64_t now = clock_now_ms();
    for (size_t i = 0; i < n; i++) {
        outbox_t *outbox = running[i] ? service_outbox(running[i]) : NULL;
        outbox_state_t state;
        if (!outbox || outbox_state(outbox, &state) != 0)
            continue;
        relay_stats_t *stats = service_relay_stats(running[i]);
        uint64_t sent = stats ? relay_stats_sent(stats) : state.published;
        if (sent < state.published)
            sent = state.published;
        uint64_t last = state.next - 1;
        s_row_t *row = &rows[count++];
        row->name = service_def(running[i])->name;
        row->depth = last > sent ? last - sent : 0;
        row->kept = state.first ? state.next - state.first : 0;
        int64_t oldest_at = 0;
        if (row->depth > 0)
            outbox_read(outbox, sent + 1, 1, s_first_at, &oldest_at);
        row->age = oldest_at > 0 && now > oldest_at ? (double)(now - oldest_at) / 1000.0 : 0.0;
    }
    s_append(text, "# HELP retail_outbox_depth Events committed and not yet handed to the stream.\n"
                   "# TYPE retail_outbox_depth gauge\n");
    for (size_t i = 0; i < count; i++)
        s_append(text, "retail_outbox_depth{service=\"%s\"} %llu\n", rows[i].name,
                 (unsigned long long)rows[i].depth);
    s_append(text, "# HELP retail_outbox_oldest_unpublished_seconds Age of the oldest of those.\n"
                   "# TYPE retail_outbox_oldest_unpublished_seconds gauge\n");
    for (size_t i = 0; i < count; i++)
        s_append(text, "retail_outbox_oldest_unpublished_seconds{service=\"%s\"} %.3f\n",
                 rows[i].name, rows[i].age);
    s_append(text, "# HELP retail_outbox_kept Events kept for events.since.\n"
                   "# TYPE retail_outbox_kept gauge\n");
    for (size_t i = 0; i < count; i++)
        s_append(text, "retail_outbox_kept{service=\"%s\"} %llu\n", rows[i].name,
                 (unsigned long long)rows[i].kept);
    free(rows);
    zchunk_extend(text, "", 1);
    char *result = strdup((char *)zchunk_data(text));
    zchunk_destroy(&text);
    return result;
}
