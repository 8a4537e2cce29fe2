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
 *
 * Presence: one script counts a member change in Redis (per room and user,
 * per user, and per node so that a dead node's share can be taken away),
 * publishes the join or leave event with the room's count spliced in, the
 * presence event when the user's count went 0 -> 1 (a room) or 1 -> 0 (any
 * room), and the change itself on sb:p. Every node keeps a copy of the
 * counts from sb:p (after a snapshot published to its own channel, in order
 * with the changes), so that HTTP answers, which cannot wait, answer for the
 * cluster. Each node refreshes sb:alive:NODE every REFRESH_MS; a node whose
 * key has expired is reaped by the next node that looks, which announces
 * its users' leaves (one script: once in the cluster). Nicknames are
 * claimed in Redis by one script (sb:nk), before the join goes on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "hub/engine.h"
#include "hub/hub.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define QUEUE_MAX 10000         /* commands waiting for a room's subscription */
#define BASE_CHANNELS 4         /* sb:n:NODE, sb:u, sb:a, sb:p */
#define CONNECT_TIMEOUT_MS 2000 /* a connect not answered by then is given up */
#define REFRESH_MS 2000         /* sb:alive:NODE is set again this often */
#define ALIVE_TTL_MS 6000       /* and lives this long: a dead node is gone within it */

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

/* A member change (see the file comment). ARGV: node, room ('' none), user,
 * nick, room delta, user delta, event head, event tail, announce, presence,
 * event envelope, change envelope, rooms for an offline presence... Returns
 * {room count, user's count in the room, user's count}, or -1 when this node
 * was reaped (it then registers again). */
static const char MEMBER_LUA[] =
    "local node, room, user, nick = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "local dr, du = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "if redis.call('SISMEMBER', 'sb:nodes', node) == 0 then return -1 end\n"
    "local nm = 'sb:nm:' .. node\n"
    "local total, inroom, utotal = 0, 0, 0\n"
    "if room ~= '' and dr ~= 0 then\n"
    "  inroom = redis.call('HINCRBY', 'sb:rc:' .. room, user, dr)\n"
    "  if inroom <= 0 then redis.call('HDEL', 'sb:rc:' .. room, user) end\n"
    "  total = redis.call('HINCRBY', 'sb:rn', room, dr)\n"
    "  if total <= 0 then redis.call('HDEL', 'sb:rn', room) end\n"
    "  local f = 'r\\n' .. room .. '\\n' .. user\n"
    "  if redis.call('HINCRBY', nm, f, dr) <= 0 then redis.call('HDEL', nm, f) end\n"
    "end\n"
    "if du ~= 0 then\n"
    "  utotal = redis.call('HINCRBY', 'sb:uc', user, du)\n"
    "  if utotal <= 0 then\n"
    "    local old = redis.call('HGET', 'sb:nick', user)\n"
    "    if old and redis.call('HGET', 'sb:nk', old) == user then redis.call('HDEL', 'sb:nk', old) "
    "end\n"
    "    redis.call('HDEL', 'sb:uc', user); redis.call('HDEL', 'sb:nick', user)\n"
    "  end\n"
    "  if redis.call('HINCRBY', nm, 'u\\n' .. user, du) <= 0 then redis.call('HDEL', nm, 'u\\n' "
    ".. user) end\n"
    "end\n"
    "if nick ~= '' and du >= 0 then redis.call('HSET', 'sb:nick', user, nick) end\n"
    "redis.call('PUBLISH', 'sb:p', ARGV[12] .. room .. '\\n' .. user .. '\\n' .. dr .. '\\n' .. "
    "du .. '\\n' .. nick)\n"
    "if ARGV[7] ~= '' and ARGV[9] == '1' then\n"
    "  redis.call('PUBLISH', 'sb:r:' .. room, ARGV[11] .. ARGV[7] .. total .. ARGV[8])\n"
    "end\n"
    "if ARGV[10] ~= '' then\n"
    "  if dr > 0 and inroom == dr then\n"
    "    redis.call('PUBLISH', 'sb:r:' .. room, ARGV[11] .. ARGV[10])\n"
    "  elseif du < 0 and utotal <= 0 then\n"
    "    for i = 13, #ARGV do redis.call('PUBLISH', 'sb:r:' .. ARGV[i], ARGV[11] .. ARGV[10]) end\n"
    "  end\n"
    "end\n"
    "return {total, inroom, utotal}\n";

/* Claims a nickname (sb:nk, nickname -> user) for a user: refused while
 * another user online (in sb:uc) holds it or has it as user id; the user's
 * previous nickname is released. ARGV: node, user, nick. Returns 1
 * (claimed), 0 (taken) or -1 when this node was reaped. */
