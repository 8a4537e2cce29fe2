/* loadgen.c — a WebSocket load generator: the client side of RFC 6455 on
 * libuv, for loopback benchmarks of switchboard (or of a peer server that
 * speaks the same protocol).
 *
 *   echo    C connections to /echo, each keeping --inflight binary messages
 *           of --size bytes in flight: round trips and their latency (a send
 *           timestamp travels in the payload).
 *   fanout  C members of room "bench" at /ws. The member whose join
 *           completes last publishes numbered messages ("<send-ns> <seq>
 *           xxx..."), a window of --inflight in flight (a message is done
 *           when the publisher's own copy comes back) or --rate per second.
 *           Deliveries and latency, and per subscriber what was lost,
 *           duplicated or out of order.
 *   idle    C connections join rooms at /ws and sit for --hold seconds: how
 *           many joined, the server's RSS per connection (--server-pid), and
 *           (--broadcast) how long one broadcast takes to reach them all.
 *           --procs and --source-ips get past one process's file limit and
 *           one source address's ephemeral ports.
 *   churn   C workers, each repeatedly connecting, joining a room, publishing
 *           one message, reading its own copy back and closing properly.
 *
 * `loadgen --help` lists every option and the keys of each scenario's output
 * line ("SCENARIO key=value ..."; scripts parse it, so keys are only ever
 * added at the end). Every run is bounded in time: --setup seconds to
 * connect and join, then --seconds (idle: --hold), then short fixed waits.
 * Only messages actually received, deframed and parsed are counted. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "ws/ws.h"

#define LG_PIPELINE 256             /* connections being set up at once, per process */
#define LG_MAX_MESSAGE (16u << 20)  /* a larger server message fails the connection */
#define LG_MAX_HEAD 8192            /* longest handshake answer */
#define LG_MAX_CONTENT 4000         /* fanout: under the server's default --max-content */
#define LG_DRAIN_MS 5000            /* fanout: wait for messages still on their way */
#define LG_CYCLE_MS 5000            /* churn: a cycle taking longer fails */
#define LG_SWEEP_MS 250             /* churn: timeouts and restarts after a failure */
#define LG_REACH_MS 10000           /* idle: wait for the broadcast to arrive everywhere */
/* idle: let the join notices drain, and periodic heap trims run (Switchboard
 * trims every 10 s), before reading the server's memory */
#define LG_SETTLE_MS 11000
#define LG_ROOM_MEMBERS 1000        /* idle: default largest room */
#define LG_PUBLISH_QUEUE (4u << 20) /* fanout --rate: skip a tick while this is unwritten */
#define LG_MAX_IPS 64

typedef enum { SC_ECHO, SC_FANOUT, SC_IDLE, SC_CHURN } scenario_t;

static const char *const scenario_names[] = {"echo", "fanout", "idle", "churn"};

typedef struct {
    scenario_t scenario;
    const char *host, *path;
    int port, conns, inflight, seconds, setup, hold, procs, rooms, rate, broadcast;
    size_t size;
    long server_pid;
    struct sockaddr_in dest;
    struct sockaddr_in src[LG_MAX_IPS]; /* --source-ips, used round-robin */
    int nsrc;
} opts_t;

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

typedef enum {
    CL_IDLE = 0,   /* no handle: not started, or closed */
    CL_CONNECTING, /* TCP connect in progress */
    CL_HANDSHAKE,  /* upgrade request sent */
    CL_OPEN,       /* WebSocket open */
    CL_CLOSING,    /* a close frame went out; waiting for the server to end TCP */
    CL_ENDED,      /* uv_close called; back to CL_IDLE in its callback */
} cl_state_t;

typedef enum {
    END_FAILED, /* connect, handshake or protocol failure, or a timeout */
    END_SERVER, /* the server closed a working connection */
    END_DONE,   /* we closed it, and the closing handshake completed */
} end_t;

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uint32_t index;        /* in lg.clients; lg.first + index numbers it in the run */
    uint8_t state;         /* cl_state_t */
    uint8_t end;           /* end_t, once ended */
    uint8_t ready;         /* joined (echo: upgraded); churn: joined this cycle */
    uint8_t close_started; /* we started the closing handshake (not the server) */
    uint8_t close_received;
    uint8_t frag_op;       /* opcode of a fragmented message in progress, 0 if none */
    uint8_t got_broadcast; /* idle */
    uint8_t behind;        /* fanout drain: still missing messages below lg.acked */
    char accept[29];       /* the Sec-WebSocket-Accept the server must answer */
    buf_t in;              /* bytes not parsed yet: part of the head or of a frame */
    buf_t frag;            /* the fragments of a message so far */
    buf_t out;             /* frames to write at the next flush */

    /* fanout: which sequence numbers arrived. A publisher's messages must
     * arrive in order: next_seq is the one expected, gaps the ranges
     * [from, to) skipped and still missing (normally none). */
    uint32_t next_seq;
    uint32_t ngaps, gaps_cap;
    uint32_t (*gaps)[2];

    /* churn */
    uint64_t started_ns;  /* this cycle's start, also its message's stamp */
    uint64_t deadline_ms; /* loop time by which this cycle must be done */
    int64_t last_id;      /* id of our last message in our room, -1 before one */
} client_t;

typedef enum { PH_SETUP, PH_RUN, PH_DRAIN } phase_t;

/* What a worker process of idle tells the parent, at each milestone. */
enum { REPORT_SETUP = 1, REPORT_REACH, REPORT_FINAL };
typedef struct {
    int kind;
    int opened, joined, failed, closed, reached;
    uint64_t broadcast_ns; /* the broadcast's slowest delivery here */
    uint64_t notices;
} report_t;

/* The state of this process's run. */
typedef struct {
    opts_t o;
    uv_loop_t *loop;
    phase_t phase;
    client_t *clients;
    int n, first;      /* this process's clients and the run number of the first */
    int started;       /* setup: connects begun */
    int pending;       /* setup: begun, neither ready nor ended */
    int opened, ready; /* upgraded; ready (see client_t.ready) */
    int failed, closed;
    uint64_t setup_ns, started_ns, stopped_ns;
    double setup_seconds;
    uv_timer_t phase_timer; /* end of the current phase */
    uv_timer_t tick;        /* fanout --rate pacing; churn sweep */

    uint64_t hist[64 * 16]; /* log-linear latency buckets, ns */
    uint64_t samples;
    uint64_t count;   /* echo: round trips; fanout: deliveries; churn: cycles */
    uint64_t notices; /* fanout, idle: messages that are none of ours (join notices) */
    uint8_t *payload; /* echo: the message template */

    /* fanout */
    client_t *publisher, *last_joined;
    uint32_t sent, acked; /* acked: sequence numbers below it came back to the publisher */
    int behind;           /* drain: subscribers still missing some of them */
    uint64_t dup, out_of_order;

    /* idle worker */
    int report_fd;
    uv_poll_t cmd;
    int reached, reach_reported;
    uint64_t broadcast_ns;
} lg_t;

static lg_t lg;
static uint8_t g_rbuf[256 * 1024];

/* ---- small helpers ----------------------------------------------------- */

static uint64_t g_rng;

/* xorshift64: mask keys and handshake keys need unpredictable-enough bytes,
 * cheaply (RFC 6455 10.3 is about proxies we do not have here). */
static uint32_t rand32(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 32);
}

static void buf_reserve(buf_t *b, size_t more)
{
    if (b->len + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(1);
    }
    b->p = p;
    b->cap = cap;
}

