/* conn.c — a connection's socket life: accept, the read path (one loop-wide
 * buffer), the write queue (one writev per connection per loop iteration),
 * timeouts and the reaping of closed connections at a safe point.
 *
 * A connection is a raw non-blocking socket in the server's own epoll set,
 * which libuv watches as a single descriptor (server.c): it costs its fd and
 * this struct, not a libuv stream handle of 248 bytes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "server/internal.h"

/* ---- epoll interest --------------------------------------------------- */

/* Brings the registered events in line with what the connection wants:
 * input unless reading is paused, output while the socket is full. */
static void update_interest(sb_conn_t *c)
{
    uint16_t want = (c->flags & SB_F_READ_PAUSED ? 0 : SB_F_EP_IN) |
                    (c->flags & SB_F_WANT_WRITE ? SB_F_EP_OUT : 0);
    if ((c->flags & (SB_F_EP_IN | SB_F_EP_OUT)) == want)
        return;
    struct epoll_event ev = {
        .events = (want & SB_F_EP_IN ? EPOLLIN : 0u) | (want & SB_F_EP_OUT ? EPOLLOUT : 0u),
        .data.ptr = c,
    };
    if (epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->fd, &ev)) {
        sb__conn_abort(c);
        return;
    }
    c->flags = (uint16_t)((c->flags & ~(SB_F_EP_IN | SB_F_EP_OUT)) | want);
}

static void pause_reading(sb_conn_t *c)
{
    c->flags |= SB_F_READ_PAUSED;
    update_interest(c);
}

static void resume_reading(sb_conn_t *c)
{
    c->flags &= (uint16_t)~SB_F_READ_PAUSED;
    c->last_read = sb__now32(c->srv); /* we were not listening */
    update_interest(c);
}

/* ---- accept and read -------------------------------------------------- */

static void conn_free(sb_conn_t *c)
{
    sb_server_t *srv = c->srv;
    close(c->fd);
    sb__tls_free(c->tls);
    sb__wsconn_free(c);
    for (uint32_t i = 0; i < c->q_count; i++)
        sb_msg_unref(c->q[(c->q_head + i) & (c->q_cap - 1)]);
    if (c->q != &c->q1)
        free(c->q);
    free(c->tail);
    free(c->msg);
    sb__request_put(c);
    sb__server_conn_gone(srv, c);
    sb__slab_free(&srv->conn_slab, c);
}

/* Takes a freshly accepted socket in (of the TLS listener when tls).
 * Returns 0, or -1 (the caller closes fd) when out of memory. */
static int conn_new(sb_server_t *srv, int fd, int tls, const struct sockaddr_storage *peer)
{
    if (srv->nconns == srv->conns_cap) {
        uint32_t cap = srv->conns_cap ? srv->conns_cap * 2 : 64;
        sb_conn_t **a = realloc(srv->conns, cap * sizeof *a);
        if (!a)
            return -1;
        srv->conns = a;
        srv->conns_cap = cap;
    }
    sb_conn_t *c = sb__slab_alloc(&srv->conn_slab);
    if (!c)
        return -1;
    if (tls && sb__tls_new(&c->tls, srv->tls_ctx)) {
        sb__slab_free(&srv->conn_slab, c);
        return -1;
    }
    c->fd = fd;
    c->srv = srv;
    /* The peer is kept from the accept: the access log wants it after the
     * socket is gone. */
    if (peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)peer;
        c->peer_family = AF_INET6;
        c->peer_port = ntohs(a->sin6_port);
        memcpy(c->peer_addr, &a->sin6_addr, 16);
    } else if (peer->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)peer;
        c->peer_family = AF_INET;
        c->peer_port = ntohs(a->sin_port);
        memcpy(c->peer_addr, &a->sin_addr, 4);
    }
    c->q = &c->q1;
    c->q_cap = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        sb__tls_free(c->tls);
        sb__slab_free(&srv->conn_slab, c);
        return -1;
    }
    c->flags = SB_F_EP_IN;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->index = srv->nconns;
    srv->conns[srv->nconns++] = c;
    snprintf(c->id, sizeof c->id, "c-%llx", (unsigned long long)++srv->next_conn_id);
    uint32_t now = sb__now32(srv);
    c->last_read = c->last_ping = c->last_progress = c->opened = now;
    c->deadline = now + (uint32_t)srv->cfg.handshake_timeout_ms;
    return 0;
}

