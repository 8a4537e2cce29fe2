/* fuzz_frame.c — the WebSocket message reader, sb__ws_read (src/ws/reader.c),
 * driven as src/server/wsconn.c drives it: the bytes arrive in chunks, and
 * the unconsumed tail of one chunk is presented again in front of the next.
 *
 * Input: 4 bytes of settings, then the byte stream.
 *   byte 0  bit 0: frames must be masked (server side) or must not be
 *           bit 1: RSV1 negotiated (permessage-deflate), else no RSV bits
 *           bits 2-3: chunking (byte at a time, up to 7, up to 300, at once)
 *           bits 4-6: max_message (from `limits`)
 *   byte 1  bits 0-2: max_frame (from `limits`)
 *   byte 2-3  the seed of the chunk lengths
 *
 * Every read is checked against the reader's contract (ws.h), and the events
 * of the chunked run must be those of the same bytes read at once. */
#include "fuzz.h"
#include "ws/ws.h"

#define TAIL_MAX (SB_WS_MAX_HEADER + SB_WS_MAX_CONTROL)

static const uint64_t limits[8] = {0, 1, 10, 125, 126, 200, 65535, 65536};

typedef struct {
    int masked;
    uint8_t rsv;
    uint64_t max_message, max_frame;
} cfg_t;

/* The message in progress, as the caller sees it. */
typedef struct {
    int opcode; /* 0: none */
    uint8_t compressed;
    bytes_t data;
} msg_t;

static void check_data(const cfg_t *cfg, const sb__ws_event_t *ev, msg_t *m, bytes_t *log)
{
    CHECK(ev->opcode == SB_OP_TEXT || ev->opcode == SB_OP_BINARY, "data opcode %d", ev->opcode);
    CHECK(ev->first == (m->opcode == 0), "first=%d with %s message in progress", ev->first,
          m->opcode ? "a" : "no");
    CHECK(!ev->compressed || (cfg->rsv & 4), "compressed without RSV1 negotiated");
    CHECK(!cfg->max_frame || ev->len <= cfg->max_frame, "a chunk of %zu bytes, frame limit %llu",
          ev->len, (unsigned long long)cfg->max_frame);
    if (ev->first) {
        m->opcode = ev->opcode;
        m->compressed = ev->compressed;
        m->data.len = 0;
    } else {
        CHECK(ev->opcode == m->opcode, "opcode changed inside a message");
        CHECK(ev->compressed == m->compressed, "compressed changed inside a message");
    }
    put(&m->data, ev->data, ev->len);
    CHECK(!cfg->max_message || m->data.len <= cfg->max_message,
          "a message of %zu bytes, limit %llu", m->data.len, (unsigned long long)cfg->max_message);
    int text = m->opcode == SB_OP_TEXT && !m->compressed;
    /* Text is validated as it arrives: what was reported is a valid prefix. */
    if (text)
        CHECK(sb__utf8_validate(SB_UTF8_ACCEPT, m->data.p, m->data.len) != SB_UTF8_REJECT,
              "invalid UTF-8 reported as text");
    if (!ev->last)
        return;
    if (text)
        CHECK(sb__utf8_valid(m->data.p, m->data.len), "a text message ends inside a character");
    put(log, "M", 1);
    put_u32(log, (uint32_t)m->opcode << 8 | m->compressed);
    put_u32(log, (uint32_t)m->data.len);
    put(log, m->data.p, m->data.len);
    m->opcode = 0;
}

static void check_control(const sb__ws_event_t *ev, bytes_t *log)
{
    CHECK(ev->opcode == SB_OP_CLOSE || ev->opcode == SB_OP_PING || ev->opcode == SB_OP_PONG,
          "control opcode %d", ev->opcode);
    CHECK(ev->len <= SB_WS_MAX_CONTROL, "control payload of %zu bytes", ev->len);
    if (ev->opcode == SB_OP_CLOSE) {
        if (ev->len == 0) {
            CHECK(ev->close_code == SB_CLOSE_NO_STATUS, "empty close reported as %d",
                  ev->close_code);
        } else {
            CHECK(ev->len >= 2, "close payload of 1 byte accepted");
            CHECK(sb__close_code_valid(ev->close_code), "close code %d reported", ev->close_code);
            CHECK(ev->close_code == (ev->data[0] << 8 | ev->data[1]), "close code %d, payload %d",
                  ev->close_code, ev->data[0] << 8 | ev->data[1]);
            CHECK(ev->reason == (const char *)ev->data + 2 && ev->reason_len == ev->len - 2,
                  "close reason is not the rest of the payload");
            CHECK(sb__utf8_valid((const uint8_t *)ev->reason, ev->reason_len),
                  "close reason is not UTF-8");
        }
    }
    put(log, "C", 1);
    put_u32(log, (uint32_t)ev->opcode << 16 | (uint32_t)ev->close_code);
    put_u32(log, (uint32_t)ev->len);
    put(log, ev->data, ev->len);
}

