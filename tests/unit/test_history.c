/* test_history.c — per-room message history (src/hub/history.c).
 *
 * Every test but the memory-only ones uses a real SQLite file in a fresh
 * directory under /tmp, removed afterwards. Which path a read took (the
 * in-memory ring or the database) is made visible by changing a stored body
 * behind the history's back through a second connection: the ring still has
 * the old text, the database the new one. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "hub/history.h"
#include "switchboard.h"

#define MAX_GOT 64

static char dir[64];
static char db_path[128];

static void setup(void)
{
    strcpy(dir, "/tmp/sb-history-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    snprintf(db_path, sizeof db_path, "%s/history.db", dir);
}

static void teardown(void)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

TestSuite(history, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------------- */

static sb__history_t *open_with(const char *path, size_t cache, size_t max, uint64_t age)
{
    sb__history_config_t cfg = {
        .path = path, .cache_per_room = cache, .max_per_room = max, .max_age_ms = age};
    sb__history_t *h = NULL;
    const char *err = NULL;
    int rc = sb__history_open(&h, &cfg, &err);
    cr_assert_eq(rc, 0, "sb__history_open: %d (%s)", rc, err ? err : "no message");
    cr_assert_not_null(h);
    return h;
}

static sb__history_t *open_db(size_t cache)
{
    return open_with(db_path, cache, 0, 0);
}

/* The body of message id of room: tells both apart. */
static const char *body(const char *room, uint64_t id)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "{\"room\":\"%s\",\"text\":\"message %llu\"}", room,
             (unsigned long long)id);
    return buf;
}

static int64_t ts_of(uint64_t id)
{
    return 1700000000000 + (int64_t)id * 1000;
}

/* Appends n messages to room, checking each id. */
static void append_n(sb__history_t *h, const char *room, uint64_t first, size_t n)
{
    for (uint64_t id = first; id < first + n; id++) {
        const char *b = body(room, id);
        int64_t got = sb__history_append(h, room, ts_of(id), b, strlen(b));
        cr_assert_eq(got, (int64_t)id, "append to %s: id %lld, expected %llu", room, (long long)got,
                     (unsigned long long)id);
    }
}

typedef struct {
    size_t n;
    uint64_t ids[MAX_GOT];
    int64_t ts[MAX_GOT];
    char *bodies[MAX_GOT];
} got_t;

static void collect(void *arg, const sb__hist_entry_t *e)
{
    got_t *g = arg;
    cr_assert_lt(g->n, MAX_GOT);
    cr_assert_eq(e->json[e->len], '\0', "json is not NUL-terminated");
    g->ids[g->n] = e->id;
    g->ts[g->n] = e->ts_ms;
    g->bodies[g->n] = strndup(e->json, e->len);
    g->n++;
}

static void got_free(got_t *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->bodies[i]);
    g->n = 0;
}

/* Reads and checks that exactly the messages from..to (ascending, with their
 * bodies and timestamps) came back; to < from means none. */
static void expect_read(sb__history_t *h, const char *room, uint64_t since, size_t limit,
                        uint64_t from, uint64_t to)
{
    got_t g = {0};
    int n = sb__history_read(h, room, since, limit, collect, &g);
    size_t want = to >= from ? (size_t)(to - from + 1) : 0;
    cr_assert_eq(n, (int)want, "read %s since %llu limit %zu: %d messages, expected %zu", room,
                 (unsigned long long)since, limit, n, want);
    cr_assert_eq(g.n, want);
    for (size_t i = 0; i < want; i++) {
        cr_assert_eq(g.ids[i], from + i, "read %s since %llu: message %zu has id %llu", room,
                     (unsigned long long)since, i, (unsigned long long)g.ids[i]);
        cr_assert_str_eq(g.bodies[i], body(room, from + i));
        cr_assert_eq(g.ts[i], ts_of(from + i));
    }
    got_free(&g);
}

/* The body the next read returns for one message of room. */
static char *read_body(sb__history_t *h, const char *room, uint64_t since)
{
    got_t g = {0};
    cr_assert_eq(sb__history_read(h, room, since, 1, collect, &g), 1);
    char *b = g.bodies[0];
    return b;
}

static sqlite3 *peer_open(int flags)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(db_path, &db, flags, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    return db;
}

