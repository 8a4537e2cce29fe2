/* history.c — per-room message history: ids, a ring of each room's newest
 * messages, and SQLite (WAL) underneath.
 *
 * Durability. Appends join a batch (one transaction) that sb__history_commit
 * ends; the server commits once per loop iteration, before it writes frames.
 * With journal_mode=WAL and synchronous=NORMAL a commit is a write() to the
 * WAL and no fsync: the bytes are in the kernel, so they survive the process
 * being killed (kill -9, a crash), though not a power cut. That is the promise
 * ("nothing delivered is lost"), for one write() per iteration.
 *
 * Checkpoints (copying the WAL into the database file, with fsync) never run
 * on the loop thread: auto-checkpointing is off, and a small thread with its
 * own connection runs PASSIVE checkpoints when a commit leaves CKPT_PAGES more
 * pages in the WAL, and every CKPT_PERIOD_S seconds after a write. A passive
 * checkpoint takes no lock a writer waits for, so commits never stall on it.
 * Known limit: SQLite rewinds the WAL only when a checkpoint finished with no
 * commit in between, so under writes that never pause for one checkpoint's
 * length the WAL keeps growing until they do.
 *
 * The cache. Each room keeps its newest messages (cache_per_room) in a ring
 * with copies of their JSON. cache_from says from which id on the ring is the
 * whole truth (every stored message with id >= cache_from is in it), so a read
 * that starts there needs no query. A room is loaded on first use: its last
 * id (from the rooms table, which keeps it after its messages are trimmed or
 * dropped) and its newest messages. Without a database (path NULL) the ring is
 * all there is: a read reaching further back than it gets what it holds.
 *
 * Loop-thread only; the checkpoint thread touches nothing but its own
 * connection and the ckpt_t fields under its mutex.
 */
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

/* An allocation failure inside uthash must come back to us, not exit(). */
#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#include "hub/history.h"
#include "switchboard.h"

#define CACHE_DEFAULT 100
#define RING_MIN 4
/* Only another process writing the same file makes us wait; bounded. */
#define BUSY_TIMEOUT_MS 2000
/* The WAL growth (in pages, 4 KiB by default) that asks for a checkpoint:
 * SQLite's own auto-checkpoint default. */
#define CKPT_PAGES 1000
#define CKPT_PERIOD_S 5

typedef struct slot_s {
    uint64_t id;
    int64_t ts_ms;
    char *json; /* owned, NUL-terminated */
    size_t len;
} slot_t;

typedef struct room_s {
    UT_hash_handle hh;
    struct room_s *next_dirty;
    uint64_t last_id;    /* the last id handed out */
    uint64_t cache_from; /* every stored message with id >= cache_from is in the ring */
    slot_t *ring;        /* ring[head] is the oldest */
    size_t cap, head, count;
    bool dirty;    /* on h->dirty: its last_id is written when the batch commits */
    bool dropped;  /* freed when the batch commits, unless used again before */
    bool appended; /* since the last trim */
    char name[];
} room_t;

