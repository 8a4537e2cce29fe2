/* api.c — the HTTP API: /stats and /status (JSON), /metrics (Prometheus
 * text), and /api/... for server-side publishing (docs/protocol.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "app/app.h"
#include "app/auth.h"

static void respond_json(sb_request_t *req, int status, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s) {
        sb_request_respond(req, 500, "application/json", NULL, "{\"error\":\"out of memory\"}\n",
                           25);
        return;
    }
    size_t n = strlen(s);
    char *body = realloc(s, n + 2);
    if (body) {
        s = body;
        s[n++] = '\n';
        s[n] = '\0';
    }
    sb_request_respond(req, status, "application/json", "Cache-Control: no-store\r\n", s, n);
    free(s);
}

static void respond_error(sb_request_t *req, int status, const char *code, const char *text)
{
    respond_json(req, status, json_pack("{s:s, s:s}", "code", code, "error", text));
}

/* With an API key configured, /api/... needs "Authorization: Bearer KEY". */
static int authorized(app_t *app, sb_request_t *req)
{
    if (!app->api_key)
        return 1;
    size_t len;
    const char *v = sb_request_header(req, "Authorization", &len);
    size_t klen = strlen(app->api_key);
    /* CRYPTO_memcmp: how long the comparison takes says nothing about the key. */
    if (v && len == 7 + klen && strncmp(v, "Bearer ", 7) == 0 &&
        CRYPTO_memcmp(v + 7, app->api_key, klen) == 0)
        return 1;
    sb_request_respond(req, 401, "application/json",
                       "WWW-Authenticate: Bearer realm=\"switchboard\"\r\n",
                       "{\"code\":\"unauthorized\",\"error\":\"send the API key as "
                       "Authorization: Bearer KEY\"}\n",
                       strlen("{\"code\":\"unauthorized\",\"error\":\"send the API key as "
                              "Authorization: Bearer KEY\"}\n"));
    return 0;
}

/* /stats, /status and /metrics are open unless protect_stats puts them
 * behind the API key (and with no key to check, nobody gets them). */
static int stats_authorized(app_t *app, sb_request_t *req)
{
    if (!app->sec.protect_stats)
        return 1;
    if (!app->api_key) {
        respond_error(req, 403, "forbidden",
                      "the statistics are protected (protect_stats) but the server has no "
                      "api_key to check: set api_key");
        return 0;
    }
    return authorized(app, req);
}

/* Parses a JSON object body; answers 400/415 and returns NULL when it is not
 * one. */
static json_t *json_body(sb_request_t *req)
{
    size_t len;
    const char *body = sb_request_body(req, &len);
    json_error_t err;
    json_t *obj = json_loadb(body, len, 0, &err);
    if (!obj || !json_is_object(obj)) {
        char text[200];
        snprintf(text, sizeof text, "the body must be a JSON object%s%s", obj ? "" : ": ",
                 obj ? "" : err.text);
        json_decref(obj);
        respond_error(req, 400, "invalid_json", text);
        return NULL;
    }
    return obj;
}

/* ---- stats ------------------------------------------------------------- */

static json_t *stats(app_t *app)
{
    sb_metrics_t m;
    sb_server_metrics(app->server, &m);
    return json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, "
        "s:I, s:I}",
        "status", "ok", "connections", (json_int_t)m.connections, "total_connections",
        (json_int_t)m.connections_total, "unique_users",
        (json_int_t)sb_hub_shared_user_count(app->hub), "rooms",
        (json_int_t)sb_hub_shared_rooms(app->hub, NULL, 0), "messages_received",
        (json_int_t)m.messages_in, "messages_sent", (json_int_t)m.messages_out, "bytes_received",
        (json_int_t)m.bytes_in, "bytes_sent", (json_int_t)m.bytes_out,
        "messages_received_per_second", m.messages_in_rate, "messages_sent_per_second",
        m.messages_out_rate, "bytes_received_per_second", m.bytes_in_rate, "bytes_sent_per_second",
        m.bytes_out_rate, "slow_consumers", (json_int_t)m.slow_consumers, "uptime_seconds",
        (json_int_t)(m.uptime_ms / 1000));
}

