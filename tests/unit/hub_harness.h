/* hub_harness.h — a real server and hub in the test process, and real client
 * sockets to drive them; shared by test_hub.c and test_room.c.
 *
 * The server listens on 127.0.0.1, port 0. Clients are plain non-blocking
 * POSIX sockets that send an RFC 6455 handshake and masked frames, and parse
 * the server's unmasked frames (7-, 16- and 64-bit lengths). The test thread
 * runs the server's loop with sb_server_run_once until what it waits for has
 * happened: every wait is a bounded number of iterations, and an iteration
 * blocks at most one sweep interval (5 ms), so a broken wait fails instead of
 * hanging, and nothing sleeps.
 *
 * What a client received is checked exactly: expect_texts() queues a fresh
 * marker to the client after everything else and reads up to it, so "exactly
 * these messages, each once, in this order" needs no timing.
 *
 * Criterion runs each test in its own process, so the state is one global. */
#ifndef SB_TESTS_HUB_HARNESS_H
#define SB_TESTS_HUB_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "hub/hub.h"
#include "switchboard.h"

#define MAX_CLIENTS 40
#define MAX_CLOSES 64
#define MAX_RESULTS 256
/* Loop iterations a wait may take before it fails (at 5 ms each at most). */
#define SPIN_MAX 2000

typedef struct {
    int fd;          /* -1 once the test closed it */
    sb_conn_t *conn; /* the server's side; NULL once its on_close ran */
    char id[24];     /* its connection id, kept after the close */
    uint8_t *buf;    /* received and not yet parsed */
    size_t len, cap;
    int eof;
} client_t;

/* What on_close saw. */
typedef struct {
    char id[24];
    int code;
    int in_callback; /* ran while a test callback (and its fan-out) was running */
    int registered;  /* sb_hub_conn still found it */
    size_t rooms;    /* rooms it was still in */
} close_rec_t;

typedef struct {
    int fin, opcode;
    size_t hdr; /* header length: 2, 4 or 10 */
    uint8_t *data;
    size_t len;
} frame_t;

typedef void (*msg_hook_t)(sb_conn_t *conn, const char *msg, size_t len);

static struct {
    sb_server_t *srv;
    sb_hub_t *hub;
    int port;
    int stopped;
    client_t cl[MAX_CLIENTS];
    size_t ncl;
    sb_conn_t *opened[MAX_CLIENTS * 2]; /* in on_open order */
    size_t nopened;
    close_rec_t closes[MAX_CLOSES];
    size_t ncloses;
    size_t nmsgs;                           /* on_message calls */
    msg_hook_t on_msg;                      /* what a test does with a message, or NULL */
    void (*on_close_hook)(sb_conn_t *conn); /* what a test does in on_close, or NULL */
    int in_callback;                        /* depth of test callbacks running */
    int results[MAX_RESULTS];               /* return values recorded by callbacks */
    size_t nresults;
    unsigned markers;
} fx;

/* ---- the server and hub ------------------------------------------------- */

static inline void h_open(sb_hub_t *hub, sb_conn_t *conn, void *data)
{
    (void)hub;
    (void)data;
    if (fx.nopened < sizeof fx.opened / sizeof fx.opened[0])
        fx.opened[fx.nopened] = conn;
    fx.nopened++;
}

static inline void h_message(sb_hub_t *hub, sb_conn_t *conn, int opcode, const void *msg,
                             size_t len, void *data)
{
    (void)hub;
    (void)opcode;
    (void)data;
    fx.nmsgs++;
    if (fx.on_msg) {
        fx.in_callback++;
        fx.on_msg(conn, msg, len);
        fx.in_callback--;
    }
}

static inline void h_close(sb_hub_t *hub, sb_conn_t *conn, int code, void *data)
{
    (void)data;
    if (fx.ncloses < MAX_CLOSES) {
        close_rec_t *r = &fx.closes[fx.ncloses];
        snprintf(r->id, sizeof r->id, "%s", sb_conn_id(conn));
        r->code = code;
        r->in_callback = fx.in_callback;
        r->registered = sb_hub_conn(hub, sb_conn_id(conn)) == conn;
        r->rooms = sb_conn_rooms(conn, NULL, 0);
    }
    fx.ncloses++;
    if (fx.on_close_hook)
        fx.on_close_hook(conn);
    for (size_t i = 0; i < fx.ncl; i++)
        if (fx.cl[i].conn == conn)
            fx.cl[i].conn = NULL;
}

static inline void record(int result)
{
    if (fx.nresults < MAX_RESULTS)
        fx.results[fx.nresults++] = result;
}

