/* engine_redis.c — many nodes as one, through Redis (docs/cluster.md).
 *
 * Two hiredis connections per node on the libuv loop: one for commands, one
 * subscribed. Channels: sb:r:ROOM (a room, subscribed while this node has
 * members in it), sb:u (to a user), sb:a (to everyone) and sb:n:NODE (this
 * node's own: history read for its clients).
 *
 * A chat message is stored and published by one Lua script (INCR the room's
 * id, ZADD to the room's history, trim, PUBLISH), so ids and order are the
 * same on every node, and every node — the sender's too — delivers it from
 * its subscription only: once, in id order. Events that are not stored
 * (typing, joins, user and global sends) are delivered to this node's
 * clients at once and published for the others, which skip their own.
 *
 * Every payload on a channel is "KIND\nNODE\nFIELD\nBODY". While Redis is
 * out of reach the node is degraded: it serves its own clients through the
 * local engine and reconnects with backoff.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "hub/engine.h"
#include "hub/hub.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define QUEUE_MAX 10000 /* commands waiting for a room's subscription */
#define BASE_CHANNELS 3 /* sb:n:NODE, sb:u, sb:a */

/* Sends a message (id assigned in Redis): KEYS id, history; ARGV head,
 * tail, max, channel, envelope head. */
static const char PUBLISH_LUA[] =
    "local id = redis.call('INCR', KEYS[1])\n"
    "local msg = ARGV[1] .. id .. ARGV[2]\n"
    "redis.call('ZADD', KEYS[2], id, msg)\n"
    "local max = tonumber(ARGV[3])\n"
    "if max > 0 then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -max - 1) end\n"
    "redis.call('PUBLISH', ARGV[4], ARGV[5] .. id .. '\\n' .. msg)\n"
    "return id\n";

/* Reads history and publishes it to the asking node's channel, so that it
 * arrives in order with the room's messages: KEYS history; ARGV since,
 * limit, channel, envelope head. Entries are "ID LEN\nJSON". */
static const char HISTORY_LUA[] =
    "local since = tonumber(ARGV[1])\n"
    "local limit = tonumber(ARGV[2])\n"
    "local r\n"
    "if since > 0 then\n"
    "  r = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. since, '+inf', 'WITHSCORES', 'LIMIT', 0, "
    "limit)\n"
    "else r = redis.call('ZRANGE', KEYS[1], -limit, -1, 'WITHSCORES') end\n"
    "local parts = {ARGV[4]}\n"
    "for i = 1, #r, 2 do parts[#parts + 1] = r[i + 1] .. ' ' .. #r[i] .. '\\n' .. r[i] end\n"
    "redis.call('PUBLISH', ARGV[3], table.concat(parts))\n"
    "return #r / 2\n";

enum { ROOM_IDLE, ROOM_SUBSCRIBING, ROOM_SUBSCRIBED, ROOM_UNSUBSCRIBING };

/* A command held until its room's subscription is confirmed: sent earlier,
 * its publish could overtake the subscription and be missed here. */
typedef struct cmd_s {
    struct cmd_s *next;
    uint64_t req; /* a history request; 0: a message */
    int argc;
    char **argv;
    size_t *argvlen;
} cmd_t;

typedef struct eroom_s {
    char *name;
    int state;
    int want; /* has local members */
    cmd_t *head, *tail;
    size_t queued;
    UT_hash_handle hh;
} eroom_t;

typedef struct req_s {
    struct req_s *next;
    uint64_t id;
    char *conn_id, *room;
    uint64_t since, first_live;
    size_t limit;
    int after_join;
    sb_history_cb cb;
    void *arg;
} req_t;

typedef struct redis_s {
    sb_hub_t *hub;
    uv_loop_t *loop;
    char host[256];
    int port;
    char node[17];
    char node_channel[24];
    redisAsyncContext *cmd, *sub;
    int cmd_up, sub_up, base_subs;
    int was_up, closing;
    uv_timer_t retry;
    uint64_t backoff_ms;
    eroom_t *rooms;
    req_t *reqs;
    uint64_t next_req;
} redis_t;

