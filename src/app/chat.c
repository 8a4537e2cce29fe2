/* chat.c — the JSON chat/pub-sub protocol at /ws (docs/protocol.md) and
 * seed 004's raw relay at /ws/raw. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uthash.h>

#include "app/app.h"
#include "app/auth.h"

#define NICK_MAX 32
#define DEFAULT_ROOM "general"
#define HISTORY_LIMIT_MAX 500

/* Online nicknames: unique among online users. */
struct chat_nick_s {
    char *nick;
    sb_conn_t *conn;
    UT_hash_handle hh;
};

/* ---- small helpers ----------------------------------------------------- */

void chat_timestamp(int64_t unix_ms, char out[32])
{
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(unix_ms % 1000));
}

int64_t chat_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_t *timestamp_json(void)
{
    char ts[32];
    chat_timestamp(chat_now_ms(), ts);
    return json_string(ts);
}

/* Serializes obj (consumed) compactly; NULL when out of memory. */
static char *dump(json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return s;
}

/* Sends obj (consumed) to one connection. */
static void send_json(sb_conn_t *conn, json_t *obj)
{
    char *s = dump(obj);
    if (s)
        sb_conn_send(conn, SB_OP_TEXT, s, strlen(s));
    free(s);
}

static void send_error(sb_conn_t *conn, const char *code, const char *text)
{
    send_json(conn, json_pack("{s:s, s:s, s:s, s:o}", "type", "error", "code", code, "error", text,
                              "timestamp", timestamp_json()));
}

void chat_send_error(sb_conn_t *conn, const char *code, const char *text)
{
    send_error(conn, code, text);
}

static int room_broadcast_obj(sb_room_t *room, const sb_conn_t *except, json_t *obj)
{
    char *s = dump(obj);
    if (!s)
        return SB_ENOMEM;
    int r = sb_room_publish_event(room, except, s, strlen(s));
    free(s);
    return r;
}

static int nick_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > NICK_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return 0;
    return 1;
}

int chat_room_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("_-.:", name[i]))
            return 0;
    return 1;
}

static const char *nickname_of(sb_conn_t *conn)
{
    const char *n = sb_conn_name(conn);
    return n ? n : sb_conn_user_id(conn);
}

/* A string field under any of its spellings; NULL if absent. Sets *bad when
 * present with another type. */
static json_t *field(json_t *msg, const char *a, const char *b, int *bad)
{
    json_t *v = json_object_get(msg, a);
    if (!v && b)
        v = json_object_get(msg, b);
    if (v && bad && !json_is_string(v))
        *bad = 1;
    return v;
}

/* ---- nicknames --------------------------------------------------------- */

static chat_nick_t *nick_find(app_t *app, const char *nick)
{
    chat_nick_t *n;
    HASH_FIND_STR(app->nicks, nick, n);
    return n;
}

static void nick_release(app_t *app, sb_conn_t *conn)
{
    const char *name = sb_conn_name(conn);
    chat_nick_t *n = name ? nick_find(app, name) : NULL;
    if (n && n->conn == conn) {
        HASH_DEL(app->nicks, n);
        free(n->nick);
        free(n);
    }
}

/* Claims nick for conn. Returns 0, or an error code for the client. */
static const char *nick_claim(app_t *app, sb_conn_t *conn, const char *nick)
{
    if (!nick_valid(nick))
        return "invalid_nickname";
    /* A user without a nickname shows as its user id: that name is taken. */
    if (strcmp(nick, sb_conn_user_id(conn)) != 0 && sb_hub_user_conns(app->hub, nick, NULL, 0))
        return "nickname_taken";
    chat_nick_t *n = nick_find(app, nick);
    if (n)
        return n->conn == conn ? NULL : "nickname_taken";
    n = calloc(1, sizeof *n);
    if (!n || !(n->nick = strdup(nick))) {
        free(n);
        return "internal_error";
    }
    n->conn = conn;
    nick_release(app, conn);
    if (sb_hub_identify(app->hub, conn, NULL, nick)) {
        free(n->nick);
        free(n);
        return "internal_error";
    }
    HASH_ADD_KEYPTR(hh, app->nicks, n->nick, strlen(n->nick), n);
    return NULL;
}

/* Adds a message's optional body fields to obj (NULLs are skipped). */
static void set_body(json_t *obj, json_t *content, json_t *data, json_t *metadata)
{
    if (content)
        json_object_set(obj, "content", content);
    if (data)
        json_object_set(obj, "data", data);
    if (metadata)
        json_object_set(obj, "metadata", metadata);
}

/* ---- publishing -------------------------------------------------------- */

int chat_publish(app_t *app, sb_room_t *room, const char *from, const char *nickname,
                 json_t *content, json_t *data, json_t *metadata)
{
    (void)app;
    int64_t ts = chat_now_ms();
    char stamp[32];
    chat_timestamp(ts, stamp);
    /* The engine gives the id (in a cluster, Redis does): the message is
     * HEAD id TAIL, and TAIL is the rest of the object after a comma. */
    static const char head[] = "{\"type\":\"message\",\"id\":";
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s}", "room", sb_room_name(room), "from", from,
                            "nickname", nickname, "timestamp", stamp);
    if (!obj)
        return SB_ENOMEM;
    set_body(obj, content, data, metadata);
    char *s = dump(obj);
    if (!s)
        return SB_ENOMEM;
    s[0] = ',';
    int r = sb_room_publish(room, ts, head, sizeof head - 1, s, strlen(s), NULL);
    free(s);
    return r;
}