static long long peer_query(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s: %s", sql, sqlite3_errmsg(db));
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Changes a stored body behind the history's back. */
static void peer_tamper(const char *room, uint64_t id)
{
    sqlite3 *db = peer_open(SQLITE_OPEN_READWRITE);
    char *sql =
        sqlite3_mprintf("UPDATE messages SET body = 'tampered' WHERE room = %Q AND id = %llu", room,
                        (unsigned long long)id);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_changes(db), 1);
    sqlite3_free(sql);
    sqlite3_close(db);
}

/* ---- ids ----------------------------------------------------------------- */

Test(history, ids_start_at_one_and_increase_per_room)
{
    sb__history_t *h = open_db(0);
    cr_assert_eq(sb__history_next_id(h, "a"), 1);
    cr_assert_eq(sb__history_next_id(h, "a"), 1, "next_id must not reserve");
    append_n(h, "a", 1, 3);
    append_n(h, "b", 1, 2);
    append_n(h, "a", 4, 1);
    cr_assert_eq(sb__history_next_id(h, "a"), 5);
    cr_assert_eq(sb__history_next_id(h, "b"), 3);
    cr_assert_eq(sb__history_next_id(h, "c"), 1);
    cr_assert_eq(sb__history_commit(h), 0);
    sb__history_close(h);
}

Test(history, ids_and_messages_survive_a_reopen)
{
    sb__history_t *h = open_db(0);
    append_n(h, "a", 1, 5);
    append_n(h, "b", 1, 3);
    cr_assert_eq(sb__history_commit(h), 0);
    sb__history_close(h);

    h = open_db(0);
    cr_assert_eq(sb__history_next_id(h, "a"), 6);
    cr_assert_eq(sb__history_next_id(h, "b"), 4);
    expect_read(h, "a", 0, 50, 1, 5);
    expect_read(h, "b", 0, 50, 1, 3);
    append_n(h, "a", 6, 2);
    expect_read(h, "a", 3, 50, 4, 7);
    sb__history_close(h);
}

Test(history, close_commits_what_is_pending)
{
    sb__history_t *h = open_db(0);
    append_n(h, "a", 1, 4);
    sb__history_close(h);

    h = open_db(0);
    expect_read(h, "a", 0, 50, 1, 4);
    cr_assert_eq(sb__history_next_id(h, "a"), 5);
    sb__history_close(h);
}

/* ---- reads --------------------------------------------------------------- */

Test(history, read_limits_from_the_cache)
{
    sb__history_t *h = open_db(100);
    append_n(h, "a", 1, 10);
    expect_read(h, "a", 0, 50, 1, 10); /* since 0: all, fewer than the limit */
    expect_read(h, "a", 0, 3, 8, 10);  /* since 0: the last 3, ascending */
    expect_read(h, "a", 4, 50, 5, 10); /* exactly the later ones */
    expect_read(h, "a", 4, 3, 5, 7);   /* the oldest 3 after 4 */
    expect_read(h, "a", 10, 50, 1, 0); /* nothing after the last */
    expect_read(h, "a", 99, 50, 1, 0); /* nor after an id not reached yet */
    expect_read(h, "a", 0, 0, 1, 0);   /* limit 0 reads nothing */
    expect_read(h, "nobody", 0, 50, 1, 0);
    cr_assert_eq(sb__history_commit(h), 0);

    /* Served from the ring: a change in the database does not show. */
    peer_tamper("a", 9);
    char *b = read_body(h, "a", 8);
    cr_assert_str_eq(b, body("a", 9));
    free(b);
    sb__history_close(h);
}

Test(history, reads_past_the_cache_go_to_the_database)
{
    sb__history_t *h = open_db(3); /* the ring holds 8..10 */
    append_n(h, "a", 1, 10);
    expect_read(h, "a", 2, 50, 3, 10); /* before commit: same connection sees the batch */
    cr_assert_eq(sb__history_commit(h), 0);
    expect_read(h, "a", 2, 50, 3, 10);
    expect_read(h, "a", 2, 2, 3, 4);
    expect_read(h, "a", 0, 5, 6, 10);
    expect_read(h, "a", 0, 50, 1, 10);
    expect_read(h, "a", 7, 50, 8, 10);

    peer_tamper("a", 3);
    peer_tamper("a", 9);
    char *b = read_body(h, "a", 2); /* 3 is older than the ring: from the database */
    cr_assert_str_eq(b, "tampered");
    free(b);
    b = read_body(h, "a", 8); /* 9 is in the ring */
    cr_assert_str_eq(b, body("a", 9));
    free(b);
    sb__history_close(h);
}