static redis_t *engine(sb_hub_t *hub)
{
    return hub->engine_state;
}

static int up(const redis_t *e)
{
    return e->cmd_up && e->sub_up && e->base_subs == BASE_CHANNELS;
}

static int redis_degraded(sb_hub_t *hub)
{
    return !up(engine(hub));
}

static void connect_both(redis_t *e);
static void schedule_retry(redis_t *e);

/* ---- commands ---------------------------------------------------------- */

static void cmd_free(cmd_t *c)
{
    for (int i = 0; c && i < c->argc; i++)
        free(c->argv[i]);
    if (c) {
        free(c->argv);
        free(c->argvlen);
    }
    free(c);
}

/* A command from n (pointer, length) pairs, copied. */
static cmd_t *cmd_new(int n, const char *const *s, const size_t *len)
{
    cmd_t *c = calloc(1, sizeof *c);
    if (!c || !(c->argv = calloc((size_t)n, sizeof *c->argv)) ||
        !(c->argvlen = malloc((size_t)n * sizeof *c->argvlen))) {
        cmd_free(c);
        return NULL;
    }
    for (int i = 0; i < n; i++, c->argc++) {
        if (!(c->argv[i] = malloc(len[i] + 1))) {
            cmd_free(c);
            return NULL;
        }
        memcpy(c->argv[i], s[i], len[i]);
        c->argv[i][len[i]] = '\0';
        c->argvlen[i] = len[i];
    }
    return c;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);
static void on_sub(redisAsyncContext *ac, void *reply, void *priv);

static int cmd_send(redis_t *e, cmd_t *c)
{
    int r = redisAsyncCommandArgv(e->cmd, on_reply, (void *)(uintptr_t)c->req, c->argc,
                                  (const char **)c->argv, c->argvlen);
    cmd_free(c);
    return r == REDIS_OK ? 0 : SB_EIO;
}

static eroom_t *eroom(redis_t *e, const char *name, int create)
{
    eroom_t *r;
    HASH_FIND_STR(e->rooms, name, r);
    if (r || !create)
        return r;
    r = calloc(1, sizeof *r);
    if (!r || !(r->name = strdup(name))) {
        free(r);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, e->rooms, r->name, strlen(r->name), r);
    return r;
}

static void eroom_free(redis_t *e, eroom_t *r)
{
    HASH_DEL(e->rooms, r);
    while (r->head) {
        cmd_t *c = r->head;
        r->head = c->next;
        cmd_free(c);
    }
    free(r->name);
    free(r);
}

/* Sends c now, or after the room's subscription when it is on its way. */
static int cmd_submit(redis_t *e, const char *room, cmd_t *c)
{
    eroom_t *r = eroom(e, room, 0);
    if (!r || !r->want || r->state == ROOM_SUBSCRIBED)
        return cmd_send(e, c);
    if (r->queued >= QUEUE_MAX) {
        cmd_free(c);
        return SB_ELIMIT;
    }
    c->next = NULL;
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    r->queued++;
    return 0;
}

static void subscribe_room(redis_t *e, eroom_t *r, int on)
{
    r->state = on ? ROOM_SUBSCRIBING : ROOM_UNSUBSCRIBING;
    /* Subscribed channels keep the callback given here (hiredis). */
    redisAsyncCommand(e->sub, on_sub, e, on ? "SUBSCRIBE sb:r:%s" : "UNSUBSCRIBE sb:r:%s", r->name);
}

/* ---- history requests -------------------------------------------------- */

static void req_free(req_t *q)
{
    if (q) {
        free(q->conn_id);
        free(q->room);
    }
    free(q);
}

static req_t *req_take(redis_t *e, uint64_t id)
{
    for (req_t **p = &e->reqs; *p; p = &(*p)->next)
        if ((*p)->id == id) {
            req_t *q = *p;
            *p = q->next;
            return q;
        }
    return NULL;
}