/* ---- history ----------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    int count;
    int failed;
} strbuf_t;

static void sb_append(strbuf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->buf, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

/* Sends {"type":"history","room":R,"messages":[...]} — the stored messages
 * are spliced in as stored, not parsed again. */
static void history_ready(sb_conn_t *conn, sb_room_t *room, int status, const sb_history_entry_t *e,
                          size_t n, void *arg)
{
    (void)arg;
    if (status < 0) {
        send_error(conn, "internal_error", "the history could not be read; try again");
        return;
    }
    char *head = dump(json_pack("{s:s, s:s}", "type", "history", "room", sb_room_name(room)));
    size_t hlen = head ? strlen(head) : 0;
    if (hlen < 2) { /* (a dump is "{...}"; this tells the optimizer so) */
        free(head);
        return;
    }
    strbuf_t b = {0};
    sb_append(&b, head, hlen - 1); /* without the closing brace */
    free(head);
    sb_append(&b, ",\"messages\":[", 13);
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_append(&b, ",", 1);
        sb_append(&b, e[i].json, e[i].len);
    }
    sb_append(&b, "]}", 2);
    if (!b.failed)
        sb_conn_send(conn, SB_OP_TEXT, b.buf, b.len);
    free(b.buf);
}

/* The history now or, in a cluster, when it comes back from the store;
 * after_join leaves out what the joiner gets live. */
static void send_history(sb_conn_t *conn, sb_room_t *room, uint64_t since, size_t limit,
                         int after_join)
{
    if (sb_room_history_request(room, conn, since, limit, after_join, history_ready, NULL) < 0)
        send_error(conn, "internal_error", "the history could not be read; try again");
}

/* ---- presence ---------------------------------------------------------- */

/* The connections of conn's user, other than conn, still online? */
static int user_has_other_conns(app_t *app, sb_conn_t *conn)
{
    return sb_hub_user_conns(app->hub, sb_conn_user_id(conn), NULL, 0) > 1;
}

static json_t *presence(sb_conn_t *conn, const char *status)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:o}", "type", "presence", "user_id",
                     sb_conn_user_id(conn), "nickname", nickname_of(conn), "status", status,
                     "timestamp", timestamp_json());
}

static json_t *user_event(const char *type, sb_room_t *room, sb_conn_t *conn)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:o}", "type", type, "room", sb_room_name(room),
                     "nickname", nickname_of(conn), "user_id", sb_conn_user_id(conn), "user_count",
                     (json_int_t)sb_room_count(room), "timestamp", timestamp_json());
}

/* In a cluster the count in a join or leave event is the room's on every
 * node, known only in Redis: the engine splices it between head and tail
 * (sb_room_publish_member). Fills *c; returns 0, or -1 out of memory (then
 * nothing is left to free). */
static int member_change(sb_member_change_t *c, const char *type, sb_room_t *room, sb_conn_t *conn,
                         int delta)
{
    char *head = dump(json_pack("{s:s, s:s, s:s, s:s}", "type", type, "room", sb_room_name(room),
                                "nickname", nickname_of(conn), "user_id", sb_conn_user_id(conn)));
    char *ts = dump(json_pack("{s:o}", "timestamp", timestamp_json()));
    char *h = head ? malloc(strlen(head) + 16) : NULL;
    if (!h || !ts) {
        free(head);
        free(ts);
        free(h);
        return -1;
    }
    /* {...} -> {...,"user_count":   and  {"timestamp":...} -> ,"timestamp":...} */
    snprintf(h, strlen(head) + 16, "%.*s,\"user_count\":", (int)strlen(head) - 1, head);
    free(head);
    ts[0] = ',';
    *c = (sb_member_change_t){.user_id = sb_conn_user_id(conn),
                              .nickname = sb_conn_name(conn),
                              .delta = delta,
                              .head = h,
                              .tail = ts};
    return 0;
}

static void member_change_free(sb_member_change_t *c)
{
    free((char *)c->head);
    free((char *)c->tail);
    free((char *)c->presence);
}

/* The join (delta 1) or leave (-1) of conn, through the cluster: 1 when the
 * engine took it, 0 when this node announces it itself. */
static int cluster_member(app_t *app, sb_room_t *room, sb_conn_t *conn, int delta, int announce,
                          int confirm)
{
    sb_member_change_t c;
    if (!sb_hub_clustered(app->hub) ||
        member_change(&c, delta > 0 ? "user_joined" : "user_left", room, conn, delta))
        return 0;
    c.announce = announce;
    c.confirm = confirm ? conn : NULL;
    if (delta > 0 && announce)
        c.presence = dump(presence(conn, "online"));
    int r = sb_room_publish_member(room, &c);
    member_change_free(&c);
    return r > 0;
}