/* Out of file descriptors: accept one pending connection with the spare
 * descriptor kept for this, tell it 503 and close it, so that the backlog
 * does not fill with clients waiting for nothing (and the listener does not
 * stay readable for ever). Without a spare, accepting pauses for a moment.
 * Returns 1 when a client was refused, 0 when none was waiting (accept
 * reports EMFILE before it looks at the queue), -1 after a pause. */
static int shed(sb_server_t *srv, int listen_fd)
{
    static const char body[] = "503 Service Unavailable: the server is at capacity\n";
    if (srv->spare_fd < 0) {
        sb__server_pause_accept(srv);
        return -1;
    }
    close(srv->spare_fd);
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        char answer[256];
        int n = snprintf(answer, sizeof answer,
                         "HTTP/1.1 503 Service Unavailable\r\n"
                         "Content-Type: text/plain; charset=utf-8\r\n"
                         "Content-Length: %zu\r\n"
                         "Retry-After: 1\r\n"
                         "Connection: close\r\n\r\n%s",
                         sizeof body - 1, body);
        ssize_t w = send(fd, answer, (size_t)n, MSG_NOSIGNAL);
        (void)w; /* best effort: the client is refused either way */
        close(fd);
    }
    srv->spare_fd = sb__spare_fd();
    if (fd < 0)
        return 0;
    srv->metrics.connections_shed++;
    uint64_t now = uv_now(&srv->loop);
    if (now - srv->shed_logged_at >= 10000 || !srv->shed_logged_at) {
        srv->shed_logged_at = now;
        sb__log(srv, SB_LOG_WARN, "out of file descriptors (%u connections): refusing new ones",
                srv->nconns);
    }
    return 1;
}

void sb__conn_accept(sb_server_t *srv, int tls)
{
    int listen_fd = tls ? srv->tls_listen_fd : srv->listen_fd;
    /* A bounded batch per wake-up: a connection storm must not starve the
     * connections already open. */
    for (int i = 0; i < 128; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        int fd = accept4(listen_fd, (struct sockaddr *)&peer, &peer_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                if (shed(srv, listen_fd) <= 0)
                    return;
                continue;
            }
            if (errno != EINTR && errno != ECONNABORTED && errno != EPROTO &&
                errno != EPERM) {
                sb__log(srv, SB_LOG_WARN, "accept failed: %s", strerror(errno));
                return;
            }
            continue;
        }
        if (conn_new(srv, fd, tls, &peer)) {
            close(fd);
            return;
        }
    }
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

/* Plaintext bytes from the peer, in the loop-wide buffer (with the tail
 * room in front of data). */