typedef struct ckpt_s {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    sqlite3 *db;  /* used by the thread only, once started */
    bool written; /* committed since the last checkpoint */
    bool requested;
    bool stop;
    int wal_pages;  /* after the last commit */
    int request_at; /* WAL size that asks for the next checkpoint */
    int inited;     /* 1: mutex, 2: + cond, 3: + thread */
} ckpt_t;

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_LOAD,
    ST_INSERT,
    ST_UPSERT,
    ST_SINCE,
    ST_LAST,
    ST_DROP,
    ST_TRIM_ROOM,
    ST_TRIM_ALL,
    ST_TRIM_AGE,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    /* max() of both: ids never go back, even if the two ever disagree. */
    [ST_LOAD] = "SELECT (SELECT last_id FROM rooms WHERE name = ?1),"
                " (SELECT max(id) FROM messages WHERE room = ?1)",
    [ST_INSERT] = "INSERT INTO messages (room, id, ts, body) VALUES (?1, ?2, ?3, ?4)",
    [ST_UPSERT] = "INSERT INTO rooms (name, last_id) VALUES (?1, ?2) ON CONFLICT (name)"
                  " DO UPDATE SET last_id = max(last_id, excluded.last_id)",
    [ST_SINCE] = "SELECT id, ts, body FROM messages WHERE room = ?1 AND id > ?2"
                 " ORDER BY id LIMIT ?3",
    [ST_LAST] = "SELECT id, ts, body FROM (SELECT id, ts, body FROM messages WHERE room = ?1"
                " ORDER BY id DESC LIMIT ?2) ORDER BY id",
    [ST_DROP] = "DELETE FROM messages WHERE room = ?1",
    [ST_TRIM_ROOM] = "DELETE FROM messages WHERE room = ?1 AND id <= ?2",
    /* CROSS JOIN keeps rooms the outer loop: one seek per room instead of a
     * scan of every message. */
    [ST_TRIM_ALL] = "DELETE FROM messages WHERE (room, id) IN (SELECT m.room, m.id FROM rooms AS r"
                    " CROSS JOIN messages AS m ON m.room = r.name AND m.id <= r.last_id - ?1)",
    [ST_TRIM_AGE] = "DELETE FROM messages WHERE ts < ?1",
};

/* WITHOUT ROWID: rows are stored in (room, id) order, so a room's history is
 * one contiguous range of the primary key and reads are a single seek. The ts
 * index makes age retention cost what it removes; it is appended at its right
 * edge, so it adds little to an insert. */
static const char schema_sql[] = "CREATE TABLE IF NOT EXISTS rooms ("
                                 " name TEXT PRIMARY KEY NOT NULL,"
                                 " last_id INTEGER NOT NULL) WITHOUT ROWID;"
                                 "CREATE TABLE IF NOT EXISTS messages ("
                                 " room TEXT NOT NULL,"
                                 " id INTEGER NOT NULL,"
                                 " ts INTEGER NOT NULL,"
                                 " body TEXT NOT NULL,"
                                 " PRIMARY KEY (room, id)) WITHOUT ROWID;"
                                 "CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts);";

struct sb__history_s {
    sb__history_config_t cfg; /* path not kept */
    sqlite3 *db;              /* NULL: memory only */
    sqlite3_stmt *st[ST_COUNT];
    ckpt_t *ckpt;    /* NULL without a database, or with a SQLite built without threads */
    room_t *rooms;   /* uthash table */
    room_t *dirty;   /* rooms touched by the current batch */
    bool in_batch;   /* BEGIN done, COMMIT not yet */
    bool batch_lost; /* a batch was rolled back since the last commit call */
    bool trimmed;    /* a trim has run on every room in the database */
};

/* ---- rooms and their rings ---------------------------------------------- */

static slot_t *ring_at(const room_t *r, size_t i)
{
    return &r->ring[(r->head + i) % r->cap];
}

static void ring_clear(room_t *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(ring_at(r, i)->json);
    free(r->ring);
    r->ring = NULL;
    r->cap = r->head = r->count = 0;
}

/* Makes room for one more message: grows the ring (doubling, up to max) when
 * it is full and may still grow; a ring at max evicts on push instead. */
static int ring_reserve(room_t *r, size_t max)
{
    if (r->count < r->cap || (r->cap && r->cap >= max))
        return 0;
    size_t cap = r->cap ? r->cap * 2 : RING_MIN;
    if (cap > max)
        cap = max ? max : 1;
    slot_t *ring = malloc(cap * sizeof *ring);
    if (!ring)
        return SB_ENOMEM;
    if (r->count) { /* linearise: the oldest moves to index 0 */
        size_t first = r->cap - r->head < r->count ? r->cap - r->head : r->count;
        memcpy(ring, r->ring + r->head, first * sizeof *ring);
        memcpy(ring + first, r->ring, (r->count - first) * sizeof *ring);
    }
    free(r->ring);
    r->ring = ring;
    r->cap = cap;
    r->head = 0;
    return 0;
}

