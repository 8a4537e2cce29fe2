/*
 * switchboard.h — the public API of libswitchboard, a real-time WebSocket hub.
 *
 * Conventions (as libuv):
 *   - every public name starts with sb_; types end in _t;
 *   - functions that can fail return int: 0 (or a count) on success, a negative
 *     SB_E* code on failure; sb_strerror() turns a code into text;
 *   - every sb_x_new() has a NULL-safe sb_x_free();
 *   - unless a function says otherwise, call it only from the thread that runs
 *     the server's loop (inside callbacks, or before sb_server_run()).
 */
#ifndef SWITCHBOARD_H
#define SWITCHBOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SB_VERSION_MAJOR 0
#define SB_VERSION_MINOR 1
#define SB_VERSION_PATCH 0

/* Error codes, grouped by class. */
enum {
    SB_OK = 0,
    /* would-block / state */
    SB_EAGAIN = -1,  /* try again later */
    SB_ECLOSED = -2, /* the connection is closing or closed */
    /* argument */
    SB_EINVAL = -100, /* invalid argument */
    SB_EEXIST = -101, /* already exists (route, ...) */
    /* resource */
    SB_ENOMEM = -200, /* out of memory */
    SB_ELIMIT = -201, /* a configured limit was hit (queue, size) */
    SB_EIO = -202,    /* socket or loop error (see the log) */
    SB_EADDR = -203,  /* cannot bind or listen on the address */
    /* protocol */
    SB_EPROTO = -300,  /* protocol violation (close 1002) */
    SB_EUTF8 = -301,   /* invalid UTF-8 in a text message or close reason (close 1007) */
    SB_ETOOBIG = -302, /* message or frame over the configured maximum (close 1009) */
};

/* Returns a static, human-readable description of an SB_E* code. */
const char *sb_strerror(int code);

/* Returns "MAJOR.MINOR.PATCH". */
const char *sb_version(void);

/* ---- logging ---------------------------------------------------------- */

typedef enum {
    SB_LOG_ERROR = 0,
    SB_LOG_WARN = 1,
    SB_LOG_INFO = 2,
    SB_LOG_DEBUG = 3,
} sb_log_level_t;

/* Receives every log line the library produces (no trailing newline).
 * The library itself never prints. */
typedef void (*sb_log_fn)(void *data, sb_log_level_t level, const char *msg);

/* Parses "error", "warn", "info", "debug" (case-insensitive). Returns the level
 * or SB_EINVAL. */
int sb_log_level_parse(const char *name);

/* ---- WebSocket opcodes and close codes (RFC 6455) ---------------------- */

enum {
    SB_OP_CONTINUATION = 0x0,
    SB_OP_TEXT = 0x1,
    SB_OP_BINARY = 0x2,
    SB_OP_CLOSE = 0x8,
    SB_OP_PING = 0x9,
    SB_OP_PONG = 0xA,
};

enum {
    SB_CLOSE_NORMAL = 1000,
    SB_CLOSE_GOING_AWAY = 1001,
    SB_CLOSE_PROTOCOL_ERROR = 1002,
    SB_CLOSE_UNSUPPORTED = 1003,
    SB_CLOSE_NO_STATUS = 1005, /* never sent; reported when a close had no code */
    SB_CLOSE_ABNORMAL = 1006,  /* never sent; reported when TCP closed without a close frame */
    SB_CLOSE_INVALID_DATA = 1007,
    SB_CLOSE_POLICY = 1008,
    SB_CLOSE_TOO_BIG = 1009,
    SB_CLOSE_INTERNAL = 1011,
};

/* ---- server ----------------------------------------------------------- */

typedef struct sb_server_s sb_server_t;
typedef struct sb_conn_s sb_conn_t;
typedef struct sb_request_s sb_request_t;

/* One access-log entry: an HTTP request answered, or a WebSocket session
 * ended. Strings are valid during the call only. */
typedef struct sb_access_s {
    int websocket;        /* 0: an HTTP request; 1: a WebSocket session */
    const char *peer;     /* "ip:port" ("[ip6]:port") */
    const char *method;   /* "GET", "POST", ... */
    const char *path;     /* the request path, without the query */
    int status;           /* HTTP status; 101 for a WebSocket session */
    uint64_t duration_ms; /* HTTP: head received to answer queued; WebSocket: upgrade to close */
    uint64_t bytes_in;    /* HTTP: request body; WebSocket: message payload bytes received */
    uint64_t bytes_out;   /* HTTP: response body; WebSocket: message payload bytes sent */
    uint64_t msgs_in;     /* WebSocket messages received (0 for HTTP) */
    uint64_t msgs_out;    /* WebSocket messages sent (0 for HTTP) */
    int close_code;       /* WebSocket: received, else sent, else 1006; 0 for HTTP */
} sb_access_t;

