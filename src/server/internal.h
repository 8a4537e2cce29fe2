/*
 * internal.h — the server layer's shared structures: the loop, listeners,
 * connections (HTTP head -> WebSocket open -> closing -> closed), the write
 * queue and the route table.
 */
#ifndef SB_SERVER_INTERNAL_H
#define SB_SERVER_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>

#include <uv.h>

#include "server/http.h"
#include "server/slab.h"
#include "server/tls.h"
#include "ws/deflate.h"
#include "switchboard.h"
#include "ws/ws.h"

/* The loop-wide read buffer. The first SB_TAIL_ROOM bytes are kept free so
 * that the unconsumed tail of a connection's previous read (an incomplete
 * frame header or control frame) can be put in front of the new bytes
 * without copying them. */
#define SB_READ_SIZE (64 * 1024)
#define SB_TAIL_ROOM 256

/* A message spanning reads gets at most this much buffer up front. */
#define SB_REASSEMBLY_RESERVE (1024 * 1024)

/* Idle request states kept per server, and the largest arena one keeps. */
#define SB_REQ_POOL 64
#define SB_REQ_POOL_ARENA (16 * 1024)

/* At most this many queued messages go into one sendmsg. */
#define SB_WRITE_BATCH 64
/* Frames this small on average are copied into one buffer and sent as one
 * piece: the kernel's cost per segment is more than a copy of a few hundred
 * bytes (fan-out of chat messages). */
#define SB_COALESCE_AVG 256
/* Readiness events taken from the server's epoll set per wake-up. */
#define SB_EPOLL_BATCH 256

struct sb_msg_s {
    uint32_t refs;
    uint8_t deflate_key;  /* share key deflated was made for (see sb__pmd_share_key) */
    uint8_t incompressible; /* compressing it would not pay: send it as it is */
    size_t len;
    sb_msg_t *deflated; /* the same message compressed (RSV1), made on first need */
    uint8_t data[];
};

/* Allocates a message of len bytes for the caller to fill (one reference). */
sb_msg_t *sb__msg_alloc(size_t len);

typedef struct sb__route_s {
    char *path;
    size_t path_len;
    uint8_t prefix; /* path ended in '*' */
    uint8_t is_ws;
    unsigned methods;
    sb_http_handler_fn handler;
    void *data;
    sb_ws_handlers_t ws;
} sb__route_t;

typedef enum {
    SB_CONN_HTTP = 0, /* reading HTTP requests */
    SB_CONN_WS,       /* WebSocket open */
    SB_CONN_CLOSING,  /* WebSocket close frame sent or received; draining */
    SB_CONN_CLOSED,   /* doomed: reaped (on_close, close, free) at the next flush
                         point; nothing is read or sent any more */
} sb__conn_state_t;

enum {
    SB_F_CLOSE_SENT = 1 << 0,
    SB_F_CLOSE_RECEIVED = 1 << 1,
    SB_F_END_AFTER_FLUSH = 1 << 2,    /* shut TCP down once the queue drains */
    SB_F_SHUTDOWN = 1 << 3,           /* shutdown(SHUT_WR) done: discard input until EOF */
    SB_F_WANT_WRITE = 1 << 4,         /* the socket was full: waiting for EPOLLOUT */
    SB_F_DIRTY = 1 << 5,              /* on the server's flush list */
    SB_F_READ_PAUSED = 1 << 6,        /* reading stopped: too much output queued */
    SB_F_STOP_AFTER_REQUEST = 1 << 7, /* server stopping: close after this response */
    SB_F_UPGRADED = 1 << 8,           /* the handshake succeeded: on_close is owed */
    SB_F_EP_IN = 1 << 9,              /* registered for EPOLLIN */
    SB_F_EP_OUT = 1 << 10,            /* registered for EPOLLOUT */
};

/* What a connection keeps while in the HTTP phase; freed at upgrade. */
struct sb_request_s {
    sb_conn_t *conn;
    sb_request_t *next_free; /* in the server's pool of idle request states */
    sb__http_req_t http;
    const sb__route_t *route;
    uint32_t path_len;
    uint32_t query_off, query_len; /* query_off 0: no query */
    void *conn_data;               /* becomes the connection's user data at upgrade */
    uint32_t started;              /* loop time the request began (access log; sb__now32) */
    uint8_t responded;
    uint8_t head; /* HEAD request: no body in the answer */
};

