/* log.c — structured log lines on stderr (see log.h). */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "app/log.h"

static atomic_int level_on = SB_LOG_INFO;

void log_set_level(sb_log_level_t level)
{
    atomic_store(&level_on, (int)level);
}

int log_enabled(sb_log_level_t level)
{
    return (int)level <= atomic_load(&level_on);
}

const char *log_level_name(sb_log_level_t level)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    return (unsigned)level < 4 ? names[level] : "info";
}

static void put(log_line_t *l, const char *s, size_t n)
{
    /* room for " ...cut\n" */
    if (l->len + n + 9 > sizeof l->buf) {
        if (l->len + 8 < sizeof l->buf && !strstr(l->buf, " ...cut")) {
            memcpy(l->buf + l->len, " ...cut", 7);
            l->len += 7;
            l->buf[l->len] = '\0';
        }
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    l->buf[l->len] = '\0';
}

int log_begin(log_line_t *l, sb_log_level_t level, const char *event)
{
    l->len = 0;
    l->buf[0] = '\0';
    if (!(l->on = log_enabled(level)))
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char head[64];
    size_t n = strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(head + n, sizeof head - n, ".%03ldZ %s ", ts.tv_nsec / 1000000,
                          log_level_name(level));
    put(l, head, n);
    put(l, event, strlen(event));
    return 1;
}

/* Does value need quotes to stay one field? */
static int needs_quotes(const char *v)
{
    if (!*v)
        return 1;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            return 1;
    return 0;
}

void log_str(log_line_t *l, const char *key, const char *value)
{
    if (!l->on || !value)
        return;
    put(l, " ", 1);
    put(l, key, strlen(key));
    put(l, "=", 1);
    if (!needs_quotes(value)) {
        put(l, value, strlen(value));
        return;
    }
    char buf[LOG_LINE_MAX];
    size_t o = 0;
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)value; *p && o + 8 < sizeof buf; p++) {
        if (*p == '"' || *p == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)*p;
        } else if (*p == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (*p == '\t') {
            buf[o++] = '\\';
            buf[o++] = 't';
        } else if (*p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", *p);
        } else
            buf[o++] = (char)*p;
    }
    buf[o++] = '"';
    put(l, buf, o);
}

void log_u64(log_line_t *l, const char *key, uint64_t value)
{
    if (!l->on)
        return;
    char v[24];
    snprintf(v, sizeof v, "%llu", (unsigned long long)value);
    log_str(l, key, v);
}

void log_fmt(log_line_t *l, const char *key, const char *fmt, ...)
{
    if (!l->on)
        return;
    char v[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    log_str(l, key, v);
}

void log_end(log_line_t *l)
{
    if (!l->on)
        return;
    l->buf[l->len++] = '\n';
    /* One call per line: stdio locks the stream for it, so the lines of the
     * loop and of the signal thread never interleave. */
    fwrite(l->buf, 1, l->len, stderr);
    l->on = 0;
}

void log_event(sb_log_level_t level, const char *event, ...)
{
    log_line_t l;
    if (!log_begin(&l, level, event))
        return;
    va_list ap;
    va_start(ap, event);
    for (const char *k; (k = va_arg(ap, const char *));)
        log_str(&l, k, va_arg(ap, const char *));
    va_end(ap);
    log_end(&l);
}

void log_library(void *data, sb_log_level_t level, const char *msg)
{
    (void)data;
    log_line_t l;
    if (!log_begin(&l, level, "lib"))
        return;
    log_str(&l, "msg", msg);
    log_end(&l);
}

void log_access(void *data, const sb_access_t *e)
{
    app_t *app = data;
    log_line_t l;
    if (!app->access_log || !log_begin(&l, SB_LOG_INFO, "access"))
        return;
    log_str(&l, "proto", e->websocket ? "ws" : "http");
    log_str(&l, "peer", e->peer);
    log_str(&l, "method", e->method);
    log_str(&l, "path", e->path);
    log_fmt(&l, "status", "%d", e->status);
    log_u64(&l, "duration_ms", e->duration_ms);
    log_u64(&l, "bytes_in", e->bytes_in);
    log_u64(&l, "bytes_out", e->bytes_out);
    if (e->websocket) {
        log_u64(&l, "msgs_in", e->msgs_in);
        log_u64(&l, "msgs_out", e->msgs_out);
        log_fmt(&l, "close", "%d", e->close_code);
    }
    log_end(&l);
}

void log_stats(app_t *app)
{
    sb_metrics_t m;
    sb_server_metrics(app->server, &m);
    uint64_t now = sb_server_now(app->server);
    double secs = (double)(now - app->stats_last_ms) / 1000.0;
    if (secs <= 0)
        secs = 1e-3;
    log_line_t l;
    if (log_begin(&l, SB_LOG_INFO, "stats")) {
        log_u64(&l, "connections", m.connections);
        log_u64(&l, "users", sb_hub_user_count(app->hub));
        log_u64(&l, "rooms", sb_hub_rooms(app->hub, NULL, 0));
        log_fmt(&l, "msgs_in_per_s", "%.1f",
                (double)(m.messages_in - app->stats_last.messages_in) / secs);
        log_fmt(&l, "msgs_out_per_s", "%.1f",
                (double)(m.messages_out - app->stats_last.messages_out) / secs);
        log_fmt(&l, "bytes_in_per_s", "%.0f",
                (double)(m.bytes_in - app->stats_last.bytes_in) / secs);
        log_fmt(&l, "bytes_out_per_s", "%.0f",
                (double)(m.bytes_out - app->stats_last.bytes_out) / secs);
        log_u64(&l, "messages_in", m.messages_in);
        log_u64(&l, "messages_out", m.messages_out);
        log_u64(&l, "slow_consumers", m.slow_consumers);
        log_end(&l);
    }
    app->stats_last = m;
    app->stats_last_ms = now;
}