static void buf_append(buf_t *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* Problems are tallied by kind and printed once, at the end: with
 * thousands of connections, one line per failure would drown the output. */
static struct {
    const char *what;
    int code; /* a negative libuv error, a close code, or 0 */
    int count;
} g_notes[32];

static void note(const char *what, int code)
{
    size_t i = 0;
    for (; i < sizeof g_notes / sizeof g_notes[0] && g_notes[i].what; i++)
        if (g_notes[i].what == what && g_notes[i].code == code)
            break;
    if (i == sizeof g_notes / sizeof g_notes[0])
        i--; /* out of room: lump the rest into the last entry */
    g_notes[i].what = what;
    g_notes[i].code = code;
    g_notes[i].count++;
}

static void print_notes(void)
{
    for (size_t i = 0; i < sizeof g_notes / sizeof g_notes[0] && g_notes[i].what; i++) {
        if (g_notes[i].code < 0)
            fprintf(stderr, "loadgen: %d x %s: %s\n", g_notes[i].count, g_notes[i].what,
                    uv_strerror(g_notes[i].code));
        else if (g_notes[i].code > 0)
            fprintf(stderr, "loadgen: %d x %s (%d)\n", g_notes[i].count, g_notes[i].what,
                    g_notes[i].code);
        else
            fprintf(stderr, "loadgen: %d x %s\n", g_notes[i].count, g_notes[i].what);
    }
}

/* Bucket of a latency: 16 linear sub-buckets per power of two. */
static unsigned bucket(uint64_t ns)
{
    if (ns < 16)
        return (unsigned)ns;
    unsigned lg2 = 63u - (unsigned)__builtin_clzll(ns);
    unsigned sub = (unsigned)(ns >> (lg2 - 4)) & 15;
    unsigned b = (lg2 - 3) * 16 + sub;
    return b < 64 * 16 ? b : 64 * 16 - 1;
}

static uint64_t bucket_value(unsigned b)
{
    if (b < 16)
        return b;
    unsigned lg2 = b / 16 + 3, sub = b % 16;
    return ((uint64_t)16 + sub) << (lg2 - 4);
}

static void record(uint64_t ns)
{
    lg.hist[bucket(ns)]++;
    lg.samples++;
}

/* The p-th latency percentile, in microseconds. */
static double percentile(double p)
{
    uint64_t want = (uint64_t)(p * (double)lg.samples), seen = 0;
    for (unsigned b = 0; b < 64 * 16; b++) {
        seen += lg.hist[b];
        if (seen > want)
            return (double)bucket_value(b) / 1000.0;
    }
    return 0;
}

static double seconds_since(uint64_t ns)
{
    return (double)(uv_hrtime() - ns) / 1e9;
}

static double per_second(uint64_t count, double secs)
{
    return secs > 0 ? (double)count / secs : 0;
}

/* ---- reading the server's JSON ------------------------------------------
 * Just enough to find top-level members without building a tree: the
 * server's field order is not relied on (a peer server may differ), and
 * nested objects (history's messages, data) are skipped whole. */

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p is on an opening quote: returns the position after the closing one, or
 * NULL when the string does not end before e. */
static const char *skip_string(const char *p, const char *e)
{
    const char *s = ++p;
    for (;;) {
        const char *q = memchr(p, '"', (size_t)(e - p));
        if (!q)
            return NULL;
        size_t bs = 0; /* an odd run of backslashes escapes the quote */
        while (q - bs > s && q[-1 - (ptrdiff_t)bs] == '\\')
            bs++;
        if (!(bs & 1))
            return q + 1;
        p = q + 1;
    }
}

/* Returns the end of the value starting at p: after a string, object or
 * array; at the ',' or '}' that ends a number or literal. */
static const char *skip_value(const char *p, const char *e)
{
    int depth = 0;
    while (p < e) {
        if (*p == '"') {
            if (!(p = skip_string(p, e)) || !depth)
                return p;
            continue;
        }
        if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (!depth)
                return p;
            if (!--depth)
                return p + 1;
        } else if (*p == ',' && !depth) {
            return p;
        }
        p++;
    }
    return NULL;
}

/* The raw text of the top-level member key of the object in p[0..n) — a
 * string without its quotes, still escaped — and its length, or NULL. */
static const char *json_member(const uint8_t *msg, size_t n, const char *key, size_t *len)
{
    const char *p = (const char *)msg, *e = p + n;
    size_t klen = strlen(key);
    p = skip_ws(p, e);
    if (p == e || *p++ != '{')
        return NULL;
    for (;;) {
        p = skip_ws(p, e);
        if (p == e || *p != '"')
            return NULL;
        const char *k = p + 1, *ke = skip_string(p, e);
        if (!ke)
            return NULL;
        p = skip_ws(ke, e);
        if (p == e || *p != ':')
            return NULL;
        const char *v = skip_ws(p + 1, e), *ve = skip_value(v, e);
        if (!ve)
            return NULL;
        if ((size_t)(ke - 1 - k) == klen && memcmp(k, key, klen) == 0) {
            if (*v == '"') {
                *len = (size_t)(ve - v) - 2;
                return v + 1;
            }
            while (ve > v && isspace((unsigned char)ve[-1]))
                ve--;
            *len = (size_t)(ve - v);
            return v;
        }
        p = skip_ws(ve, e);
        if (p == e || *p++ != ',')
            return NULL;
    }
}

/* Is the message's type t? Switchboard puts "type" first: that case costs
 * a compare, not a scan. */
static int is_type(const uint8_t *p, size_t n, const char *t)
{
    static const char lead[] = "{\"type\":\"";
    size_t tl = strlen(t), len;
    if (n > sizeof lead + tl && memcmp(p, lead, sizeof lead - 1) == 0)
        return memcmp(p + sizeof lead - 1, t, tl) == 0 && p[sizeof lead - 1 + tl] == '"';
    const char *v = json_member(p, n, "type", &len);
    return v && len == tl && memcmp(v, t, tl) == 0;
}

/* Reads a decimal number at *p (before e) and steps past it and one
 * following space. Returns 0 when there is no number there. */
static int parse_u64(const char **p, const char *e, uint64_t *v)
{
    const char *s = *p;
    *v = 0;
    while (s < e && *s >= '0' && *s <= '9')
        *v = *v * 10 + (uint64_t)(*s++ - '0');
    if (s == *p)
        return 0;
    *p = s < e && *s == ' ' ? s + 1 : s;
    return 1;
}

/* The numbers at the start of the content of a message ("N1 N2 ..."): how
 * many of want were there. */
static int content_numbers(const uint8_t *p, size_t n, uint64_t *v, int want)
{
    size_t len;
    const char *s = json_member(p, n, "content", &len);
    if (!s)
        return 0;
    const char *e = s + len;
    int got = 0;
    while (got < want && parse_u64(&s, e, &v[got]))
        got++;
    return got;
}

/* ---- connections --------------------------------------------------------- */

typedef struct {
    void (*open)(client_t *c); /* the handshake succeeded */
    void (*message)(client_t *c, int opcode, const uint8_t *p, size_t n);
    void (*ended)(client_t *c); /* the handle is closed; c->end says why */
} scenario_ops_t;

static const scenario_ops_t *ops;

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    (void)s;
    *b = uv_buf_init((char *)g_rbuf, sizeof g_rbuf);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows up as a read error */
    free(req);
}

static void write_bytes(client_t *c, const void *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)len)
        return;
    if (n < 0)
        n = 0;
    /* The rest goes through libuv, with its own copy. */
    uv_write_t *req = malloc(sizeof *req + len - (size_t)n);
    if (!req) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(1);
    }
    memcpy(req + 1, (const char *)data + n, len - (size_t)n);
    b = uv_buf_init((char *)(req + 1), (unsigned)(len - (size_t)n));
    if (uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_written))
        free(req);
}

/* Writes the frames gathered in c->out: one write per read callback or
 * timer tick, not one per frame. */
static void flush_out(client_t *c)
{
    if (c->out.len && (c->state == CL_OPEN || c->state == CL_CLOSING))
        write_bytes(c, c->out.p, c->out.len);
    c->out.len = 0;
}

/* Appends one frame to c->out, masked as a client's must be (RFC 6455 5.3)
 * with a fresh key: one copy and one sb__mask pass per frame. */
static void send_frame(client_t *c, int opcode, const void *payload, size_t len)
{
    uint32_t key = rand32();
    uint8_t mask[4];
    memcpy(mask, &key, 4);
    buf_reserve(&c->out, SB_WS_MAX_HEADER + len);
    uint8_t *f = c->out.p + c->out.len;
    size_t h = sb__frame_header_write(f, 1, 0, opcode, len, mask);
    memcpy(f + h, payload, len);
    sb__mask(f + h, len, mask, 0);
    c->out.len += h + len;
}

static void send_text(client_t *c, const char *s, int n)
{
    send_frame(c, SB_OP_TEXT, s, (size_t)n);
}

static void on_closed(uv_handle_t *h)
{
    client_t *c = h->data;
    c->state = CL_IDLE;
    ops->ended(c);
}

/* Ends c's connection. The scenario hears of it (ops->ended) from the
 * close callback, when the handle may be reused. */
