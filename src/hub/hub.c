/* hub.c — the registry of connections and users, hub endpoints, fan-out to
 * everyone or to one user, thread-safe entry points and shutdown. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hub/hub.h"

void sb_hub_config_init(sb_hub_config_t *cfg)
{
    *cfg = (sb_hub_config_t){
        .ping_interval_ms = 54000,
        .pong_timeout_ms = 60000,
        .write_timeout_ms = 10000,
        .max_message_size = 512 * 1024,
        .cleanup_interval_ms = 30000,
        .history_cache = 100,
        .history_max = 10000,
    };
}

int64_t sb__unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

sb__hconn_t *sb__hconn(const sb_conn_t *conn)
{
    return conn ? conn->hub : NULL;
}

/* ---- lifecycle --------------------------------------------------------- */

static void commit_history(void *data)
{
    sb_hub_t *hub = data;
    if (sb__history_commit(hub->history))
        sb__log(hub->srv, SB_LOG_ERROR,
                "history: commit failed; messages of this moment may "
                "be missing after a restart");
}

static void run_hooks(void *data);

static void on_cleanup(uv_timer_t *t)
{
    sb_hub_t *hub = t->data;
    int removed = sb__history_trim(hub->history, sb__unix_ms());
    if (removed > 0)
        sb__log(hub->srv, SB_LOG_DEBUG, "history: retention removed %d message(s)", removed);
}

int sb_hub_new(sb_hub_t **out, sb_server_t *srv, const sb_hub_config_t *cfg, const char **err)
{
    static const char *no_err;
    if (!err)
        err = &no_err;
    *err = NULL;
    *out = NULL;
    if (!srv || !cfg || !cfg->max_message_size || !cfg->ping_interval_ms || !cfg->pong_timeout_ms ||
        !cfg->cleanup_interval_ms) {
        *err = "invalid hub configuration";
        return SB_EINVAL;
    }
    sb_hub_t *hub = calloc(1, sizeof *hub);
    if (!hub)
        return SB_ENOMEM;
    hub->srv = srv;
    hub->cfg = *cfg;
    sb__slab_init(&hub->hconn_slab, sizeof(sb__hconn_t));
    int r = SB_ENOMEM;
    if (cfg->history_path && !(hub->history_path = strdup(cfg->history_path)))
        goto fail;
    hub->cfg.history_path = hub->history_path;

    sb__history_config_t hc = {
        .path = hub->history_path,
        .cache_per_room = cfg->history_cache,
        .max_per_room = cfg->history_max,
        .max_age_ms = cfg->history_max_age_ms,
    };
    r = sb__history_open(&hub->history, &hc, err);
    if (r)
        goto fail;

    /* seed 003's HubConfig governs the connections. */
    sb_server_config_t *sc = &srv->cfg;
    sc->ping_interval_ms = cfg->ping_interval_ms < SB_MAX_TIMEOUT_MS ? cfg->ping_interval_ms
                                                                     : SB_MAX_TIMEOUT_MS;
    sc->pong_timeout_ms = cfg->pong_timeout_ms < SB_MAX_TIMEOUT_MS ? cfg->pong_timeout_ms
                                                                   : SB_MAX_TIMEOUT_MS;
    sc->write_timeout_ms = cfg->write_timeout_ms < SB_MAX_TIMEOUT_MS ? cfg->write_timeout_ms
                                                                     : SB_MAX_TIMEOUT_MS;
    sc->max_message_size = cfg->max_message_size;
    sc->max_frame_size = cfg->max_message_size;

    sb__server_set_flush_hook(srv, commit_history, hub);
    sb__server_set_stop_hook(srv, run_hooks, hub);
    uv_timer_init(sb__server_loop(srv), &hub->cleanup);
    hub->cleanup.data = hub;
    uv_timer_start(&hub->cleanup, on_cleanup, cfg->cleanup_interval_ms, cfg->cleanup_interval_ms);
    uv_unref((uv_handle_t *)&hub->cleanup); /* the hub alone keeps no loop alive */
    hub->engine = &sb__engine_local;
    if (cfg->engine == SB_ENGINE_REDIS) {
        if (!cfg->redis_url || !(hub->redis_url = strdup(cfg->redis_url))) {
            *err = cfg->redis_url ? NULL : "the redis engine needs redis_url";
            r = cfg->redis_url ? SB_ENOMEM : SB_EINVAL;
            goto fail_engine;
        }
        hub->cfg.redis_url = hub->redis_url;
        r = sb__engine_redis.open(hub, err);
        if (r)
            goto fail_engine;
        hub->engine = &sb__engine_redis;
    }
    *out = hub;
    return 0;

fail_engine:
    free(hub->redis_url);
    uv_close((uv_handle_t *)&hub->cleanup, NULL);
    uv_run(sb__server_loop(srv), UV_RUN_NOWAIT);
    sb__server_set_flush_hook(srv, NULL, NULL);
    sb__server_set_stop_hook(srv, NULL, NULL);
    sb__history_close(hub->history);
fail:
    free(hub->history_path);
    free(hub);
    return r;
}

