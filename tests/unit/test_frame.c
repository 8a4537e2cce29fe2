/* test_frame.c — frame headers, masking and close codes (src/ws/frame.c),
 * and the message reader (src/ws/reader.c) on the server side.
 *
 * Most reader tests go through check_stream(): it builds nothing itself but
 * feeds a byte stream to a fresh reader whole, split in two at every index,
 * one byte at a time and in a few fixed chunk sizes — each time the way the
 * server does (bytes left unconsumed after SB_WS_EV_NONE are presented again
 * in front of the next input, see sb__wsconn_read and on_read) — reassembles
 * the DATA chunks into messages and checks that every run yields exactly the
 * expected messages, control frames and error, with the error reported while
 * feeding the chunk that holds the offending byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "ws/ws.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A masked header of a frame with a payload under 126 bytes. */
#define HDR 6

/* ---- frame header ----------------------------------------------------- */

static const uint64_t lengths[] = {
    0, 1, 5, 125, 126, 127, 200, 65535, 65536, 65537, 1ull << 32, (1ull << 63) - 1,
};

static size_t expected_header_len(uint64_t len, int masked)
{
    size_t n = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
    return n + (masked ? 4 : 0);
}

/* Parses the first n bytes of p from a copy that ends flush with its
 * allocation, so a read past n trips ASan. */
static int parse_prefix(const uint8_t *p, size_t n, sb__frame_t *f)
{
    uint8_t *copy = malloc(n ? n : 1);
    cr_assert_not_null(copy);
    memcpy(copy, p, n);
    int rc = sb__frame_header_parse(copy, n, f);
    free(copy);
    return rc;
}

Test(frame_header, round_trip_for_every_length_encoding)
{
    static const uint8_t key[4] = {0xa1, 0x02, 0xf3, 0x7c};
    for (size_t l = 0; l < COUNT(lengths); l++) {
        for (int fin = 0; fin <= 1; fin++) {
            for (int rsv = 0; rsv < 8; rsv++) {
                for (int op = 0; op < 16; op++) {
                    for (int masked = 0; masked <= 1; masked++) {
                        uint8_t h[SB_WS_MAX_HEADER];
                        size_t hl = sb__frame_header_write(h, fin, rsv, op, lengths[l],
                                                           masked ? key : NULL);
                        cr_assert_eq(hl, expected_header_len(lengths[l], masked),
                                     "len %llu masked %d", (unsigned long long)lengths[l], masked);
                        sb__frame_t f;
                        memset(&f, 0xee, sizeof f);
                        cr_assert_eq(parse_prefix(h, hl, &f), (int)hl);
                        cr_assert_eq(f.len, lengths[l]);
                        cr_assert_eq(f.fin, fin);
                        cr_assert_eq(f.rsv, rsv);
                        cr_assert_eq(f.opcode, op);
                        cr_assert_eq(f.masked, masked);
                        if (masked)
                            cr_assert_arr_eq(f.mask, key, 4);
                    }
                }
            }
        }
    }
}

Test(frame_header, needs_more_at_every_short_length)
{
    static const uint8_t key[4] = {1, 2, 3, 4};
    for (size_t l = 0; l < COUNT(lengths); l++) {
        for (int masked = 0; masked <= 1; masked++) {
            uint8_t h[SB_WS_MAX_HEADER];
            size_t hl =
                sb__frame_header_write(h, 1, 0, SB_OP_BINARY, lengths[l], masked ? key : NULL);
            for (size_t k = 0; k < hl; k++) {
                sb__frame_t f;
                cr_assert_eq(parse_prefix(h, k, &f), 0, "len %llu masked %d: %zu of %zu bytes",
                             (unsigned long long)lengths[l], masked, k, hl);
            }
            /* Bytes after the header (payload) change nothing. */
            uint8_t more[SB_WS_MAX_HEADER + 3];
            memcpy(more, h, hl);
            memset(more + hl, 0xff, 3);
            sb__frame_t f;
            cr_assert_eq(parse_prefix(more, hl + 3, &f), (int)hl);
            cr_assert_eq(f.len, lengths[l]);
        }
    }
}

Test(frame_header, writes_the_exact_bytes)
{
    uint8_t h[SB_WS_MAX_HEADER];
    static const uint8_t key[4] = {0x01, 0x02, 0x03, 0x04};

    cr_assert_eq(sb__frame_header_write(h, 1, 0, SB_OP_TEXT, 5, NULL), 2);
    cr_assert_arr_eq(h, ((uint8_t[]){0x81, 0x05}), 2);

    cr_assert_eq(sb__frame_header_write(h, 1, 0, SB_OP_PING, 125, NULL), 2);
    cr_assert_arr_eq(h, ((uint8_t[]){0x89, 0x7d}), 2);

    cr_assert_eq(sb__frame_header_write(h, 0, 4, SB_OP_BINARY, 126, key), 8);
    cr_assert_arr_eq(h, ((uint8_t[]){0x42, 0xfe, 0x00, 0x7e, 1, 2, 3, 4}), 8);

    cr_assert_eq(sb__frame_header_write(h, 1, 0, SB_OP_CLOSE, 65535, NULL), 4);
    cr_assert_arr_eq(h, ((uint8_t[]){0x88, 0x7e, 0xff, 0xff}), 4);

    cr_assert_eq(sb__frame_header_write(h, 1, 7, SB_OP_CONTINUATION, 65536, NULL), 10);
    cr_assert_arr_eq(h, ((uint8_t[]){0xf0, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}), 10);

    cr_assert_eq(sb__frame_header_write(h, 1, 0, SB_OP_BINARY, 0x0102030405060708ull, key), 14);
    cr_assert_arr_eq(h, ((uint8_t[]){0x82, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4}), 14);
}

Test(frame_header, non_minimal_lengths_are_accepted)
{
    sb__frame_t f;
    static const uint8_t len16[] = {0x81, 0x7e, 0x00, 0x05};
    cr_assert_eq(parse_prefix(len16, sizeof len16, &f), 4);
    cr_assert_eq(f.len, 5);
    static const uint8_t len64[] = {0x81, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x05};
    cr_assert_eq(parse_prefix(len64, sizeof len64, &f), 10);
    cr_assert_eq(f.len, 5);
}

Test(frame_header, a_64_bit_length_with_the_top_bit_set_is_a_protocol_error)
{
    sb__frame_t f;
    static const uint8_t top[] = {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(parse_prefix(top, sizeof top, &f), SB_EPROTO);
    static const uint8_t all[] = {0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(parse_prefix(all, sizeof all, &f), SB_EPROTO);
    static const uint8_t masked[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 9, 9, 9, 9};
    /* Reported once the whole header is there, not before. */
    for (size_t k = 0; k < sizeof masked; k++)
        cr_assert_eq(parse_prefix(masked, k, &f), 0, "%zu bytes", k);
    cr_assert_eq(parse_prefix(masked, sizeof masked, &f), SB_EPROTO);
    /* The largest legal length. */
    static const uint8_t max[] = {0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(parse_prefix(max, sizeof max, &f), 10);
    cr_assert_eq(f.len, 0x7fffffffffffffffull);
}

/* ---- masking ---------------------------------------------------------- */

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 3));
}

static void mask_reference(uint8_t *p, size_t n, const uint8_t mask[4], size_t offset)
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mask[(offset + i) % 4];
}

/* Every offset 0..7 (so 4..7 must wrap), lengths 0..80 and a few long ones,
 * every start alignment 0..7; buffers end flush with their allocation. */