static void conn_input(sb_conn_t *c, uint8_t *data, size_t len)
{
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

static void mark_dirty(sb_conn_t *c);

/* TLS failed: send what the engine has to say (an alert, or the plain-HTTP
 * answer "this port speaks TLS") and end; otherwise just close. */
static void tls_failed(sb_conn_t *c)
{
    char why[SB__TLS_ERROR_SIZE];
    sb__log(c->srv, SB_LOG_DEBUG, "%s: %s", c->id, sb__tls_error(c->tls, why, sizeof why));
    const uint8_t *out;
    if (!sb__tls_pending(c->tls, &out)) {
        sb__conn_abort(c);
        return;
    }
    c->flags |= SB_F_END_AFTER_FLUSH;
    mark_dirty(c);
}

/* Decrypts what was read into the loop-wide buffer, a record at a time. */
static void tls_input(sb_conn_t *c, const uint8_t *in, size_t in_len)
{
    uint8_t *plain = c->srv->rbuf + SB_TAIL_ROOM;
    while (c->state != SB_CONN_CLOSED) {
        int r = sb__tls_read(c->tls, &in, &in_len, plain, SB_READ_SIZE);
        if (r > 0) {
            if (!(c->flags & SB_F_SHUTDOWN))
                conn_input(c, plain, (size_t)r);
            continue;
        }
        if (r == 0)
            sb__conn_abort(c); /* close_notify: the peer is done */
        else if (r != SB_EAGAIN)
            tls_failed(c);
        break;
    }
    /* Handshake messages, tickets and alerts go out at the flush point. */
    const uint8_t *out;
    if (c->state != SB_CONN_CLOSED && sb__tls_pending(c->tls, &out))
        mark_dirty(c);
}

static void conn_read(sb_conn_t *c)
{
    sb_server_t *srv = c->srv;
    uint8_t *data = c->tls ? srv->tls_rbuf : srv->rbuf + SB_TAIL_ROOM;
    ssize_t nread = read(c->fd, data, SB_READ_SIZE);
    if (nread < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        sb__conn_abort(c);
        return;
    }
    if (nread == 0) {
        /* EOF. A WebSocket that ends without a close frame is reported as
         * 1006 (close_code stays 0). */
        sb__conn_abort(c);
        return;
    }
    c->last_read = sb__now32(srv);
    if (c->tls)
        tls_input(c, data, (size_t)nread);
    else if (!(c->flags & SB_F_SHUTDOWN)) /* draining: the peer's bytes no longer matter */
        conn_input(c, data, (size_t)nread);
}

static void flush(sb_conn_t *c);

void sb__conn_io(sb_conn_t *c, uint32_t events)
{
    if (c->state == SB_CONN_CLOSED)
        return; /* doomed earlier in this batch; reaped at the flush point */
    if (events & EPOLLOUT) {
        c->flags &= (uint16_t)~SB_F_WANT_WRITE;
        flush(c);
        if (c->state == SB_CONN_CLOSED)
            return;
    }
    /* EPOLLHUP and EPOLLERR come even while input is not wanted: the read
     * tells EOF or the error. */
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        conn_read(c);
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
    if (c->queued && backlog + msg->len > srv->cfg.max_queued_bytes &&
        !srv->cfg.slow_consumer_drop) {
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
        uint32_t cap = c->q_cap * 2;
        sb_msg_t **q = malloc(cap * sizeof *q);
        if (!q)
            return SB_ENOMEM;
        for (uint32_t i = 0; i < c->q_count; i++)
            q[i] = c->q[(c->q_head + i) & (c->q_cap - 1)];
        if (c->q != &c->q1)
            free(c->q);
        c->q = q;
        c->q_head = 0;
        c->q_cap = cap;
    }
    if (!c->queued)
        c->last_progress = sb__now32(srv);
    c->q[(c->q_head + c->q_count) & (c->q_cap - 1)] = msg;
    c->q_count++;
    sb_msg_ref(msg);
    c->queued += msg->len;
    mark_dirty(c);

    /* Stop reading from a peer that sends faster than it reads (an echo
     * flood): its own output then bounds its input. */
    if (c->state != SB_CONN_HTTP && !(c->flags & SB_F_READ_PAUSED) &&
        c->queued > srv->cfg.max_queued_bytes / 2) {
        pause_reading(c);
    }
    return 0;
}

int sb__conn_would_drop(sb_conn_t *c, const sb_msg_t *msg)
{
    const sb_server_t *srv = c->srv;
    if (!srv->cfg.slow_consumer_drop || !c->queued)
        return 0;
    size_t backlog = c->queued - (c->q[c->q_head]->len - c->head_off);
    if (backlog + msg->len <= srv->cfg.max_queued_bytes)
        return 0;
    c->dropped++;
    c->srv->metrics.messages_dropped++;
    return 1;
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

/* Points iov at the first SB_WRITE_BATCH queued messages; returns how many
 * and their total size in *total. */
static int fill_iov(const sb_conn_t *c, struct iovec *iov, size_t *total)
{
    uint32_t n = c->q_count < SB_WRITE_BATCH ? c->q_count : SB_WRITE_BATCH;
    *total = 0;
    for (uint32_t i = 0; i < n; i++) {
        sb_msg_t *m = c->q[(c->q_head + i) & (c->q_cap - 1)];
        size_t off = i ? 0 : c->head_off;
        iov[i] = (struct iovec){m->data + off, m->len - off};
        *total += m->len - off;
    }
    return (int)n;
}

static int flush_tls(sb_conn_t *c);

/* The queue is empty: resume reading, or finish an orderly end. */
static void drained(sb_conn_t *c)
{
    /* A ring grown by a burst goes back to the connection's own slot: an
     * idle connection holds no queue memory on the heap. */
    if (c->q != &c->q1) {
        free(c->q);
        c->q = &c->q1;
        c->q_cap = 1;
    }
    c->q_head = 0;
    if ((c->flags & SB_F_READ_PAUSED) && !(c->flags & SB_F_SHUTDOWN))
        resume_reading(c);
    if (!(c->flags & SB_F_END_AFTER_FLUSH) || (c->flags & SB_F_SHUTDOWN))
        return;
    /* Half-close and keep reading until the peer's EOF (or close_timeout):
     * closing outright could turn our last bytes into a reset. */
    c->flags |= SB_F_SHUTDOWN;
    c->deadline = sb__now32(c->srv) + (uint32_t)c->srv->cfg.close_timeout_ms;
    if (c->flags & SB_F_READ_PAUSED)
        resume_reading(c);
    if (c->tls && !sb__tls_shutdown(c->tls))
        flush_tls(c); /* the close_notify: best effort, the socket is drained */
    if (c->state != SB_CONN_CLOSED && shutdown(c->fd, SHUT_WR))
        sb__conn_abort(c);
}

/* The queue drained after messages were dropped: the route tells the peer. */
static void tell_dropped(sb_conn_t *c)
{
    uint32_t n = c->dropped;
    c->dropped = 0;
    if (c->state == SB_CONN_WS && c->route->ws.on_dropped)
        c->route->ws.on_dropped(c, n, c->route->ws.data);
}

static void reap(sb_conn_t *c)
{
    if (c->flags & SB_F_UPGRADED) {
        c->flags &= (uint16_t)~SB_F_UPGRADED;
        sb__wsconn_closed(c);
    }
    conn_free(c);
}

/* Writes queued frames. Returns 0 when the queue is empty, 1 when the socket
 * is full, -1 when the connection failed. */
static int flush_plain(sb_conn_t *c)
{
    struct iovec iov[SB_WRITE_BATCH];
    while (c->q_count) {
        size_t total;
        struct msghdr mh = {.msg_iov = iov};
        mh.msg_iovlen = (size_t)fill_iov(c, iov, &total);
        if (mh.msg_iovlen > 2 && total <= mh.msg_iovlen * SB_COALESCE_AVG) {
            uint8_t *p = c->srv->wbuf;
            for (size_t i = 0; i < mh.msg_iovlen; i++) {
                memcpy(p, iov[i].iov_base, iov[i].iov_len);
                p += iov[i].iov_len;
            }
            iov[0] = (struct iovec){c->srv->wbuf, total};
            mh.msg_iovlen = 1;
        }
        /* sendmsg rather than writev: MSG_NOSIGNAL, so that a peer gone
         * away is an error here and not a SIGPIPE for the embedder. */
        ssize_t r = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                sb__conn_abort(c);
                return -1;
            }
            r = 0;
        }
        if (r > 0) {
            consume(c, (size_t)r);
            c->last_progress = sb__now32(c->srv);
        }
        if ((size_t)r < total)
            return 1;
    }
    return 0;
}

