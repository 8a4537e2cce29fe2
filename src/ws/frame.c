/* frame.c — RFC 6455 frame headers and masking. */
#include <string.h>

#include "ws/ws.h"

int sb__frame_header_parse(const uint8_t *p, size_t n, sb__frame_t *f)
{
    if (n < 2)
        return 0;
    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 7;
    f->opcode = p[0] & 0x0f;
    f->masked = p[1] >> 7;

    size_t need = 2;
    uint64_t len = p[1] & 0x7f;
    if (len == 126)
        need += 2;
    else if (len == 127)
        need += 8;
    if (f->masked)
        need += 4;
    if (n < need)
        return 0;

    const uint8_t *q = p + 2;
    if (len == 126) {
        len = (uint64_t)q[0] << 8 | q[1];
        q += 2;
    } else if (len == 127) {
        if (q[0] & 0x80)
            return SB_EPROTO;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | q[i];
        q += 8;
    }
    f->len = len;
    if (f->masked)
        memcpy(f->mask, q, 4);
    else
        memset(f->mask, 0, 4);
    return (int)need;
}

size_t sb__frame_header_write(uint8_t *out, int fin, int rsv, int opcode, uint64_t len,
                              const uint8_t *mask)
{
    size_t n = 2;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 7) << 4 | (opcode & 0x0f));
    uint8_t mbit = mask ? 0x80 : 0;
    if (len < 126) {
        out[1] = mbit | (uint8_t)len;
    } else if (len <= 0xffff) {
        out[1] = mbit | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = mbit | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void sb__mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t offset)
{
    uint8_t m[4];
    for (int i = 0; i < 4; i++)
        m[i] = mask[(offset + (size_t)i) & 3];

    /* Bytes until p is 8-aligned, then whole words: the mask rotates with the
     * byte position, so rotate the working copy as we go. */
    size_t i = 0;
    while (i < n && ((uintptr_t)(p + i) & 7)) {
        p[i] ^= m[i & 3];
        i++;
    }
    if (n - i >= 8) {
        uint8_t rot[8];
        for (int k = 0; k < 8; k++)
            rot[k] = m[(i + (size_t)k) & 3];
        uint64_t w;
        memcpy(&w, rot, 8);
        for (; n - i >= 8; i += 8) {
            uint64_t v;
            memcpy(&v, p + i, 8);
            v ^= w;
            memcpy(p + i, &v, 8);
        }
    }
    for (; i < n; i++)
        p[i] ^= m[i & 3];
}

int sb__close_code_valid(int code)
{
    if (code >= 3000 && code <= 4999)
        return 1;
    if (code < 1000 || code > 1014)
        return 0;
    /* 1004 is reserved; 1005 and 1006 must never appear on the wire. */
    return code != 1004 && code != 1005 && code != 1006;
}