/* Answers q through the local engine (Redis is gone), or with an error. */
static void req_fallback(redis_t *e, req_t *q, int err)
{
    sb_conn_t *conn = sb_hub_conn(e->hub, q->conn_id);
    sb_room_t *room = sb_hub_room(e->hub, q->room);
    if (conn && room) {
        if (err)
            q->cb(conn, room, err, NULL, 0, q->arg);
        else
            sb__engine_local.history(e->hub, room, conn, q->since, q->limit, q->after_join, q->cb,
                                     q->arg);
    }
    req_free(q);
}

/* "ID LEN\nJSON..." after the envelope: the entries of request q. */
static void req_answer(redis_t *e, req_t *q, const char *p, const char *end)
{
    sb_conn_t *conn = sb_hub_conn(e->hub, q->conn_id);
    sb_room_t *room = sb_hub_room(e->hub, q->room);
    if (!conn || !room)
        return;
    size_t n = 0, cap = 0;
    sb_history_entry_t *v = NULL;
    int status = 0;
    while (p < end) {
        char *next;
        unsigned long long id = strtoull(p, &next, 10);
        if (next == p || *next != ' ')
            break;
        unsigned long long len = strtoull(next + 1, &next, 10);
        if (*next != '\n' || len > (size_t)(end - next - 1))
            break;
        const char *json = next + 1;
        p = json + len;
        /* Just joined: what came live since the first live message is
         * already with the client; everything before it is not. */
        if (q->after_join && q->first_live && id >= q->first_live)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            sb_history_entry_t *g = realloc(v, cap * sizeof *g);
            if (!g) {
                status = SB_ENOMEM;
                break;
            }
            v = g;
        }
        v[n++] = (sb_history_entry_t){id, json, (size_t)len};
    }
    if (status)
        q->cb(conn, room, status, NULL, 0, q->arg);
    else
        q->cb(conn, room, (int)n, v, n, q->arg);
    free(v);
}

/* ---- delivery from the subscription ------------------------------------ */

/* Splits "KIND\nNODE\nFIELD\nBODY"; returns 0 when it is one. */
static int envelope(const char *s, size_t len, char *kind, const char **node, size_t *nlen,
                    const char **field, size_t *flen, const char **body)
{
    const char *end = s + len, *a, *b, *c;
    if (len < 2 || s[1] != '\n')
        return -1;
    a = s + 2;
    if (!(b = memchr(a, '\n', (size_t)(end - a))))
        return -1;
    if (!(c = memchr(b + 1, '\n', (size_t)(end - b - 1))))
        return -1;
    *kind = s[0];
    *node = a;
    *nlen = (size_t)(b - a);
    *field = b + 1;
    *flen = (size_t)(c - b - 1);
    *body = c + 1;
    return 0;
}

static void deliver(redis_t *e, const char *channel, const char *s, size_t len)
{
    sb_hub_t *hub = e->hub;
    char kind;
    const char *node, *field, *body;
    size_t nlen, flen;
    if (envelope(s, len, &kind, &node, &nlen, &field, &flen, &body))
        return;
    size_t blen = len - (size_t)(body - s);
    int mine = nlen == strlen(e->node) && memcmp(node, e->node, nlen) == 0;
    char fbuf[256];
    if (flen >= sizeof fbuf)
        return;
    memcpy(fbuf, field, flen);
    fbuf[flen] = '\0';

    if (strncmp(channel, "sb:r:", 5) == 0) {
        sb_room_t *room = sb_hub_room(hub, channel + 5);
        if (kind == 'M') {
            uint64_t id = strtoull(fbuf, NULL, 10);
            for (req_t *q = e->reqs; q; q = q->next)
                if (q->after_join && !q->first_live && strcmp(q->room, channel + 5) == 0)
                    q->first_live = id;
            if (room) {
                room->messages++;
                room->last_activity_ms = sb__unix_ms();
                sb_room_broadcast(room, NULL, SB_OP_TEXT, body, blen);
            }
        } else if (kind == 'E' && !mine && room) {
            sb_room_broadcast(room, NULL, SB_OP_TEXT, body, blen);
        }
    } else if (kind == 'U' && !mine) {
        sb_hub_send_user(hub, fbuf, SB_OP_TEXT, body, blen);
    } else if (kind == 'A' && !mine) {
        sb_hub_broadcast(hub, SB_OP_TEXT, body, blen);
    } else if (kind == 'H' && mine) {
        req_t *q = req_take(e, strtoull(fbuf, NULL, 10));
        if (q)
            req_answer(e, q, body, s + len);
        req_free(q);
    }
}

