/*
 * hub.h — the hub layer's structures: who is connected (by connection id and
 * by user), rooms as dense member arrays, and the history underneath. The
 * hub never touches a socket: it hands encoded frames to connections.
 */
#ifndef SB_HUB_HUB_H
#define SB_HUB_HUB_H

#include <uthash.h>

#include "hub/engine.h"
#include "hub/history.h"
#include "server/internal.h"

typedef struct sb__hconn_s sb__hconn_t;

/* One room a connection is in, and its position in that room's array (kept
 * up to date by swap-removal, so leaving is O(rooms of the connection)). */
typedef struct sb__member_s {
    sb_room_t *room;
    uint32_t index;
} sb__member_t;

typedef struct sb__user_s {
    char *id;
    sb__hconn_t **conns;
    uint32_t n, cap;
    UT_hash_handle hh;
} sb__user_t;

struct sb__hconn_s {
    sb_conn_t *conn;
    sb_hub_t *hub;
    sb__user_t *user; /* NULL: its own user, whose id is the connection id */
    char *name;
    uint32_t all_index;  /* in hub->all */
    uint32_t user_index; /* in user->conns */
    sb__member_t *rooms; /* &first until a second room is joined */
    uint16_t nrooms, rooms_cap;
    sb__member_t first;
    UT_hash_handle hh; /* hub->by_id, keyed by the connection id */
};

struct sb_room_s {
    char *name;
    sb_hub_t *hub;
    sb__hconn_t **members;
    uint32_t n, cap;
    void *data;
    uint64_t messages;        /* appended to history */
    int64_t last_activity_ms; /* Unix ms of the last message, 0 if none */
    UT_hash_handle hh;
};

/* A hub endpoint: the server route's data. */
typedef struct sb__hub_route_s {
    sb_hub_t *hub;
    sb_hub_handlers_t h;
} sb__hub_route_t;

typedef struct sb__hook_s {
    void (*fn)(sb_hub_t *hub, void *data);
    void *data;
} sb__hook_t;

struct sb_hub_s {
    sb_server_t *srv;
    sb_hub_config_t cfg;
    char *history_path;
    sb__history_t *history;
    sb__hconn_t *by_id;    /* uthash head */
    sb__hconn_t **all;     /* dense: broadcast is a linear walk */
    sb__slab_t hconn_slab; /* every sb__hconn_t, packed (see server/slab.h) */
    uint32_t nall, all_cap;
    sb__user_t *users; /* uthash head: identified users only */
    size_t nanon;      /* connections that are their own user (no record) */
    sb_room_t *rooms;  /* uthash head */
    sb__hub_route_t **routes;
    size_t nroutes;
    sb__hook_t *hooks;
    size_t nhooks;
    uv_timer_t cleanup;
    const sb__engine_t *engine; /* &sb__engine_local unless clustered */
    void *engine_state;
    char *redis_url;
};

sb__hconn_t *sb__hconn(const sb_conn_t *conn);
/* Leaves every room of hc. */
void sb__hconn_leave_all(sb__hconn_t *hc);
void sb__room_free(sb_room_t *room);
/* Send one encoded message (or encode data once) to each of list but except
 * (may be NULL). Return the connections reached or a negative SB_E*. */
int sb__hub_send_msg_list(sb__hconn_t *const *list, uint32_t n, const sb_conn_t *except,
                          sb_msg_t *msg);
int sb__hub_send_list(sb__hconn_t *const *list, uint32_t n, const sb_conn_t *except, int opcode,
                      const void *data, size_t len);
/* Tells the engine that room got its first local member or lost its last. */
void sb__engine_room_active(sb_room_t *room, int active);
/* Unix time in milliseconds. */
int64_t sb__unix_ms(void);

#endif /* SB_HUB_HUB_H */
