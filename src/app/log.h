/* log.h — the server's log: one structured line per event on stderr,
 *
 *     2026-01-02T03:04:05.678Z info access proto=http method=GET path=/health status=200 ...
 *
 * time (UTC, milliseconds), level, event, then key=value fields; a value
 * with spaces, quotes, '=' or control characters is double-quoted with
 * backslash escapes. The library's own messages become "lib" events with
 * the text in msg="...". Lines are written with one call each, so lines of
 * different threads never mix. */
#ifndef SB_APP_LOG_H
#define SB_APP_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "app/app.h"
#include "switchboard.h"

#define LOG_LINE_MAX 4096

/* Least severe level written (default info). Thread-safe. */
void log_set_level(sb_log_level_t level);
int log_enabled(sb_log_level_t level);
/* "error", "warn", "info" or "debug". */
const char *log_level_name(sb_log_level_t level);

/* A line being built. Fields past LOG_LINE_MAX are cut (the line says so). */
typedef struct log_line_s {
    char buf[LOG_LINE_MAX];
    size_t len;
    int on; /* the level is enabled */
} log_line_t;

/* Starts a line; returns 0 (and the line is a no-op) when level is off. */
int log_begin(log_line_t *l, sb_log_level_t level, const char *event);
void log_str(log_line_t *l, const char *key, const char *value); /* NULL value: skipped */
void log_u64(log_line_t *l, const char *key, uint64_t value);
void log_fmt(log_line_t *l, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes the line. */
void log_end(log_line_t *l);

/* Ends the field list of log_event (a typed null pointer, as variadic
 * functions need). */
#define LOG_END ((const char *)NULL)

/* A line of string fields: log_event(SB_LOG_INFO, "started", "port", "8080", LOG_END). */
void log_event(sb_log_level_t level, const char *event, ...);

/* sb_log_fn for the library (data unused). */
void log_library(void *data, sb_log_level_t level, const char *msg);
/* sb_access_fn: an "access" line when app->access_log is on (data is the app_t). */
void log_access(void *data, const sb_access_t *entry);
/* Writes the "stats" line of app: connections, users, rooms, and messages
 * and bytes per second since the previous stats line (or the start). */
void log_stats(app_t *app);

#endif /* SB_APP_LOG_H */
