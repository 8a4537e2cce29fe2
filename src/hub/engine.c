/* engine.c — the hub's side of the engine seam (the public sb_*_publish and
 * history-request calls) and the local engine: one process, fan-out over the
 * member arrays, history in SQLite. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub/engine.h"
#include "hub/hub.h"

/* ---- the local engine -------------------------------------------------- */

static int local_publish_message(sb_hub_t *hub, sb_room_t *room, int64_t ts_ms, const char *head,
                                 size_t hlen, const char *tail, size_t tlen, uint64_t *id)
{
    (void)hub;
    char num[24];
    int nlen = snprintf(num, sizeof num, "%llu", (unsigned long long)sb_room_next_id(room));
    size_t len = hlen + (size_t)nlen + tlen;
    char *s = malloc(len + 1);
    if (!s)
        return SB_ENOMEM;
    memcpy(s, head, hlen);
    memcpy(s + hlen, num, (size_t)nlen);
    memcpy(s + hlen + nlen, tail, tlen);
    s[len] = '\0';
    /* Stored before it is sent: the history commits before this loop
     * iteration's frames are written. */
    int64_t r = sb_room_history_append(room, ts_ms, s, len);
    if (r > 0 && id)
        *id = (uint64_t)r;
    int reached = r < 0 ? (int)r : sb_room_broadcast(room, NULL, SB_OP_TEXT, s, len);
    free(s);
    return reached;
}

static int local_publish_room(sb_hub_t *hub, sb_room_t *room, const sb_conn_t *except,
                              const char *json, size_t len)
{
    (void)hub;
    return sb_room_broadcast(room, except, SB_OP_TEXT, json, len);
}

static int local_publish_user(sb_hub_t *hub, const char *user_id, const char *json, size_t len)
{
    return sb_hub_send_user(hub, user_id, SB_OP_TEXT, json, len);
}

static int local_publish_all(sb_hub_t *hub, const char *json, size_t len)
{
    return sb_hub_broadcast(hub, SB_OP_TEXT, json, len);
}

typedef struct {
    sb_history_entry_t *e;
    char **copies;
    size_t n, cap;
    int failed;
} collect_t;

static void collect(void *arg, uint64_t id, int64_t ts_ms, const char *json, size_t len)
{
    (void)ts_ms;
    collect_t *c = arg;
    if (c->failed)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        sb_history_entry_t *e = realloc(c->e, cap * sizeof *e);
        if (e)
            c->e = e;
        char **p = e ? realloc(c->copies, cap * sizeof *p) : NULL;
        if (!p) {
            c->failed = 1;
            return;
        }
        c->copies = p;
        c->cap = cap;
    }
    /* The history's buffers live only during this call. */
    char *copy = malloc(len + 1);
    if (!copy) {
        c->failed = 1;
        return;
    }
    memcpy(copy, json, len);
    copy[len] = '\0';
    c->copies[c->n] = copy;
    c->e[c->n++] = (sb_history_entry_t){id, copy, len};
}

static int local_history(sb_hub_t *hub, sb_room_t *room, sb_conn_t *conn, uint64_t since,
                         size_t limit, int after_join, sb_history_cb cb, void *arg)
{
    (void)hub;
    (void)after_join; /* one process: nothing can slip in between */
    collect_t c = {0};
    int r = sb_room_history(room, since, limit, collect, &c);
    if (r >= 0 && c.failed)
        r = SB_ENOMEM;
    if (r < 0)
        cb(conn, room, r, NULL, 0, arg);
    else
        cb(conn, room, (int)c.n, c.e, c.n, arg);
    for (size_t i = 0; i < c.n; i++)
        free(c.copies[i]);
    free(c.copies);
    free(c.e);
    return 0;
}

const sb__engine_t sb__engine_local = {
    .name = "local",
    .publish_message = local_publish_message,
    .publish_room = local_publish_room,
    .publish_user = local_publish_user,
    .publish_all = local_publish_all,
    .history = local_history,
};

/* ---- the hub's calls --------------------------------------------------- */

int sb_room_publish(sb_room_t *room, int64_t ts_ms, const char *head, size_t hlen, const char *tail,
                    size_t tlen, uint64_t *id)
{
    sb_hub_t *hub = room->hub;
    if (id)
        *id = 0;
    return hub->engine->publish_message(hub, room, ts_ms, head, hlen, tail, tlen, id);
}

int sb_room_publish_event(sb_room_t *room, const sb_conn_t *except, const char *json, size_t len)
{
    return room->hub->engine->publish_room(room->hub, room, except, json, len);
}

int sb_hub_publish_user(sb_hub_t *hub, const char *user_id, const char *json, size_t len)
{
    return hub->engine->publish_user(hub, user_id, json, len);
}

int sb_hub_publish_all(sb_hub_t *hub, const char *json, size_t len)
{
    return hub->engine->publish_all(hub, json, len);
}

