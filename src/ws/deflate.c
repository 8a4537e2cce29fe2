/* deflate.c — permessage-deflate (RFC 7692): the Sec-WebSocket-Extensions
 * negotiation, compression of whole messages with a compressor shared by
 * every connection that lets the server drop its context, and inflation
 * bounded by a size limit. See deflate.h for the contracts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "ws/deflate.h"

/* The four bytes a sync flush ends with: an empty stored block's LEN and
 * NLEN. Senders strip them (RFC 7692 7.2.1); receivers put them back. */
static const uint8_t sync_tail[4] = {0x00, 0x00, 0xff, 0xff};

/* zlib counts in uInt: hand it at most this much at a time. */
#define ZCHUNK ((size_t)1 << 30)

/* Idle decompressors kept for connections without client context takeover. */
#define INFLATE_POOL 4

/* A compression scratch buffer above this size is given back once a smaller
 * message comes along, so one huge message does not pin its size forever. */
#define SCRATCH_KEEP (256 * 1024)

struct sb__pmd_s {
    sb__pmd_policy_t policy;
    z_stream *shared[16]; /* shared compressors, indexed by window bits (9..15) */
    z_stream *pool[INFLATE_POOL];
    int pool_len;
    uint8_t *scratch; /* the last compressed message (sb__pmd_compress* *out) */
    size_t scratch_cap;
    sb__pmd_stats_t stats;
};

/* ---- policy ------------------------------------------------------------ */

void sb__pmd_policy_default(sb__pmd_policy_t *p)
{
    p->enabled = 1;
    p->level = SB_PMD_DEFAULT_LEVEL;
    p->min_size = SB_PMD_DEFAULT_MIN_SIZE;
    p->allow_context_takeover = 0;
    p->max_window_bits = 15;
    p->mem_level = SB_PMD_DEFAULT_MEM_LEVEL;
}

int sb__pmd_policy_check(const sb__pmd_policy_t *p, const char **why)
{
    const char *msg = NULL;
    if (!p)
        msg = "no policy";
    else if (p->level < 0 || p->level > 9)
        msg = "compression level must be 0 (none) to 9 (best)";
    else if (p->max_window_bits < 9 || p->max_window_bits > 15)
        msg = "max window bits must be 9 to 15";
    else if (p->mem_level < 1 || p->mem_level > 9)
        msg = "memory level must be 1 to 9";
    if (why)
        *why = msg;
    return msg ? SB_EINVAL : 0;
}

/* ---- negotiation ------------------------------------------------------- */

/* The Sec-WebSocket-Extensions grammar (RFC 6455 9.1, with RFC 7230's
 * tokens, quoted strings and optional whitespace):
 *   value     = [ extension ] *( OWS "," OWS [ extension ] )
 *   extension = token *( OWS ";" OWS param )
 *   param     = token [ OWS "=" OWS ( token / quoted-string ) ]
 * An extension that breaks it is declined; parsing resumes after the next
 * comma that is not inside a quoted string. */

typedef struct {
    const char *s;
    size_t len, i;
} cursor_t;

static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int at_end(const cursor_t *c)
{
    return c->i >= c->len;
}

static int peek(const cursor_t *c)
{
    return at_end(c) ? -1 : (unsigned char)c->s[c->i];
}

static void skip_ows(cursor_t *c)
{
    while (!at_end(c) && (c->s[c->i] == ' ' || c->s[c->i] == '\t'))
        c->i++;
}

/* A token at the cursor: its length (0: none). */
static size_t take_token(cursor_t *c, const char **tok)
{
    size_t start = c->i;
    while (!at_end(c) && is_tchar((unsigned char)c->s[c->i]))
        c->i++;
    *tok = c->s + start;
    return c->i - start;
}

/* A quoted string at the cursor (on its opening quote), unescaped into
 * out[0..cap). Returns its unescaped length (which may exceed cap: only the
 * first cap bytes are stored), or -1 when it is unterminated or holds a
 * control character; the cursor is then after its closing quote (if any),
 * so that the next extension can still be found. */