struct sb_conn_s {
    /* Ordered by size, so that nothing is lost to padding: this is most of
     * what an idle connection costs. */
    sb_server_t *srv;
    sb__tls_t *tls;      /* NULL: plain TCP */
    sb__pmd_conn_t *pmd; /* NULL: permessage-deflate not in use */
    sb_conn_t *next_dirty;
    uint8_t *tail; /* unconsumed bytes of the previous read, or NULL */

    /* write queue: a ring of message references (q_cap is a power of two,
     * so positions wrap with a mask); the head message is partially
     * written up to head_off. A ring of one is q1, inside the connection;
     * a burst grows it on the heap until the queue drains. */
    sb_msg_t **q;
    sb_msg_t *q1;
    size_t head_off;
    size_t queued; /* bytes queued and not yet written */

    sb_request_t *req; /* HTTP phase only */

    /* WebSocket */
    const sb__route_t *route;
    const char *subprotocol;
    uint8_t *msg; /* reassembly of a message spanning reads or frames */
    size_t msg_len, msg_cap;
    void *hub; /* the hub's record of this connection, or NULL */
    void *user_data;
    uint64_t bytes_in, bytes_out; /* WebSocket payload, for the access log */
    sb__ws_reader_t reader;

    int fd;
    uint32_t index; /* position in srv->conns */
    /* Loop times, cut to 32 bits (see sb__now32). */
    uint32_t last_read;     /* the last bytes read */
    uint32_t last_ping;     /* the last ping sent */
    uint32_t last_progress; /* the write queue last moved (or was empty) */
    uint32_t deadline;      /* HTTP: head/idle deadline; CLOSING: close deadline */
    uint32_t opened;        /* the accept, then the upgrade */
    uint32_t q_head, q_count, q_cap;
    uint32_t msgs_in, msgs_out; /* WebSocket messages, for the access log */
    uint32_t dropped;           /* messages dropped since the queue last drained */
    uint16_t flags;
    uint16_t close_code; /* received, else sent, else 0 */
    uint16_t peer_port;
    uint8_t peer_family; /* AF_INET or AF_INET6: peer_addr holds 4 or 16 bytes */
    uint8_t state;
    uint8_t tail_len; /* bytes in tail */
    uint8_t peer_addr[16];
    char id[20];
};

/* A function posted from another thread (sb_server_post). */
typedef struct sb__post_s {
    struct sb__post_s *next;
    void (*fn)(void *arg);
    void *arg;
} sb__post_t;

struct sb_server_s {
    sb_server_config_t cfg;
    sb__ws_limits_t ws_limits; /* from cfg, for every connection's reader */
    char *host;
    uv_loop_t loop;
    int epfd;            /* the connections' epoll set */
    uv_poll_t epoll;     /* libuv watches the set as one descriptor */
    int listen_fd;       /* -1 until listening */
    uv_poll_t listen_poll;
    uv_timer_t accept_timer; /* resumes accepting after a pause (no descriptors) */
    int spare_fd;            /* kept open to shed connections when descriptors run out */
    /* TLS: a second listener; ciphertext is read into tls_rbuf and
     * decrypted into rbuf */
    sb__pmd_t *pmd; /* permessage-deflate codec; NULL when compression is off */
    sb__tls_ctx_t *tls_ctx;
    int tls_listen_fd;
    uv_poll_t tls_listen_poll;
    int tls_port;
    uint8_t *tls_rbuf; /* SB_READ_SIZE */
    uint64_t shed_logged_at;
    uv_prepare_t prepare; /* flush before the loop blocks */
    uv_check_t check;     /* flush after the loop's I/O */
    uv_timer_t sweep;
    uv_timer_t stop_timer;
    uv_async_t stop_async;
    int port;
    uint8_t listening;
    uint8_t stopping;
    uint8_t handles_closed;
    uint8_t running; /* the loop's handles were started */
    uint64_t stop_timeout_ms;
    uint64_t next_conn_id;

    sb__route_t *routes;
    size_t nroutes;

    sb_conn_t **conns;
    uint32_t nconns, conns_cap;
    sb_conn_t *dirty;

    /* sb_server_post: a mutex-guarded list drained on the loop by post_async */
    uv_async_t post_async;
    uv_mutex_t post_lock;
    sb__post_t *posts, **posts_tail;
    uint8_t posts_closed;