static void client_end(client_t *c, end_t why)
{
    if (c->state == CL_IDLE || c->state == CL_ENDED)
        return;
    c->state = CL_ENDED;
    c->end = (uint8_t)why;
    c->out.len = 0;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Starts our side of the closing handshake: the server answers with its
 * close frame, then ends TCP (RFC 6455 7.1.1), and that EOF ends c. */
static void client_close(client_t *c)
{
    static const uint8_t normal[2] = {1000 >> 8, 1000 & 0xff};
    send_frame(c, SB_OP_CLOSE, normal, 2);
    c->close_started = 1;
    c->state = CL_CLOSING;
}

static void on_connect(uv_connect_t *req, int status)
{
    client_t *c = req->data;
    if (c->state != CL_CONNECTING)
        return; /* ended meanwhile (a timeout): libuv cancelled the connect */
    if (status < 0) {
        note("connect", status);
        client_end(c, END_FAILED);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);

    /* A random Sec-WebSocket-Key per connection, and the answer it needs. */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t k[18] = {0};
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = rand32();
        memcpy(k + i, &r, 4);
    }
    char key[25];
    for (int i = 0, j = 0; i < 18; i += 3) {
        uint32_t v = (uint32_t)k[i] << 16 | (uint32_t)k[i + 1] << 8 | k[i + 2];
        key[j++] = b64[v >> 18 & 63];
        key[j++] = b64[v >> 12 & 63];
        key[j++] = b64[v >> 6 & 63];
        key[j++] = b64[v & 63];
    }
    key[22] = key[23] = '='; /* 16 bytes: two characters of padding */
    key[24] = '\0';
    sb__ws_accept_key(key, 24, c->accept);

    char head[512];
    int n = snprintf(head, sizeof head,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     lg.o.path, lg.o.host, lg.o.port, key);
    c->state = CL_HANDSHAKE;
    write_bytes(c, head, (size_t)n);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* Opens a connection for c (from its source address, if any). Returns 0,
 * or a libuv error when no socket could be made (c stays CL_IDLE). */
static int client_start(client_t *c)
{
    const opts_t *o = &lg.o;
    c->in.len = c->out.len = c->frag.len = 0;
    c->frag_op = c->ready = c->close_started = c->close_received = 0;
    int r = uv_tcp_init_ex(lg.loop, &c->tcp, AF_INET);
    if (r) {
        note("socket", r);
        return r;
    }
    c->tcp.data = c;
    c->creq.data = c;
    c->state = CL_CONNECTING;
    if (o->nsrc) {
        /* Binding with port 0 would take a port for this address whatever
         * the destination; this way connect picks one free for its own
         * 4-tuple, so the address's ports last longer. */
        uv_os_fd_t fd;
        int one = 1;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        const struct sockaddr_in *src = &o->src[(uint32_t)(lg.first + (int)c->index) % o->nsrc];
        r = uv_tcp_bind(&c->tcp, (const struct sockaddr *)src, 0);
    }
    if (!r)
        r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&o->dest, on_connect);
    if (r) {
        note("connect", r);
        client_end(c, END_FAILED);
    }
    return 0;
}

/* Checks the server's answer to the upgrade, head[0..n) (through the blank
 * line): 101, and the Sec-WebSocket-Accept for our key. Returns NULL, or
 * what is wrong. */
static const char *handshake_check(const client_t *c, const uint8_t *head, size_t n)
{
    static const char name[] = "sec-websocket-accept:";
    const char *p = (const char *)head, *e = p + n;
    if (n < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0)
        return "handshake refused (no 101)";
    while ((p = memchr(p, '\n', (size_t)(e - p))) && ++p < e) {
        if ((size_t)(e - p) > sizeof name && strncasecmp(p, name, sizeof name - 1) == 0) {
            const char *v = skip_ws(p + sizeof name - 1, e);
            if (e - v >= 28 && memcmp(v, c->accept, 28) == 0)
                return NULL;
            break;
        }
    }
    return "handshake: Sec-WebSocket-Accept missing or not the one for our key";
}

/* A protocol violation by the server fails the connection. */
static void client_fail(client_t *c, const char *what)
{
    note(what, 0);
    client_end(c, END_FAILED);
}

static void on_frame(client_t *c, const sb__frame_t *f, const uint8_t *p)
{
    size_t len = (size_t)f->len;
    if (f->masked || f->rsv) {
        client_fail(c, "protocol: masked or RSV frame from the server");
        return;
    }
    if (f->opcode >= SB_OP_CLOSE && (!f->fin || len > SB_WS_MAX_CONTROL)) {
        client_fail(c, "protocol: fragmented or long control frame");
        return;
    }
    switch (f->opcode) {
    case SB_OP_TEXT:
    case SB_OP_BINARY:
        if (c->frag_op) {
            client_fail(c, "protocol: new message inside a fragmented one");
        } else if (f->fin) {
            ops->message(c, f->opcode, p, len);
        } else {
            c->frag_op = f->opcode;
            c->frag.len = 0;
            buf_append(&c->frag, p, len);
        }
        break;
    case SB_OP_CONTINUATION:
        if (!c->frag_op) {
            client_fail(c, "protocol: continuation with no message");
            break;
        }
        if (c->frag.len + len > LG_MAX_MESSAGE) {
            client_fail(c, "message over 16 MiB");
            break;
        }
        buf_append(&c->frag, p, len);
        if (f->fin) {
            int op = c->frag_op;
            c->frag_op = 0;
            ops->message(c, op, c->frag.p, c->frag.len);
        }
        break;
    case SB_OP_PING:
        send_frame(c, SB_OP_PONG, p, len);
        break;
    case SB_OP_PONG:
        break;
    case SB_OP_CLOSE:
        /* Answer a close we did not start with its code; either way the
         * server ends TCP next. */
        c->close_received = 1;
        if (!c->close_started) {
            note("closed by the server with a close frame", len >= 2 ? p[0] << 8 | p[1] : 1005);
            send_frame(c, SB_OP_CLOSE, p, len >= 2 ? 2 : 0);
            c->state = CL_CLOSING;
        }
        break;
    default:
        client_fail(c, "protocol: reserved opcode");
    }
}

/* The server ended TCP (or reset it). */
static void on_eof(client_t *c, int err)
{
    if (c->state == CL_HANDSHAKE) {
        note("handshake: connection closed", err);
        client_end(c, END_FAILED);
    } else if (c->close_started && c->close_received) {
        client_end(c, END_DONE);
    } else {
        if (!c->close_received)
            note("closed by the server without a close frame", err);
        client_end(c, END_SERVER);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    client_t *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        on_eof(c, (int)nread);
        return;
    }
    uint8_t *p = (uint8_t *)b->base;
    size_t n = (size_t)nread, off = 0;
    /* Work in place when nothing is pending; else on the pending bytes. */
    if (c->in.len) {
        buf_append(&c->in, p, n);
        p = c->in.p;
        n = c->in.len;
    }
    if (c->state == CL_HANDSHAKE) {
        const uint8_t *end = memmem(p, n, "\r\n\r\n", 4);
        if (!end && n > LG_MAX_HEAD) {
            client_fail(c, "handshake: answer head too long");
            return;
        }
        if (!end) {
            if (!c->in.len)
                buf_append(&c->in, p, n);
            return;
        }
        off = (size_t)(end - p) + 4;
        const char *wrong = handshake_check(c, p, off);
        if (wrong) {
            static int shown; /* the first answer says enough */
            const uint8_t *eol = memchr(p, '\r', off);
            if (!shown++)
                fprintf(stderr, "loadgen: the server answered: %.*s\n", (int)(eol - p), p);
            client_fail(c, wrong);
            return;
        }
        c->state = CL_OPEN;
        lg.opened++;
        ops->open(c);
    }
    while (c->state == CL_OPEN || c->state == CL_CLOSING) {
        sb__frame_t f;
        int h = sb__frame_header_parse(p + off, n - off, &f);
        if (h < 0) {
            client_fail(c, "protocol: bad frame length");
            break;
        }
        if (h > 0 && f.len > LG_MAX_MESSAGE) {
            client_fail(c, "message over 16 MiB");
            break;
        }
        if (h == 0 || n - off - (size_t)h < f.len)
            break;
        on_frame(c, &f, p + off + h);
        off += (size_t)h + (size_t)f.len;
    }
    if (c->state == CL_ENDED) {
        c->in.len = 0;
        return;
    }
    size_t rest = n - off;
    if (c->in.len) {
        memmove(c->in.p, c->in.p + off, rest);
        c->in.len = rest;
    } else if (rest) {
        buf_append(&c->in, p + off, rest);
    }
    flush_out(c);
}