Test(mask, matches_a_bytewise_reference)
{
    static const uint8_t key[4] = {0x12, 0xab, 0x5c, 0xf0};
    static const size_t long_lengths[] = {127, 255, 1000, 4099};
    for (size_t align = 0; align < 8; align++) {
        for (size_t li = 0; li < 81 + COUNT(long_lengths); li++) {
            size_t n = li < 81 ? li : long_lengths[li - 81];
            for (size_t offset = 0; offset < 8; offset++) {
                uint8_t *block = malloc(align + n + 1);
                uint8_t *want = malloc(n + 1);
                cr_assert(block && want);
                uint8_t *p = block + align;
                fill_pattern(p, n, (unsigned)(align + offset));
                memcpy(want, p, n);
                mask_reference(want, n, key, offset);
                sb__mask(p, n, key, offset);
                cr_assert_arr_eq(p, want, n, "align %zu len %zu offset %zu", align, n, offset);
                free(block);
                free(want);
            }
        }
    }
}

Test(mask, large_offsets_use_offset_mod_4)
{
    static const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
    static const size_t offsets[] = {1001, 4096, 65539, (size_t)-1};
    for (size_t i = 0; i < COUNT(offsets); i++) {
        uint8_t p[37], want[37];
        fill_pattern(p, sizeof p, 3);
        memcpy(want, p, sizeof p);
        mask_reference(want, sizeof want, key, offsets[i] % 4);
        sb__mask(p, sizeof p, key, offsets[i]);
        cr_assert_arr_eq(p, want, sizeof p, "offset %zu", offsets[i]);
    }
}

/* Masking a buffer in two pieces, the second starting at the first's
 * length as offset, equals masking it whole; masking twice restores it. */
Test(mask, pieces_continue_the_mask_and_twice_is_identity)
{
    static const uint8_t key[4] = {0x01, 0x80, 0x7f, 0xfe};
    enum { N = 131 };
    uint8_t orig[N], whole[N];
    fill_pattern(orig, N, 9);
    memcpy(whole, orig, N);
    sb__mask(whole, N, key, 0);
    for (size_t k = 0; k <= N; k++) {
        uint8_t split[N];
        memcpy(split, orig, N);
        sb__mask(split, k, key, 0);
        sb__mask(split + k, N - k, key, k);
        cr_assert_arr_eq(split, whole, N, "split at %zu", k);
        sb__mask(split, N, key, 0);
        cr_assert_arr_eq(split, orig, N, "split at %zu", k);
    }
}

/* ---- close codes ------------------------------------------------------ */