static void free_hconn(sb__hconn_t *hc)
{
    sb_hub_t *hub = hc->hub;
    hc->conn->hub = NULL;
    free(hc->name);
    if (hc->rooms != &hc->first)
        free(hc->rooms);
    sb__slab_free(&hub->hconn_slab, hc);
}

void sb_hub_free(sb_hub_t *hub)
{
    if (!hub)
        return;
    if (hub->engine->close)
        hub->engine->close(hub);
    hub->engine = &sb__engine_local; /* freeing rooms below tells it nothing */
    uv_close((uv_handle_t *)&hub->cleanup, NULL);
    uv_run(sb__server_loop(hub->srv), UV_RUN_NOWAIT);
    sb__server_set_flush_hook(hub->srv, NULL, NULL);
    sb__server_set_stop_hook(hub->srv, NULL, NULL);

    sb_room_t *room, *rtmp;
    HASH_ITER(hh, hub->rooms, room, rtmp)
    {
        HASH_DEL(hub->rooms, room);
        sb__room_free(room);
    }
    sb__hconn_t *hc, *htmp;
    HASH_ITER(hh, hub->by_id, hc, htmp)
    {
        HASH_DEL(hub->by_id, hc);
        free_hconn(hc);
    }
    sb__user_t *u, *utmp;
    HASH_ITER(hh, hub->users, u, utmp)
    {
        HASH_DEL(hub->users, u);
        free(u->id);
        free(u->conns);
        free(u);
    }
    for (size_t i = 0; i < hub->nroutes; i++)
        free(hub->routes[i]);
    free(hub->routes);
    free(hub->hooks);
    free(hub->all);
    sb__slab_destroy(&hub->hconn_slab);
    sb__history_close(hub->history);
    free(hub->history_path);
    free(hub->redis_url);
    free(hub);
}

/* ---- registry ---------------------------------------------------------- */

/* Grows *arr (of elem-sized items) to hold one more than n. */
static int grow(void **arr, uint32_t *cap, uint32_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    uint32_t c = *cap ? *cap * 2 : 4;
    void *p = realloc(*arr, c * elem);
    if (!p)
        return SB_ENOMEM;
    *arr = p;
    *cap = c;
    return 0;
}

static void user_remove(sb_hub_t *hub, sb__hconn_t *hc)
{
    sb__user_t *u = hc->user;
    if (!u)
        return;
    sb__hconn_t *last = u->conns[--u->n];
    u->conns[hc->user_index] = last;
    last->user_index = hc->user_index;
    hc->user = NULL;
    if (u->n == 0) {
        HASH_DEL(hub->users, u);
        free(u->id);
        free(u->conns);
        free(u);
    }
}

static int user_add(sb_hub_t *hub, sb__hconn_t *hc, const char *user_id)
{
    sb__user_t *u;
    HASH_FIND_STR(hub->users, user_id, u);
    if (!u) {
        u = calloc(1, sizeof *u);
        if (!u || !(u->id = strdup(user_id))) {
            free(u);
            return SB_ENOMEM;
        }
        HASH_ADD_KEYPTR(hh, hub->users, u->id, strlen(u->id), u);
    }
    if (grow((void **)&u->conns, &u->cap, u->n, sizeof *u->conns)) {
        if (!u->n) {
            HASH_DEL(hub->users, u);
            free(u->id);
            free(u);
        }
        return SB_ENOMEM;
    }
    hc->user = u;
    hc->user_index = u->n;
    u->conns[u->n++] = hc;
    return 0;
}

