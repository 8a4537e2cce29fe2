/* app.h — the server application: routes and the JSON chat protocol on top
 * of libswitchboard. */
#ifndef SB_APP_APP_H
#define SB_APP_APP_H

#include <stdint.h>

#include <jansson.h>

#include "switchboard.h"

typedef struct chat_nick_s chat_nick_t;
typedef struct raw_list_s {
    sb_conn_t **conns;
    struct auth_conn_s **sec; /* each connection's auth state (auth.h), or NULL */
    size_t n, cap;
} raw_list_t;

/* Authentication, origin checks and limits (auth.c). The configuration
 * (config.c) fills these; zero values mean "off" unless said otherwise.
 * Strings are owned by the configuration and may be replaced on SIGHUP. */
typedef struct app_security_s {
    int auth_required;            /* 0: anonymous mode (the default) */
    const char *jwt_secret;       /* HS256 key, or NULL */
    const char *jwt_public_key;   /* RS256 public key (PEM text), or NULL */
    const char *jwt_cookie;       /* cookie a token may come in (default "token") */
    const char *jwt_issuer;       /* `iss` must match when set */
    const char *jwt_audience;     /* `aud` must match when set */
    uint64_t token_warning_ms;    /* `token_expiring` this long before `exp` (default 60 s) */
    int protect_stats;            /* /metrics, /stats and /status need the API key too */
    char **allowed_origins;       /* besides the server's own origin; "*" allows any */
    size_t nallowed_origins;
    size_t max_connections;        /* WebSocket connections in total; 0 = no limit */
    size_t max_connections_per_ip; /* 0 = no limit */
    size_t max_rooms_per_conn;     /* 0 = no limit */
    size_t max_rooms;              /* rooms in total; 0 = no limit */
    size_t max_room_name;          /* bytes of a room name (default 64) */
    double rate_messages;          /* messages per second per connection; 0 = off */
    double rate_burst;             /* bucket size in messages (default 2 x rate) */
    double rate_bytes;             /* bytes per second per connection; 0 = off */
    unsigned rate_strikes;         /* rate_limited errors before close 1008 (default 10) */
} app_security_t;

typedef struct app_s {
    sb_server_t *server;
    sb_hub_t *hub;
    int echo;            /* serve /echo */
    uint64_t started_ms; /* loop time at start, for uptime */
    const char *api_key; /* NULL: the API is open */
    char **fixed_rooms;  /* NULL: rooms are created on first join */
    size_t nfixed_rooms;
    size_t history_on_join; /* messages sent on join (default 50) */
    size_t max_content;     /* bytes of a message's content (default 4096) */
    size_t presence_limit;  /* rooms larger than this get no join/leave/presence
                               notices; 0 = no limit (default 1000) */
    app_security_t sec;     /* authentication, origins, limits */
    struct auth_s *auth;    /* their run-time state and counters (auth.c) */
    chat_nick_t *nicks;     /* online nicknames (uthash head) */
    raw_list_t raw;         /* connections of /ws/raw */
    /* operations (main.c, log.c) */
    int access_log;            /* write an access line per request and session */
    sb_metrics_t stats_last;   /* counters at the previous stats line */
    uint64_t stats_last_ms;    /* loop time of the previous stats line */
} app_t;

/* Registers every route of the server application. Returns 0 or SB_E*. */
int app_routes(app_t *app);
/* Registers /ws (the JSON protocol) and /ws/raw. Returns 0 or SB_E*. */
int chat_routes(app_t *app);
/* Registers /stats, /status, /metrics and /api/... Returns 0 or SB_E*. */
int api_routes(app_t *app);
/* Frees what the chat keeps (after the server stopped). */
void chat_free(app_t *app);

/* Unix time in milliseconds. */
int64_t chat_now_ms(void);
/* Writes an RFC 3339 UTC timestamp with milliseconds ("2026-01-02T03:04:05.678Z"). */
void chat_timestamp(int64_t unix_ms, char out[32]);
/* Publishes a message to a room as the protocol's `message` (stored in the
 * history, then sent to every member). from/nickname identify the sender.
 * Returns the connections reached or a negative SB_E*. */
int chat_publish(app_t *app, sb_room_t *room, const char *from, const char *nickname,
                 json_t *content, json_t *data, json_t *metadata);
/* Sends the protocol's `broadcast` to every /ws client. Returns the
 * connections reached or a negative SB_E*. */
int chat_broadcast(app_t *app, const char *from, const char *nickname, json_t *content,
                   json_t *data);
/* Is name a valid room name (1 to 64 bytes of letters, digits, '_', '-', '.', ':')? */
int chat_room_name_valid(const char *name);
/* Sends the protocol's {"type":"error","code":code,"error":text} to one connection. */
void chat_send_error(sb_conn_t *conn, const char *code, const char *text);

#endif /* SB_APP_APP_H */