static const char NICK_LUA[] =
    "local node, user, nick = ARGV[1], ARGV[2], ARGV[3]\n"
    "if redis.call('SISMEMBER', 'sb:nodes', node) == 0 then return -1 end\n"
    "if nick ~= user and redis.call('HEXISTS', 'sb:uc', nick) == 1 then return 0 end\n"
    "local h = redis.call('HGET', 'sb:nk', nick)\n"
    "if h and h ~= user and redis.call('HEXISTS', 'sb:uc', h) == 1 then return 0 end\n"
    "local old = redis.call('HGET', 'sb:nick', user)\n"
    "if old and old ~= nick and redis.call('HGET', 'sb:nk', old) == user then\n"
    "  redis.call('HDEL', 'sb:nk', old)\n"
    "end\n"
    "redis.call('HSET', 'sb:nk', nick, user)\n"
    "redis.call('HSET', 'sb:nick', user, nick)\n"
    "return 1\n";

/* Every REFRESH_MS: reaps the nodes whose sb:alive key has expired (their
 * counts are taken away and the changes published), then refreshes this
 * node's. ARGV: node, ttl, change envelope, 'reset' (this node's counts go
 * too: it registers them again), event envelope, timestamp (a JSON string).
 * A reaped node's users leave its rooms: each room gets one user_left per
 * user with the count left on every node, and presence offline when that
 * user is now online nowhere. Being one script, a node is reaped (and
 * announced) by one node only. Returns -1 when this node had been reaped. */
static const char TICK_LUA[] =
    "local me, penv, venv, ts = ARGV[1], ARGV[3], ARGV[5], ARGV[6]\n"
    "local function ev(t, room, user, nick, extra)\n"
    "  local s = '{\"type\":\"' .. t .. '\",'\n"
    "  if room then s = s .. '\"room\":' .. cjson.encode(room) .. ',' end\n"
    "  return s .. '\"nickname\":' .. cjson.encode(nick) .. ',\"user_id\":' .. "
    "cjson.encode(user) .. extra .. ',\"timestamp\":' .. ts .. '}'\n"
    "end\n"
    "local function reap(n, announce)\n"
    "  local f = redis.call('HGETALL', 'sb:nm:' .. n)\n"
    "  local urooms, users = {}, {}\n"
    "  for i = 1, #f, 2 do\n"
    "    local k, c = f[i], tonumber(f[i + 1])\n"
    "    if k:sub(1, 2) == 'r\\n' then\n"
    "      local rest = k:sub(3)\n"
    "      local nl = rest:find('\\n', 1, true)\n"
    "      local room, user = rest:sub(1, nl - 1), rest:sub(nl + 1)\n"
    "      if redis.call('HINCRBY', 'sb:rc:' .. room, user, -c) <= 0 then redis.call('HDEL', "
    "'sb:rc:' .. room, user) end\n"
    "      local total = redis.call('HINCRBY', 'sb:rn', room, -c)\n"
    "      if total <= 0 then redis.call('HDEL', 'sb:rn', room); total = 0 end\n"
    "      redis.call('PUBLISH', 'sb:p', penv .. room .. '\\n' .. user .. '\\n' .. -c .. "
    "'\\n0\\n')\n"
    "      if announce then\n"
    "        local nick = redis.call('HGET', 'sb:nick', user) or user\n"
    "        redis.call('PUBLISH', 'sb:r:' .. room, venv .. ev('user_left', room, user, nick, "
    "',\"user_count\":' .. total))\n"
    "        urooms[user] = urooms[user] or {}\n"
    "        table.insert(urooms[user], room)\n"
    "      end\n"
    "    else\n"
    "      users[#users + 1] = {k:sub(3), c}\n"
    "    end\n"
    "  end\n"
    "  for _, uc in ipairs(users) do\n"
    "    local user, c = uc[1], uc[2]\n"
    "    local nick = redis.call('HGET', 'sb:nick', user) or user\n"
    "    if redis.call('HINCRBY', 'sb:uc', user, -c) <= 0 then\n"
    "      redis.call('HDEL', 'sb:uc', user)\n"
    "      redis.call('HDEL', 'sb:nick', user)\n"
    "      if redis.call('HGET', 'sb:nk', nick) == user then redis.call('HDEL', 'sb:nk', nick) "
    "end\n"
    "      local off = ev('presence', nil, user, nick, ',\"status\":\"offline\"')\n"
    "      for _, room in ipairs(urooms[user] or {}) do\n"
    "        redis.call('PUBLISH', 'sb:r:' .. room, venv .. off)\n"
    "      end\n"
    "    end\n"
    "    redis.call('PUBLISH', 'sb:p', penv .. '\\n' .. user .. '\\n0\\n' .. -c .. '\\n')\n"
    "  end\n"
    "  redis.call('DEL', 'sb:nm:' .. n)\n"
    "  redis.call('SREM', 'sb:nodes', n)\n"
    "end\n"
    "local reaped = 0\n"
    "for _, n in ipairs(redis.call('SMEMBERS', 'sb:nodes')) do\n"
    "  if n ~= me and redis.call('EXISTS', 'sb:alive:' .. n) == 0 then reap(n, true); reaped = "
    "reaped + 1 end\n"
    "end\n"
    "if ARGV[4] == 'reset' then reap(me, false); redis.call('SADD', 'sb:nodes', me) end\n"
    "if redis.call('SISMEMBER', 'sb:nodes', me) == 0 then return -1 end\n"
    "redis.call('SET', 'sb:alive:' .. me, '1', 'PX', ARGV[2])\n"
    "return reaped\n";