int sb_hub_register(sb_hub_t *hub, sb_conn_t *conn)
{
    if (conn->hub)
        return SB_EEXIST;
    if (grow((void **)&hub->all, &hub->all_cap, hub->nall, sizeof *hub->all))
        return SB_ENOMEM;
    sb__hconn_t *hc = sb__slab_alloc(&hub->hconn_slab);
    if (!hc)
        return SB_ENOMEM;
    hc->conn = conn;
    hc->hub = hub;
    hc->rooms = &hc->first;
    hc->rooms_cap = 1;
    /* In a cluster connection ids repeat from node to node: a connection's
     * own user id is its id and this node's (docs/cluster.md). */
    char uid[96];
    if (hub->engine->node &&
        snprintf(uid, sizeof uid, "%s.%.8s", conn->id, hub->engine->node(hub)) < (int)sizeof uid) {
        if (user_add(hub, hc, uid)) {
            sb__slab_free(&hub->hconn_slab, hc);
            return SB_ENOMEM;
        }
        conn->hub = hc;
        hc->all_index = hub->nall;
        hub->all[hub->nall++] = hc;
        HASH_ADD_KEYPTR(hh, hub->by_id, conn->id, strlen(conn->id), hc);
        return 0;
    }
    /* A connection is its own user until identified, and then needs no user
     * record — unless an identified user already goes by its id. */
    sb__user_t *u;
    HASH_FIND_STR(hub->users, conn->id, u);
    if (u && user_add(hub, hc, conn->id)) {
        sb__slab_free(&hub->hconn_slab, hc);
        return SB_ENOMEM;
    }
    if (!u)
        hub->nanon++;
    conn->hub = hc;
    hc->all_index = hub->nall;
    hub->all[hub->nall++] = hc;
    HASH_ADD_KEYPTR(hh, hub->by_id, conn->id, strlen(conn->id), hc);
    return 0;
}

void sb_hub_unregister(sb_hub_t *hub, sb_conn_t *conn)
{
    sb__hconn_t *hc = sb__hconn(conn);
    if (!hc || hc->hub != hub)
        return;
    sb__hconn_leave_all(hc);
    if (hc->user)
        user_remove(hub, hc);
    else
        hub->nanon--;
    sb__hconn_t *last = hub->all[--hub->nall];
    hub->all[hc->all_index] = last;
    last->all_index = hc->all_index;
    HASH_DEL(hub->by_id, hc);
    free_hconn(hc);
}

/* Gives hc the user id uid (its own id: anonymous again). */
static int set_user(sb_hub_t *hub, sb__hconn_t *hc, const char *uid)
{
    sb__user_t *u;
    HASH_FIND_STR(hub->users, uid, u);
    if (hc->user)
        user_remove(hub, hc);
    else
        hub->nanon--;
    if (!u && strcmp(uid, hc->conn->id) == 0) {
        hub->nanon++;
        return 0;
    }
    if (user_add(hub, hc, uid)) {
        hub->nanon++; /* out of memory: an identity of its own */
        return SB_ENOMEM;
    }
    return 0;
}

int sb_hub_identify(sb_hub_t *hub, sb_conn_t *conn, const char *user_id, const char *name)
{
    sb__hconn_t *hc = sb__hconn(conn);
    if (!hc || hc->hub != hub || (user_id && !*user_id))
        return SB_EINVAL;
    if (name) {
        char *n = strdup(name);
        if (!n)
            return SB_ENOMEM;
        free(hc->name);
        hc->name = n;
    }
    if (!user_id || strcmp(user_id, sb_conn_user_id(conn)) == 0)
        return 0;
    /* An anonymous connection whose id this is belongs to the same user from
     * now on: one id, one user. */
    sb__hconn_t *other;
    HASH_FIND_STR(hub->by_id, user_id, other);
    if (other && other != hc && !other->user) {
        if (user_add(hub, other, user_id))
            return SB_ENOMEM;
        hub->nanon--;
    }
    return set_user(hub, hc, user_id);
}

const char *sb_conn_user_id(const sb_conn_t *conn)
{
    sb__hconn_t *hc = sb__hconn(conn);
    if (!hc)
        return NULL;
    return hc->user ? hc->user->id : conn->id;
}

const char *sb_conn_name(const sb_conn_t *conn)
{
    sb__hconn_t *hc = sb__hconn(conn);
    return hc ? hc->name : NULL;
}

sb_conn_t *sb_hub_conn(const sb_hub_t *hub, const char *conn_id)
{
    sb__hconn_t *hc;
    HASH_FIND_STR(hub->by_id, conn_id, hc);
    return hc ? hc->conn : NULL;
}