/* Is another connection of conn's user a member of room? */
static int user_in_room_elsewhere(app_t *app, sb_room_t *room, sb_conn_t *conn)
{
    if (sb_hub_user_conns(app->hub, sb_conn_user_id(conn), NULL, 0) <= 1)
        return 0; /* the common case: no other connection to look for */
    size_t n = sb_room_count(room);
    sb_conn_t **m = malloc((n ? n : 1) * sizeof *m);
    int found = 0;
    if (!m)
        return 0;
    sb_room_members(room, m, n);
    for (size_t i = 0; i < n && !found; i++)
        found = m[i] != conn && strcmp(sb_conn_user_id(m[i]), sb_conn_user_id(conn)) == 0;
    free(m);
    return found;
}

/* Are joins, leaves and presence told to everyone in the room? Past
 * --presence-limit members (on every node, in a cluster) they are not: each
 * notice costs a message per member, so a room filling up would cost the
 * square of its size. */
static int announces(const app_t *app, sb_room_t *room)
{
    return !app->presence_limit ||
           sb_hub_shared_room_count(app->hub, sb_room_name(room)) <= app->presence_limit;
}

/* ---- handlers of client messages --------------------------------------- */

/* The room name a message gives (room or room_id; default general), or NULL
 * after sending the error that says why it is not one. */
static const char *room_name(app_t *app, sb_conn_t *conn, json_t *msg)
{
    int bad = 0;
    json_t *v = field(msg, "room", "room_id", &bad);
    if (bad) {
        send_error(conn, "invalid_field", "room must be a string");
        return NULL;
    }
    const char *name = v ? json_string_value(v) : DEFAULT_ROOM;
    size_t max = auth_room_name_max(app);
    if (!chat_room_name_valid(name) || strlen(name) > max) {
        char text[120];
        snprintf(text, sizeof text, "a room name is 1 to %zu letters, digits, '_', '-', '.' or ':'",
                 max);
        send_error(conn, "invalid_room", text);
        return NULL;
    }
    return name;
}

/* Does the connection's token keep it out of the room (joining it, reading
 * its history or members)? Sends the error when it does. */
static int room_forbidden(app_t *app, sb_conn_t *conn, const char *name)
{
    if (auth_may_join(sb_conn_get_data(conn), name))
        return 0;
    auth_count_refusal(app, AUTH_REFUSED_FORBIDDEN);
    send_error(conn, "forbidden", "your token does not let you into this room (see its rooms)");
    return 1;
}

/* Would joining room (NULL: a room to create) stay within max_rooms_per_conn
 * and max_rooms? Sends the error when not. */
static int room_limits_ok(app_t *app, sb_conn_t *conn, sb_room_t *room)
{
    const app_security_t *sec = &app->sec;
    if (room && sb_room_has(room, conn))
        return 1;
    if (sec->max_rooms_per_conn && sb_conn_rooms(conn, NULL, 0) >= sec->max_rooms_per_conn) {
        auth_count_refusal(app, AUTH_REFUSED_TOO_MANY_ROOMS);
        send_error(conn, "too_many_rooms",
                   "you are in as many rooms as the server allows one connection "
                   "(max_rooms_per_conn); leave one first");
        return 0;
    }
    if (!room && sec->max_rooms && sb_hub_rooms(app->hub, NULL, 0) >= sec->max_rooms) {
        auth_count_refusal(app, AUTH_REFUSED_ROOM_LIMIT);
        send_error(conn, "room_limit",
                   "the server has as many rooms as it allows (max_rooms); join an existing room");
        return 0;
    }
    return 1;
}

/* The existing room a message names, or NULL after sending an error. */
static sb_room_t *find_room(app_t *app, sb_conn_t *conn, json_t *msg)
{
    const char *name = room_name(app, conn, msg);
    if (!name)
        return NULL;
    sb_room_t *room = sb_hub_room(app->hub, name);
    if (!room)
        send_error(conn, "room_not_found", "there is no room of that name");
    return room;
}

static sb_room_t *member_room(app_t *app, sb_conn_t *conn, json_t *msg)
{
    sb_room_t *room = find_room(app, conn, msg);
    if (room && !sb_room_has(room, conn)) {
        send_error(conn, "not_member", "join the room first");
        return NULL;
    }
    return room;
}

static void join_run(app_t *app, sb_conn_t *conn, json_t *msg, int claimed);

/* A join waiting for its nickname to be claimed on every node. */
typedef struct join_wait_s {
    app_t *app;
    json_t *msg;
} join_wait_t;

static void join_claimed(sb_conn_t *conn, int status, void *arg)
{
    join_wait_t *w = arg;
    if (conn && status == 1)
        join_run(w->app, conn, w->msg, 1); /* checked again: things may have changed */
    else if (conn && status == 0)
        send_error(conn, "nickname_taken",
                   "that nickname is taken by someone online; choose another");
    else if (conn)
        send_error(conn, "internal_error", "the nickname could not be claimed; try again");
    json_decref(w->msg);
    free(w);
}