/* RFC 6455 7.4.1 and the IANA registry: what a peer may put on the wire. */
static int close_code_reference(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

Test(close_code, valid_over_0_to_5999)
{
    for (int code = 0; code < 6000; code++)
        cr_assert_eq(!!sb__close_code_valid(code), close_code_reference(code), "code %d", code);
    cr_assert_not(sb__close_code_valid(-1));
    cr_assert_not(sb__close_code_valid(65535));
}

/* ---- building client frames ------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} stream_t;

static void stream_put(stream_t *s, const void *p, size_t n)
{
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n)
            cap *= 2;
        s->p = realloc(s->p, cap);
        cr_assert_not_null(s->p);
        s->cap = cap;
    }
    if (n)
        memcpy(s->p + s->len, p, n);
    s->len += n;
}

static void stream_free(stream_t *s)
{
    free(s->p);
    memset(s, 0, sizeof *s);
}

/* Appends a frame, masked with mask (a client frame) or unmasked when mask
 * is NULL. Written here by hand rather than with sb__frame_header_write, so
 * the reader is not tested against the writer's mistakes. */
static void put_frame_mask(stream_t *s, int fin, int rsv, int opcode, const void *payload,
                           uint64_t len, const uint8_t *mask)
{
    uint8_t h[SB_WS_MAX_HEADER];
    size_t n = 0;
    h[n++] = (uint8_t)((fin ? 0x80 : 0) | rsv << 4 | opcode);
    uint8_t mbit = mask ? 0x80 : 0;
    if (len < 126) {
        h[n++] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        h[n++] = mbit | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = mbit | 127;
        for (int i = 0; i < 8; i++)
            h[n++] = (uint8_t)(len >> (56 - 8 * i));
    }
    if (mask) {
        memcpy(h + n, mask, 4);
        n += 4;
    }
    stream_put(s, h, n);
    if (!payload)
        return; /* a header only: the payload is not part of this stream */
    size_t at = s->len;
    stream_put(s, payload, (size_t)len);
    if (mask)
        mask_reference(s->p + at, (size_t)len, mask, 0);
}

/* A client frame masked with the next key of a fixed sequence, so that
 * consecutive frames use different keys (every seventh is all zeros). */
static void put_frame(stream_t *s, int fin, int rsv, int opcode, const void *payload, size_t len)
{
    static unsigned seed;
    uint8_t key[4] = {(uint8_t)(0x5a + 37 * seed), (uint8_t)(0xc3 ^ (seed * 11)),
                      (uint8_t)(0x81 + 17 * seed), (uint8_t)(0xff - 5 * seed)};
    if (seed % 7 == 3)
        memset(key, 0, 4);
    seed++;
    put_frame_mask(s, fin, rsv, opcode, payload, len, key);
}

/* put_frame with a string literal payload. */
#define PUT(s, fin, opcode, lit) put_frame(s, fin, 0, opcode, lit, sizeof(lit) - 1)

static void put_close(stream_t *s, int code, const void *reason, size_t reason_len)
{
    uint8_t payload[256];
    cr_assert_leq(reason_len, sizeof payload - 2);
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (reason_len)
        memcpy(payload + 2, reason, reason_len);
    put_frame(s, 1, 0, SB_OP_CLOSE, payload, 2 + reason_len);
}

/* ---- the stream checker ----------------------------------------------- */

typedef struct {
    uint64_t max_message, max_frame;
    uint8_t rsv_allowed;
    uint8_t client; /* read as a client: frames must not be masked */
} opts_t;

/* One expected event. DATA stands for a whole (reassembled) message. */
typedef struct {
    int type;
    int opcode;
    int compressed;
    int close_code;
    const char *data; /* message or ping/pong payload; the reason of a close */
    size_t len;
    size_t fail_at; /* ERROR: the stream length at which it must be reported */
} want_t;

/* clang-format off */
#define W_MSG(op, ptr, n) \
    {.type = SB_WS_EV_DATA, .opcode = (op), .data = (const char *)(ptr), .len = (n)}
#define W_TEXT(lit) W_MSG(SB_OP_TEXT, lit, sizeof(lit) - 1)
#define W_BINARY(lit) W_MSG(SB_OP_BINARY, lit, sizeof(lit) - 1)
#define W_ZMSG(op, lit) \
    {.type = SB_WS_EV_DATA, .opcode = (op), .compressed = 1, .data = (lit), \
     .len = sizeof(lit) - 1}
#define W_CONTROL_N(op, ptr, n) \
    {.type = SB_WS_EV_CONTROL, .opcode = (op), .data = (const char *)(ptr), .len = (n)}
#define W_PING(lit) W_CONTROL_N(SB_OP_PING, lit, sizeof(lit) - 1)
#define W_PONG(lit) W_CONTROL_N(SB_OP_PONG, lit, sizeof(lit) - 1)
#define W_CLOSE_N(code, ptr, n) \
    {.type = SB_WS_EV_CONTROL, .opcode = SB_OP_CLOSE, .close_code = (code), \
     .data = (const char *)(ptr), .len = (n)}
#define W_CLOSE(code, lit) W_CLOSE_N(code, lit, sizeof(lit) - 1)
#define W_ERROR(code, at) {.type = SB_WS_EV_ERROR, .close_code = (code), .fail_at = (at)}
/* clang-format on */

/* One event seen, with the chunk of the stream being fed when it came. */
typedef struct {
    int type, opcode, compressed, close_code;
    uint8_t *data;
    size_t len;
    size_t chunk_start, chunk_end;
} got_t;

#define MAX_GOT 64

typedef struct {
    const char *how; /* how the stream was cut, for failure messages */
    got_t items[MAX_GOT];
    size_t n;
    int failed;
    /* the message being reassembled */
    uint8_t *msg;
    size_t msg_len, msg_cap;
    int in_msg, msg_opcode, msg_compressed;
} log_t;

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    cr_assert_not_null(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

static got_t *push(log_t *log, int type, int opcode, size_t start, size_t end)
{
    cr_assert_lt(log->n, MAX_GOT, "%s: too many events", log->how);
    got_t *g = &log->items[log->n++];
    memset(g, 0, sizeof *g);
    g->type = type;
    g->opcode = opcode;
    g->chunk_start = start;
    g->chunk_end = end;
    return g;
}

static int within(const void *p, size_t n, const uint8_t *buf, size_t len)
{
    const uint8_t *q = p;
    return n == 0 || (q >= buf && q + n <= buf + len);
}

static void record(log_t *log, const sb__ws_event_t *ev, const uint8_t *buf, size_t len,
                   size_t start, size_t end)
{
    const char *how = log->how;
    switch (ev->type) {
    case SB_WS_EV_DATA:
        cr_assert(ev->opcode == SB_OP_TEXT || ev->opcode == SB_OP_BINARY, "%s: DATA opcode %d", how,
                  ev->opcode);
        cr_assert(within(ev->data, ev->len, buf, len), "%s: DATA outside the buffer", how);
        /* An empty non-final fragment has nothing to report. */
        cr_assert(ev->len || ev->last, "%s: an empty DATA chunk that is not the last", how);
        if (!log->in_msg) {
            cr_assert(ev->first, "%s: a message's first chunk is not marked first", how);
            log->in_msg = 1;
            log->msg_opcode = ev->opcode;
            log->msg_compressed = ev->compressed;
            log->msg_len = 0;
        } else {
            cr_assert_not(ev->first, "%s: a later chunk is marked first", how);
            cr_assert_eq(ev->opcode, log->msg_opcode, "%s: opcode changed in a message", how);
            cr_assert_eq(ev->compressed, log->msg_compressed, "%s", how);
        }
        if (log->msg_len + ev->len + 1 > log->msg_cap) {
            size_t cap = log->msg_cap ? log->msg_cap : 64;
            while (cap < log->msg_len + ev->len + 1)
                cap *= 2;
            log->msg = realloc(log->msg, cap);
            cr_assert_not_null(log->msg);
            log->msg_cap = cap;
        }
        if (ev->len)
            memcpy(log->msg + log->msg_len, ev->data, ev->len);
        log->msg_len += ev->len;
        if (ev->last) {
            got_t *g = push(log, SB_WS_EV_DATA, log->msg_opcode, start, end);
            g->compressed = log->msg_compressed;
            g->data = log->msg;
            g->len = log->msg_len;
            log->msg = NULL;
            log->msg_len = log->msg_cap = 0;
            log->in_msg = 0;
        }
        break;
    case SB_WS_EV_CONTROL: {
        cr_assert(within(ev->data, ev->len, buf, len), "%s: payload outside the buffer", how);
        got_t *g = push(log, SB_WS_EV_CONTROL, ev->opcode, start, end);
        if (ev->opcode == SB_OP_CLOSE) {
            cr_assert(within(ev->reason, ev->reason_len, buf, len), "%s", how);
            g->close_code = ev->close_code;
            g->data = dup_bytes(ev->reason, ev->reason_len);
            g->len = ev->reason_len;
        } else {
            g->data = dup_bytes(ev->data, ev->len);
            g->len = ev->len;
        }
        break;
    }
    case SB_WS_EV_ERROR: {
        got_t *g = push(log, SB_WS_EV_ERROR, 0, start, end);
        g->close_code = ev->close_code;
        /* The reason goes into the close frame: it must say something. */
        cr_assert(ev->reason && ev->reason_len > 0 && ev->reason_len <= SB_WS_MAX_CONTROL - 2,
                  "%s: error without a usable reason", how);
        log->failed = 1;
        break;
    }
    default:
        cr_assert_fail("%s: unexpected event type %d", how, ev->type);
    }
}

/* Feeds stream[0..n) to a fresh reader: a first chunk of `first` bytes (0:
 * none), then chunks of `step` bytes (0: the rest at once). */
static void run(const uint8_t *stream, size_t n, const opts_t *o, size_t first, size_t step,
                log_t *log)
{
    sb__ws_reader_t r;
    const sb__ws_limits_t lim = {o->max_message, o->max_frame};
    sb__ws_reader_init(&r, !o->client, &lim);
    r.rsv_allowed = o->rsv_allowed;
    uint8_t tail[SB_WS_MAX_HEADER + SB_WS_MAX_CONTROL];
    size_t tail_len = 0;

    for (size_t pos = 0; pos < n;) {
        size_t end = pos == 0 && first ? first : step ? pos + step : n;
        if (end > n)
            end = n;
        /* The unconsumed tail, then the new bytes, flush with the end of
         * their own allocation. */
        size_t len = tail_len + (end - pos);
        uint8_t *buf = malloc(len);
        cr_assert_not_null(buf);
        memcpy(buf, tail, tail_len);
        memcpy(buf + tail_len, stream + pos, end - pos);

        sb__ws_event_t ev;
        if (log->failed) {
            /* After an error the reader takes nothing and reports nothing. */
            size_t used = sb__ws_read(&r, buf, len, &ev);
            cr_assert_eq(used, 0, "%s: bytes consumed after an error", log->how);
            cr_assert_eq(ev.type, SB_WS_EV_NONE, "%s: event after an error", log->how);
        } else {
            size_t off = 0;
            for (size_t events = 0;; events++) {
                cr_assert_leq(events, len + 1, "%s: reader makes no progress", log->how);
                size_t used = sb__ws_read(&r, buf + off, len - off, &ev);
                cr_assert_leq(used, len - off, "%s: consumed more than given", log->how);
                off += used;
                if (ev.type == SB_WS_EV_NONE)
                    break;
                record(log, &ev, buf, len, pos, end);
                if (ev.type == SB_WS_EV_ERROR) {
                    size_t again = sb__ws_read(&r, buf + off, len - off, &ev);
                    cr_assert(again == 0 && ev.type == SB_WS_EV_NONE, "%s: event after an error",
                              log->how);
                    break;
                }
            }
            if (!log->failed) {
                tail_len = len - off;
                cr_assert_leq(tail_len, SB_WS_MAX_HEADER + SB_WS_MAX_CONTROL,
                              "%s: %zu bytes left unconsumed", log->how, tail_len);
                memcpy(tail, buf + off, tail_len);
            }
        }
        free(buf);
        pos = end;
    }
}

static void log_free(log_t *log)
{
    for (size_t i = 0; i < log->n; i++)
        free(log->items[i].data);
    free(log->msg);
}

static const char *op_name(int type, int opcode)
{
    if (type == SB_WS_EV_ERROR)
        return "error";
    switch (opcode) {
    case SB_OP_TEXT:
        return "text";
    case SB_OP_BINARY:
        return "binary";
    case SB_OP_CLOSE:
        return "close";
    case SB_OP_PING:
        return "ping";
    case SB_OP_PONG:
        return "pong";
    }
    return "?";
}

/* Appends one event as "text[5]", "zbinary[2]", "close(1000)[3]" or
 * "error(1002)" (lengths of the message, payload or close reason). */
static void describe_one(char *out, size_t cap, int type, int opcode, int compressed, int code,
                         size_t len)
{
    size_t used = strlen(out);
    if (used + 1 >= cap)
        return;
    if (type == SB_WS_EV_ERROR)
        snprintf(out + used, cap - used, "error(%d) ", code);
    else if (opcode == SB_OP_CLOSE)
        snprintf(out + used, cap - used, "close(%d)[%zu] ", code, len);
    else
        snprintf(out + used, cap - used, "%s%s[%zu] ", compressed ? "z" : "", op_name(type, opcode),
                 len);
}

static void compare(const log_t *log, const want_t *want, size_t nwant)
{
    char got_s[1024] = "", want_s[1024] = "";
    for (size_t i = 0; i < log->n; i++) {
        const got_t *g = &log->items[i];
        describe_one(got_s, sizeof got_s, g->type, g->opcode, g->compressed, g->close_code, g->len);
    }
    for (size_t i = 0; i < nwant; i++) {
        const want_t *w = &want[i];
        describe_one(want_s, sizeof want_s, w->type, w->opcode, w->compressed, w->close_code,
                     w->len);
    }
    cr_assert_str_eq(got_s, want_s, "%s: got [%s], expected [%s]", log->how, got_s, want_s);
    for (size_t i = 0; i < nwant; i++) {
        const got_t *g = &log->items[i];
        const want_t *w = &want[i];
        if (w->type != SB_WS_EV_ERROR && w->len)
            cr_assert(memcmp(g->data, w->data, w->len) == 0, "%s: event %zu (%s) payload differs",
                      log->how, i, op_name(w->type, w->opcode));
        if (w->type == SB_WS_EV_ERROR && w->fail_at)
            cr_assert(g->chunk_start < w->fail_at && w->fail_at <= g->chunk_end,
                      "%s: error reported while feeding bytes %zu..%zu, expected with byte %zu",
                      log->how, g->chunk_start, g->chunk_end, w->fail_at - 1);
    }
}

static void check_run(const stream_t *s, const opts_t *o, size_t first, size_t step,
                      const char *how, const want_t *want, size_t nwant)
{
    log_t log;
    memset(&log, 0, sizeof log);
    log.how = how;
    run(s->p, s->len, o, first, step, &log);
    compare(&log, want, nwant);
    log_free(&log);
}

/* Streams longer than this are split in two at every index near either end
 * and at a stride in between, and fed in fewer chunk sizes: every index
 * would be quadratic. */
#define SPLIT_ALL_LIMIT 4096

static void check_stream(const stream_t *s, const opts_t *o, const want_t *want, size_t nwant)
{
    static const opts_t defaults;
    if (!o)
        o = &defaults;
    int big = s->len > SPLIT_ALL_LIMIT;
    char how[64];
    check_run(s, o, 0, 0, "whole", want, nwant);
    for (size_t k = 1; k < s->len; k++) {
        if (big && k > 512 && k < s->len - 512 && k % 4099)
            continue;
        snprintf(how, sizeof how, "split at %zu of %zu", k, s->len);
        check_run(s, o, k, 0, how, want, nwant);
    }
    static const size_t steps[] = {1, 2, 3, 5, 7, 13, 64};
    for (size_t i = 0; i < COUNT(steps); i++) {
        if (big && steps[i] != 1 && steps[i] != 7)
            continue;
        snprintf(how, sizeof how, "%zu-byte chunks", steps[i]);
        check_run(s, o, 0, steps[i], how, want, nwant);
    }
}

#define EXPECT(s, o, ...)                                                                          \
    do {                                                                                           \
        const want_t want_[] = {__VA_ARGS__};                                                      \
        check_stream(s, o, want_, COUNT(want_));                                                   \
    } while (0)

#define EXPECT_NOTHING(s, o) check_stream(s, o, NULL, 0)

/* ---- reader: well-formed streams -------------------------------------- */

Test(reader, single_messages)
{
    stream_t s = {0};
    PUT(&s, 1, SB_OP_TEXT, "Hello");
    EXPECT(&s, NULL, W_TEXT("Hello"));
    stream_free(&s);

    PUT(&s, 1, SB_OP_BINARY, "\x00\xff\x80\x01");
    EXPECT(&s, NULL, W_BINARY("\x00\xff\x80\x01"));
    stream_free(&s);
}

Test(reader, a_mix_of_messages_and_controls)
{
    stream_t s = {0};
    uint8_t bytes[256];
    for (int i = 0; i < 256; i++)
        bytes[i] = (uint8_t)i;
    PUT(&s, 1, SB_OP_TEXT, "Hello");
    put_frame(&s, 1, 0, SB_OP_BINARY, bytes, sizeof bytes); /* 16-bit length */
    PUT(&s, 1, SB_OP_PING, "p");
    PUT(&s, 1, SB_OP_PONG, "");
    PUT(&s, 1, SB_OP_TEXT, "\xc3\xa9t\xc3\xa9");
    PUT(&s, 1, SB_OP_PING, "");
    put_close(&s, 1000, "bye", 3);
    EXPECT(&s, NULL, W_TEXT("Hello"), W_MSG(SB_OP_BINARY, bytes, sizeof bytes), W_PING("p"),
           W_PONG(""), W_TEXT("\xc3\xa9t\xc3\xa9"), W_PING(""), W_CLOSE(1000, "bye"));
    stream_free(&s);
}

Test(reader, the_same_frames_with_fixed_mask_keys)
{
    static const uint8_t keys[][4] = {{0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff}, {1, 2, 3, 4}};
    for (size_t k = 0; k < COUNT(keys); k++) {
        stream_t s = {0};
        put_frame_mask(&s, 1, 0, SB_OP_TEXT, "masked text", 11, keys[k]);
        put_frame_mask(&s, 1, 0, SB_OP_PING, "ping!", 5, keys[k]);
        EXPECT(&s, NULL, W_TEXT("masked text"), W_PING("ping!"));
        stream_free(&s);
    }
}

Test(reader, sixteen_bit_length_text)
{
    /* 300 bytes of multi-byte text: splits land inside characters and at
     * every mask position. */
    char text[301];
    size_t n = 0;
    while (n + 3 <= 300) {
        memcpy(text + n, n % 2 ? "\xe2\x82\xac" : "a\xc3\xa9", 3);
        n += 3;
    }
    text[n] = '\0';
    stream_t s = {0};
    put_frame(&s, 1, 0, SB_OP_TEXT, text, n);
    EXPECT(&s, NULL, W_MSG(SB_OP_TEXT, text, n));
    stream_free(&s);
}

Test(reader, sixty_four_bit_length_binary)
{
    size_t n = 65536 + 300;
    uint8_t *payload = malloc(n);
    cr_assert_not_null(payload);
    fill_pattern(payload, n, 5);
    stream_t s = {0};
    put_frame(&s, 1, 0, SB_OP_BINARY, payload, n);
    PUT(&s, 1, SB_OP_PING, "after");
    EXPECT(&s, NULL, W_MSG(SB_OP_BINARY, payload, n), W_PING("after"));
    stream_free(&s);
    free(payload);
}

Test(reader, fragmented_messages_are_reassembled)
{
    stream_t s = {0};
    PUT(&s, 0, SB_OP_TEXT, "Hel");
    PUT(&s, 0, SB_OP_CONTINUATION, "lo, w\xc3");
    PUT(&s, 1, SB_OP_CONTINUATION, "\xb6rld");
    PUT(&s, 0, SB_OP_BINARY, "\x01\x02");
    PUT(&s, 1, SB_OP_CONTINUATION, "\x03");
    EXPECT(&s, NULL, W_TEXT("Hello, w\xc3\xb6rld"), W_BINARY("\x01\x02\x03"));
    stream_free(&s);
}

/* A text message cut into two fragments at every byte, including inside
 * each multi-byte character. */
Test(reader, text_fragmented_at_every_byte_is_valid)
{
    static const char text[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";
    size_t n = sizeof text - 1;
    for (size_t i = 0; i <= n; i++) {
        stream_t s = {0};
        put_frame(&s, 0, 0, SB_OP_TEXT, text, i);
        put_frame(&s, 1, 0, SB_OP_CONTINUATION, text + i, n - i);
        EXPECT(&s, NULL, W_TEXT("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z"));
        stream_free(&s);
    }
}

Test(reader, controls_interleaved_in_a_fragmented_message)
{
    stream_t s = {0};
    PUT(&s, 0, SB_OP_TEXT, "ab");
    PUT(&s, 1, SB_OP_PING, "p1");
    PUT(&s, 0, SB_OP_CONTINUATION, "cd");
    PUT(&s, 1, SB_OP_PONG, "");
    PUT(&s, 1, SB_OP_PING, "p2");
    PUT(&s, 1, SB_OP_CONTINUATION, "ef");
    PUT(&s, 1, SB_OP_TEXT, "next");
    EXPECT(&s, NULL, W_PING("p1"), W_PONG(""), W_PING("p2"), W_TEXT("abcdef"), W_TEXT("next"));
    stream_free(&s);

    /* After an empty first fragment (consumed along with the control frame
     * that follows, whole or in part). */
    PUT(&s, 0, SB_OP_TEXT, "");
    PUT(&s, 1, SB_OP_PING, "ping payload");
    PUT(&s, 0, SB_OP_CONTINUATION, "");
    PUT(&s, 1, SB_OP_PONG, "pong payload");
    PUT(&s, 1, SB_OP_CONTINUATION, "x");
    EXPECT(&s, NULL, W_PING("ping payload"), W_PONG("pong payload"), W_TEXT("x"));
    stream_free(&s);

    /* A close in the middle of a message is delivered; the message is not. */
    PUT(&s, 0, SB_OP_BINARY, "xy");
    put_close(&s, 1001, "", 0);
    EXPECT(&s, NULL, W_CLOSE(1001, ""));
    stream_free(&s);
}

Test(reader, empty_messages)
{
    stream_t s = {0};
    PUT(&s, 1, SB_OP_TEXT, "");
    PUT(&s, 1, SB_OP_BINARY, "");
    EXPECT(&s, NULL, W_TEXT(""), W_BINARY(""));
    stream_free(&s);

    /* An empty final fragment after non-empty ones. */
    PUT(&s, 0, SB_OP_TEXT, "ab");
    PUT(&s, 0, SB_OP_CONTINUATION, "c");
    PUT(&s, 1, SB_OP_CONTINUATION, "");
    PUT(&s, 0, SB_OP_BINARY, "\xff");
    PUT(&s, 1, SB_OP_CONTINUATION, "");
    EXPECT(&s, NULL, W_TEXT("abc"), W_BINARY("\xff"));
    stream_free(&s);

    /* Empty fragments everywhere, and a message made of them only. */
    PUT(&s, 0, SB_OP_TEXT, "");
    PUT(&s, 0, SB_OP_CONTINUATION, "");
    PUT(&s, 0, SB_OP_CONTINUATION, "x");
    PUT(&s, 0, SB_OP_CONTINUATION, "");
    PUT(&s, 1, SB_OP_CONTINUATION, "y");
    PUT(&s, 0, SB_OP_BINARY, "");
    PUT(&s, 1, SB_OP_CONTINUATION, "");
    EXPECT(&s, NULL, W_TEXT("xy"), W_BINARY(""));
    stream_free(&s);
}

Test(reader, binary_is_not_checked_as_utf8)
{
    stream_t s = {0};
    PUT(&s, 1, SB_OP_BINARY, "\xff\xfe\xc0\x80\xed\xa0\x80");
    PUT(&s, 0, SB_OP_BINARY, "\xe2");
    PUT(&s, 1, SB_OP_CONTINUATION, "");
    EXPECT(&s, NULL, W_BINARY("\xff\xfe\xc0\x80\xed\xa0\x80"), W_BINARY("\xe2"));
    stream_free(&s);
}

Test(reader, an_incomplete_stream_reports_no_message_and_no_error)
{
    stream_t s = {0};
    PUT(&s, 0, SB_OP_TEXT, "part");
    PUT(&s, 0, SB_OP_CONTINUATION, "ial");
    EXPECT_NOTHING(&s, NULL);
    stream_free(&s);

    /* A header announcing more payload than the stream holds. */
    put_frame_mask(&s, 1, 0, SB_OP_BINARY, NULL, 1000, (const uint8_t *)"abcd");
    EXPECT_NOTHING(&s, NULL);
    stream_free(&s);
}

/* ---- reader: masking -------------------------------------------------- */

Test(reader, an_unmasked_client_frame_is_a_protocol_error)
{
    stream_t s = {0};
    put_frame_mask(&s, 1, 0, SB_OP_TEXT, "hi", 2, NULL);
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, 2));
    stream_free(&s);

    /* After a good message; also for a control frame and a 16-bit length. */
    PUT(&s, 1, SB_OP_TEXT, "ok");
    size_t at = s.len;
    put_frame_mask(&s, 1, 0, SB_OP_PING, "", 0, NULL);
    EXPECT(&s, NULL, W_TEXT("ok"), W_ERROR(SB_CLOSE_PROTOCOL_ERROR, at + 2));
    stream_free(&s);

    char big[300];
    memset(big, 'b', sizeof big);
    put_frame_mask(&s, 1, 0, SB_OP_BINARY, big, sizeof big, NULL);
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, 4));
    stream_free(&s);

    /* An unmasked continuation inside a fragmented message. */
    PUT(&s, 0, SB_OP_TEXT, "a");
    at = s.len;
    put_frame_mask(&s, 1, 0, SB_OP_CONTINUATION, "b", 1, NULL);
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, at + 2));
    stream_free(&s);
}