/* The connections of a user: an identified user's list, or the one
 * anonymous connection whose id it is (then *one holds it). */
static uint32_t user_list(const sb_hub_t *hub, const char *user_id, sb__hconn_t *const **list,
                          sb__hconn_t **one)
{
    sb__user_t *u;
    HASH_FIND_STR(hub->users, user_id, u);
    if (u) {
        *list = u->conns;
        return u->n;
    }
    sb__hconn_t *hc;
    HASH_FIND_STR(hub->by_id, user_id, hc);
    if (!hc || hc->user)
        return 0;
    *one = hc;
    *list = one;
    return 1;
}

size_t sb_hub_user_conns(const sb_hub_t *hub, const char *user_id, sb_conn_t **out, size_t max)
{
    sb__hconn_t *const *list;
    sb__hconn_t *one;
    uint32_t n = user_list(hub, user_id, &list, &one);
    for (uint32_t i = 0; i < n && i < max; i++)
        out[i] = list[i]->conn;
    return n;
}

size_t sb_hub_conn_count(const sb_hub_t *hub)
{
    return hub->nall;
}

size_t sb_hub_user_count(const sb_hub_t *hub)
{
    return HASH_COUNT(hub->users) + hub->nanon;
}

/* ---- fan-out ----------------------------------------------------------- */

/* A send can close its recipient (a slow consumer), but closing only marks
 * it: it is reaped after this loop, so the arrays walked here do not change
 * under us. */
int sb__hub_send_msg_list(sb__hconn_t *const *list, uint32_t n, const sb_conn_t *except,
                          sb_msg_t *msg)
{
    int reached = 0;
    for (uint32_t i = 0; i < n; i++)
        if (list[i]->conn != except && sb_conn_send_msg(list[i]->conn, msg) == 0)
            reached++;
    return reached;
}

int sb__hub_send_list(sb__hconn_t *const *list, uint32_t n, const sb_conn_t *except, int opcode,
                      const void *data, size_t len)
{
    sb_msg_t *m = sb_msg_new(opcode, data, len);
    if (!m)
        return SB_ENOMEM;
    int reached = sb__hub_send_msg_list(list, n, except, m);
    sb_msg_unref(m);
    return reached;
}

int sb_hub_broadcast(sb_hub_t *hub, int opcode, const void *data, size_t len)
{
    return sb__hub_send_list(hub->all, hub->nall, NULL, opcode, data, len);
}

int sb_hub_broadcast_json(sb_hub_t *hub, const char *json)
{
    return sb_hub_broadcast(hub, SB_OP_TEXT, json, strlen(json));
}

int sb_hub_send_user(sb_hub_t *hub, const char *user_id, int opcode, const void *data, size_t len)
{
    sb__hconn_t *const *list;
    sb__hconn_t *one;
    uint32_t n = user_list(hub, user_id, &list, &one);
    return n ? sb__hub_send_list(list, n, NULL, opcode, data, len) : 0;
}

int sb_hub_send_msg(sb_hub_t *hub, sb_conn_t *const *conns, size_t n, sb_msg_t *msg)
{
    (void)hub;
    int reached = 0;
    for (size_t i = 0; i < n; i++)
        if (sb_conn_send_msg(conns[i], msg) == 0)
            reached++;
    return reached;
}

/* ---- from other threads ------------------------------------------------ */

typedef enum { POST_ALL, POST_USER, POST_ROOM } post_kind_t;

typedef struct {
    sb_hub_t *hub;
    post_kind_t kind;
    int opcode;
    char *target; /* user id or room name */
    size_t len;
    uint8_t data[];
} post_t;

static void run_post(void *arg)
{
    post_t *p = arg;
    sb_room_t *room;
    switch (p->kind) {
    case POST_ALL:
        sb_hub_broadcast(p->hub, p->opcode, p->data, p->len);
        break;
    case POST_USER:
        sb_hub_send_user(p->hub, p->target, p->opcode, p->data, p->len);
        break;
    case POST_ROOM:
        room = sb_hub_room(p->hub, p->target);
        if (room)
            sb_room_broadcast(room, NULL, p->opcode, p->data, p->len);
        break;
    }
    free(p->target);
    free(p);
}