/* In a cluster a new nickname is claimed in Redis first, atomically for
 * every node; the join goes on when the answer comes. Returns 1 when it
 * waits for it (or failed and said so), 0 when the join goes on now. */
static int join_claim(app_t *app, sb_conn_t *conn, json_t *msg, const char *nick)
{
    const char *mine = sb_conn_name(conn);
    if (!nick_valid(nick) || (mine && strcmp(mine, nick) == 0))
        return 0;
    join_wait_t *w = malloc(sizeof *w);
    if (!w) {
        send_error(conn, "internal_error", "the nickname could not be claimed; try again");
        return 1;
    }
    *w = (join_wait_t){app, json_incref(msg)};
    int r = sb_hub_claim_nick(app->hub, conn, nick, join_claimed, w);
    if (r == 1) { /* no cluster to ask: this node decides */
        json_decref(w->msg);
        free(w);
        return 0;
    }
    if (r < 0) /* join_claimed has freed w */
        send_error(conn, "internal_error", "the nickname could not be claimed; try again");
    return 1;
}

static void on_join(app_t *app, sb_conn_t *conn, json_t *msg)
{
    join_run(app, conn, msg, 0);
}

static void join_run(app_t *app, sb_conn_t *conn, json_t *msg, int claimed)
{
    int bad = 0;
    json_t *nick = field(msg, "nickname", "name", &bad);
    if (bad) {
        send_error(conn, "invalid_field", "nickname must be a string");
        return;
    }
    json_t *since = json_object_get(msg, "since");
    if (since && (!json_is_integer(since) || json_integer_value(since) < 0)) {
        send_error(conn, "invalid_field", "since must be a message id (0 or more)");
        return;
    }
    /* Everything that can refuse the join is checked before anything
     * changes: a refused join neither takes the nickname nor creates the
     * room. */
    const char *name = room_name(app, conn, msg);
    if (!name || room_forbidden(app, conn, name))
        return;
    sb_room_t *room = sb_hub_room(app->hub, name);
    if (!room && app->fixed_rooms) {
        send_error(conn, "room_not_found",
                   "there is no room of that name; this server has a fixed list of rooms");
        return;
    }
    if (!room_limits_ok(app, conn, room))
        return;
    /* A name the token gives is the user's display name: join keeps it. */
    if (nick && !auth_name_fixed(sb_conn_get_data(conn))) {
        if (!claimed && join_claim(app, conn, msg, json_string_value(nick)))
            return;
        const char *err = nick_claim(app, conn, json_string_value(nick));
        if (err) {
            send_error(conn, err,
                       strcmp(err, "nickname_taken") == 0
                           ? "that nickname is taken by someone online; choose another"
                           : "a nickname is 1 to 32 letters, digits, '_' or '-'");
            return;
        }
    }
    if (!room && !(room = sb_hub_room_create(app->hub, name))) {
        send_error(conn, "internal_error", "the room could not be created; try again");
        return;
    }
    if (!sb_room_has(room, conn)) {
        if (sb_room_join(room, conn)) {
            send_error(conn, "internal_error", "could not join the room; try again");
            return;
        }
        int announce = announces(app, room);
        if (cluster_member(app, room, conn, 1, announce, !announce)) {
            /* the events come back through the cluster */
        } else if (!announce) {
            send_json(conn, user_event("user_joined", room, conn)); /* the joiner's confirmation */
        } else {
            room_broadcast_obj(room, NULL, user_event("user_joined", room, conn));
            if (!user_in_room_elsewhere(app, room, conn))
                room_broadcast_obj(room, NULL, presence(conn, "online"));
        }
    }
    /* A rejoining client names the last id it saw: it gets exactly what it
     * missed, and nothing can slip in between joining and reading. */
    if (since)
        send_history(conn, room, (uint64_t)json_integer_value(since), HISTORY_LIMIT_MAX, 1);
    else
        send_history(conn, room, 0, app->history_on_join, 1);
}

static void leave_room(app_t *app, sb_conn_t *conn, sb_room_t *room)
{
    int announce = announces(app, room);
    sb_room_leave(room, conn);
    if (cluster_member(app, room, conn, -1, announce, 1))
        return;
    json_t *ev = user_event("user_left", room, conn);
    char *s = dump(ev);
    if (!s)
        return;
    if (announce)
        sb_room_publish_event(room, NULL, s, strlen(s));
    sb_conn_send(conn, SB_OP_TEXT, s, strlen(s)); /* the leaver's confirmation */
    free(s);
}

static void on_leave(app_t *app, sb_conn_t *conn, json_t *msg)
{
    sb_room_t *room = member_room(app, conn, msg);
    if (room)
        leave_room(app, conn, room);
}

/* content (or its spelling message) must be a string within the limit; data
 * is any JSON. Returns 0 or sends an error. */
