/* test_http.c — the HTTP/1.1 request reader (src/server/http.c).
 *
 * Most tests go through check_http(): it feeds a byte stream the way the
 * server does (a request at a time: SB_HTTP_DONE, sb__http_req_next, feed
 * the rest), whole, split in two at every index and one byte at a time, and
 * checks that every run yields the same transcript — the requests as parsed,
 * then how the stream ended (an error status, an upgrade) — and that it is
 * the expected one. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "server/http.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

#define MAX_HEAD 8192
#define MAX_BODY 1024

/* ---- transcripts ------------------------------------------------------ */

/* "METHOD url HTTP/x.y keep_alive=K upgrade=U", a line per header, and the
 * body if any. Checks that every item is NUL-terminated in the arena. */
static void describe_request(FILE *f, const sb__http_req_t *r)
{
    const char *url = sb__http_req_str(r, r->url_off);
    cr_assert_eq(url[r->url_len], '\0', "the URL is not NUL-terminated");
    fprintf(f, "%s %.*s HTTP/%d.%d keep_alive=%d upgrade=%d\n",
            http_method_str((enum http_method)r->parser.method), (int)r->url_len, url,
            r->parser.http_major, r->parser.http_minor, r->keep_alive, r->upgrade);
    for (uint16_t i = 0; i < r->nheaders; i++) {
        const sb__http_header_t *h = &r->headers[i];
        const char *name = sb__http_req_str(r, h->name_off);
        const char *value = sb__http_req_str(r, h->value_off);
        cr_assert_eq(name[h->name_len], '\0', "header %u name is not NUL-terminated", i);
        cr_assert_eq(value[h->value_len], '\0', "header %u value is not NUL-terminated", i);
        fprintf(f, "%.*s: [%.*s]\n", (int)h->name_len, name, (int)h->value_len, value);
    }
    if (r->body_len) {
        const char *body = sb__http_req_str(r, r->body_off);
        fprintf(f, "body[%u]: %.*s\n", r->body_len, (int)r->body_len, body);
    }
}

/* Feeds data[0..n) to a fresh reader: a first chunk of `first` bytes (0:
 * none), then chunks of `step` bytes (0: the rest at once). Each chunk sits
 * in its own allocation, so a read past it trips ASan. Returns the
 * transcript (free it). */
static char *transcript(const char *data, size_t n, size_t first, size_t step, size_t max_head,
                        size_t max_body)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    cr_assert_not_null(f);

    sb__http_req_t r;
    sb__http_req_init(&r, max_head, max_body);
    int ended = 0;
    for (size_t pos = 0; pos < n && !ended;) {
        size_t end = pos == 0 && first ? first : step ? pos + step : n;
        if (end > n)
            end = n;
        size_t len = end - pos;
        char *chunk = malloc(len);
        cr_assert_not_null(chunk);
        memcpy(chunk, data + pos, len);
        size_t off = 0;
        while (off < len) {
            int result;
            size_t used = sb__http_req_feed(&r, chunk + off, len - off, &result);
            cr_assert_leq(used, len - off, "consumed more than given");
            off += used;
            if (result == SB_HTTP_MORE) {
                cr_assert_eq(off, len, "SB_HTTP_MORE must consume everything");
                break;
            }
            if (result == SB_HTTP_DONE) {
                describe_request(f, &r);
                if (r.upgrade) {
                    fprintf(f, "upgrade: the rest starts at %zu\n", pos + off);
                    ended = 1;
                    break;
                }
                sb__http_req_next(&r);
                continue;
            }
            cr_assert(r.error_text && *r.error_text, "error %d without a reason", result);
            fprintf(f, "error %d\n", result);
            /* It stays failed. */
            int again;
            sb__http_req_feed(&r, "GET / HTTP/1.1\r\n\r\n", 18, &again);
            cr_assert_eq(again, result);
            ended = 1;
            break;
        }
        free(chunk);
        pos = end;
    }
    sb__http_req_free(&r);
    fclose(f);
    return text;
}

