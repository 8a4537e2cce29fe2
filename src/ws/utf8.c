/* utf8.c — incremental UTF-8 validation (RFC 3629), failing at the first
 * byte that cannot continue a valid sequence. */
#include <string.h>

#include "ws/ws.h"

/* Inside a character the state packs the continuation bytes still needed and
 * the range allowed for the next one: need << 2 | lo << 8 | hi << 16. The
 * first continuation's range is what excludes overlong forms (E0, F0),
 * surrogates (ED) and code points above U+10FFFF (F4). need >= 1 keeps these
 * states apart from ACCEPT (0) and REJECT (1). */
static uint32_t pack(uint32_t need, uint32_t lo, uint32_t hi)
{
    return need << 2 | lo << 8 | hi << 16;
}

static uint32_t lead(uint8_t b)
{
    if (b < 0x80)
        return SB_UTF8_ACCEPT;
    if (b < 0xc2)
        return SB_UTF8_REJECT; /* stray continuation or overlong 2-byte lead */
    if (b < 0xe0)
        return pack(1, 0x80, 0xbf);
    if (b == 0xe0)
        return pack(2, 0xa0, 0xbf);
    if (b == 0xed)
        return pack(2, 0x80, 0x9f);
    if (b < 0xf0)
        return pack(2, 0x80, 0xbf);
    if (b == 0xf0)
        return pack(3, 0x90, 0xbf);
    if (b < 0xf4)
        return pack(3, 0x80, 0xbf);
    if (b == 0xf4)
        return pack(3, 0x80, 0x8f);
    return SB_UTF8_REJECT;
}

uint32_t sb__utf8_validate(uint32_t state, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (state == SB_UTF8_REJECT)
            return state;
        if (state == SB_UTF8_ACCEPT) {
            /* ASCII runs are the common case: skip them a word at a time. */
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8;
            }
            if (i == n)
                break;
            state = lead(p[i++]);
            continue;
        }
        uint8_t b = p[i++];
        uint32_t lo = (state >> 8) & 0xff, hi = (state >> 16) & 0xff;
        if (b < lo || b > hi)
            return SB_UTF8_REJECT;
        uint32_t need = (state >> 2) & 3;
        state = need == 1 ? SB_UTF8_ACCEPT : pack(need - 1, 0x80, 0xbf);
    }
    return state;
}

int sb__utf8_valid(const uint8_t *p, size_t n)
{
    return sb__utf8_validate(SB_UTF8_ACCEPT, p, n) == SB_UTF8_ACCEPT;
}