/* Appends s (ring_reserve done), evicting the oldest message when full. */
static void ring_push(room_t *r, slot_t s)
{
    if (r->count == r->cap) {
        slot_t *old = ring_at(r, 0);
        r->cache_from = old->id + 1;
        free(old->json);
        r->head = (r->head + 1) % r->cap;
        r->count--;
    }
    *ring_at(r, r->count) = s;
    r->count++;
}

/* Removes messages with id <= max_id, and with by_age those with ts below
 * min_ts. Returns how many. */
static size_t ring_trim(room_t *r, uint64_t max_id, bool by_age, int64_t min_ts)
{
    size_t kept = 0;
    for (size_t i = 0; i < r->count; i++) {
        slot_t *s = ring_at(r, i);
        if (s->id <= max_id || (by_age && s->ts_ms < min_ts))
            free(s->json);
        else
            *ring_at(r, kept++) = *s;
    }
    size_t removed = r->count - kept;
    r->count = kept;
    return removed;
}

static void room_free(room_t *r)
{
    if (!r)
        return;
    ring_clear(r);
    free(r);
}

static void mark_dirty(sb__history_t *h, room_t *r)
{
    if (r->dirty)
        return;
    r->dirty = true;
    r->next_dirty = h->dirty;
    h->dirty = r;
}

/* ---- SQLite helpers ----------------------------------------------------- */

/* A batch SQLite rolled back by itself (an I/O error, a full disk) lost its
 * messages, and its trims and drops: start every cache over (reads go to the
 * database until the rings fill again) and let the next commit report it.
 * Rooms stay dirty, so the next batch writes their last ids and an id handed
 * out meanwhile is never handed out again, not even after a restart. */
static void batch_lost(sb__history_t *h)
{
    h->in_batch = false;
    h->batch_lost = true;
    for (room_t *r = h->rooms; r; r = r->hh.next) {
        ring_clear(r);
        r->cache_from = r->last_id + 1;
    }
}

/* Maps a failed SQLite call to an SB_E* code, noticing a lost batch. */
static int db_fail(sb__history_t *h, int rc)
{
    if (h->in_batch && sqlite3_get_autocommit(h->db))
        batch_lost(h);
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return SB_ENOMEM;
    case SQLITE_TOOBIG:
        return SB_ELIMIT;
    default:
        return SB_EIO;
    }
}

/* Runs a statement that returns no rows (bindings done) and resets it. */
static int run(sb__history_t *h, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_fail(h, rc);
}

static int bind_name(sqlite3_stmt *st, int i, const char *name)
{
    return sqlite3_bind_text(st, i, name, -1, SQLITE_STATIC);
}

static int batch_begin(sb__history_t *h)
{
    if (h->in_batch)
        return 0;
    int rc = run(h, h->st[ST_BEGIN]);
    if (rc)
        return rc;
    h->in_batch = true;
    return 0;
}

/* ---- loading a room ------------------------------------------------------ */

/* Reads the room's last id and its newest messages into the ring. */
static int room_load(sb__history_t *h, room_t *r)
{
    sqlite3_stmt *st = h->st[ST_LOAD];
    bind_name(st, 1, r->name);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        sqlite3_int64 last = sqlite3_column_int64(st, 0);
        sqlite3_int64 max = sqlite3_column_int64(st, 1);
        r->last_id = (uint64_t)(last > max ? last : max);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return db_fail(h, rc);

    st = h->st[ST_LAST];
    bind_name(st, 1, r->name);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)h->cfg.cache_per_room);
    uint64_t first = 0;
    size_t n = 0;
    int err = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        slot_t s = {
            .id = (uint64_t)sqlite3_column_int64(st, 0),
            .ts_ms = sqlite3_column_int64(st, 1),
            .len = (size_t)sqlite3_column_bytes(st, 2),
        };
        const unsigned char *body = sqlite3_column_text(st, 2);
        if (!body || ring_reserve(r, h->cfg.cache_per_room) || !(s.json = malloc(s.len + 1))) {
            err = SB_ENOMEM;
            break;
        }
        memcpy(s.json, body, s.len + 1);
        if (!n++)
            first = s.id;
        ring_push(r, s);
    }
    sqlite3_reset(st);
    if (!err && rc != SQLITE_DONE)
        err = db_fail(h, rc);
    if (err) {
        ring_clear(r);
        return err;
    }
    /* Fewer than a ringful: the ring holds all the room has. */
    r->cache_from = n < h->cfg.cache_per_room ? 1 : first;
    return 0;
}