/* Receives an access-log entry (see sb_server_config_t.access_log). */
typedef void (*sb_access_fn)(void *data, const sb_access_t *entry);

typedef struct sb_server_config_s {
    const char *host; /* default "127.0.0.1" */
    int port;         /* default 8080; 0 picks a free port (see sb_server_port) */
    size_t
        max_message_size;  /* largest WebSocket message accepted; default 512 KiB (1009 past it) */
    size_t max_frame_size; /* largest single frame; default = max_message_size */
    size_t max_head_size;  /* largest HTTP request head; default 8 KiB (431 past it) */
    size_t max_body_size;  /* largest HTTP request body; default 1 MiB (413 past it) */
    size_t max_queued_bytes;       /* outbound bytes queued per connection before it counts as a
                                      slow consumer and is closed with 1008; default 4 MiB */
    int slow_consumer_drop;        /* 0 (default): close slow consumers as above; 1: drop the
                                      messages that do not fit instead, and tell the route's
                                      on_dropped once the queue has drained (control frames are
                                      never dropped; write_timeout still closes a peer that
                                      reads nothing at all) */
    uint64_t ping_interval_ms;     /* ping a connection silent for this long; default 54 s */
    uint64_t pong_timeout_ms;      /* close a connection silent for this long; default 60 s */
    uint64_t write_timeout_ms;     /* close a connection whose queued output makes no progress
                                      for this long; default 10 s */
    uint64_t handshake_timeout_ms; /* an HTTP request head must arrive within this; default 10 s */
    uint64_t idle_timeout_ms;   /* close keep-alive HTTP connections idle this long; default 60 s */
    uint64_t close_timeout_ms;  /* wait this long for the peer's close reply; default 5 s */
    uint64_t sweep_interval_ms; /* how often the timeout sweep runs; default 1 s */
    sb_log_level_t log_level;   /* default SB_LOG_INFO */
    sb_log_fn log;              /* default NULL: logging off */
    void *log_data;             /* passed to log and access_log */
    sb_access_fn access_log;    /* default NULL: no access log */
    /* TLS (https:// and wss://) on a second port, beside the plain one. On
     * when tls_cert is set; tls_key must be set with it. TLS 1.2 and 1.3
     * only, modern ciphers, ALPN http/1.1. */
    const char *tls_cert; /* PEM certificate chain file, the server's first; default NULL */
    const char *tls_key;  /* PEM private key file (unencrypted); default NULL */
    int tls_port;         /* default 8443; 0 picks a free port (see sb_server_tls_port) */
    /* permessage-deflate (RFC 7692), when a client offers it */
    int compression;             /* default 1: accept offers; 0: decline them */
    int compression_level;       /* zlib level 1-9 (0: never compress what is sent); default 6 */
    size_t compression_min_size; /* messages shorter are sent uncompressed; default 64 */
    int compression_context_takeover; /* default 0: every message compressed on its own, so no
                                         zlib state per connection and a broadcast is compressed
                                         once for all; 1: better ratios, ~300 KB per connection */
} sb_server_config_t;

/* Fills cfg with the defaults listed above. */
void sb_server_config_init(sb_server_config_t *cfg);

/* Creates a server (not yet listening). The config is copied; host is
 * duplicated. Returns 0 and sets *out, or SB_ENOMEM / SB_EINVAL. */
int sb_server_new(sb_server_t **out, const sb_server_config_t *cfg);

/* Frees a server that is not running. NULL-safe. */
void sb_server_free(sb_server_t *srv);

/* Binds and listens. Returns 0, or SB_EADDR when the address cannot be used
 * (the log says why). */
int sb_server_listen(sb_server_t *srv);

/* The port actually bound (useful with port 0), or 0 before listening. */
int sb_server_port(const sb_server_t *srv);

/* The TLS port actually bound, or 0 when TLS is off or before listening. */
int sb_server_tls_port(const sb_server_t *srv);