static int message_body(app_t *app, sb_conn_t *conn, json_t *msg, json_t **content, json_t **data)
{
    int bad = 0;
    *content = field(msg, "content", "message", &bad);
    *data = json_object_get(msg, "data");
    if (bad) {
        send_error(conn, "invalid_field", "content must be a string");
        return -1;
    }
    if (!*content && !*data) {
        send_error(conn, "missing_field", "a message needs content (text) or data (any JSON)");
        return -1;
    }
    if (*content && json_string_length(*content) > app->max_content) {
        send_error(conn, "content_too_long", "the content is longer than the server allows");
        return -1;
    }
    return 0;
}

static void on_message(app_t *app, sb_conn_t *conn, json_t *msg)
{
    sb_room_t *room = member_room(app, conn, msg);
    json_t *content, *data;
    if (!room || message_body(app, conn, msg, &content, &data))
        return;
    json_t *meta = json_object_get(msg, "metadata");
    if (chat_publish(app, room, sb_conn_user_id(conn), nickname_of(conn), content, data, meta) < 0)
        send_error(conn, "internal_error", "the message could not be stored; try again");
}

int chat_broadcast(app_t *app, const char *from, const char *nickname, json_t *content,
                   json_t *data)
{
    json_t *obj = json_pack("{s:s, s:s, s:s, s:o}", "type", "broadcast", "from", from, "nickname",
                            nickname, "timestamp", timestamp_json());
    if (!obj)
        return SB_ENOMEM;
    set_body(obj, content, data, NULL);
    char *s = dump(obj);
    int r = s ? sb_hub_publish_all(app->hub, s, strlen(s)) : SB_ENOMEM;
    free(s);
    return r;
}

static void on_broadcast(app_t *app, sb_conn_t *conn, json_t *msg)
{
    json_t *content, *data;
    if (!auth_may_broadcast(sb_conn_get_data(conn))) {
        auth_count_refusal(app, AUTH_REFUSED_FORBIDDEN);
        send_error(conn, "forbidden",
                   "your token does not allow broadcast (it needs broadcast: true)");
        return;
    }
    if (message_body(app, conn, msg, &content, &data))
        return;
    chat_broadcast(app, sb_conn_user_id(conn), nickname_of(conn), content, data);
}

static void on_typing(app_t *app, sb_conn_t *conn, json_t *msg)
{
    sb_room_t *room = member_room(app, conn, msg);
    if (!room)
        return;
    json_t *t = json_object_get(msg, "typing");
    if (!t)
        t = json_object_get(msg, "data"); /* seed 003 sends it as data */
    if (t && !json_is_boolean(t)) {
        send_error(conn, "invalid_field", "typing must be true or false");
        return;
    }
    room_broadcast_obj(room, conn,
                       json_pack("{s:s, s:s, s:s, s:s, s:b}", "type", "typing", "room",
                                 sb_room_name(room), "user_id", sb_conn_user_id(conn), "nickname",
                                 nickname_of(conn), "typing", t ? json_is_true(t) : 1));
}

static void on_history(app_t *app, sb_conn_t *conn, json_t *msg)
{
    /* Rooms live in memory and history on disk: after a restart, a room
     * nobody has joined yet still has its history to read. */
    const char *name = room_name(app, conn, msg);
    if (!name || room_forbidden(app, conn, name))
        return;
    sb_room_t *room = sb_hub_room(app->hub, name);
    if (!room && !app->fixed_rooms && sb_hub_has_history(app->hub, name))
        room = sb_hub_room_create(app->hub, name);
    if (!room) {
        send_error(conn, "room_not_found", "there is no room of that name");
        return;
    }
    json_t *since = json_object_get(msg, "since");
    json_t *limit = json_object_get(msg, "limit");
    if ((since && (!json_is_integer(since) || json_integer_value(since) < 0)) ||
        (limit && (!json_is_integer(limit) || json_integer_value(limit) < 1))) {
        send_error(conn, "invalid_field",
                   "since must be a message id (0 or more) and limit a positive number");
        return;
    }
    size_t n = limit ? (size_t)json_integer_value(limit) : app->history_on_join;
    if (n > HISTORY_LIMIT_MAX)
        n = HISTORY_LIMIT_MAX;
    send_history(conn, room, since ? (uint64_t)json_integer_value(since) : 0, n, 0);
}

/* users in a cluster: every node's members, one entry per user; a room
 * with members only on other nodes is found too. Returns 0 when it is not a
 * cluster with presence to answer from. */
static int shared_users(app_t *app, sb_conn_t *conn, json_t *msg)
{
    if (!sb_hub_presence_shared(app->hub))
        return 0;
    const char *name = room_name(app, conn, msg);
    if (!name)
        return 1;
    size_t n = sb_hub_shared_room_users(app->hub, name, NULL, 0);
    if (!n && !sb_hub_room(app->hub, name)) {
        send_error(conn, "room_not_found", "there is no room of that name");
        return 1;
    }
    if (room_forbidden(app, conn, name))
        return 1;
    sb_user_info_t *u = malloc((n ? n : 1) * sizeof *u);
    json_t *users = json_array();
    if (!u || !users) {
        free(u);
        json_decref(users);
        return 1;
    }
    n = sb_hub_shared_room_users(app->hub, name, u, n);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(users, json_pack("{s:s, s:s, s:s}", "user_id", u[i].user_id,
                                               "nickname", u[i].nickname, "status", "online"));
    free(u);
    send_json(conn, json_pack("{s:s, s:s, s:o}", "type", "users", "room", name, "users", users));
    return 1;
}