/* Finds the room, loading it on first use. */
static int room_get(sb__history_t *h, const char *name, room_t **out)
{
    size_t len = strlen(name);
    if (len > UINT_MAX) /* uthash keys have an unsigned length */
        return SB_EINVAL;
    room_t *r;
    HASH_FIND(hh, h->rooms, name, (unsigned)len, r);
    if (r) {
        *out = r;
        return 0;
    }
    r = calloc(1, sizeof *r + len + 1);
    if (!r)
        return SB_ENOMEM;
    memcpy(r->name, name, len + 1);
    r->cache_from = 1;
    if (h->db) {
        int rc = room_load(h, r);
        if (rc) {
            room_free(r);
            return rc;
        }
    }
    HASH_ADD_KEYPTR(hh, h->rooms, r->name, (unsigned)len, r);
    if (!r->hh.tbl) {
        room_free(r);
        return SB_ENOMEM;
    }
    *out = r;
    return 0;
}

/* ---- the checkpoint thread ---------------------------------------------- */

/* Runs on the loop thread inside every COMMIT (it replaces SQLite's
 * auto-checkpoint hook): notes the WAL size, and asks for a checkpoint each
 * time the WAL grew by CKPT_PAGES. Holds the mutex for a few stores only. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *schema, int pages)
{
    (void)db;
    (void)schema;
    ckpt_t *c = arg;
    pthread_mutex_lock(&c->mu);
    if (pages < c->wal_pages) /* the WAL was rewound */
        c->request_at = CKPT_PAGES;
    c->wal_pages = pages;
    c->written = true;
    if (pages >= c->request_at) {
        c->request_at = pages + CKPT_PAGES;
        c->requested = true;
        pthread_cond_signal(&c->cond);
    }
    pthread_mutex_unlock(&c->mu);
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    ckpt_t *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        if (!c->requested) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += CKPT_PERIOD_S;
            pthread_cond_timedwait(&c->cond, &c->mu, &until);
            if (c->stop)
                break;
        }
        if (!c->written && !c->requested)
            continue;
        c->written = c->requested = false;
        pthread_mutex_unlock(&c->mu);
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        pthread_mutex_lock(&c->mu);
        /* A passive checkpoint stops short of frames a reader still needs:
         * the rest goes next time. */
        if (rc != SQLITE_OK || done < log)
            c->written = true;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Stops and joins the thread, closes its connection. NULL-safe. */
static void ckpt_stop(ckpt_t *c)
{
    if (!c)
        return;
    if (c->inited >= 3) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    if (c->inited >= 2)
        pthread_cond_destroy(&c->cond);
    if (c->inited >= 1)
        pthread_mutex_destroy(&c->mu);
    sqlite3_close_v2(c->db);
    free(c);
}

