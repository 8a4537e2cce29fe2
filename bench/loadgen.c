/* loadgen.c — a WebSocket load generator (client side of RFC 6455).
 *
 * Scenario "echo": C connections to an echo endpoint, each keeping P binary
 * messages of S bytes in flight; counts round trips it actually received
 * and parsed, and their latency (a send timestamp travels in the payload).
 *
 *   loadgen echo --port 8080 [--host 127.0.0.1] [--path /echo]
 *                [--conns 100] [--inflight 16] [--size 64] [--seconds 5]
 *
 * Scenario "fanout": C subscribers and one publisher join one room through
 * the JSON protocol at /ws; the publisher keeps --inflight room messages in
 * flight (a message is done when the publisher's own copy comes back) and
 * every subscriber counts the messages it receives and their latency.
 *
 *   loadgen fanout --port 8080 [--conns 1000] [--inflight 8] [--seconds 5]
 *
 * Prints one line of figures; bounded in time by --seconds. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "ws/ws.h"

typedef struct client_s client_t;

typedef struct {
    uv_loop_t *loop;
    const char *host, *path;
    int port, conns, inflight, seconds;
    size_t size;
    int open, failed;
    int measuring;
    int fanout;       /* scenario: 0 echo, 1 fanout */
    int joined;
    client_t *publisher;
    uint64_t started_ns, roundtrips;
    uint64_t hist[64 * 16]; /* log-linear latency buckets, ns */
    uint64_t samples;
    client_t *clients;
    uv_timer_t timer;
} lg_t;

struct client_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    lg_t *lg;
    int upgraded;
    uint8_t *buf; /* received bytes of an incomplete frame */
    size_t len, cap;
    uint8_t *out; /* frames to send, written once per read callback */
    size_t out_len, out_cap;
    int joined;
};

static uint8_t g_rbuf[256 * 1024];

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

static double percentile(const lg_t *lg, double p)
{
    uint64_t want = (uint64_t)(p * (double)lg->samples), seen = 0;
    for (unsigned b = 0; b < 64 * 16; b++) {
        seen += lg->hist[b];
        if (seen > want)
            return (double)bucket_value(b) / 1000.0;
    }
    return 0;
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
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
    memcpy(req + 1, (const char *)data + n, len - (size_t)n);
    b = uv_buf_init((char *)(req + 1), (unsigned)(len - (size_t)n));
    uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
}