/* The server's counters beyond seed 000's: descriptors, compression. */
static void server_stats(app_t *app, json_t *obj)
{
    sb_metrics_t m;
    sb_server_metrics(app->server, &m);
    json_object_set_new(obj, "connections_shed", json_integer((json_int_t)m.connections_shed));
    json_object_set_new(obj, "messages_dropped", json_integer((json_int_t)m.messages_dropped));
    json_object_set_new(obj, "compressed_messages_sent",
                        json_integer((json_int_t)m.deflate_messages));
    json_object_set_new(obj, "compressed_bytes_before",
                        json_integer((json_int_t)m.deflate_bytes_in));
    json_object_set_new(obj, "compressed_bytes_after",
                        json_integer((json_int_t)m.deflate_bytes_out));
    json_object_set_new(obj, "compressed_messages_received",
                        json_integer((json_int_t)m.inflate_messages));
}

/* Prometheus lines for server_stats' counters; returns the bytes written. */
static size_t server_metrics(const sb_metrics_t *m, char *out, size_t size)
{
    int n = snprintf(
        out, size,
        "# HELP switchboard_connections_shed_total Connections refused with 503 when file "
        "descriptors ran out.\n"
        "# TYPE switchboard_connections_shed_total counter\n"
        "switchboard_connections_shed_total %llu\n"
        "# HELP switchboard_messages_dropped_total Messages not sent to slow consumers "
        "(slow_consumer_policy drop).\n"
        "# TYPE switchboard_messages_dropped_total counter\n"
        "switchboard_messages_dropped_total %llu\n"
        "# HELP switchboard_deflate_messages_total Messages compressed (permessage-deflate); a "
        "broadcast counts once.\n"
        "# TYPE switchboard_deflate_messages_total counter\n"
        "switchboard_deflate_messages_total %llu\n"
        "# HELP switchboard_deflate_bytes_in_total Bytes of those messages before compression.\n"
        "# TYPE switchboard_deflate_bytes_in_total counter\n"
        "switchboard_deflate_bytes_in_total %llu\n"
        "# HELP switchboard_deflate_bytes_out_total Bytes of those messages compressed.\n"
        "# TYPE switchboard_deflate_bytes_out_total counter\n"
        "switchboard_deflate_bytes_out_total %llu\n"
        "# HELP switchboard_inflate_messages_total Compressed messages received.\n"
        "# TYPE switchboard_inflate_messages_total counter\n"
        "switchboard_inflate_messages_total %llu\n",
        (unsigned long long)m->connections_shed, (unsigned long long)m->messages_dropped,
        (unsigned long long)m->deflate_messages,
        (unsigned long long)m->deflate_bytes_in, (unsigned long long)m->deflate_bytes_out,
        (unsigned long long)m->inflate_messages);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

static void get_stats(sb_request_t *req, void *data)
{
    if (!stats_authorized(data, req))
        return;
    json_t *obj = stats(data);
    if (obj) {
        auth_stats(data, obj); /* refusals, rate limiting, token expiry */
        server_stats(data, obj);
    }
    respond_json(req, 200, obj);
}

static void get_metrics(sb_request_t *req, void *data)
{
    app_t *app = data;
    if (!stats_authorized(app, req))
        return;
    sb_metrics_t m;
    sb_server_metrics(app->server, &m);
    char body[8192];
    int n = snprintf(
        body, sizeof body,
        "# HELP switchboard_connections Open WebSocket connections.\n"
        "# TYPE switchboard_connections gauge\n"
        "switchboard_connections %llu\n"
        "# HELP switchboard_connections_total WebSocket connections opened.\n"
        "# TYPE switchboard_connections_total counter\n"
        "switchboard_connections_total %llu\n"
        "# HELP switchboard_users Unique users online (on every node, in a cluster).\n"
        "# TYPE switchboard_users gauge\n"
        "switchboard_users %zu\n"
        "# HELP switchboard_rooms Rooms (with members on any node, in a cluster).\n"
        "# TYPE switchboard_rooms gauge\n"
        "switchboard_rooms %zu\n"
        "# HELP switchboard_messages_received_total WebSocket messages received.\n"
        "# TYPE switchboard_messages_received_total counter\n"
        "switchboard_messages_received_total %llu\n"
        "# HELP switchboard_messages_sent_total WebSocket messages sent (one per recipient).\n"
        "# TYPE switchboard_messages_sent_total counter\n"
        "switchboard_messages_sent_total %llu\n"
        "# HELP switchboard_bytes_received_total Payload bytes received.\n"
        "# TYPE switchboard_bytes_received_total counter\n"
        "switchboard_bytes_received_total %llu\n"
        "# HELP switchboard_bytes_sent_total Payload bytes sent.\n"
        "# TYPE switchboard_bytes_sent_total counter\n"
        "switchboard_bytes_sent_total %llu\n"
        "# HELP switchboard_slow_consumers_total Connections closed for not reading.\n"
        "# TYPE switchboard_slow_consumers_total counter\n"
        "switchboard_slow_consumers_total %llu\n"
        "# HELP switchboard_uptime_seconds Seconds since the server started.\n"
        "# TYPE switchboard_uptime_seconds gauge\n"
        "switchboard_uptime_seconds %llu\n",
        (unsigned long long)m.connections, (unsigned long long)m.connections_total,
        sb_hub_shared_user_count(app->hub), sb_hub_shared_rooms(app->hub, NULL, 0),
        (unsigned long long)m.messages_in, (unsigned long long)m.messages_out,
        (unsigned long long)m.bytes_in, (unsigned long long)m.bytes_out,
        (unsigned long long)m.slow_consumers, (unsigned long long)(m.uptime_ms / 1000));
    if (n < 0 || (size_t)n >= sizeof body)
        n = n < 0 ? 0 : (int)sizeof body - 1;
    n += (int)auth_metrics(app, body + n, sizeof body - (size_t)n);
    n += (int)server_metrics(&m, body + n, sizeof body - (size_t)n);
    if ((size_t)n < sizeof body)
        n += snprintf(body + n, sizeof body - (size_t)n,
                      "# HELP switchboard_engine_degraded 1 while the node cannot reach the "
                      "cluster (Redis) and serves only its own clients.\n"
                      "# TYPE switchboard_engine_degraded gauge\n"
                      "switchboard_engine_degraded %d\n",
                      strcmp(sb_hub_engine_status(app->hub), "ok") != 0);
    if (n >= (int)sizeof body)
        n = (int)sizeof body - 1;
    sb_request_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, body, (size_t)n);
}