/* Reads in[0..n) in chunks from ch as wsconn.c does; logs what completes. */
static void run(const cfg_t *cfg, const uint8_t *in, size_t n, chunker_t *ch, bytes_t *log)
{
    sb__ws_reader_t r;
    const sb__ws_limits_t lim = {cfg->max_message, cfg->max_frame};
    sb__ws_reader_init(&r, cfg->masked, &lim);
    r.rsv_allowed = cfg->rsv;
    uint8_t tail[TAIL_MAX];
    size_t tail_len = 0, off = 0;
    msg_t m = {0};
    int failed = 0;

    while (off < n && !failed) {
        size_t k = chunker_next(ch, n - off);
        size_t len = tail_len + k;
        /* Exactly len bytes: ASan catches a read past them. */
        uint8_t *buf = malloc(len);
        if (!buf)
            abort();
        memcpy(buf, tail, tail_len);
        memcpy(buf + tail_len, in + off, k);
        off += k;

        size_t pos = 0;
        for (;;) {
            sb__ws_event_t ev;
            size_t c = sb__ws_read(&r, buf + pos, len - pos, &ev);
            CHECK(c <= len - pos, "consumed %zu of %zu bytes", c, len - pos);
            if (ev.type == SB_WS_EV_DATA || ev.type == SB_WS_EV_CONTROL) {
                /* The payload lies in the bytes this call consumed. */
                CHECK(c > 0, "an event without consuming anything");
                CHECK(ev.data >= buf + pos && ev.data <= buf + pos + c &&
                          ev.len <= (size_t)(buf + pos + c - ev.data),
                      "event payload outside the consumed bytes");
            }
            pos += c;
            if (ev.type == SB_WS_EV_NONE) {
                tail_len = len - pos;
                CHECK(tail_len <= TAIL_MAX, "an unconsumed tail of %zu bytes", tail_len);
                memcpy(tail, buf + pos, tail_len);
                break;
            }
            if (ev.type == SB_WS_EV_ERROR) {
                CHECK(ev.close_code == SB_CLOSE_PROTOCOL_ERROR ||
                          ev.close_code == SB_CLOSE_INVALID_DATA ||
                          ev.close_code == SB_CLOSE_TOO_BIG,
                      "error with close code %d", ev.close_code);
                CHECK(ev.reason && ev.reason_len == strlen(ev.reason) && ev.reason_len > 0,
                      "an error without a reason");
                CHECK(sb__utf8_valid((const uint8_t *)ev.reason, ev.reason_len) &&
                          ev.reason_len <= SB_WS_MAX_CONTROL - 2,
                      "an error reason that cannot go into a close frame");
                put(log, "E", 1);
                put_u32(log, (uint32_t)ev.close_code);
                /* Nothing more after an error, whatever comes. */
                sb__ws_event_t after;
                CHECK(sb__ws_read(&r, buf + pos, len - pos, &after) == 0 &&
                          after.type == SB_WS_EV_NONE,
                      "the reader went on after an error");
                failed = 1;
                break;
            }
            if (ev.type == SB_WS_EV_DATA)
                check_data(cfg, &ev, &m, log);
            else if (ev.type == SB_WS_EV_CONTROL)
                check_control(&ev, log);
            else
                CHECK(0, "event type %d", (int)ev.type);
        }
        free(buf);
    }
    free(m.data.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    cfg_t cfg = {
        .masked = data[0] & 1,
        .rsv = (data[0] & 2) ? 4 : 0,
        .max_message = limits[(data[0] >> 4) & 7],
        .max_frame = limits[data[1] & 7],
    };
    uint64_t seed = (uint64_t)data[2] << 8 | data[3];
    const uint8_t *in = data + 4;
    size_t n = size - 4;

    /* The reader unmasks in place: each run reads its own copy. */
    uint8_t *copy = dup_exact(in, n);
    chunker_t ch;
    chunker_init(&ch, seed, chunk_max_of(data[0] >> 2));
    bytes_t chunked = {0};
    run(&cfg, copy, n, &ch, &chunked);

    memcpy(copy, in, n);
    chunker_init(&ch, 0, 0);
    bytes_t whole = {0};
    run(&cfg, copy, n, &ch, &whole);

    CHECK(chunked.len == whole.len && (!whole.len || memcmp(chunked.p, whole.p, whole.len) == 0),
          "read in chunks and at once, the same bytes gave different events (%zu vs %zu bytes "
          "of log)",
          chunked.len, whole.len);
    free(chunked.p);
    free(whole.p);
    free(copy);
    return 0;
}
