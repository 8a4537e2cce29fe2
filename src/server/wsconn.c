/* wsconn.c — the WebSocket phase of a connection: the opening handshake
 * (RFC 6455 4.2), frames to messages, control frames and the closing
 * handshake (RFC 6455 7). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"

static int version_is_13(const char *v, size_t len)
{
    while (len && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    return len == 2 && v[0] == '1' && v[1] == '3';
}

void sb__wsconn_handshake(sb_conn_t *c, uint8_t *rest, size_t rest_len)
{
    sb_request_t *req = c->req;
    const sb__http_req_t *h = &req->http;
    const sb__route_t *route = req->route;
    size_t len;
    const char *v;

    if (sb_request_method(req) != SB_METHOD_GET) {
        sb__http_respond_text(req, 405, "Allow: GET\r\n",
                              "a WebSocket endpoint takes only GET with an upgrade");
        return;
    }
    v = sb_request_header(req, "Upgrade", &len);
    if (!v || !sb__token_list_has(v, len, "websocket")) {
        sb__http_respond_text(req, 426, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
                              "this is a WebSocket endpoint: connect with a WebSocket client");
        return;
    }
    if (h->parser.http_major < 1 || (h->parser.http_major == 1 && h->parser.http_minor < 1)) {
        sb__http_respond_text(req, 400, NULL, "a WebSocket handshake needs HTTP/1.1");
        return;
    }
    v = sb_request_header(req, "Connection", &len);
    if (!v || !sb__token_list_has(v, len, "upgrade")) {
        sb__http_respond_text(req, 400, NULL, "the Connection header must include Upgrade");
        return;
    }
    if (!sb_request_header(req, "Host", NULL)) {
        sb__http_respond_text(req, 400, NULL, "the handshake needs a Host header");
        return;
    }
    v = sb_request_header(req, "Sec-WebSocket-Version", &len);
    if (!v || !version_is_13(v, len)) {
        sb__http_respond_text(req, 426, "Sec-WebSocket-Version: 13\r\n",
                              "unsupported WebSocket version: this server speaks version 13");
        return;
    }
    char accept[29];
    v = sb_request_header(req, "Sec-WebSocket-Key", &len);
    if (!v || sb__ws_accept_key(v, len, accept)) {
        sb__http_respond_text(req, 400, NULL, "Sec-WebSocket-Key must be the base64 of 16 bytes");
        return;
    }
    if (route->ws.on_upgrade) {
        int status = route->ws.on_upgrade(req, route->ws.data);
        if (req->responded)
            return;
        if (status) {
            sb__http_respond_text(req, status >= 400 && status < 600 ? status : 403, NULL,
                                  "the server refused this connection");
            return;
        }
    }
    v = sb_request_header(req, "Sec-WebSocket-Protocol", &len);
    const char *proto = sb__ws_select_subprotocol(v, len, route->ws.subprotocols);

    /* permessage-deflate: the per-connection state exists only when agreed. */
    char ext[SB_PMD_RESPONSE_MAX] = "";
    sb__pmd_params_t params;
    v = sb_request_header(req, "Sec-WebSocket-Extensions", &len);
    if (v && c->srv->pmd &&
        sb__pmd_negotiate(sb__pmd_policy(c->srv->pmd), v, len, &params, ext) == 1) {
        if (!(c->pmd = malloc(sizeof *c->pmd))) {
            sb__conn_abort(c);
            return;
        }
        sb__pmd_conn_init(c->pmd, &params);
    }

    char head[768];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "%s%s%s"
                     "%s%s%s"
                     "Server: switchboard/%s\r\n\r\n",
                     accept, proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "",
                     proto ? "\r\n" : "", c->pmd ? "Sec-WebSocket-Extensions: " : "", ext,
                     c->pmd ? "\r\n" : "", SB_VERSION);
    sb_msg_t *m = sb__msg_alloc((size_t)n);
    if (!m) {
        sb__conn_abort(c);
        return;
    }
    memcpy(m->data, head, (size_t)n);
    sb__conn_queue(c, m);
    sb_msg_unref(m);

    c->user_data = req->conn_data;
    /* The HTTP phase is over: its state goes back to the pool. */
    sb__request_put(c);
    sb_server_t *srv = c->srv;
    c->state = SB_CONN_WS;
    c->flags |= SB_F_UPGRADED;
    srv->metrics.connections++;
    srv->metrics.connections_total++;
    c->route = route;
    c->subprotocol = proto;
    srv->ws_limits = (sb__ws_limits_t){srv->cfg.max_message_size, srv->cfg.max_frame_size};
    sb__ws_reader_init(&c->reader, 1, &srv->ws_limits);
    if (c->pmd)
        c->reader.rsv_allowed = 4; /* RSV1: a compressed message */
    c->last_read = c->last_ping = c->opened = sb__now32(srv);
    sb__log(srv, SB_LOG_DEBUG, "%s: WebSocket open on %s", c->id, route->path);
    if (route->ws.on_open)
        route->ws.on_open(c, route->ws.data);
    if (rest_len && c->state == SB_CONN_WS)
        sb__wsconn_read(c, rest, rest_len);
}

