/* fuzz_http.c — the HTTP/1.1 request reader (src/server/http.c), fed as the
 * server feeds it: in chunks, a request at a time (SB_HTTP_DONE, answer,
 * sb__http_req_next, feed the rest), pipelined requests included.
 *
 * Input: 3 bytes of settings, then the byte stream.
 *   byte 0  bits 0-1: chunking (byte at a time, up to 7, up to 300, at once)
 *           bits 2-3: max_head (from `heads`); bits 4-5: max_body (`bodies`)
 *   byte 1-2  the seed of the chunk lengths
 *
 * Each request is checked (every item NUL-terminated inside the arena,
 * header lookups agree with the header list, limits hold), errors are only
 * 400/413/431/503 and stick, and the transcript of the chunked run must be
 * that of the same bytes fed at once (see same_outcome for the one
 * exception). */
#include <strings.h>

#include "fuzz.h"
#include "server/http.h"

static const size_t heads[4] = {48, 256, 1024, 8192};
static const size_t bodies[4] = {0, 10, 100, 1024 * 1024};

/* Names the server looks up; a lookup of a name that is absent must say so. */
static const char *const lookups[] = {
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Authorization",
    "If-None-Match",
    "Content-Length",
    "Transfer-Encoding",
    "x",
};

/* An item [off, off+len) of the arena, NUL-terminated inside it. */
static void check_item(const sb__http_req_t *r, uint32_t off, uint32_t len, const char *what)
{
    CHECK((uint64_t)off + len < r->arena_len, "%s [%u, +%u) outside the arena (%u bytes)", what,
          off, len, r->arena_len);
    CHECK(r->arena[off + len] == '\0', "%s is not NUL-terminated", what);
}

/* A value handed out by a lookup: inside the arena, NUL-terminated. */
static void check_value(const sb__http_req_t *r, const char *v, size_t len)
{
    CHECK(v >= r->arena && v + len < r->arena + r->arena_len, "a header value outside the arena");
    CHECK(v[len] == '\0', "a header value is not NUL-terminated");
}

static void check_request(const sb__http_req_t *r, bytes_t *log)
{
    CHECK(r->complete, "SB_HTTP_DONE for an incomplete request");
    CHECK(r->arena, "a request without an arena");
    CHECK(r->nheaders <= SB_HTTP_MAX_HEADERS, "%u headers", r->nheaders);
    CHECK(r->head_size <= r->max_head, "a head of %zu bytes, limit %zu", r->head_size, r->max_head);
    CHECK(r->body_len <= r->max_body, "a body of %u bytes, limit %zu", r->body_len, r->max_body);
    check_item(r, r->url_off, r->url_len, "the URL");
    if (r->body_len)
        check_item(r, r->body_off, r->body_len, "the body");

    put(log, "R", 1);
    put_u32(log, (uint32_t)r->parser.method << 16 | (uint32_t)r->parser.http_major << 8 |
                     r->parser.http_minor);
    put_u32(log, (uint32_t)r->keep_alive << 8 | r->upgrade);
    put_u32(log, r->url_len);
    put(log, r->arena + r->url_off, r->url_len);
    put_u32(log, r->nheaders);
    for (uint16_t i = 0; i < r->nheaders; i++) {
        const sb__http_header_t *h = &r->headers[i];
        check_item(r, h->name_off, h->name_len, "a header name");
        check_item(r, h->value_off, h->value_len, "a header value");
        const char *name = r->arena + h->name_off;
        CHECK(h->name_len > 0 && strlen(name) == h->name_len, "a header name of %u bytes",
              h->name_len);
        /* Looking the name up finds the first header of that name. */
        size_t len = 0;
        const char *v = sb__http_req_header(r, name, &len);
        CHECK(v, "header %u (%s) not found by its own name", i, name);
        check_value(r, v, len);
        uint16_t first = 0;
        while (first < i &&
               !(r->headers[first].name_len == h->name_len &&
                 strncasecmp(r->arena + r->headers[first].name_off, name, h->name_len) == 0))
            first++;
        CHECK(v == r->arena + r->headers[first].value_off && len == r->headers[first].value_len,
              "the lookup of %s is not its first header", name);
        put_u32(log, h->name_len);
        put(log, name, h->name_len);
        put_u32(log, h->value_len);
        put(log, r->arena + h->value_off, h->value_len);
    }
    for (size_t i = 0; i < sizeof lookups / sizeof lookups[0]; i++) {
        size_t len = 0;
        const char *v = sb__http_req_header(r, lookups[i], &len);
        if (v)
            check_value(r, v, len);
    }
    put_u32(log, r->body_len);
    if (r->body_len)
        put(log, r->arena + r->body_off, r->body_len);
}