Test(reader, a_client_reader_refuses_masked_frames)
{
    const opts_t client = {.client = 1};
    stream_t s = {0};
    put_frame_mask(&s, 1, 0, SB_OP_TEXT, "from server", 11, NULL);
    put_frame_mask(&s, 1, 0, SB_OP_PING, "", 0, NULL);
    size_t at = s.len;
    PUT(&s, 1, SB_OP_TEXT, "masked");
    EXPECT(&s, &client, W_TEXT("from server"), W_PING(""),
           W_ERROR(SB_CLOSE_PROTOCOL_ERROR, at + HDR));
    stream_free(&s);
}

/* ---- reader: RSV bits and opcodes ------------------------------------- */

Test(reader, rsv_bits_without_an_extension_are_a_protocol_error)
{
    static const int opcodes[] = {SB_OP_TEXT, SB_OP_BINARY, SB_OP_PING, SB_OP_PONG, SB_OP_CLOSE};
    for (int rsv = 1; rsv < 8; rsv++) {
        for (size_t i = 0; i < COUNT(opcodes); i++) {
            stream_t s = {0};
            put_frame(&s, 1, rsv, opcodes[i], "", 0);
            EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, HDR));
            stream_free(&s);
        }
        /* On a continuation. */
        stream_t s = {0};
        PUT(&s, 0, SB_OP_TEXT, "a");
        size_t at = s.len;
        put_frame(&s, 1, rsv, SB_OP_CONTINUATION, "b", 1);
        EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, at + HDR));
        stream_free(&s);
    }
}

