/* fuzz_inflate.c — permessage-deflate inflation and compression
 * (src/ws/deflate.c): sb__pmd_inflate with small limits, messages fed in
 * input-chosen chunks, with and without client context takeover, against
 * zlib driven the plain way (the whole message and its tail in one call,
 * into one buffer); then every inflated message compressed back, shared
 * and with server context takeover, and read by a zlib peer.
 *
 * Input: 3 settings bytes, then messages separated by "||".
 *   byte 0: bits 0-1 chunk size (fuzz.h's chunk_max_of), bit 2 client
 *           context takeover, bits 3-4 the size limit (16, 300, 4096 or
 *           65536 bytes), bits 5-7 the client's window bits (8 + value)
 *   byte 1: the chunking seed
 *   byte 2: compression level (value % 10) and the server's window bits
 *           (9 + value / 10 % 7)
 *
 * Checked: only 0, SB_ETOOBIG or SB_EPROTO come back; the output buffer
 * never grows past the limit; the result and the bytes are zlib's
 * (SB_ETOOBIG exactly when zlib's output passes the limit first); no
 * decompressor is held between messages without context takeover;
 * compression round-trips through zlib at the negotiated window. */
#include <zlib.h>

#include "fuzz.h"
#include "ws/deflate.h"

#define MAX_MESSAGES 8

static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};

/* zlib the plain way. n == 0 is an empty message (see sb__pmd_inflate). */
static int ref_inflate(z_stream *z, int window_bits, const uint8_t *msg, size_t n, size_t limit,
                       bytes_t *out)
{
    out->len = 0;
    if (n == 0)
        return 0;
    uint8_t *in = malloc(n + 4);
    uint8_t *o = malloc(limit + 1);
    if (!in || !o)
        abort();
    memcpy(in, msg, n);
    memcpy(in + n, tail, 4);
    z->next_in = in;
    z->avail_in = (uInt)(n + 4);
    z->next_out = o;
    z->avail_out = (uInt)(limit + 1);
    int r = inflate(z, Z_SYNC_FLUSH);
    size_t got = limit + 1 - z->avail_out;
    int rc;
    if (got > limit)
        rc = SB_ETOOBIG;
    else if (r == Z_STREAM_END)
        rc = 0;
    else if (r != Z_OK && r != Z_BUF_ERROR)
        rc = SB_EPROTO;
    else if (z->avail_in != 0 || (z->data_type & 191) != 128)
        rc = SB_EPROTO;
    else
        rc = 0;
    if (rc == 0 && r == Z_STREAM_END) {
        /* A final block with context takeover: keep the window. */
        uint8_t dict[32768];
        uInt dn = 0;
        CHECK(inflateGetDictionary(z, dict, &dn) == Z_OK, "zlib");
        CHECK(inflateReset2(z, -window_bits) == Z_OK, "zlib");
        CHECK(dn == 0 || inflateSetDictionary(z, dict, dn) == Z_OK, "zlib");
    }
    put(out, o, got);
    free(in);
    free(o);
    return rc;
}

/* A zlib peer reading a compressed payload; returns its output length. */
static size_t peer_read(z_stream *z, const uint8_t *p, size_t n, uint8_t *out, size_t cap)
{
    uint8_t *in = malloc(n + 4);
    if (!in)
        abort();
    memcpy(in, p, n);
    memcpy(in + n, tail, 4);
    z->next_in = in;
    z->avail_in = (uInt)(n + 4);
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int r = inflate(z, Z_SYNC_FLUSH);
    CHECK(r == Z_OK, "a zlib peer cannot read our output: %d (%s)", r, z->msg ? z->msg : "");
    CHECK(z->avail_in == 0 && z->avail_out > 0, "a zlib peer did not read it all");
    free(in);
    return cap - z->avail_out;
}