/* Streams longer than this are split at every index near either end and at
 * a stride in between: every index would be quadratic. */
#define SPLIT_ALL_LIMIT 2048

static void check_http_limits(const char *data, size_t n, size_t max_head, size_t max_body,
                              const char *want)
{
    char *whole = transcript(data, n, 0, 0, max_head, max_body);
    cr_assert_str_eq(whole, want, "fed whole:\n%s\nexpected:\n%s", whole, want);
    for (size_t k = 1; k < n; k++) {
        if (n > SPLIT_ALL_LIMIT && k > 300 && k < n - 300 && k % 97)
            continue;
        char *split = transcript(data, n, k, 0, max_head, max_body);
        cr_assert_str_eq(split, want, "split at %zu:\n%s\nexpected:\n%s", k, split, want);
        free(split);
    }
    static const size_t steps[] = {1, 7, 100};
    for (size_t i = 0; i < COUNT(steps); i++) {
        char *chunked = transcript(data, n, 0, steps[i], max_head, max_body);
        cr_assert_str_eq(chunked, want, "%zu-byte chunks:\n%s\nexpected:\n%s", steps[i], chunked,
                         want);
        free(chunked);
    }
    free(whole);
}

static void check_http(const char *data, const char *want)
{
    check_http_limits(data, strlen(data), MAX_HEAD, MAX_BODY, want);
}

/* Feeds text whole to r (initialised with the default limits) and returns
 * the result; *consumed gets the bytes consumed. */
static int feed_whole(sb__http_req_t *r, const char *text, size_t *consumed)
{
    size_t n = strlen(text);
    char *copy = malloc(n);
    cr_assert_not_null(copy);
    memcpy(copy, text, n);
    int result;
    size_t used = sb__http_req_feed(r, copy, n, &result);
    free(copy);
    if (consumed)
        *consumed = used;
    return result;
}

/* A growing string for building long requests. */
typedef struct {
    char *p;
    size_t len, cap;
} str_t;