/* ---- /api -------------------------------------------------------------- */

/* POST /api/broadcast {message, room?}: seed 000's curl works as written. */
static void post_broadcast(sb_request_t *req, void *data)
{
    app_t *app = data;
    if (!authorized(app, req))
        return;
    json_t *body = json_body(req);
    if (!body)
        return;
    json_t *msg = json_object_get(body, "message");
    if (!msg)
        msg = json_object_get(body, "content");
    json_t *room_name = json_object_get(body, "room");
    if (!json_is_string(msg) || (room_name && !json_is_string(room_name))) {
        respond_error(req, 400, "missing_field",
                      "send {\"message\": \"text\"} and optionally \"room\": \"name\"");
        json_decref(body);
        return;
    }
    int reached;
    if (room_name) {
        sb_room_t *room = sb_hub_room(app->hub, json_string_value(room_name));
        if (!room) {
            respond_error(req, 404, "room_not_found", "there is no room of that name");
            json_decref(body);
            return;
        }
        reached = chat_publish(app, room, "server", "server", msg, NULL, NULL);
        /* In a cluster the message comes back through Redis to the room's
         * members on every node: those are counted. */
        if (reached >= 0 && sb_hub_clustered(app->hub) &&
            !strcmp(sb_hub_engine_status(app->hub), "ok"))
            reached = (int)sb_hub_shared_room_count(app->hub, json_string_value(room_name));
    } else {
        reached = chat_broadcast(app, "server", "server", msg, NULL);
    }
    json_decref(body);
    if (reached < 0)
        respond_error(req, 500, "internal_error", "the message could not be sent");
    else
        respond_json(req, 200, json_pack("{s:s, s:i}", "status", "sent", "delivered", reached));
}

static json_t *room_json(sb_room_t *room)
{
    char stamp[32] = "";
    if (sb_room_last_activity(room))
        chat_timestamp(sb_room_last_activity(room), stamp);
    return json_pack("{s:s, s:I, s:I, s:s?}", "name", sb_room_name(room), "members",
                     (json_int_t)sb_room_count(room), "messages",
                     (json_int_t)sb_room_message_count(room), "last_activity",
                     stamp[0] ? stamp : NULL);
}

/* /api/rooms in a cluster: the rooms with members on any node (and this
 * node's empty ones) with their members on every node; messages and
 * last_activity are what this node has seen. */
