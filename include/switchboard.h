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
    SB_EAGAIN = -1,     /* try again later */
    SB_ECLOSED = -2,    /* the connection is closing or closed */
    /* argument */
    SB_EINVAL = -100,   /* invalid argument */
    SB_EEXIST = -101,   /* already exists (route, ...) */
    /* resource */
    SB_ENOMEM = -200,   /* out of memory */
    SB_ELIMIT = -201,   /* a configured limit was hit (queue, size) */
    SB_EIO = -202,      /* socket or loop error (see the log) */
    SB_EADDR = -203,    /* cannot bind or listen on the address */
    /* protocol */
    SB_EPROTO = -300,   /* protocol violation (close 1002) */
    SB_EUTF8 = -301,    /* invalid UTF-8 in a text message or close reason (close 1007) */
    SB_ETOOBIG = -302,  /* message or frame over the configured maximum (close 1009) */
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
    SB_CLOSE_NO_STATUS = 1005,   /* never sent; reported when a close had no code */
    SB_CLOSE_ABNORMAL = 1006,    /* never sent; reported when TCP closed without a close frame */
    SB_CLOSE_INVALID_DATA = 1007,
    SB_CLOSE_POLICY = 1008,
    SB_CLOSE_TOO_BIG = 1009,
    SB_CLOSE_INTERNAL = 1011,
};

/* ---- server ----------------------------------------------------------- */

typedef struct sb_server_s sb_server_t;
typedef struct sb_conn_s sb_conn_t;
typedef struct sb_request_s sb_request_t;

typedef struct sb_server_config_s {
    const char *host;            /* default "127.0.0.1" */
    int port;                    /* default 8080; 0 picks a free port (see sb_server_port) */
    size_t max_message_size;     /* largest WebSocket message accepted; default 512 KiB (1009 past it) */
    size_t max_frame_size;       /* largest single frame; default = max_message_size */
    size_t max_head_size;        /* largest HTTP request head; default 8 KiB (431 past it) */
    size_t max_body_size;        /* largest HTTP request body; default 1 MiB (413 past it) */
    size_t max_queued_bytes;     /* outbound bytes queued per connection before it counts as a
                                    slow consumer and is closed with 1008; default 4 MiB */
    uint64_t ping_interval_ms;   /* ping a connection silent for this long; default 54 s */
    uint64_t pong_timeout_ms;    /* close a connection silent for this long; default 60 s */
    uint64_t write_timeout_ms;   /* close a connection whose queued output makes no progress
                                    for this long; default 10 s */
    uint64_t handshake_timeout_ms; /* an HTTP request head must arrive within this; default 10 s */
    uint64_t idle_timeout_ms;    /* close keep-alive HTTP connections idle this long; default 60 s */
    uint64_t close_timeout_ms;   /* wait this long for the peer's close reply; default 5 s */
    uint64_t sweep_interval_ms;  /* how often the timeout sweep runs; default 1 s */
    sb_log_level_t log_level;    /* default SB_LOG_INFO */
    sb_log_fn log;               /* default NULL: logging off */
    void *log_data;
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

/* Runs the loop until sb_server_stop() is called and every connection is
 * gone. Returns 0 or SB_EIO. */
int sb_server_run(sb_server_t *srv);

/* Starts a graceful stop: stops accepting, closes every WebSocket with
 * 1001 "server shutting down", answers in-flight HTTP requests, and forces
 * the remaining connections closed after timeout_ms. sb_server_run() returns
 * when all are gone. Thread-safe and async-signal-safe (it only wakes the
 * loop). */
void sb_server_stop(sb_server_t *srv, uint64_t timeout_ms);

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
 * a prefix when it ends in an asterisk (as in "/static/" and an asterisk). methods is a mask of SB_METHOD_*;
 * other methods get 405 with an Allow header. Exact routes win over prefixes,
 * longer prefixes over shorter. Returns 0, SB_EEXIST or SB_ENOMEM. */
int sb_server_route(sb_server_t *srv, const char *path, unsigned methods,
                    sb_http_handler_fn handler, void *data);

/* Request accessors; the strings point into the request and live until the
 * handler returns. */
unsigned sb_request_method(const sb_request_t *req);  /* an SB_METHOD_* bit, 0 if other */
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

/* Sends the response. headers is NULL or extra header lines, each ending in
 * "\r\n" ("Cache-Control: no-cache\r\n"). Content-Length, Date, Server and
 * Connection are added. For HEAD requests the body is not sent. Returns 0 or
 * SB_EINVAL when already answered. */
int sb_request_respond(sb_request_t *req, int status, const char *content_type,
                       const char *headers, const void *body, size_t len);

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
 * buf. Returns 0, or SB_EINVAL when the socket has no peer any more. */
int sb_conn_peer(const sb_conn_t *conn, char *buf, size_t size);
void *sb_conn_get_data(const sb_conn_t *conn);
void sb_conn_set_data(sb_conn_t *conn, void *data);
sb_server_t *sb_conn_server(const sb_conn_t *conn);
/* Bytes queued and not yet written. */
size_t sb_conn_queued_bytes(const sb_conn_t *conn);

#ifdef __cplusplus
}
#endif
#endif /* SWITCHBOARD_H */