/* ---- setup: connect (and join) every client, LG_PIPELINE at a time ------ */

static void (*setup_done)(void); /* the scenario's next phase */

static void setup_end(void)
{
    uv_timer_stop(&lg.phase_timer);
    lg.setup_seconds = seconds_since(lg.setup_ns);
    lg.phase = PH_RUN;
    setup_done();
}

static void setup_more(void)
{
    while (lg.phase == PH_SETUP && lg.started < lg.n && lg.pending < LG_PIPELINE) {
        client_t *c = &lg.clients[lg.started++];
        if (client_start(c) == 0)
            lg.pending++;
        else
            lg.failed++;
    }
    if (lg.phase == PH_SETUP && lg.ready + lg.failed == lg.n)
        setup_end();
}

static void client_ready(client_t *c)
{
    c->ready = 1;
    lg.ready++;
    lg.pending--;
    setup_more();
}

/* Common part of ops->ended for echo, fanout and idle: a client that ends
 * before it is ready has failed; returns 1 when that was the case. */
static int setup_lost(client_t *c)
{
    if (c->ready)
        return 0;
    lg.failed++;
    if (lg.phase == PH_SETUP) {
        lg.pending--;
        setup_more();
    }
    return 1;
}

/* Setup took longer than --setup: carry on with the clients that made it. */
static void on_setup_timeout(uv_timer_t *t)
{
    (void)t;
    note("not ready when --setup ran out", 0);
    lg.failed += lg.n - lg.started; /* never begun */
    lg.started = lg.n;
    for (int i = 0; i < lg.n; i++)
        if (!lg.clients[i].ready)
            client_end(&lg.clients[i], END_FAILED); /* counted by setup_lost */
    setup_end();
}

static void setup_start(void (*done)(void))
{
    setup_done = done;
    lg.setup_ns = uv_hrtime();
    lg.phase = PH_SETUP;
    uv_timer_start(&lg.phase_timer, on_setup_timeout, (uint64_t)lg.o.setup * 1000, 0);
    setup_more();
}

/* Prints the summary line and ends the process: exit 1 when no connection
 * ever worked, so that a script notices. */
static void finish(const char *line)
{
    fputs(line, stdout);
    fflush(stdout);
    print_notes();
    exit(lg.ready || lg.count ? 0 : 1);
}

/* ---- echo ---------------------------------------------------------------- */

static void echo_send(client_t *c)
{
    uint64_t now = uv_hrtime();
    memcpy(lg.payload, &now, 8);
    send_frame(c, SB_OP_BINARY, lg.payload, lg.o.size);
}

static void echo_open(client_t *c)
{
    client_ready(c);
}

static void echo_message(client_t *c, int opcode, const uint8_t *p, size_t n)
{
    (void)opcode;
    if (n < 8 || lg.phase != PH_RUN)
        return;
    uint64_t sent;
    memcpy(&sent, p, 8);
    record(uv_hrtime() - sent);
    lg.count++;
    echo_send(c);
}

static void echo_ended(client_t *c)
{
    if (!setup_lost(c))
        lg.failed++; /* a working connection lost */
}

static void echo_done(uv_timer_t *t)
{
    (void)t;
    char line[512];
    double secs = seconds_since(lg.started_ns);
    snprintf(line, sizeof line,
             "echo conns=%d inflight=%d size=%zu seconds=%.2f roundtrips=%llu rate=%.0f/s "
             "p50=%.1fus p99=%.1fus failed=%d setup_seconds=%.2f\n",
             lg.o.conns, lg.o.inflight, lg.o.size, secs, (unsigned long long)lg.count,
             per_second(lg.count, secs), percentile(0.50), percentile(0.99), lg.failed,
             lg.setup_seconds);
    finish(line);
}

/* Every connection starts its window at once, when all are open. */
static void echo_run(void)
{
    lg.started_ns = uv_hrtime();
    if (!lg.ready)
        echo_done(&lg.phase_timer); /* nothing to measure */
    uv_timer_start(&lg.phase_timer, echo_done, (uint64_t)lg.o.seconds * 1000, 0);
    for (int i = 0; i < lg.n; i++) {
        client_t *c = &lg.clients[i];
        if (c->state != CL_OPEN)
            continue;
        for (int j = 0; j < lg.o.inflight; j++)
            echo_send(c);
        flush_out(c);
    }
}

static const scenario_ops_t echo_ops = {echo_open, echo_message, echo_ended};

/* ---- fanout -------------------------------------------------------------- */

/* The first sequence number c has not received: everything below arrived. */
static uint32_t contiguous(const client_t *c)
{
    return c->ngaps ? c->gaps[0][0] : c->next_seq;
}

/* How many of the sequence numbers below upto c never received. */
static uint64_t missing(const client_t *c, uint32_t upto)
{
    uint64_t m = upto > c->next_seq ? upto - c->next_seq : 0;
    for (uint32_t i = 0; i < c->ngaps && c->gaps[i][0] < upto; i++)
        m += (c->gaps[i][1] < upto ? c->gaps[i][1] : upto) - c->gaps[i][0];
    return m;
}

/* Inserts the gap [from, to) at position i (the list stays sorted). */
static void gap_insert(client_t *c, uint32_t i, uint32_t from, uint32_t to)
{
    if (c->ngaps == c->gaps_cap) {
        c->gaps_cap = c->gaps_cap ? c->gaps_cap * 2 : 4;
        c->gaps = realloc(c->gaps, c->gaps_cap * sizeof *c->gaps);
        if (!c->gaps) {
            fprintf(stderr, "loadgen: out of memory\n");
            exit(1);
        }
    }
    memmove(c->gaps + i + 1, c->gaps + i, (c->ngaps - i) * sizeof *c->gaps);
    c->gaps[i][0] = from;
    c->gaps[i][1] = to;
    c->ngaps++;
}

/* seq arrived late: takes it out of its gap. Returns 0 when it was in none
 * (it had arrived before: a duplicate). */
static int gap_fill(client_t *c, uint32_t seq)
{
    for (uint32_t i = 0; i < c->ngaps; i++) {
        uint32_t *g = c->gaps[i];
        if (seq < g[0] || seq >= g[1])
            continue;
        if (seq == g[0]) {
            g[0]++;
        } else if (seq == g[1] - 1) {
            g[1]--;
        } else {
            uint32_t to = g[1];
            g[1] = seq;
            gap_insert(c, i + 1, seq + 1, to);
            return 1;
        }
        if (g[0] == g[1]) /* filled: drop it */
            memmove(c->gaps + i, c->gaps + i + 1, (--c->ngaps - i) * sizeof *c->gaps);
        return 1;
    }
    return 0;
}

static void track(client_t *c, uint32_t seq)
{
    if (seq == c->next_seq) {
        c->next_seq++;
    } else if (seq > c->next_seq) {
        gap_insert(c, c->ngaps, c->next_seq, seq);
        c->next_seq = seq + 1;
    } else if (gap_fill(c, seq)) {
        lg.out_of_order++;
    } else {
        lg.dup++;
    }
}

static void fanout_print(void)
{
    uint64_t lost = 0, closed_lost = 0;
    for (int i = 0; i < lg.n; i++) {
        client_t *c = &lg.clients[i];
        if (!c->ready || c == lg.publisher)
            continue;
        if (c->state == CL_OPEN)
            lost += missing(c, lg.acked);
        else
            closed_lost += missing(c, lg.acked);
    }
    double secs = (double)(lg.stopped_ns - lg.started_ns) / 1e9;
    char line[1024];
    snprintf(line, sizeof line,
             "fanout conns=%d inflight=%d size=%zu seconds=%.2f deliveries=%llu rate=%.0f/s "
             "p50=%.1fus p99=%.1fus failed=%d sent=%u acked=%u lost=%llu dup=%llu "
             "out_of_order=%llu closed=%d closed_lost=%llu publish_rate=%.0f/s "
             "target_rate=%d/s drain_ms=%.0f setup_seconds=%.2f notices=%llu\n",
             lg.o.conns, lg.o.rate ? 0 : lg.o.inflight, lg.o.size, secs,
             (unsigned long long)lg.count, per_second(lg.count, secs), percentile(0.50),
             percentile(0.99), lg.failed, lg.sent, lg.acked, (unsigned long long)lost,
             (unsigned long long)lg.dup, (unsigned long long)lg.out_of_order, lg.closed,
             (unsigned long long)closed_lost, per_second(lg.sent, secs), lg.o.rate,
             (double)(uv_hrtime() - lg.stopped_ns) / 1e6, lg.setup_seconds,
             (unsigned long long)lg.notices);
    finish(line);
}