static int ckpt_start(ckpt_t **out, const char *path)
{
    ckpt_t *c = calloc(1, sizeof *c);
    if (!c)
        return SB_ENOMEM;
    c->request_at = CKPT_PAGES;
    int rc = SB_EIO;
    /* A connection learns that the file is in WAL mode when it first reads
     * it; until then a checkpoint through it does nothing. */
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) ||
        sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS) ||
        sqlite3_exec(c->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL))
        goto fail;
    if (pthread_mutex_init(&c->mu, NULL))
        goto fail;
    c->inited = 1;
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr))
        goto fail;
    /* Periods measured on a clock that does not jump with the wall clock. */
    int bad =
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) || pthread_cond_init(&c->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (bad)
        goto fail;
    c->inited = 2;
    if (pthread_create(&c->thread, NULL, ckpt_main, c))
        goto fail;
    c->inited = 3;
    *out = c;
    return 0;

fail:
    ckpt_stop(c);
    return rc;
}

/* ---- open and close ------------------------------------------------------ */

/* Open errors outlive the history they belong to: one buffer per thread. */
static _Thread_local char open_errbuf[768];

/* What to do about the common causes, after SQLite's own words. */
static const char *open_hint(int sqlite_rc)
{
    switch (sqlite_rc & 0xff) {
    case SQLITE_CANTOPEN:
        return " (check that its directory exists and is writable)";
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return " (point the history at a new file, or restore this one)";
    case SQLITE_READONLY:
    case SQLITE_PERM:
        return " (the server needs write access to it and to its directory)";
    case SQLITE_FULL:
        return " (the disk is full)";
    default:
        return "";
    }
}

/* Fills *err from the connection's last error (or detail, when given). */
static int open_fail(sb__history_t *h, const char **err, int rc, const char *path,
                     const char *detail)
{
    int code = h->db ? sqlite3_errcode(h->db) : SQLITE_NOMEM;
    if (!detail)
        detail = h->db ? sqlite3_errmsg(h->db) : sqlite3_errstr(code);
    snprintf(open_errbuf, sizeof open_errbuf, "cannot open history database %s: %s%s", path, detail,
             open_hint(code));
    *err = open_errbuf;
    return rc;
}

static int db_open(sb__history_t *h, const char *path, const char **err)
{
    if (!*path) {
        *err = "the history database path is empty: give a file name, or none for memory only";
        return SB_EINVAL;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &h->db, flags, NULL);
    if (rc != SQLITE_OK)
        return open_fail(h, err, rc == SQLITE_NOMEM ? SB_ENOMEM : SB_EIO, path, NULL);
    sqlite3_busy_timeout(h->db, BUSY_TIMEOUT_MS);

    /* The first statement reads the file: "file is not a database" shows here. */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK)
        return open_fail(h, err, SB_EIO, path, NULL);
    rc = sqlite3_step(st);
    char mode[16] = "";
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return open_fail(h, err, SB_EIO, path, NULL);
    if (sqlite3_stricmp(mode, "wal") != 0) {
        snprintf(open_errbuf, sizeof open_errbuf,
                 "cannot open history database %s in WAL mode (it stays in %s mode): use a "
                 "file on a local file system",
                 path, mode);
        *err = open_errbuf;
        return SB_EIO;
    }

    if (sqlite3_exec(h->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(h->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK)
        return open_fail(h, err, SB_EIO, path, NULL);
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(h->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &h->st[i],
                               NULL) != SQLITE_OK)
            return open_fail(h, err, SB_EIO, path, NULL);

    /* Without thread support in SQLite, checkpoints stay where SQLite puts
     * them by default: inline, in the commit that crosses the threshold. */
    if (!sqlite3_threadsafe())
        return 0;
    rc = ckpt_start(&h->ckpt, path);
    if (rc)
        return open_fail(h, err, rc, path, "cannot start its checkpoint thread");
    sqlite3_exec(h->db, "PRAGMA wal_autocheckpoint = 0", NULL, NULL, NULL);
    sqlite3_wal_hook(h->db, on_wal_commit, h->ckpt);
    return 0;
}

