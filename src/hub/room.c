/* room.c — rooms: dense member arrays (fan-out is a linear walk) with
 * swap-removal, and the room's view of the history. */
#include <stdlib.h>
#include <string.h>

#include "hub/hub.h"

#define SB_ROOM_NAME_MAX 64

sb_room_t *sb_hub_room_create(sb_hub_t *hub, const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (!len || len > SB_ROOM_NAME_MAX)
        return NULL;
    sb_room_t *room = sb_hub_room(hub, name);
    if (room)
        return room;
    room = calloc(1, sizeof *room);
    if (!room || !(room->name = strdup(name))) {
        free(room);
        return NULL;
    }
    room->hub = hub;
    HASH_ADD_KEYPTR(hh, hub->rooms, room->name, len, room);
    return room;
}

sb_room_t *sb_hub_room(const sb_hub_t *hub, const char *name)
{
    sb_room_t *room;
    HASH_FIND_STR(hub->rooms, name, room);
    return room;
}

size_t sb_hub_rooms(const sb_hub_t *hub, sb_room_t **out, size_t max)
{
    size_t n = 0;
    for (sb_room_t *r = hub->rooms; r; r = r->hh.next, n++)
        if (n < max)
            out[n] = r;
    return n;
}

/* Drops the membership entry of room from hc's list. */
static void forget_membership(sb__hconn_t *hc, const sb_room_t *room)
{
    for (uint16_t i = 0; i < hc->nrooms; i++)
        if (hc->rooms[i].room == room) {
            hc->rooms[i] = hc->rooms[--hc->nrooms];
            return;
        }
}

void sb__room_free(sb_room_t *room)
{
    if (room->n)
        sb__engine_room_active(room, 0);
    for (uint32_t i = 0; i < room->n; i++)
        forget_membership(room->members[i], room);
    free(room->members);
    free(room->name);
    free(room);
}

int sb_hub_room_remove(sb_hub_t *hub, const char *name)
{
    sb_room_t *room = sb_hub_room(hub, name);
    if (!room)
        return SB_EINVAL;
    HASH_DEL(hub->rooms, room);
    sb__room_free(room);
    return 0;
}

const char *sb_room_name(const sb_room_t *room)
{
    return room->name;
}

size_t sb_room_count(const sb_room_t *room)
{
    return room->n;
}

uint64_t sb_room_message_count(const sb_room_t *room)
{
    return room->messages;
}

int64_t sb_room_last_activity(const sb_room_t *room)
{
    return room->last_activity_ms;
}

void *sb_room_get_data(const sb_room_t *room)
{
    return room->data;
}

void sb_room_set_data(sb_room_t *room, void *data)
{
    room->data = data;
}

static sb__member_t *membership(const sb__hconn_t *hc, const sb_room_t *room)
{
    for (uint16_t i = 0; i < hc->nrooms; i++)
        if (hc->rooms[i].room == room)
            return &hc->rooms[i];
    return NULL;
}

int sb_room_has(const sb_room_t *room, const sb_conn_t *conn)
{
    const sb__hconn_t *hc = sb__hconn(conn);
    return hc && membership(hc, room) != NULL;
}

int sb_room_join(sb_room_t *room, sb_conn_t *conn)
{
    sb__hconn_t *hc = sb__hconn(conn);
    if (!hc || hc->hub != room->hub)
        return SB_EINVAL;
    if (membership(hc, room))
        return 0;
    if (hc->nrooms == hc->rooms_cap) {
        if (hc->rooms_cap == UINT16_MAX)
            return SB_ELIMIT;
        /* The count is 16-bit: doubling 32768 must stop at the cap, not
         * wrap to 0 (a realloc to nothing, then writes past it). */
        uint32_t cap = hc->rooms_cap * 2u;
        if (cap > UINT16_MAX)
            cap = UINT16_MAX;
        /* The first room lives in the record itself. */
        int inline_first = hc->rooms == &hc->first;
        sb__member_t *m = realloc(inline_first ? NULL : hc->rooms, cap * sizeof *m);
        if (!m)
            return SB_ENOMEM;
        if (inline_first)
            m[0] = hc->first;
        hc->rooms = m;
        hc->rooms_cap = (uint16_t)cap;
    }
    if (room->n == room->cap) {
        uint32_t cap = room->cap ? room->cap * 2 : 8;
        sb__hconn_t **m = realloc(room->members, cap * sizeof *m);
        if (!m)
            return SB_ENOMEM;
        room->members = m;
        room->cap = cap;
    }
    hc->rooms[hc->nrooms++] = (sb__member_t){room, room->n};
    room->members[room->n++] = hc;
    if (room->n == 1)
        sb__engine_room_active(room, 1);
    return 0;
}

