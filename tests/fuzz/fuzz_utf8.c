/* fuzz_utf8.c — sb__utf8_validate (src/ws/utf8.c) against a reference
 * written differently: decode each sequence to its code point and check the
 * value, where the validator checks byte ranges.
 *
 * Input: 2 bytes choosing a split point, then the text. The validator must
 * agree with the reference on the text fed at once, in two pieces split at
 * that point, and a byte at a time. */
#include "fuzz.h"
#include "ws/ws.h"

typedef enum { REF_COMPLETE, REF_INCOMPLETE, REF_INVALID } ref_t;

/* Is some code point of [lo, hi] one that UTF-8 may encode with a sequence
 * whose shortest form starts at min? Scalar values are U+0000..U+10FFFF
 * without the surrogates U+D800..U+DFFF. */
static int range_has_scalar(uint32_t lo, uint32_t hi, uint32_t min)
{
    if (lo < min)
        lo = min;
    if (hi > 0x10ffff)
        hi = 0x10ffff;
    if (lo > hi)
        return 0;
    return !(lo >= 0xd800 && hi <= 0xdfff);
}

/* COMPLETE: valid UTF-8. INCOMPLETE: valid so far, but it ends inside a
 * character that can still be completed. INVALID: no continuation makes it
 * valid. */
static ref_t ref_utf8(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t len;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            len = 2, cp = b & 0x1f, min = 0x80;
        } else if ((b & 0xf0) == 0xe0) {
            len = 3, cp = b & 0x0f, min = 0x800;
        } else if ((b & 0xf8) == 0xf0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return REF_INVALID; /* a continuation byte, or 0xf8..0xff */
        }
        size_t have = 1;
        for (; have < len && i + have < n; have++) {
            if ((p[i + have] & 0xc0) != 0x80)
                return REF_INVALID;
            cp = cp << 6 | (p[i + have] & 0x3f);
        }
        /* The bytes seen so far leave the code points [lo, hi] possible. */
        uint32_t lo = cp, hi = cp;
        for (size_t k = have; k < len; k++) {
            lo <<= 6;
            hi = hi << 6 | 0x3f;
        }
        if (!range_has_scalar(lo, hi, min))
            return REF_INVALID;
        if (have < len)
            return REF_INCOMPLETE;
        i += len;
    }
    return REF_COMPLETE;
}

static const char *state_name(uint32_t s)
{
    return s == SB_UTF8_ACCEPT ? "ACCEPT" : s == SB_UTF8_REJECT ? "REJECT" : "inside a character";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t n = size - 2;
    uint8_t *p = dup_exact(data + 2, n);
    size_t split = ((size_t)data[0] << 8 | data[1]) % (n + 1);

    ref_t ref = ref_utf8(p, n);
    uint32_t whole = sb__utf8_validate(SB_UTF8_ACCEPT, p, n);
    uint32_t two =
        sb__utf8_validate(sb__utf8_validate(SB_UTF8_ACCEPT, p, split), p + split, n - split);
    uint32_t bytewise = SB_UTF8_ACCEPT;
    for (size_t i = 0; i < n; i++)
        bytewise = sb__utf8_validate(bytewise, p + i, 1);

    switch (ref) {
    case REF_COMPLETE:
        CHECK(whole == SB_UTF8_ACCEPT, "valid UTF-8 gave %s", state_name(whole));
        break;
    case REF_INVALID:
        CHECK(whole == SB_UTF8_REJECT, "invalid UTF-8 gave %s", state_name(whole));
        break;
    case REF_INCOMPLETE:
        CHECK(whole != SB_UTF8_ACCEPT && whole != SB_UTF8_REJECT,
              "a valid prefix ending inside a character gave %s", state_name(whole));
        break;
    }
    /* The state after the same bytes is the same, however they were split. */
    CHECK(two == whole, "split at %zu: %s, at once: %s", split, state_name(two), state_name(whole));
    CHECK(bytewise == whole, "byte at a time: %s, at once: %s", state_name(bytewise),
          state_name(whole));
    CHECK(sb__utf8_valid(p, n) == (ref == REF_COMPLETE), "sb__utf8_valid disagrees");
    CHECK(sb__utf8_validate(SB_UTF8_REJECT, p, n) == SB_UTF8_REJECT, "REJECT is not sticky");
    free(p);
    return 0;
}