/* Frees everything without committing. NULL-safe. */
static void history_free(sb__history_t *h)
{
    if (!h)
        return;
    if (h->db)
        sqlite3_wal_hook(h->db, NULL, NULL);
    ckpt_stop(h->ckpt);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(h->st[i]);
    /* The last connection to close checkpoints and removes the WAL. */
    sqlite3_close_v2(h->db);
    /* The table goes first; the rooms' own list links stay valid. */
    room_t *r = h->rooms, *next;
    HASH_CLEAR(hh, h->rooms);
    for (; r; r = next) {
        next = r->hh.next;
        room_free(r);
    }
    free(h);
}

int sb__history_open(sb__history_t **out, const sb__history_config_t *cfg, const char **err)
{
    const char *ignored;
    if (!err)
        err = &ignored;
    *err = NULL;
    if (!out || !cfg) {
        *err = "history: no configuration given";
        return SB_EINVAL;
    }
    *out = NULL;
    sb__history_t *h = calloc(1, sizeof *h);
    if (!h) {
        *err = "out of memory opening the history";
        return SB_ENOMEM;
    }
    h->cfg = *cfg;
    h->cfg.path = NULL;
    if (!h->cfg.cache_per_room)
        h->cfg.cache_per_room = CACHE_DEFAULT;
    if (h->cfg.cache_per_room > INT_MAX) /* it becomes a LIMIT */
        h->cfg.cache_per_room = INT_MAX;
    int rc = 0;
    if (cfg->path && (rc = db_open(h, cfg->path, err)))
        goto fail;
    *out = h;
    return 0;

fail:
    history_free(h);
    return rc;
}

void sb__history_close(sb__history_t *h)
{
    if (!h)
        return;
    sb__history_commit(h);
    history_free(h);
}

/* ---- ids and appends ----------------------------------------------------- */

/* Returns 0 (never an id) when the room cannot be loaded. */
uint64_t sb__history_next_id(sb__history_t *h, const char *room)
{
    if (!h || !room)
        return 0;
    room_t *r;
    if (!h->db) {
        /* Nothing to load: a room never seen needs no entry yet. */
        HASH_FIND(hh, h->rooms, room, (unsigned)strlen(room), r);
        return r ? r->last_id + 1 : 1;
    }
    return room_get(h, room, &r) ? 0 : r->last_id + 1;
}

int64_t sb__history_append(sb__history_t *h, const char *room, int64_t ts_ms, const char *json,
                           size_t len)
{
    if (!h || !room || !json)
        return SB_EINVAL;
    if (len > INT_MAX) /* SQLite's own limit is lower still */
        return SB_ELIMIT;
    room_t *r;
    int rc = room_get(h, room, &r);
    if (rc)
        return rc;
    if (r->last_id >= INT64_MAX)
        return SB_ELIMIT;
    uint64_t id = r->last_id + 1;

    /* Everything that can fail in memory first: once the row is in, the
     * append must not fail. */
    slot_t s = {.id = id, .ts_ms = ts_ms, .json = malloc(len + 1), .len = len};
    if (!s.json || ring_reserve(r, h->cfg.cache_per_room)) {
        free(s.json);
        return SB_ENOMEM;
    }
    memcpy(s.json, json, len);
    s.json[len] = '\0';

    if (h->db) {
        rc = batch_begin(h);
        if (!rc) {
            sqlite3_stmt *st = h->st[ST_INSERT];
            bind_name(st, 1, room);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
            sqlite3_bind_int64(st, 3, ts_ms);
            sqlite3_bind_text64(st, 4, json, len, SQLITE_STATIC, SQLITE_UTF8);
            rc = run(h, st);
        }
        if (rc) {
            free(s.json);
            return rc;
        }
        mark_dirty(h, r);
    }
    ring_push(r, s);
    r->last_id = id;
    r->dropped = false;
    r->appended = true;
    return (int64_t)id;
}

/* Writes the last ids of the rooms the batch touched. */
static int flush_dirty(sb__history_t *h)
{
    sqlite3_stmt *st = h->st[ST_UPSERT];
    for (room_t *r = h->dirty; r; r = r->next_dirty) {
        if (!r->last_id)
            continue;
        bind_name(st, 1, r->name);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)r->last_id);
        int rc = run(h, st);
        if (rc)
            return rc;
    }
    return 0;
}