static long take_quoted(cursor_t *c, char *out, size_t cap)
{
    size_t n = 0;
    int bad = 0;
    c->i++; /* the opening quote */
    while (!at_end(c)) {
        unsigned char ch = (unsigned char)c->s[c->i++];
        if (ch == '"')
            return bad ? -1 : (long)n;
        if (ch == '\\') {
            if (at_end(c))
                return -1;
            ch = (unsigned char)c->s[c->i++];
        }
        if (ch != '\t' && (ch < 0x20 || ch == 0x7f))
            bad = 1;
        if (n < cap)
            out[n] = (char)ch;
        n++;
    }
    return -1;
}

/* Moves past the next comma outside a quoted string (or to the end). */
static void skip_element(cursor_t *c)
{
    while (!at_end(c)) {
        char ch = c->s[c->i++];
        if (ch == ',')
            return;
        if (ch == '"') {
            while (!at_end(c) && c->s[c->i] != '"') {
                if (c->s[c->i] == '\\' && c->i + 1 < c->len)
                    c->i++;
                c->i++;
            }
            if (!at_end(c))
                c->i++; /* the closing quote */
        }
    }
}

static int name_is(const char *tok, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(tok, name, n) == 0;
}

/* A window size value: "8".."15", no sign, no leading zero. -1 otherwise. */
static int window_bits_value(const char *v, long n)
{
    if (n == 1 && (v[0] == '8' || v[0] == '9'))
        return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + (v[1] - '0');
    return -1;
}

typedef struct {
    uint8_t server_no_takeover, client_no_takeover;
    uint8_t has_server_bits, has_client_bits;
    int server_bits; /* 8..15 */
    int client_bits; /* 8..15, or 0 for the bare parameter */
    int invalid;     /* well-formed, but not an offer RFC 7692 allows */
} offer_t;

/* Applies one parameter (value NULL when it has none) to an offer. */
static void offer_param(offer_t *o, const char *name, size_t name_len, const char *value,
                        long value_len)
{
    if (name_is(name, name_len, "server_no_context_takeover")) {
        if (value || o->server_no_takeover)
            o->invalid = 1;
        o->server_no_takeover = 1;
    } else if (name_is(name, name_len, "client_no_context_takeover")) {
        if (value || o->client_no_takeover)
            o->invalid = 1;
        o->client_no_takeover = 1;
    } else if (name_is(name, name_len, "server_max_window_bits")) {
        /* The value is required here (7.1.2.1), optional for the client's. */
        int bits = value ? window_bits_value(value, value_len) : -1;
        if (bits < 0 || o->has_server_bits)
            o->invalid = 1;
        o->has_server_bits = 1;
        o->server_bits = bits;
    } else if (name_is(name, name_len, "client_max_window_bits")) {
        int bits = value ? window_bits_value(value, value_len) : 0;
        if (bits < 0 || o->has_client_bits)
            o->invalid = 1;
        o->has_client_bits = 1;
        o->client_bits = bits;
    } else {
        o->invalid = 1; /* unknown parameter: decline (7, "MUST decline") */
    }
}

/* Parses one extension at the cursor. Returns 1 for a well-formed
 * permessage-deflate offer (in *o, maybe invalid), 0 for a well-formed other
 * extension, -1 for a syntax error (the cursor is then somewhere inside it).
 * On success the cursor is at the comma that ends it, or at the end. */
static int parse_extension(cursor_t *c, offer_t *o)
{
    const char *name;
    size_t name_len = take_token(c, &name);
    if (!name_len)
        return -1;
    int ours = name_is(name, name_len, "permessage-deflate");
    memset(o, 0, sizeof *o);
    for (;;) {
        skip_ows(c);
        if (at_end(c) || peek(c) == ',')
            return ours;
        if (peek(c) != ';')
            return -1;
        c->i++;
        skip_ows(c);
        const char *param;
        size_t param_len = take_token(c, &param);
        if (!param_len)
            return -1;
        skip_ows(c);
        if (peek(c) != '=') {
            if (ours)
                offer_param(o, param, param_len, NULL, 0);
            continue;
        }
        c->i++;
        skip_ows(c);
        /* Window sizes are at most 2 characters: 3 tell "too long" apart. */
        char buf[3];
        const char *value = buf;
        long value_len;
        if (peek(c) == '"') {
            value_len = take_quoted(c, buf, sizeof buf);
            if (value_len < 0)
                return -1;
        } else {
            value_len = (long)take_token(c, &value);
            if (!value_len)
                return -1;
        }
        if (ours)
            offer_param(o, param, param_len, value, value_len);
    }
}

