/* test_deflate.c — permessage-deflate (src/ws/deflate.c): the negotiation
 * against real browser and library offers and RFC 7692's rules, compression
 * checked byte for byte against zlib, inflation of the RFC's examples and
 * of zlib's output at every level and window size fed whole, split at every
 * point and a byte at a time, context takeover in both directions, and the
 * limits: a 1 GiB compression bomb refused at 1 MiB with bounded memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <criterion/criterion.h>
#include <zlib.h>

#include "ws/deflate.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---------------------------------------------------------- */

static sb__pmd_policy_t default_policy(void)
{
    sb__pmd_policy_t p;
    sb__pmd_policy_default(&p);
    return p;
}

/* Negotiates value (given in a block of exactly its length, so a read past
 * it trips ASan). */
static int negotiate(const sb__pmd_policy_t *p, const char *value, sb__pmd_params_t *params,
                     char *resp)
{
    size_t n = strlen(value);
    char *copy = malloc(n ? n : 1);
    cr_assert_not_null(copy);
    memcpy(copy, value, n);
    int r = sb__pmd_negotiate(p, copy, n, params, resp);
    free(copy);
    return r;
}

static sb__pmd_params_t params_of(const sb__pmd_policy_t *p, const char *offer)
{
    sb__pmd_params_t params;
    char resp[SB_PMD_RESPONSE_MAX];
    cr_assert_eq(negotiate(p, offer, &params, resp), 1, "offer [%s] refused", offer);
    return params;
}

static sb__pmd_t *codec(const sb__pmd_policy_t *p)
{
    sb__pmd_t *pmd;
    cr_assert_eq(sb__pmd_new(p, &pmd), 0);
    return pmd;
}

/* A growable output like the connection's reassembly buffer. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

static void buf_reset(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    cr_assert_not_null(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

/* Feeds p[0..n) as chunks cut at cuts[0..ncuts) (increasing), each chunk in
 * a block of exactly its size. */
static int inflate_cut(sb__pmd_t *pmd, sb__pmd_conn_t *pc, const uint8_t *p, size_t n,
                       const size_t *cuts, size_t ncuts, size_t max, buf_t *out)
{
    size_t start = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        uint8_t *chunk = dup_exact(p + start, end - start);
        int r = sb__pmd_inflate(pmd, pc, chunk, end - start, i == ncuts, &out->p, &out->len,
                                &out->cap, max);
        free(chunk);
        if (r < 0)
            return r;
        start = end;
    }
    return 0;
}

static int inflate_whole(sb__pmd_t *pmd, sb__pmd_conn_t *pc, const uint8_t *p, size_t n, size_t max,
                         buf_t *out)
{
    return inflate_cut(pmd, pc, p, n, NULL, 0, max, out);
}

/* Inflates one message for a fresh connection with params, whole, split in
 * two at every point and a byte at a time; each way must give the same
 * result (rc) and, on success, exactly want. */
static void check_inflate(const sb__pmd_params_t *params, const uint8_t *p, size_t n, size_t max,
                          int rc, const void *want, size_t want_len)
{
    sb__pmd_policy_t pol = default_policy();
    sb__pmd_t *pmd = codec(&pol);
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    cr_assert_not_null(cuts);
    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    /* way 0: whole; 1..n+1: split at 0..n; n+2: bytewise */
    for (size_t way = 0; way <= n + 2; way++) {
        sb__pmd_conn_t pc;
        sb__pmd_conn_init(&pc, params);
        buf_t out = {0};
        int r;
        if (way == 0) {
            r = inflate_whole(pmd, &pc, p, n, max, &out);
        } else if (way <= n + 1) {
            size_t cut = way - 1;
            r = inflate_cut(pmd, &pc, p, n, &cut, 1, max, &out);
        } else {
            r = inflate_cut(pmd, &pc, p, n, cuts, n ? n - 1 : 0, max, &out);
        }
        cr_assert_eq(r, rc, "way %zu of %zu-byte input: got %d (%s), want %d", way, n, r,
                     sb__pmd_strerror(r), rc);
        if (rc == 0) {
            cr_assert_eq(out.len, want_len, "way %zu: %zu bytes, want %zu", way, out.len, want_len);
            cr_assert(want_len == 0 || memcmp(out.p, want, want_len) == 0, "way %zu", way);
        }
        if (max)
            cr_assert_leq(out.cap, max, "way %zu: buffer of %zu over the limit %zu", way, out.cap,
                          max);
        cr_assert_null(pc.inflater, "way %zu: a decompressor is still held", way);
        sb__pmd_conn_free(pmd, &pc);
        buf_reset(&out);
    }
    free(cuts);
    sb__pmd_free(pmd);
}

/* zlib, the reference: a raw deflate of in with a sync flush, the tail
 * stripped, as a peer sends it. Returns the payload length. */
static size_t zlib_deflate(z_stream *z, const void *in, size_t len, uint8_t *out, size_t cap,
                           int flush)
{
    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)len;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int r = deflate(z, flush);
    cr_assert(r == Z_OK || r == Z_STREAM_END, "deflate: %d", r);
    cr_assert_eq(z->avail_in, 0u);
    cr_assert_gt(z->avail_out, 0u);
    size_t n = cap - z->avail_out;
    if (flush == Z_SYNC_FLUSH) {
        cr_assert_geq(n, 4u);
        cr_assert_eq(memcmp(out + n - 4, "\x00\x00\xff\xff", 4), 0);
        n -= 4;
    }
    return n;
}