/* One loop iteration; blocks at most until the next sweep (5 ms). */
static inline void step(void)
{
    cr_assert_geq(sb_server_run_once(fx.srv, 1), 0);
}

#define WAIT_UNTIL(cond)                                                                           \
    do {                                                                                           \
        for (int spin_ = 0; spin_ < SPIN_MAX && !(cond); spin_++)                                  \
            step();                                                                                \
        cr_assert(cond, "timed out waiting for: %s", #cond);                                       \
    } while (0)

/* Starts a server (max_queued_bytes 0: the default) with a memory-only hub
 * serving /ws. */
static inline void fx_start_with(size_t max_queued_bytes)
{
    /* Writes to a peer that is gone must fail with EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    memset(&fx, 0, sizeof fx);
    sb_server_config_t cfg;
    sb_server_config_init(&cfg);
    cfg.port = 0;
    cfg.sweep_interval_ms = 5;
    if (max_queued_bytes)
        cfg.max_queued_bytes = max_queued_bytes;
    cr_assert_eq(sb_server_new(&fx.srv, &cfg), 0);
    sb_hub_config_t hc;
    sb_hub_config_init(&hc);
    const char *err = NULL;
    int r = sb_hub_new(&fx.hub, fx.srv, &hc, &err);
    cr_assert_eq(r, 0, "sb_hub_new: %s (%s)", sb_strerror(r), err ? err : "");
    sb_hub_handlers_t h = {.on_open = h_open, .on_message = h_message, .on_close = h_close};
    cr_assert_eq(sb_hub_route(fx.hub, "/ws", &h), 0);
    cr_assert_eq(sb_server_listen(fx.srv), 0);
    fx.port = sb_server_port(fx.srv);
    cr_assert_gt(fx.port, 0);
}

static inline void fx_start(void)
{
    fx_start_with(0);
}

/* Stops the server gracefully and runs its loop until it is fully stopped.
 * Open clients are closed first, so their connections end at once. */
static inline int fx_stop_quietly(void)
{
    if (!fx.srv || fx.stopped)
        return 1;
    for (size_t i = 0; i < fx.ncl; i++)
        if (fx.cl[i].fd >= 0) {
            close(fx.cl[i].fd);
            fx.cl[i].fd = -1;
        }
    sb_server_stop(fx.srv, 1000);
    int spin = 0;
    while (spin++ < SPIN_MAX && sb_server_run_once(fx.srv, 1) > 0)
        ;
    fx.stopped = spin < SPIN_MAX;
    return fx.stopped;
}

static inline void fx_stop(void)
{
    cr_assert(fx_stop_quietly(), "the server did not stop");
}

/* The suites' .fini: stop, then free hub and server (ASan and LSan watch). */
static inline void fx_fini(void)
{
    if (!fx.srv)
        return;
    fx_stop_quietly();
    for (size_t i = 0; i < fx.ncl; i++) {
        if (fx.cl[i].fd >= 0)
            close(fx.cl[i].fd);
        free(fx.cl[i].buf);
    }
    sb_hub_free(fx.hub);
    sb_server_free(fx.srv);
    fx.srv = NULL;
}

/* ---- clients ------------------------------------------------------------ */

/* Reads whatever the socket has into the client's buffer. */
static inline void client_pull(client_t *c)
{
    if (c->fd < 0)
        return;
    for (;;) {
        if (c->cap - c->len < 64 * 1024) {
            size_t cap = c->cap ? c->cap * 2 : 128 * 1024;
            c->buf = realloc(c->buf, cap);
            cr_assert_not_null(c->buf);
            c->cap = cap;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            c->eof = 1;
        return;
    }
}

/* Takes one whole server frame off the front of the buffer: 1, or 0 when it
 * is not all there yet. */
static inline int client_take_frame(client_t *c, frame_t *f)
{
    const uint8_t *p = c->buf;
    size_t n = c->len;
    if (n < 2)
        return 0;
    cr_assert_eq(p[1] & 0x80, 0, "a server frame must not be masked");
    uint64_t len = p[1] & 0x7f;
    size_t h = 2;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        h = 4;
        cr_assert_geq(len, 126, "the server must use the shortest length encoding");
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        h = 10;
        cr_assert_gt(len, 0xffff, "the server must use the shortest length encoding");
    }
    if (n - h < len)
        return 0;
    f->fin = p[0] >> 7;
    f->opcode = p[0] & 0x0f;
    f->hdr = h;
    f->len = (size_t)len;
    f->data = malloc(f->len + 1);
    cr_assert_not_null(f->data);
    memcpy(f->data, p + h, f->len);
    f->data[f->len] = 0;
    memmove(c->buf, c->buf + h + f->len, n - h - f->len);
    c->len -= h + f->len;
    return 1;
}

/* The next frame the client receives, running the loop while it waits.
 * Returns 0 when the connection ended first. */
static inline int client_next(client_t *c, frame_t *f)
{
    for (int spin = 0; spin < SPIN_MAX; spin++) {
        if (client_take_frame(c, f))
            return 1;
        client_pull(c);
        if (client_take_frame(c, f))
            return 1;
        if (c->eof || c->fd < 0)
            return 0;
        step();
    }
    cr_assert_fail("timed out waiting for a frame");
    return 0;
}

static inline void send_all(int fd, const uint8_t *p, size_t n)
{
    for (int spin = 0; n && spin < SPIN_MAX * 10; spin++) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            step(); /* let the server read */
        } else {
            cr_assert_fail("send: %s", strerror(errno));
        }
    }
    cr_assert_eq(n, 0, "timed out sending");
}