/* Checks that a certificate chain and key file can serve TLS (readable
 * PEM, the key matches the certificate), as sb_server_listen would. Returns
 * 0, or SB_EINVAL with err saying why. For configuration checks. */
int sb_tls_check_files(const char *cert_file, const char *key_file, char *err, size_t err_size);

/* Loads the TLS certificate and key again (from the same files), for new
 * connections; open ones keep theirs. On failure the old ones stay, and err
 * (may be NULL) says why. Returns 0, SB_EINVAL (TLS off, or bad files) or
 * SB_ENOMEM. Loop thread. */
int sb_server_tls_reload(sb_server_t *srv, char *err, size_t err_size);

/* Runs the loop until sb_server_stop() is called and every connection is
 * gone. Returns 0 or SB_EIO. */
int sb_server_run(sb_server_t *srv);

/* Runs one loop iteration: waits for events when block is non-zero, else
 * only handles what is ready. Returns 1 while there is more to do (the
 * server is not fully stopped), 0 when it is, or SB_EINVAL before
 * sb_server_listen. For embedding into another loop and for tests. */
int sb_server_run_once(sb_server_t *srv, int block);

/* Starts a graceful stop: stops accepting, closes every WebSocket with
 * 1001 "server shutting down", answers in-flight HTTP requests, and forces
 * the remaining connections closed after timeout_ms. sb_server_run() returns
 * when all are gone. Thread-safe and async-signal-safe (it only wakes the
 * loop). */
void sb_server_stop(sb_server_t *srv, uint64_t timeout_ms);

/* Changes the log level of a running server (e.g. on SIGHUP). Loop thread. */
void sb_server_set_log_level(sb_server_t *srv, sb_log_level_t level);

/* Number of open connections (HTTP and WebSocket). */
size_t sb_server_conn_count(const sb_server_t *srv);

/* Monotonic time in milliseconds, as cached by the loop for this iteration. */
uint64_t sb_server_now(const sb_server_t *srv);

/* ---- HTTP routes ------------------------------------------------------ */

enum {
    SB_METHOD_GET = 1 << 0,
    SB_METHOD_HEAD = 1 << 1,
    SB_METHOD_POST = 1 << 2,
    SB_METHOD_PUT = 1 << 3,
    SB_METHOD_DELETE = 1 << 4,
    SB_METHOD_OPTIONS = 1 << 5,
    SB_METHOD_PATCH = 1 << 6,
};

/* An HTTP handler. It must answer the request before returning, with exactly
 * one sb_request_respond(). */
typedef void (*sb_http_handler_fn)(sb_request_t *req, void *data);

/* Routes requests for path to handler. path is an exact path ("/health"), or
 * a prefix when it ends in an asterisk (as in "/static/" and an asterisk). methods is a mask of
 * SB_METHOD_*; other methods get 405 with an Allow header. Exact routes win over prefixes, longer
 * prefixes over shorter. Returns 0, SB_EEXIST or SB_ENOMEM. */
int sb_server_route(sb_server_t *srv, const char *path, unsigned methods,
                    sb_http_handler_fn handler, void *data);

/* Request accessors; the strings point into the request and live until the
 * handler returns. */
unsigned sb_request_method(const sb_request_t *req); /* an SB_METHOD_* bit, 0 if other */
const char *sb_request_method_name(const sb_request_t *req);
/* The path without the query string, percent-decoding not applied. */
const char *sb_request_path(const sb_request_t *req, size_t *len);
/* The raw query string (after '?'), or NULL. */
const char *sb_request_query(const sb_request_t *req, size_t *len);
/* The value of a header (name case-insensitive), or NULL. With repeated
 * headers, the first. */
const char *sb_request_header(const sb_request_t *req, const char *name, size_t *len);
const void *sb_request_body(const sb_request_t *req, size_t *len);
sb_server_t *sb_request_server(const sb_request_t *req);
/* The connection the request came on (its peer, its TLS). */
sb_conn_t *sb_request_conn(const sb_request_t *req);
/* In a WebSocket route's on_upgrade: the value the connection's user data
 * slot (sb_conn_get_data) starts with, e.g. the user a token names. If the
 * upgrade is refused, the caller still owns it. */
void sb_request_set_user_data(sb_request_t *req, void *data);

/* Sends the response. headers is NULL or extra header lines, each ending in
 * "\r\n" ("Cache-Control: no-cache\r\n"). Content-Length, Date, Server and
 * Connection are added. For HEAD requests the body is not sent. Returns 0 or
 * SB_EINVAL when already answered. */