static void on_drain_timeout(uv_timer_t *t)
{
    (void)t;
    note("subscribers still behind when the drain ran out", 0);
    fanout_print();
}

/* During the drain: one subscriber fewer to wait for. */
static void caught_up(client_t *c)
{
    c->behind = 0;
    if (--lg.behind == 0)
        fanout_print();
}

/* A room message whose content is the send time and the sequence number,
 * padded so that the JSON is --size bytes. */
static void fanout_publish(void)
{
    char msg[LG_MAX_CONTENT + 128];
    int n =
        snprintf(msg, sizeof msg, "{\"type\":\"message\",\"room\":\"bench\",\"content\":\"%llu %u ",
                 (unsigned long long)uv_hrtime(), lg.sent++);
    size_t pad = lg.o.size > (size_t)n + 2 ? lg.o.size - (size_t)n - 2 : 0;
    memset(msg + n, 'x', pad);
    memcpy(msg + n + pad, "\"}", 2);
    send_text(lg.publisher, msg, n + (int)pad + 2);
}

static void fanout_open(client_t *c)
{
    static const char join[] = "{\"type\":\"join\",\"room\":\"bench\"}";
    send_text(c, join, sizeof join - 1);
}

static void fanout_message(client_t *c, int opcode, const uint8_t *p, size_t n)
{
    if (opcode != SB_OP_TEXT)
        return;
    if (!c->ready && is_type(p, n, "history")) {
        lg.last_joined = c;
        client_ready(c);
        return;
    }
    if (!c->ready && is_type(p, n, "error")) {
        client_fail(c, "join: error from the server");
        return;
    }
    uint64_t v[2];
    if (lg.phase == PH_SETUP || !is_type(p, n, "message") || content_numbers(p, n, v, 2) != 2) {
        lg.notices++; /* welcome, join notices, anything not ours */
        return;
    }
    track(c, (uint32_t)v[1]);
    if (lg.phase == PH_RUN) {
        record(uv_hrtime() - v[0]);
        lg.count++;
        if (c == lg.publisher && !lg.o.rate)
            fanout_publish(); /* keep the window full */
    } else if (c->behind && contiguous(c) >= lg.acked) {
        caught_up(c);
    }
}

static void fanout_ended(client_t *c)
{
    if (setup_lost(c))
        return;
    if (c->end == END_SERVER)
        lg.closed++; /* a slow consumer, say: its losses are counted apart */
    else
        lg.failed++;
    if (c == lg.publisher) {
        note("the publisher's connection ended", 0);
        uv_timer_stop(&lg.tick);
    } else if (c->behind) {
        caught_up(c); /* nothing more to wait for from it */
    }
}

/* --seconds are over: stop publishing, then wait for what the publisher got
 * back (so the server had sent it to everyone) to reach every subscriber. */
static void fanout_stop(uv_timer_t *t)
{
    (void)t;
    lg.stopped_ns = uv_hrtime();
    lg.phase = PH_DRAIN;
    uv_timer_stop(&lg.tick);
    lg.acked = contiguous(lg.publisher);
    for (int i = 0; i < lg.n; i++) {
        client_t *c = &lg.clients[i];
        if (c->ready && c != lg.publisher && c->state == CL_OPEN && contiguous(c) < lg.acked) {
            c->behind = 1;
            lg.behind++;
        }
    }
    if (!lg.behind)
        fanout_print();
    uv_timer_start(&lg.phase_timer, on_drain_timeout, LG_DRAIN_MS, 0);
}

/* --rate: publish what is due by now, unless the publisher's socket is
 * backed up (then the achieved publish_rate falls short of the target). */
static void fanout_pace(uv_timer_t *t)
{
    (void)t;
    uint64_t due = (uint64_t)(seconds_since(lg.started_ns) * lg.o.rate);
    if (uv_stream_get_write_queue_size((uv_stream_t *)&lg.publisher->tcp) > LG_PUBLISH_QUEUE)
        return;
    while (lg.sent < due)
        fanout_publish();
    flush_out(lg.publisher);
}

/* Everyone has joined: the last to join publishes. Being last in the room,
 * its own copy comes back after every subscriber's was queued, so the
 * window bounds what is in flight to each of them. */
static void fanout_run(void)
{
    if (!lg.last_joined) {
        lg.started_ns = lg.stopped_ns = uv_hrtime();
        fanout_print();
        return;
    }
    lg.publisher = lg.last_joined;
    lg.started_ns = uv_hrtime();
    uv_timer_start(&lg.phase_timer, fanout_stop, (uint64_t)lg.o.seconds * 1000, 0);
    if (lg.o.rate) {
        uv_timer_start(&lg.tick, fanout_pace, 1, 1);
        return;
    }
    for (int i = 0; i < lg.o.inflight; i++)
        fanout_publish();
    flush_out(lg.publisher);
}

static const scenario_ops_t fanout_ops = {fanout_open, fanout_message, fanout_ended};

/* ---- idle: a worker process ---------------------------------------------- */

static void idle_report(int kind)
{
    report_t r = {kind,      lg.opened,  lg.ready,        lg.failed,
                  lg.closed, lg.reached, lg.broadcast_ns, lg.notices};
    /* Smaller than PIPE_BUF: one write, never interleaved. */
    if (write(lg.report_fd, &r, sizeof r) != (ssize_t)sizeof r)
        exit(1); /* the parent is gone */
}

/* Reports reach once every open connection here has the broadcast. */
static void idle_check_reach(void)
{
    if (!lg.reach_reported && lg.reached && lg.reached >= lg.ready - lg.closed) {
        lg.reach_reported = 1;
        idle_report(REPORT_REACH);
    }
}

static void idle_open(client_t *c)
{
    char join[96];
    int room = (lg.first + (int)c->index) % lg.o.rooms;
    int n = lg.o.rooms == 1
                ? snprintf(join, sizeof join, "{\"type\":\"join\",\"room\":\"idle\"}")
                : snprintf(join, sizeof join, "{\"type\":\"join\",\"room\":\"idle.%d\"}", room);
    send_text(c, join, n);
}

static void idle_message(client_t *c, int opcode, const uint8_t *p, size_t n)
{
    if (opcode != SB_OP_TEXT)
        return;
    if (!c->ready && is_type(p, n, "history")) {
        client_ready(c);
        return;
    }
    if (!c->ready && is_type(p, n, "error")) {
        client_fail(c, "join: error from the server");
        return;
    }
    /* Everything else (the O(n) join notices each member gets) is dropped
     * after a look at its type. */
    uint64_t sent;
    if (c->ready && !c->got_broadcast && is_type(p, n, "broadcast") &&
        content_numbers(p, n, &sent, 1)) {
        uint64_t took = uv_hrtime() - sent;
        c->got_broadcast = 1;
        lg.reached++;
        if (took > lg.broadcast_ns)
            lg.broadcast_ns = took;
        idle_check_reach();
    } else {
        lg.notices++;
    }
}

static void idle_ended(client_t *c)
{
    if (setup_lost(c))
        return;
    lg.closed++; /* the server dropped a joined connection */
    idle_check_reach();
}

static void idle_joined(void)
{
    idle_report(REPORT_SETUP);
}

/* The parent's commands: 'B' send the broadcast, 'R' report reach now,
 * 'Q' report and quit (the kernel closes the sockets). */
static void on_command(uv_poll_t *h, int status, int events)
{
    (void)events;
    char cmd = 'Q';
    uv_os_fd_t fd;
    if (status < 0 || uv_fileno((uv_handle_t *)h, &fd) || read(fd, &cmd, 1) != 1)
        cmd = 'Q';
    if (cmd == 'B') {
        for (int i = 0; i < lg.n; i++) {
            client_t *c = &lg.clients[i];
            if (c->ready && c->state == CL_OPEN) {
                char msg[96];
                int n = snprintf(msg, sizeof msg,
                                 "{\"type\":\"broadcast\",\"content\":\"%llu loadgen idle\"}",
                                 (unsigned long long)uv_hrtime());
                send_text(c, msg, n);
                flush_out(c);
                return;
            }
        }
    } else if (cmd == 'R') {
        if (!lg.reach_reported) {
            lg.reach_reported = 1;
            idle_report(REPORT_REACH);
        }
    } else {
        idle_report(REPORT_FINAL);
        print_notes();
        _exit(0);
    }
}