Test(history, a_reopened_room_fills_its_cache_from_the_database)
{
    sb__history_t *h = open_db(4);
    append_n(h, "a", 1, 10);
    sb__history_close(h);

    h = open_db(4); /* loads 7..10 into the ring on first use */
    expect_read(h, "a", 0, 4, 7, 10);
    peer_tamper("a", 6);
    peer_tamper("a", 7);
    char *b = read_body(h, "a", 6);
    cr_assert_str_eq(b, body("a", 7), "7 should come from the ring");
    free(b);
    b = read_body(h, "a", 5);
    cr_assert_str_eq(b, "tampered", "6 should come from the database");
    free(b);
    sb__history_close(h);
}

Test(history, a_small_room_is_read_from_the_cache_after_reopen)
{
    sb__history_t *h = open_db(10);
    append_n(h, "a", 1, 3);
    sb__history_close(h);

    h = open_db(10);
    cr_assert_eq(sb__history_next_id(h, "a"), 4); /* loads all 3 */
    peer_tamper("a", 1);
    char *b = read_body(h, "a", 0); /* limit 1: the last one, 3 */
    cr_assert_str_eq(b, body("a", 3));
    free(b);
    got_t g = {0};
    cr_assert_eq(sb__history_read(h, "a", 0, 50, collect, &g), 3);
    cr_assert_str_eq(g.bodies[0], body("a", 1), "the whole room is in the ring");
    got_free(&g);
    sb__history_close(h);
}

/* ---- batches ------------------------------------------------------------- */

Test(history, appends_are_visible_to_others_only_after_commit)
{
    sb__history_t *h = open_db(0);
    sqlite3 *peer = peer_open(SQLITE_OPEN_READONLY);
    append_n(h, "a", 1, 3);
    cr_assert_eq(peer_query(peer, "SELECT count(*) FROM messages"), 0);
    cr_assert_eq(sb__history_commit(h), 0);
    cr_assert_eq(peer_query(peer, "SELECT count(*) FROM messages WHERE room = 'a'"), 3);
    cr_assert_eq(peer_query(peer, "SELECT last_id FROM rooms WHERE name = 'a'"), 3);

    append_n(h, "a", 4, 1);
    cr_assert_eq(peer_query(peer, "SELECT count(*) FROM messages"), 3);
    cr_assert_eq(sb__history_commit(h), 0);
    cr_assert_eq(peer_query(peer, "SELECT count(*) FROM messages"), 4);
    cr_assert_eq(sb__history_commit(h), 0, "an empty commit is a no-op");
    sqlite3_close(peer);
    sb__history_close(h);
}

/* kill -9 after commit: everything committed is there, ids go on after it. */
Test(history, committed_messages_survive_a_kill)
{
    enum { K = 40 };
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        sb__history_config_t cfg = {.path = db_path};
        sb__history_t *h = NULL;
        if (sb__history_open(&h, &cfg, NULL))
            _exit(1);
        for (uint64_t id = 1; id <= K + 3; id++) {
            const char *b = body("a", id);
            if (sb__history_append(h, "a", ts_of(id), b, strlen(b)) != (int64_t)id)
                _exit(2);
            if (id % 10 == 0 && sb__history_commit(h))
                _exit(3);
        }
        /* The last 3 are not committed: a crash may lose what was never
         * delivered. */
        raise(SIGKILL);
        _exit(4);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "the child did not get to the kill (status %d)", status);

    sb__history_t *h = open_db(10);
    cr_assert_eq(sb__history_next_id(h, "a"), K + 1);
    expect_read(h, "a", 0, 50, 1, K);
    expect_read(h, "a", 25, 50, 26, K);
    sb__history_close(h);
}

/* A commit that leaves CKPT_PAGES (1000) pages in the WAL gets it copied into
 * the database file by the checkpoint thread, while the history is open. */
Test(history, the_wal_is_checkpointed_in_the_background)
{
    sb__history_t *h = open_db(1);
    static char big[4000];
    memset(big, 'x', sizeof big - 1);
    for (uint64_t id = 1; id <= 1100; id++)
        cr_assert_eq(sb__history_append(h, "big", 0, big, sizeof big - 1), (int64_t)id);
    cr_assert_eq(sb__history_commit(h), 0);

    struct stat st = {0};
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        cr_assert_eq(stat(db_path, &st), 0);
        if (st.st_size >= 1000 * 4096)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        cr_assert_lt(now.tv_sec - start.tv_sec, 10, "no checkpoint: database file %lld bytes",
                     (long long)st.st_size);
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    }
    sb__history_close(h);
}