int sb_request_respond(sb_request_t *req, int status, const char *content_type, const char *headers,
                       const void *body, size_t len);

/* ---- WebSocket routes ------------------------------------------------- */

typedef struct sb_ws_handlers_s {
    /* Optional: called before the upgrade, with the request, for origin or
     * auth checks. Return 0 to accept, or an HTTP status (403, 401, ...) to
     * refuse; the handler may also answer the request itself with
     * sb_request_respond(), and then its status is ignored. */
    int (*on_upgrade)(sb_request_t *req, void *data);
    /* Called once the handshake response is queued. */
    void (*on_open)(sb_conn_t *conn, void *data);
    /* A complete message (all fragments reassembled, text validated as
     * UTF-8). data is valid only during the call. */
    void (*on_message)(sb_conn_t *conn, int opcode, const void *msg, size_t len, void *data);
    /* A pong arrived (optional). */
    void (*on_pong)(sb_conn_t *conn, const void *payload, size_t len, void *data);
    /* The connection is gone: code is the close code received or sent
     * (1006 when TCP closed without a close frame). After it returns the
     * connection is freed. */
    void (*on_close)(sb_conn_t *conn, int code, const char *reason, size_t len, void *data);
    /* With slow_consumer_drop: count messages to this connection were
     * dropped, and its queue has now drained (optional). */
    void (*on_dropped)(sb_conn_t *conn, uint32_t count, void *data);
    /* Subprotocols the route speaks, in the server's order of preference,
     * NULL-terminated; NULL for none. The first the client offers that is
     * also here is selected. */
    const char *const *subprotocols;
    void *data;
} sb_ws_handlers_t;

/* Marks path as a WebSocket endpoint (the C counterpart of a `hijack:"ws"`
 * route). A GET without a valid upgrade gets 426. The handlers struct is
 * copied. Returns 0, SB_EEXIST or SB_ENOMEM. */
int sb_server_route_ws(sb_server_t *srv, const char *path, const sb_ws_handlers_t *h);

/* ---- outbound messages ------------------------------------------------ */

/* An encoded, immutable, reference-counted server frame: build once, send to
 * many connections. */
typedef struct sb_msg_s sb_msg_t;

/* Encodes a single unfragmented frame with the given opcode and payload
 * (copied). Returns NULL when out of memory. The caller owns one reference. */
sb_msg_t *sb_msg_new(int opcode, const void *payload, size_t len);
void sb_msg_ref(sb_msg_t *msg);
void sb_msg_unref(sb_msg_t *msg); /* NULL-safe */

/* ---- connections ------------------------------------------------------ */

/* Queues a message; the connection takes its own reference. Returns 0,
 * SB_ECLOSED, or SB_ELIMIT when the queue cap was hit (the connection is then
 * being closed with 1008). */
int sb_conn_send_msg(sb_conn_t *conn, sb_msg_t *msg);

/* Encodes and queues one frame. opcode is SB_OP_TEXT or SB_OP_BINARY (text
 * must be valid UTF-8; it is not checked here). Returns as sb_conn_send_msg,
 * or SB_ENOMEM. */
int sb_conn_send(sb_conn_t *conn, int opcode, const void *data, size_t len);

/* Starts the closing handshake with code and reason (reason at most 123
 * bytes, UTF-8). Idempotent. Returns 0 or SB_EINVAL for an invalid code. */
int sb_conn_close(sb_conn_t *conn, int code, const char *reason);

/* A unique printable id ("c-1a2b"), stable for the connection's life. */
const char *sb_conn_id(const sb_conn_t *conn);
/* The subprotocol selected at handshake, or NULL. */
const char *sb_conn_subprotocol(const sb_conn_t *conn);

/* Writes the peer address as text ("127.0.0.1:53122", "[::1]:53122") into
 * buf, as it was at the accept (so also after the peer is gone). Returns 0,
 * or SB_EINVAL (size 0, or an address that is not IP). */
int sb_conn_peer(const sb_conn_t *conn, char *buf, size_t size);
/* 1 when the connection came through the TLS port (https://, wss://). */
int sb_conn_is_tls(const sb_conn_t *conn);
void *sb_conn_get_data(const sb_conn_t *conn);
void sb_conn_set_data(sb_conn_t *conn, void *data);
sb_server_t *sb_conn_server(const sb_conn_t *conn);
/* Bytes queued and not yet written. */
size_t sb_conn_queued_bytes(const sb_conn_t *conn);