static const scenario_ops_t idle_ops = {idle_open, idle_message, idle_ended};

/* ---- churn --------------------------------------------------------------- */

static void churn_open(client_t *c)
{
    char join[128];
    int room = (int)c->index % lg.o.rooms, n;
    /* After the first cycle, join the way a reconnecting client does: with
     * the last id seen, so the history answer holds only what was missed,
     * not the room's last 50 messages (whose size would depend on earlier
     * runs against the same server). */
    if (c->last_id >= 0)
        n = snprintf(join, sizeof join, "{\"type\":\"join\",\"room\":\"churn.%d\",\"since\":%lld}",
                     room, (long long)c->last_id);
    else
        n = snprintf(join, sizeof join, "{\"type\":\"join\",\"room\":\"churn.%d\"}", room);
    send_text(c, join, n);
}

static void churn_message(client_t *c, int opcode, const uint8_t *p, size_t n)
{
    if (opcode != SB_OP_TEXT || c->state != CL_OPEN)
        return;
    if (!c->ready) {
        if (is_type(p, n, "history")) {
            char msg[128];
            int len =
                snprintf(msg, sizeof msg,
                         "{\"type\":\"message\",\"room\":\"churn.%d\",\"content\":\"%llu %u\"}",
                         (int)c->index % lg.o.rooms, (unsigned long long)c->started_ns, c->index);
            c->ready = 1;
            send_text(c, msg, len);
        } else if (is_type(p, n, "error")) {
            client_fail(c, "join: error from the server");
        }
        return;
    }
    uint64_t v[2];
    size_t len;
    if (is_type(p, n, "error")) {
        client_fail(c, "message: error from the server");
    } else if (is_type(p, n, "message") && content_numbers(p, n, v, 2) == 2 &&
               v[0] == c->started_ns && v[1] == c->index) {
        const char *id = json_member(p, n, "id", &len);
        c->last_id = id ? strtoll(id, NULL, 10) : -1;
        client_close(c); /* our own copy is back: this cycle's last step */
    }
}

static void churn_ended(client_t *c)
{
    if (lg.phase != PH_RUN)
        return;
    if (c->end != END_DONE) {
        /* Failed: the sweep starts it again, which is also a back-off. */
        lg.failed++;
        if (c->end == END_SERVER)
            note("churn: the server closed a cycle before its end", 0);
        return;
    }
    record(uv_hrtime() - c->started_ns);
    lg.count++;
    c->started_ns = uv_hrtime();
    c->deadline_ms = uv_now(lg.loop) + LG_CYCLE_MS;
    if (client_start(c))
        lg.failed++;
}

static void churn_done(uv_timer_t *t)
{
    (void)t;
    lg.phase = PH_DRAIN; /* cycles still running are not counted */
    double secs = seconds_since(lg.started_ns);
    char line[512];
    snprintf(line, sizeof line,
             "churn conns=%d seconds=%.2f cycles=%llu rate=%.0f/s p50=%.1fus p99=%.1fus "
             "failed=%d rooms=%d\n",
             lg.o.conns, secs, (unsigned long long)lg.count, per_second(lg.count, secs),
             percentile(0.50), percentile(0.99), lg.failed, lg.o.rooms);
    finish(line);
}

/* One coarse sweep for every worker (no timer per connection): fails cycles
 * past their deadline, restarts workers whose last cycle failed. */
static void churn_sweep(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(lg.loop);
    for (int i = 0; i < lg.n; i++) {
        client_t *c = &lg.clients[i];
        if (c->state == CL_IDLE) {
            c->started_ns = uv_hrtime();
            c->deadline_ms = now + LG_CYCLE_MS;
            if (client_start(c))
                lg.failed++;
        } else if (c->state != CL_ENDED && now > c->deadline_ms) {
            note("churn: cycle timed out", 0);
            client_end(c, END_FAILED);
        }
    }
}

static void churn_run(void)
{
    lg.phase = PH_RUN;
    lg.started_ns = uv_hrtime();
    uv_timer_start(&lg.phase_timer, churn_done, (uint64_t)lg.o.seconds * 1000, 0);
    uv_timer_start(&lg.tick, churn_sweep, LG_SWEEP_MS, LG_SWEEP_MS);
    for (int i = 0; i < lg.n; i++)
        lg.clients[i].last_id = -1;
    churn_sweep(&lg.tick); /* starts them all */
}

static const scenario_ops_t churn_ops = {churn_open, churn_message, churn_ended};

/* ---- running a process's share ------------------------------------------- */

/* Prepares this process's n clients, numbered from first in the run. */
static void clients_init(int first, int n)
{
    lg.loop = uv_default_loop();
    lg.first = first;
    lg.n = n;
    lg.clients = calloc((size_t)(n ? n : 1), sizeof *lg.clients);
    if (!lg.clients) {
        fprintf(stderr, "loadgen: out of memory for %d clients\n", n);
        exit(1);
    }
    for (int i = 0; i < n; i++)
        lg.clients[i].index = (uint32_t)i;
    uv_timer_init(lg.loop, &lg.phase_timer);
    uv_timer_init(lg.loop, &lg.tick);
    g_rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15u;
}

static int run_echo(void)
{
    ops = &echo_ops;
    clients_init(0, lg.o.conns);
    lg.payload = malloc(lg.o.size);
    if (!lg.payload)
        return 1;
    memset(lg.payload, 'x', lg.o.size);
    setup_start(echo_run);
    return uv_run(lg.loop, UV_RUN_DEFAULT);
}

static int run_fanout(void)
{
    ops = &fanout_ops;
    clients_init(0, lg.o.conns);
    setup_start(fanout_run);
    return uv_run(lg.loop, UV_RUN_DEFAULT);
}

static int run_churn(void)
{
    ops = &churn_ops;
    clients_init(0, lg.o.conns);
    churn_run();
    return uv_run(lg.loop, UV_RUN_DEFAULT);
}

/* An idle worker: sets up its share, reports, then obeys the parent. */
static void idle_worker(int first, int n, int cmd_fd, int report_fd)
{
    ops = &idle_ops;
    clients_init(first, n);
    lg.report_fd = report_fd;
    uv_poll_init(lg.loop, &lg.cmd, cmd_fd);
    uv_poll_start(&lg.cmd, UV_READABLE, on_command);
    setup_start(idle_joined);
    uv_run(lg.loop, UV_RUN_DEFAULT);
    _exit(0);
}

/* ---- idle: the parent ---------------------------------------------------- */

typedef struct {
    pid_t pid;
    int cmd_fd, report_fd;
    int dead;
    report_t last; /* its latest report */
} worker_t;

/* The server's anonymous resident memory in bytes (RssAnon: heap, stacks,
 * what the server itself allocated; not the pages of its binary and shared
 * libraries, which VmRSS also counts), or 0 if it cannot be read. */
