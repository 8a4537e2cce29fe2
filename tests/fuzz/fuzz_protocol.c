/* fuzz_protocol.c — the server application end to end, in-process: a real
 * server on 127.0.0.1 (port 0) with a memory-only hub and the routes of the
 * switchboard binary (app_routes: the JSON chat protocol at /ws, the raw
 * relay at /ws/raw, /echo, the HTTP API), driven by real client sockets that
 * speak the handshake and masked frames. The loop runs with
 * sb_server_run_once(srv, 0) a bounded number of times per step; only a wait
 * not over at once (a handshake, the stop) blocks, for at most 5 ms an
 * iteration, and every wait is bounded.
 *
 * Every input gets a fresh server, torn down at the end (so a crash always
 * reproduces from its input, and LeakSanitizer sees every input's memory
 * come back).
 *
 * Input: a settings byte, then segments separated by 0xff (a byte UTF-8 never
 * has, so JSON text passes whole).
 *   settings  bit 0: a fixed room list (--rooms general,lobby)
 *             bit 1: a small --max-content (16 bytes)
 *             bit 2: an API key ("k")
 *             bit 3: a small --presence-limit (2), else the default (1000)
 *   segment   a header byte, then the payload:
 *     0x80 clear: a WebSocket message from client (header & 3): clients 0-2
 *                 are on /ws, client 3 on /ws/raw (on /echo after every
 *                 other reconnect).
 *                 0x04 binary (else text), 0x08 fragmented into up to three
 *                 frames with a ping in between, 0x10 reconnect the client
 *                 first, 0x20 then close it with a close frame (1000);
 *                 0x40 send the payload as raw bytes instead of a frame.
 *     0x80 set:   HTTP on a fresh connection. 0x40 clear: the payload is the
 *                 raw request. 0x40 set: an API request with the payload as
 *                 its body, to (header & 7): POST /api/broadcast, POST
 *                 /api/rooms/general/messages, GET /api/rooms, GET
 *                 /api/rooms/general/users, GET /stats, GET /metrics, GET
 *                 /health, POST /api/rooms/<payload>/messages; with the API
 *                 key when 0x08 is set.
 *
 * Checked: every server frame is well-formed (unmasked, RSV clear, control
 * frames short and whole, nothing after a close frame, text is UTF-8), every
 * text message on /ws is a JSON object with a "type", a client that sent
 * well-formed frames of valid UTF-8 text (whatever their JSON) is never
 * closed or dropped, every HTTP answer starts with a status line, and the
 * server stops and frees cleanly. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "app/app.h"
#include "fuzz.h"
#include "ws/ws.h"

#define NCLIENTS 4
#define SEPARATOR 0xff
/* Loop iterations after each step: a message read, handled and its answers
 * written takes one; a new connection's handshake three. */
#define PUMP_STEPS 4
/* Iterations a wait may take before it gives up (a handshake, a stop): the
 * first WAIT_SPIN without blocking, the rest blocking for at most a sweep
 * interval (SWEEP_MS) each, in case the kernel hands loopback data over a
 * little later under load. */
#define WAIT_STEPS 1000
#define WAIT_SPIN 50
#define SWEEP_MS 5
#define MAX_MESSAGE 8192
/* Segments handled per input (the rest is ignored): keeps every run short. */
#define MAX_SEGMENTS 48