    /* run before queued output is written (the hub commits history here) */
    void (*flush_hook)(void *data);
    void *flush_hook_data;
    /* run when a stop begins, before connections are told (the hub's
     * shutdown hooks) */
    void (*stop_hook)(void *data);
    void *stop_hook_data;

    sb_metrics_t metrics; /* counters; rates refreshed by the sweep */
    uint64_t started_at, rates_at;
    uint64_t last_msgs_in, last_msgs_out, last_bytes_in, last_bytes_out;

    /* Request states of finished handshakes, kept for the next ones: freed,
     * they would leave a hole between every two connections' memory. */
    sb__slab_t conn_slab; /* every sb_conn_t */
    sb_request_t *req_pool;
    uint32_t req_pool_n;
    uint32_t sweeps; /* sweep count, for the periodic heap trim */

    uint8_t *rbuf; /* SB_TAIL_ROOM + SB_READ_SIZE */
    uint8_t *wbuf; /* SB_WRITE_BATCH * SB_COALESCE_AVG: small frames gathered for one send */
    char date[40]; /* cached IMF-fixdate for the Date header */
    uint64_t date_at;
};

/* The loop's millisecond clock cut to 32 bits, for connection timestamps:
 * differences of up to 24 days are exact, and sb_server_new clamps every
 * timeout below that. */
#define SB_MAX_TIMEOUT_MS 0x7fffffffu
static inline uint32_t sb__now32(const sb_server_t *srv)
{
    return (uint32_t)uv_now(&srv->loop);
}

/* Has the 32-bit loop time now reached deadline? */
static inline int sb__passed(uint32_t now, uint32_t deadline)
{
    return (int32_t)(now - deadline) >= 0;
}

void sb__log(const sb_server_t *srv, sb_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* conn.c */
void sb__conn_accept(sb_server_t *srv, int tls);
void sb__conn_io(sb_conn_t *c, uint32_t epoll_events);
int sb__conn_queue(sb_conn_t *c, sb_msg_t *msg); /* takes a new reference */
/* With slow_consumer_drop: whether msg must be dropped for c's full queue
 * (counted when it is). */
int sb__conn_would_drop(sb_conn_t *c, const sb_msg_t *msg);
void sb__conn_end(sb_conn_t *c);                 /* shut down after the queue drains */
void sb__conn_abort(sb_conn_t *c);               /* close TCP at the next flush point */
void sb__conn_keep_tail(sb_conn_t *c, const uint8_t *p, size_t n);
void sb__conn_flush_all(sb_server_t *srv);
void sb__conn_sweep(sb_conn_t *c, uint64_t now);
void sb__conn_stop(sb_conn_t *c); /* server stopping */

/* httpconn.c */
sb_request_t *sb__request_get(sb_conn_t *c);
void sb__request_put(sb_conn_t *c); /* c->req back to the pool; c->req = NULL */
void sb__request_pool_free(sb_server_t *srv);
void sb__http_read(sb_conn_t *c, uint8_t *data, size_t len);
void sb__http_error(sb_conn_t *c, int status, const char *text);
/* Answers with a short plain-text body: "STATUS REASON: text". */
void sb__http_respond_text(sb_request_t *req, int status, const char *headers, const char *text);
const char *sb__http_status_text(int status);

/* wsconn.c */
void sb__wsconn_free(sb_conn_t *c); /* what the WebSocket phase holds */
void sb__wsconn_handshake(sb_conn_t *c, uint8_t *rest, size_t rest_len);
void sb__wsconn_read(sb_conn_t *c, uint8_t *data, size_t len);
void sb__wsconn_closed(sb_conn_t *c);
void sb__wsconn_ping(sb_conn_t *c);

/* server.c */
uv_loop_t *sb__server_loop(sb_server_t *srv);
void sb__server_set_flush_hook(sb_server_t *srv, void (*fn)(void *data), void *data);
void sb__server_set_stop_hook(sb_server_t *srv, void (*fn)(void *data), void *data);
const sb__route_t *sb__route_match(const sb_server_t *srv, const char *path, size_t len);
const char *sb__server_date(sb_server_t *srv);
void sb__server_conn_gone(sb_server_t *srv, sb_conn_t *c);
/* Stops accepting for a moment (out of descriptors with no spare). */
void sb__server_pause_accept(sb_server_t *srv);
/* A descriptor to keep in reserve (of /dev/null), or -1. */
int sb__spare_fd(void);

#endif /* SB_SERVER_INTERNAL_H */