/* Appends a masked client frame to out (room for len + 14); returns its size. */
static inline size_t frame_build(uint8_t *out, int opcode, const void *data, size_t len)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t h;
    out[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[1] = (uint8_t)(0x80 | len);
        h = 2;
    } else if (len <= 0xffff) {
        out[1] = 0x80 | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        h = 4;
    } else {
        out[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        h = 10;
    }
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++)
        out[h + i] = ((const uint8_t *)data)[i] ^ mask[i % 4];
    return h + len;
}

static inline void client_send(size_t ci, int opcode, const void *data, size_t len)
{
    uint8_t *fr = malloc(len + 14);
    cr_assert_not_null(fr);
    size_t n = frame_build(fr, opcode, data, len);
    send_all(fx.cl[ci].fd, fr, n);
    free(fr);
}

/* Sends a text message and runs the loop until on_message has seen it. */
static inline void client_say(size_t ci, const char *text)
{
    size_t before = fx.nmsgs;
    client_send(ci, SB_OP_TEXT, text, strlen(text));
    WAIT_UNTIL(fx.nmsgs > before);
}

/* Connects a client to path (rcvbuf: its SO_RCVBUF, 0 for the default),
 * completes the handshake and returns its index; its connection is
 * fx.cl[i].conn. */
static inline size_t connect_client_to(const char *path, int rcvbuf)
{
    char handshake[256];
    int hs_len = snprintf(handshake, sizeof handshake,
                          "GET %s HTTP/1.1\r\n"
                          "Host: 127.0.0.1\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n",
                          path);
    cr_assert_lt(fx.ncl, MAX_CLIENTS);
    client_t *c = &fx.cl[fx.ncl];
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(c->fd, 0);
    if (rcvbuf)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s",
                 strerror(errno));
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    size_t ci = fx.ncl++;
    send_all(c->fd, (const uint8_t *)handshake, (size_t)hs_len);

    size_t before = fx.nopened;
    WAIT_UNTIL(fx.nopened > before);
    cr_assert_eq(fx.nopened, before + 1);
    c->conn = fx.opened[before];
    snprintf(c->id, sizeof c->id, "%s", sb_conn_id(c->conn));

    const uint8_t *end = NULL;
    for (int spin = 0; spin < SPIN_MAX && !end; spin++) {
        client_pull(c);
        end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end)
            step();
    }
    cr_assert_not_null(end, "no handshake answer");
    cr_assert(c->len > 13 && memcmp(c->buf, "HTTP/1.1 101 ", 13) == 0, "not a 101: %.*s",
              (int)c->len, c->buf);
    cr_assert_not_null(memmem(c->buf, (size_t)(end - c->buf), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28));
    size_t head = (size_t)(end + 4 - c->buf);
    memmove(c->buf, c->buf + head, c->len - head);
    c->len -= head;
    return ci;
}

static inline size_t connect_client_rcvbuf(int rcvbuf)
{
    return connect_client_to("/ws", rcvbuf);
}

static inline size_t connect_client(void)
{
    return connect_client_to("/ws", 0);
}

static inline void connect_clients(size_t n)
{
    for (size_t i = 0; i < n; i++)
        connect_client();
}

static inline sb_conn_t *conn_of(size_t ci)
{
    cr_assert_not_null(fx.cl[ci].conn, "client %zu is closed", ci);
    return fx.cl[ci].conn;
}

/* Closes the client's socket and runs the loop until its on_close ran. */
static inline void close_client(size_t ci)
{
    client_t *c = &fx.cl[ci];
    close(c->fd);
    c->fd = -1;
    WAIT_UNTIL(c->conn == NULL);
}

