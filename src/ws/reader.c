/* reader.c — the message-level state machine of RFC 6455 section 5: frames
 * in, message chunks and control frames out, every violation mapped to the
 * close code the RFC prescribes. */
#include <string.h>

#include "ws/ws.h"

void sb__ws_reader_init(sb__ws_reader_t *r, int expect_masked, const sb__ws_limits_t *limits)
{
    memset(r, 0, sizeof *r);
    r->expect_masked = (uint8_t)(expect_masked != 0);
    r->limits = limits;
}

static size_t fail(sb__ws_reader_t *r, sb__ws_event_t *ev, size_t consumed, int code,
                   const char *reason)
{
    r->failed = 1;
    ev->type = SB_WS_EV_ERROR;
    ev->close_code = code;
    ev->reason = reason;
    ev->reason_len = strlen(reason);
    return consumed;
}

/* Emits the next chunk of the current data frame's payload from buf. */
static size_t stream_payload(sb__ws_reader_t *r, uint8_t *buf, size_t len, size_t off,
                             sb__ws_event_t *ev)
{
    size_t n = len - off;
    if ((uint64_t)n > r->remaining)
        n = (size_t)r->remaining;
    uint8_t *p = buf + off;
    if (r->expect_masked) {
        sb__mask(p, n, r->mask, r->mask_pos);
        r->mask_pos = (uint8_t)((r->mask_pos + n) & 3);
    }
    r->remaining -= n;
    int frame_done = r->remaining == 0;
    int last = frame_done && r->frame_fin;

    if (r->msg_opcode == SB_OP_TEXT && !r->compressed) {
        r->utf8 = sb__utf8_validate(r->utf8, p, n);
        if (r->utf8 == SB_UTF8_REJECT || (last && r->utf8 != SB_UTF8_ACCEPT))
            return fail(r, ev, off + n, SB_CLOSE_INVALID_DATA, "invalid UTF-8 in a text message");
    }

    ev->type = SB_WS_EV_DATA;
    ev->opcode = r->msg_opcode;
    ev->data = p;
    ev->len = n;
    ev->first = r->emitted == 0;
    ev->last = (uint8_t)last;
    ev->compressed = r->compressed;
    r->emitted = 1;
    if (frame_done)
        r->in_frame = 0;
    if (last)
        r->msg_opcode = 0;
    return off + n;
}

static size_t control_frame(sb__ws_reader_t *r, const sb__frame_t *f, uint8_t *buf, size_t hlen,
                            sb__ws_event_t *ev)
{
    uint8_t *p = buf + hlen;
    size_t n = (size_t)f->len;
    if (r->expect_masked)
        sb__mask(p, n, f->mask, 0);
    size_t consumed = hlen + n;

    ev->type = SB_WS_EV_CONTROL;
    ev->opcode = f->opcode;
    ev->data = p;
    ev->len = n;
    if (f->opcode != SB_OP_CLOSE)
        return consumed;

    if (n == 0) {
        ev->close_code = SB_CLOSE_NO_STATUS;
        return consumed;
    }
    if (n == 1)
        return fail(r, ev, consumed, SB_CLOSE_PROTOCOL_ERROR, "close payload of 1 byte");
    int code = p[0] << 8 | p[1];
    if (!sb__close_code_valid(code))
        return fail(r, ev, consumed, SB_CLOSE_PROTOCOL_ERROR, "invalid close code");
    if (!sb__utf8_valid(p + 2, n - 2))
        return fail(r, ev, consumed, SB_CLOSE_INVALID_DATA, "invalid UTF-8 in the close reason");
    ev->close_code = code;
    ev->reason = (const char *)p + 2;
    ev->reason_len = n - 2;
    return consumed;
}

size_t sb__ws_read(sb__ws_reader_t *r, uint8_t *buf, size_t len, sb__ws_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    if (r->failed)
        return 0;

    size_t off = 0;
    for (;;) {
        if (r->in_frame) {
            if (off == len && r->remaining)
                return off;
            return stream_payload(r, buf, len, off, ev);
        }

        sb__frame_t f;
        int h = sb__frame_header_parse(buf + off, len - off, &f);
        if (h == 0)
            return off;
        if (h < 0)
            return fail(r, ev, off, SB_CLOSE_PROTOCOL_ERROR, "frame length has the top bit set");
        if (f.masked != r->expect_masked)
            return fail(r, ev, off, SB_CLOSE_PROTOCOL_ERROR,
                        r->expect_masked ? "client frames must be masked"
                                         : "server frames must not be masked");

        if (f.opcode >= 8) {
            if (f.opcode > SB_OP_PONG)
                return fail(r, ev, off, SB_CLOSE_PROTOCOL_ERROR, "reserved opcode");
            if (f.rsv)
                return fail(r, ev, off, SB_CLOSE_PROTOCOL_ERROR, "RSV bits set on a control frame");
            if (!f.fin)
                return fail(r, ev, off, SB_CLOSE_PROTOCOL_ERROR, "fragmented control frame");
            if (f.len > SB_WS_MAX_CONTROL)
                return fail(r, ev, off, SB_CLOSE_PROTOCOL_ERROR, "control frame over 125 bytes");
            if (len - off - (size_t)h < f.len)
                return off; /* wait for the whole control frame */
            return control_frame(r, &f, buf + off, (size_t)h, ev) + off;
        }

        if (f.rsv & ~r->rsv_allowed)
            return fail(r, ev, off, SB_CLOSE_PROTOCOL_ERROR,
                        "RSV bits set without a negotiated extension");
        if (f.opcode == SB_OP_CONTINUATION) {
            if (!r->msg_opcode)
                return fail(r, ev, off, SB_CLOSE_PROTOCOL_ERROR,
                            "continuation frame with no message to continue");
            if (f.rsv)
                return fail(r, ev, off, SB_CLOSE_PROTOCOL_ERROR, "RSV bits set on a continuation");
        } else if (f.opcode == SB_OP_TEXT || f.opcode == SB_OP_BINARY) {
            if (r->msg_opcode)
                return fail(r, ev, off, SB_CLOSE_PROTOCOL_ERROR,
                            "new message inside a fragmented message");
            r->msg_opcode = f.opcode;
            r->compressed = (uint8_t)((f.rsv & 4) != 0);
            r->msg_len = 0;
            r->utf8 = SB_UTF8_ACCEPT;
            r->emitted = 0;
        } else {
            return fail(r, ev, off, SB_CLOSE_PROTOCOL_ERROR, "reserved opcode");
        }

        const sb__ws_limits_t *lim = r->limits;
        if (lim && lim->max_frame && f.len > lim->max_frame)
            return fail(r, ev, off, SB_CLOSE_TOO_BIG, "frame too big");
        if (lim && lim->max_message && r->msg_len + f.len > lim->max_message)
            return fail(r, ev, off, SB_CLOSE_TOO_BIG, "message too big");
        r->msg_len += f.len;
        r->remaining = f.len;
        memcpy(r->mask, f.mask, 4);
        r->mask_pos = 0;
        r->frame_fin = f.fin;
        r->in_frame = 1;
        off += (size_t)h;

        /* An empty non-final fragment has nothing to report: read on. */
        if (f.len == 0 && !f.fin) {
            r->in_frame = 0;
            continue;
        }
    }
}