/* ---- connections and faults -------------------------------------------- */

/* Redis is gone (or one of the two connections is): serve locally. */
static void went_down(redis_t *e)
{
    sb_hub_t *hub = e->hub;
    if (e->was_up && !e->closing)
        sb__log(hub->srv, SB_LOG_WARN,
                "redis: lost the connection to %s:%d; serving this node's clients only "
                "(degraded) and reconnecting",
                e->host, e->port);
    e->was_up = 0;
    e->base_subs = 0;
    /* What waited for a subscription is delivered here instead. */
    eroom_t *r = NULL, *tmp = NULL;
    HASH_ITER(hh, e->rooms, r, tmp)
    {
        r->state = ROOM_IDLE;
        while (r->head) {
            cmd_t *c = r->head;
            r->head = c->next;
            sb_room_t *room = sb_hub_room(hub, r->name);
            if (!c->req && room && !e->closing)
                sb__engine_local.publish_message(hub, room, sb__unix_ms(), c->argv[5],
                                                 c->argvlen[5], c->argv[6], c->argvlen[6], NULL);
            cmd_free(c);
        }
        r->tail = NULL;
        r->queued = 0;
        if (!r->want)
            eroom_free(e, r);
    }
    while (e->reqs) {
        req_t *q = e->reqs;
        e->reqs = q->next;
        if (e->closing)
            req_free(q);
        else
            req_fallback(e, q, 0);
    }
    /* Forgotten before they are freed: their callbacks then find nothing
     * of ours (a free runs the disconnect callback of a live one). */
    redisAsyncContext *cmd = e->cmd, *sub = e->sub;
    e->cmd = e->sub = NULL;
    e->cmd_up = e->sub_up = 0;
    if (cmd)
        redisAsyncFree(cmd);
    if (sub)
        redisAsyncFree(sub);
    schedule_retry(e);
}

static void on_retry(uv_timer_t *t)
{
    connect_both(t->data);
}

/* Both connections are closed: try again after the backoff. */
static void schedule_retry(redis_t *e)
{
    if (e->closing || e->cmd || e->sub)
        return;
    uv_timer_start(&e->retry, on_retry, e->backoff_ms, 0);
    e->backoff_ms = e->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : e->backoff_ms * 2;
}

/* Is ac one of ours? Then it is forgotten (hiredis frees it). */
static int forget(redis_t *e, const redisAsyncContext *ac)
{
    if (ac == e->cmd) {
        e->cmd = NULL;
        e->cmd_up = 0;
        return 1;
    }
    if (ac == e->sub) {
        e->sub = NULL;
        e->sub_up = 0;
        return 1;
    }
    return 0;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    redis_t *e = ac->data;
    if (forget(e, ac))
        went_down(e);
}

static void became_ready(redis_t *e)
{
    e->was_up = 1;
    e->backoff_ms = BACKOFF_MIN_MS;
    sb__log(e->hub->srv, SB_LOG_INFO, "redis: connected to %s:%d as node %s", e->host, e->port,
            e->node);
    /* Rooms with members here are listened to again. */
    eroom_t *r = NULL, *tmp = NULL;
    HASH_ITER(hh, e->rooms, r, tmp)
    if (r->want)
        subscribe_room(e, r, 1);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    redis_t *e = ac->data;
    if (status != REDIS_OK) {
        if (forget(e, ac)) /* freed by hiredis */
            went_down(e);
        return;
    }
    if (ac == e->cmd)
        e->cmd_up = 1;
    else {
        e->sub_up = 1;
        redisAsyncCommand(e->sub, on_sub, e, "SUBSCRIBE %s sb:u sb:a", e->node_channel);
    }
    if (up(e))
        became_ready(e);
}

