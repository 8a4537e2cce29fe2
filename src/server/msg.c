/* msg.c — encoded, reference-counted outbound data: one allocation holds the
 * bytes exactly as they go on the wire, shared by every queue it is in. */
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"

sb_msg_t *sb__msg_alloc(size_t len)
{
    sb_msg_t *m = malloc(sizeof *m + len);
    if (!m)
        return NULL;
    m->refs = 1;
    m->deflate_key = 0;
    m->incompressible = 0;
    m->len = len;
    m->deflated = NULL;
    return m;
}

sb_msg_t *sb_msg_new(int opcode, const void *payload, size_t len)
{
    uint8_t hdr[SB_WS_MAX_HEADER];
    size_t h = sb__frame_header_write(hdr, 1, 0, opcode, len, NULL);
    sb_msg_t *m = sb__msg_alloc(h + len);
    if (!m)
        return NULL;
    memcpy(m->data, hdr, h);
    if (len)
        memcpy(m->data + h, payload, len);
    return m;
}

void sb_msg_ref(sb_msg_t *msg)
{
    msg->refs++;
}

void sb_msg_unref(sb_msg_t *msg)
{
    if (msg && --msg->refs == 0) {
        sb_msg_unref(msg->deflated);
        free(msg);
    }
}