Test(reader, rsv1_with_a_negotiated_extension_marks_the_message_compressed)
{
    const opts_t deflate = {.rsv_allowed = 4};
    stream_t s = {0};
    /* Compressed payload is not UTF-8: it is not checked here. */
    put_frame(&s, 1, 4, SB_OP_TEXT, "\xff\x00\xc0\x80", 4);
    put_frame(&s, 1, 4, SB_OP_BINARY, "\x01\x02", 2);
    put_frame(&s, 0, 4, SB_OP_TEXT, "\xed\xa0", 2);
    PUT(&s, 1, SB_OP_PING, "p");
    put_frame(&s, 0, 0, SB_OP_CONTINUATION, "\x80", 1);
    put_frame(&s, 1, 0, SB_OP_CONTINUATION, "\xf8", 1);
    /* The next message without RSV1 is plain, and checked. */
    PUT(&s, 1, SB_OP_TEXT, "plain \xc3\xa9");
    EXPECT(&s, &deflate, W_ZMSG(SB_OP_TEXT, "\xff\x00\xc0\x80"), W_ZMSG(SB_OP_BINARY, "\x01\x02"),
           W_PING("p"), W_ZMSG(SB_OP_TEXT, "\xed\xa0\x80\xf8"), W_TEXT("plain \xc3\xa9"));
    stream_free(&s);

    put_frame(&s, 1, 4, SB_OP_TEXT, "\xff", 1);
    size_t at = s.len;
    PUT(&s, 1, SB_OP_TEXT, "\xff");
    EXPECT(&s, &deflate, W_ZMSG(SB_OP_TEXT, "\xff"), W_ERROR(SB_CLOSE_INVALID_DATA, at + HDR + 1));
    stream_free(&s);
}