static void on_sub(redisAsyncContext *ac, void *reply, void *priv)
{
    redis_t *e = priv;
    redisReply *r = reply;
    if (!r || ac != e->sub || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *type = r->element[0]->str, *channel = r->element[1]->str;
    int is_room = strncmp(channel, "sb:r:", 5) == 0;
    if (strcmp(type, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING) {
        deliver(e, channel, r->element[2]->str, r->element[2]->len);
    } else if (strcmp(type, "subscribe") == 0 && !is_room) {
        if (++e->base_subs == BASE_CHANNELS && up(e))
            became_ready(e);
    } else if (strcmp(type, "subscribe") == 0) {
        eroom_t *er = eroom(e, channel + 5, 0);
        if (!er || er->state != ROOM_SUBSCRIBING)
            return;
        er->state = ROOM_SUBSCRIBED;
        while (er->head) {
            cmd_t *c = er->head;
            er->head = c->next;
            cmd_send(e, c);
        }
        er->tail = NULL;
        er->queued = 0;
        if (!er->want)
            subscribe_room(e, er, 0);
    } else if (strcmp(type, "unsubscribe") == 0 && is_room) {
        eroom_t *er = eroom(e, channel + 5, 0);
        if (!er || er->state != ROOM_UNSUBSCRIBING)
            return;
        er->state = ROOM_IDLE;
        if (er->want)
            subscribe_room(e, er, 1);
        else
            eroom_free(e, er);
    }
}

/* Replies of the command connection: only failures matter. */
static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    redis_t *e = ac->data;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ERROR)
        return;
    sb__log(e->hub->srv, SB_LOG_ERROR, "redis: a command failed: %s", r->str);
    req_t *q = priv ? req_take(e, (uintptr_t)priv) : NULL;
    if (q)
        req_fallback(e, q, SB_EIO);
}