/* The counts, as JSON [[[room, [user, n, ...]], ...], [user, n, ...], [user,
 * nick, ...]], published to the asking node's channel so that it comes in
 * order with the changes on sb:p. ARGV: channel, envelope head. */
static const char SNAPSHOT_LUA[] =
    "local rooms = {}\n"
    "local rn = redis.call('HGETALL', 'sb:rn')\n"
    "for i = 1, #rn, 2 do rooms[#rooms + 1] = {rn[i], redis.call('HGETALL', 'sb:rc:' .. rn[i])} "
    "end\n"
    "local s = cjson.encode({rooms, redis.call('HGETALL', 'sb:uc'), redis.call('HGETALL', "
    "'sb:nick')})\n"
    "redis.call('PUBLISH', ARGV[1], ARGV[2] .. s)\n"
    "return #rn / 2\n";

enum { ROOM_IDLE, ROOM_SUBSCRIBING, ROOM_SUBSCRIBED, ROOM_UNSUBSCRIBING };

/* What a command's reply is for. */
enum { CMD_MESSAGE, CMD_HISTORY, CMD_MEMBER, CMD_NICK, CMD_OTHER };

/* The reply of a command that needs one: a history request, a member
 * change whose event goes to a connection directly, the refresh. */
typedef struct pend_s {
    int kind;
    uint64_t req;  /* CMD_HISTORY */
    char *conn_id; /* CMD_MEMBER: the connection that gets the event */
    char *room, *head, *tail;
    sb_claim_cb claim; /* CMD_NICK: runs once (with no connection when unanswered) */
    void *claim_arg;
} pend_t;

/* The presence copy (see the file comment). */
typedef struct puser_s {
    char *id;
    char *nick;
    int64_t n; /* connections (of the user, or of the user in a room) */
    UT_hash_handle hh;
} puser_t;

typedef struct proom_s {
    char *name;
    int64_t n;
    puser_t *users;
    UT_hash_handle hh;
} proom_t;

/* A command held until its room's subscription is confirmed: sent earlier,
 * its publish could overtake the subscription and be missed here. */