/* ---- thread-safe entry points ------------------------------------------ */

/* Runs fn(arg) on the server's loop thread, soon. Safe from any thread (not
 * from a signal handler). Returns 0, SB_ENOMEM, or SB_ECLOSED once the server
 * has stopped (fn is then not called: free arg yourself). Everything posted
 * before the stop runs before sb_server_run returns; posts to a server that
 * is freed without ever running are dropped without running. */
int sb_server_post(sb_server_t *srv, void (*fn)(void *arg), void *arg);

/* ---- metrics ----------------------------------------------------------- */

typedef struct sb_metrics_s {
    uint64_t connections;                       /* open WebSocket connections */
    uint64_t connections_total;                 /* WebSocket connections ever opened */
    uint64_t messages_in, messages_out;         /* WebSocket messages received / queued to peers */
    uint64_t bytes_in, bytes_out;               /* their payload bytes */
    uint64_t slow_consumers;                    /* connections closed for not reading */
    uint64_t messages_dropped; /* messages not sent to slow consumers (slow_consumer_drop) */
    uint64_t connections_shed; /* connections refused with 503 (out of file descriptors) */
    uint64_t deflate_messages;  /* messages sent compressed (permessage-deflate) */
    uint64_t deflate_bytes_in;  /* their payload bytes before compression */
    uint64_t deflate_bytes_out; /* and after (on the wire) */
    uint64_t inflate_messages;  /* compressed messages received */
    double messages_in_rate, messages_out_rate; /* per second, over the last second */
    double bytes_in_rate, bytes_out_rate;
    uint64_t uptime_ms;
} sb_metrics_t;

/* Fills *m with the server's counters (seed 000's GetMetrics). */
void sb_server_metrics(const sb_server_t *srv, sb_metrics_t *m);

/* ---- the hub: users, rooms, fan-out ------------------------------------ */

typedef struct sb_hub_s sb_hub_t;
typedef struct sb_room_s sb_room_t;

typedef struct sb_hub_config_s {
    /* seed 003's HubConfig; applied to the server's connections */
    uint64_t ping_interval_ms;    /* default 54 s */
    uint64_t pong_timeout_ms;     /* default 60 s */
    uint64_t write_timeout_ms;    /* default 10 s */
    size_t max_message_size;      /* default 512 KiB */
    uint64_t cleanup_interval_ms; /* how often history retention runs; default 30 s */
    /* history */
    const char *history_path;    /* SQLite file; NULL: history in memory only */
    size_t history_cache;        /* recent messages per room kept in memory; default 100 */
    size_t history_max;          /* per room in the database; 0 = unlimited; default 10000 */
    uint64_t history_max_age_ms; /* 0 = unlimited (default) */
    /* cluster (docs/cluster.md): what the hub shares between nodes */
    int engine;            /* SB_ENGINE_LOCAL (default) or SB_ENGINE_REDIS */
    const char *redis_url; /* redis://HOST:PORT, for SB_ENGINE_REDIS; copied */
} sb_hub_config_t;

enum { SB_ENGINE_LOCAL = 0, SB_ENGINE_REDIS = 1 };

/* Fills cfg with the defaults listed above. */
void sb_hub_config_init(sb_hub_config_t *cfg);

/* Callbacks of a hub endpoint. Every callback gets the data pointer. */
typedef struct sb_hub_handlers_s {
    int (*on_upgrade)(sb_request_t *req, void *data); /* as in sb_ws_handlers_t */
    /* The connection is open and registered (user id = connection id until
     * sb_hub_identify). */
    void (*on_open)(sb_hub_t *hub, sb_conn_t *conn, void *data);
    void (*on_message)(sb_hub_t *hub, sb_conn_t *conn, int opcode, const void *msg, size_t len,
                       void *data);
    /* Called before the connection leaves its rooms and the registry. */
    void (*on_close)(sb_hub_t *hub, sb_conn_t *conn, int code, void *data);
    /* As in sb_ws_handlers_t (optional). */
    void (*on_dropped)(sb_hub_t *hub, sb_conn_t *conn, uint32_t count, void *data);
    const char *const *subprotocols;
    void *data;
} sb_hub_handlers_t;