static void on_users(app_t *app, sb_conn_t *conn, json_t *msg)
{
    if (shared_users(app, conn, msg))
        return;
    sb_room_t *room = find_room(app, conn, msg);
    if (!room || room_forbidden(app, conn, sb_room_name(room)))
        return;
    json_t *users;
    size_t n = sb_room_count(room);
    sb_conn_t **members = malloc((n ? n : 1) * sizeof *members);
    users = json_array();
    if (!members || !users) {
        free(members);
        json_decref(users);
        return;
    }
    sb_room_members(room, members, n);
    for (size_t i = 0; i < n; i++) {
        /* One entry per user, however many connections it has here. */
        const char *uid = sb_conn_user_id(members[i]);
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(uid, sb_conn_user_id(members[j])) == 0;
        if (!seen)
            json_array_append_new(users, json_pack("{s:s, s:s, s:s}", "user_id", uid, "nickname",
                                                   nickname_of(members[i]), "status", "online"));
    }
    free(members);
    send_json(conn, json_pack("{s:s, s:s, s:o}", "type", "users", "room", sb_room_name(room),
                              "users", users));
}

static void on_direct(app_t *app, sb_conn_t *conn, json_t *msg)
{
    json_t *to = json_object_get(msg, "to");
    json_t *content, *data;
    if (!to || !json_is_string(to)) {
        send_error(conn, "missing_field", "direct needs to: a user id or nickname");
        return;
    }
    if (message_body(app, conn, msg, &content, &data))
        return;
    /* A user id wins over a nickname, so that a direct to an id always
     * reaches that user, whatever nicknames others have picked. */
    const char *target = json_string_value(to);
    int is_id = sb_hub_shared_user_conns(app->hub, target) > 0;
    chat_nick_t *n = is_id ? NULL : nick_find(app, target);
    const char *uid = n ? sb_conn_user_id(n->conn) : target;
    if (!is_id && !n) /* a nickname held on another node */
        uid = sb_hub_shared_user_by_nick(app->hub, target);
    if (!uid)
        uid = target;
    /* In a cluster the user may be on another node: the cluster's presence
     * says whether it is online anywhere. */
    if (!sb_hub_shared_user_conns(app->hub, uid)) {
        send_error(conn, "unknown_user", "no user of that id or nickname is online");
        return;
    }
    json_t *obj =
        json_pack("{s:s, s:s, s:s, s:s, s:o}", "type", "direct", "from", sb_conn_user_id(conn),
                  "nickname", nickname_of(conn), "to", uid, "timestamp", timestamp_json());
    set_body(obj, content, data, NULL);
    char *s = dump(obj);
    if (!s)
        return;
    sb_hub_publish_user(app->hub, uid, s, strlen(s));
    /* The sender's other connections (and this one) see what was sent. */
    if (strcmp(uid, sb_conn_user_id(conn)) != 0)
        sb_hub_publish_user(app->hub, sb_conn_user_id(conn), s, strlen(s));
    free(s);
}

/* The room list with member counts, as GET /api/rooms has it: the chat page
 * and the dashboard need it without holding the API key. */
static void on_rooms(app_t *app, sb_conn_t *conn, json_t *msg)
{
    (void)msg;
    size_t n = sb_hub_rooms(app->hub, NULL, 0);
    sb_room_t **rooms = malloc((n ? n : 1) * sizeof *rooms);
    json_t *arr = json_array();
    if (!rooms || !arr) {
        free(rooms);
        json_decref(arr);
        send_error(conn, "internal_error", "the room list could not be built; try again");
        return;
    }
    sb_hub_rooms(app->hub, rooms, n);
    for (size_t i = 0; i < n; i++) {
        char stamp[32] = "";
        if (sb_room_last_activity(rooms[i]))
            chat_timestamp(sb_room_last_activity(rooms[i]), stamp);
        json_array_append_new(arr,
                              json_pack("{s:s, s:I, s:I, s:s?}", "name", sb_room_name(rooms[i]),
                                        "members", (json_int_t)sb_room_count(rooms[i]), "messages",
                                        (json_int_t)sb_room_message_count(rooms[i]),
                                        "last_activity", stamp[0] ? stamp : NULL));
    }
    free(rooms);
    send_json(conn, json_pack("{s:s, s:o}", "type", "rooms", "rooms", arr));
}

static void on_refresh(app_t *app, sb_conn_t *conn, json_t *msg)
{
    auth_refresh(app, conn, sb_conn_get_data(conn), msg);
}

static void on_ping(app_t *app, sb_conn_t *conn, json_t *msg)
{
    (void)app;
    (void)msg;
    send_json(conn, json_pack("{s:s, s:o}", "type", "pong", "timestamp", timestamp_json()));
}