/* Compresses msg for the connection and checks the peer reads it back. */
static void check_compress(sb__pmd_t *pmd, sb__pmd_conn_t *pc, z_stream *peer, const uint8_t *msg,
                           size_t len)
{
    const uint8_t *out;
    size_t out_len;
    int r = sb__pmd_compress(pmd, pc, msg, len, &out, &out_len);
    CHECK(r == 0 || r == 1, "compress returned %d", r);
    if (r == 0)
        return; /* sent as it is: the peer's window does not see it */
    CHECK(out_len < len, "compressed %zu bytes into %zu", len, out_len);
    uint8_t *back = malloc(len + 1);
    if (!back)
        abort();
    uint8_t *payload = dup_exact(out, out_len);
    size_t n = peer_read(peer, payload, out_len, back, len + 1);
    free(payload);
    CHECK(n == len && memcmp(back, msg, len) == 0, "round trip of %zu bytes gave %zu", len, n);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    static const size_t limits[4] = {16, 300, 4096, 65536};
    uint8_t s0 = data[0], s2 = data[2];
    int keep = (s0 >> 2) & 1;
    size_t limit = limits[(s0 >> 3) & 3];
    int client_bits = 8 + (s0 >> 5);
    /* Agreed 8 is read with 9 bits (zlib compresses 8 as 9; see deflate.c). */
    int read_bits = keep ? (client_bits < 9 ? 9 : client_bits) : 15;
    int level = s2 % 10;
    int server_bits = 9 + s2 / 10 % 7;
    chunker_t ch;
    chunker_init(&ch, data[1], chunk_max_of(s0));

    sb__pmd_policy_t pol;
    sb__pmd_policy_default(&pol);
    pol.min_size = 0;
    pol.level = level;
    pol.allow_context_takeover = 1;
    sb__pmd_t *pmd;
    CHECK(sb__pmd_new(&pol, &pmd) == 0, "sb__pmd_new");

    /* The connection the messages arrive on, and two that send them back:
     * one sharing the compressor, one keeping its context. */
    sb__pmd_params_t in_params = {1, 1, (uint8_t)!keep, 15, (uint8_t)client_bits};
    sb__pmd_params_t shared_params = {1, 1, 1, (uint8_t)server_bits, 15};
    sb__pmd_params_t keep_params = {1, 0, 1, (uint8_t)server_bits, 15};
    sb__pmd_conn_t in_conn, shared_conn, keep_conn;
    sb__pmd_conn_init(&in_conn, &in_params);
    sb__pmd_conn_init(&shared_conn, &shared_params);
    sb__pmd_conn_init(&keep_conn, &keep_params);
    CHECK(sb__pmd_share_key(&shared_conn) == server_bits, "share key");
    CHECK(sb__pmd_share_key(&keep_conn) == 0, "share key with context takeover");

    z_stream ref = {0}, shared_peer = {0}, keep_peer = {0};
    CHECK(inflateInit2(&ref, -read_bits) == Z_OK, "zlib");
    CHECK(inflateInit2(&shared_peer, -server_bits) == Z_OK, "zlib");
    CHECK(inflateInit2(&keep_peer, -server_bits) == Z_OK, "zlib");

    const uint8_t *p = data + 3, *end = data + size;
    bytes_t want = {0};
    for (int m = 0; m < MAX_MESSAGES; m++) {
        const uint8_t *sep = NULL;
        for (const uint8_t *q = p; q + 1 < end; q++)
            if (q[0] == '|' && q[1] == '|') {
                sep = q;
                break;
            }
        size_t n = (size_t)((sep ? sep : end) - p);

        if (!keep && inflateReset(&ref) != Z_OK)
            abort();
        int want_rc = ref_inflate(&ref, read_bits, p, n, limit, &want);

        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        int rc = 0;
        size_t off = 0;
        do {
            size_t k = chunker_next(&ch, n - off);
            uint8_t *chunk = dup_exact(p + off, k);
            off += k;
            rc = sb__pmd_inflate(pmd, &in_conn, chunk, k, off == n, &buf, &len, &cap, limit);
            free(chunk);
        } while (rc == 0 && off < n);

        CHECK(rc == 0 || rc == SB_ETOOBIG || rc == SB_EPROTO, "inflate returned %d", rc);
        CHECK(cap <= limit && len <= limit, "buffer %zu/%zu over the limit %zu", len, cap, limit);
        CHECK(rc == want_rc, "message %d (%zu bytes): %d, zlib says %d", m, n, rc, want_rc);
        if (rc == 0)
            CHECK(len == want.len && (len == 0 || memcmp(buf, want.p, len) == 0),
                  "message %d: %zu bytes inflated, zlib has %zu", m, len, want.len);
        if (rc != 0 || !keep)
            CHECK(in_conn.inflater == NULL, "a decompressor is held after the message");

        if (rc == 0) {
            check_compress(pmd, &shared_conn, &shared_peer, buf, len);
            if (inflateReset(&shared_peer) != Z_OK)
                abort();
            check_compress(pmd, &keep_conn, &keep_peer, buf, len);
            /* The raw input as a message too: incompressible, mostly. */
            check_compress(pmd, &shared_conn, &shared_peer, p, n);
            if (inflateReset(&shared_peer) != Z_OK)
                abort();
        }
        free(buf);
        if (rc != 0 || !sep)
            break; /* a failed connection reads nothing more */
        p = sep + 2;
    }

    free(want.p);
    inflateEnd(&ref);
    inflateEnd(&shared_peer);
    inflateEnd(&keep_peer);
    sb__pmd_conn_free(pmd, &in_conn);
    sb__pmd_conn_free(pmd, &shared_conn);
    sb__pmd_conn_free(pmd, &keep_conn);
    sb__pmd_free(pmd);
    return 0;
}
