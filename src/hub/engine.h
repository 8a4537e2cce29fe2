/*
 * engine.h — what the hub shares between nodes (ARCHITECTURE.md, "Engines"):
 * fan-out to a room, a user or everyone, message ids and history. The hub
 * calls these operations and never knows which engine runs them.
 *
 * `local` is one process: fan-out is a walk of the member arrays and history
 * is SQLite. `redis` (engine_redis.c) runs many nodes as one; while Redis is
 * unreachable it falls back to the local operations (see docs/cluster.md).
 * Loop-thread only.
 */
#ifndef SB_HUB_ENGINE_H
#define SB_HUB_ENGINE_H

#include "switchboard.h"

typedef struct sb__engine_s {
    const char *name;
    /* Connects the engine to hub (hub->engine_state). Returns 0 or SB_E*. */
    int (*open)(sb_hub_t *hub, const char **err);
    void (*close)(sb_hub_t *hub);
    /* room got its first local member (active 1) or lost its last (0). */
    void (*room_active)(sb_hub_t *hub, sb_room_t *room, int active);
    /* The message head + id + tail, with the next id of room: stored, then
     * delivered to every member. Returns the local connections reached (or
     * 0 when delivery happens later) and the id in *id (0: not known yet). */
    int (*publish_message)(sb_hub_t *hub, sb_room_t *room, int64_t ts_ms, const char *head,
                           size_t hlen, const char *tail, size_t tlen, uint64_t *id);
    /* Not stored: an event to the members of room, except one connection. */
    int (*publish_room)(sb_hub_t *hub, sb_room_t *room, const sb_conn_t *except, const char *json,
                        size_t len);
    int (*publish_user)(sb_hub_t *hub, const char *user_id, const char *json, size_t len);
    int (*publish_all)(sb_hub_t *hub, const char *json, size_t len);
    /* Reads history for conn; cb runs now or later (not at all when conn or
     * room is gone by then). */
    int (*history)(sb_hub_t *hub, sb_room_t *room, sb_conn_t *conn, uint64_t since, size_t limit,
                   int after_join, sb_history_cb cb, void *arg);
    /* 1 while the engine cannot reach what it shares through. */
    int (*degraded)(sb_hub_t *hub);
    /* Presence on every node (switchboard.h, "presence on every node"); NULL
     * on an engine that shares none. member and user_conn return 1 (taken),
     * 0 (the caller does it for this node) or SB_E*. */
    int (*member)(sb_hub_t *hub, sb_room_t *room, const sb_member_change_t *c);
    int (*user_conn)(sb_hub_t *hub, const char *user_id, const char *nickname, int delta,
                     sb_room_t *const *rooms, size_t n, const char *presence);
    int (*shared)(const sb_hub_t *hub);
    /* This node's id in the cluster: connection ids are only unique within
     * a node, so a connection's own user id carries it (sb_hub_register). */
    const char *(*node)(const sb_hub_t *hub);
    size_t (*user_count)(const sb_hub_t *hub);
    size_t (*user_conns)(const sb_hub_t *hub, const char *user_id);
    /* sb_hub_claim_nick; NULL on an engine that shares no presence. */
    int (*claim_nick)(sb_hub_t *hub, sb_conn_t *conn, const char *nick, sb_claim_cb cb, void *arg);
    /* A user online on any node under that nickname; NULL if none. */
    const char *(*user_by_nick)(const sb_hub_t *hub, const char *nick);
    size_t (*rooms)(const sb_hub_t *hub, sb_room_info_t *out, size_t max);
    size_t (*room_count)(const sb_hub_t *hub, const char *room);
    size_t (*room_users)(const sb_hub_t *hub, const char *room, sb_user_info_t *out, size_t max);
} sb__engine_t;

extern const sb__engine_t sb__engine_local;
extern const sb__engine_t sb__engine_redis;

#endif /* SB_HUB_ENGINE_H */