static void drop(bytes_t *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

typedef struct {
    int fd;           /* -1: not connected */
    const char *path; /* WebSocket endpoint */
    int open;         /* the 101 came: the bytes are frames */
    int close_seen;   /* the server's close frame came */
    int eof;          /* the server ended the connection */
    int may_close;    /* it sent what a server may close a connection for */
    bytes_t in;       /* received, not yet parsed */
} client_t;

static struct {
    sb_server_t *srv;
    app_t app;
    int port;
    client_t cl[NCLIENTS];
} g;

static const char *const client_paths[NCLIENTS] = {"/ws", "/ws", "/ws", "/ws/raw"};

/* ---- server frames ------------------------------------------------------ */

static void check_text(const client_t *c, const uint8_t *p, size_t n)
{
    CHECK(sb__utf8_valid(p, n), "the server sent a text frame that is not UTF-8");
    if (strcmp(c->path, "/ws") != 0)
        return;
    json_error_t err;
    json_t *msg = json_loadb((const char *)p, n, 0, &err);
    CHECK(msg, "the server sent text on /ws that is not JSON (%s): %.*s", err.text, (int)n, p);
    CHECK(json_is_object(msg) && json_is_string(json_object_get(msg, "type")),
          "a server message on /ws without a type: %.*s", (int)n, p);
    json_decref(msg);
}

/* Takes the whole server frames off the front of c->in and checks them. */
static void parse_frames(client_t *c)
{
    for (;;) {
        const uint8_t *p = c->in.p;
        size_t n = c->in.len;
        if (n < 2)
            return;
        CHECK(!c->close_seen, "the server sent a frame after its close frame");
        CHECK(!(p[1] & 0x80), "the server sent a masked frame");
        CHECK(!(p[0] & 0x70), "the server sent a frame with RSV bits");
        uint64_t len = p[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (n < 4)
                return;
            len = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (len == 127) {
            if (n < 10)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[2 + i];
            h = 10;
            CHECK(!(len >> 63), "the server sent a 64-bit length with the top bit set");
        }
        if (n - h < len)
            return;
        int fin = p[0] >> 7, opcode = p[0] & 0x0f;
        const uint8_t *payload = p + h;
        switch (opcode) {
        case SB_OP_TEXT:
            CHECK(fin, "the server fragmented a message");
            check_text(c, payload, (size_t)len);
            break;
        case SB_OP_BINARY:
            CHECK(fin, "the server fragmented a message");
            CHECK(strcmp(c->path, "/ws") != 0, "the server sent binary on /ws");
            break;
        case SB_OP_CLOSE:
            CHECK(len != 1, "the server sent a close frame of 1 byte");
            if (len >= 2)
                CHECK(sb__close_code_valid(payload[0] << 8 | payload[1]),
                      "the server closed with code %d", payload[0] << 8 | payload[1]);
            /* fall through */
        case SB_OP_PING:
        case SB_OP_PONG:
            CHECK(fin && len <= SB_WS_MAX_CONTROL, "the server sent a bad control frame");
            break;
        default:
            CHECK(0, "the server sent opcode %d", opcode);
        }
        if (opcode == SB_OP_CLOSE) {
            /* Bad JSON gets an error message, not a close. */
            CHECK(c->may_close, "the server closed a well-behaved client on %s with %d", c->path,
                  len >= 2 ? payload[0] << 8 | payload[1] : 1005);
            c->close_seen = 1;
        }
        drop(&c->in, h + (size_t)len);
    }
}

/* ---- sockets ------------------------------------------------------------ */

/* A non-blocking TCP connection to the server. Closing it resets it (linger
 * 0): no TIME_WAIT piles up over millions of runs. */
static int tcp_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* On loopback the connection is made at once, or in progress until the
     * loop accepts it; either way it can be written to. */
    int r = connect(fd, (struct sockaddr *)&a, sizeof a);
    CHECK(r == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
    return fd;
}

/* Reads what the socket has into *in; 1 once the peer ended the connection. */
static int pull(int fd, bytes_t *in)
{
    uint8_t buf[16384];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            put(in, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

static void drain_clients(void)
{
    for (int i = 0; i < NCLIENTS; i++) {
        client_t *c = &g.cl[i];
        if (c->fd < 0)
            continue;
        if (pull(c->fd, &c->in)) {
            CHECK(c->may_close || !c->open, "the server dropped a well-behaved client on %s",
                  c->path);
            c->eof = 1;
        }
        if (c->open)
            parse_frames(c);
    }
}

/* One loop iteration (blocking for at most SWEEP_MS when block is set),
 * then the clients read what came. Returns what sb_server_run_once did. */
static int step(int block)
{
    int r = sb_server_run_once(g.srv, block);
    CHECK(r >= 0, "sb_server_run_once failed");
    drain_clients();
    return r;
}

static void pump(int steps)
{
    for (int i = 0; i < steps; i++)
        step(0);
}

/* A step of a bounded wait: see WAIT_STEPS. */
static int wait_step(int spin)
{
    return step(spin >= WAIT_SPIN);
}

/* Writes everything, running the loop while the socket is full. Gives up
 * when the server stopped reading (closed, or paused for good). */
static void send_all(int fd, const uint8_t *p, size_t n)
{
    for (int spin = 0; n && spin < WAIT_STEPS; spin++) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            wait_step(spin);
        } else {
            return; /* EPIPE, ECONNRESET: the server closed it */
        }
    }
}

/* ---- clients ------------------------------------------------------------ */

static void client_drop(client_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->open = c->close_seen = c->eof = c->may_close = 0;
    c->in.len = 0;
}

/* (Re)connects client i and completes its handshake. Client 3 alternates
 * between /ws/raw and /echo. */
static void client_open(int i)
{
    client_t *c = &g.cl[i];
    int was_raw = c->path && strcmp(c->path, "/ws/raw") == 0;
    client_drop(c);
    c->path = i == 3 && was_raw ? "/echo" : client_paths[i];
    c->fd = tcp_connect();
    char hs[256];
    int n = snprintf(hs, sizeof hs,
                     "GET %s HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     c->path);
    send_all(c->fd, (const uint8_t *)hs, (size_t)n);
    const uint8_t *end = NULL;
    for (int spin = 0; spin < WAIT_STEPS && !end; spin++) {
        wait_step(spin);
        end = c->in.len ? memmem(c->in.p, c->in.len, "\r\n\r\n", 4) : NULL;
    }
    CHECK(end, "no answer to the handshake on %s", c->path);
    CHECK(c->in.len > 13 && memcmp(c->in.p, "HTTP/1.1 101 ", 13) == 0,
          "the handshake on %s was answered: %.*s", c->path, (int)c->in.len, c->in.p);
    drop(&c->in, (size_t)(end + 4 - c->in.p));
    c->open = 1;
    parse_frames(c);
}

/* Appends a masked client frame to out. */
static void frame(bytes_t *out, int fin, int opcode, const uint8_t *p, size_t n)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t h[SB_WS_MAX_HEADER];
    size_t hl = sb__frame_header_write(h, fin, 0, opcode, n, mask);
    put(out, h, hl);
    size_t at = out->len;
    put(out, p, n);
    sb__mask(out->p + at, n, mask, 0);
}

static void client_message(int i, unsigned flags, const uint8_t *p, size_t n)
{
    client_t *c = &g.cl[i];
    if (c->fd < 0 || c->close_seen || c->eof || (flags & 0x10))
        client_open(i);
    bytes_t out = {0};
    if (flags & 0x40) {
        put(&out, p, n); /* raw bytes: frames or not */
        c->may_close = 1;
    } else {
        int opcode = (flags & 0x04) ? SB_OP_BINARY : SB_OP_TEXT;
        if ((opcode == SB_OP_TEXT && !sb__utf8_valid(p, n)) || n > MAX_MESSAGE)
            c->may_close = 1; /* 1007, 1009 */
        if ((flags & 0x08) && n >= 2) {
            /* Split at a third and two thirds, a ping between the first two. */
            size_t a = n / 3, b = 2 * n / 3;
            frame(&out, 0, opcode, p, a);
            frame(&out, 1, SB_OP_PING, (const uint8_t *)"p", 1);
            frame(&out, 0, SB_OP_CONTINUATION, p + a, b - a);
            frame(&out, 1, SB_OP_CONTINUATION, p + b, n - b);
        } else {
            frame(&out, 1, opcode, p, n);
        }
    }
    if (flags & 0x20) {
        static const uint8_t bye[] = {0x03, 0xe8, 'b', 'y', 'e'};
        c->may_close = 1;
        frame(&out, 1, SB_OP_CLOSE, bye, sizeof bye);
    }
    send_all(c->fd, out.p, out.len);
    free(out.p);
    pump(PUMP_STEPS);
}

/* ---- HTTP --------------------------------------------------------------- */

/* Sends a request on a fresh connection and checks what comes back starts
 * with a status line. */
static void http_exchange(const uint8_t *req, size_t n)
{
    int fd = tcp_connect();
    send_all(fd, req, n);
    bytes_t in = {0};
    int ended = 0;
    for (int spin = 0; spin < PUMP_STEPS * 2 && !ended; spin++) {
        pump(1);
        ended = pull(fd, &in);
    }
    if (in.len)
        CHECK(in.len >= 12 && memcmp(in.p, "HTTP/1.1 ", 9) == 0,
              "an HTTP answer without a status line: %.*s", (int)(in.len < 80 ? in.len : 80), in.p);
    free(in.p);
    close(fd);
    pump(1);
}

static void api_request(unsigned flags, const uint8_t *body, size_t n)
{
    static const char *const targets[8] = {
        "POST /api/broadcast", "POST /api/rooms/general/messages",
        "GET /api/rooms",      "GET /api/rooms/general/users",
        "GET /stats",          "GET /metrics",
        "GET /health",         "POST /api/rooms/",
    };
    unsigned which = flags & 7;
    bytes_t req = {0};
    put(&req, targets[which], strlen(targets[which]));
    if (which == 7) {
        /* The payload names the room (up to the first blank or control). */
        size_t k = 0;
        while (k < n && k < 80 && body[k] > ' ' && body[k] < 0x7f && body[k] != '/')
            k++;
        put(&req, body, k);
        put(&req, "/messages", 9);
        body += k, n -= k;
    }
    char head[160];
    int hl = snprintf(head, sizeof head,
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      (flags & 0x08) ? "Authorization: Bearer k\r\n" : "", n);
    put(&req, head, (size_t)hl);
    put(&req, body, n);
    http_exchange(req.p, req.len);
    free(req.p);
}

/* ---- a server per input ------------------------------------------------- */

static void start(unsigned settings)
{
    memset(&g.app, 0, sizeof g.app);
    sb_server_config_t cfg;
    sb_server_config_init(&cfg);
    cfg.port = 0;
    cfg.max_message_size = MAX_MESSAGE;
    cfg.sweep_interval_ms = SWEEP_MS; /* bounds a blocking loop iteration */
    sb_hub_config_t hc;
    sb_hub_config_init(&hc);
    hc.max_message_size = cfg.max_message_size;
    hc.history_max = 16; /* retention runs, too */
    CHECK(sb_server_new(&g.srv, &cfg) == 0, "sb_server_new");
    const char *err = NULL;
    int r = sb_hub_new(&g.app.hub, g.srv, &hc, &err);
    CHECK(r == 0, "sb_hub_new: %s", err ? err : sb_strerror(r));
    g.app.server = g.srv;
    g.app.echo = 1;
    g.app.history_on_join = 10;
    g.app.max_content = (settings & 2) ? 16 : 4096;
    g.app.presence_limit = (settings & 8) ? 2 : 1000;
    if (settings & 4)
        g.app.api_key = "k";
    if (settings & 1) {
        static const char *const fixed[] = {"general", "lobby"};
        g.app.fixed_rooms = calloc(2, sizeof *g.app.fixed_rooms);
        CHECK(g.app.fixed_rooms, "out of memory");
        for (size_t i = 0; i < 2; i++)
            CHECK((g.app.fixed_rooms[i] = strdup(fixed[i])), "out of memory");
        g.app.nfixed_rooms = 2;
    }
    CHECK(app_routes(&g.app) == 0, "app_routes");
    CHECK(sb_server_listen(g.srv) == 0, "sb_server_listen");
    g.port = sb_server_port(g.srv);
    for (int i = 0; i < NCLIENTS; i++) {
        g.cl[i].fd = -1;
        g.cl[i].path = NULL;
        client_open(i);
    }
}

static void stop(void)
{
    for (int i = 0; i < NCLIENTS; i++) {
        client_drop(&g.cl[i]);
        free(g.cl[i].in.p);
        g.cl[i].in = (bytes_t){0};
    }
    sb_server_stop(g.srv, 0);
    int spin = 0;
    while (spin < WAIT_STEPS && sb_server_run_once(g.srv, spin >= WAIT_SPIN) > 0)
        spin++;
    CHECK(spin < WAIT_STEPS, "the server did not stop");
    /* As src/app/main.c shuts down. */
    sb_hub_free(g.app.hub);
    chat_free(&g.app);
    sb_server_free(g.srv);
    for (size_t i = 0; i < g.app.nfixed_rooms; i++)
        free(g.app.fixed_rooms[i]);
    free(g.app.fixed_rooms);
    g.srv = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* A write to a client that is gone must fail with EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    start(data[0]);
    const uint8_t *p = data + 1, *end = data + size;
    for (int seg = 0; seg < MAX_SEGMENTS && p < end; seg++) {
        const uint8_t *sep = memchr(p, SEPARATOR, (size_t)(end - p));
        const uint8_t *stop_at = sep ? sep : end;
        if (stop_at > p) {
            unsigned h = p[0];
            const uint8_t *payload = p + 1;
            size_t n = (size_t)(stop_at - payload);
            if (!(h & 0x80))
                client_message((int)(h & 3), h, payload, n);
            else if (h & 0x40)
                api_request(h, payload, n);
            else
                http_exchange(payload, n);
        }
        p = sep ? sep + 1 : end;
    }
    stop();
    return 0;
}