/* Appends one masked binary frame carrying the send time to c->out. */
static void send_message(client_t *c)
{
    static const uint8_t zero_mask[4];
    size_t size = c->lg->size < 8 ? 8 : c->lg->size;
    if (c->out_len + SB_WS_MAX_HEADER + size > c->out_cap) {
        c->out_cap = (c->out_len + SB_WS_MAX_HEADER + size) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    uint8_t *f = c->out + c->out_len;
    size_t h = sb__frame_header_write(f, 1, 0, SB_OP_BINARY, size, zero_mask);
    uint64_t now = uv_hrtime();
    memset(f + h, 'x', size);
    memcpy(f + h, &now, 8); /* a zero mask key leaves the payload as is */
    c->out_len += h + size;
}

static void on_done(uv_timer_t *t);

/* Appends one masked text frame carrying text. */
static void send_text(client_t *c, const char *text, size_t len)
{
    static const uint8_t zero_mask[4];
    if (c->out_len + SB_WS_MAX_HEADER + len > c->out_cap) {
        c->out_cap = (c->out_len + SB_WS_MAX_HEADER + len) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    size_t h = sb__frame_header_write(c->out + c->out_len, 1, 0, SB_OP_TEXT, len, zero_mask);
    memcpy(c->out + c->out_len + h, text, len);
    c->out_len += h + len;
}

/* A room message whose content is the send time (padded to --size). */
static void publish(client_t *c)
{
    char msg[512];
    size_t pad = c->lg->size > 64 ? (c->lg->size < 400 ? c->lg->size - 64 : 336) : 0;
    int n = snprintf(msg, sizeof msg,
                     "{\"type\":\"message\",\"room\":\"bench\",\"content\":\"%llu %.*s\"}",
                     (unsigned long long)uv_hrtime(), (int)pad,
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    send_text(c, msg, (size_t)n);
}

static void fanout_message(client_t *c, const uint8_t *p, size_t n)
{
    lg_t *lg = c->lg;
    const char *s = memmem(p, n, "\"type\":\"", 8);
    if (!s)
        return;
    s += 8;
    if (!c->joined && strncmp(s, "history", 7) == 0) {
        c->joined = 1;
        if (++lg->joined == lg->conns) {
            /* The last member to join is the last one a fan-out reaches:
             * when its copy is back, every subscriber has been sent the
             * message, so the window bounds every queue. */
            lg->publisher = c;
            lg->measuring = 1;
            lg->started_ns = uv_hrtime();
            uv_timer_start(&lg->timer, on_done, (uint64_t)lg->seconds * 1000, 0);
            for (int i = 0; i < lg->inflight; i++)
                publish(lg->publisher);
            /* the publisher's buffer is flushed by its next read: flush now */
            write_bytes(lg->publisher, lg->publisher->out, lg->publisher->out_len);
            lg->publisher->out_len = 0;
        }
        return;
    }
    if (strncmp(s, "message", 7) != 0 || !lg->measuring)
        return;
    const char *t = memmem(p, n, "\"content\":\"", 11);
    if (!t)
        return;
    uint64_t sent = strtoull(t + 11, NULL, 10);
    lg->hist[bucket(uv_hrtime() - sent)]++;
    lg->samples++;
    lg->roundtrips++;
    if (c == lg->publisher)
        publish(c);
}

static void flush_out(client_t *c)
{
    if (c->out_len)
        write_bytes(c, c->out, c->out_len);
    c->out_len = 0;
}

static void on_message(client_t *c, const uint8_t *p, size_t n)
{
    lg_t *lg = c->lg;
    if (n >= 8 && lg->measuring) {
        uint64_t sent;
        memcpy(&sent, p, 8);
        lg->hist[bucket(uv_hrtime() - sent)]++;
        lg->samples++;
        lg->roundtrips++;
    }
    send_message(c);
}

static void start_sending(client_t *c)
{
    lg_t *lg = c->lg;
    for (int i = 0; i < lg->inflight; i++)
        send_message(c);
    flush_out(c);
    if (++lg->open == lg->conns) {
        lg->measuring = 1;
        lg->started_ns = uv_hrtime();
    }
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    (void)s;
    *b = uv_buf_init((char *)g_rbuf, sizeof g_rbuf);
}

static void append(client_t *c, const uint8_t *p, size_t n)
{
    if (c->len + n > c->cap) {
        c->cap = (c->len + n) * 2;
        c->buf = realloc(c->buf, c->cap);
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    client_t *c = s->data;
    if (nread < 0) {
        c->lg->failed++;
        uv_read_stop(s);
        return;
    }
    const uint8_t *p = (const uint8_t *)b->base;
    size_t n = (size_t)nread;
    /* Work in place when nothing is pending; else on the pending buffer. */
    if (c->len) {
        append(c, p, n);
        p = c->buf;
        n = c->len;
    }
    size_t off = 0;
    if (!c->upgraded) {
        const uint8_t *end = memmem(p, n, "\r\n\r\n", 4);
        if (!end) {
            if (!c->len)
                append(c, p, n);
            return;
        }
        if (memcmp(p, "HTTP/1.1 101", 12) != 0) {
            fprintf(stderr, "loadgen: handshake refused: %.*s\n", (int)(end - p), p);
            exit(1);
        }
        off = (size_t)(end - p) + 4;
        c->upgraded = 1;
        if (c->lg->fanout) {
            static const char join[] = "{\"type\":\"join\",\"room\":\"bench\"}";
            send_text(c, join, sizeof join - 1);
        } else {
            start_sending(c);
        }
    }
    for (;;) {
        sb__frame_t f;
        int h = sb__frame_header_parse(p + off, n - off, &f);
        if (h <= 0 || n - off - (size_t)h < f.len)
            break;
        if (c->lg->fanout && f.opcode == SB_OP_TEXT)
            fanout_message(c, p + off + h, (size_t)f.len);
        else if (f.opcode == SB_OP_BINARY || f.opcode == SB_OP_TEXT)
            on_message(c, p + off + h, (size_t)f.len);
        off += (size_t)h + (size_t)f.len;
    }
    flush_out(c);
    size_t rest = n - off;
    if (c->len) {
        memmove(c->buf, c->buf + off, rest);
        c->len = rest;
    } else if (rest) {
        append(c, p + off, rest);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    client_t *c = req->data;
    lg_t *lg = c->lg;
    if (status < 0) {
        fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(status));
        exit(1);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     lg->path, lg->host, lg->port);
    write_bytes(c, head, (size_t)n);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_done(uv_timer_t *t)
{
    lg_t *lg = t->data;
    double secs = (double)(uv_hrtime() - lg->started_ns) / 1e9;
    printf("%s conns=%d inflight=%d size=%zu seconds=%.2f %s=%llu rate=%.0f/s "
           "p50=%.1fus p99=%.1fus failed=%d\n",
           lg->fanout ? "fanout" : "echo", lg->conns, lg->inflight, lg->size, secs,
           lg->fanout ? "deliveries" : "roundtrips", (unsigned long long)lg->roundtrips,
           (double)lg->roundtrips / secs, percentile(lg, 0.50), percentile(lg, 0.99),
           lg->failed);
    exit(0);
}

int main(int argc, char **argv)
{
    lg_t lg = {.host = "127.0.0.1", .path = "/echo", .port = 8080, .conns = 100,
               .inflight = 16, .size = 64, .seconds = 5};
    static const struct option opts[] = {
        {"host", 1, NULL, 'H'}, {"port", 1, NULL, 'p'},     {"path", 1, NULL, 'P'},
        {"conns", 1, NULL, 'c'}, {"inflight", 1, NULL, 'i'}, {"size", 1, NULL, 's'},
        {"seconds", 1, NULL, 't'}, {NULL, 0, NULL, 0},
    };
    if (argc < 2 || (strcmp(argv[1], "echo") != 0 && strcmp(argv[1], "fanout") != 0)) {
        fprintf(stderr, "usage: loadgen echo|fanout [--host H] [--port N] [--path P] "
                        "[--conns C] [--inflight P] [--size S] [--seconds T]\n");
        return 2;
    }
    lg.fanout = strcmp(argv[1], "fanout") == 0;
    if (lg.fanout)
        lg.path = "/ws";
    optind = 2;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'H': lg.host = optarg; break;
        case 'p': lg.port = atoi(optarg); break;
        case 'P': lg.path = optarg; break;
        case 'c': lg.conns = atoi(optarg); break;
        case 'i': lg.inflight = atoi(optarg); break;
        case 's': lg.size = (size_t)atol(optarg); break;
        case 't': lg.seconds = atoi(optarg); break;
        default: return 2;
        }
    }
    lg.loop = uv_default_loop();
    lg.clients = calloc((size_t)lg.conns, sizeof *lg.clients);
    lg.publisher = &lg.clients[0];
    struct sockaddr_in addr;
    uv_ip4_addr(lg.host, lg.port, &addr);
    for (int i = 0; i < lg.conns; i++) {
        client_t *c = &lg.clients[i];
        c->lg = &lg;
        uv_tcp_init(lg.loop, &c->tcp);
        c->tcp.data = c;
        c->creq.data = c;
        uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&addr, on_connect);
    }
    uv_timer_init(lg.loop, &lg.timer);
    lg.timer.data = &lg;
    /* fanout restarts it once every client has joined */
    uv_timer_start(&lg.timer, on_done, (uint64_t)lg.seconds * 1000 * (lg.fanout ? 4 : 1), 0);
    return uv_run(lg.loop, UV_RUN_DEFAULT);
}