/* The on_close record of the client's connection, or NULL. */
static inline const close_rec_t *close_of(size_t ci)
{
    for (size_t i = 0; i < fx.ncloses && i < MAX_CLOSES; i++)
        if (strcmp(fx.closes[i].id, fx.cl[ci].id) == 0)
            return &fx.closes[i];
    return NULL;
}

/* Runs the loop until the connection's queue is written out, reading the
 * client meanwhile (into its buffer) so that it can be. */
static inline void settle(size_t ci)
{
    client_t *c = &fx.cl[ci];
    for (int spin = 0; spin < SPIN_MAX && c->conn && sb_conn_queued_bytes(c->conn); spin++) {
        client_pull(c);
        step();
    }
    cr_assert(!c->conn || sb_conn_queued_bytes(c->conn) == 0, "client %zu: queue never drained",
              ci);
}

/* Checks that client ci received exactly the n text messages want, in order,
 * since the last check (each once, nothing else). */
static inline void expect_texts(size_t ci, const char *const *want, size_t n)
{
    client_t *c = &fx.cl[ci];
    settle(ci);
    char marker[32];
    snprintf(marker, sizeof marker, "marker-%u", fx.markers++);
    cr_assert_eq(sb_conn_send(conn_of(ci), SB_OP_TEXT, marker, strlen(marker)), 0);
    for (size_t i = 0;; i++) {
        frame_t f;
        cr_assert(client_next(c, &f), "client %zu: connection ended before the marker", ci);
        int is_marker = f.opcode == SB_OP_TEXT && strcmp((char *)f.data, marker) == 0;
        if (is_marker) {
            free(f.data);
            cr_assert_eq(i, n, "client %zu got %zu message(s), expected %zu", ci, i, n);
            return;
        }
        cr_assert_lt(i, n, "client %zu: unexpected message %zu: '%.60s'", ci, i, (char *)f.data);
        cr_assert_eq(f.opcode, SB_OP_TEXT, "client %zu message %zu: opcode %d", ci, i, f.opcode);
        cr_assert(f.fin, "client %zu message %zu: fragmented", ci, i);
        cr_assert(f.len == strlen(want[i]) && memcmp(f.data, want[i], f.len) == 0,
                  "client %zu message %zu: got '%.60s', expected '%s'", ci, i, (char *)f.data,
                  want[i]);
        free(f.data);
    }
}

#define EXPECT(ci, ...)                                                                            \
    expect_texts((ci), (const char *const[]){__VA_ARGS__},                                         \
                 sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
#define EXPECT_NONE(ci) expect_texts((ci), NULL, 0)

/* ---- a command language for on_message ---------------------------------- */

/* Clients ask the server to act on their behalf from inside on_message, so
 * that joins, leaves, removals and fan-outs interleave with the server's own
 * callbacks. A message holds commands separated by ';', run in order:
 *   join R | leave R | remove R        membership (result: the return value)
 *   say R TEXT | all R TEXT            sb_room_broadcast but the sender | to all
 *   kick CONNID                        sb_conn_close(conn, 4000, "kicked")
 * Each command's result is recorded (a missing room: -1000). */
static inline void run_commands(sb_conn_t *conn, const char *msg, size_t len)
{
    char buf[1024];
    cr_assert_lt(len, sizeof buf);
    memcpy(buf, msg, len);
    buf[len] = 0;
    char *save = NULL;
    for (char *cmd = strtok_r(buf, ";", &save); cmd; cmd = strtok_r(NULL, ";", &save)) {
        char verb[16], room_name[80];
        int text_at = 0;
        if (sscanf(cmd, "%15s %79s %n", verb, room_name, &text_at) < 2) {
            record(-2000);
            continue;
        }
        sb_room_t *room = sb_hub_room(fx.hub, room_name);
        if (strcmp(verb, "join") == 0) {
            room = sb_hub_room_create(fx.hub, room_name);
            record(room ? sb_room_join(room, conn) : -1000);
        } else if (strcmp(verb, "kick") == 0) {
            sb_conn_t *target = sb_hub_conn(fx.hub, room_name);
            record(target ? sb_conn_close(target, 4000, "kicked") : -1000);
        } else if (!room) {
            record(-1000);
        } else if (strcmp(verb, "leave") == 0) {
            record(sb_room_leave(room, conn));
        } else if (strcmp(verb, "remove") == 0) {
            record(sb_hub_room_remove(fx.hub, room_name));
        } else if (strcmp(verb, "say") == 0 || strcmp(verb, "all") == 0) {
            const char *text = cmd + text_at;
            record(sb_room_broadcast(room, verb[0] == 's' ? conn : NULL, SB_OP_TEXT, text,
                                     strlen(text)));
        } else {
            record(-2000);
        }
    }
}

#endif /* SB_TESTS_HUB_HARNESS_H */
