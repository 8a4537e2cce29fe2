/* fuzz_extensions.c — the permessage-deflate negotiation
 * (sb__pmd_negotiate, src/ws/deflate.c) against a reference written the
 * other way round: where the codec walks the value with a cursor and skips
 * to the next comma after an error, the reference first splits the whole
 * value into elements and parameters at separators outside quoted strings,
 * then judges each piece on its own.
 *
 * Input: 1 policy byte, then a Sec-WebSocket-Extensions value (in a block
 * of exactly its length).
 *   bit 0: allow context takeover; bits 1-3: max window bits (9 + v % 7);
 *   bit 4: compression disabled.
 *
 * Checked: accepted exactly when the reference accepts, with the same
 * parameters; the answer is well-formed, shorter than SB_PMD_RESPONSE_MAX,
 * follows RFC 7692 (server_max_window_bits only and always when offered,
 * never above the offer; client_max_window_bits only when offered, never
 * above the offer; the no_context_takeover flags as agreed), and
 * negotiating the answer itself gives the same answer. */
#include <ctype.h>

#include "fuzz.h"
#include "ws/deflate.h"

typedef struct {
    const char *s;
    size_t n;
} span_t;

static int ows(char c)
{
    return c == ' ' || c == '\t';
}

static span_t trimmed(span_t x)
{
    while (x.n && ows(x.s[0]))
        x.s++, x.n--;
    while (x.n && ows(x.s[x.n - 1]))
        x.n--;
    return x;
}