/* ---- closing ---------------------------------------------------------- */

static void send_close(sb_conn_t *c, int code, const char *reason, size_t reason_len)
{
    uint8_t payload[SB_WS_MAX_CONTROL];
    size_t n = 0;
    if (code) {
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        if (reason_len > SB_WS_MAX_CONTROL - 2)
            reason_len = SB_WS_MAX_CONTROL - 2;
        if (reason_len)
            memcpy(payload + 2, reason, reason_len);
        n = 2 + reason_len;
    }
    c->flags |= SB_F_CLOSE_SENT;
    sb_msg_t *m = sb_msg_new(SB_OP_CLOSE, payload, n);
    if (!m) {
        sb__conn_abort(c);
        return;
    }
    sb__conn_queue(c, m);
    sb_msg_unref(m);
}

/* The closing handshake has started: the sweep ends the connection if it is
 * not over within close_timeout. (The deadline still held the handshake's,
 * long past on a connection older than that, and the sweep cut off output
 * still being written.) */
static void enter_closing(sb_conn_t *c)
{
    if (c->state == SB_CONN_CLOSED)
        return;
    c->state = SB_CONN_CLOSING;
    c->deadline = sb__now32(c->srv) + (uint32_t)c->srv->cfg.close_timeout_ms;
}

/* Fails the connection (RFC 6455 7.1.7): send the close frame, then end TCP
 * without waiting for the peer's reply. */
static void fail(sb_conn_t *c, int code, const char *reason)
{
    sb__log(c->srv, SB_LOG_DEBUG, "%s: closing with %d: %s", c->id, code, reason);
    if (!c->close_code)
        c->close_code = (uint16_t)code;
    if (!(c->flags & SB_F_CLOSE_SENT))
        send_close(c, code, reason, strlen(reason));
    enter_closing(c);
    sb__conn_end(c);
}

int sb_conn_close(sb_conn_t *conn, int code, const char *reason)
{
    size_t len = reason ? strlen(reason) : 0;
    if (!sb__close_code_valid(code) || len > SB_WS_MAX_CONTROL - 2 ||
        !sb__utf8_valid((const uint8_t *)reason, len))
        return SB_EINVAL;
    if (conn->state != SB_CONN_WS)
        return 0;
    conn->close_code = (uint16_t)code;
    send_close(conn, code, reason, len);
    if (conn->state == SB_CONN_CLOSED)
        return 0;
    /* Wait for the peer's close frame; the sweep ends it after close_timeout. */
    conn->state = SB_CONN_CLOSING;
    conn->deadline = sb__now32(conn->srv) + (uint32_t)conn->srv->cfg.close_timeout_ms;
    return 0;
}

void sb__wsconn_closed(sb_conn_t *c)
{
    const sb__route_t *route = c->route;
    int code = c->close_code ? c->close_code : SB_CLOSE_ABNORMAL;
    sb_server_t *srv = c->srv;
    srv->metrics.connections--;
    sb__log(srv, SB_LOG_DEBUG, "%s: WebSocket closed (%d)", c->id, code);
    if (srv->cfg.access_log) {
        char peer[64];
        if (sb_conn_peer(c, peer, sizeof peer))
            snprintf(peer, sizeof peer, "-");
        sb_access_t e = {
            .websocket = 1,
            .peer = peer,
            .method = "GET",
            .path = route->path,
            .status = 101,
            .duration_ms = (uint32_t)(sb__now32(srv) - c->opened),
            .bytes_in = c->bytes_in,
            .bytes_out = c->bytes_out,
            .msgs_in = c->msgs_in,
            .msgs_out = c->msgs_out,
            .close_code = code,
        };
        srv->cfg.access_log(srv->cfg.log_data, &e);
    }
    if (route->ws.on_close)
        route->ws.on_close(c, code, "", 0, route->ws.data);
}

void sb__wsconn_ping(sb_conn_t *c)
{
    sb_msg_t *m = sb_msg_new(SB_OP_PING, NULL, 0);
    if (m) {
        sb__conn_queue(c, m);
        sb_msg_unref(m);
    }
}

/* ---- reading ---------------------------------------------------------- */