/* Creates a hub on a server (the hub config's heartbeat and size settings
 * replace the server's). With history_path, opens the history database.
 * Returns 0, SB_ENOMEM, SB_EINVAL, or SB_EIO (*err, if not NULL, says why). */
int sb_hub_new(sb_hub_t **out, sb_server_t *srv, const sb_hub_config_t *cfg, const char **err);

/* Frees the hub and its rooms; call after sb_server_run returned. NULL-safe. */
void sb_hub_free(sb_hub_t *hub);

/* Serves a WebSocket endpoint whose connections are registered with the hub
 * on open and unregistered on close. Returns as sb_server_route_ws. */
int sb_hub_route(sb_hub_t *hub, const char *path, const sb_hub_handlers_t *h);

/* Registers a connection opened by a route of your own (hub routes do this
 * themselves). Such a connection must be unregistered in that route's
 * on_close: the hub keeps a pointer to it until then. Returns 0, SB_EEXIST or
 * SB_ENOMEM. */
int sb_hub_register(sb_hub_t *hub, sb_conn_t *conn);
/* Leaves every room and forgets the connection. Idempotent. A hub route's
 * connection unregistered this way gets no more hub on_message or on_close
 * callbacks. */
void sb_hub_unregister(sb_hub_t *hub, sb_conn_t *conn);

/* Sets who a registered connection belongs to (a user may have many
 * connections) and its display name (NULL keeps it). Returns 0, SB_EINVAL,
 * SB_ENOMEM. */
int sb_hub_identify(sb_hub_t *hub, sb_conn_t *conn, const char *user_id, const char *name);
const char *sb_conn_user_id(const sb_conn_t *conn); /* NULL when not registered */
const char *sb_conn_name(const sb_conn_t *conn);    /* display name, or NULL */

sb_conn_t *sb_hub_conn(const sb_hub_t *hub, const char *conn_id); /* NULL if none */
/* Fills out with up to max rooms the connection is in; returns how many. */
size_t sb_conn_rooms(const sb_conn_t *conn, sb_room_t **out, size_t max);
/* Fills out with up to max connections of the user; returns how many the user has. */
size_t sb_hub_user_conns(const sb_hub_t *hub, const char *user_id, sb_conn_t **out, size_t max);
size_t sb_hub_conn_count(const sb_hub_t *hub);
size_t sb_hub_user_count(const sb_hub_t *hub); /* unique users */

/* Send to every registered connection, every connection of one user, or a
 * room. The frame is encoded once and shared. Return the number of
 * connections reached, or a negative SB_E*. The _json variants send JSON
 * text (not checked) as a text frame. sb_hub_send_msg sends one encoded
 * message to a list of connections. */
int sb_hub_broadcast(sb_hub_t *hub, int opcode, const void *data, size_t len);
int sb_hub_broadcast_json(sb_hub_t *hub, const char *json);
int sb_hub_send_user(sb_hub_t *hub, const char *user_id, int opcode, const void *data, size_t len);
int sb_hub_send_msg(sb_hub_t *hub, sb_conn_t *const *conns, size_t n, sb_msg_t *msg);

/* Thread-safe variants: copy the data and run on the loop thread. Return 0
 * or SB_ENOMEM / SB_ECLOSED. */
int sb_hub_broadcast_async(sb_hub_t *hub, int opcode, const void *data, size_t len);
int sb_hub_send_user_async(sb_hub_t *hub, const char *user_id, int opcode, const void *data,
                           size_t len);
int sb_room_broadcast_async(sb_hub_t *hub, const char *room, int opcode, const void *data,
                            size_t len);

/* Graceful shutdown (seed 000's ShutdownWithTimeout): stops the server, which
 * runs the shutdown hooks in order, then closes every connection with 1001
 * (forced after timeout_ms). Thread-safe, as sb_server_stop. */
void sb_hub_shutdown(sb_hub_t *hub, uint64_t timeout_ms);
/* Adds a hook run when the server begins to stop, whatever stopped it, while
 * connections are still open (seed 000's OnShutdown): the place to send a
 * last message. */
int sb_hub_on_shutdown(sb_hub_t *hub, void (*fn)(sb_hub_t *hub, void *data), void *data);

/* ---- rooms ------------------------------------------------------------- */

/* Returns the room, creating it if needed; NULL on SB_ENOMEM or a name that
 * is empty or longer than 64 bytes. */
