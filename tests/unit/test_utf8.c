/* test_utf8.c — incremental UTF-8 validation (src/ws/utf8.c).
 *
 * Every sample is also fed split at every point and one byte at a time: the
 * validator must accept only at character boundaries and reject exactly when
 * the first byte that cannot belong to valid UTF-8 is fed. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "ws/ws.h"

typedef struct {
    const char *bytes;
    size_t len;
    size_t bad; /* invalid samples: index of the first offending byte */
} sample_t;

/* clang-format off */
#define VALID(s) {s, sizeof(s) - 1, 0}
#define INVALID(s, at) {s, sizeof(s) - 1, at}
/* clang-format on */

static const sample_t valid_samples[] = {
    VALID(""),
    VALID("a"),
    VALID("Hello, world"),
    VALID("\x7f"),                                         /* U+007F, last 1-byte */
    VALID("\xc2\x80"),                                     /* U+0080, first 2-byte */
    VALID("\xc3\xa9"),                                     /* é */
    VALID("\xdf\xbf"),                                     /* U+07FF, last 2-byte */
    VALID("\xe0\xa0\x80"),                                 /* U+0800, first 3-byte */
    VALID("\xe2\x82\xac"),                                 /* € */
    VALID("\xed\x9f\xbf"),                                 /* U+D7FF, just below the surrogates */
    VALID("\xee\x80\x80"),                                 /* U+E000, just above the surrogates */
    VALID("\xef\xbf\xbf"),                                 /* U+FFFF, last 3-byte */
    VALID("\xf0\x90\x80\x80"),                             /* U+10000, first 4-byte */
    VALID("\xf0\x9f\x98\x80"),                             /* 😀 */
    VALID("\xf3\xbf\xbf\xbf"),                             /* U+FFFFF */
    VALID("\xf4\x8f\xbf\xbf"),                             /* U+10FFFF, the last code point */
    VALID("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), /* κόσμε */
    VALID("a\xc3\xa9z\xe2\x82\xac\xf0\x9f\x98\x80!"),
    VALID("\xf4\x8f\xbf\xbf\xc2\x80\xe0\xa0\x80\x7f"),
};

static const sample_t invalid_samples[] = {
    /* overlong forms */
    INVALID("\xc0\x80", 0),
    INVALID("\xc1\xbf", 0),
    INVALID("\xe0\x80\x80", 1),
    INVALID("\xe0\x9f\xbf", 1),
    INVALID("\xf0\x80\x80\x80", 1),
    INVALID("\xf0\x8f\xbf\xbf", 1),
    /* UTF-16 surrogates U+D800..U+DFFF */
    INVALID("\xed\xa0\x80", 1),
    INVALID("\xed\xad\xbf", 1),
    INVALID("\xed\xae\x80", 1),
    INVALID("\xed\xbf\xbf", 1),
    INVALID("\xed\xa0\x80\xed\xb0\x80", 1), /* an encoded surrogate pair */
    /* above U+10FFFF */
    INVALID("\xf4\x90\x80\x80", 1),
    INVALID("\xf4\xbf\xbf\xbf", 1),
    INVALID("\xf5\x80\x80\x80", 0),
    INVALID("\xf7\xbf\xbf\xbf", 0),
    INVALID("\xf8\x88\x80\x80\x80", 0),
    INVALID("\xfc\x84\x80\x80\x80\x80", 0),
    INVALID("\xfe", 0),
    INVALID("\xff", 0),
    /* stray continuation bytes */
    INVALID("\x80", 0),
    INVALID("\xbf", 0),
    INVALID("a\x80", 1),
    INVALID("\xc3\xa9\xa9", 2),
    INVALID("\xe2\x82\xac\x82", 3),
    INVALID("\xf0\x9f\x98\x80\x80", 4),
    /* truncated sequences followed by something that cannot continue them */
    INVALID("\xc3"
            "a",
            1),
    INVALID("\xe2\x82"
            "a",
            2),
    INVALID("\xe2"
            "a",
            1),
    INVALID("\xf0\x9f\x98"
            "a",
            3),
    INVALID("\xf0\x9f"
            "a",
            2),
    INVALID("\xc3\xc3\xa9", 1),
    INVALID("\xe2\x82\xe2\x82\xac", 2),
    INVALID("\xf0\x9f\x98\xf0\x9f\x98\x80", 3),
    INVALID("ok\xc3\x28", 3),
};

/* Code points that start in the truncated samples but never finish. */
static const sample_t truncated_samples[] = {
    VALID("\xc3"),        VALID("\xe2"),     VALID("\xe2\x82"),
    VALID("\xf0"),        VALID("\xf0\x9f"), VALID("\xf0\x9f\x98"),
    VALID("abc\xf4\x8f"), VALID("\xe0\xa0"), VALID("\xed\x9f"),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int is_mid_character(uint32_t state)
{
    return state != SB_UTF8_ACCEPT && state != SB_UTF8_REJECT;
}

/* A copy in its own allocation, so a read past the end trips ASan. */
static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    cr_assert_not_null(d);
    memcpy(d, p, n);
    return d;
}

static uint32_t validate_copy(uint32_t state, const void *p, size_t n)
{
    uint8_t *d = dup_bytes(p, n);
    state = sb__utf8_validate(state, d, n);
    free(d);
    return state;
}

/* A straightforward decoder used as the reference: 1 when p[0..n) is UTF-8. */
static int reference_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        uint32_t cp;
        size_t need;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            cp = b & 0x1f;
            need = 1;
        } else if ((b & 0xf0) == 0xe0) {
            cp = b & 0x0f;
            need = 2;
        } else if ((b & 0xf8) == 0xf0) {
            cp = b & 0x07;
            need = 3;
        } else {
            return 0;
        }
        if (n - i - 1 < need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        static const uint32_t min_for_need[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_for_need[need] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

Test(utf8, valid_samples_accept)
{
    for (size_t s = 0; s < COUNT(valid_samples); s++) {
        const sample_t *v = &valid_samples[s];
        cr_assert_eq(validate_copy(SB_UTF8_ACCEPT, v->bytes, v->len), SB_UTF8_ACCEPT,
                     "sample %zu should be valid", s);
        uint8_t *d = dup_bytes(v->bytes, v->len);
        cr_assert(sb__utf8_valid(d, v->len), "sample %zu", s);
        free(d);
    }
}

Test(utf8, empty_input_keeps_the_state)
{
    cr_assert_eq(sb__utf8_validate(SB_UTF8_ACCEPT, NULL, 0), SB_UTF8_ACCEPT);
    cr_assert_eq(sb__utf8_validate(SB_UTF8_REJECT, NULL, 0), SB_UTF8_REJECT);
    cr_assert(sb__utf8_valid(NULL, 0));
    uint32_t mid = validate_copy(SB_UTF8_ACCEPT, "\xe2", 1);
    cr_assert(is_mid_character(mid));
    cr_assert_eq(sb__utf8_validate(mid, NULL, 0), mid);
}

/* Split at every point: ACCEPT exactly at character boundaries, a
 * mid-character state elsewhere, and ACCEPT once all of it is fed. */
Test(utf8, valid_samples_split_accept_only_at_character_boundaries)
{
    for (size_t s = 0; s < COUNT(valid_samples); s++) {
        const sample_t *v = &valid_samples[s];
        const uint8_t *p = (const uint8_t *)v->bytes;
        for (size_t k = 0; k <= v->len; k++) {
            uint32_t st = validate_copy(SB_UTF8_ACCEPT, p, k);
            int boundary = k == v->len || (p[k] & 0xc0) != 0x80;
            if (boundary)
                cr_assert_eq(st, SB_UTF8_ACCEPT, "sample %zu split at %zu", s, k);
            else
                cr_assert(is_mid_character(st), "sample %zu split at %zu: state %u", s, k, st);
            cr_assert_eq(validate_copy(st, p + k, v->len - k), SB_UTF8_ACCEPT,
                         "sample %zu split at %zu", s, k);
        }
        /* One byte at a time. */
        uint32_t st = SB_UTF8_ACCEPT;
        for (size_t i = 0; i < v->len; i++) {
            st = validate_copy(st, p + i, 1);
            int boundary = i + 1 == v->len || (p[i + 1] & 0xc0) != 0x80;
            if (boundary)
                cr_assert_eq(st, SB_UTF8_ACCEPT, "sample %zu byte %zu", s, i);
            else
                cr_assert(is_mid_character(st), "sample %zu byte %zu: state %u", s, i, st);
        }
    }
}

Test(utf8, invalid_samples_reject)
{
    for (size_t s = 0; s < COUNT(invalid_samples); s++) {
        const sample_t *v = &invalid_samples[s];
        cr_assert_eq(validate_copy(SB_UTF8_ACCEPT, v->bytes, v->len), SB_UTF8_REJECT,
                     "sample %zu should be invalid", s);
        uint8_t *d = dup_bytes(v->bytes, v->len);
        cr_assert_not(sb__utf8_valid(d, v->len), "sample %zu", s);
        free(d);
    }
}

/* Fed one byte at a time, REJECT appears exactly with the offending byte;
 * split anywhere, the first part rejects iff it holds that byte. */
Test(utf8, invalid_samples_reject_at_the_first_offending_byte)
{
    for (size_t s = 0; s < COUNT(invalid_samples); s++) {
        const sample_t *v = &invalid_samples[s];
        const uint8_t *p = (const uint8_t *)v->bytes;
        uint32_t st = SB_UTF8_ACCEPT;
        for (size_t i = 0; i < v->len; i++) {
            st = validate_copy(st, p + i, 1);
            if (i < v->bad)
                cr_assert_neq(st, SB_UTF8_REJECT, "sample %zu rejected early at byte %zu", s, i);
            else
                cr_assert_eq(st, SB_UTF8_REJECT, "sample %zu not rejected at byte %zu", s, i);
        }
        for (size_t k = 0; k <= v->len; k++) {
            uint32_t first = validate_copy(SB_UTF8_ACCEPT, p, k);
            cr_assert_eq(first == SB_UTF8_REJECT, k > v->bad, "sample %zu split at %zu", s, k);
            cr_assert_eq(validate_copy(first, p + k, v->len - k), SB_UTF8_REJECT,
                         "sample %zu split at %zu", s, k);
        }
    }
}

/* Bytes that can never start a character: C0, C1 (overlong) and F5..FF. */
Test(utf8, impossible_lead_bytes_reject_at_once)
{
    for (unsigned lead = 0xc0; lead <= 0xff; lead++) {
        if (lead == 0xc2)
            lead = 0xf5;
        for (unsigned next = 0x80; next <= 0xbf; next++) {
            const uint8_t seq[4] = {(uint8_t)lead, (uint8_t)next, 0x80, 0x80};
            cr_assert_eq(validate_copy(SB_UTF8_ACCEPT, seq, 1), SB_UTF8_REJECT, "%02x", lead);
            cr_assert_eq(validate_copy(SB_UTF8_ACCEPT, seq, 4), SB_UTF8_REJECT, "%02x %02x", lead,
                         next);
        }
    }
}

Test(utf8, truncated_sequences_are_neither_accepted_nor_rejected)
{
    for (size_t s = 0; s < COUNT(truncated_samples); s++) {
        const sample_t *v = &truncated_samples[s];
        uint32_t st = validate_copy(SB_UTF8_ACCEPT, v->bytes, v->len);
        cr_assert(is_mid_character(st), "sample %zu: state %u", s, st);
        uint8_t *d = dup_bytes(v->bytes, v->len);
        cr_assert_not(sb__utf8_valid(d, v->len), "sample %zu", s);
        free(d);
    }
}

Test(utf8, reject_is_sticky)
{
    const char *good[] = {"a", "\xc3\xa9", "\xf0\x9f\x98\x80", "0123456789abcdef0123"};
    for (size_t i = 0; i < COUNT(good); i++)
        cr_assert_eq(validate_copy(SB_UTF8_REJECT, good[i], strlen(good[i])), SB_UTF8_REJECT);
}

/* Every 1- and 2-byte input, and every 3-byte input led by E0..EF or F0..F4
 * with a range of continuations, agrees with the reference decoder. */
Test(utf8, agrees_with_a_reference_decoder)
{
    uint8_t b[4];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        cr_assert_eq(sb__utf8_valid(b, 1), reference_valid(b, 1), "%02x", x);
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            cr_assert_eq(sb__utf8_valid(b, 2), reference_valid(b, 2), "%02x %02x", x, y);
        }
    }
    static const uint8_t tails[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
                                    0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xf0, 0xff};
    for (unsigned x = 0xe0; x <= 0xf4; x++) {
        b[0] = (uint8_t)x;
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            for (size_t z = 0; z < sizeof tails; z++) {
                b[2] = tails[z];
                cr_assert_eq(sb__utf8_valid(b, 3), reference_valid(b, 3), "%02x %02x %02x", x, y,
                             b[2]);
                for (size_t w = 0; w < sizeof tails; w++) {
                    b[3] = tails[w];
                    cr_assert_eq(sb__utf8_valid(b, 4), reference_valid(b, 4), "%02x %02x %02x %02x",
                                 x, y, b[2], b[3]);
                }
            }
        }
    }
}