static json_t *shared_rooms(app_t *app)
{
    size_t n = sb_hub_shared_rooms(app->hub, NULL, 0);
    sb_room_info_t *info = malloc((n ? n : 1) * sizeof *info);
    json_t *arr = json_array();
    if (!info || !arr) {
        free(info);
        json_decref(arr);
        return NULL;
    }
    n = sb_hub_shared_rooms(app->hub, info, n);
    for (size_t i = 0; i < n; i++) {
        sb_room_t *room = sb_hub_room(app->hub, info[i].name);
        char stamp[32] = "";
        if (room && sb_room_last_activity(room))
            chat_timestamp(sb_room_last_activity(room), stamp);
        json_array_append_new(
            arr, json_pack("{s:s, s:I, s:I, s:s?}", "name", info[i].name, "members",
                           (json_int_t)info[i].members, "messages",
                           (json_int_t)(room ? sb_room_message_count(room) : 0), "last_activity",
                           stamp[0] ? stamp : NULL));
    }
    free(info);
    return arr;
}

static void get_rooms(sb_request_t *req, void *data)
{
    app_t *app = data;
    if (!authorized(app, req))
        return;
    if (sb_hub_presence_shared(app->hub)) {
        json_t *arr = shared_rooms(app);
        if (arr)
            respond_json(req, 200, json_pack("{s:o}", "rooms", arr));
        else
            respond_error(req, 500, "internal_error", "out of memory");
        return;
    }
    size_t n = sb_hub_rooms(app->hub, NULL, 0);
    sb_room_t **rooms = malloc((n ? n : 1) * sizeof *rooms);
    json_t *arr = json_array();
    if (!rooms || !arr) {
        free(rooms);
        json_decref(arr);
        respond_error(req, 500, "internal_error", "out of memory");
        return;
    }
    sb_hub_rooms(app->hub, rooms, n);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, room_json(rooms[i]));
    free(rooms);
    respond_json(req, 200, json_pack("{s:o}", "rooms", arr));
}

/* GET /api/rooms/{room}/users in a cluster: one entry per user with its
 * connections on every node (connection ids live on their own node).
 * Returns 0 when this node answers for itself. */
static int shared_room_users(app_t *app, sb_request_t *req, const char *name)
{
    if (!sb_hub_presence_shared(app->hub))
        return 0;
    size_t n = sb_hub_shared_room_users(app->hub, name, NULL, 0);
    if (!n && !sb_hub_room(app->hub, name)) {
        respond_error(req, 404, "room_not_found", "there is no room of that name");
        return 1;
    }
    sb_user_info_t *u = malloc((n ? n : 1) * sizeof *u);
    json_t *arr = json_array();
    if (!u || !arr) {
        free(u);
        json_decref(arr);
        respond_error(req, 500, "internal_error", "out of memory");
        return 1;
    }
    n = sb_hub_shared_room_users(app->hub, name, u, n);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:s}", "user_id", u[i].user_id,
                                             "nickname", u[i].nickname, "connections",
                                             (json_int_t)u[i].connections, "status", "online"));
    free(u);
    respond_json(req, 200, json_pack("{s:s, s:o}", "room", name, "users", arr));
    return 1;
}