/* ---- retention ----------------------------------------------------------- */

Test(history, retention_by_count_keeps_the_newest)
{
    sb__history_t *h = open_with(db_path, 5, 3, 0);
    append_n(h, "a", 1, 10);
    append_n(h, "b", 1, 2);
    cr_assert_eq(sb__history_trim(h, 0), 7);
    expect_read(h, "a", 0, 50, 8, 10);
    expect_read(h, "a", 1, 50, 8, 10);
    expect_read(h, "b", 0, 50, 1, 2);
    cr_assert_eq(sb__history_commit(h), 0);
    sqlite3 *peer = peer_open(SQLITE_OPEN_READONLY);
    cr_assert_eq(peer_query(peer, "SELECT count(*) FROM messages"), 5);
    sqlite3_close(peer);
    cr_assert_eq(sb__history_trim(h, 0), 0, "nothing new to trim");
    append_n(h, "a", 11, 1);
    cr_assert_eq(sb__history_trim(h, 0), 1);
    expect_read(h, "a", 0, 50, 9, 11);
    sb__history_close(h);

    /* A lower limit after a restart reaches rooms nobody has used yet. */
    h = open_with(db_path, 5, 2, 0);
    cr_assert_eq(sb__history_trim(h, 0), 1);
    expect_read(h, "a", 0, 50, 10, 11);
    expect_read(h, "b", 0, 50, 1, 2);
    cr_assert_eq(sb__history_next_id(h, "a"), 12);
    sb__history_close(h);
}

Test(history, retention_by_age)
{
    sb__history_t *h = open_with(db_path, 0, 0, 2500);
    append_n(h, "a", 1, 4);                               /* ts_of(1..4): base + 1000..4000 */
    cr_assert_eq(sb__history_trim(h, ts_of(4) + 500), 1); /* cutoff ts_of(2): 1 goes */
    expect_read(h, "a", 0, 50, 2, 4);
    expect_read(h, "a", 1, 50, 2, 4);
    cr_assert_eq(sb__history_trim(h, ts_of(4) + 500), 0);

    /* Everything expires: ids still go on, also after a restart. */
    cr_assert_eq(sb__history_trim(h, ts_of(100)), 3);
    expect_read(h, "a", 0, 50, 1, 0);
    cr_assert_eq(sb__history_next_id(h, "a"), 5);
    sb__history_close(h);

    h = open_with(db_path, 0, 0, 2500);
    expect_read(h, "a", 0, 50, 1, 0);
    cr_assert_eq(sb__history_next_id(h, "a"), 5);
    append_n(h, "a", 5, 1);
    expect_read(h, "a", 0, 50, 5, 5);
    sb__history_close(h);
}

Test(history, a_dropped_room_used_again_continues_its_ids)
{
    sb__history_t *h = open_db(0);
    append_n(h, "a", 1, 3);
    append_n(h, "b", 1, 1);
    cr_assert_eq(sb__history_commit(h), 0);
    cr_assert_eq(sb__history_drop(h, "a"), 0);
    expect_read(h, "a", 0, 50, 1, 0);
    cr_assert_eq(sb__history_commit(h), 0);
    /* The room's memory is gone; its last id is not. */
    cr_assert_eq(sb__history_next_id(h, "a"), 4);
    expect_read(h, "a", 0, 50, 1, 0);
    append_n(h, "a", 4, 1);
    expect_read(h, "a", 0, 50, 4, 4);
    expect_read(h, "b", 0, 50, 1, 1);

    /* Dropped with uncommitted appends, then a restart. */
    append_n(h, "a", 5, 2);
    cr_assert_eq(sb__history_drop(h, "a"), 0);
    cr_assert_eq(sb__history_drop(h, "never-seen"), 0);
    sb__history_close(h);

    h = open_db(0);
    expect_read(h, "a", 0, 50, 1, 0);
    cr_assert_eq(sb__history_next_id(h, "a"), 7);
    append_n(h, "a", 7, 1);
    sb__history_close(h);
}

/* ---- memory only --------------------------------------------------------- */

