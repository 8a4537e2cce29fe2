/* conn.c — a connection's socket life: accept, the read path (one loop-wide
 * buffer), the write queue (one writev per connection per loop iteration),
 * timeouts and the reaping of closed connections at a safe point. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* ---- accept and read -------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    sb_conn_t *c = h->data;
    buf->base = (char *)c->srv->rbuf + SB_TAIL_ROOM;
    buf->len = SB_READ_SIZE;
}

static void on_tcp_closed(uv_handle_t *h)
{
    sb_conn_t *c = h->data;
    sb_server_t *srv = c->srv;
    for (uint32_t i = 0; i < c->q_count; i++)
        sb_msg_unref(c->q[(c->q_head + i) & (c->q_cap - 1)]);
    free(c->q);
    free(c->tail);
    free(c->msg);
    sb__request_put(c);
    sb__server_conn_gone(srv, c);
    sb__slab_free(&srv->conn_slab, c);
}

void sb__conn_accept(sb_server_t *srv)
{
    if (srv->nconns == srv->conns_cap) {
        uint32_t cap = srv->conns_cap ? srv->conns_cap * 2 : 64;
        sb_conn_t **a = realloc(srv->conns, cap * sizeof *a);
        if (!a)
            return; /* leave it in the backlog; we retry on the next accept */
        srv->conns = a;
        srv->conns_cap = cap;
    }
    sb_conn_t *c = sb__slab_alloc(&srv->conn_slab);
    if (!c)
        return;
    uv_tcp_init(&srv->loop, &c->tcp);
    c->tcp.data = c;
    c->srv = srv;
    c->index = srv->nconns;
    srv->conns[srv->nconns++] = c;
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&c->tcp)) {
        c->state = SB_CONN_CLOSED;
        uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    snprintf(c->id, sizeof c->id, "c-%llx", (unsigned long long)++srv->next_conn_id);
    uint64_t now = uv_now(&srv->loop);
    c->last_read = c->last_ping = c->last_progress = now;
    c->deadline = now + srv->cfg.handshake_timeout_ms;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

void sb__conn_keep_tail(sb_conn_t *c, const uint8_t *p, size_t n)
{
    /* At most a frame header and a control payload: always fits the room
     * reserved in front of the read buffer. */
    c->tail = malloc(n);
    if (!c->tail) {
        sb__conn_abort(c);
        return;
    }
    memcpy(c->tail, p, n);
    c->tail_len = (uint8_t)n;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    sb_conn_t *c = stream->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF or reset. A WebSocket that ends without a close frame is
         * reported as 1006 (close_code stays 0). */
        sb__conn_abort(c);
        return;
    }
    c->last_read = uv_now(&c->srv->loop);
    if (c->state == SB_CONN_CLOSED || (c->flags & SB_F_SHUTDOWN))
        return; /* draining: the peer's bytes no longer matter */

    uint8_t *data = (uint8_t *)buf->base;
    size_t len = (size_t)nread;
    if (c->state == SB_CONN_HTTP) {
        sb__http_read(c, data, len);
        return;
    }
    if (c->tail_len) {
        data -= c->tail_len;
        len += c->tail_len;
        memcpy(data, c->tail, c->tail_len);
        free(c->tail);
        c->tail = NULL;
        c->tail_len = 0;
    }
    sb__wsconn_read(c, data, len);
}

/* ---- write queue ------------------------------------------------------ */

static void mark_dirty(sb_conn_t *c)
{
    if (c->flags & SB_F_DIRTY)
        return;
    c->flags |= SB_F_DIRTY;
    c->next_dirty = c->srv->dirty;
    c->srv->dirty = c;
}