static redisAsyncContext *open_one(redis_t *e)
{
    redisAsyncContext *ac = redisAsyncConnect(e->host, e->port);
    if (!ac)
        return NULL;
    if (ac->err || redisLibuvAttach(ac, e->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    /* The connection alone keeps no loop alive: the server decides when it
     * stops, and the hub closes these at its end. */
    uv_unref((uv_handle_t *)&((redisLibuvEvents *)ac->ev.data)->handle);
    ac->data = e;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

static void connect_both(redis_t *e)
{
    if (e->closing)
        return;
    e->cmd = open_one(e);
    e->sub = e->cmd ? open_one(e) : NULL;
    if (!e->sub)
        went_down(e);
}

/* redis://HOST[:PORT][/] */
static int parse_url(redis_t *e, const char *url)
{
    if (strncmp(url, "redis://", 8) != 0)
        return -1;
    const char *h = url + 8, *end = h + strcspn(h, "/"), *colon = memchr(h, ':', (size_t)(end - h));
    const char *hend = colon ? colon : end;
    if (hend == h || (size_t)(hend - h) >= sizeof e->host || (*end && end[1]))
        return -1;
    memcpy(e->host, h, (size_t)(hend - h));
    e->host[hend - h] = '\0';
    e->port = 6379;
    if (colon) {
        char *stop;
        long p = strtol(colon + 1, &stop, 10);
        if (stop != end || p < 1 || p > 65535)
            return -1;
        e->port = (int)p;
    }
    return 0;
}

/* ---- the engine's operations ------------------------------------------- */

static int redis_open(sb_hub_t *hub, const char **err)
{
    redis_t *e = calloc(1, sizeof *e);
    if (!e)
        return SB_ENOMEM;
    if (parse_url(e, hub->cfg.redis_url)) {
        free(e);
        *err = "redis_url must be redis://HOST:PORT (for example redis://127.0.0.1:6379)";
        return SB_EINVAL;
    }
    e->hub = hub;
    e->loop = sb__server_loop(hub->srv);
    e->backoff_ms = BACKOFF_MIN_MS;
    /* A node id for this process: other nodes tell its envelopes by it. */
    FILE *f = fopen("/dev/urandom", "rb");
    unsigned char rnd[8] = {0};
    if (!f || fread(rnd, 1, sizeof rnd, f) != sizeof rnd) {
        if (f)
            fclose(f);
        free(e);
        *err = "cannot read /dev/urandom for the node id";
        return SB_EIO;
    }
    fclose(f);
    for (int i = 0; i < 8; i++)
        snprintf(e->node + 2 * i, 3, "%02x", rnd[i]);
    snprintf(e->node_channel, sizeof e->node_channel, "sb:n:%s", e->node);
    uv_timer_init(e->loop, &e->retry);
    e->retry.data = e;
    uv_unref((uv_handle_t *)&e->retry);
    hub->engine_state = e;
    connect_both(e); /* not connected yet: degraded until it is */
    return 0;
}

static void redis_close(sb_hub_t *hub)
{
    redis_t *e = engine(hub);
    if (!e)
        return;
    e->closing = 1;
    uv_close((uv_handle_t *)&e->retry, NULL);
    went_down(e); /* frees both connections */
    eroom_t *r = NULL, *tmp = NULL;
    HASH_ITER(hh, e->rooms, r, tmp)
    {
        eroom_free(e, r);
    }
    uv_run(e->loop, UV_RUN_NOWAIT); /* the adapters' handles close */
    free(e);
    hub->engine_state = NULL;
}

static void redis_room_active(sb_hub_t *hub, sb_room_t *room, int active)
{
    redis_t *e = engine(hub);
    eroom_t *r = eroom(e, room->name, active);
    if (!r)
        return; /* out of memory: this node hears the room only through its own */
    r->want = active;
    if (!up(e)) {
        if (!active && r->state == ROOM_IDLE)
            eroom_free(e, r);
        return; /* (re)subscribed when Redis is back */
    }
    if (active && r->state == ROOM_IDLE)
        subscribe_room(e, r, 1);
    else if (!active && r->state == ROOM_SUBSCRIBED)
        subscribe_room(e, r, 0);
}

static int redis_publish_message(sb_hub_t *hub, sb_room_t *room, int64_t ts_ms, const char *head,
                                 size_t hlen, const char *tail, size_t tlen, uint64_t *id)
{
    redis_t *e = engine(hub);
    if (!up(e))
        return sb__engine_local.publish_message(hub, room, ts_ms, head, hlen, tail, tlen, id);
    char idkey[80], hkey[80], chan[80], max[24], env[40];
    snprintf(idkey, sizeof idkey, "sb:id:%s", room->name);
    snprintf(hkey, sizeof hkey, "sb:h:%s", room->name);
    snprintf(chan, sizeof chan, "sb:r:%s", room->name);
    snprintf(max, sizeof max, "%zu", hub->cfg.history_max);
    snprintf(env, sizeof env, "M\n%s\n", e->node);
    const char *argv[] = {"EVAL", PUBLISH_LUA, "2", idkey, hkey, head, tail, max, chan, env};
    size_t len[] = {
        4,           sizeof PUBLISH_LUA - 1, 1,          strlen(idkey), strlen(hkey), hlen, tlen,
        strlen(max), strlen(chan),           strlen(env)};
    cmd_t *c = cmd_new(10, argv, len);
    if (!c)
        return SB_ENOMEM;
    int r = cmd_submit(e, room->name, c);
    return r < 0 ? r : 0;
}

static int publish_env(redis_t *e, const char *channel, char kind, const char *field,
                       const char *json, size_t len)
{
    if (!up(e))
        return 0;
    size_t flen = strlen(field), n = 2 + strlen(e->node) + 1 + flen + 1 + len;
    char *s = malloc(n + 1);
    if (!s)
        return SB_ENOMEM;
    int h = snprintf(s, n + 1, "%c\n%s\n%s\n", kind, e->node, field);
    memcpy(s + h, json, len);
    int r = redisAsyncCommand(e->cmd, on_reply, NULL, "PUBLISH %s %b", channel, s, n);
    free(s);
    return r == REDIS_OK ? 0 : SB_EIO;
}

/* Events are delivered here at once and published for the other nodes. */
static int redis_publish_room(sb_hub_t *hub, sb_room_t *room, const sb_conn_t *except,
                              const char *json, size_t len)
{
    char chan[80];
    snprintf(chan, sizeof chan, "sb:r:%s", room->name);
    int r = publish_env(engine(hub), chan, 'E', "", json, len);
    int reached = sb_room_broadcast(room, except, SB_OP_TEXT, json, len);
    return r < 0 ? r : reached;
}

static int redis_publish_user(sb_hub_t *hub, const char *user_id, const char *json, size_t len)
{
    if (strchr(user_id, '\n') || strlen(user_id) >= 256)
        return SB_EINVAL;
    int r = publish_env(engine(hub), "sb:u", 'U', user_id, json, len);
    int reached = sb_hub_send_user(hub, user_id, SB_OP_TEXT, json, len);
    return r < 0 ? r : reached;
}

static int redis_publish_all(sb_hub_t *hub, const char *json, size_t len)
{
    int r = publish_env(engine(hub), "sb:a", 'A', "", json, len);
    int reached = sb_hub_broadcast(hub, SB_OP_TEXT, json, len);
    return r < 0 ? r : reached;
}

static int redis_history(sb_hub_t *hub, sb_room_t *room, sb_conn_t *conn, uint64_t since,
                         size_t limit, int after_join, sb_history_cb cb, void *arg)
{
    redis_t *e = engine(hub);
    if (!up(e))
        return sb__engine_local.history(hub, room, conn, since, limit, after_join, cb, arg);
    req_t *q = calloc(1, sizeof *q);
    if (!q || !(q->conn_id = strdup(sb_conn_id(conn))) || !(q->room = strdup(room->name))) {
        req_free(q);
        return SB_ENOMEM;
    }
    *q = (req_t){.id = ++e->next_req,
                 .conn_id = q->conn_id,
                 .room = q->room,
                 .since = since,
                 .limit = limit,
                 .after_join = after_join,
                 .cb = cb,
                 .arg = arg};
    char hkey[80], s_since[24], s_limit[24], env[64];
    snprintf(hkey, sizeof hkey, "sb:h:%s", room->name);
    snprintf(s_since, sizeof s_since, "%llu", (unsigned long long)since);
    snprintf(s_limit, sizeof s_limit, "%zu", limit);
    snprintf(env, sizeof env, "H\n%s\n%llu\n", e->node, (unsigned long long)q->id);
    const char *argv[] = {"EVAL", HISTORY_LUA, "1", hkey, s_since, s_limit, e->node_channel, env};
    size_t len[] = {4,
                    sizeof HISTORY_LUA - 1,
                    1,
                    strlen(hkey),
                    strlen(s_since),
                    strlen(s_limit),
                    strlen(e->node_channel),
                    strlen(env)};
    cmd_t *c = cmd_new(8, argv, len);
    if (!c) {
        req_free(q);
        return SB_ENOMEM;
    }
    c->req = q->id;
    q->next = e->reqs;
    e->reqs = q;
    /* After a join the read waits for the room's subscription: then
     * whatever it does not return arrives live. */
    int r = after_join ? cmd_submit(e, room->name, c) : cmd_send(e, c);
    if (r)
        req_free(req_take(e, q->id));
    return r;
}

const sb__engine_t sb__engine_redis = {
    .name = "redis",
    .open = redis_open,
    .close = redis_close,
    .room_active = redis_room_active,
    .publish_message = redis_publish_message,
    .publish_room = redis_publish_room,
    .publish_user = redis_publish_user,
    .publish_all = redis_publish_all,
    .history = redis_history,
    .degraded = redis_degraded,
};