static const struct {
    const char *type;
    void (*fn)(app_t *app, sb_conn_t *conn, json_t *msg);
} handlers[] = {
    {"join", on_join},        {"join_room", on_join},  {"leave", on_leave},
    {"leave_room", on_leave}, {"message", on_message}, {"broadcast", on_broadcast},
    {"typing", on_typing},    {"ping", on_ping},       {"history", on_history},
    {"users", on_users},      {"direct", on_direct},   {"rooms", on_rooms},
    {"refresh", on_refresh},
};

/* ---- the /ws endpoint -------------------------------------------------- */

static void ws_open(sb_hub_t *hub, sb_conn_t *conn, void *data)
{
    app_t *app = data;
    (void)hub;
    /* First: with a token, the welcome already names its user. */
    sb_conn_set_data(conn, auth_open(app, conn));
    /* In a cluster the user is online on every node from now on. */
    sb_hub_publish_user_conn(app->hub, sb_conn_user_id(conn), sb_conn_name(conn), 1, NULL, 0, NULL);
    char stamp[32];
    chat_timestamp(chat_now_ms(), stamp);
    send_json(conn,
              json_pack("{s:s, s:s, s:s, s:s}", "type", "welcome", "connection_id",
                        sb_conn_id(conn), "user_id", sb_conn_user_id(conn), "server_time", stamp));
    send_json(conn, json_pack("{s:s, s:s, s:s}", "type", "system", "content",
                              "Welcome to Switchboard! Send {\"type\":\"join\",\"nickname\":"
                              "\"you\"} to join the general room.",
                              "timestamp", stamp));
    (void)app;
}

static void ws_message(sb_hub_t *hub, sb_conn_t *conn, int opcode, const void *data, size_t len,
                       void *arg)
{
    (void)hub;
    app_t *app = arg;
    if (!auth_message_allowed(app, conn, sb_conn_get_data(conn), len))
        return;
    if (opcode != SB_OP_TEXT) {
        send_error(conn, "binary_not_supported",
                   "this endpoint speaks JSON text messages; binary messages are not accepted");
        return;
    }
    json_error_t jerr;
    /* DECODE_ANY: a bare scalar ("42") is JSON, so it gets not_object, not
     * invalid_json. */
    json_t *msg = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!msg) {
        char text[200];
        snprintf(text, sizeof text, "the message is not valid JSON: %s", jerr.text);
        send_error(conn, "invalid_json", text);
        return;
    }
    if (!json_is_object(msg)) {
        send_error(conn, "not_object", "a message is a JSON object with a \"type\"");
    } else {
        json_t *type = json_object_get(msg, "type");
        size_t i = 0, n = sizeof handlers / sizeof handlers[0];
        if (!type || !json_is_string(type))
            send_error(conn, "missing_field", "a message needs a \"type\" string");
        else {
            for (; i < n && strcmp(handlers[i].type, json_string_value(type)) != 0; i++)
                ;
            if (i < n)
                handlers[i].fn(app, conn, msg);
            else
                send_error(conn, "unknown_type",
                           "unknown message type; see docs/protocol.md for the list");
        }
    }
    json_decref(msg);
}

/* slow_consumer_policy drop: the client missed messages while it read too
 * slowly; it can fetch them with history since its last id. */
static void ws_dropped(sb_hub_t *hub, sb_conn_t *conn, uint32_t count, void *data)
{
    (void)hub;
    (void)data;
    char text[200];
    snprintf(text, sizeof text,
             "%u messages to you were dropped while you read too slowly; ask for "
             "history since the last id you saw to catch up",
             count);
    json_t *err = json_pack("{s:s, s:s, s:s, s:I, s:o}", "type", "error", "code",
                            "messages_dropped", "error", text, "count", (json_int_t)count,
                            "timestamp", timestamp_json());
    send_json(conn, err);
}

/* ws_close in a cluster: the leaves and the user's connection count go
 * through Redis, which says when this was the user's last connection on
 * any node (then the rooms get presence offline). Returns 0 when the node
 * cannot reach the cluster (ws_close does what one node does). */
static int cluster_close(app_t *app, sb_conn_t *conn, sb_room_t **rooms, size_t n)
{
    if (strcmp(sb_hub_engine_status(app->hub), "ok") != 0)
        return 0;
    if (!rooms)
        n = 0; /* out of memory: the leaves are not announced */
    int last = !user_has_other_conns(app, conn);
    size_t told = 0; /* rooms that announce: they get the offline presence */
    sb_conn_rooms(conn, rooms, n);
    for (size_t i = 0; i < n; i++) {
        int announce = announces(app, rooms[i]);
        sb_room_leave(rooms[i], conn);
        if (!announce)
            continue;
        if (!cluster_member(app, rooms[i], conn, -1, 1, 0))
            room_broadcast_obj(rooms[i], NULL, user_event("user_left", rooms[i], conn));
        rooms[told++] = rooms[i];
    }
    char *offline = dump(presence(conn, "offline"));
    int r = sb_hub_publish_user_conn(app->hub, sb_conn_user_id(conn), sb_conn_name(conn), -1, rooms,
                                     told, offline);
    free(offline);
    for (size_t i = 0; r <= 0 && last && i < told; i++)
        room_broadcast_obj(rooms[i], NULL, presence(conn, "offline"));
    return 1;
}