static void deliver(sb_conn_t *c, int opcode, const uint8_t *data, size_t len)
{
    /* Once our close frame is out, data is discarded (RFC 6455 5.5.1). */
    if (c->state != SB_CONN_WS)
        return;
    c->srv->metrics.messages_in++;
    c->srv->metrics.bytes_in += len;
    c->msgs_in++;
    c->bytes_in += len;
    if (c->route->ws.on_message)
        c->route->ws.on_message(c, opcode, data, len, c->route->ws.data);
}

static void drop_message(sb_conn_t *c)
{
    free(c->msg);
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
}

/* A chunk of a compressed message: inflated into the reassembly buffer,
 * bounded by max_message_size (a compression bomb gets 1009), and its text
 * checked once whole (the reader cannot check compressed text). */
static int on_compressed(sb_conn_t *c, const sb__ws_event_t *ev)
{
    sb_server_t *srv = c->srv;
    int r = sb__pmd_inflate(srv->pmd, c->pmd, ev->data, ev->len, ev->last, &c->msg, &c->msg_len,
                            &c->msg_cap, srv->cfg.max_message_size);
    if (r) {
        drop_message(c);
        fail(c, sb__pmd_close_code(r), sb__pmd_strerror(r));
        return -1;
    }
    if (!ev->last)
        return 0;
    if (ev->opcode == SB_OP_TEXT && !sb__utf8_valid(c->msg, c->msg_len)) {
        drop_message(c);
        fail(c, SB_CLOSE_INVALID_DATA, "invalid UTF-8 in a text message");
        return -1;
    }
    deliver(c, ev->opcode, c->msg ? c->msg : (uint8_t *)"", c->msg_len);
    drop_message(c);
    return 0;
}

static int on_data(sb_conn_t *c, const sb__ws_event_t *ev)
{
    if (ev->compressed)
        return on_compressed(c, ev);
    if (ev->first && ev->last) {
        /* The whole message is in this read: hand it out in place. */
        deliver(c, ev->opcode, ev->data, ev->len);
        return 0;
    }
    size_t need = c->msg_len + ev->len;
    if (need > c->msg_cap) {
        /* The reader knows the size of the frames announced so far: reserve
         * that at once (up to 1 MiB: an announcement is not yet data, and a
         * peer could announce much and send little) rather than grow
         * through every doubling. */
        size_t cap = c->msg_cap ? c->msg_cap * 2 : 4096;
        size_t announced = c->reader.msg_len < SB_REASSEMBLY_RESERVE ? (size_t)c->reader.msg_len
                                                                     : SB_REASSEMBLY_RESERVE;
        if (cap < announced)
            cap = announced;
        if (cap < need)
            cap = need;
        uint8_t *p = realloc(c->msg, cap);
        if (!p) {
            fail(c, SB_CLOSE_INTERNAL, "out of memory");
            return -1;
        }
        c->msg = p;
        c->msg_cap = cap;
    }
    memcpy(c->msg + c->msg_len, ev->data, ev->len);
    c->msg_len += ev->len;
    if (ev->last) {
        deliver(c, ev->opcode, c->msg, c->msg_len);
        drop_message(c);
    }
    return 0;
}

static void on_control(sb_conn_t *c, const sb__ws_event_t *ev)
{
    switch (ev->opcode) {
    case SB_OP_PING:
        if (!(c->flags & SB_F_CLOSE_SENT)) {
            sb_msg_t *m = sb_msg_new(SB_OP_PONG, ev->data, ev->len);
            if (!m) {
                fail(c, SB_CLOSE_INTERNAL, "out of memory");
                return;
            }
            sb__conn_queue(c, m);
            sb_msg_unref(m);
        }
        break;
    case SB_OP_PONG:
        if (c->state == SB_CONN_WS && c->route->ws.on_pong)
            c->route->ws.on_pong(c, ev->data, ev->len, c->route->ws.data);
        break;
    case SB_OP_CLOSE:
        c->flags |= SB_F_CLOSE_RECEIVED;
        if (!c->close_code)
            c->close_code = (uint16_t)ev->close_code;
        if (!(c->flags & SB_F_CLOSE_SENT)) {
            /* Echo the code (RFC 6455 5.5.1); no code in, none out. */
            if (ev->close_code == SB_CLOSE_NO_STATUS)
                send_close(c, 0, NULL, 0);
            else
                send_close(c, ev->close_code, NULL, 0);
        }
        enter_closing(c);
        /* Both close frames are exchanged: the server ends TCP first. */
        sb__conn_end(c);
        break;
    }
}