Test(reader, only_the_negotiated_rsv_bit_is_allowed)
{
    const opts_t deflate = {.rsv_allowed = 4};
    static const int others[] = {1, 2, 3, 5, 6, 7};
    for (size_t i = 0; i < COUNT(others); i++) {
        stream_t s = {0};
        put_frame(&s, 1, others[i], SB_OP_TEXT, "x", 1);
        EXPECT(&s, &deflate, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, HDR));
        stream_free(&s);
    }
    /* RSV1 belongs on the first frame only, never on a control frame. */
    stream_t s = {0};
    put_frame(&s, 0, 4, SB_OP_TEXT, "x", 1);
    size_t at = s.len;
    put_frame(&s, 1, 4, SB_OP_CONTINUATION, "y", 1);
    EXPECT(&s, &deflate, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, at + HDR));
    stream_free(&s);

    static const int controls[] = {SB_OP_PING, SB_OP_PONG, SB_OP_CLOSE};
    for (size_t i = 0; i < COUNT(controls); i++) {
        put_frame(&s, 1, 4, controls[i], "", 0);
        EXPECT(&s, &deflate, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, HDR));
        stream_free(&s);
    }
}

Test(reader, reserved_opcodes_are_a_protocol_error)
{
    static const int reserved[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    for (size_t i = 0; i < COUNT(reserved); i++) {
        stream_t s = {0};
        put_frame(&s, 1, 0, reserved[i], "x", 1);
        EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, HDR));
        stream_free(&s);

        /* Also non-final, and inside a fragmented message. */
        PUT(&s, 1, SB_OP_TEXT, "ok");
        PUT(&s, 0, SB_OP_BINARY, "a");
        size_t at = s.len;
        put_frame(&s, 0, 0, reserved[i], "", 0);
        EXPECT(&s, NULL, W_TEXT("ok"), W_ERROR(SB_CLOSE_PROTOCOL_ERROR, at + HDR));
        stream_free(&s);
    }
}

/* ---- reader: control frame rules -------------------------------------- */

Test(reader, control_frames_over_125_bytes_are_a_protocol_error)
{
    static const int controls[] = {SB_OP_PING, SB_OP_PONG, SB_OP_CLOSE};
    uint8_t payload[126];
    memset(payload, 'x', sizeof payload);
    payload[0] = 0x03; /* 1000 for the close code */
    payload[1] = 0xe8;
    for (size_t i = 0; i < COUNT(controls); i++) {
        stream_t s = {0};
        put_frame(&s, 1, 0, controls[i], payload, 126);
        /* Refused from the header alone: 2 + 2 (16-bit length) + 4. */
        EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, 8));
        stream_free(&s);

        /* 125 bytes are fine. */
        put_frame(&s, 1, 0, controls[i], payload, 125);
        if (controls[i] == SB_OP_CLOSE) {
            EXPECT(&s, NULL, W_CLOSE_N(1000, payload + 2, 123));
        } else {
            EXPECT(&s, NULL, W_CONTROL_N(controls[i], payload, 125));
        }
        stream_free(&s);
    }
}

Test(reader, largest_ping_is_delivered_whole)
{
    uint8_t payload[125];
    fill_pattern(payload, sizeof payload, 1);
    stream_t s = {0};
    PUT(&s, 0, SB_OP_TEXT, "frag");
    put_frame(&s, 1, 0, SB_OP_PING, payload, sizeof payload);
    PUT(&s, 1, SB_OP_CONTINUATION, "ment");
    EXPECT(&s, NULL, W_CONTROL_N(SB_OP_PING, payload, sizeof payload), W_TEXT("fragment"));
    stream_free(&s);
}

Test(reader, fragmented_control_frames_are_a_protocol_error)
{
    static const int controls[] = {SB_OP_PING, SB_OP_PONG, SB_OP_CLOSE};
    for (size_t i = 0; i < COUNT(controls); i++) {
        stream_t s = {0};
        put_frame(&s, 0, 0, controls[i], "", 0);
        EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, HDR));
        stream_free(&s);

        PUT(&s, 0, SB_OP_TEXT, "a");
        size_t at = s.len;
        put_frame(&s, 0, 0, controls[i], "\x03\xe8", 2);
        PUT(&s, 1, SB_OP_CONTINUATION, "b");
        EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, at + HDR));
        stream_free(&s);
    }
}

/* ---- reader: fragmentation rules -------------------------------------- */

Test(reader, a_continuation_without_a_start_is_a_protocol_error)
{
    stream_t s = {0};
    PUT(&s, 1, SB_OP_CONTINUATION, "x");
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, HDR));
    stream_free(&s);

    PUT(&s, 0, SB_OP_CONTINUATION, "");
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, HDR));
    stream_free(&s);

    /* After a message that was complete. */
    PUT(&s, 0, SB_OP_TEXT, "a");
    PUT(&s, 1, SB_OP_CONTINUATION, "b");
    size_t at = s.len;
    PUT(&s, 1, SB_OP_CONTINUATION, "c");
    EXPECT(&s, NULL, W_TEXT("ab"), W_ERROR(SB_CLOSE_PROTOCOL_ERROR, at + HDR));
    stream_free(&s);
}

Test(reader, a_new_message_inside_a_fragmented_one_is_a_protocol_error)
{
    static const int starts[] = {SB_OP_TEXT, SB_OP_BINARY};
    for (size_t a = 0; a < COUNT(starts); a++) {
        for (size_t b = 0; b < COUNT(starts); b++) {
            for (int fin = 0; fin <= 1; fin++) {
                stream_t s = {0};
                PUT(&s, 0, starts[a], "a");
                PUT(&s, 1, SB_OP_PING, "");
                size_t at = s.len;
                put_frame(&s, fin, 0, starts[b], "b", 1);
                EXPECT(&s, NULL, W_PING(""), W_ERROR(SB_CLOSE_PROTOCOL_ERROR, at + HDR));
                stream_free(&s);
            }
        }
    }
}