/* ---- the 8-byte ASCII fast path --------------------------------------- */

#define WINDOW 64
#define PAD 24

/* Fills p[0..n) with printable ASCII. */
static void fill_ascii(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(' ' + (i * 7) % 95);
}

/* An ASCII buffer of PAD + WINDOW + PAD bytes placed at each alignment, with
 * one bad byte at each position of the window: the whole buffer is rejected,
 * and REJECT appears exactly when the bad byte is fed. */
Test(utf8, ascii_fast_path_finds_a_bad_byte_at_every_position_and_alignment)
{
    static const uint8_t bad_bytes[] = {0x80, 0xbf, 0xc0, 0xf5, 0xff};
    const size_t n = PAD + WINDOW + PAD;
    for (size_t align = 0; align < 8; align++) {
        /* The buffer ends flush with its allocation. */
        uint8_t *block = malloc(align + n);
        cr_assert_not_null(block);
        uint8_t *p = block + align;
        for (size_t pos = PAD; pos < PAD + WINDOW; pos++) {
            for (size_t b = 0; b < sizeof bad_bytes; b++) {
                fill_ascii(p, n);
                cr_assert_eq(sb__utf8_validate(SB_UTF8_ACCEPT, p, n), SB_UTF8_ACCEPT);
                p[pos] = bad_bytes[b];
                cr_assert_eq(sb__utf8_validate(SB_UTF8_ACCEPT, p, n), SB_UTF8_REJECT,
                             "align %zu pos %zu byte %02x", align, pos, bad_bytes[b]);
                /* Split at every point: the first part rejects iff it holds it. */
                for (size_t k = 0; k <= n; k++) {
                    uint32_t st = sb__utf8_validate(SB_UTF8_ACCEPT, p, k);
                    cr_assert_eq(st == SB_UTF8_REJECT, k > pos, "align %zu pos %zu split %zu",
                                 align, pos, k);
                    cr_assert_eq(sb__utf8_validate(st, p + k, n - k), SB_UTF8_REJECT);
                }
            }
        }
        free(block);
    }
}