/* /api/rooms/{room}/users and /api/rooms/{room}/messages */
static void room_resource(sb_request_t *req, void *data)
{
    app_t *app = data;
    if (!authorized(app, req))
        return;
    size_t len;
    const char *path = sb_request_path(req, &len);
    const char *name = path + strlen("/api/rooms/");
    const char *slash = strchr(name, '/');
    if (!slash || slash == name || (size_t)(slash - name) > 64) {
        respond_error(req, 404, "not_found",
                      "use /api/rooms/{room}/users or /api/rooms/{room}/messages");
        return;
    }
    char room_name[65];
    memcpy(room_name, name, (size_t)(slash - name));
    room_name[slash - name] = '\0';
    const char *what = slash + 1;
    unsigned method = sb_request_method(req);
    int users = strcmp(what, "users") == 0, messages = strcmp(what, "messages") == 0;
    if (!users && !messages) {
        respond_error(req, 404, "not_found",
                      "use /api/rooms/{room}/users or /api/rooms/{room}/messages");
        return;
    }
    if ((users && !(method & (SB_METHOD_GET | SB_METHOD_HEAD))) ||
        (messages && method != SB_METHOD_POST)) {
        sb_request_respond(req, 405, "application/json",
                           users ? "Allow: GET, HEAD\r\n" : "Allow: POST\r\n",
                           "{\"code\":\"method_not_allowed\",\"error\":\"see Allow\"}\n", 51);
        return;
    }
    if (users && shared_room_users(app, req, room_name))
        return;
    sb_room_t *room = sb_hub_room(app->hub, room_name);
    if (!room && messages && !app->fixed_rooms && chat_room_name_valid(room_name) &&
        strlen(room_name) <= auth_room_name_max(app)) {
        if (app->sec.max_rooms && sb_hub_rooms(app->hub, NULL, 0) >= app->sec.max_rooms) {
            auth_count_refusal(app, AUTH_REFUSED_ROOM_LIMIT);
            respond_error(req, 403, "room_limit",
                          "the server has as many rooms as it allows (max_rooms); post to an "
                          "existing room");
            return;
        }
        room = sb_hub_room_create(app->hub, room_name);
    }
    if (!room) {
        respond_error(req, 404, "room_not_found", "there is no room of that name");
        return;
    }
    if (users) {
        size_t n = sb_room_count(room);
        sb_conn_t **m = malloc((n ? n : 1) * sizeof *m);
        json_t *arr = json_array();
        if (m && arr) {
            sb_room_members(room, m, n);
            for (size_t i = 0; i < n; i++) {
                const char *nick = sb_conn_name(m[i]);
                json_array_append_new(
                    arr, json_pack("{s:s, s:s, s:s, s:s}", "user_id", sb_conn_user_id(m[i]),
                                   "nickname", nick ? nick : sb_conn_user_id(m[i]), "connection_id",
                                   sb_conn_id(m[i]), "status", "online"));
            }
        }
        free(m);
        respond_json(req, 200, json_pack("{s:s, s:o}", "room", room_name, "users", arr));
        return;
    }
    json_t *body = json_body(req);
    if (!body)
        return;
    json_t *content = json_object_get(body, "content");
    if (!content)
        content = json_object_get(body, "message");
    json_t *nick = json_object_get(body, "nickname");
    json_t *d = json_object_get(body, "data");
    if ((content && !json_is_string(content)) || (!content && !d) ||
        (nick && !json_is_string(nick))) {
        respond_error(req, 400, "missing_field",
                      "send {\"content\": \"text\"} (or \"data\"), optionally \"nickname\"");
        json_decref(body);
        return;
    }
    if (content && json_string_length(content) > app->max_content) {
        respond_error(req, 413, "content_too_long", "the content is longer than the server allows");
        json_decref(body);
        return;
    }
    /* In a cluster Redis gives the id after this answer (docs/api.md): the
     * answer says null, and delivered counts the room's members on every
     * node, to whom the message is published. */
    int clustered = sb_hub_clustered(app->hub) && !strcmp(sb_hub_engine_status(app->hub), "ok");
    uint64_t id = clustered ? 0 : sb_room_next_id(room);
    int reached = chat_publish(app, room, "server", nick ? json_string_value(nick) : "server",
                               content, d, json_object_get(body, "metadata"));
    json_decref(body);
    if (reached >= 0 && clustered)
        reached = (int)sb_hub_shared_room_count(app->hub, room_name);
    if (reached < 0)
        respond_error(req, 500, "internal_error", "the message could not be stored");
    else
        respond_json(req, 201,
                     json_pack("{s:s, s:o, s:i}", "status", "sent", "id",
                               id ? json_integer((json_int_t)id) : json_null(), "delivered",
                               reached));
}

int api_routes(app_t *app)
{
    sb_server_t *s = app->server;
    int r = sb_server_route(s, "/stats", SB_METHOD_GET, get_stats, app);
    if (!r)
        r = sb_server_route(s, "/status", SB_METHOD_GET, get_stats, app);
    if (!r)
        r = sb_server_route(s, "/metrics", SB_METHOD_GET, get_metrics, app);
    if (!r)
        r = sb_server_route(s, "/api/broadcast", SB_METHOD_POST, post_broadcast, app);
    if (!r)
        r = sb_server_route(s, "/api/rooms", SB_METHOD_GET, get_rooms, app);
    if (!r)
        r = sb_server_route(s, "/api/rooms/*", SB_METHOD_GET | SB_METHOD_POST, room_resource, app);
    return r;
}