void sb__wsconn_read(sb_conn_t *c, uint8_t *data, size_t len)
{
    while (c->state != SB_CONN_CLOSED && !(c->flags & SB_F_CLOSE_RECEIVED) && !c->reader.failed) {
        sb__ws_event_t ev;
        size_t n = sb__ws_read(&c->reader, data, len, &ev);
        data += n;
        len -= n;
        switch (ev.type) {
        case SB_WS_EV_NONE:
            if (len)
                sb__conn_keep_tail(c, data, len);
            return;
        case SB_WS_EV_ERROR:
            fail(c, ev.close_code, ev.reason);
            return;
        case SB_WS_EV_DATA:
            if (on_data(c, &ev))
                return;
            break;
        case SB_WS_EV_CONTROL:
            on_control(c, &ev);
            break;
        }
    }
}

/* ---- sending ---------------------------------------------------------- */

/* Payload bytes of an encoded server frame (whose header is unmasked). */
static size_t payload_len(const sb_msg_t *msg)
{
    uint8_t l = msg->data[1] & 0x7f;
    return msg->len - (l < 126 ? 2 : l == 126 ? 4 : 10);
}

/* A frame of payload with RSV1 set: a compressed message. */
static sb_msg_t *compressed_frame(int opcode, const uint8_t *payload, size_t len)
{
    uint8_t hdr[SB_WS_MAX_HEADER];
    size_t h = sb__frame_header_write(hdr, 1, 4, opcode, len, NULL);
    sb_msg_t *m = sb__msg_alloc(h + len);
    if (m) {
        memcpy(m->data, hdr, h);
        memcpy(m->data + h, payload, len);
    }
    return m;
}

/* The message as it goes to a connection that agreed on permessage-deflate:
 * compressed once and kept with the message for every recipient that can
 * take the same bytes (a broadcast compresses once), or compressed for this
 * connection alone (context takeover), or as it is. Returns a new
 * reference. */
static sb_msg_t *for_deflate(sb_conn_t *c, sb_msg_t *msg)
{
    int opcode = msg->data[0] & 0x0f;
    if ((opcode != SB_OP_TEXT && opcode != SB_OP_BINARY) || (msg->data[0] & 0x70) ||
        msg->incompressible) {
        sb_msg_ref(msg);
        return msg;
    }
    int key = sb__pmd_share_key(c->pmd);
    if (key && msg->deflated && msg->deflate_key <= key) {
        sb_msg_ref(msg->deflated);
        return msg->deflated;
    }
    size_t plen = payload_len(msg);
    const uint8_t *out;
    size_t out_len;
    int r = key ? sb__pmd_compress_shared(c->srv->pmd, key, msg->data + msg->len - plen, plen,
                                          &out, &out_len)
                : sb__pmd_compress(c->srv->pmd, c->pmd, msg->data + msg->len - plen, plen, &out,
                                   &out_len);
    sb_msg_t *z = r == 1 ? compressed_frame(opcode, out, out_len) : NULL;
    if (!z) {
        if (r == 0 && key)
            msg->incompressible = 1;
        sb_msg_ref(msg);
        return msg;
    }
    if (key && !msg->deflated) {
        msg->deflated = z;
        msg->deflate_key = (uint8_t)key;
        sb_msg_ref(z);
    }
    return z;
}

void sb__wsconn_free(sb_conn_t *c)
{
    if (c->pmd) {
        sb__pmd_conn_free(c->srv->pmd, c->pmd);
        free(c->pmd);
        c->pmd = NULL;
    }
}

int sb_conn_send_msg(sb_conn_t *conn, sb_msg_t *msg)
{
    if (conn->state != SB_CONN_WS)
        return SB_ECLOSED;
    if (sb__conn_would_drop(conn, msg))
        return SB_ELIMIT;
    sb_msg_t *wire = conn->pmd ? for_deflate(conn, msg) : msg;
    int r = sb__conn_queue(conn, wire);
    if (conn->pmd)
        sb_msg_unref(wire); /* for_deflate's reference; the queue holds its own */
    if (r == 0) {
        size_t n = payload_len(msg);
        conn->srv->metrics.messages_out++;
        conn->srv->metrics.bytes_out += n;
        conn->msgs_out++;
        conn->bytes_out += n;
    }
    return r;
}

int sb_conn_send(sb_conn_t *conn, int opcode, const void *data, size_t len)
{
    if (opcode != SB_OP_TEXT && opcode != SB_OP_BINARY)
        return SB_EINVAL;
    if (conn->state != SB_CONN_WS)
        return SB_ECLOSED;
    sb_msg_t *m = sb_msg_new(opcode, data, len);
    if (!m)
        return SB_ENOMEM;
    int r = sb_conn_send_msg(conn, m);
    sb_msg_unref(m);
    return r;
}