/* Swap-removes hc (whose entry for room is m) from the room's array. */
static void remove_member(sb_room_t *room, sb__hconn_t *hc, sb__member_t *m)
{
    uint32_t i = m->index;
    sb__hconn_t *last = room->members[--room->n];
    room->members[i] = last;
    if (last != hc)
        membership(last, room)->index = i;
    *m = hc->rooms[--hc->nrooms];
    if (room->n == 0)
        sb__engine_room_active(room, 0);
}

int sb_room_leave(sb_room_t *room, sb_conn_t *conn)
{
    sb__hconn_t *hc = sb__hconn(conn);
    sb__member_t *m = hc ? membership(hc, room) : NULL;
    if (!m)
        return SB_EINVAL;
    remove_member(room, hc, m);
    return 0;
}

void sb__hconn_leave_all(sb__hconn_t *hc)
{
    while (hc->nrooms)
        remove_member(hc->rooms[hc->nrooms - 1].room, hc, &hc->rooms[hc->nrooms - 1]);
}

size_t sb_conn_rooms(const sb_conn_t *conn, sb_room_t **out, size_t max)
{
    const sb__hconn_t *hc = sb__hconn(conn);
    if (!hc)
        return 0;
    for (uint16_t i = 0; i < hc->nrooms && i < max; i++)
        out[i] = hc->rooms[i].room;
    return hc->nrooms;
}

size_t sb_room_members(const sb_room_t *room, sb_conn_t **out, size_t max)
{
    for (uint32_t i = 0; i < room->n && i < max; i++)
        out[i] = room->members[i]->conn;
    return room->n;
}

int sb_room_broadcast(sb_room_t *room, const sb_conn_t *except, int opcode, const void *data,
                      size_t len)
{
    return sb__hub_send_list(room->members, room->n, except, opcode, data, len);
}

int sb_room_broadcast_msg(sb_room_t *room, const sb_conn_t *except, sb_msg_t *msg)
{
    return sb__hub_send_msg_list(room->members, room->n, except, msg);
}

int sb_room_broadcast_json(sb_room_t *room, const sb_conn_t *except, const char *json)
{
    return sb_room_broadcast(room, except, SB_OP_TEXT, json, strlen(json));
}

/* ---- history ----------------------------------------------------------- */

uint64_t sb_room_next_id(sb_room_t *room)
{
    return sb__history_next_id(room->hub->history, room->name);
}

int sb_hub_has_history(sb_hub_t *hub, const char *room)
{
    if (sb_hub_clustered(hub))
        return 1; /* in the cluster's store: the read answers */
    return sb__history_next_id(hub->history, room) > 1;
}

int64_t sb_room_history_append(sb_room_t *room, int64_t ts_ms, const char *json, size_t len)
{
    int64_t id = sb__history_append(room->hub->history, room->name, ts_ms, json, len);
    if (id > 0) {
        room->messages++;
        room->last_activity_ms = ts_ms;
    }
    return id;
}

typedef struct {
    void (*fn)(void *arg, uint64_t id, int64_t ts_ms, const char *json, size_t len);
    void *arg;
} read_ctx_t;

static void each_entry(void *arg, const sb__hist_entry_t *e)
{
    read_ctx_t *ctx = arg;
    ctx->fn(ctx->arg, e->id, e->ts_ms, e->json, e->len);
}

int sb_room_history(sb_room_t *room, uint64_t since, size_t limit,
                    void (*fn)(void *arg, uint64_t id, int64_t ts_ms, const char *json, size_t len),
                    void *arg)
{
    read_ctx_t ctx = {fn, arg};
    return sb__history_read(room->hub->history, room->name, since, limit, each_entry, &ctx);
}