/* A valid multi-byte character at each position of the window, amid ASCII,
 * at each alignment: accepted; cut short before the end: not accepted. */
Test(utf8, ascii_fast_path_resumes_after_multibyte_characters)
{
    static const char *chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    const size_t n = PAD + WINDOW + PAD;
    for (size_t align = 0; align < 8; align++) {
        uint8_t *block = malloc(align + n);
        cr_assert_not_null(block);
        uint8_t *p = block + align;
        for (size_t c = 0; c < COUNT(chars); c++) {
            size_t clen = strlen(chars[c]);
            for (size_t pos = PAD; pos < PAD + WINDOW; pos++) {
                fill_ascii(p, n);
                memcpy(p + pos, chars[c], clen);
                cr_assert_eq(sb__utf8_validate(SB_UTF8_ACCEPT, p, n), SB_UTF8_ACCEPT,
                             "align %zu pos %zu char %zu", align, pos, c);
                /* Ending inside the character leaves a mid-character state. */
                uint32_t st = sb__utf8_validate(SB_UTF8_ACCEPT, p, pos + clen - 1);
                cr_assert(is_mid_character(st), "align %zu pos %zu char %zu", align, pos, c);
                /* A continuation byte missing: rejected at the next ASCII byte. */
                memmove(p + pos + clen - 1, p + pos + clen, n - pos - clen);
                p[n - 1] = 'x';
                st = sb__utf8_validate(SB_UTF8_ACCEPT, p, pos + clen - 1);
                cr_assert(is_mid_character(st));
                cr_assert_eq(sb__utf8_validate(SB_UTF8_ACCEPT, p, pos + clen), SB_UTF8_REJECT,
                             "align %zu pos %zu char %zu", align, pos, c);
            }
        }
        free(block);
    }
}