Test(history, memory_only_keeps_the_ring)
{
    sb__history_t *h = open_with(NULL, 3, 0, 0);
    cr_assert_eq(sb__history_next_id(h, "a"), 1);
    append_n(h, "a", 1, 5);
    append_n(h, "b", 1, 1);
    cr_assert_eq(sb__history_commit(h), 0);
    expect_read(h, "a", 0, 50, 3, 5);
    expect_read(h, "a", 3, 50, 4, 5);
    expect_read(h, "a", 1, 50, 3, 5); /* older than the ring: what the ring has */
    expect_read(h, "a", 0, 2, 4, 5);

    cr_assert_eq(sb__history_drop(h, "a"), 0);
    expect_read(h, "a", 0, 50, 1, 0);
    cr_assert_eq(sb__history_next_id(h, "a"), 6);
    append_n(h, "a", 6, 1);
    expect_read(h, "a", 0, 50, 6, 6);
    sb__history_close(h);
}

Test(history, memory_only_retention)
{
    sb__history_t *h = open_with(NULL, 10, 2, 0);
    append_n(h, "a", 1, 5);
    cr_assert_eq(sb__history_trim(h, 0), 3);
    expect_read(h, "a", 0, 50, 4, 5);
    sb__history_close(h);

    h = open_with(NULL, 10, 0, 1500);
    append_n(h, "a", 1, 3);
    cr_assert_eq(sb__history_trim(h, ts_of(3)), 1); /* cutoff ts_of(1.5) */
    expect_read(h, "a", 0, 50, 2, 3);
    cr_assert_eq(sb__history_next_id(h, "a"), 4);
    sb__history_close(h);
}

/* ---- errors -------------------------------------------------------------- */

Test(history, an_unopenable_path_says_what_failed)
{
    char path[160];
    snprintf(path, sizeof path, "%s/no-such-dir/history.db", dir);
    sb__history_config_t cfg = {.path = path};
    sb__history_t *h = (sb__history_t *)&cfg; /* must be reset to NULL */
    const char *err = NULL;
    cr_assert_eq(sb__history_open(&h, &cfg, &err), SB_EIO);
    cr_assert_null(h);
    cr_assert_not_null(err);
    cr_assert(strstr(err, path), "the message does not name the file: %s", err);
    cr_assert(strstr(err, "unable to open database file"), "unexpected message: %s", err);
    cr_assert(strstr(err, "directory exists"), "the message gives no hint: %s", err);

    cfg.path = "";
    cr_assert_eq(sb__history_open(&h, &cfg, &err), SB_EINVAL);
    cr_assert_null(h);
    cr_assert(err && strstr(err, "empty"), "unexpected message: %s", err);
}

Test(history, a_file_that_is_not_a_database_says_so)
{
    FILE *f = fopen(db_path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 100; i++)
        fputs("this is not a database file, just text\n", f);
    fclose(f);
    sb__history_config_t cfg = {.path = db_path};
    sb__history_t *h = NULL;
    const char *err = NULL;
    cr_assert_eq(sb__history_open(&h, &cfg, &err), SB_EIO);
    cr_assert_null(h);
    cr_assert(err && strstr(err, "not a database"), "unexpected message: %s", err);
}

Test(history, bad_arguments)
{
    const char *err = NULL;
    sb__history_t *h = NULL;
    cr_assert_eq(sb__history_open(&h, NULL, &err), SB_EINVAL);
    cr_assert_not_null(err);
    sb__history_close(NULL);
    cr_assert_eq(sb__history_next_id(NULL, "a"), 0);
    cr_assert_eq(sb__history_append(NULL, "a", 0, "{}", 2), SB_EINVAL);
    cr_assert_eq(sb__history_commit(NULL), SB_EINVAL);
    cr_assert_eq(sb__history_read(NULL, "a", 0, 1, collect, NULL), SB_EINVAL);
    cr_assert_eq(sb__history_drop(NULL, "a"), SB_EINVAL);
    cr_assert_eq(sb__history_trim(NULL, 0), SB_EINVAL);

    h = open_with(NULL, 0, 0, 0);
    cr_assert_eq(sb__history_append(h, NULL, 0, "{}", 2), SB_EINVAL);
    cr_assert_eq(sb__history_append(h, "a", 0, NULL, 0), SB_EINVAL);
    cr_assert_eq(sb__history_read(h, "a", 0, 1, NULL, NULL), SB_EINVAL);
    cr_assert_eq(sb__history_next_id(h, "a"), 1, "failed appends take no id");
    sb__history_close(h);
}