/* Decides on a valid offer; fills params and the answer. 0: declined. */
static int accept_offer(const sb__pmd_policy_t *p, const offer_t *o, sb__pmd_params_t *params,
                        char *resp)
{
    /* zlib cannot deflate with a 256-byte window (deflateInit2 rejects -8),
     * and a 512-byte one would break the client's limit. */
    if (o->has_server_bits && o->server_bits < 9)
        return 0;
    params->enabled = 1;
    params->server_no_takeover = (uint8_t)(o->server_no_takeover || !p->allow_context_takeover);
    params->client_no_takeover = (uint8_t)(o->client_no_takeover || !p->allow_context_takeover);
    int server_bits = p->max_window_bits;
    if (o->has_server_bits && o->server_bits < server_bits)
        server_bits = o->server_bits;
    params->server_window_bits = (uint8_t)server_bits;
    /* Without client_max_window_bits in the offer the answer may not carry it
     * (7.1.2.2), and the client may use the full 15 bits. */
    int client_bits = 15;
    if (o->has_client_bits) {
        if (o->client_bits && o->client_bits < client_bits)
            client_bits = o->client_bits;
        if (p->max_window_bits < client_bits)
            client_bits = p->max_window_bits;
    }
    params->client_window_bits = (uint8_t)client_bits;

    size_t n = (size_t)snprintf(resp, SB_PMD_RESPONSE_MAX, "permessage-deflate");
    if (params->server_no_takeover)
        n += (size_t)snprintf(resp + n, SB_PMD_RESPONSE_MAX - n, "; server_no_context_takeover");
    if (params->client_no_takeover)
        n += (size_t)snprintf(resp + n, SB_PMD_RESPONSE_MAX - n, "; client_no_context_takeover");
    /* Accepting a server_max_window_bits offer means answering it (7.1.2.1).
     * Without one, a smaller server window needs no announcing — the client
     * inflates with 15 bits anyway — and some Firefox versions fail the
     * connection when the answer names a parameter they did not offer. */
    if (o->has_server_bits)
        n += (size_t)snprintf(resp + n, SB_PMD_RESPONSE_MAX - n, "; server_max_window_bits=%d",
                              server_bits);
    if (o->has_client_bits && client_bits < 15)
        (void)snprintf(resp + n, SB_PMD_RESPONSE_MAX - n, "; client_max_window_bits=%d",
                       client_bits);
    return 1;
}

int sb__pmd_negotiate(const sb__pmd_policy_t *policy, const char *value, size_t len,
                      sb__pmd_params_t *params, char response[SB_PMD_RESPONSE_MAX])
{
    memset(params, 0, sizeof *params);
    response[0] = '\0';
    if (!value || !policy || !policy->enabled || sb__pmd_policy_check(policy, NULL))
        return 0;
    cursor_t c = {value, len, 0};
    while (!at_end(&c)) {
        skip_ows(&c);
        if (at_end(&c))
            break;
        if (peek(&c) == ',') {
            c.i++;
            continue;
        }
        offer_t o;
        int kind = parse_extension(&c, &o);
        if (kind < 0) {
            skip_element(&c);
            continue;
        }
        if (kind == 1 && !o.invalid && accept_offer(policy, &o, params, response))
            return 1;
        memset(params, 0, sizeof *params);
        response[0] = '\0';
        if (!at_end(&c))
            c.i++; /* the comma */
    }
    return 0;
}

/* ---- the codec --------------------------------------------------------- */