static void str_add(str_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void str_add(str_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    if (s->len + (size_t)n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + (size_t)n + 1)
            cap *= 2;
        s->p = realloc(s->p, cap);
        cr_assert_not_null(s->p);
        s->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

static void str_repeat(str_t *s, char c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        str_add(s, "%c", c);
}

/* ---- well-formed requests --------------------------------------------- */

static const char simple_get[] = "GET /chat?room=lobby&x=1 HTTP/1.1\r\n"
                                 "Host: example.com\r\n"
                                 "User-Agent: test/1.0 (unit)\r\n"
                                 "Accept: */*\r\n"
                                 "X-Repeated: first\r\n"
                                 "x-repeated: second\r\n"
                                 "\r\n";

Test(http, simple_get)
{
    check_http(simple_get, "GET /chat?room=lobby&x=1 HTTP/1.1 keep_alive=1 upgrade=0\n"
                           "Host: [example.com]\n"
                           "User-Agent: [test/1.0 (unit)]\n"
                           "Accept: [*/*]\n"
                           "X-Repeated: [first]\n"
                           "x-repeated: [second]\n");
}

Test(http, header_lookup_is_case_insensitive_and_finds_the_first)
{
    sb__http_req_t r;
    sb__http_req_init(&r, MAX_HEAD, MAX_BODY);
    size_t consumed;
    cr_assert_eq(feed_whole(&r, simple_get, &consumed), SB_HTTP_DONE);
    cr_assert_eq(consumed, strlen(simple_get));
    cr_assert(r.complete);

    size_t len = 0;
    const char *v = sb__http_req_header(&r, "host", &len);
    cr_assert_not_null(v);
    cr_assert_eq(len, 11);
    cr_assert_str_eq(v, "example.com");
    cr_assert_str_eq(sb__http_req_header(&r, "HOST", NULL), "example.com");
    cr_assert_str_eq(sb__http_req_header(&r, "user-agent", NULL), "test/1.0 (unit)");
    cr_assert_str_eq(sb__http_req_header(&r, "X-REPEATED", &len), "first");
    cr_assert_eq(len, 5);
    cr_assert_null(sb__http_req_header(&r, "Cookie", &len));
    cr_assert_null(sb__http_req_header(&r, "Hos", NULL));
    cr_assert_null(sb__http_req_header(&r, "Hostx", NULL));
    cr_assert_str_eq(sb__http_req_str(&r, r.url_off), "/chat?room=lobby&x=1");
    cr_assert_eq(r.body_len, 0);
    sb__http_req_free(&r);
}

/* Names, values and the URL cut at every byte: the same request. */
Test(http, every_split_gives_the_same_request)
{
    check_http("OPTIONS /a/long/path/with%20escapes?q=some+query&other=value#frag HTTP/1.1\r\n"
               "Host: split.example:8080\r\n"
               "Sec-WebSocket-Protocol: chat, superchat\r\n"
               "X-Long-Header-Name-For-Splitting: value with several words in it\r\n"
               "Cookie: a=1; b=2\r\n"
               "\r\n",
               "OPTIONS /a/long/path/with%20escapes?q=some+query&other=value#frag HTTP/1.1 "
               "keep_alive=1 upgrade=0\n"
               "Host: [split.example:8080]\n"
               "Sec-WebSocket-Protocol: [chat, superchat]\n"
               "X-Long-Header-Name-For-Splitting: [value with several words in it]\n"
               "Cookie: [a=1; b=2]\n");
}

/* RFC 7230 3.2.4: optional whitespace around a value is not part of it. */
Test(http, blanks_around_values_are_not_part_of_them)
{
    check_http("GET / HTTP/1.1\r\n"
               "A:   spaced\r\n"
               "B:\tx y\r\n"
               "C: trailing  \r\n"
               "D:\t both \t \r\n"
               "E:    \r\n"
               "F:x\r\n"
               "\r\n",
               "GET / HTTP/1.1 keep_alive=1 upgrade=0\n"
               "A: [spaced]\n"
               "B: [x y]\n"
               "C: [trailing]\n"
               "D: [both]\n"
               "E: []\n"
               "F: [x]\n");
}

Test(http, empty_header_values)
{
    const char *req = "GET /e HTTP/1.1\r\n"
                      "X-Empty:\r\n"
                      "Host: h\r\n"
                      "X-Blank: \r\n"
                      "X-Last:\r\n"
                      "\r\n";
    check_http(req, "GET /e HTTP/1.1 keep_alive=1 upgrade=0\n"
                    "X-Empty: []\n"
                    "Host: [h]\n"
                    "X-Blank: []\n"
                    "X-Last: []\n");

    sb__http_req_t r;
    sb__http_req_init(&r, MAX_HEAD, MAX_BODY);
    cr_assert_eq(feed_whole(&r, req, NULL), SB_HTTP_DONE);
    size_t len = 99;
    const char *v = sb__http_req_header(&r, "x-empty", &len);
    cr_assert_not_null(v);
    cr_assert_eq(len, 0);
    cr_assert_str_eq(v, "");
    cr_assert_str_eq(sb__http_req_header(&r, "host", NULL), "h");
    cr_assert_str_eq(sb__http_req_header(&r, "x-last", NULL), "");
    sb__http_req_free(&r);
}

Test(http, pipelined_requests_are_handed_out_one_at_a_time)
{
    static const char *const parts[] = {
        "GET /first HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /second HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello",
        "GET /third HTTP/1.1\r\nHost: c\r\n\r\n",
    };
    char stream[512] = "";
    for (size_t i = 0; i < COUNT(parts); i++)
        strcat(stream, parts[i]);
    check_http(stream, "GET /first HTTP/1.1 keep_alive=1 upgrade=0\n"
                       "Host: [a]\n"
                       "POST /second HTTP/1.1 keep_alive=1 upgrade=0\n"
                       "Host: [b]\n"
                       "Content-Length: [5]\n"
                       "body[5]: hello\n"
                       "GET /third HTTP/1.1 keep_alive=1 upgrade=0\n"
                       "Host: [c]\n");

    /* Step by step: each DONE ends exactly where its request ends, and the
     * rest is fed after sb__http_req_next. */
    static const char *const urls[] = {"/first", "/second", "/third"};
    sb__http_req_t r;
    sb__http_req_init(&r, MAX_HEAD, MAX_BODY);
    size_t n = strlen(stream), off = 0, end = 0;
    for (size_t i = 0; i < COUNT(parts); i++) {
        int result;
        off += sb__http_req_feed(&r, stream + off, n - off, &result);
        end += strlen(parts[i]);
        cr_assert_eq(result, SB_HTTP_DONE, "request %zu", i);
        cr_assert_eq(off, end, "request %zu ends at %zu, not %zu", i, end, off);
        cr_assert_str_eq(sb__http_req_str(&r, r.url_off), urls[i]);
        sb__http_req_next(&r);
    }
    sb__http_req_free(&r);
}

Test(http, pipelined_requests_after_a_body_that_ends_a_chunk)
{
    /* A request ending exactly at the end of what was fed, then the next. */
    sb__http_req_t r;
    sb__http_req_init(&r, MAX_HEAD, MAX_BODY);
    size_t used;
    cr_assert_eq(feed_whole(&r, "GET /1 HTTP/1.1\r\n\r\n", &used), SB_HTTP_DONE);
    cr_assert_eq(used, 19);
    sb__http_req_next(&r);
    cr_assert_eq(feed_whole(&r, "GET /2 HTTP/1.1\r\n", &used), SB_HTTP_MORE);
    cr_assert_eq(feed_whole(&r, "X: y\r\n\r\n", &used), SB_HTTP_DONE);
    cr_assert_str_eq(sb__http_req_str(&r, r.url_off), "/2");
    cr_assert_str_eq(sb__http_req_header(&r, "x", NULL), "y");
    cr_assert_eq(r.nheaders, 1);
    sb__http_req_free(&r);
}

Test(http, an_incomplete_request_is_not_handed_out)
{
    check_http("GET /partial HTTP/1.1\r\nHost: x\r\n", "");
    check_http("GET /ok HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345",
               "GET /ok HTTP/1.1 keep_alive=1 upgrade=0\n");
}

/* ---- keep-alive ------------------------------------------------------- */

Test(http, keep_alive_by_version_and_connection_header)
{
    check_http("GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1 keep_alive=1 upgrade=0\n");
    check_http("GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.0 keep_alive=0 upgrade=0\n");
    check_http("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
               "GET / HTTP/1.0 keep_alive=1 upgrade=0\nConnection: [keep-alive]\n");
    check_http("GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
               "GET / HTTP/1.1 keep_alive=0 upgrade=0\nConnection: [close]\n");
    check_http("GET / HTTP/1.1\r\nconnection: CLOSE\r\n\r\n",
               "GET / HTTP/1.1 keep_alive=0 upgrade=0\nconnection: [CLOSE]\n");
}

/* ---- bodies ----------------------------------------------------------- */

Test(http, post_with_content_length)
{
    check_http("POST /publish HTTP/1.1\r\n"
               "Content-Type: application/json\r\n"
               "Content-Length: 27\r\n"
               "\r\n"
               "{\"room\":\"a\",\"text\":\"hello\"}",
               "POST /publish HTTP/1.1 keep_alive=1 upgrade=0\n"
               "Content-Type: [application/json]\n"
               "Content-Length: [27]\n"
               "body[27]: {\"room\":\"a\",\"text\":\"hello\"}\n");
}

Test(http, post_with_a_chunked_body)
{
    check_http("POST /publish HTTP/1.1\r\n"
               "Transfer-Encoding: chunked\r\n"
               "\r\n"
               "4\r\nWiki\r\n"
               "5;ext=1\r\npedia\r\n"
               "E\r\n in\r\n\r\nchunks.\r\n"
               "0\r\n"
               "\r\n",
               "POST /publish HTTP/1.1 keep_alive=1 upgrade=0\n"
               "Transfer-Encoding: [chunked]\n"
               "body[23]: Wikipedia in\r\n\r\nchunks.\n");
}

Test(http, a_body_at_the_limit_is_accepted)
{
    str_t s = {0};
    str_add(&s, "POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n", MAX_BODY);
    str_repeat(&s, 'b', MAX_BODY);
    char *t = transcript(s.p, s.len, 0, 0, MAX_HEAD, MAX_BODY);
    cr_assert(strstr(t, "body[1024]: bbb") != NULL, "%s", t);
    cr_assert_null(strstr(t, "error"), "%s", t);
    free(t);
    free(s.p);

    /* Chunked, exactly at the limit. */
    memset(&s, 0, sizeof s);
    str_add(&s, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 4; i++) {
        str_add(&s, "100\r\n");
        str_repeat(&s, 'c', 256);
        str_add(&s, "\r\n");
    }
    str_add(&s, "0\r\n\r\n");
    t = transcript(s.p, s.len, 0, 0, MAX_HEAD, MAX_BODY);
    cr_assert(strstr(t, "body[1024]: ccc") != NULL, "%s", t);
    cr_assert_null(strstr(t, "error"), "%s", t);
    free(t);
    free(s.p);
}

Test(http, content_length_over_max_body_is_413_before_the_body_arrives)
{
    check_http("POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n", "error 413\n");
    check_http("POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nxyz", "error 413\n");
    /* After a good pipelined request. */
    check_http("GET /ok HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n",
               "GET /ok HTTP/1.1 keep_alive=1 upgrade=0\nerror 413\n");
}

Test(http, a_chunked_body_growing_past_max_body_is_413)
{
    str_t s = {0};
    str_add(&s, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 5; i++) {
        str_add(&s, "100\r\n");
        str_repeat(&s, 'c', 256);
        str_add(&s, "\r\n");
    }
    str_add(&s, "0\r\n\r\n");
    check_http_limits(s.p, s.len, MAX_HEAD, MAX_BODY, "error 413\n");
    free(s.p);

    /* Many small chunks. */
    memset(&s, 0, sizeof s);
    str_add(&s, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 130; i++)
        str_add(&s, "8\r\n01234567\r\n");
    str_add(&s, "0\r\n\r\n");
    check_http_limits(s.p, s.len, MAX_HEAD, MAX_BODY, "error 413\n");
    free(s.p);
}

/* ---- head limits ------------------------------------------------------ */

Test(http, a_head_just_under_the_limit_is_accepted)
{
    str_t s = {0};
    str_add(&s, "GET /");
    str_repeat(&s, 'u', 4000);
    str_add(&s, " HTTP/1.1\r\nX-Big: ");
    str_repeat(&s, 'v', 4000);
    str_add(&s, "\r\n\r\n");
    cr_assert_lt(s.len, MAX_HEAD);
    char *t = transcript(s.p, s.len, 0, 1, MAX_HEAD, MAX_BODY);
    cr_assert_null(strstr(t, "error"), "%s", t);
    cr_assert(strncmp(t, "GET /uuu", 8) == 0, "%s", t);
    free(t);
    free(s.p);
}

Test(http, a_long_url_is_431)
{
    str_t s = {0};
    str_add(&s, "GET /");
    str_repeat(&s, 'u', MAX_HEAD + 100);
    str_add(&s, " HTTP/1.1\r\nHost: h\r\n\r\n");
    check_http_limits(s.p, s.len, MAX_HEAD, MAX_BODY, "error 431\n");
    free(s.p);
}

Test(http, many_headers_over_the_head_limit_are_431)
{
    str_t s = {0};
    str_add(&s, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 60; i++) {
        str_add(&s, "X-Header-%02d: ", i);
        str_repeat(&s, 'a' + i % 26, 140);
        str_add(&s, "\r\n");
    }
    str_add(&s, "\r\n");
    cr_assert_gt(s.len, MAX_HEAD);
    check_http_limits(s.p, s.len, MAX_HEAD, MAX_BODY, "error 431\n");
    free(s.p);
}

Test(http, one_huge_header_is_431)
{
    str_t s = {0};
    str_add(&s, "GET / HTTP/1.1\r\nHost: h\r\nX-Huge: ");
    str_repeat(&s, 'h', MAX_HEAD + 1);
    str_add(&s, "\r\n\r\n");
    check_http_limits(s.p, s.len, MAX_HEAD, MAX_BODY, "error 431\n");
    free(s.p);

    /* A huge name. */
    memset(&s, 0, sizeof s);
    str_add(&s, "GET / HTTP/1.1\r\nX-");
    str_repeat(&s, 'n', MAX_HEAD + 1);
    str_add(&s, ": v\r\n\r\n");
    check_http_limits(s.p, s.len, MAX_HEAD, MAX_BODY, "error 431\n");
    free(s.p);
}

Test(http, the_head_limit_is_per_request)
{
    /* Two pipelined requests of 5000 bytes each: 10000 together is fine. */
    str_t s = {0};
    for (int i = 0; i < 2; i++) {
        str_add(&s, "GET /%d HTTP/1.1\r\nX-Pad: ", i);
        str_repeat(&s, 'p', 5000);
        str_add(&s, "\r\n\r\n");
    }
    char *t = transcript(s.p, s.len, 0, 0, MAX_HEAD, MAX_BODY);
    cr_assert_null(strstr(t, "error"), "%s", t);
    cr_assert(strstr(t, "GET /0 ") && strstr(t, "GET /1 "), "%s", t);
    free(t);
    t = transcript(s.p, s.len, 0, 1000, MAX_HEAD, MAX_BODY);
    cr_assert_null(strstr(t, "error"), "%s", t);
    free(t);
    free(s.p);
}

Test(http, more_than_max_headers_is_431)
{
    str_t s = {0};
    str_add(&s, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < SB_HTTP_MAX_HEADERS; i++)
        str_add(&s, "H%d: %d\r\n", i, i);
    str_add(&s, "\r\n");
    char *t = transcript(s.p, s.len, 0, 0, MAX_HEAD, MAX_BODY);
    cr_assert_null(strstr(t, "error"), "%d headers should be accepted: %s", SB_HTTP_MAX_HEADERS, t);
    cr_assert(strstr(t, "H63: [63]\n") != NULL, "%s", t);
    free(t);
    free(s.p);

    memset(&s, 0, sizeof s);
    str_add(&s, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < SB_HTTP_MAX_HEADERS + 1; i++)
        str_add(&s, "H%d: %d\r\n", i, i);
    str_add(&s, "\r\n");
    check_http_limits(s.p, s.len, MAX_HEAD, MAX_BODY, "error 431\n");
    free(s.p);
}

/* ---- malformed requests ----------------------------------------------- */

Test(http, malformed_requests_are_400)
{
    static const char *bad[] = {
        "GET\r\n\r\n",
        "GET / HTTP/1.1 extra\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
        "FOO / HTTP/1.1\r\n\r\n",
        "get / HTTP/1.1\r\n\r\n",
        "GET / HTTP/x.1\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "GET / HTTP/1.1\r\nX : a\r\n\r\n",
        "GET / HTTP/1.1\r\nX\t: a\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\n: no name\r\n\r\n",
        "GET / HTTP/1.1\r\nX\x01Y: z\r\n\r\n",
        "GET / HTTP/1.1\r\nX(Y): z\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS ClientHello */
    };
    for (size_t i = 0; i < COUNT(bad); i++) {
        char *t = transcript(bad[i], strlen(bad[i]), 0, 0, MAX_HEAD, MAX_BODY);
        cr_assert_str_eq(t, "error 400\n", "request %zu:\n%s\ngave:\n%s", i, bad[i], t);
        free(t);
        for (size_t k = 1; k < strlen(bad[i]); k++) {
            t = transcript(bad[i], strlen(bad[i]), k, 0, MAX_HEAD, MAX_BODY);
            cr_assert_str_eq(t, "error 400\n", "request %zu split at %zu gave:\n%s", i, k, t);
            free(t);
        }
    }
}

Test(http, a_bad_request_after_a_good_one)
{
    check_http("GET /ok HTTP/1.1\r\n\r\nBLAH\r\n\r\n",
               "GET /ok HTTP/1.1 keep_alive=1 upgrade=0\nerror 400\n");
}

/* ---- upgrade ---------------------------------------------------------- */

Test(http, an_upgrade_leaves_the_following_bytes_unconsumed)
{
    static const char head[] = "GET /ws HTTP/1.1\r\n"
                               "Host: example.com\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "Sec-WebSocket-Version: 13\r\n"
                               "\r\n";
    /* A masked text frame, and bytes that would be a bad HTTP request. */
    static const char frame[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
                                "GARBAGE \x01\x02\r\n\r\n";
    char stream[sizeof head - 1 + sizeof frame - 1];
    memcpy(stream, head, sizeof head - 1);
    memcpy(stream + sizeof head - 1, frame, sizeof frame - 1);

    char want[1024];
    snprintf(want, sizeof want,
             "GET /ws HTTP/1.1 keep_alive=1 upgrade=1\n"
             "Host: [example.com]\n"
             "Upgrade: [websocket]\n"
             "Connection: [Upgrade]\n"
             "Sec-WebSocket-Key: [dGhlIHNhbXBsZSBub25jZQ==]\n"
             "Sec-WebSocket-Version: [13]\n"
             "upgrade: the rest starts at %zu\n",
             sizeof head - 1);
    check_http_limits(stream, sizeof stream, MAX_HEAD, MAX_BODY, want);
    /* With nothing after the head. */
    check_http_limits(stream, sizeof head - 1, MAX_HEAD, MAX_BODY, want);

    sb__http_req_t r;
    sb__http_req_init(&r, MAX_HEAD, MAX_BODY);
    int result;
    size_t used = sb__http_req_feed(&r, stream, sizeof stream, &result);
    cr_assert_eq(result, SB_HTTP_DONE);
    cr_assert(r.upgrade);
    cr_assert_eq(used, sizeof head - 1);
    sb__http_req_free(&r);
}

Test(http, connection_upgrade_without_upgrade_header_is_plain_http)
{
    check_http("GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
               "GET / HTTP/1.1 keep_alive=1 upgrade=0\n"
               "Connection: [upgrade]\n"
               "GET /2 HTTP/1.1 keep_alive=1 upgrade=0\n");
}

/* ---- lifetime --------------------------------------------------------- */

Test(http, free_is_idempotent_and_init_reuses)
{
    sb__http_req_t r;
    sb__http_req_init(&r, MAX_HEAD, MAX_BODY);
    sb__http_req_free(&r); /* nothing fed yet */
    sb__http_req_init(&r, MAX_HEAD, MAX_BODY);
    cr_assert_eq(feed_whole(&r, "GET /x HTTP/1.1\r\n\r\n", NULL), SB_HTTP_DONE);
    sb__http_req_free(&r);
    sb__http_req_free(&r);
    cr_assert_null(r.arena);
}