sb_room_t *sb_hub_room_create(sb_hub_t *hub, const char *name);
sb_room_t *sb_hub_room(const sb_hub_t *hub, const char *name); /* NULL if none */
/* Fills out with up to max rooms; returns the number of rooms. */
size_t sb_hub_rooms(const sb_hub_t *hub, sb_room_t **out, size_t max);
/* Removes a room: its members leave it (no notification). Returns 0 or SB_EINVAL. */
int sb_hub_room_remove(sb_hub_t *hub, const char *name);

const char *sb_room_name(const sb_room_t *room);
size_t sb_room_count(const sb_room_t *room); /* members */
/* Join is idempotent; returns 0, SB_EINVAL (not registered), SB_ENOMEM, or
 * SB_ELIMIT when the connection is already in 65,535 rooms. */
int sb_room_join(sb_room_t *room, sb_conn_t *conn);
/* Returns 0, or SB_EINVAL when not a member. */
int sb_room_leave(sb_room_t *room, sb_conn_t *conn);
int sb_room_has(const sb_room_t *room, const sb_conn_t *conn);
/* Fills out with up to max members; returns the member count. */
size_t sb_room_members(const sb_room_t *room, sb_conn_t **out, size_t max);
/* except may be NULL. Returns connections reached or a negative SB_E*. */
int sb_room_broadcast(sb_room_t *room, const sb_conn_t *except, int opcode, const void *data,
                      size_t len);
int sb_room_broadcast_msg(sb_room_t *room, const sb_conn_t *except, sb_msg_t *msg);
int sb_room_broadcast_json(sb_room_t *room, const sb_conn_t *except, const char *json);
/* Messages appended to the room's history since the process started, and
 * the Unix time in ms of the last one (0 if none). */
uint64_t sb_room_message_count(const sb_room_t *room);
int64_t sb_room_last_activity(const sb_room_t *room);

/* History (see sb_hub_config_t). The id the next message appended to the
 * room gets: per room, strictly increasing, never reused, also across
 * restarts when the history is on disk. */
uint64_t sb_room_next_id(sb_room_t *room);
/* Stores a message (JSON text, as delivered) under sb_room_next_id(room).
 * It is committed before any frame queued in this loop iteration is
 * written. Returns the id, or a negative SB_E*. */
int64_t sb_room_history_append(sb_room_t *room, int64_t ts_ms, const char *json, size_t len);
/* Calls fn for the room's messages in id order: with since 0 the last limit
 * messages, else at most limit of those after since, oldest first. Returns
 * the number of calls or a negative SB_E*. */
int sb_room_history(sb_room_t *room, uint64_t since, size_t limit,
                    void (*fn)(void *arg, uint64_t id, int64_t ts_ms, const char *json, size_t len),
                    void *arg);

/* Has a room of that name (existing or not) ever had a message stored? */
int sb_hub_has_history(sb_hub_t *hub, const char *room);

/* ---- through the engine (one node, or many as one) ----------------------
 * These reach every node of a cluster; the functions above reach this
 * node's connections only. On the local engine they are the same thing. */

/* Publishes the message head + ID + tail (the id as a JSON number) to room
 * under the room's next id: stored, then delivered to every member. Returns
 * the local connections reached now (0 when delivery comes back through the
 * cluster) or a negative SB_E*; *id (may be NULL) gets the id, or 0 when the
 * cluster assigns it later. */
int sb_room_publish(sb_room_t *room, int64_t ts_ms, const char *head, size_t hlen, const char *tail,
                    size_t tlen, uint64_t *id);
/* An event (not stored) to the members of room on every node, except one
 * connection (may be NULL). Returns local connections reached or SB_E*. */
int sb_room_publish_event(sb_room_t *room, const sb_conn_t *except, const char *json, size_t len);
/* A text message to every connection of a user / to everyone, on every node. */
int sb_hub_publish_user(sb_hub_t *hub, const char *user_id, const char *json, size_t len);
int sb_hub_publish_all(sb_hub_t *hub, const char *json, size_t len);

typedef struct sb_history_entry_s {
    uint64_t id;
    const char *json; /* valid during the callback only */
    size_t len;
} sb_history_entry_t;
/* status: the number of entries, or a negative SB_E* (then n is 0). */
typedef void (*sb_history_cb)(sb_conn_t *conn, sb_room_t *room, int status,
                              const sb_history_entry_t *entries, size_t n, void *arg);