/* A long mixed text (ASCII runs of every length 0..20 between multi-byte
 * characters), fed whole and in every chunk size 1..17. */
Test(utf8, long_mixed_text_in_every_chunk_size)
{
    static const char *chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xdf\xbf"};
    size_t cap = 4096, n = 0;
    uint8_t *text = malloc(cap);
    cr_assert_not_null(text);
    for (size_t run = 0; run <= 20; run++) {
        for (size_t c = 0; c < COUNT(chars); c++) {
            fill_ascii(text + n, run);
            n += run;
            memcpy(text + n, chars[c], strlen(chars[c]));
            n += strlen(chars[c]);
        }
    }
    cr_assert_lt(n, cap);
    cr_assert_eq(sb__utf8_validate(SB_UTF8_ACCEPT, text, n), SB_UTF8_ACCEPT);
    for (size_t chunk = 1; chunk <= 17; chunk++) {
        uint32_t st = SB_UTF8_ACCEPT;
        for (size_t i = 0; i < n; i += chunk) {
            size_t m = n - i < chunk ? n - i : chunk;
            st = validate_copy(st, text + i, m);
            cr_assert_neq(st, SB_UTF8_REJECT, "chunk %zu at %zu", chunk, i);
        }
        cr_assert_eq(st, SB_UTF8_ACCEPT, "chunk %zu", chunk);
    }
    free(text);
}