/* Writes the engine's pending ciphertext, encrypting queued frames as it
 * empties. Returns as flush_plain; 0 also while the handshake holds the
 * queue back. */
static int flush_tls(sb_conn_t *c)
{
    struct iovec iov[SB_WRITE_BATCH];
    for (;;) {
        const uint8_t *out;
        size_t n = sb__tls_pending(c->tls, &out);
        if (n) {
            ssize_t w = send(c->fd, out, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return 1;
                sb__conn_abort(c);
                return -1;
            }
            sb__tls_sent(c->tls, (size_t)w);
            c->last_progress = sb__now32(c->srv);
            if ((size_t)w < n)
                return 1;
            continue;
        }
        if (!c->q_count)
            return 0;
        size_t total;
        int cnt = fill_iov(c, iov, &total);
        int r = sb__tls_write(c->tls, iov, cnt);
        if (r == SB_EAGAIN)
            return 0; /* the handshake is not over: nothing can go yet */
        if (r < 0) {
            sb__conn_abort(c);
            return -1;
        }
        consume(c, (size_t)r);
    }
}

/* Writes what the socket takes; when it is full, waits for EPOLLOUT. */
static void flush(sb_conn_t *c)
{
    if (c->flags & SB_F_WANT_WRITE)
        return; /* the socket is full: EPOLLOUT says when it is not */
    int r = c->tls ? flush_tls(c) : flush_plain(c);
    if (r < 0)
        return;
    if (r) {
        c->flags |= SB_F_WANT_WRITE;
        update_interest(c);
        return;
    }
    if (c->flags & SB_F_EP_OUT)
        update_interest(c);
    if (!c->q_count) {
        drained(c);
        if (c->dropped)
            tell_dropped(c); /* last: it may queue, or close the connection */
    }
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

void sb__conn_sweep(sb_conn_t *c, uint64_t now64)
{
    uint32_t now = (uint32_t)now64;
    const sb_server_config_t *cfg = &c->srv->cfg;
    switch (c->state) {
    case SB_CONN_CLOSED:
        return;
    case SB_CONN_HTTP:
        if (sb__passed(now, c->deadline) && !(c->flags & SB_F_SHUTDOWN)) {
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
        if ((uint32_t)(now - c->last_read) >= cfg->pong_timeout_ms) {
            sb__log(c->srv, SB_LOG_INFO, "%s: no pong or data for %llu ms: closing", c->id,
                    (unsigned long long)((uint32_t)(now - c->last_read)));
            sb__conn_abort(c);
            return;
        }
        if ((uint32_t)(now - c->last_read) >= cfg->ping_interval_ms &&
            (uint32_t)(now - c->last_ping) >= cfg->ping_interval_ms) {
            c->last_ping = now;
            sb__wsconn_ping(c);
        }
        break;
    case SB_CONN_CLOSING:
        if (sb__passed(now, c->deadline)) {
            sb__conn_abort(c);
            return;
        }
        break;
    }
    if ((c->flags & SB_F_SHUTDOWN) && sb__passed(now, c->deadline)) {
        sb__conn_abort(c);
        return;
    }
    if (c->queued && (uint32_t)(now - c->last_progress) >= cfg->write_timeout_ms) {
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

int sb_conn_is_tls(const sb_conn_t *conn)
{
    return conn->tls != NULL;
}

int sb_conn_peer(const sb_conn_t *conn, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    if (!size || !conn->peer_family ||
        !inet_ntop(conn->peer_family, conn->peer_addr, ip, sizeof ip))
        return SB_EINVAL;
    if (conn->peer_family == AF_INET6)
        snprintf(buf, size, "[%s]:%u", ip, conn->peer_port);
    else
        snprintf(buf, size, "%s:%u", ip, conn->peer_port);
    return 0;
}