static void ws_close(sb_hub_t *hub, sb_conn_t *conn, int code, void *data)
{
    (void)hub;
    (void)code;
    app_t *app = data;
    /* Leave every room the way a `leave` does, so members see who left, and
     * tell them the user is offline when this was its last connection. */
    int last = !user_has_other_conns(app, conn);
    size_t n = sb_conn_rooms(conn, NULL, 0);
    sb_room_t **rooms = n ? malloc(n * sizeof *rooms) : NULL;
    if (sb_hub_clustered(app->hub) && cluster_close(app, conn, rooms, n)) {
        /* the cluster counts the leaves and says when the user is offline */
    } else if (rooms) {
        sb_conn_rooms(conn, rooms, n);
        for (size_t i = 0; i < n; i++) {
            int announce = announces(app, rooms[i]);
            sb_room_leave(rooms[i], conn);
            if (!announce)
                continue;
            room_broadcast_obj(rooms[i], NULL, user_event("user_left", rooms[i], conn));
            if (last)
                room_broadcast_obj(rooms[i], NULL, presence(conn, "offline"));
        }
    }
    free(rooms);
    nick_release(app, conn);
    auth_close(app, sb_conn_get_data(conn));
    sb_conn_set_data(conn, NULL);
}

static void announce_shutdown(sb_hub_t *hub, void *data)
{
    (void)data;
    char *s = dump(json_pack("{s:s, s:s, s:o}", "type", "server_shutdown", "message",
                             "Server is shutting down", "timestamp", timestamp_json()));
    if (s)
        sb_hub_broadcast(hub, SB_OP_TEXT, s, strlen(s));
    free(s);
}

/* ---- /ws/raw: seed 004's plain relay ----------------------------------- */

static void raw_open(sb_conn_t *conn, void *data)
{
    app_t *app = data;
    raw_list_t *l = &app->raw;
    auth_conn_t *s = auth_open(app, conn);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        sb_conn_t **p = realloc(l->conns, cap * sizeof *p);
        if (p)
            l->conns = p;
        auth_conn_t **q = p ? realloc(l->sec, cap * sizeof *q) : NULL;
        if (!q) {
            auth_close(app, s);
            sb_conn_close(conn, SB_CLOSE_INTERNAL, "server out of memory");
            return;
        }
        l->sec = q;
        l->cap = cap;
    }
    sb_conn_set_data(conn, (void *)(uintptr_t)(l->n + 1)); /* 1-based index */
    l->sec[l->n] = s;
    l->conns[l->n++] = conn;
}

static void raw_message(sb_conn_t *conn, int opcode, const void *msg, size_t len, void *data)
{
    app_t *app = data;
    raw_list_t *l = &app->raw;
    size_t i = (uintptr_t)sb_conn_get_data(conn);
    if (i && !auth_message_allowed(app, conn, l->sec[i - 1], len))
        return;
    sb_msg_t *m = sb_msg_new(opcode, msg, len);
    if (!m)
        return;
    for (size_t i = 0; i < l->n; i++)
        sb_conn_send_msg(l->conns[i], m);
    sb_msg_unref(m);
}

static void raw_close(sb_conn_t *conn, int code, const char *reason, size_t len, void *data)
{
    (void)code;
    (void)reason;
    (void)len;
    app_t *app = data;
    raw_list_t *l = &app->raw;
    size_t i = (uintptr_t)sb_conn_get_data(conn);
    if (!i--)
        return;
    auth_close(app, l->sec[i]);
    l->conns[i] = l->conns[--l->n];
    l->sec[i] = l->sec[l->n];
    sb_conn_set_data(l->conns[i], (void *)(uintptr_t)(i + 1));
}

/* ---- setup ------------------------------------------------------------- */

int chat_routes(app_t *app)
{
    if (!app->auth && auth_init(app))
        return SB_ENOMEM;
    for (size_t i = 0; i < app->nfixed_rooms; i++)
        if (!sb_hub_room_create(app->hub, app->fixed_rooms[i]))
            return SB_ENOMEM;
    sb_hub_handlers_t h = {
        .on_upgrade = auth_upgrade,
        .on_open = ws_open,
        .on_message = ws_message,
        .on_close = ws_close,
        .on_dropped = ws_dropped,
        .data = app,
    };
    int r = sb_hub_route(app->hub, "/ws", &h);
    if (!r)
        r = sb_hub_on_shutdown(app->hub, announce_shutdown, app);
    if (!r) {
        sb_ws_handlers_t raw = {
            .on_upgrade = auth_upgrade,
            .on_open = raw_open,
            .on_message = raw_message,
            .on_close = raw_close,
            .data = app,
        };
        r = sb_server_route_ws(app->server, "/ws/raw", &raw);
    }
    return r;
}

void chat_free(app_t *app)
{
    chat_nick_t *n, *tmp;
    HASH_ITER(hh, app->nicks, n, tmp)
    {
        HASH_DEL(app->nicks, n);
        free(n->nick);
        free(n);
    }
    free(app->raw.conns);
    free(app->raw.sec);
    auth_free(app);
}