/* ---- reader: UTF-8 in text messages ----------------------------------- */

Test(reader, invalid_utf8_in_a_text_frame_fails_at_the_bad_byte)
{
    static const struct {
        const char *payload;
        size_t len, bad;
    } cases[] = {
        {"\xff", 1, 0},
        {"ok\xc0\xaf", 4, 2},
        {"abc\xed\xa0\x80", 6, 4},
        {"\xf4\x90\x80\x80", 4, 1},
        {"0123456789abcdef\x80tail", 21, 16},
        {"\xe2\x82\x28", 3, 2},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        stream_t s = {0};
        put_frame(&s, 1, 0, SB_OP_TEXT, cases[i].payload, cases[i].len);
        EXPECT(&s, NULL, W_ERROR(SB_CLOSE_INVALID_DATA, HDR + cases[i].bad + 1));
        stream_free(&s);
    }
}

/* An invalid byte in the first fragment fails the connection at once: no
 * later fragment is needed (with none in the stream, the error still comes). */
Test(reader, invalid_utf8_in_the_first_fragment_fails_before_later_fragments)
{
    stream_t s = {0};
    PUT(&s, 0, SB_OP_TEXT, "ok\xc0\xafmore");
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_INVALID_DATA, HDR + 3));
    PUT(&s, 1, SB_OP_CONTINUATION, "fine");
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_INVALID_DATA, HDR + 3));
    stream_free(&s);

    /* A long first fragment (16-bit length, 8-byte header): the error comes
     * with the bad byte, not at the end of the frame. */
    char payload[1000];
    memset(payload, 'a', sizeof payload);
    payload[10] = '\xff';
    put_frame(&s, 0, 0, SB_OP_TEXT, payload, sizeof payload);
    put_frame_mask(&s, 1, 0, SB_OP_CONTINUATION, NULL, 5000, (const uint8_t *)"kkkk");
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_INVALID_DATA, 8 + 11));
    stream_free(&s);
}

Test(reader, invalid_utf8_in_a_later_fragment)
{
    stream_t s = {0};
    PUT(&s, 0, SB_OP_TEXT, "abc");
    PUT(&s, 1, SB_OP_PING, "x");
    PUT(&s, 0, SB_OP_CONTINUATION, "d");
    size_t at = s.len;
    PUT(&s, 0, SB_OP_CONTINUATION, "e\xff");
    PUT(&s, 1, SB_OP_CONTINUATION, "f");
    EXPECT(&s, NULL, W_PING("x"), W_ERROR(SB_CLOSE_INVALID_DATA, at + HDR + 2));
    stream_free(&s);

    /* A surrogate whose lead byte ends one fragment. */
    PUT(&s, 0, SB_OP_TEXT, "a\xed");
    at = s.len;
    PUT(&s, 1, SB_OP_CONTINUATION, "\xa0\x80");
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_INVALID_DATA, at + HDR + 1));
    stream_free(&s);

    /* A character cut by a fragment boundary, then a bad continuation. */
    PUT(&s, 0, SB_OP_TEXT, "\xf0\x9f");
    at = s.len;
    PUT(&s, 1, SB_OP_CONTINUATION, "\x98z");
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_INVALID_DATA, at + HDR + 2));
    stream_free(&s);
}

Test(reader, a_text_message_ending_mid_character_is_invalid)
{
    stream_t s = {0};
    PUT(&s, 1, SB_OP_TEXT, "ab\xe2\x82");
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_INVALID_DATA, s.len));
    stream_free(&s);

    PUT(&s, 0, SB_OP_TEXT, "a\xf0\x9f");
    PUT(&s, 1, SB_OP_CONTINUATION, "\x98");
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_INVALID_DATA, s.len));
    stream_free(&s);

    /* The empty final fragment is what ends it mid-character. */
    PUT(&s, 0, SB_OP_TEXT, "a\xe2\x82");
    PUT(&s, 1, SB_OP_PING, "");
    PUT(&s, 1, SB_OP_CONTINUATION, "");
    EXPECT(&s, NULL, W_PING(""), W_ERROR(SB_CLOSE_INVALID_DATA, s.len));
    stream_free(&s);

    /* A lone lead byte as the whole message. */
    PUT(&s, 1, SB_OP_TEXT, "\xc3");
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_INVALID_DATA, s.len));
    stream_free(&s);
}

/* ---- reader: close frames --------------------------------------------- */

Test(reader, close_without_payload_reports_1005)
{
    stream_t s = {0};
    PUT(&s, 1, SB_OP_CLOSE, "");
    EXPECT(&s, NULL, W_CLOSE(SB_CLOSE_NO_STATUS, ""));
    stream_free(&s);
}

Test(reader, close_with_one_byte_is_a_protocol_error)
{
    stream_t s = {0};
    PUT(&s, 1, SB_OP_CLOSE, "\x03");
    EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, s.len));
    stream_free(&s);
}

Test(reader, close_codes_that_may_not_be_sent_are_a_protocol_error)
{
    static const int invalid[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                  1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < COUNT(invalid); i++) {
        stream_t s = {0};
        put_close(&s, invalid[i], "", 0);
        EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, s.len));
        stream_free(&s);
        put_close(&s, invalid[i], "why", 3);
        EXPECT(&s, NULL, W_ERROR(SB_CLOSE_PROTOCOL_ERROR, s.len));
        stream_free(&s);
    }
}

Test(reader, valid_close_codes_are_reported_with_the_reason)
{
    static const int valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < COUNT(valid); i++) {
        stream_t s = {0};
        put_close(&s, valid[i], "bye", 3);
        EXPECT(&s, NULL, W_CLOSE(valid[i], "bye"));
        stream_free(&s);
        put_close(&s, valid[i], "", 0);
        EXPECT(&s, NULL, W_CLOSE(valid[i], ""));
        stream_free(&s);
    }

    /* A multi-byte reason, and the longest reason that fits. */
    stream_t s = {0};
    put_close(&s, 1000, "adi\xc3\xb3s \xf0\x9f\x98\x80", 11);
    EXPECT(&s, NULL, W_CLOSE(1000, "adi\xc3\xb3s \xf0\x9f\x98\x80"));
    stream_free(&s);
    char reason[123];
    memset(reason, 'r', sizeof reason);
    put_close(&s, 4000, reason, sizeof reason);
    EXPECT(&s, NULL, W_CLOSE_N(4000, reason, sizeof reason));
    stream_free(&s);
}

Test(reader, a_close_reason_that_is_not_utf8_is_invalid_data)
{
    static const struct {
        const char *reason;
        size_t len;
    } reasons[] = {
        {"\xff", 1}, {"ok\xc0\xaf", 4}, {"\xed\xa0\x80", 3}, {"cut \xe2\x82", 6}, {"\xc3", 1},
    };
    for (size_t i = 0; i < COUNT(reasons); i++) {
        stream_t s = {0};
        put_close(&s, 1000, reasons[i].reason, reasons[i].len);
        EXPECT(&s, NULL, W_ERROR(SB_CLOSE_INVALID_DATA, s.len));
        stream_free(&s);
    }
}

/* ---- reader: size limits ---------------------------------------------- */