int sb_room_history_request(sb_room_t *room, sb_conn_t *conn, uint64_t since, size_t limit,
                            int after_join, sb_history_cb cb, void *arg)
{
    if (!conn || !cb || !limit)
        return SB_EINVAL;
    sb_hub_t *hub = room->hub;
    return hub->engine->history(hub, room, conn, since, limit, after_join, cb, arg);
}

int sb_hub_clustered(const sb_hub_t *hub)
{
    return hub->engine != &sb__engine_local;
}

const char *sb_hub_engine_status(const sb_hub_t *hub)
{
    return hub->engine->degraded && hub->engine->degraded((sb_hub_t *)hub) ? "degraded" : "ok";
}

void sb__engine_room_active(sb_room_t *room, int active)
{
    sb_hub_t *hub = room->hub;
    if (hub->engine->room_active)
        hub->engine->room_active(hub, room, active);
}

/* ---- presence on every node -------------------------------------------- */

int sb_room_publish_member(sb_room_t *room, const sb_member_change_t *c)
{
    sb_hub_t *hub = room->hub;
    if (!c || !c->user_id || !c->head || !c->tail || (c->delta != 1 && c->delta != -1))
        return SB_EINVAL;
    return hub->engine->member ? hub->engine->member(hub, room, c) : 0;
}

int sb_hub_publish_user_conn(sb_hub_t *hub, const char *user_id, const char *nickname, int delta,
                             sb_room_t *const *rooms, size_t n, const char *presence)
{
    if (!user_id || (delta != 1 && delta != -1) || (n && !rooms))
        return SB_EINVAL;
    return hub->engine->user_conn
               ? hub->engine->user_conn(hub, user_id, nickname, delta, rooms, n, presence)
               : 0;
}

int sb_hub_presence_shared(const sb_hub_t *hub)
{
    return hub->engine->shared && hub->engine->shared(hub);
}

/* Without shared presence these answer for this node: the caller should
 * ask sb_hub_presence_shared() first; these are right either way. */
size_t sb_hub_shared_user_count(const sb_hub_t *hub)
{
    return sb_hub_presence_shared(hub) ? hub->engine->user_count(hub) : sb_hub_user_count(hub);
}

size_t sb_hub_shared_user_conns(const sb_hub_t *hub, const char *user_id)
{
    return sb_hub_presence_shared(hub) ? hub->engine->user_conns(hub, user_id)
                                       : sb_hub_user_conns(hub, user_id, NULL, 0);
}

int sb_hub_claim_nick(sb_hub_t *hub, sb_conn_t *conn, const char *nick, sb_claim_cb cb, void *arg)
{
    if (!conn || !nick || !cb)
        return SB_EINVAL;
    return hub->engine->claim_nick && sb_hub_presence_shared(hub)
               ? hub->engine->claim_nick(hub, conn, nick, cb, arg)
               : 1;
}

const char *sb_hub_shared_user_by_nick(const sb_hub_t *hub, const char *nick)
{
    return nick && sb_hub_presence_shared(hub) && hub->engine->user_by_nick
               ? hub->engine->user_by_nick(hub, nick)
               : NULL;
}

size_t sb_hub_shared_rooms(const sb_hub_t *hub, sb_room_info_t *out, size_t max)
{
    if (sb_hub_presence_shared(hub))
        return hub->engine->rooms(hub, out, max);
    size_t n = 0;
    for (const sb_room_t *r = hub->rooms; r; r = r->hh.next, n++)
        if (n < max)
            out[n] = (sb_room_info_t){r->name, r->n};
    return n;
}

size_t sb_hub_shared_room_count(const sb_hub_t *hub, const char *room)
{
    if (sb_hub_presence_shared(hub))
        return hub->engine->room_count(hub, room);
    const sb_room_t *r = sb_hub_room(hub, room);
    return r ? r->n : 0;
}

size_t sb_hub_shared_room_users(const sb_hub_t *hub, const char *room, sb_user_info_t *out,
                                size_t max)
{
    if (sb_hub_presence_shared(hub))
        return hub->engine->room_users(hub, room, out, max);
    /* One entry per user, however many connections it has here. */
    const sb_room_t *r = sb_hub_room(hub, room);
    size_t n = 0;
    for (uint32_t i = 0; r && i < r->n; i++) {
        const sb_conn_t *c = r->members[i]->conn;
        const char *uid = sb_conn_user_id(c);
        size_t j = 0;
        for (; j < n && j < max && strcmp(out[j].user_id, uid) != 0; j++)
            ;
        if (j < n && j < max) {
            out[j].connections++;
            continue;
        }
        if (n < max) {
            const char *nick = sb_conn_name(c);
            out[n] = (sb_user_info_t){uid, nick ? nick : uid, 1};
        }
        n++;
    }
    return n;
}