/* After a successful commit: the dirty rooms are clean, dropped ones go. */
static void settle_dirty(sb__history_t *h)
{
    room_t *next;
    for (room_t *r = h->dirty; r; r = next) {
        next = r->next_dirty;
        r->dirty = false;
        r->next_dirty = NULL;
        if (r->dropped) {
            /* Every dirty room is in the table (the analyzer cannot tell). */
            HASH_DEL(h->rooms, r); /* NOLINT(clang-analyzer-core.NullDereference) */
            room_free(r);
        }
    }
    h->dirty = NULL;
}

int sb__history_commit(sb__history_t *h)
{
    if (!h)
        return SB_EINVAL;
    int rc = 0;
    if (h->in_batch) {
        rc = flush_dirty(h);
        if (!rc)
            rc = run(h, h->st[ST_COMMIT]);
        if (!rc) {
            h->in_batch = false;
            settle_dirty(h);
        } else if (h->in_batch) {
            /* Still open (a busy lock, a failed upsert): give it up, so the
             * connection is usable again, and say so. */
            sqlite3_step(h->st[ST_ROLLBACK]);
            sqlite3_reset(h->st[ST_ROLLBACK]);
            batch_lost(h);
        }
    }
    if (h->batch_lost) {
        /* Once per lost batch, even if a later one committed: the caller
         * must not deliver what the lost one held. */
        h->batch_lost = false;
        return rc ? rc : SB_EIO;
    }
    return rc;
}

/* ---- reads --------------------------------------------------------------- */

typedef void (*read_fn)(void *arg, const sb__hist_entry_t *e);

static bool cache_covers(const sb__history_t *h, const room_t *r, uint64_t since_id, size_t limit)
{
    if (!h->db)
        return true;
    if (since_id)
        return since_id >= r->cache_from - 1;
    return r->count >= limit || r->cache_from <= 1;
}

static int read_cache(const room_t *r, uint64_t since_id, size_t limit, read_fn fn, void *arg)
{
    size_t i;
    if (!since_id) {
        i = r->count > limit ? r->count - limit : 0;
    } else {
        /* First message after since_id: ids ascend along the ring. */
        size_t lo = 0, hi = r->count;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (ring_at(r, mid)->id <= since_id)
                lo = mid + 1;
            else
                hi = mid;
        }
        i = lo;
    }
    int n = 0;
    for (; i < r->count && (size_t)n < limit; i++, n++) {
        const slot_t *s = ring_at(r, i);
        sb__hist_entry_t e = {.id = s->id, .ts_ms = s->ts_ms, .json = s->json, .len = s->len};
        fn(arg, &e);
    }
    return n;
}

static int read_db(sb__history_t *h, const char *room, uint64_t since_id, size_t limit, read_fn fn,
                   void *arg)
{
    if (since_id > INT64_MAX)
        return 0;
    sqlite3_stmt *st;
    if (since_id) {
        st = h->st[ST_SINCE];
        sqlite3_bind_int64(st, 2, (sqlite3_int64)since_id);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    } else {
        st = h->st[ST_LAST];
        sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    }
    bind_name(st, 1, room);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *body = (const char *)sqlite3_column_text(st, 2);
        sb__hist_entry_t e = {
            .id = (uint64_t)sqlite3_column_int64(st, 0),
            .ts_ms = sqlite3_column_int64(st, 1),
            .json = body ? body : "",
            .len = (size_t)sqlite3_column_bytes(st, 2),
        };
        fn(arg, &e);
        n++;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? n : db_fail(h, rc);
}

/* e and its json are valid during the call only; fn must not call back into
 * the history. json is NUL-terminated. limit 0 reads nothing. */