typedef struct cmd_s {
    struct cmd_s *next;
    int kind;     /* CMD_* */
    pend_t *pend; /* NULL: only a failure matters */
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
    uv_timer_t tick;
    int synced; /* the presence copy holds the cluster's counts */
    proom_t *prooms;
    puser_t *pusers;
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

static void pend_free(pend_t *p)
{
    if (p && p->claim)
        p->claim(NULL, SB_EIO, p->claim_arg);
    if (p) {
        free(p->conn_id);
        free(p->room);
        free(p->head);
        free(p->tail);
    }
    free(p);
}

static void cmd_free(cmd_t *c)
{
    for (int i = 0; c && i < c->argc; i++)
        free(c->argv[i]);
    if (c) {
        free(c->argv);
        free(c->argvlen);
        pend_free(c->pend);
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
static void resync(redis_t *e);
static void confirm(redis_t *e, const pend_t *p, long long count);
static void member_locally(sb_room_t *room, int announce, const char *head, const char *tail,
                           const pend_t *p);

/* Sends c (and frees it); its pend goes with it to on_reply. */
static int cmd_send(redis_t *e, cmd_t *c)
{
    pend_t *p = c->pend;
    c->pend = NULL;
    int r = redisAsyncCommandArgv(e->cmd, on_reply, p, c->argc, (const char **)c->argv, c->argvlen);
    if (r != REDIS_OK)
        pend_free(p);
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
    /* What follows a waiting command waits too, or it would overtake it. */
    if (!r || (!r->head && (!r->want || r->state == ROOM_SUBSCRIBED)))
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

/* ---- the presence copy ------------------------------------------------- */

static void puser_del(puser_t **head, puser_t *u)
{
    HASH_DEL(*head, u);
    free(u->id);
    free(u->nick);
    free(u);
}

static puser_t *puser_get(puser_t **head, const char *id, size_t len, int create)
{
    puser_t *u;
    HASH_FIND(hh, *head, id, len, u);
    if (u || !create)
        return u;
    if (!(u = calloc(1, sizeof *u)) || !(u->id = strndup(id, len))) {
        free(u);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, *head, u->id, len, u);
    return u;
}

static void proom_del(redis_t *e, proom_t *r)
{
    puser_t *u = NULL, *tmp = NULL;
    HASH_ITER(hh, r->users, u, tmp)
    {
        puser_del(&r->users, u);
    }
    HASH_DEL(e->prooms, r);
    free(r->name);
    free(r);
}

static proom_t *proom_get(redis_t *e, const char *name, size_t len, int create)
{
    proom_t *r;
    HASH_FIND(hh, e->prooms, name, len, r);
    if (r || !create)
        return r;
    if (!(r = calloc(1, sizeof *r)) || !(r->name = strndup(name, len))) {
        free(r);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, e->prooms, r->name, len, r);
    return r;
}

static void presence_clear(redis_t *e)
{
    proom_t *r = NULL, *rtmp = NULL;
    HASH_ITER(hh, e->prooms, r, rtmp)
    {
        proom_del(e, r);
    }
    puser_t *u = NULL, *utmp = NULL;
    HASH_ITER(hh, e->pusers, u, utmp)
    {
        puser_del(&e->pusers, u);
    }
    e->synced = 0;
}

/* One change (a member change script's, or a reaped node's). Out of memory
 * leaves the copy short of it; the next resync puts it right. */
static void presence_apply(redis_t *e, const char *room, size_t rlen, const char *user, size_t ulen,
                           int64_t dr, int64_t du, const char *nick, size_t nlen)
{
    if (rlen && dr) {
        proom_t *r = proom_get(e, room, rlen, dr > 0);
        puser_t *m = r ? puser_get(&r->users, user, ulen, dr > 0) : NULL;
        if (m && (m->n += dr) <= 0)
            puser_del(&r->users, m);
        if (r && (r->n += dr) <= 0)
            proom_del(e, r);
    }
    puser_t *u = puser_get(&e->pusers, user, ulen, du > 0);
    if (u && (u->n += du) <= 0) {
        puser_del(&e->pusers, u);
        u = NULL;
    }
    if (u && nlen && du >= 0) {
        char *n = strndup(nick, nlen);
        if (n) {
            free(u->nick);
            u->nick = n;
        }
    }
}

/* "ROOM\nUSER\nDR\nDU\nNICK" from sb:p. */
static void presence_change(redis_t *e, const char *s, const char *end)
{
    const char *f[5];
    size_t len[5];
    for (int i = 0; i < 5; i++) {
        const char *nl = i < 4 ? memchr(s, '\n', (size_t)(end - s)) : end;
        if (!nl)
            return;
        f[i] = s;
        len[i] = (size_t)(nl - s);
        s = nl + 1;
    }
    char num[24];
    int64_t d[2];
    for (int i = 0; i < 2; i++) {
        if (len[2 + i] >= sizeof num)
            return;
        memcpy(num, f[2 + i], len[2 + i]);
        num[len[2 + i]] = '\0';
        d[i] = strtoll(num, NULL, 10);
    }
    presence_apply(e, f[0], len[0], f[1], len[1], d[0], d[1], f[4], len[4]);
}

/* The snapshot (SNAPSHOT_LUA's JSON): the copy starts again from it. */
static void presence_snapshot(redis_t *e, const char *s, size_t len)
{
    json_t *v = json_loadb(s, len, 0, NULL);
    presence_clear(e);
    json_t *rooms = json_array_get(v, 0), *users = json_array_get(v, 1),
           *nicks = json_array_get(v, 2);
    /* An empty Lua table comes as {} (an object): nothing. */
    size_t i;
    json_t *r;
    json_array_foreach(rooms, i, r)
    {
        const char *room = json_string_value(json_array_get(r, 0));
        json_t *m = json_array_get(r, 1);
        for (size_t k = 0; room && k + 1 < json_array_size(m); k += 2) {
            const char *u = json_string_value(json_array_get(m, k));
            const char *n = json_string_value(json_array_get(m, k + 1));
            if (u && n)
                presence_apply(e, room, strlen(room), u, strlen(u), strtoll(n, NULL, 10), 0, "", 0);
        }
    }
    for (size_t k = 0; k + 1 < json_array_size(users); k += 2) {
        const char *u = json_string_value(json_array_get(users, k));
        const char *n = json_string_value(json_array_get(users, k + 1));
        if (u && n)
            presence_apply(e, "", 0, u, strlen(u), 0, strtoll(n, NULL, 10), "", 0);
    }
    for (size_t k = 0; k + 1 < json_array_size(nicks); k += 2) {
        const char *u = json_string_value(json_array_get(nicks, k));
        const char *n = json_string_value(json_array_get(nicks, k + 1));
        if (u && n)
            presence_apply(e, "", 0, u, strlen(u), 0, 0, n, strlen(n));
    }
    json_decref(v);
    e->synced = v != NULL;
}

/* The member change's event for p's connection: head COUNT tail. */
static void confirm(redis_t *e, const pend_t *p, long long count)
{
    sb_conn_t *conn = p->conn_id ? sb_hub_conn(e->hub, p->conn_id) : NULL;
    if (!conn)
        return;
    char num[24];
    int n = snprintf(num, sizeof num, "%lld", count);
    size_t hlen = strlen(p->head), tlen = strlen(p->tail);
    char *s = malloc(hlen + (size_t)n + tlen);
    if (!s)
        return;
    memcpy(s, p->head, hlen);
    memcpy(s + hlen, num, (size_t)n);
    memcpy(s + hlen + n, p->tail, tlen);
    sb_conn_send(conn, SB_OP_TEXT, s, hlen + (size_t)n + tlen);
    free(s);
}

/* A member change that could not reach Redis: what one node would do. */
static void member_locally(sb_room_t *room, int announce, const char *head, const char *tail,
                           const pend_t *p)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%zu", sb_room_count(room));
    size_t hlen = strlen(head), tlen = strlen(tail);
    char *s = malloc(hlen + (size_t)n + tlen);
    if (!s)
        return;
    memcpy(s, head, hlen);
    memcpy(s + hlen, num, (size_t)n);
    memcpy(s + hlen + n, tail, tlen);
    sb_conn_t *conn = p && p->conn_id ? sb_hub_conn(room->hub, p->conn_id) : NULL;
    if (announce)
        sb_room_broadcast(room, NULL, SB_OP_TEXT, s, hlen + (size_t)n + tlen);
    if (conn && !(announce && sb_room_has(room, conn)))
        sb_conn_send(conn, SB_OP_TEXT, s, hlen + (size_t)n + tlen);
    free(s);
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
        } else if (kind == 'V' && room) {
            /* From a script: every node delivers it, the sender's too. */
            sb_room_broadcast(room, NULL, SB_OP_TEXT, body, blen);
        }
    } else if (kind == 'P') {
        if (e->synced)
            presence_change(e, body, s + len);
    } else if (kind == 'S' && mine) {
        presence_snapshot(e, body, blen);
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
    presence_clear(e); /* this node's own counts answer until it is back */
    /* What waited for a subscription is delivered here instead. */
    eroom_t *r = NULL, *tmp = NULL;
    HASH_ITER(hh, e->rooms, r, tmp)
    {
        r->state = ROOM_IDLE;
        while (r->head) {
            cmd_t *c = r->head;
            r->head = c->next;
            sb_room_t *room = sb_hub_room(hub, r->name);
            if (c->kind == CMD_MESSAGE && room && !e->closing)
                sb__engine_local.publish_message(hub, room, sb__unix_ms(), c->argv[5],
                                                 c->argvlen[5], c->argv[6], c->argvlen[6], NULL);
            else if (c->kind == CMD_MEMBER && room && !e->closing)
                member_locally(room, c->argv[11][0] == '1', c->argv[9], c->argv[10], c->pend);
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

/* Now as a JSON string, RFC 3339 UTC with milliseconds (docs/protocol.md):
 * the timestamp of the events a reap announces. */
static void timestamp(char *out, size_t size)
{
    int64_t ms = sb__unix_ms();
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char day[24];
    gmtime_r(&t, &tm);
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "\"%s.%03dZ\"", day, (int)(ms % 1000));
}

/* The refresh: reaps dead nodes, keeps this one alive (reset: and takes
 * this node's counts away, to be registered again). */
static void send_tick(redis_t *e, int reset)
{
    char ttl[24], env[40], venv[40], ts[40];
    snprintf(ttl, sizeof ttl, "%d", ALIVE_TTL_MS);
    snprintf(env, sizeof env, "P\n%s\n\n", e->node);
    snprintf(venv, sizeof venv, "V\n%s\n\n", e->node);
    timestamp(ts, sizeof ts);
    const char *mode = reset ? "reset" : "";
    const char *argv[] = {"EVAL", TICK_LUA, "0", e->node, ttl, env, mode, venv, ts};
    size_t len[] = {4,
                    sizeof TICK_LUA - 1,
                    1,
                    strlen(e->node),
                    strlen(ttl),
                    strlen(env),
                    strlen(mode),
                    strlen(venv),
                    strlen(ts)};
    cmd_t *c = cmd_new(9, argv, len);
    if (c && !(c->pend = calloc(1, sizeof *c->pend))) {
        cmd_free(c);
        c = NULL;
    }
    if (!c)
        return;
    c->kind = c->pend->kind = CMD_OTHER;
    cmd_send(e, c);
}

static void on_tick(uv_timer_t *t)
{
    redis_t *e = t->data;
    if (up(e))
        send_tick(e, 0);
}

static int send_member(redis_t *e, const char *room, const char *user, const char *nick, int dr,
                       int du, const sb_member_change_t *mc, sb_room_t *const *rooms, size_t nrooms,
                       const char *presence, pend_t *p);

/* This node's counts in Redis are made what its clients are now (after a
 * reconnect, or after it was reaped), and the copy is fetched again. */
static void resync(redis_t *e)
{
    sb_hub_t *hub = e->hub;
    send_tick(e, 1);
    for (uint32_t i = 0; i < hub->nall; i++) {
        const sb_conn_t *c = hub->all[i]->conn;
        send_member(e, "", sb_conn_user_id(c), sb_conn_name(c), 0, 1, NULL, NULL, 0, NULL, NULL);
    }
    for (sb_room_t *r = hub->rooms; r; r = r->hh.next)
        for (uint32_t i = 0; i < r->n; i++) {
            const sb_conn_t *c = r->members[i]->conn;
            send_member(e, r->name, sb_conn_user_id(c), sb_conn_name(c), 1, 0, NULL, NULL, 0, NULL,
                        NULL);
        }
    char env[40];
    snprintf(env, sizeof env, "S\n%s\n\n", e->node);
    redisAsyncCommand(e->cmd, on_reply, NULL, "EVAL %s 0 %s %s", SNAPSHOT_LUA, e->node_channel,
                      env);
}

static void became_ready(redis_t *e)
{
    uv_timer_stop(&e->retry); /* the connect timeout */
    e->was_up = 1;
    e->backoff_ms = BACKOFF_MIN_MS;
    sb__log(e->hub->srv, SB_LOG_INFO, "redis: connected to %s:%d as node %s", e->host, e->port,
            e->node);
    /* Rooms with members here are listened to again. */
    eroom_t *r = NULL, *tmp = NULL;
    HASH_ITER(hh, e->rooms, r, tmp)
    if (r->want)
        subscribe_room(e, r, 1);
    resync(e);
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
        redisAsyncCommand(e->sub, on_sub, e, "SUBSCRIBE %s sb:u sb:a sb:p", e->node_channel);
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

/* Replies of the command connection: failures, and what a pend waits for.
 * A NULL reply: the connection went away with the command unanswered. */
static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    redis_t *e = ac->data;
    redisReply *r = reply;
    pend_t *p = priv;
    if (r && r->type == REDIS_REPLY_ERROR)
        sb__log(e->hub->srv, SB_LOG_ERROR, "redis: a command failed: %s", r->str);
    if (!p)
        return;
    if (p->kind == CMD_NICK) {
        sb_conn_t *conn = e->closing ? NULL : sb_hub_conn(e->hub, p->conn_id);
        int status = SB_EIO;
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer >= 0)
            status = r->integer > 0;
        else if (r && r->type == REDIS_REPLY_INTEGER && !e->closing)
            resync(e); /* reaped: the claim is asked for again by the client */
        sb_claim_cb cb = p->claim;
        p->claim = NULL;
        cb(conn, status, p->claim_arg);
    } else if (p->kind == CMD_HISTORY && r && r->type == REDIS_REPLY_ERROR) {
        req_t *q = req_take(e, p->req);
        if (q)
            req_fallback(e, q, SB_EIO);
    } else if (p->kind == CMD_MEMBER && !e->closing) {
        /* -1: this node was reaped (it seemed dead for a while); it
         * registers its counts again. */
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer == -1)
            resync(e);
        else if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                 r->element[0]->type == REDIS_REPLY_INTEGER)
            confirm(e, p, r->element[0]->integer);
        else if (!r) {
            sb_room_t *room = sb_hub_room(e->hub, p->room);
            confirm(e, p, room ? (long long)sb_room_count(room) : 0);
        }
    } else if (p->kind == CMD_OTHER && r && r->type == REDIS_REPLY_INTEGER && r->integer == -1 &&
               !e->closing) {
        resync(e);
    }
    pend_free(p);
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

/* hiredis 0.14's libuv adapter drops a poll error: a refused connect is
 * never reported. Whatever is not up by now is given up and retried. */
static void on_connect_timeout(uv_timer_t *t)
{
    redis_t *e = t->data;
    if (!up(e))
        went_down(e);
}

static void connect_both(redis_t *e)
{
    if (e->closing)
        return;
    e->cmd = open_one(e);
    e->sub = e->cmd ? open_one(e) : NULL;
    if (!e->sub)
        went_down(e);
    else
        uv_timer_start(&e->retry, on_connect_timeout, CONNECT_TIMEOUT_MS, 0);
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
    uv_timer_init(e->loop, &e->tick);
    e->tick.data = e;
    uv_timer_start(&e->tick, on_tick, REFRESH_MS, REFRESH_MS);
    uv_unref((uv_handle_t *)&e->tick);
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
    uv_close((uv_handle_t *)&e->tick, NULL);
    went_down(e); /* frees both connections */
    eroom_t *r = NULL, *tmp = NULL;
    HASH_ITER(hh, e->rooms, r, tmp)
    {
        eroom_free(e, r);
    }
    uv_run(e->loop, UV_RUN_NOWAIT); /* the adapters' handles close */
    presence_clear(e);
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
    if (!(c->pend = calloc(1, sizeof *c->pend))) {
        cmd_free(c);
        req_free(q);
        return SB_ENOMEM;
    }
    c->kind = c->pend->kind = CMD_HISTORY;
    c->pend->req = q->id;
    q->next = e->reqs;
    e->reqs = q;
    /* After a join the read waits for the room's subscription: then
     * whatever it does not return arrives live. */
    int r = after_join ? cmd_submit(e, room->name, c) : cmd_send(e, c);
    if (r)
        req_free(req_take(e, q->id));
    return r;
}

/* ---- presence --------------------------------------------------------- */

/* Sends one MEMBER_LUA change (mc: its event, may be NULL). p (consumed)
 * waits for the reply. */
static int send_member(redis_t *e, const char *room, const char *user, const char *nick, int dr,
                       int du, const sb_member_change_t *mc, sb_room_t *const *rooms, size_t nrooms,
                       const char *presence, pend_t *p)
{
    char sdr[8], sdu[8], venv[40], penv[40];
    snprintf(sdr, sizeof sdr, "%d", dr);
    snprintf(sdu, sizeof sdu, "%d", du);
    snprintf(venv, sizeof venv, "V\n%s\n\n", e->node);
    snprintf(penv, sizeof penv, "P\n%s\n\n", e->node);
    int argc = 15 + (int)nrooms;
    const char **argv = malloc((size_t)argc * sizeof *argv);
    size_t *len = malloc((size_t)argc * sizeof *len);
    cmd_t *c = NULL;
    if (argv && len) {
        const char *fixed[] = {"EVAL",
                               MEMBER_LUA,
                               "0",
                               e->node,
                               room,
                               user,
                               nick ? nick : "",
                               sdr,
                               sdu,
                               mc ? mc->head : "",
                               mc ? mc->tail : "",
                               mc && mc->announce ? "1" : "0",
                               presence ? presence : "",
                               venv,
                               penv};
        for (int i = 0; i < 15; i++)
            argv[i] = fixed[i];
        for (size_t i = 0; i < nrooms; i++)
            argv[15 + i] = rooms[i]->name;
        for (int i = 0; i < argc; i++)
            len[i] = i == 1 ? sizeof MEMBER_LUA - 1 : strlen(argv[i]);
        c = cmd_new(argc, argv, len);
    }
    free(argv);
    free(len);
    if (!c) {
        pend_free(p);
        return SB_ENOMEM;
    }
    c->kind = CMD_MEMBER;
    c->pend = p;
    if (p)
        p->kind = CMD_MEMBER;
    /* A change with an event waits for the room's subscription, so that
     * this node's members get the event from it. */
    return mc && *room ? cmd_submit(e, room, c) : cmd_send(e, c);
}

/* User ids travel between newline-separated fields. */
static int presence_id_ok(const char *s)
{
    return s && !strchr(s, '\n') && strlen(s) < 256;
}

static int redis_member(sb_hub_t *hub, sb_room_t *room, const sb_member_change_t *mc)
{
    redis_t *e = engine(hub);
    if (!up(e) || !presence_id_ok(mc->user_id) || (mc->nickname && strchr(mc->nickname, '\n')))
        return 0;
    pend_t *p = NULL;
    if (mc->confirm) {
        p = calloc(1, sizeof *p);
        if (!p || !(p->conn_id = strdup(sb_conn_id(mc->confirm))) ||
            !(p->room = strdup(room->name)) || !(p->head = strdup(mc->head)) ||
            !(p->tail = strdup(mc->tail))) {
            pend_free(p);
            return SB_ENOMEM;
        }
    }
    int r = send_member(e, room->name, mc->user_id, mc->nickname, mc->delta, 0, mc, NULL, 0,
                        mc->delta > 0 ? mc->presence : NULL, p);
    return r < 0 ? r : 1;
}

static int redis_user_conn(sb_hub_t *hub, const char *user_id, const char *nickname, int delta,
                           sb_room_t *const *rooms, size_t n, const char *presence)
{
    redis_t *e = engine(hub);
    if (!up(e) || !presence_id_ok(user_id) || (nickname && strchr(nickname, '\n')))
        return 0;
    int r = send_member(e, "", user_id, nickname, 0, delta, NULL, rooms, n,
                        delta < 0 ? presence : NULL, NULL);
    return r < 0 ? r : 1;
}

static int redis_shared(const sb_hub_t *hub)
{
    const redis_t *e = hub->engine_state;
    return e && up(e) && e->synced;
}

static const char *redis_node(const sb_hub_t *hub)
{
    return ((const redis_t *)hub->engine_state)->node;
}

static size_t redis_user_count(const sb_hub_t *hub)
{
    return HASH_COUNT(((redis_t *)hub->engine_state)->pusers);
}

static size_t redis_user_conns(const sb_hub_t *hub, const char *user_id)
{
    redis_t *e = hub->engine_state;
    puser_t *u = puser_get(&e->pusers, user_id, strlen(user_id), 0);
    return u ? (size_t)u->n : 0;
}

static int redis_claim_nick(sb_hub_t *hub, sb_conn_t *conn, const char *nick, sb_claim_cb cb,
                            void *arg)
{
    redis_t *e = engine(hub);
    const char *user = sb_conn_user_id(conn);
    if (!up(e) || !e->synced || !presence_id_ok(user) || !presence_id_ok(nick))
        return 1;
    pend_t *p = calloc(1, sizeof *p);
    if (!p || !(p->conn_id = strdup(sb_conn_id(conn)))) {
        free(p);
        cb(NULL, SB_ENOMEM, arg);
        return SB_ENOMEM;
    }
    p->kind = CMD_NICK;
    p->claim = cb;
    p->claim_arg = arg;
    const char *argv[] = {"EVAL", NICK_LUA, "0", e->node, user, nick};
    size_t len[] = {4, sizeof NICK_LUA - 1, 1, strlen(e->node), strlen(user), strlen(nick)};
    cmd_t *c = cmd_new(6, argv, len);
    if (!c) {
        pend_free(p); /* runs cb */
        return SB_ENOMEM;
    }
    c->kind = CMD_NICK;
    c->pend = p;
    return cmd_send(e, c);
}

/* The nicknames are in the copy (sb:nick): one walk of the online users. */
static const char *redis_user_by_nick(const sb_hub_t *hub, const char *nick)
{
    const redis_t *e = hub->engine_state;
    for (const puser_t *u = e->pusers; u; u = u->hh.next)
        if (u->nick && strcmp(u->nick, nick) == 0)
            return u->id;
    return NULL;
}

/* The rooms with members on any node, and this node's empty ones. */
static size_t redis_rooms(const sb_hub_t *hub, sb_room_info_t *out, size_t max)
{
    redis_t *e = hub->engine_state;
    size_t n = 0;
    for (proom_t *r = e->prooms; r; r = r->hh.next, n++)
        if (n < max)
            out[n] = (sb_room_info_t){r->name, (size_t)r->n};
    for (sb_room_t *r = hub->rooms; r; r = r->hh.next)
        if (!proom_get(e, r->name, strlen(r->name), 0)) {
            if (n < max)
                out[n] = (sb_room_info_t){r->name, 0};
            n++;
        }
    return n;
}

static size_t redis_room_count(const sb_hub_t *hub, const char *room)
{
    redis_t *e = hub->engine_state;
    proom_t *r = proom_get(e, room, strlen(room), 0);
    return r ? (size_t)r->n : 0;
}

static size_t redis_room_users(const sb_hub_t *hub, const char *room, sb_user_info_t *out,
                               size_t max)
{
    redis_t *e = hub->engine_state;
    proom_t *r = proom_get(e, room, strlen(room), 0);
    size_t n = 0;
    for (puser_t *m = r ? r->users : NULL; m; m = m->hh.next, n++)
        if (n < max) {
            puser_t *u = puser_get(&e->pusers, m->id, strlen(m->id), 0);
            out[n] = (sb_user_info_t){m->id, u && u->nick ? u->nick : m->id, (size_t)m->n};
        }
    return n;
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
    .member = redis_member,
    .user_conn = redis_user_conn,
    .shared = redis_shared,
    .node = redis_node,
    .user_count = redis_user_count,
    .user_conns = redis_user_conns,
    .claim_nick = redis_claim_nick,
    .user_by_nick = redis_user_by_nick,
    .rooms = redis_rooms,
    .room_count = redis_room_count,
    .room_users = redis_room_users,
};