Test(reader, max_message_counts_every_fragment)
{
    const opts_t lim = {.max_message = 10};
    stream_t s = {0};
    PUT(&s, 1, SB_OP_TEXT, "0123456789");
    PUT(&s, 0, SB_OP_BINARY, "0123");
    PUT(&s, 0, SB_OP_CONTINUATION, "4567");
    PUT(&s, 1, SB_OP_CONTINUATION, "89");
    EXPECT(&s, &lim, W_TEXT("0123456789"), W_BINARY("0123456789"));
    stream_free(&s);

    /* Refused from the header: the payload need not arrive. */
    PUT(&s, 1, SB_OP_TEXT, "0123456789X");
    EXPECT(&s, &lim, W_ERROR(SB_CLOSE_TOO_BIG, HDR));
    stream_free(&s);

    PUT(&s, 0, SB_OP_TEXT, "0123");
    PUT(&s, 0, SB_OP_CONTINUATION, "4567");
    size_t at = s.len;
    PUT(&s, 1, SB_OP_CONTINUATION, "89X");
    EXPECT(&s, &lim, W_ERROR(SB_CLOSE_TOO_BIG, at + HDR));
    stream_free(&s);

    /* Control frames do not count towards the message. */
    PUT(&s, 0, SB_OP_TEXT, "01234");
    PUT(&s, 1, SB_OP_PING, "0123456789");
    PUT(&s, 1, SB_OP_CONTINUATION, "56789");
    EXPECT(&s, &lim, W_PING("0123456789"), W_TEXT("0123456789"));
    stream_free(&s);

    /* A header announcing an enormous frame. */
    put_frame_mask(&s, 1, 0, SB_OP_BINARY, NULL, 1ull << 40, (const uint8_t *)"mask");
    EXPECT(&s, &lim, W_ERROR(SB_CLOSE_TOO_BIG, 14));
    stream_free(&s);
}

Test(reader, max_frame_limits_each_frame)
{
    const opts_t lim = {.max_frame = 8};
    stream_t s = {0};
    PUT(&s, 0, SB_OP_TEXT, "01234567");
    PUT(&s, 1, SB_OP_CONTINUATION, "89abcdef");
    EXPECT(&s, &lim, W_TEXT("0123456789abcdef"));
    stream_free(&s);

    PUT(&s, 1, SB_OP_BINARY, "012345678");
    EXPECT(&s, &lim, W_ERROR(SB_CLOSE_TOO_BIG, HDR));
    stream_free(&s);

    PUT(&s, 0, SB_OP_TEXT, "0123");
    size_t at = s.len;
    PUT(&s, 1, SB_OP_CONTINUATION, "456789abc");
    EXPECT(&s, &lim, W_ERROR(SB_CLOSE_TOO_BIG, at + HDR));
    stream_free(&s);

    /* Both limits: the message one applies to the sum. */
    const opts_t both = {.max_frame = 8, .max_message = 12};
    PUT(&s, 0, SB_OP_TEXT, "01234567");
    at = s.len;
    PUT(&s, 1, SB_OP_CONTINUATION, "89abc");
    EXPECT(&s, &both, W_ERROR(SB_CLOSE_TOO_BIG, at + HDR));
    stream_free(&s);
}

Test(reader, a_64_bit_length_with_the_top_bit_set_is_a_protocol_error)
{
    stream_t s = {0};
    PUT(&s, 1, SB_OP_TEXT, "ok");
    size_t at = s.len;
    static const uint8_t bad[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    stream_put(&s, bad, sizeof bad);
    EXPECT(&s, NULL, W_TEXT("ok"), W_ERROR(SB_CLOSE_PROTOCOL_ERROR, at + sizeof bad));
    stream_free(&s);
}

/* ---- reader: after an error ------------------------------------------- */

Test(reader, nothing_follows_an_error)
{
    stream_t s = {0};
    PUT(&s, 1, SB_OP_TEXT, "before");
    size_t at = s.len;
    put_frame(&s, 1, 0, 5, "", 0);
    PUT(&s, 1, SB_OP_TEXT, "after");
    PUT(&s, 1, SB_OP_PING, "p");
    put_close(&s, 1000, "", 0);
    EXPECT(&s, NULL, W_TEXT("before"), W_ERROR(SB_CLOSE_PROTOCOL_ERROR, at + HDR));
    stream_free(&s);
}

/* ---- reader: the event contract, step by step ------------------------- */

Test(reader, data_is_streamed_and_unmasked_in_place)
{
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    stream_t s = {0};
    put_frame_mask(&s, 1, 0, SB_OP_TEXT, "Hello", 5, key);
    cr_assert_eq(s.len, 11);

    sb__ws_reader_t r;
    sb__ws_reader_init(&r, 1, NULL);
    sb__ws_event_t ev;

    /* The header and two payload bytes. */
    uint8_t *a = dup_bytes(s.p, 8);
    cr_assert_eq(sb__ws_read(&r, a, 8, &ev), 8);
    cr_assert_eq(ev.type, SB_WS_EV_DATA);
    cr_assert_eq(ev.opcode, SB_OP_TEXT);
    cr_assert_eq(ev.data, a + 6);
    cr_assert_eq(ev.len, 2);
    cr_assert(ev.first);
    cr_assert_not(ev.last);
    cr_assert_arr_eq(ev.data, "He", 2);
    cr_assert_eq(sb__ws_read(&r, a + 8, 0, &ev), 0);
    cr_assert_eq(ev.type, SB_WS_EV_NONE);
    free(a);

    /* The rest: the mask continues at payload offset 2. */
    uint8_t *b = dup_bytes(s.p + 8, 3);
    cr_assert_eq(sb__ws_read(&r, b, 3, &ev), 3);
    cr_assert_eq(ev.type, SB_WS_EV_DATA);
    cr_assert_eq(ev.data, b);
    cr_assert_arr_eq(ev.data, "llo", 3);
    cr_assert_not(ev.first);
    cr_assert(ev.last);
    cr_assert_not(ev.compressed);
    free(b);
    stream_free(&s);
}

Test(reader, an_incomplete_control_frame_is_left_unconsumed)
{
    stream_t s = {0};
    PUT(&s, 1, SB_OP_PING, "0123456789");
    sb__ws_reader_t r;
    sb__ws_reader_init(&r, 1, NULL);
    sb__ws_event_t ev;
    for (size_t k = 0; k < s.len; k++) {
        uint8_t *p = dup_bytes(s.p, k);
        cr_assert_eq(sb__ws_read(&r, p, k, &ev), 0, "%zu bytes", k);
        cr_assert_eq(ev.type, SB_WS_EV_NONE);
        free(p);
    }
    uint8_t *p = dup_bytes(s.p, s.len);
    cr_assert_eq(sb__ws_read(&r, p, s.len, &ev), s.len);
    cr_assert_eq(ev.type, SB_WS_EV_CONTROL);
    cr_assert_eq(ev.opcode, SB_OP_PING);
    cr_assert_eq(ev.data, p + HDR);
    cr_assert_eq(ev.len, 10);
    cr_assert_arr_eq(ev.data, "0123456789", 10);
    free(p);
    stream_free(&s);
}

Test(reader, after_an_error_every_call_reports_nothing)
{
    stream_t s = {0};
    put_frame_mask(&s, 1, 0, SB_OP_TEXT, "x", 1, NULL);
    sb__ws_reader_t r;
    sb__ws_reader_init(&r, 1, NULL);
    sb__ws_event_t ev;
    cr_assert_eq(sb__ws_read(&r, s.p, s.len, &ev), 0);
    cr_assert_eq(ev.type, SB_WS_EV_ERROR);
    cr_assert_eq(ev.close_code, SB_CLOSE_PROTOCOL_ERROR);
    stream_free(&s);

    PUT(&s, 1, SB_OP_TEXT, "fine");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(sb__ws_read(&r, s.p, s.len, &ev), 0);
        cr_assert_eq(ev.type, SB_WS_EV_NONE);
    }
    stream_free(&s);
}