int sb__conn_queue(sb_conn_t *c, sb_msg_t *msg)
{
    if (c->state == SB_CONN_CLOSED || (c->flags & (SB_F_END_AFTER_FLUSH | SB_F_SHUTDOWN)))
        return SB_ECLOSED;
    sb_server_t *srv = c->srv;
    /* The message at the head is on its way out and was let in whole (a
     * message may be bigger than the limit): only what waits behind it
     * counts, or a pong or close queued behind a large echo would drop a
     * peer that reads fine. */
    size_t backlog = c->q_count ? c->queued - (c->q[c->q_head]->len - c->head_off) : 0;
    if (c->queued && backlog + msg->len > srv->cfg.max_queued_bytes) {
        /* A peer that does not read: its close frame would sit behind the
         * same stuck queue, so close TCP now and report 1008. */
        sb__log(srv, SB_LOG_WARN, "%s: slow consumer, %zu bytes queued: closing", c->id, c->queued);
        if (!c->close_code)
            c->close_code = SB_CLOSE_POLICY;
        srv->metrics.slow_consumers++;
        sb__conn_abort(c);
        return SB_ELIMIT;
    }
    if (c->q_count == c->q_cap) {
        uint32_t cap = c->q_cap ? c->q_cap * 2 : 4;
        sb_msg_t **q = malloc(cap * sizeof *q);
        if (!q)
            return SB_ENOMEM;
        for (uint32_t i = 0; i < c->q_count; i++)
            q[i] = c->q[(c->q_head + i) & (c->q_cap - 1)];
        free(c->q);
        c->q = q;
        c->q_head = 0;
        c->q_cap = cap;
    }
    if (!c->queued)
        c->last_progress = uv_now(&srv->loop);
    c->q[(c->q_head + c->q_count) & (c->q_cap - 1)] = msg;
    c->q_count++;
    sb_msg_ref(msg);
    c->queued += msg->len;
    mark_dirty(c);

    /* Stop reading from a peer that sends faster than it reads (an echo
     * flood): its own output then bounds its input. */
    if (c->state != SB_CONN_HTTP && !(c->flags & SB_F_READ_PAUSED) &&
        c->queued > srv->cfg.max_queued_bytes / 2) {
        c->flags |= SB_F_READ_PAUSED;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    return 0;
}

/* Drops n written bytes from the front of the queue. */
static void consume(sb_conn_t *c, size_t n)
{
    c->queued -= n;
    while (n) {
        sb_msg_t *m = c->q[c->q_head];
        size_t left = m->len - c->head_off;
        if (n < left) {
            c->head_off += n;
            return;
        }
        n -= left;
        sb_msg_unref(m);
        c->q_head = (c->q_head + 1) & (c->q_cap - 1);
        c->q_count--;
        c->head_off = 0;
    }
}

/* Points bufs at the first SB_WRITE_BATCH queued messages, at most max bytes
 * of them; returns how many bufs and their total size in *total. */
static uint32_t fill_bufs(const sb_conn_t *c, uv_buf_t *bufs, size_t max, size_t *total)
{
    uint32_t n = c->q_count < SB_WRITE_BATCH ? c->q_count : SB_WRITE_BATCH;
    uint32_t i;
    *total = 0;
    for (i = 0; i < n && *total < max; i++) {
        const sb_msg_t *m = c->q[(c->q_head + i) & (c->q_cap - 1)];
        size_t off = i ? 0 : c->head_off;
        size_t len = m->len - off;
        if (len > max - *total)
            len = max - *total;
        bufs[i] = uv_buf_init((char *)m->data + off, (unsigned)len);
        *total += len;
    }
    return i;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    sb_conn_t *c = req->data;
    free(req);
    if (status < 0 && status != UV_ECANCELED)
        sb__conn_abort(c);
}

/* The queue is empty: resume reading, or finish an orderly end. */
static void drained(sb_conn_t *c)
{
    /* A ring grown by a burst goes back to nothing: an idle connection holds
     * no queue memory. */
    if (c->q_cap > 4) {
        free(c->q);
        c->q = NULL;
        c->q_cap = 0;
    }
    c->q_head = 0;
    if ((c->flags & SB_F_READ_PAUSED) && !(c->flags & SB_F_SHUTDOWN)) {
        c->flags &= (uint16_t)~SB_F_READ_PAUSED;
        c->last_read = uv_now(&c->srv->loop); /* we were not listening */
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    if (!(c->flags & SB_F_END_AFTER_FLUSH) || (c->flags & SB_F_SHUTDOWN))
        return;
    /* Half-close and keep reading until the peer's EOF (or close_timeout):
     * closing outright could turn our last bytes into a reset. */
    c->flags |= SB_F_SHUTDOWN;
    c->deadline = uv_now(&c->srv->loop) + c->srv->cfg.close_timeout_ms;
    if (c->flags & SB_F_READ_PAUSED) {
        c->flags &= (uint16_t)~SB_F_READ_PAUSED;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown)) {
        free(req);
        sb__conn_abort(c);
        return;
    }
    req->data = c;
}

static void flush(sb_conn_t *c);

static void on_write(uv_write_t *req, int status)
{
    sb_conn_t *c = req->data;
    free(req);
    if (c->state == SB_CONN_CLOSED)
        return; /* cancelled by the close; the close callback frees the queue */
    c->flags &= (uint16_t)~SB_F_WRITING;
    if (status < 0) {
        sb__conn_abort(c);
        return;
    }
    /* uv_write writes everything or fails: the covered bytes are done. */
    consume(c, c->inflight);
    c->inflight = 0;
    c->last_progress = uv_now(&c->srv->loop);
    flush(c);
}

static void reap(sb_conn_t *c)
{
    if (c->flags & SB_F_UPGRADED) {
        c->flags &= (uint16_t)~SB_F_UPGRADED;
        sb__wsconn_closed(c);
    }
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

static void flush(sb_conn_t *c)
{
    if (c->flags & SB_F_WRITING)
        return;
    uv_buf_t bufs[SB_WRITE_BATCH];
    while (c->q_count) {
        size_t total;
        uint32_t n = fill_bufs(c, bufs, SIZE_MAX, &total);
        int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
        if (r == UV_EAGAIN)
            r = 0;
        if (r < 0) {
            sb__conn_abort(c);
            return;
        }
        if (r > 0) {
            consume(c, (size_t)r);
            c->last_progress = uv_now(&c->srv->loop);
        }
        if ((size_t)r == total)
            continue; /* the whole batch went out: try the next one */

        /* The socket is full: let libuv write the next chunk when it can. */
        n = fill_bufs(c, bufs, SB_WRITE_CHUNK, &total);
        uv_write_t *req = malloc(sizeof *req);
        if (!req) {
            sb__conn_abort(c);
            return;
        }
        req->data = c;
        if (uv_write(req, (uv_stream_t *)&c->tcp, bufs, n, on_write)) {
            free(req);
            sb__conn_abort(c);
            return;
        }
        c->inflight = (uint32_t)total;
        c->flags |= SB_F_WRITING;
        return;
    }
    drained(c);
}

void sb__conn_flush_all(sb_server_t *srv)
{
    sb_conn_t *c;
    while ((c = srv->dirty)) {
        srv->dirty = c->next_dirty;
        c->next_dirty = NULL;
        c->flags &= (uint16_t)~SB_F_DIRTY;
        if (c->state == SB_CONN_CLOSED)
            reap(c);
        else
            flush(c);
    }
}

/* ---- ending ----------------------------------------------------------- */

void sb__conn_end(sb_conn_t *c)
{
    if (c->state == SB_CONN_CLOSED)
        return;
    c->flags |= SB_F_END_AFTER_FLUSH;
    mark_dirty(c);
}

void sb__conn_abort(sb_conn_t *c)
{
    if (c->state == SB_CONN_CLOSED)
        return;
    /* Doomed from now on, but the user's on_close and the free happen at the
     * next flush point, never inside the caller's callback chain. */
    c->state = SB_CONN_CLOSED;
    mark_dirty(c);
}

void sb__conn_sweep(sb_conn_t *c, uint64_t now)
{
    const sb_server_config_t *cfg = &c->srv->cfg;
    switch (c->state) {
    case SB_CONN_CLOSED:
        return;
    case SB_CONN_HTTP:
        if (now >= c->deadline && !(c->flags & SB_F_SHUTDOWN)) {
            sb__log(c->srv, SB_LOG_DEBUG, "%s: HTTP timeout", c->id);
            sb__conn_abort(c);
            return;
        }
        break;
    case SB_CONN_WS:
        /* While reading is paused (its output backed up, see sb__conn_queue)
         * the peer's pongs cannot reach us: the write timeout watches that
         * state, and silence counts again from when reading resumes. */
        if (c->flags & SB_F_READ_PAUSED)
            break;
        if (now - c->last_read >= cfg->pong_timeout_ms) {
            sb__log(c->srv, SB_LOG_INFO, "%s: no pong or data for %llu ms: closing", c->id,
                    (unsigned long long)(now - c->last_read));
            sb__conn_abort(c);
            return;
        }
        if (now - c->last_read >= cfg->ping_interval_ms &&
            now - c->last_ping >= cfg->ping_interval_ms) {
            c->last_ping = now;
            sb__wsconn_ping(c);
        }
        break;
    case SB_CONN_CLOSING:
        if (now >= c->deadline) {
            sb__conn_abort(c);
            return;
        }
        break;
    }
    if ((c->flags & SB_F_SHUTDOWN) && now >= c->deadline) {
        sb__conn_abort(c);
        return;
    }
    if (c->queued && now - c->last_progress >= cfg->write_timeout_ms) {
        sb__log(c->srv, SB_LOG_INFO, "%s: write timeout, %zu bytes unsent: closing", c->id,
                c->queued);
        sb__conn_abort(c);
    }
}

void sb__conn_stop(sb_conn_t *c)
{
    switch (c->state) {
    case SB_CONN_HTTP:
        if (c->req && c->req->http.nheaders)
            c->flags |= SB_F_STOP_AFTER_REQUEST; /* answer it, then close */
        else
            sb__conn_abort(c);
        break;
    case SB_CONN_WS:
        sb_conn_close(c, SB_CLOSE_GOING_AWAY, "server shutting down");
        break;
    default:
        break;
    }
}

/* ---- public accessors ------------------------------------------------- */

const char *sb_conn_id(const sb_conn_t *conn)
{
    return conn->id;
}

const char *sb_conn_subprotocol(const sb_conn_t *conn)
{
    return conn->subprotocol;
}

void *sb_conn_get_data(const sb_conn_t *conn)
{
    return conn->user_data;
}

void sb_conn_set_data(sb_conn_t *conn, void *data)
{
    conn->user_data = data;
}

sb_server_t *sb_conn_server(const sb_conn_t *conn)
{
    return conn->srv;
}

size_t sb_conn_queued_bytes(const sb_conn_t *conn)
{
    return conn->queued;
}

int sb_conn_peer(const sb_conn_t *conn, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[48];
    if (!size || uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)&ss, &len))
        return SB_EINVAL;
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
        snprintf(buf, size, "[%s]:%d", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        snprintf(buf, size, "%s:%d", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
    return 0;
}