static uint64_t server_rss(long pid)
{
    char path[64], line[256];
    uint64_t kb = 0;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %llu kB", (unsigned long long *)&kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* Reads reports until every live worker has sent one of kind, or the
 * deadline (loop time in ms) passes. A worker whose pipe ends is dead. */
static void wait_reports(worker_t *w, int nw, int kind, uint64_t deadline)
{
    struct pollfd pfd[nw];
    for (;;) {
        int np = 0;
        for (int i = 0; i < nw; i++)
            if (!w[i].dead && w[i].last.kind < kind)
                pfd[np++] = (struct pollfd){.fd = w[i].report_fd, .events = POLLIN};
        uint64_t now = now_ms();
        if (!np || now >= deadline)
            return;
        if (poll(pfd, (nfds_t)np, (int)(deadline - now)) <= 0)
            continue;
        for (int j = 0; j < np; j++) {
            if (!pfd[j].revents)
                continue;
            worker_t *x = w;
            while (x->report_fd != pfd[j].fd)
                x++;
            report_t r;
            if (read(x->report_fd, &r, sizeof r) == (ssize_t)sizeof r)
                x->last = r;
            else
                x->dead = 1;
        }
    }
}

static void command(worker_t *w, char cmd)
{
    if (!w->dead && write(w->cmd_fd, &cmd, 1) != 1)
        w->dead = 1;
}

static int run_idle(void)
{
    const opts_t *o = &lg.o;
    int nw = o->procs;
    worker_t w[nw];
    uint64_t rss_before = o->server_pid ? server_rss(o->server_pid) : 0;
    uint64_t t0 = uv_hrtime();
    fflush(NULL); /* nothing buffered may be written twice */
    for (int i = 0, first = 0; i < nw; i++) {
        int share = o->conns / nw + (i < o->conns % nw), cmd[2], rep[2];
        if (pipe(cmd) || pipe(rep)) {
            perror("loadgen: pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("loadgen: fork");
            return 1;
        }
        if (pid == 0) {
            for (int j = 0; j < i; j++) { /* the earlier workers' pipes */
                close(w[j].cmd_fd);
                close(w[j].report_fd);
            }
            close(cmd[1]);
            close(rep[0]);
            idle_worker(first, share, cmd[0], rep[1]);
        }
        close(cmd[0]);
        close(rep[1]);
        w[i] = (worker_t){.pid = pid, .cmd_fd = cmd[1], .report_fd = rep[0]};
        first += share;
    }

    /* Each worker bounds its own setup by --setup; the margin covers them
     * being scheduled on one core. */
    wait_reports(w, nw, REPORT_SETUP, now_ms() + (uint64_t)o->setup * 1000 + 10000);
    double setup_s = seconds_since(t0);
    uint64_t joined_at = now_ms();
    sleep_ms(LG_SETTLE_MS);
    uint64_t rss_after = o->server_pid ? server_rss(o->server_pid) : 0;

    if (o->broadcast) {
        int sender = 0;
        while (sender < nw - 1 && (w[sender].dead || !w[sender].last.joined))
            sender++;
        command(&w[sender], 'B');
        wait_reports(w, nw, REPORT_REACH, now_ms() + LG_REACH_MS);
        for (int i = 0; i < nw; i++)
            if (w[i].last.kind < REPORT_REACH)
                command(&w[i], 'R');
        wait_reports(w, nw, REPORT_REACH, now_ms() + 1000);
    }
    uint64_t hold_end = joined_at + (uint64_t)o->hold * 1000;
    if (now_ms() < hold_end)
        sleep_ms(hold_end - now_ms());
    for (int i = 0; i < nw; i++)
        command(&w[i], 'Q');
    wait_reports(w, nw, REPORT_FINAL, now_ms() + 5000);

    report_t sum = {0};
    for (int i = 0; i < nw; i++) {
        if (w[i].last.kind < REPORT_FINAL)
            kill(w[i].pid, SIGKILL); /* stuck: its figures are the last it sent */
        waitpid(w[i].pid, NULL, 0);
        if (!w[i].last.kind)
            note("a worker process reported nothing", 0);
        int share = o->conns / nw + (i < o->conns % nw);
        sum.opened += w[i].last.opened;
        sum.joined += w[i].last.joined;
        sum.failed += w[i].last.kind ? w[i].last.failed : share;
        sum.closed += w[i].last.closed;
        sum.reached += w[i].last.reached;
        sum.notices += w[i].last.notices;
        if (w[i].last.broadcast_ns > sum.broadcast_ns)
            sum.broadcast_ns = w[i].last.broadcast_ns;
    }

    char line[1024];
    int n = snprintf(line, sizeof line,
                     "idle conns=%d procs=%d rooms=%d opened=%d joined=%d failed=%d closed=%d "
                     "setup_seconds=%.2f notices=%llu",
                     o->conns, nw, o->rooms, sum.opened, sum.joined, sum.failed, sum.closed,
                     setup_s, (unsigned long long)sum.notices);
    if (o->server_pid) {
        double per = sum.joined ? ((double)rss_after - (double)rss_before) / sum.joined : 0;
        if (rss_after < rss_before)
            note("the server's RSS shrank while joining (memory freed from earlier load): "
                 "measure on a freshly started server",
                 0);
        n += snprintf(line + n, sizeof line - (size_t)n,
                      " rss_before=%llu rss_after=%llu rss_per_conn=%.0f",
                      (unsigned long long)rss_before, (unsigned long long)rss_after, per);
    }
    if (o->broadcast)
        n += snprintf(line + n, sizeof line - (size_t)n, " reached=%d broadcast_ms=%.1f",
                      sum.reached, (double)sum.broadcast_ns / 1e6);
    snprintf(line + n, sizeof line - (size_t)n, "\n");
    lg.ready = sum.joined;
    finish(line);
    return 0;
}

/* ---- command line -------------------------------------------------------- */

static const char usage_text[] =
    "usage: loadgen SCENARIO [OPTIONS]\n"
    "\n"
    "A WebSocket load generator for loopback benchmarks. Prints one line,\n"
    "\"SCENARIO key=value ...\", and ends in bounded time.\n"
    "\n"
    "Scenarios:\n"
    "  echo    C connections to /echo, each keeping --inflight binary messages of\n"
    "          --size bytes in flight; round trips and their latency\n"
    "  fanout  C members of room \"bench\" at /ws; the last to join publishes\n"
    "          numbered messages; deliveries, latency, loss, duplicates, order\n"
    "  idle    C connections join rooms at /ws and hold; joined count, server RSS\n"
    "          per connection, and how fast one broadcast reaches them all\n"
    "  churn   C workers, each over and over: connect, join a room, publish one\n"
    "          message, read it back, close (close frame, wait for the server's)\n"
    "\n"
    "Options for every scenario:\n"
    "  --host ADDR        server address, in 127.0.0.0/8 (default 127.0.0.1)\n"
    "  --port N           server port (default 8080)\n"
    "  --path PATH        WebSocket path (default /echo for echo, else /ws)\n"
    "  --conns C          connections (default: echo 100, fanout 1000, idle 1000,\n"
    "                     churn 100)\n"
    "  --source-ips LIST  comma-separated 127.x.y.z addresses to connect from,\n"
    "                     round-robin (more ephemeral ports)\n"
    "Options by scenario:\n"
    "  --setup S          echo, fanout, idle: seconds allowed to connect and join\n"
    "                     (default 60); the run goes on with those that made it\n"
    "  --seconds T        echo, fanout, churn: seconds measured (default 5)\n"
    "  --inflight P       echo: messages in flight per connection (default 16);\n"
    "                     fanout: messages the publisher keeps in flight (8;\n"
    "                     0: join and hold, publishing nothing)\n"
    "  --size S           echo: bytes per message (default 64, at least 8);\n"
    "                     fanout: bytes of each published JSON message (default\n"
    "                     64; at most 4000)\n"
    "  --rate N           fanout: publish N messages a second instead of a window\n"
    "  --rooms K          idle: rooms to spread over (default: at most 1000 members\n"
    "                     each); churn: rooms the workers join (default: one each)\n"
    "  --hold S           idle: seconds to hold the connections once joined\n"
    "                     (default 5)\n"
    "  --procs N          idle: worker processes sharing the connections (default 1)\n"
    "  --server-pid PID   idle: report the server's RSS (RssAnon) before and after\n"
    "  --broadcast        idle: once joined, send one broadcast and time its reach\n"
    "  -h, --help         show this help\n"
    "\n"
    "Output keys:\n"
    "  echo    conns inflight size seconds roundtrips rate p50 p99 failed\n"
    "          setup_seconds\n"
    "  fanout  conns inflight size seconds deliveries rate p50 p99 failed sent acked\n"
    "          lost dup out_of_order closed closed_lost publish_rate target_rate\n"
    "          drain_ms setup_seconds notices\n"
    "  idle    conns procs rooms opened joined failed closed setup_seconds notices\n"
    "          [rss_before rss_after rss_per_conn] [reached broadcast_ms]\n"
    "  churn   conns seconds cycles rate p50 p99 failed rooms\n"
    "fanout: acked = messages the publisher got back before the end; lost = of\n"
    "those, the ones a connected subscriber never got (after up to 5 s of drain);\n"
    "closed = subscribers the server closed, closed_lost = what they missed.\n"
    "notices: messages received that are none of the scenario's own (welcome,\n"
    "user_joined, presence...).\n";

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nRun 'loadgen --help' for the scenarios and their options.\n");
    va_end(ap);
    exit(2);
}

static int int_arg(const char *name, const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        usage_error("--%s takes a whole number from %ld to %ld, not '%s'", name, min, max, s);
    return (int)v;
}

/* A loopback IPv4 address: nothing here may leave the machine. */
static void loopback_arg(const char *name, const char *s, int port, struct sockaddr_in *out)
{
    if (uv_ip4_addr(s, port, out) || (ntohl(out->sin_addr.s_addr) >> 24) != 127)
        usage_error("--%s takes IPv4 addresses in 127.0.0.0/8, not '%s'", name, s);
}

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_PATH,
    OPT_CONNS,
    OPT_SOURCE_IPS,
    OPT_SETUP,
    OPT_SECONDS,
    OPT_INFLIGHT,
    OPT_SIZE,
    OPT_RATE,
    OPT_ROOMS,
    OPT_HOLD,
    OPT_PROCS,
    OPT_SERVER_PID,
    OPT_BROADCAST,
};