static size_t zlib_deflate_once(int level, int window_bits, const void *in, size_t len,
                                uint8_t *out, size_t cap)
{
    z_stream z = {0};
    cr_assert_eq(deflateInit2(&z, level, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t n = zlib_deflate(&z, in, len, out, cap, Z_SYNC_FLUSH);
    deflateEnd(&z);
    return n;
}

/* A peer's decompressor: payload + tail through z; returns the length. */
static size_t zlib_inflate(z_stream *z, const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    uint8_t *msg = malloc(n + 4);
    cr_assert_not_null(msg);
    memcpy(msg, in, n);
    memcpy(msg + n, "\x00\x00\xff\xff", 4);
    z->next_in = msg;
    z->avail_in = (uInt)(n + 4);
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int r = inflate(z, Z_SYNC_FLUSH);
    cr_assert_eq(r, Z_OK, "inflate: %d (%s)", r, z->msg ? z->msg : "");
    cr_assert_eq(z->avail_in, 0u);
    free(msg);
    return cap - z->avail_out;
}

/* Compressible text with repeats both near and more than 512 bytes apart,
 * so small windows make a difference. */
static size_t sample_text(char *out, size_t cap, unsigned seed)
{
    static const char *words[] = {"room",   "general", "message", "alice", "bob",     "typing",
                                  "deploy", "rollout", "stalled", "logs",  "latency", "cache"};
    size_t n = 0;
    unsigned x = seed * 2654435761u + 1;
    while (n + 96 < cap) {
        x = x * 1103515245u + 12345u;
        n += (size_t)snprintf(
            out + n, cap - n,
            "{\"type\":\"message\",\"id\":%u,\"from\":\"%s\",\"content\":\"%s %s\"}",
            (x >> 8) % 100000, words[(x >> 3) % 12], words[(x >> 13) % 12], words[(x >> 17) % 12]);
    }
    return n;
}

static void random_bytes(uint8_t *p, size_t n, unsigned seed)
{
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

/* ---- negotiation ------------------------------------------------------ */

typedef struct {
    const char *offer;
    const char *response; /* NULL: declined */
    uint8_t server_no_takeover, client_no_takeover, server_bits, client_bits;
} nego_case_t;

static void check_nego(const sb__pmd_policy_t *p, const nego_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const nego_case_t *c = &cases[i];
        sb__pmd_params_t params;
        char resp[SB_PMD_RESPONSE_MAX];
        memset(resp, 'x', sizeof resp);
        int r = negotiate(p, c->offer, &params, resp);
        if (!c->response) {
            cr_assert_eq(r, 0, "[%s] should be declined, got [%s]", c->offer, resp);
            cr_assert_eq(params.enabled, 0);
            cr_assert_str_eq(resp, "");
            continue;
        }
        cr_assert_eq(r, 1, "[%s] should be accepted", c->offer);
        cr_assert_str_eq(resp, c->response, "[%s]", c->offer);
        cr_assert_eq(params.enabled, 1);
        cr_assert_eq(params.server_no_takeover, c->server_no_takeover, "[%s]", c->offer);
        cr_assert_eq(params.client_no_takeover, c->client_no_takeover, "[%s]", c->offer);
        cr_assert_eq(params.server_window_bits, c->server_bits, "[%s]", c->offer);
        cr_assert_eq(params.client_window_bits, c->client_bits, "[%s]", c->offer);
        /* The answer is itself a well-formed permessage-deflate element. */
        sb__pmd_params_t again;
        char resp2[SB_PMD_RESPONSE_MAX];
        cr_assert_eq(negotiate(p, resp, &again, resp2), 1, "answer [%s] does not parse", resp);
    }
}

#define BOTH_NCT "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

Test(negotiate, offers_of_real_clients_get_no_context_takeover)
{
    static const nego_case_t cases[] = {
        /* Chrome, Node's ws (default perMessageDeflate: true) */
        {"permessage-deflate; client_max_window_bits", BOTH_NCT, 1, 1, 15, 15},
        /* Firefox, Safari */
        {"permessage-deflate", BOTH_NCT, 1, 1, 15, 15},
        /* Python websockets' default */
        {"permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
         BOTH_NCT "; server_max_window_bits=12; client_max_window_bits=12", 1, 1, 12, 12},
        /* ws with serverNoContextTakeover/clientNoContextTakeover */
        {"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "client_max_window_bits",
         BOTH_NCT, 1, 1, 15, 15},
    };
    sb__pmd_policy_t p = default_policy();
    check_nego(&p, cases, COUNT(cases));
}

Test(negotiate, window_bits_answers_follow_rfc_7692)
{
    static const nego_case_t cases[] = {
        /* server_max_window_bits offered: answered with the same or less */
        {"permessage-deflate; server_max_window_bits=10", BOTH_NCT "; server_max_window_bits=10", 1,
         1, 10, 15},
        {"permessage-deflate; server_max_window_bits=15", BOTH_NCT "; server_max_window_bits=15", 1,
         1, 15, 15},
        {"permessage-deflate; server_max_window_bits=9", BOTH_NCT "; server_max_window_bits=9", 1,
         1, 9, 15},
        /* client_max_window_bits with a value: the client already limits itself */
        {"permessage-deflate; client_max_window_bits=8", BOTH_NCT "; client_max_window_bits=8", 1,
         1, 15, 8},
        {"permessage-deflate; client_max_window_bits=15", BOTH_NCT, 1, 1, 15, 15},
    };
    sb__pmd_policy_t p = default_policy();
    check_nego(&p, cases, COUNT(cases));
}

Test(negotiate, a_smaller_policy_window_is_announced_only_where_allowed)
{
    static const nego_case_t cases[] = {
        /* Offered client_max_window_bits: the answer may lower it. */
        {"permessage-deflate; client_max_window_bits", BOTH_NCT "; client_max_window_bits=10", 1, 1,
         10, 10},
        {"permessage-deflate; client_max_window_bits=9", BOTH_NCT "; client_max_window_bits=9", 1,
         1, 10, 9},
        /* Not offered: the answer may not carry it, and the server's own
         * smaller window needs no announcing. */
        {"permessage-deflate", BOTH_NCT, 1, 1, 10, 15},
        {"permessage-deflate; server_max_window_bits=12", BOTH_NCT "; server_max_window_bits=10", 1,
         1, 10, 15},
    };
    sb__pmd_policy_t p = default_policy();
    p.max_window_bits = 10;
    check_nego(&p, cases, COUNT(cases));
}

Test(negotiate, context_takeover_when_the_policy_allows_it)
{
    static const nego_case_t cases[] = {
        {"permessage-deflate; client_max_window_bits", "permessage-deflate", 0, 0, 15, 15},
        {"permessage-deflate", "permessage-deflate", 0, 0, 15, 15},
        /* What the client asks for is granted and echoed. */
        {"permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover", 1, 0, 15, 15},
        {"permessage-deflate; client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover", 0, 1, 15, 15},
        {"permessage-deflate; client_max_window_bits=11",
         "permessage-deflate; client_max_window_bits=11", 0, 0, 15, 11},
    };
    sb__pmd_policy_t p = default_policy();
    p.allow_context_takeover = 1;
    check_nego(&p, cases, COUNT(cases));
}

Test(negotiate, syntax_variants_are_understood)
{
    static const nego_case_t cases[] = {
        {"permessage-deflate; server_max_window_bits=\"10\"",
         BOTH_NCT "; server_max_window_bits=10", 1, 1, 10, 15},
        {"permessage-deflate; server_max_window_bits=\"1\\1\"",
         BOTH_NCT "; server_max_window_bits=11", 1, 1, 11, 15},
        {"  permessage-deflate ;\tclient_max_window_bits = 12 ;server_max_window_bits= 13  ",
         BOTH_NCT "; server_max_window_bits=13; client_max_window_bits=12", 1, 1, 13, 12},
        {"PerMessage-Deflate; Client_Max_Window_Bits", BOTH_NCT, 1, 1, 15, 15},
        {"permessage-deflate;client_no_context_takeover;server_no_context_takeover", BOTH_NCT, 1, 1,
         15, 15},
        /* other extensions, several headers joined, empty list items */
        {"x-webkit-deflate-frame, permessage-deflate", BOTH_NCT, 1, 1, 15, 15},
        {"foo; a=\"x, permessage-deflate; bar\", permessage-deflate; server_max_window_bits=11",
         BOTH_NCT "; server_max_window_bits=11", 1, 1, 11, 15},
        {", ,permessage-deflate,", BOTH_NCT, 1, 1, 15, 15},
        {"mux; max-channels=4; flow-control, permessage-deflate", BOTH_NCT, 1, 1, 15, 15},
    };
    sb__pmd_policy_t p = default_policy();
    check_nego(&p, cases, COUNT(cases));
}

Test(negotiate, invalid_offers_are_declined)
{
    static const char *offers[] = {
        "",
        "   ",
        "x-webkit-deflate-frame",
        "permessage-deflat",
        "permessage-deflate-x",
        "permessage-deflate; foo", /* unknown parameter */
        "permessage-deflate; foo=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover=1", /* takes no value */
        "permessage-deflate; client_no_context_takeover=\"\"",
        "permessage-deflate; server_max_window_bits", /* needs a value */
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=015", /* leading zero */
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=1a",
        "permessage-deflate; server_max_window_bits=100000000000000000009",
        "permessage-deflate; server_max_window_bits=\"\"",
        "permessage-deflate; server_max_window_bits=\"16\"",
        "permessage-deflate; server_max_window_bits=\"10 \"",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=", /* bad syntax */
        "permessage-deflate;",
        "permessage-deflate;; client_max_window_bits",
        "permessage-deflate; =10",
        "permessage-deflate client_max_window_bits",
        "permessage-deflate; client_max_window_bits=\"10",      /* unterminated */
        "permessage-deflate; client_max_window_bits=\"1\x01\"", /* control character */
        "permessage-deflate; client_max_window_bits=10 11",
        "permessage-deflate\x01",
        "\"permessage-deflate\"",
        "permessage-deflate; server_max_window_bits=8", /* zlib cannot */
    };
    sb__pmd_policy_t p = default_policy();
    for (size_t i = 0; i < COUNT(offers); i++) {
        sb__pmd_params_t params;
        char resp[SB_PMD_RESPONSE_MAX];
        cr_assert_eq(negotiate(&p, offers[i], &params, resp), 0, "[%s] accepted as [%s]", offers[i],
                     resp);
        cr_assert_eq(params.enabled, 0);
        cr_assert_str_eq(resp, "");
        /* ... and the next offer is tried (unless an unterminated quoted
         * string swallows it). */
        size_t quotes = 0;
        for (const char *q = offers[i]; *q; q++)
            quotes += *q == '"';
        if (quotes % 2)
            continue;
        char joined[256];
        snprintf(joined, sizeof joined, "%s, permessage-deflate; server_max_window_bits=14",
                 offers[i]);
        cr_assert_eq(negotiate(&p, joined, &params, resp), 1, "[%s]", joined);
        cr_assert_str_eq(resp, BOTH_NCT "; server_max_window_bits=14", "[%s]", joined);
    }
}

Test(negotiate, a_disabled_policy_or_no_header_accepts_nothing)
{
    sb__pmd_policy_t p = default_policy();
    sb__pmd_params_t params;
    char resp[SB_PMD_RESPONSE_MAX];
    cr_assert_eq(sb__pmd_negotiate(&p, NULL, 0, &params, resp), 0);
    p.enabled = 0;
    cr_assert_eq(negotiate(&p, "permessage-deflate", &params, resp), 0);
    cr_assert_eq(params.enabled, 0);
}

Test(negotiate, only_the_given_length_is_read)
{
    sb__pmd_policy_t p = default_policy();
    sb__pmd_params_t params;
    char resp[SB_PMD_RESPONSE_MAX];
    const char *v = "permessage-deflate; server_max_window_bits=12";
    /* Cut inside the value: "=1" is not a valid window size. */
    cr_assert_eq(sb__pmd_negotiate(&p, v, strlen(v) - 1, &params, resp), 0);
    cr_assert_eq(sb__pmd_negotiate(&p, v, strlen("permessage-deflate"), &params, resp), 1);
    cr_assert_str_eq(resp, BOTH_NCT);
}

Test(negotiate, the_longest_answer_fits)
{
    sb__pmd_policy_t p = default_policy();
    p.max_window_bits = 10;
    sb__pmd_params_t params;
    char resp[SB_PMD_RESPONSE_MAX];
    cr_assert_eq(negotiate(&p,
                           "permessage-deflate; server_max_window_bits=15; client_max_window_bits",
                           &params, resp),
                 1);
    cr_assert_str_eq(resp, BOTH_NCT "; server_max_window_bits=10; client_max_window_bits=10");
    cr_assert_lt(strlen(resp), (size_t)SB_PMD_RESPONSE_MAX);
}

Test(policy, out_of_range_fields_are_refused_with_a_reason)
{
    sb__pmd_policy_t ok = default_policy();
    cr_assert_eq(sb__pmd_policy_check(&ok, NULL), 0);
    cr_assert_eq(ok.level, 6);
    cr_assert_eq(ok.min_size, (size_t)64);
    cr_assert_eq(ok.allow_context_takeover, 0);
    cr_assert_eq(ok.max_window_bits, 15);
    sb__pmd_policy_t bad[5];
    for (size_t i = 0; i < COUNT(bad); i++)
        bad[i] = ok;
    bad[0].level = -1;
    bad[1].level = 10;
    bad[2].max_window_bits = 8;
    bad[3].max_window_bits = 16;
    bad[4].mem_level = 0;
    for (size_t i = 0; i < COUNT(bad); i++) {
        const char *why = NULL;
        cr_assert_eq(sb__pmd_policy_check(&bad[i], &why), SB_EINVAL, "case %zu", i);
        cr_assert_not_null(why);
        sb__pmd_t *pmd = (sb__pmd_t *)1;
        cr_assert_eq(sb__pmd_new(&bad[i], &pmd), SB_EINVAL);
        cr_assert_null(pmd);
    }
}

/* ---- inflation: RFC 7692 7.2.3 ---------------------------------------- */

static const uint8_t hello_block[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};

Test(inflate, rfc_7692_examples)
{
    sb__pmd_policy_t p = default_policy();
    sb__pmd_params_t nct = params_of(&p, "permessage-deflate");
    static const uint8_t stored[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 0x48,
                                     0x65, 0x6c, 0x6c, 0x6f, 0x00};
    static const uint8_t bfinal[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    static const uint8_t two_blocks[] = {0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff,
                                         0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00};
    /* 7.2.3.1 (also its fragmented form: every split is tried), 7.2.3.3,
     * 7.2.3.4, 7.2.3.5 */
    check_inflate(&nct, hello_block, sizeof hello_block, 0, 0, "Hello", 5);
    check_inflate(&nct, stored, sizeof stored, 0, 0, "Hello", 5);
    check_inflate(&nct, bfinal, sizeof bfinal, 0, 0, "Hello", 5);
    check_inflate(&nct, two_blocks, sizeof two_blocks, 0, 0, "Hello", 5);
    /* The limit counts inflated bytes. */
    check_inflate(&nct, hello_block, sizeof hello_block, 5, 0, "Hello", 5);
    check_inflate(&nct, hello_block, sizeof hello_block, 4, SB_ETOOBIG, NULL, 0);
    check_inflate(&nct, stored, sizeof stored, 4, SB_ETOOBIG, NULL, 0);
}

Test(inflate, rfc_7692_shared_window_needs_context_takeover)
{
    /* 7.2.3.2: the second "Hello" is a reference into the first. */
    static const uint8_t second[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    sb__pmd_policy_t p = default_policy();
    p.allow_context_takeover = 1;
    sb__pmd_params_t keep = params_of(&p, "permessage-deflate");
    cr_assert_eq(keep.client_no_takeover, 0);
    sb__pmd_t *pmd = codec(&p);
    sb__pmd_conn_t pc;
    sb__pmd_conn_init(&pc, &keep);
    buf_t out = {0};
    cr_assert_eq(inflate_whole(pmd, &pc, hello_block, sizeof hello_block, 0, &out), 0);
    cr_assert_eq(inflate_whole(pmd, &pc, second, sizeof second, 0, &out), 0);
    cr_assert_eq(out.len, 10u);
    cr_assert_eq(memcmp(out.p, "HelloHello", 10), 0);
    cr_assert_not_null(pc.inflater, "context takeover keeps the decompressor");
    sb__pmd_conn_free(pmd, &pc);
    cr_assert_null(pc.inflater);
    buf_reset(&out);
    sb__pmd_free(pmd);

    /* Without context takeover the same bytes refer to nothing: 1007. */
    sb__pmd_params_t nct = params_of(&p, "permessage-deflate; client_no_context_takeover");
    check_inflate(&nct, second, sizeof second, 0, SB_EPROTO, NULL, 0);
    cr_assert_eq(sb__pmd_close_code(SB_EPROTO), 1007);
}

Test(inflate, a_final_block_keeps_the_window_with_context_takeover)
{
    /* A client that flushes with BFINAL (7.2.3.4) and keeps its context:
     * the next message may still refer to the previous one. */
    const char *a = "The quick brown fox jumps over the lazy dog, again and again.";
    uint8_t m1[256], m2[256];
    z_stream z = {0};
    cr_assert_eq(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t n1 = zlib_deflate(&z, a, strlen(a), m1, sizeof m1, Z_FINISH);
    cr_assert_eq(deflateReset(&z), Z_OK);
    cr_assert_eq(deflateSetDictionary(&z, (const Bytef *)a, (uInt)strlen(a)), Z_OK);
    size_t n2 = zlib_deflate(&z, a, strlen(a), m2, sizeof m2, Z_SYNC_FLUSH);
    deflateEnd(&z);
    cr_assert_lt(n2, (size_t)12, "the second message should be a back-reference");

    sb__pmd_policy_t p = default_policy();
    p.allow_context_takeover = 1;
    sb__pmd_params_t keep = params_of(&p, "permessage-deflate");
    sb__pmd_t *pmd = codec(&p);
    sb__pmd_conn_t pc;
    sb__pmd_conn_init(&pc, &keep);
    buf_t out = {0};
    cr_assert_eq(inflate_whole(pmd, &pc, m1, n1, 0, &out), 0);
    cr_assert_eq(inflate_whole(pmd, &pc, m2, n2, 0, &out), 0);
    cr_assert_eq(out.len, 2 * strlen(a));
    cr_assert_eq(memcmp(out.p, a, strlen(a)), 0);
    cr_assert_eq(memcmp(out.p + strlen(a), a, strlen(a)), 0);
    sb__pmd_conn_free(pmd, &pc);
    buf_reset(&out);
    sb__pmd_free(pmd);
}

Test(inflate, an_empty_compressed_message_is_empty)
{
    sb__pmd_policy_t p = default_policy();
    sb__pmd_params_t nct = params_of(&p, "permessage-deflate");
    static const uint8_t empty_block[] = {0x00}; /* what zlib makes of "" */
    check_inflate(&nct, empty_block, sizeof empty_block, 0, 0, "", 0);
    check_inflate(&nct, empty_block, 0, 0, 0, "", 0);
}

Test(inflate, truncated_and_corrupt_data_is_refused)
{
    sb__pmd_policy_t p = default_policy();
    sb__pmd_params_t nct = params_of(&p, "permessage-deflate");
    char text[2048];
    size_t tn = sample_text(text, sizeof text, 7);
    uint8_t full[4096];
    size_t n = zlib_deflate_once(6, 15, text, tn, full, sizeof full);
    check_inflate(&nct, full, n, 0, 0, text, tn);
    /* Cut short: every proper prefix that is not itself a whole message. */
    for (size_t cut = 1; cut < n; cut += 1 + cut / 8)
        check_inflate(&nct, full, cut, 0, SB_EPROTO, NULL, 0);
    /* Not deflate: block type 3 is reserved. */
    static const uint8_t bad_type[] = {0xff, 0xff, 0xff};
    check_inflate(&nct, bad_type, sizeof bad_type, 0, SB_EPROTO, NULL, 0);
    /* A stored block whose NLEN is not the complement of LEN. */
    static const uint8_t bad_stored[] = {0x00, 0x05, 0x00, 0xfa, 0xfe, 'H',
                                         'e',  'l',  'l',  'o',  0x00};
    check_inflate(&nct, bad_stored, sizeof bad_stored, 0, SB_EPROTO, NULL, 0);
    /* The tail left on (a sender that did not strip it). */
    uint8_t with_tail[sizeof hello_block + 4];
    memcpy(with_tail, hello_block, sizeof hello_block);
    memcpy(with_tail + sizeof hello_block, "\x00\x00\xff\xff", 4);
    check_inflate(&nct, with_tail, sizeof with_tail, 0, SB_EPROTO, NULL, 0);
    /* Ending in a partial flush (an empty fixed block), not a sync flush. */
    uint8_t partial[4096];
    z_stream z = {0};
    cr_assert_eq(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t pn = zlib_deflate(&z, text, tn, partial, sizeof partial, Z_PARTIAL_FLUSH);
    deflateEnd(&z);
    check_inflate(&nct, partial, pn, 0, SB_EPROTO, NULL, 0);
    /* A distance further back than anything sent. */
    static const uint8_t too_far[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    check_inflate(&nct, too_far, sizeof too_far, 0, SB_EPROTO, NULL, 0);
}

Test(inflate, an_error_leaves_the_codec_usable)
{
    sb__pmd_policy_t p = default_policy();
    sb__pmd_params_t nct = params_of(&p, "permessage-deflate");
    sb__pmd_t *pmd = codec(&p);
    static const uint8_t bad[] = {0xff, 0xff};
    for (int i = 0; i < 10; i++) {
        sb__pmd_conn_t pc;
        sb__pmd_conn_init(&pc, &nct);
        buf_t out = {0};
        cr_assert_eq(inflate_whole(pmd, &pc, bad, sizeof bad, 0, &out), SB_EPROTO);
        cr_assert_null(pc.inflater);
        cr_assert_eq(inflate_whole(pmd, &pc, hello_block, sizeof hello_block, 0, &out), 0);
        cr_assert_eq(out.len, 5u);
        sb__pmd_conn_free(pmd, &pc);
        buf_reset(&out);
    }
    cr_assert_eq(sb__pmd_stats(pmd)->inflate_errors, 10u);
    cr_assert_eq(sb__pmd_stats(pmd)->inflated, 10u);
    sb__pmd_free(pmd);
}

/* ---- inflation of zlib's output --------------------------------------- */

Test(inflate, zlib_output_at_every_level_and_window)
{
    sb__pmd_policy_t p = default_policy();
    char text[3000];
    size_t tn = sample_text(text, sizeof text, 3);
    uint8_t comp[4096];
    for (int bits = 9; bits <= 15; bits++) {
        char offer[80];
        snprintf(offer, sizeof offer, "permessage-deflate; client_max_window_bits=%d", bits);
        sb__pmd_params_t nct = params_of(&p, offer);
        cr_assert_eq(nct.client_window_bits, bits);
        for (int level = 0; level <= 9; level++) {
            size_t n = zlib_deflate_once(level, bits, text, tn, comp, sizeof comp);
            sb__pmd_t *pmd = codec(&p);
            sb__pmd_conn_t pc;
            sb__pmd_conn_init(&pc, &nct);
            buf_t out = {0};
            cr_assert_eq(inflate_whole(pmd, &pc, comp, n, tn, &out), 0, "level %d bits %d", level,
                         bits);
            cr_assert_eq(out.len, tn);
            cr_assert_eq(memcmp(out.p, text, tn), 0);
            sb__pmd_conn_free(pmd, &pc);
            buf_reset(&out);
            sb__pmd_free(pmd);
        }
    }
    /* Split at every point and a byte at a time, for one of them. */
    size_t n = zlib_deflate_once(9, 10, text, 700, comp, sizeof comp);
    sb__pmd_params_t nct = params_of(&p, "permessage-deflate");
    check_inflate(&nct, comp, n, 0, 0, text, 700);
}

Test(inflate, client_context_takeover_at_every_window)
{
    sb__pmd_policy_t p = default_policy();
    p.allow_context_takeover = 1;
    char text[6000];
    size_t tn = sample_text(text, sizeof text, 11);
    for (int bits = 8; bits <= 15; bits++) {
        char offer[80];
        snprintf(offer, sizeof offer, "permessage-deflate; client_max_window_bits=%d", bits);
        sb__pmd_params_t keep = params_of(&p, offer);
        cr_assert_eq(keep.client_no_takeover, 0);
        cr_assert_eq(keep.client_window_bits, bits);
        /* zlib cannot compress with 8 bits; a client on zlib uses 9. */
        int zbits = bits < 9 ? 9 : bits;
        z_stream z = {0};
        cr_assert_eq(deflateInit2(&z, 6, Z_DEFLATED, -zbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
        sb__pmd_t *pmd = codec(&p);
        sb__pmd_conn_t pc;
        sb__pmd_conn_init(&pc, &keep);
        /* Messages of 0..~600 bytes cut from the text, in sequence, each
         * relying on the window the previous ones built. */
        size_t off = 0;
        for (int m = 0; off < tn; m++) {
            size_t len = (size_t)(m * 37) % 600;
            if (len > tn - off)
                len = tn - off;
            uint8_t comp[2048];
            size_t n = zlib_deflate(&z, text + off, len, comp, sizeof comp, Z_SYNC_FLUSH);
            buf_t out = {0};
            size_t cut = n / 2;
            cr_assert_eq(inflate_cut(pmd, &pc, comp, n, &cut, 1, 0, &out), 0, "bits %d msg %d",
                         bits, m);
            cr_assert_eq(out.len, len);
            cr_assert(len == 0 || memcmp(out.p, text + off, len) == 0, "bits %d msg %d", bits, m);
            buf_reset(&out);
            off += len;
        }
        sb__pmd_conn_free(pmd, &pc);
        sb__pmd_free(pmd);
        deflateEnd(&z);
    }
}

/* ---- compression ------------------------------------------------------ */

Test(compress, matches_zlib_at_every_level_and_window)
{
    char text[3000];
    size_t tn = sample_text(text, sizeof text, 5);
    for (int level = 1; level <= 9; level++) {
        sb__pmd_policy_t p = default_policy();
        p.level = level;
        sb__pmd_t *pmd = codec(&p);
        for (int bits = 9; bits <= 15; bits++) {
            char offer[80];
            snprintf(offer, sizeof offer, "permessage-deflate; server_max_window_bits=%d", bits);
            sb__pmd_params_t params = params_of(&p, offer);
            sb__pmd_conn_t pc;
            sb__pmd_conn_init(&pc, &params);
            cr_assert_eq(sb__pmd_share_key(&pc), bits);
            const uint8_t *out;
            size_t out_len;
            /* Twice: the shared compressor is reset between messages. */
            for (int round = 0; round < 2; round++) {
                cr_assert_eq(sb__pmd_compress(pmd, &pc, text, tn, &out, &out_len), 1);
                uint8_t want[4096];
                size_t wn = zlib_deflate_once(level, bits, text, tn, want, sizeof want);
                cr_assert_eq(out_len, wn, "level %d bits %d: %zu bytes, zlib %zu", level, bits,
                             out_len, wn);
                cr_assert_eq(memcmp(out, want, wn), 0, "level %d bits %d", level, bits);
                /* A peer inflating with exactly the agreed window reads it. */
                z_stream z = {0};
                cr_assert_eq(inflateInit2(&z, -bits), Z_OK);
                uint8_t back[4096];
                cr_assert_eq(zlib_inflate(&z, out, out_len, back, sizeof back), tn);
                cr_assert_eq(memcmp(back, text, tn), 0);
                inflateEnd(&z);
            }
            cr_assert_null(pc.deflater, "no per-connection compressor without context takeover");
            sb__pmd_conn_free(pmd, &pc);
        }
        sb__pmd_free(pmd);
    }
}

Test(compress, round_trips_through_inflate)
{
    sb__pmd_policy_t p = default_policy();
    sb__pmd_t *pmd = codec(&p);
    sb__pmd_params_t params = params_of(&p, "permessage-deflate");
    sb__pmd_conn_t pc;
    sb__pmd_conn_init(&pc, &params);
    static char big[1 << 20];
    size_t sizes[] = {64, 100, 1000, 65536, sizeof big};
    size_t bn = sample_text(big, sizeof big, 9);
    for (size_t i = 0; i < COUNT(sizes); i++) {
        size_t len = sizes[i] < bn ? sizes[i] : bn;
        const uint8_t *out;
        size_t out_len;
        cr_assert_eq(sb__pmd_compress(pmd, &pc, big, len, &out, &out_len), 1, "%zu bytes", len);
        cr_assert_lt(out_len, len);
        uint8_t *copy = dup_exact(out, out_len);
        buf_t back = {0};
        cr_assert_eq(inflate_whole(pmd, &pc, copy, out_len, len, &back), 0);
        cr_assert_eq(back.len, len);
        cr_assert_eq(memcmp(back.p, big, len), 0);
        free(copy);
        buf_reset(&back);
    }
    sb__pmd_conn_free(pmd, &pc);
    sb__pmd_free(pmd);
}

Test(compress, short_incompressible_or_level_0_messages_go_uncompressed)
{
    sb__pmd_policy_t p = default_policy();
    p.min_size = 100;
    sb__pmd_t *pmd = codec(&p);
    sb__pmd_params_t params = params_of(&p, "permessage-deflate");
    sb__pmd_conn_t pc;
    sb__pmd_conn_init(&pc, &params);
    char text[400];
    size_t tn = sample_text(text, sizeof text, 1);
    cr_assert_geq(tn, (size_t)100);
    const uint8_t *out;
    size_t out_len;
    cr_assert_eq(sb__pmd_compress(pmd, &pc, text, 99, &out, &out_len), 0);
    cr_assert_null(out);
    cr_assert_eq(out_len, 0u);
    cr_assert_eq(sb__pmd_compress(pmd, &pc, text, 100, &out, &out_len), 1);
    cr_assert_lt(out_len, (size_t)100);

    uint8_t noise[5000];
    random_bytes(noise, sizeof noise, 42);
    cr_assert_eq(sb__pmd_compress(pmd, &pc, noise, sizeof noise, &out, &out_len), 0);
    cr_assert_eq(sb__pmd_stats(pmd)->compressed, 1u);
    cr_assert_eq(sb__pmd_stats(pmd)->uncompressed, 2u);

    /* Not negotiated: never compressed. */
    sb__pmd_conn_t plain;
    sb__pmd_conn_init(&plain, NULL);
    cr_assert_eq(sb__pmd_share_key(&plain), 0);
    cr_assert_eq(sb__pmd_compress(pmd, &plain, text, tn, &out, &out_len), 0);

    /* Level 0 (deflate's stored blocks) never saves anything. */
    p.level = 0;
    cr_assert_eq(sb__pmd_set_policy(pmd, &p), 0);
    cr_assert_eq(sb__pmd_compress(pmd, &pc, text, tn, &out, &out_len), 0);
    sb__pmd_conn_free(pmd, &pc);
    sb__pmd_free(pmd);
}

Test(compress, a_policy_change_applies_to_the_shared_compressor)
{
    char text[3000];
    size_t tn = sample_text(text, sizeof text, 8);
    sb__pmd_policy_t p = default_policy();
    p.level = 1;
    sb__pmd_t *pmd = codec(&p);
    const uint8_t *out;
    size_t out_len;
    uint8_t want[4096];
    cr_assert_eq(sb__pmd_compress_shared(pmd, 15, text, tn, &out, &out_len), 1);
    cr_assert_eq(out_len, zlib_deflate_once(1, 15, text, tn, want, sizeof want));
    p.level = 9;
    cr_assert_eq(sb__pmd_set_policy(pmd, &p), 0);
    cr_assert_eq(sb__pmd_policy(pmd)->level, 9);
    cr_assert_eq(sb__pmd_compress_shared(pmd, 15, text, tn, &out, &out_len), 1);
    size_t wn = zlib_deflate_once(9, 15, text, tn, want, sizeof want);
    cr_assert_eq(out_len, wn);
    cr_assert_eq(memcmp(out, want, wn), 0);
    p.level = 12;
    cr_assert_eq(sb__pmd_set_policy(pmd, &p), SB_EINVAL);
    cr_assert_eq(sb__pmd_compress_shared(pmd, 8, text, tn, &out, &out_len), SB_EINVAL);
    cr_assert_eq(sb__pmd_compress_shared(pmd, 16, text, tn, &out, &out_len), SB_EINVAL);
    sb__pmd_free(pmd);
}

Test(compress, one_broadcast_payload_serves_every_compatible_connection)
{
    sb__pmd_policy_t p = default_policy();
    sb__pmd_t *pmd = codec(&p);
    const char *offers[] = {
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate",
        "permessage-deflate; server_max_window_bits=15",
        "permessage-deflate; client_max_window_bits=9",
    };
    sb__pmd_conn_t conns[COUNT(offers)];
    for (size_t i = 0; i < COUNT(offers); i++) {
        sb__pmd_params_t params = params_of(&p, offers[i]);
        sb__pmd_conn_init(&conns[i], &params);
        cr_assert_eq(sb__pmd_share_key(&conns[i]), 15, "[%s]", offers[i]);
    }
    char text[2000];
    size_t tn = sample_text(text, sizeof text, 4);
    const uint8_t *out;
    size_t out_len;
    cr_assert_eq(sb__pmd_compress_shared(pmd, 15, text, tn, &out, &out_len), 1);
    uint8_t *shared = dup_exact(out, out_len);
    size_t shared_len = out_len;
    for (size_t i = 0; i < COUNT(offers); i++) {
        /* What each connection would get on its own is the same bytes. */
        cr_assert_eq(sb__pmd_compress(pmd, &conns[i], text, tn, &out, &out_len), 1);
        cr_assert_eq(out_len, shared_len);
        cr_assert_eq(memcmp(out, shared, shared_len), 0);
        sb__pmd_conn_free(pmd, &conns[i]);
    }
    /* A payload for a smaller window suits a larger one (key 12 <= 15). */
    cr_assert_eq(sb__pmd_compress_shared(pmd, 12, text, tn, &out, &out_len), 1);
    z_stream z = {0};
    cr_assert_eq(inflateInit2(&z, -15), Z_OK);
    uint8_t back[4096];
    cr_assert_eq(zlib_inflate(&z, out, out_len, back, sizeof back), tn);
    cr_assert_eq(memcmp(back, text, tn), 0);
    inflateEnd(&z);
    free(shared);
    cr_assert_eq(sb__pmd_stats(pmd)->compressed, 2u + COUNT(offers));
    sb__pmd_free(pmd);
}

Test(compress, server_context_takeover_sequence)
{
    sb__pmd_policy_t p = default_policy();
    p.allow_context_takeover = 1;
    sb__pmd_t *pmd = codec(&p);
    sb__pmd_params_t keep = params_of(&p, "permessage-deflate");
    sb__pmd_conn_t pc;
    sb__pmd_conn_init(&pc, &keep);
    cr_assert_eq(sb__pmd_share_key(&pc), 0, "context takeover: nothing to share");
    z_stream client = {0};
    cr_assert_eq(inflateInit2(&client, -15), Z_OK);

    char a[600];
    size_t an = sample_text(a, sizeof a, 2);
    uint8_t noise[700];
    random_bytes(noise, sizeof noise, 7);
    const uint8_t *out;
    size_t out_len, first_len = 0;
    uint8_t back[4096];
    /* A, A (a back-reference now), noise (sent plain: the client never sees
     * it compressed), then A again: still readable by the client, whose
     * window does not hold the noise. */
    for (int step = 0; step < 4; step++) {
        const void *msg = step == 2 ? (const void *)noise : a;
        size_t len = step == 2 ? sizeof noise : an;
        int r = sb__pmd_compress(pmd, &pc, msg, len, &out, &out_len);
        if (step == 2) {
            cr_assert_eq(r, 0);
            continue;
        }
        cr_assert_eq(r, 1, "step %d", step);
        if (step == 0)
            first_len = out_len;
        if (step == 1)
            cr_assert_lt(out_len, first_len / 4, "the repeat should refer to the first");
        cr_assert_eq(zlib_inflate(&client, out, out_len, back, sizeof back), an, "step %d", step);
        cr_assert_eq(memcmp(back, a, an), 0, "step %d", step);
    }
    cr_assert_not_null(pc.deflater);
    sb__pmd_conn_free(pmd, &pc);
    cr_assert_null(pc.deflater);
    inflateEnd(&client);
    sb__pmd_free(pmd);
}

Test(memory, per_connection_state_is_a_few_bytes)
{
    cr_assert_leq(sizeof(sb__pmd_conn_t), (size_t)24);
    cr_assert_leq(sizeof(sb__pmd_params_t), (size_t)8);
}

Test(memory, a_message_in_progress_holds_a_decompressor_until_it_ends)
{
    sb__pmd_policy_t p = default_policy();
    sb__pmd_params_t nct = params_of(&p, "permessage-deflate");
    sb__pmd_t *pmd = codec(&p);
    sb__pmd_conn_t a, b;
    sb__pmd_conn_init(&a, &nct);
    sb__pmd_conn_init(&b, &nct);
    buf_t oa = {0}, ob = {0};
    /* Two messages interleaved chunk by chunk on two connections. */
    for (size_t i = 0; i < sizeof hello_block; i++) {
        int last = i + 1 == sizeof hello_block;
        cr_assert_eq(sb__pmd_inflate(pmd, &a, hello_block + i, 1, last, &oa.p, &oa.len, &oa.cap, 0),
                     0);
        cr_assert_eq(sb__pmd_inflate(pmd, &b, hello_block + i, 1, last, &ob.p, &ob.len, &ob.cap, 0),
                     0);
        if (!last) {
            cr_assert_not_null(a.inflater);
            cr_assert_neq(a.inflater, b.inflater);
        }
    }
    cr_assert_null(a.inflater);
    cr_assert_eq(oa.len, 5u);
    cr_assert_eq(ob.len, 5u);
    /* A connection closed in the middle of a message gives its stream back. */
    cr_assert_eq(sb__pmd_inflate(pmd, &a, hello_block, 3, 0, &oa.p, &oa.len, &oa.cap, 0), 0);
    cr_assert_not_null(a.inflater);
    sb__pmd_conn_free(pmd, &a);
    cr_assert_null(a.inflater);
    sb__pmd_conn_free(pmd, &b);
    buf_reset(&oa);
    buf_reset(&ob);
    sb__pmd_free(pmd);
}

/* ---- the size limit --------------------------------------------------- */

static long max_rss_kib(void)
{
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/* A compression bomb: 64 KiB + 1 GiB of zeros in about a megabyte. zlib
 * compresses 64 KiB of zeros, then 1 MiB more with a sync flush; that
 * second piece starts on a byte boundary and refers only to zeros within the
 * window, so repeating it 1024 times is valid deflate data for 1024 MiB
 * more zeros. */
#define BOMB_REPEAT 1024
static size_t bomb_piece_len;
static uint8_t *make_bomb(size_t *len)
{
    static uint8_t zeros[1 << 20];
    size_t cap = 64 * 1024;
    uint8_t *head = malloc(cap), *piece = malloc(cap);
    cr_assert(head && piece);
    z_stream z = {0};
    cr_assert_eq(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = zeros;
    z.avail_in = 64 * 1024;
    z.next_out = head;
    z.avail_out = (uInt)cap;
    cr_assert_eq(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    size_t head_len = cap - z.avail_out;
    z.next_in = zeros;
    z.avail_in = sizeof zeros;
    z.next_out = piece;
    z.avail_out = (uInt)cap;
    cr_assert_eq(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    size_t piece_len = cap - z.avail_out;
    deflateEnd(&z);
    bomb_piece_len = piece_len;
    *len = head_len + BOMB_REPEAT * piece_len - 4;
    uint8_t *bomb = malloc(*len + 4);
    cr_assert_not_null(bomb);
    memcpy(bomb, head, head_len);
    for (size_t i = 0; i < BOMB_REPEAT; i++)
        memcpy(bomb + head_len + i * piece_len, piece, piece_len);
    free(head);
    free(piece);
    return bomb; /* the last 4 bytes (the tail) are stripped, as a peer does */
}

Test(limit, a_1_gib_bomb_is_refused_at_the_limit_with_bounded_memory)
{
    size_t n;
    uint8_t *bomb = make_bomb(&n);
    cr_assert_lt(n, (size_t)4 << 20, "the bomb is %zu bytes", n);

    /* It is valid deflate data for zeros: the head and two pieces inflate
     * with zlib to exactly 64 KiB + 2 MiB of zeros (so any number of pieces
     * does, each starting where the previous one ended). */
    {
        size_t two = n + 4 - (BOMB_REPEAT - 2) * bomb_piece_len;
        z_stream z = {0};
        cr_assert_eq(inflateInit2(&z, -15), Z_OK);
        static uint8_t sink[3 << 20];
        z.next_in = bomb;
        z.avail_in = (uInt)two;
        z.next_out = sink;
        z.avail_out = sizeof sink;
        cr_assert_eq(inflate(&z, Z_SYNC_FLUSH), Z_OK);
        cr_assert_eq(z.avail_in, 0u);
        size_t total = sizeof sink - z.avail_out;
        cr_assert_eq(total, (size_t)64 * 1024 + 2 * (1 << 20));
        for (size_t i = 0; i < total; i++)
            cr_assert_eq(sink[i], 0);
        inflateEnd(&z);
    }

    sb__pmd_policy_t p = default_policy();
    sb__pmd_params_t nct = params_of(&p, "permessage-deflate");
    sb__pmd_t *pmd = codec(&p);
    const size_t limit = 1 << 20;
    long rss_before = max_rss_kib();
    /* Whole, and in 64 KiB chunks as the reader delivers them. */
    for (int way = 0; way < 2; way++) {
        sb__pmd_conn_t pc;
        sb__pmd_conn_init(&pc, &nct);
        buf_t out = {0};
        int r = 0;
        size_t fed = 0;
        if (way == 0) {
            r = sb__pmd_inflate(pmd, &pc, bomb, n, 1, &out.p, &out.len, &out.cap, limit);
            fed = n;
        } else {
            while (fed < n && r == 0) {
                size_t k = n - fed < 65536 ? n - fed : 65536;
                r = sb__pmd_inflate(pmd, &pc, bomb + fed, k, fed + k == n, &out.p, &out.len,
                                    &out.cap, limit);
                fed += k;
            }
            cr_assert_lt(fed, n / 8, "the error should come early, after %zu of %zu bytes", fed, n);
        }
        cr_assert_eq(r, SB_ETOOBIG, "way %d: %d", way, r);
        cr_assert_eq(sb__pmd_close_code(r), 1009);
        cr_assert_leq(out.cap, limit, "way %d: a %zu-byte buffer for a %zu limit", way, out.cap,
                      limit);
        cr_assert_eq(out.len, limit);
        cr_assert_null(pc.inflater);
        sb__pmd_conn_free(pmd, &pc);
        buf_reset(&out);
    }
    long grew = max_rss_kib() - rss_before;
    cr_assert_lt(grew, 64 * 1024, "peak memory grew by %ld KiB", grew);
    free(bomb);
    sb__pmd_free(pmd);
}

Test(limit, exactly_the_limit_is_allowed)
{
    sb__pmd_policy_t p = default_policy();
    sb__pmd_params_t nct = params_of(&p, "permessage-deflate");
    static char text[100000];
    size_t tn = sample_text(text, sizeof text, 6);
    uint8_t *comp = malloc(tn);
    cr_assert_not_null(comp);
    size_t n = zlib_deflate_once(6, 15, text, tn, comp, tn);
    sb__pmd_t *pmd = codec(&p);
    size_t limits[] = {tn, tn - 1, tn + 1, 1, 4096, 4097};
    for (size_t i = 0; i < COUNT(limits); i++) {
        sb__pmd_conn_t pc;
        sb__pmd_conn_init(&pc, &nct);
        buf_t out = {0};
        int r = inflate_whole(pmd, &pc, comp, n, limits[i], &out);
        cr_assert_eq(r, limits[i] >= tn ? 0 : SB_ETOOBIG, "limit %zu", limits[i]);
        cr_assert_leq(out.cap, limits[i]);
        sb__pmd_conn_free(pmd, &pc);
        buf_reset(&out);
    }
    free(comp);
    sb__pmd_free(pmd);
}

Test(limit, the_limit_counts_what_the_buffer_already_holds)
{
    sb__pmd_policy_t p = default_policy();
    sb__pmd_params_t nct = params_of(&p, "permessage-deflate");
    sb__pmd_t *pmd = codec(&p);
    sb__pmd_conn_t pc;
    sb__pmd_conn_init(&pc, &nct);
    buf_t out = {0};
    cr_assert_eq(inflate_whole(pmd, &pc, hello_block, sizeof hello_block, 0, &out), 0);
    /* "Hello" + "Hello" into the same buffer with room for 9. */
    cr_assert_eq(inflate_whole(pmd, &pc, hello_block, sizeof hello_block, 9, &out), SB_ETOOBIG);
    cr_assert_eq(out.len, 9u);
    sb__pmd_conn_free(pmd, &pc);
    buf_reset(&out);
    sb__pmd_free(pmd);
}

Test(errors, close_codes_and_texts)
{
    cr_assert_eq(sb__pmd_close_code(SB_ETOOBIG), 1009);
    cr_assert_eq(sb__pmd_close_code(SB_EPROTO), 1007);
    cr_assert_eq(sb__pmd_close_code(SB_ENOMEM), 1011);
    cr_assert_str_eq(sb__pmd_strerror(SB_ETOOBIG), "message too big once decompressed");
    cr_assert_str_eq(sb__pmd_strerror(SB_EPROTO), "invalid compressed data (permessage-deflate)");
}