int sb__history_read(sb__history_t *h, const char *room, uint64_t since_id, size_t limit,
                     void (*fn)(void *arg, const sb__hist_entry_t *e), void *arg)
{
    if (!h || !room || !fn)
        return SB_EINVAL;
    if (limit > INT_MAX)
        limit = INT_MAX;
    if (!limit)
        return 0;
    room_t *r;
    int rc = room_get(h, room, &r);
    if (rc)
        return rc;
    if (cache_covers(h, r, since_id, limit))
        return read_cache(r, since_id, limit, fn, arg);
    return read_db(h, room, since_id, limit, fn, arg);
}

/* ---- drop and retention -------------------------------------------------- */

/* The drop joins the batch: it is undone if the batch is lost. */
int sb__history_drop(sb__history_t *h, const char *room)
{
    if (!h || !room)
        return SB_EINVAL;
    if (h->db) {
        int rc = batch_begin(h);
        if (!rc) {
            bind_name(h->st[ST_DROP], 1, room);
            rc = run(h, h->st[ST_DROP]);
        }
        if (rc)
            return rc;
    }
    room_t *r;
    HASH_FIND(hh, h->rooms, room, (unsigned)strlen(room), r);
    if (!r)
        return 0;
    ring_clear(r);
    r->cache_from = 1; /* nothing stored any more: the empty ring is the truth */
    if (h->db) {
        /* Kept until the batch commits: it writes the last id (so ids go on
         * if the room is used again) and a lost batch still finds it. Without
         * a database the entry is where the last id lives: it stays. */
        r->dropped = true;
        mark_dirty(h, r);
    }
    return 0;
}

static int changes(sb__history_t *h)
{
    return sqlite3_changes(h->db);
}

/* Joins the batch. Count retention keeps ids above last_id - max_per_room:
 * the newest max_per_room messages (fewer only where a lost batch left a gap
 * in the ids). The first trim after open covers every room in the database,
 * later ones the rooms appended to since. */
int sb__history_trim(sb__history_t *h, int64_t now_ms)
{
    if (!h)
        return SB_EINVAL;
    size_t max = h->cfg.max_per_room;
    uint64_t age = h->cfg.max_age_ms;
    /* Nothing is older than the clock allows: an age past it removes nothing. */
    bool by_age = age && age <= INT64_MAX && now_ms >= INT64_MIN + (int64_t)age;
    int64_t min_ts = by_age ? now_ms - (int64_t)age : 0;
    if (!max && !by_age)
        return 0;

    long long removed = 0;
    int rc = 0;
    if (h->db) {
        rc = batch_begin(h);
        if (!rc && max && !h->trimmed) {
            sqlite3_bind_int64(h->st[ST_TRIM_ALL], 1, (sqlite3_int64)max);
            if (!(rc = run(h, h->st[ST_TRIM_ALL])))
                removed += changes(h);
        }
        if (!rc && by_age) {
            sqlite3_bind_int64(h->st[ST_TRIM_AGE], 1, min_ts);
            if (!(rc = run(h, h->st[ST_TRIM_AGE])))
                removed += changes(h);
        }
        if (rc)
            return rc;
    }

    for (room_t *r = h->rooms; r; r = r->hh.next) {
        uint64_t max_id = max && r->last_id > max ? r->last_id - max : 0;
        if (h->db && max_id && (r->appended || !h->trimmed)) {
            sqlite3_stmt *st = h->st[ST_TRIM_ROOM];
            bind_name(st, 1, r->name);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)max_id);
            int err = run(h, st);
            if (err) {
                /* The age rule above did apply: keep the ring in step with it. */
                max_id = 0;
                rc = rc ? rc : err;
                if (!h->in_batch) /* lost: the rings were emptied */
                    return rc;
            } else {
                removed += changes(h);
            }
        }
        size_t n = ring_trim(r, max_id, by_age, min_ts);
        if (!h->db)
            removed += (long long)n;
        r->appended = false;
    }
    if (rc)
        return rc;
    h->trimmed = true;
    return removed > INT_MAX ? INT_MAX : (int)removed;
}