#define ALL ((1u << SC_ECHO) | (1u << SC_FANOUT) | (1u << SC_IDLE) | (1u << SC_CHURN))
#define ONLY(s) (1u << (s))

/* Which scenarios take each option. */
static const unsigned option_scenarios[] = {
    [OPT_HOST - OPT_HOST] = ALL,
    [OPT_PORT - OPT_HOST] = ALL,
    [OPT_PATH - OPT_HOST] = ALL,
    [OPT_CONNS - OPT_HOST] = ALL,
    [OPT_SOURCE_IPS - OPT_HOST] = ALL,
    [OPT_SETUP - OPT_HOST] = ONLY(SC_ECHO) | ONLY(SC_FANOUT) | ONLY(SC_IDLE),
    [OPT_SECONDS - OPT_HOST] = ONLY(SC_ECHO) | ONLY(SC_FANOUT) | ONLY(SC_CHURN),
    [OPT_INFLIGHT - OPT_HOST] = ONLY(SC_ECHO) | ONLY(SC_FANOUT),
    [OPT_SIZE - OPT_HOST] = ONLY(SC_ECHO) | ONLY(SC_FANOUT),
    [OPT_RATE - OPT_HOST] = ONLY(SC_FANOUT),
    [OPT_ROOMS - OPT_HOST] = ONLY(SC_IDLE) | ONLY(SC_CHURN),
    [OPT_HOLD - OPT_HOST] = ONLY(SC_IDLE),
    [OPT_PROCS - OPT_HOST] = ONLY(SC_IDLE),
    [OPT_SERVER_PID - OPT_HOST] = ONLY(SC_IDLE),
    [OPT_BROADCAST - OPT_HOST] = ONLY(SC_IDLE),
};

static void parse_args(int argc, char **argv, opts_t *o)
{
    static const struct option opts[] = {
        {"host", 1, NULL, OPT_HOST},
        {"port", 1, NULL, OPT_PORT},
        {"path", 1, NULL, OPT_PATH},
        {"conns", 1, NULL, OPT_CONNS},
        {"source-ips", 1, NULL, OPT_SOURCE_IPS},
        {"setup", 1, NULL, OPT_SETUP},
        {"seconds", 1, NULL, OPT_SECONDS},
        {"inflight", 1, NULL, OPT_INFLIGHT},
        {"size", 1, NULL, OPT_SIZE},
        {"rate", 1, NULL, OPT_RATE},
        {"rooms", 1, NULL, OPT_ROOMS},
        {"hold", 1, NULL, OPT_HOLD},
        {"procs", 1, NULL, OPT_PROCS},
        {"server-pid", 1, NULL, OPT_SERVER_PID},
        {"broadcast", 0, NULL, OPT_BROADCAST},
        {"help", 0, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage_text, stdout);
        exit(0);
    }
    int sc = 0, nsc = (int)(sizeof scenario_names / sizeof scenario_names[0]);
    while (argc >= 2 && sc < nsc && strcmp(argv[1], scenario_names[sc]) != 0)
        sc++;
    if (argc < 2 || sc == nsc) {
        fputs(usage_text, stderr);
        usage_error("%s%s: the first argument names the scenario: echo, fanout, idle or churn",
                    argc < 2 ? "no scenario" : "unknown scenario ", argc < 2 ? "" : argv[1]);
    }
    *o = (opts_t){.scenario = (scenario_t)sc,
                  .host = "127.0.0.1",
                  .port = 8080,
                  .setup = 60,
                  .seconds = 5,
                  .size = 64,
                  .hold = 5,
                  .procs = 1};
    o->path = sc == SC_ECHO ? "/echo" : "/ws";
    o->conns = sc == SC_ECHO || sc == SC_CHURN ? 100 : 1000;
    o->inflight = sc == SC_FANOUT ? 8 : 16;
    const char *ips = NULL;
    int c, li;
    optind = 2;
    opterr = 0; /* our own messages, below */
    while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        if (c == 'h') {
            fputs(usage_text, stdout);
            exit(0);
        }
        if (c == '?' || c == ':')
            usage_error("%s: unknown option, or one missing its value", argv[optind - 1]);
        const char *name = opts[li].name;
        if (!(option_scenarios[c - OPT_HOST] & ONLY(o->scenario)))
            usage_error("--%s does not apply to %s", name, scenario_names[o->scenario]);
        switch (c) {
        case OPT_HOST:
            o->host = optarg;
            break;
        case OPT_PORT:
            o->port = int_arg(name, optarg, 1, 65535);
            break;
        case OPT_PATH:
            o->path = optarg;
            break;
        case OPT_CONNS:
            o->conns = int_arg(name, optarg, 1, 1000000);
            break;
        case OPT_SOURCE_IPS:
            ips = optarg;
            break;
        case OPT_SETUP:
            o->setup = int_arg(name, optarg, 1, 86400);
            break;
        case OPT_SECONDS:
            o->seconds = int_arg(name, optarg, 1, 86400);
            break;
        case OPT_INFLIGHT:
            o->inflight = int_arg(name, optarg, 0, 100000);
            break;
        case OPT_SIZE:
            o->size = (size_t)int_arg(name, optarg, 1, LG_MAX_MESSAGE);
            break;
        case OPT_RATE:
            o->rate = int_arg(name, optarg, 1, 100000000);
            break;
        case OPT_ROOMS:
            o->rooms = int_arg(name, optarg, 1, 1000000);
            break;
        case OPT_HOLD:
            o->hold = int_arg(name, optarg, 0, 86400);
            break;
        case OPT_PROCS:
            o->procs = int_arg(name, optarg, 1, 64);
            break;
        case OPT_SERVER_PID:
            o->server_pid = int_arg(name, optarg, 1, 1 << 30);
            break;
        case OPT_BROADCAST:
            o->broadcast = 1;
            break;
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if (o->path[0] != '/')
        usage_error("--path must start with '/', not '%s'", o->path);
    loopback_arg("host", o->host, o->port, &o->dest);
    for (const char *s = ips; s && *s;) {
        char ip[64];
        size_t len = strcspn(s, ",");
        if (len >= sizeof ip || o->nsrc == LG_MAX_IPS)
            usage_error("--source-ips takes up to %d addresses, comma-separated", LG_MAX_IPS);
        memcpy(ip, s, len);
        ip[len] = '\0';
        loopback_arg("source-ips", ip, 0, &o->src[o->nsrc++]);
        s += len + (s[len] == ',');
    }
    if (o->scenario == SC_ECHO && o->size < 8)
        o->size = 8; /* room for the timestamp */
    if (o->scenario == SC_FANOUT && o->size > LG_MAX_CONTENT)
        usage_error("fanout --size is at most %d (the server's default --max-content is 4096)",
                    LG_MAX_CONTENT);
    if (o->procs > o->conns)
        o->procs = o->conns;
    if (!o->rooms)
        o->rooms =
            o->scenario == SC_CHURN ? o->conns : (o->conns + LG_ROOM_MEMBERS - 1) / LG_ROOM_MEMBERS;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv, &lg.o);

    /* Thousands of sockets: take all the descriptors we may. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int per_proc = lg.o.conns / lg.o.procs + 1;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)per_proc + 32 > rl.rlim_cur) {
        fprintf(stderr, "loadgen: %d connections per process exceed the file limit of %llu; %s\n",
                per_proc, (unsigned long long)rl.rlim_cur,
                lg.o.scenario == SC_IDLE ? "use more --procs" : "use fewer --conns");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    switch (lg.o.scenario) {
    case SC_ECHO:
        return run_echo();
    case SC_FANOUT:
        return run_fanout();
    case SC_IDLE:
        return run_idle();
    case SC_CHURN:
        return run_churn();
    }
    return 2;
}