/* Feeds in[0..n) in chunks from ch; logs the transcript. */
static void run(const uint8_t *in, size_t n, size_t max_head, size_t max_body, chunker_t *ch,
                bytes_t *log)
{
    sb__http_req_t r;
    sb__http_req_init(&r, max_head, max_body);
    int ended = 0;
    for (size_t pos = 0; pos < n && !ended;) {
        size_t len = chunker_next(ch, n - pos);
        /* Each chunk in its own block, freed after it was fed: a read past
         * it, or a pointer kept into it, trips ASan. */
        char *chunk = (char *)dup_exact(in + pos, len);
        size_t off = 0;
        while (off < len) {
            int result;
            size_t used = sb__http_req_feed(&r, chunk + off, len - off, &result);
            CHECK(used <= len - off, "consumed %zu of %zu bytes", used, len - off);
            off += used;
            if (result == SB_HTTP_MORE) {
                CHECK(off == len, "SB_HTTP_MORE with %zu bytes left", len - off);
                break;
            }
            if (result == SB_HTTP_DONE) {
                check_request(&r, log);
                if (r.upgrade) {
                    /* The rest is the new protocol's. */
                    put(log, "U", 1);
                    put_u32(log, (uint32_t)(pos + off));
                    ended = 1;
                    break;
                }
                sb__http_req_next(&r);
                continue;
            }
            CHECK(result == 400 || result == 413 || result == 431 || result == 503,
                  "error status %d", result);
            CHECK(r.error == result && r.error_text && *r.error_text, "error %d without a reason",
                  result);
            put(log, "E", 1);
            put_u32(log, (uint32_t)result);
            int again;
            CHECK(sb__http_req_feed(&r, "GET / HTTP/1.1\r\n\r\n", 18, &again) == 0 &&
                      again == result,
                  "the reader went on after error %d", result);
            ended = 1;
            break;
        }
        free(chunk);
        pos += len;
    }
    sb__http_req_free(&r);
}

/* The error status a transcript ends with, or 0. */
static uint32_t final_error(const bytes_t *b)
{
    uint32_t status = 0;
    if (b->len >= 5 && b->p[b->len - 5] == 'E')
        memcpy(&status, b->p + b->len - 4, 4);
    return status;
}

/* Do two transcripts of the same bytes agree? They must be identical, with
 * one exception: a request that is both malformed and over a head limit
 * (431) may be refused for either. http-parser hands a token to its callback
 * when the token ends or the input does, and the callbacks count the head:
 * fed at once, a malformed byte further on can stop the parser before the
 * callback that would have found the head too large; fed in pieces, that
 * callback comes first. Either way the request is refused. */
static int same_outcome(const bytes_t *a, const bytes_t *b)
{
    if (a->len == b->len && (!a->len || memcmp(a->p, b->p, a->len) == 0))
        return 1;
    uint32_t ea = final_error(a), eb = final_error(b);
    return ((ea == 400 && eb == 431) || (ea == 431 && eb == 400)) && a->len == b->len &&
           memcmp(a->p, b->p, a->len - 4) == 0;
}

/* Prints a transcript, escaped, for the report of a mismatch. */
static void dump(const char *label, const bytes_t *b)
{
    fprintf(stderr, "%s (%zu bytes): \"", label, b->len);
    for (size_t i = 0; i < b->len; i++) {
        uint8_t c = b->p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t max_head = heads[(data[0] >> 2) & 3], max_body = bodies[(data[0] >> 4) & 3];
    chunker_t ch;
    chunker_init(&ch, (uint64_t)data[1] << 8 | data[2], chunk_max_of(data[0]));
    const uint8_t *in = data + 3;
    size_t n = size - 3;

    bytes_t chunked = {0}, whole = {0};
    run(in, n, max_head, max_body, &ch, &chunked);
    chunker_init(&ch, 0, 0);
    run(in, n, max_head, max_body, &ch, &whole);
    if (!same_outcome(&chunked, &whole)) {
        dump("in chunks", &chunked);
        dump("at once", &whole);
        CHECK(0, "fed in chunks and at once, the same bytes gave different transcripts");
    }
    free(chunked.p);
    free(whole.p);
    return 0;
}