static z_stream *deflater_new(int level, int window_bits, int mem_level)
{
    z_stream *z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    /* Negative window bits: raw deflate, no zlib header or checksum. */
    if (deflateInit2(z, level, Z_DEFLATED, -window_bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    return z;
}

static void deflater_free(z_stream *z)
{
    if (z) {
        deflateEnd(z);
        free(z);
    }
}

static z_stream *inflater_new(int window_bits)
{
    z_stream *z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    if (inflateInit2(z, -window_bits) != Z_OK) {
        free(z);
        return NULL;
    }
    return z;
}

static void inflater_free(z_stream *z)
{
    if (z) {
        inflateEnd(z);
        free(z);
    }
}

static void free_shared_deflaters(sb__pmd_t *pmd)
{
    for (size_t i = 0; i < sizeof pmd->shared / sizeof pmd->shared[0]; i++) {
        deflater_free(pmd->shared[i]);
        pmd->shared[i] = NULL;
    }
}

int sb__pmd_new(const sb__pmd_policy_t *policy, sb__pmd_t **out)
{
    *out = NULL;
    if (sb__pmd_policy_check(policy, NULL))
        return SB_EINVAL;
    sb__pmd_t *pmd = calloc(1, sizeof *pmd);
    if (!pmd)
        return SB_ENOMEM;
    pmd->policy = *policy;
    *out = pmd;
    return 0;
}

void sb__pmd_free(sb__pmd_t *pmd)
{
    if (!pmd)
        return;
    free_shared_deflaters(pmd);
    for (int i = 0; i < pmd->pool_len; i++)
        inflater_free(pmd->pool[i]);
    free(pmd->scratch);
    free(pmd);
}

int sb__pmd_set_policy(sb__pmd_t *pmd, const sb__pmd_policy_t *policy)
{
    if (sb__pmd_policy_check(policy, NULL))
        return SB_EINVAL;
    if (policy->level != pmd->policy.level || policy->mem_level != pmd->policy.mem_level)
        free_shared_deflaters(pmd); /* recreated at the new level on next use */
    pmd->policy = *policy;
    return 0;
}

const sb__pmd_policy_t *sb__pmd_policy(const sb__pmd_t *pmd)
{
    return &pmd->policy;
}

const sb__pmd_stats_t *sb__pmd_stats(const sb__pmd_t *pmd)
{
    return &pmd->stats;
}

void sb__pmd_conn_init(sb__pmd_conn_t *pc, const sb__pmd_params_t *params)
{
    memset(pc, 0, sizeof *pc);
    if (params && params->enabled)
        pc->params = *params;
}

/* A decompressor for a connection whose client resets its context: from
 * the pool, ready for a new message. */
static z_stream *pool_get(sb__pmd_t *pmd)
{
    if (pmd->pool_len)
        return pmd->pool[--pmd->pool_len];
    return inflater_new(15); /* the largest window reads every smaller one */
}

static void pool_put(sb__pmd_t *pmd, z_stream *z)
{
    if (pmd->pool_len < INFLATE_POOL && inflateReset(z) == Z_OK)
        pmd->pool[pmd->pool_len++] = z;
    else
        inflater_free(z);
}

static void release_inflater(sb__pmd_t *pmd, sb__pmd_conn_t *pc)
{
    if (!pc->inflater)
        return;
    if (pc->params.client_no_takeover)
        pool_put(pmd, pc->inflater);
    else
        inflater_free(pc->inflater);
    pc->inflater = NULL;
}

void sb__pmd_conn_free(sb__pmd_t *pmd, sb__pmd_conn_t *pc)
{
    if (!pc)
        return;
    deflater_free(pc->deflater);
    pc->deflater = NULL;
    release_inflater(pmd, pc);
}

/* ---- compression ------------------------------------------------------- */

int sb__pmd_share_key(const sb__pmd_conn_t *pc)
{
    if (!pc->params.enabled || !pc->params.server_no_takeover)
        return 0;
    return pc->params.server_window_bits;
}

/* Deflates in[0..len) with a sync flush into the scratch buffer. Returns 1
 * with the payload (tail stripped) when it is shorter than the input, 0
 * when it is not, or a negative error. The output space is the input's
 * length plus the 4-byte tail: running out of it means "not smaller", so
 * incompressible data costs no more than its own size. */
static int deflate_into_scratch(sb__pmd_t *pmd, z_stream *z, const uint8_t *in, size_t len,
                                const uint8_t **out, size_t *out_len)
{
    size_t cap = len + sizeof sync_tail;
    if (pmd->scratch_cap < cap || (pmd->scratch_cap > SCRATCH_KEEP && cap <= SCRATCH_KEEP)) {
        size_t want = 4096;
        while (want < cap && want <= SIZE_MAX / 2)
            want *= 2;
        if (want < cap)
            want = cap;
        uint8_t *p = realloc(pmd->scratch, want);
        if (!p)
            return SB_ENOMEM;
        pmd->scratch = p;
        pmd->scratch_cap = want;
    }
    uint8_t *o = pmd->scratch;
    size_t in_left = len, out_left = cap;
    for (;;) {
        uInt ain = (uInt)(in_left < ZCHUNK ? in_left : ZCHUNK);
        uInt aout = (uInt)(out_left < ZCHUNK ? out_left : ZCHUNK);
        int flush = ain == in_left ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        z->next_in = (Bytef *)(uintptr_t)in;
        z->avail_in = ain;
        z->next_out = o;
        z->avail_out = aout;
        int r = deflate(z, flush);
        if (r != Z_OK && r != Z_BUF_ERROR)
            return SB_EINVAL; /* a stream in a bad state: a bug, not input */
        in += ain - z->avail_in;
        in_left -= ain - z->avail_in;
        o += aout - z->avail_out;
        out_left -= aout - z->avail_out;
        if (out_left == 0)
            return 0; /* at least as long as the input */
        /* A sync flush is complete when deflate leaves output space unused. */
        if (flush == Z_SYNC_FLUSH && z->avail_out > 0)
            break;
    }
    size_t n = cap - out_left;
    if (n < sizeof sync_tail || memcmp(o - sizeof sync_tail, sync_tail, sizeof sync_tail) != 0)
        return SB_EINVAL; /* cannot happen with zlib's sync flush */
    *out = pmd->scratch;
    *out_len = n - sizeof sync_tail;
    return 1;
}

static void count(sb__pmd_t *pmd, int r, size_t len, size_t out_len)
{
    if (r == 1) {
        pmd->stats.compressed++;
        pmd->stats.compressed_in += len;
        pmd->stats.compressed_out += out_len;
    } else if (r == 0) {
        pmd->stats.uncompressed++;
    }
}

int sb__pmd_compress_shared(sb__pmd_t *pmd, int key, const void *in, size_t len,
                            const uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (key < 9 || key > 15)
        return SB_EINVAL;
    /* An empty message never shrinks; level 0 only adds stored-block headers. */
    if (len == 0 || len < pmd->policy.min_size || pmd->policy.level == 0) {
        count(pmd, 0, len, 0);
        return 0;
    }
    z_stream *z = pmd->shared[key];
    if (!z) {
        z = deflater_new(pmd->policy.level, key, pmd->policy.mem_level);
        if (!z)
            return SB_ENOMEM;
        pmd->shared[key] = z;
    }
    /* Reset first, so a message never depends on what an earlier one (or an
     * earlier failure) left in the stream. */
    if (deflateReset(z) != Z_OK)
        return SB_EINVAL;
    int r = deflate_into_scratch(pmd, z, in, len, out, out_len);
    count(pmd, r, len, *out_len);
    return r;
}

int sb__pmd_compress(sb__pmd_t *pmd, sb__pmd_conn_t *pc, const void *in, size_t len,
                     const uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (!pc->params.enabled)
        return 0;
    int key = sb__pmd_share_key(pc);
    if (key)
        return sb__pmd_compress_shared(pmd, key, in, len, out, out_len);

    /* Context takeover: this connection's own compressor, whose history the
     * client's decompressor mirrors. */
    /* An empty message never shrinks; level 0 only adds stored-block headers. */
    if (len == 0 || len < pmd->policy.min_size || pmd->policy.level == 0) {
        count(pmd, 0, len, 0);
        return 0;
    }
    if (!pc->deflater) {
        pc->deflater =
            deflater_new(pmd->policy.level, pc->params.server_window_bits, pmd->policy.mem_level);
        if (!pc->deflater)
            return SB_ENOMEM;
    }
    int r = deflate_into_scratch(pmd, pc->deflater, in, len, out, out_len);
    if (r <= 0) {
        /* The client will not see this message compressed: forget it, as the
         * server may always do, so no later message refers to it. */
        if (deflateReset(pc->deflater) != Z_OK) {
            deflater_free(pc->deflater);
            pc->deflater = NULL;
        }
    }
    count(pmd, r, len, *out_len);
    return r;
}

/* ---- decompression ----------------------------------------------------- */

/* Feeds in[0..n) to z, appending the output to the caller's buffer, which
 * grows up to max bytes. Sets *ended when the deflate stream ended (a block
 * with BFINAL): whatever follows it in the message is ignored. */
static int inflate_feed(z_stream *z, const uint8_t *in, size_t n, uint8_t **buf, size_t *len,
                        size_t *cap, size_t max, int *ended)
{
    size_t limit = max ? max : SIZE_MAX;
    /* Output never waits inside zlib between calls (each call runs until
     * the input is used up with output room to spare), so no input means
     * nothing to do. */
    if (n == 0)
        return 0;
    while (!*ended) {
        uint8_t probe = 0;
        int probing = 0;
        if (*len >= limit) {
            /* Full: inflate into one spare byte to learn whether there is
             * more, without allocating past the limit. */
            probing = 1;
        } else if (*len >= *cap) {
            size_t want = *cap ? *cap * 2 : (n < 1024 ? 4096 : n * 4);
            if (want <= *cap || (!*cap && n >= SIZE_MAX / 4)) /* overflow */
                want = SIZE_MAX;
            if (want > limit)
                want = limit;
            uint8_t *p = realloc(*buf, want);
            if (!p)
                return SB_ENOMEM;
            *buf = p;
            *cap = want;
        }
        uInt ain = (uInt)(n < ZCHUNK ? n : ZCHUNK);
        size_t room = probing ? 1 : (*cap < limit ? *cap : limit) - *len;
        uInt aout = (uInt)(room < ZCHUNK ? room : ZCHUNK);
        z->next_in = (Bytef *)(uintptr_t)in;
        z->avail_in = ain;
        z->next_out = probing ? &probe : *buf + *len;
        z->avail_out = aout;
        int r = inflate(z, Z_SYNC_FLUSH);
        size_t consumed = ain - z->avail_in, produced = aout - z->avail_out;
        in += consumed;
        n -= consumed;
        if (probing && produced)
            return SB_ETOOBIG;
        *len += produced;
        /* No progress: with no input left, all the output is out; with
         * input and room left it cannot happen, but must never loop. */
        if (r == Z_BUF_ERROR && !consumed && !produced)
            return ain ? SB_EPROTO : 0;
        switch (r) {
        case Z_STREAM_END:
            *ended = 1;
            return 0;
        case Z_OK:
        case Z_BUF_ERROR: /* no progress: out of input */
            break;
        case Z_MEM_ERROR:
            return SB_ENOMEM;
        default: /* Z_DATA_ERROR, Z_NEED_DICT (no dictionaries in raw deflate) */
            return SB_EPROTO;
        }
        if (z->avail_out > 0 && n == 0)
            return 0; /* output space left over: inflate stopped for want of input */
    }
    return 0;
}

/* The inflater ended a message with a final block (BFINAL, RFC 7692
 * 7.2.3.4) but the client keeps its context: restart the stream with the
 * window it had, so the next message can refer to it. */
static int inflater_restart_with_window(z_stream *z, int window_bits)
{
    uInt dict_len = 0;
    uint8_t *dict = malloc((size_t)1 << window_bits);
    if (!dict)
        return SB_ENOMEM;
    int ok = inflateGetDictionary(z, dict, &dict_len) == Z_OK && inflateReset(z) == Z_OK &&
             (dict_len == 0 || inflateSetDictionary(z, dict, dict_len) == Z_OK);
    free(dict);
    return ok ? 0 : SB_ENOMEM;
}

/* The window of a connection's own decompressor (client context takeover).
 * zlib cannot compress with 8 bits and quietly uses 9, so a client that
 * agreed to 8 may well send 9-bit data: reading it with 9 bits costs 256
 * bytes and refuses nothing valid. */
static int own_inflate_bits(const sb__pmd_conn_t *pc)
{
    return pc->params.client_window_bits < 9 ? 9 : pc->params.client_window_bits;
}

int sb__pmd_inflate(sb__pmd_t *pmd, sb__pmd_conn_t *pc, const uint8_t *in, size_t n, int last,
                    uint8_t **buf, size_t *len, size_t *cap, size_t max)
{
    if (*len > *cap || (*cap && !*buf))
        return SB_EINVAL;
    if (!pc->params.enabled)
        return SB_EPROTO; /* RSV1 without the extension (the reader refuses it first) */
    if (last && n == 0 && !pc->msg_fed) {
        /* A compressed message with no payload at all is not deflate data
         * (the tail alone is a cut stored block), but it can only mean an
         * empty message: take it as one, as zlib-streaming peers do. */
        pmd->stats.inflated++;
        if (pc->params.client_no_takeover)
            release_inflater(pmd, pc);
        return 0;
    }
    if (n == 0 && !last)
        return 0;
    if (!pc->inflater) {
        pc->inflater =
            pc->params.client_no_takeover ? pool_get(pmd) : inflater_new(own_inflate_bits(pc));
        if (!pc->inflater)
            return SB_ENOMEM;
    }
    z_stream *z = pc->inflater;
    size_t before = *len;
    /* zlib keeps reporting Z_STREAM_END once it has seen a final block, so
     * "ended" needs no state of ours between chunks. */
    int ended = 0;
    int rc = inflate_feed(z, in, n, buf, len, cap, max, &ended);
    if (n)
        pc->msg_fed = 1;
    if (last || rc < 0)
        pc->msg_fed = 0;
    if (rc == 0 && last) {
        if (!ended)
            rc = inflate_feed(z, sync_tail, sizeof sync_tail, buf, len, cap, max, &ended);
        /* A complete message leaves the inflater between blocks, byte
         * aligned, with the tail consumed (data_type: 128 = at a block
         * boundary, low 6 bits = bits left over). Anything else is a message
         * cut short or not ending in a sync flush. */
        if (rc == 0 && !ended && (z->avail_in != 0 || (z->data_type & (128 | 63)) != 128))
            rc = SB_EPROTO;
    }
    pmd->stats.inflated_in += n;
    pmd->stats.inflated_out += *len - before;
    if (rc < 0) {
        pmd->stats.inflate_errors++;
        release_inflater(pmd, pc);
        return rc;
    }
    if (last) {
        pmd->stats.inflated++;
        if (pc->params.client_no_takeover) {
            release_inflater(pmd, pc);
        } else if (ended) {
            rc = inflater_restart_with_window(z, own_inflate_bits(pc));
            if (rc < 0)
                release_inflater(pmd, pc);
        }
    }
    return rc;
}

int sb__pmd_close_code(int err)
{
    switch (err) {
    case SB_ETOOBIG:
        return 1009;
    case SB_EPROTO:
        return 1007;
    default:
        return 1011;
    }
}

const char *sb__pmd_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case SB_ETOOBIG:
        return "message too big once decompressed";
    case SB_EPROTO:
        return "invalid compressed data (permessage-deflate)";
    case SB_ENOMEM:
        return "out of memory for compression";
    default:
        return sb_strerror(err);
    }
}
