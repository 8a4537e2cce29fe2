/*
 * history.h — per-room message history: ids, an in-memory cache of the most
 * recent messages, and SQLite (WAL) underneath so history survives a
 * restart. Loop-thread only, except where noted.
 */
#ifndef SB_HUB_HISTORY_H
#define SB_HUB_HISTORY_H

#include <stddef.h>
#include <stdint.h>

typedef struct sb__history_s sb__history_t;

typedef struct sb__hist_entry_s {
    uint64_t id;      /* per room, strictly increasing, never reused */
    int64_t ts_ms;    /* Unix time in milliseconds */
    const char *json; /* the message exactly as delivered (a JSON object) */
    size_t len;
} sb__hist_entry_t;

typedef struct sb__history_config_s {
    const char *path;      /* SQLite file; NULL keeps history in memory only */
    size_t cache_per_room; /* recent messages kept in memory per room (default 100) */
    size_t max_per_room;   /* retention by count in the database; 0 = unlimited */
    uint64_t max_age_ms;   /* retention by age; 0 = unlimited */
} sb__history_config_t;

/* Opens (creating if needed) the history. Returns 0 or a negative SB_E*;
 * *err (may be NULL) gets a static or internal message saying what failed. */
int sb__history_open(sb__history_t **out, const sb__history_config_t *cfg, const char **err);

/* Commits what is pending and closes. NULL-safe. */
void sb__history_close(sb__history_t *h);

/* The next id for room (1 for a room never seen, last + 1 after a
 * restart). Does not reserve it: sb__history_append does. */
uint64_t sb__history_next_id(sb__history_t *h, const char *room);

/* Appends a message with id = sb__history_next_id(room). The write joins the
 * current batch; it is durable against a process crash once
 * sb__history_commit returns. Returns the id or a negative SB_E*. */
int64_t sb__history_append(sb__history_t *h, const char *room, int64_t ts_ms, const char *json,
                           size_t len);

/* Commits the current batch (a no-op when nothing is pending). The server
 * calls it once per loop iteration, before queued frames are written, so
 * nothing is delivered that is not stored. Returns 0 or a negative SB_E*. */
int sb__history_commit(sb__history_t *h);

/* Calls fn for each message of room in ascending id order: those with
 * id > since_id, at most limit of them (the oldest first); with since_id 0,
 * the last limit messages. Returns the number of calls or a negative SB_E*. */
int sb__history_read(sb__history_t *h, const char *room, uint64_t since_id, size_t limit,
                     void (*fn)(void *arg, const sb__hist_entry_t *e), void *arg);

/* Forgets a room's history (memory and database). */
int sb__history_drop(sb__history_t *h, const char *room);

/* Applies the retention settings (called periodically). Returns the number of
 * messages removed or a negative SB_E*. */
int sb__history_trim(sb__history_t *h, int64_t now_ms);

#endif /* SB_HUB_HISTORY_H */