/* Reads the room's history for conn (as sb_room_history selects it) and
 * calls cb with it, now or later; not at all if conn or the room is gone by
 * then. after_join: conn has just joined the room, so the entries it will
 * get live are left out (no message twice, none missing). Returns 0 or a
 * negative SB_E* (then cb is not called). */
int sb_room_history_request(sb_room_t *room, sb_conn_t *conn, uint64_t since, size_t limit,
                            int after_join, sb_history_cb cb, void *arg);
/* Does the hub share with other nodes (the redis engine)? */
int sb_hub_clustered(const sb_hub_t *hub);

/* ---- presence on every node (docs/cluster.md) ---------------------------
 * Only the redis engine counts presence for the cluster. The calls that
 * change it return 1 when the engine took the change (its events then come
 * through the cluster), 0 when the caller must do what one node does (the
 * local engine, or a node that cannot reach Redis), or a negative SB_E*. */

/* A member change: user_id (nickname may be NULL) joined (delta 1) or left
 * (-1) room on this node. The event is head + COUNT + tail, COUNT being the
 * room's members on every node after the change; announce sends it to the
 * members on every node; confirm (may be NULL) gets it too, directly. For a
 * join, presence (may be NULL) goes to the room when this is the user's
 * first connection in it on any node. */
typedef struct sb_member_change_s {
    const char *user_id, *nickname;
    int delta;
    const char *head, *tail;
    int announce;
    sb_conn_t *confirm;
    const char *presence;
} sb_member_change_t;
int sb_room_publish_member(sb_room_t *room, const sb_member_change_t *c);
/* A connection of user_id opened (delta 1) or closed (-1). When a close
 * ends the user's last connection on any node, presence (may be NULL) goes
 * to the members of each of rooms[0..n) on every node. */
int sb_hub_publish_user_conn(sb_hub_t *hub, const char *user_id, const char *nickname, int delta,
                             sb_room_t *const *rooms, size_t n, const char *presence);
/* 1 while the calls below answer for every node (redis engine, connected
 * and synchronised); 0: use this node's own counts (sb_room_count...). */
int sb_hub_presence_shared(const sb_hub_t *hub);
typedef struct sb_room_info_s {
    const char *name; /* valid until the loop runs again */
    size_t members;   /* connections in the room on every node */
} sb_room_info_t;
typedef struct sb_user_info_s {
    const char *user_id, *nickname; /* valid until the loop runs again */
    size_t connections;             /* of this user in the room, on every node */
} sb_user_info_t;
/* Unique users online on every node. */
size_t sb_hub_shared_user_count(const sb_hub_t *hub);
/* Connections of a user on every node. */
size_t sb_hub_shared_user_conns(const sb_hub_t *hub, const char *user_id);
/* The user online on another node under nickname nick (valid until the loop
 * runs again); NULL when none, or without shared presence. */
const char *sb_hub_shared_user_by_nick(const sb_hub_t *hub, const char *nick);
/* Claims nick for conn's user on every node at once. Returns 1 when there is
 * no cluster to ask (the caller decides; cb does not run), else cb runs once,
 * now or later, with status 1 (claimed), 0 (another user online holds it or
 * has it as user id) or SB_E*, and conn NULL when it is gone by then; the
 * return is then 0, or SB_E* when cb has run already (with a NULL conn). */
typedef void (*sb_claim_cb)(sb_conn_t *conn, int status, void *arg);
int sb_hub_claim_nick(sb_hub_t *hub, sb_conn_t *conn, const char *nick, sb_claim_cb cb, void *arg);
/* The rooms with members on any node; returns how many (fills up to max). */
size_t sb_hub_shared_rooms(const sb_hub_t *hub, sb_room_info_t *out, size_t max);
/* Members (connections) of a room on every node. */
size_t sb_hub_shared_room_count(const sb_hub_t *hub, const char *room);
/* The users of a room on every node; returns how many (fills up to max). */
size_t sb_hub_shared_room_users(const sb_hub_t *hub, const char *room, sb_user_info_t *out,
                                size_t max);
/* "ok", or "degraded" while the engine cannot reach the cluster (then only
 * this node's connections are reached). */
const char *sb_hub_engine_status(const sb_hub_t *hub);

/* Room user data slot. */
void *sb_room_get_data(const sb_room_t *room);
void sb_room_set_data(sb_room_t *room, void *data);

#ifdef __cplusplus
}
#endif
#endif /* SWITCHBOARD_H */