static int post(sb_hub_t *hub, post_kind_t kind, const char *target, int opcode, const void *data,
                size_t len)
{
    post_t *p = malloc(sizeof *p + len);
    if (!p)
        return SB_ENOMEM;
    *p = (post_t){.hub = hub, .kind = kind, .opcode = opcode, .len = len};
    if (len)
        memcpy(p->data, data, len);
    if (target && !(p->target = strdup(target))) {
        free(p);
        return SB_ENOMEM;
    }
    int r = sb_server_post(hub->srv, run_post, p);
    if (r) {
        free(p->target);
        free(p);
    }
    return r;
}

int sb_hub_broadcast_async(sb_hub_t *hub, int opcode, const void *data, size_t len)
{
    return post(hub, POST_ALL, NULL, opcode, data, len);
}

int sb_hub_send_user_async(sb_hub_t *hub, const char *user_id, int opcode, const void *data,
                           size_t len)
{
    return post(hub, POST_USER, user_id, opcode, data, len);
}

int sb_room_broadcast_async(sb_hub_t *hub, const char *room, int opcode, const void *data,
                            size_t len)
{
    return post(hub, POST_ROOM, room, opcode, data, len);
}

/* ---- endpoints --------------------------------------------------------- */

static int route_upgrade(sb_request_t *req, void *data)
{
    sb__hub_route_t *r = data;
    return r->h.on_upgrade ? r->h.on_upgrade(req, r->h.data) : 0;
}

static void route_open(sb_conn_t *conn, void *data)
{
    sb__hub_route_t *r = data;
    if (sb_hub_register(r->hub, conn)) {
        sb_conn_close(conn, SB_CLOSE_INTERNAL, "server out of memory");
        return;
    }
    if (r->h.on_open)
        r->h.on_open(r->hub, conn, r->h.data);
}

static void route_message(sb_conn_t *conn, int opcode, const void *msg, size_t len, void *data)
{
    sb__hub_route_t *r = data;
    if (r->h.on_message && conn->hub)
        r->h.on_message(r->hub, conn, opcode, msg, len, r->h.data);
}

static void route_close(sb_conn_t *conn, int code, const char *reason, size_t len, void *data)
{
    (void)reason;
    (void)len;
    sb__hub_route_t *r = data;
    if (!conn->hub)
        return;
    if (r->h.on_close)
        r->h.on_close(r->hub, conn, code, r->h.data);
    sb_hub_unregister(r->hub, conn);
}

static void route_dropped(sb_conn_t *conn, uint32_t count, void *data)
{
    sb__hub_route_t *r = data;
    if (r->h.on_dropped)
        r->h.on_dropped(r->hub, conn, count, r->h.data);
}

int sb_hub_route(sb_hub_t *hub, const char *path, const sb_hub_handlers_t *h)
{
    sb__hub_route_t **routes = realloc(hub->routes, (hub->nroutes + 1) * sizeof *routes);
    if (!routes)
        return SB_ENOMEM;
    hub->routes = routes;
    sb__hub_route_t *r = malloc(sizeof *r);
    if (!r)
        return SB_ENOMEM;
    r->hub = hub;
    r->h = *h;
    sb_ws_handlers_t ws = {
        .on_upgrade = route_upgrade,
        .on_open = route_open,
        .on_message = route_message,
        .on_close = route_close,
        .on_dropped = route_dropped,
        .subprotocols = h->subprotocols,
        .data = r,
    };
    int rc = sb_server_route_ws(hub->srv, path, &ws);
    if (rc) {
        free(r);
        return rc;
    }
    hub->routes[hub->nroutes++] = r;
    return 0;
}

/* ---- shutdown ---------------------------------------------------------- */

int sb_hub_on_shutdown(sb_hub_t *hub, void (*fn)(sb_hub_t *hub, void *data), void *data)
{
    sb__hook_t *hooks = realloc(hub->hooks, (hub->nhooks + 1) * sizeof *hooks);
    if (!hooks)
        return SB_ENOMEM;
    hub->hooks = hooks;
    hub->hooks[hub->nhooks++] = (sb__hook_t){fn, data};
    return 0;
}

static void run_hooks(void *data)
{
    sb_hub_t *hub = data;
    for (size_t i = 0; i < hub->nhooks; i++)
        hub->hooks[i].fn(hub, hub->hooks[i].data);
}

void sb_hub_shutdown(sb_hub_t *hub, uint64_t timeout_ms)
{
    /* The hooks run from the server's stop, whatever started it. */
    sb_server_stop(hub->srv, timeout_ms);
}