static int tchar(unsigned char c)
{
    return isalnum(c) ? c < 0x80 : c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_token(span_t x)
{
    if (!x.n)
        return 0;
    for (size_t i = 0; i < x.n; i++)
        if (!tchar((unsigned char)x.s[i]))
            return 0;
    return 1;
}

/* Splits x at sep outside quoted strings ('"' opens and closes one, '\'
 * inside one escapes the next byte). Returns the number of parts (into a
 * malloc'd array). */
static size_t split(span_t x, char sep, span_t **parts)
{
    size_t cap = 4, np = 0, start = 0;
    *parts = malloc(cap * sizeof **parts);
    if (!*parts)
        abort();
    int quoted = 0;
    for (size_t i = 0; i <= x.n; i++) {
        if (i < x.n && quoted) {
            if (x.s[i] == '\\')
                i++;
            else if (x.s[i] == '"')
                quoted = 0;
            continue;
        }
        if (i < x.n && x.s[i] == '"') {
            quoted = 1;
            continue;
        }
        if (i == x.n || x.s[i] == sep) {
            if (np == cap && !(*parts = realloc(*parts, (cap *= 2) * sizeof **parts)))
                abort();
            (*parts)[np++] = (span_t){x.s + start, (i < x.n ? i : x.n) - start};
            start = i + 1;
        }
    }
    return np;
}

/* A parameter value: a token, or a whole quoted string (unescaped into
 * out, up to cap bytes). Returns the value's length or -1. */
static long value_of(span_t v, char *out, size_t cap)
{
    if (is_token(v)) {
        for (size_t i = 0; i < v.n && i < cap; i++)
            out[i] = v.s[i];
        return (long)v.n;
    }
    if (v.n < 2 || v.s[0] != '"' || v.s[v.n - 1] != '"')
        return -1;
    size_t n = 0;
    for (size_t i = 1; i + 1 < v.n; i++) {
        unsigned char c = (unsigned char)v.s[i];
        if (c == '"')
            return -1; /* ends before the end */
        if (c == '\\') {
            if (i + 2 >= v.n)
                return -1; /* escapes the closing quote */
            c = (unsigned char)v.s[++i];
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return -1;
        if (n < cap)
            out[n] = (char)c;
        n++;
    }
    return (long)n;
}

static int same_name(span_t x, const char *name)
{
    if (x.n != strlen(name))
        return 0;
    for (size_t i = 0; i < x.n; i++)
        if (tolower((unsigned char)x.s[i]) != name[i])
            return 0;
    return 1;
}

static int bits_of(const char *v, long n)
{
    if (n < 1 || n > 2 || (n == 2 && v[0] == '0'))
        return -1;
    int x = 0;
    for (long i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    return x >= 8 && x <= 15 ? x : -1;
}

typedef struct {
    int ok; /* a syntactically valid permessage-deflate element with valid parameters */
    int snct, cnct, sbits, cbits; /* presence flags; bits: -1 absent, 0 bare, else value */
} ref_offer_t;

/* Judges one list element. */
static ref_offer_t judge(span_t element)
{
    ref_offer_t o = {0, 0, 0, -1, -1};
    span_t *parts;
    size_t np = split(element, ';', &parts);
    span_t name = trimmed(parts[0]);
    if (!is_token(name) || !same_name(name, "permessage-deflate"))
        goto out;
    int valid = 1;
    for (size_t i = 1; i < np; i++) {
        span_t p = trimmed(parts[i]);
        span_t key = p, val = {NULL, 0};
        int has_value = 0;
        for (size_t k = 0; k < p.n; k++)
            if (p.s[k] == '=') {
                key = (span_t){p.s, k};
                val = trimmed((span_t){p.s + k + 1, p.n - k - 1});
                has_value = 1;
                break;
            }
        key = trimmed(key);
        if (!is_token(key)) {
            valid = 0; /* also catches '=' inside a quoted string before any '=' */
            continue;
        }
        char v[3];
        long vn = has_value ? value_of(val, v, sizeof v) : 0;
        if (vn < 0 || (has_value && vn == 0)) {
            valid = 0;
            continue;
        }
        if (same_name(key, "server_no_context_takeover")) {
            valid &= !has_value && !o.snct;
            o.snct = 1;
        } else if (same_name(key, "client_no_context_takeover")) {
            valid &= !has_value && !o.cnct;
            o.cnct = 1;
        } else if (same_name(key, "server_max_window_bits")) {
            int b = has_value ? bits_of(v, vn) : -1;
            valid &= b >= 9 && o.sbits < 0; /* 8 is valid, but zlib cannot */
            o.sbits = b < 0 ? 99 : b;
        } else if (same_name(key, "client_max_window_bits")) {
            int b = has_value ? bits_of(v, vn) : 0;
            valid &= b >= 0 && o.cbits < 0;
            o.cbits = b < 0 ? 99 : b;
        } else {
            valid = 0;
        }
    }
    o.ok = valid;
out:
    free(parts);
    return o;
}

static int contains(const char *resp, const char *param, int *value)
{
    const char *p = strstr(resp, param);
    if (!p)
        return 0;
    p += strlen(param);
    if (value)
        *value = *p == '=' ? atoi(p + 1) : -1;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    sb__pmd_policy_t pol;
    sb__pmd_policy_default(&pol);
    pol.allow_context_takeover = data[0] & 1;
    pol.max_window_bits = 9 + (data[0] >> 1 & 7) % 7;
    pol.enabled = !(data[0] & 16);
    size_t n = size - 1;
    char *value = (char *)dup_exact(data + 1, n);

    sb__pmd_params_t params;
    char resp[SB_PMD_RESPONSE_MAX];
    memset(resp, 0x55, sizeof resp);
    int r = sb__pmd_negotiate(&pol, value, n, &params, resp);
    CHECK(r == 0 || r == 1, "negotiate returned %d", r);

    /* The reference: the first acceptable element. */
    ref_offer_t chosen = {0, 0, 0, -1, -1};
    if (pol.enabled) {
        span_t *elements;
        size_t ne = split((span_t){value, n}, ',', &elements);
        for (size_t i = 0; i < ne && !chosen.ok; i++)
            if (trimmed(elements[i]).n)
                chosen = judge(elements[i]);
        free(elements);
    }
    CHECK(r == chosen.ok, "'%.*s': negotiate says %d, the reference %d", (int)n, value, r,
          chosen.ok);

    if (!r) {
        CHECK(resp[0] == '\0' && !params.enabled, "declined but answered '%s'", resp);
    } else {
        int max = pol.max_window_bits;
        int want_sbits = chosen.sbits > 0 && chosen.sbits < max ? chosen.sbits : max;
        int want_cbits = 15;
        if (chosen.cbits >= 0) {
            want_cbits = chosen.cbits > 0 ? chosen.cbits : 15;
            if (max < want_cbits)
                want_cbits = max;
        }
        CHECK(params.enabled == 1, "accepted, not enabled");
        CHECK(params.server_no_takeover == (chosen.snct || !pol.allow_context_takeover),
              "server_no_takeover %d", params.server_no_takeover);
        CHECK(params.client_no_takeover == (chosen.cnct || !pol.allow_context_takeover),
              "client_no_takeover %d", params.client_no_takeover);
        CHECK(params.server_window_bits == want_sbits, "server bits %d, want %d",
              params.server_window_bits, want_sbits);
        CHECK(params.client_window_bits == want_cbits, "client bits %d, want %d",
              params.client_window_bits, want_cbits);

        size_t rl = strnlen(resp, sizeof resp);
        CHECK(rl < sizeof resp, "answer not terminated");
        CHECK(strncmp(resp, "permessage-deflate", 18) == 0, "answer '%s'", resp);
        ref_offer_t a = judge((span_t){resp, rl});
        CHECK(a.ok, "the answer '%s' is not a valid element", resp);
        CHECK(a.snct == params.server_no_takeover, "'%s'", resp);
        CHECK(a.cnct == params.client_no_takeover, "'%s'", resp);
        int v;
        CHECK(contains(resp, "server_max_window_bits", &v) == (chosen.sbits >= 0),
              "'%s': server_max_window_bits answered iff offered", resp);
        if (chosen.sbits >= 0)
            CHECK(v == params.server_window_bits && v <= chosen.sbits, "'%s'", resp);
        if (contains(resp, "client_max_window_bits", &v)) {
            CHECK(chosen.cbits >= 0, "'%s': client_max_window_bits not offered", resp);
            CHECK(v >= 8 && v == params.client_window_bits, "'%s'", resp);
            CHECK(chosen.cbits == 0 || v <= chosen.cbits, "'%s'", resp);
        }

        /* Negotiating the answer gives the same answer and parameters. */
        sb__pmd_params_t again;
        char resp2[SB_PMD_RESPONSE_MAX];
        CHECK(sb__pmd_negotiate(&pol, resp, rl, &again, resp2) == 1, "'%s' refused", resp);
        CHECK(strcmp(resp, resp2) == 0, "'%s' became '%s'", resp, resp2);
        CHECK(memcmp(&again, &params, sizeof params) == 0, "'%s': other parameters", resp);
    }
    CHECK(sb__pmd_negotiate(&pol, NULL, 0, &params, resp) == 0, "no header accepted");
    free(value);
    return 0;
}
