/* server.c — the loop, the listener, the route table, the timeout sweep and
 * graceful stop. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "server/internal.h"

static void on_stop(uv_async_t *a);
static void on_post(uv_async_t *a);

int sb__spare_fd(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int sb_server_new(sb_server_t **out, const sb_server_config_t *cfg)
{
    *out = NULL;
    if (!cfg || cfg->port < 0 || cfg->port > 65535 || !cfg->max_message_size ||
        !cfg->sweep_interval_ms || cfg->tls_port < 0 || cfg->tls_port > 65535 ||
        (cfg->compression && (cfg->compression_level < 0 || cfg->compression_level > 9)))
        return SB_EINVAL;

    sb_server_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return SB_ENOMEM;
    srv->cfg = *cfg;
    srv->epfd = srv->listen_fd = srv->tls_listen_fd = srv->spare_fd = -1;
    sb__slab_init(&srv->conn_slab, sizeof(sb_conn_t));
    if (!srv->cfg.max_frame_size)
        srv->cfg.max_frame_size = srv->cfg.max_message_size;
    /* Connection timestamps are 32-bit (see sb__now32). */
    uint64_t *timeouts[] = {&srv->cfg.ping_interval_ms,     &srv->cfg.pong_timeout_ms,
                            &srv->cfg.write_timeout_ms,     &srv->cfg.handshake_timeout_ms,
                            &srv->cfg.idle_timeout_ms,      &srv->cfg.close_timeout_ms};
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++)
        if (*timeouts[i] > SB_MAX_TIMEOUT_MS)
            *timeouts[i] = SB_MAX_TIMEOUT_MS;
    srv->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
    srv->rbuf = malloc(SB_TAIL_ROOM + SB_READ_SIZE);
    srv->wbuf = malloc(SB_WRITE_BATCH * SB_COALESCE_AVG);
    if (!srv->host || !srv->rbuf || !srv->wbuf)
        goto fail;
    srv->cfg.host = srv->host;
    if (srv->cfg.compression) {
        sb__pmd_policy_t policy;
        sb__pmd_policy_default(&policy);
        policy.level = srv->cfg.compression_level;
        policy.min_size = srv->cfg.compression_min_size;
        policy.allow_context_takeover = srv->cfg.compression_context_takeover;
        if (sb__pmd_policy_check(&policy, NULL) || sb__pmd_new(&policy, &srv->pmd))
            goto fail;
    }
    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (srv->epfd < 0)
        goto fail;
    if (uv_loop_init(&srv->loop))
        goto fail;
    srv->loop.data = srv;
    if (uv_poll_init(&srv->loop, &srv->epoll, srv->epfd)) {
        uv_loop_close(&srv->loop);
        goto fail;
    }
    srv->epoll.data = srv;
    srv->spare_fd = sb__spare_fd();
    uv_timer_init(&srv->loop, &srv->accept_timer);
    srv->accept_timer.data = srv;
    uv_prepare_init(&srv->loop, &srv->prepare);
    uv_check_init(&srv->loop, &srv->check);
    uv_timer_init(&srv->loop, &srv->sweep);
    uv_timer_init(&srv->loop, &srv->stop_timer);
    uv_async_init(&srv->loop, &srv->stop_async, on_stop);
    srv->stop_async.data = srv;
    uv_async_init(&srv->loop, &srv->post_async, on_post);
    srv->post_async.data = srv;
    uv_mutex_init(&srv->post_lock);
    srv->posts_tail = &srv->posts;
    srv->prepare.data = srv;
    srv->check.data = srv;
    srv->sweep.data = srv;
    srv->stop_timer.data = srv;
    *out = srv;
    return 0;

fail:
    if (srv->epfd >= 0)
        close(srv->epfd);
    sb__pmd_free(srv->pmd);
    free(srv->rbuf);
    free(srv->wbuf);
    free(srv->host);
    free(srv);
    return SB_ENOMEM;
}

static void noop_close(uv_handle_t *h)
{
    (void)h;
}

void sb_server_free(sb_server_t *srv)
{
    if (!srv)
        return;
    if (!srv->handles_closed) {
        /* Never ran: the handles are initialised but idle. */
        uv_close((uv_handle_t *)&srv->epoll, noop_close);
        uv_close((uv_handle_t *)&srv->accept_timer, noop_close);
        if (srv->listen_fd >= 0)
            uv_close((uv_handle_t *)&srv->listen_poll, noop_close);
        if (srv->tls_listen_fd >= 0)
            uv_close((uv_handle_t *)&srv->tls_listen_poll, noop_close);
        uv_close((uv_handle_t *)&srv->prepare, noop_close);
        uv_close((uv_handle_t *)&srv->check, noop_close);
        uv_close((uv_handle_t *)&srv->sweep, noop_close);
        uv_close((uv_handle_t *)&srv->stop_timer, noop_close);
        uv_close((uv_handle_t *)&srv->stop_async, noop_close);
        uv_close((uv_handle_t *)&srv->post_async, noop_close);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
    }
    /* Posts to a server that never ran: what they refer to may be gone
     * already, so they are dropped without running (see sb_server_post). */
    for (sb__post_t *p = srv->posts, *next; p; p = next) {
        next = p->next;
        free(p);
    }
    uv_mutex_destroy(&srv->post_lock);
    uv_loop_close(&srv->loop);
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    if (srv->tls_listen_fd >= 0)
        close(srv->tls_listen_fd);
    sb__tls_ctx_free(srv->tls_ctx);
    free(srv->tls_rbuf);
    sb__pmd_free(srv->pmd);
    if (srv->spare_fd >= 0)
        close(srv->spare_fd);
    close(srv->epfd);
    for (size_t i = 0; i < srv->nroutes; i++)
        free(srv->routes[i].path);
    free(srv->routes);
    free(srv->conns);
    sb__request_pool_free(srv);
    sb__slab_destroy(&srv->conn_slab);
    free(srv->rbuf);
    free(srv->wbuf);
    free(srv->host);
    free(srv);
}

/* ---- routes ----------------------------------------------------------- */

static int route_add(sb_server_t *srv, const char *path, sb__route_t *r)
{
    if (!path || path[0] != '/')
        return SB_EINVAL;
    size_t len = strlen(path);
    r->prefix = path[len - 1] == '*';
    if (r->prefix)
        len--;
    for (size_t i = 0; i < srv->nroutes; i++)
        if (srv->routes[i].prefix == r->prefix && srv->routes[i].path_len == len &&
            memcmp(srv->routes[i].path, path, len) == 0)
            return SB_EEXIST;
    sb__route_t *routes = realloc(srv->routes, (srv->nroutes + 1) * sizeof *routes);
    if (!routes)
        return SB_ENOMEM;
    srv->routes = routes;
    r->path = strndup(path, len);
    if (!r->path)
        return SB_ENOMEM;
    r->path_len = len;
    srv->routes[srv->nroutes++] = *r;
    return 0;
}

int sb_server_route(sb_server_t *srv, const char *path, unsigned methods,
                    sb_http_handler_fn handler, void *data)
{
    if (!handler || !methods)
        return SB_EINVAL;
    /* A resource that answers GET answers HEAD too (RFC 9110 9.3.2). */
    if (methods & SB_METHOD_GET)
        methods |= SB_METHOD_HEAD;
    sb__route_t r = {.methods = methods, .handler = handler, .data = data};
    return route_add(srv, path, &r);
}

int sb_server_route_ws(sb_server_t *srv, const char *path, const sb_ws_handlers_t *h)
{
    if (!h)
        return SB_EINVAL;
    sb__route_t r = {.methods = SB_METHOD_GET, .is_ws = 1, .ws = *h};
    return route_add(srv, path, &r);
}

const sb__route_t *sb__route_match(const sb_server_t *srv, const char *path, size_t len)
{
    const sb__route_t *best = NULL;
    for (size_t i = 0; i < srv->nroutes; i++) {
        const sb__route_t *r = &srv->routes[i];
        if (!r->prefix) {
            if (r->path_len == len && memcmp(r->path, path, len) == 0)
                return r;
        } else if (r->path_len <= len && memcmp(r->path, path, r->path_len) == 0) {
            if (!best || r->path_len > best->path_len)
                best = r;
        }
    }
    return best;
}

/* ---- the loop --------------------------------------------------------- */

uint64_t sb_server_now(const sb_server_t *srv)
{
    return uv_now(&srv->loop);
}

size_t sb_server_conn_count(const sb_server_t *srv)
{
    return srv->nconns;
}

int sb_server_port(const sb_server_t *srv)
{
    return srv->port;
}

const char *sb__server_date(sb_server_t *srv)
{
    uint64_t now = uv_now(&srv->loop);
    if (!srv->date[0] || now - srv->date_at >= 1000) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(srv->date, sizeof srv->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        srv->date_at = now;
    }
    return srv->date;
}

static void on_listener(uv_poll_t *h, int status, int events)
{
    (void)events;
    sb_server_t *srv = h->data;
    if (status < 0) {
        sb__log(srv, SB_LOG_WARN, "listener: %s", uv_strerror(status));
        return;
    }
    sb__conn_accept(srv, h == &srv->tls_listen_poll);
}

static void on_accept_timer(uv_timer_t *t)
{
    sb_server_t *srv = t->data;
    if (!srv->listening)
        return;
    uv_poll_start(&srv->listen_poll, UV_READABLE, on_listener);
    if (srv->tls_listen_fd >= 0)
        uv_poll_start(&srv->tls_listen_poll, UV_READABLE, on_listener);
}

void sb__server_pause_accept(sb_server_t *srv)
{
    if (srv->spare_fd < 0)
        srv->spare_fd = sb__spare_fd();
    uv_poll_stop(&srv->listen_poll);
    if (srv->tls_listen_fd >= 0)
        uv_poll_stop(&srv->tls_listen_poll);
    uv_timer_start(&srv->accept_timer, on_accept_timer, 100, 0);
}

/* The epoll set has events: hand each to its connection. Closed connections
 * are only freed at the flush point, after this walk, so no event of a
 * batch can point at freed memory. */
static void on_epoll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    sb_server_t *srv = h->data;
    struct epoll_event ev[SB_EPOLL_BATCH];
    int n = epoll_wait(srv->epfd, ev, SB_EPOLL_BATCH, 0);
    for (int i = 0; i < n; i++)
        sb__conn_io(ev[i].data.ptr, ev[i].events);
}

static void on_flush(uv_handle_t *h)
{
    sb_server_t *srv = h->data;
    if (srv->flush_hook)
        srv->flush_hook(srv->flush_hook_data);
    sb__conn_flush_all(srv);
}

static void on_prepare(uv_prepare_t *h)
{
    on_flush((uv_handle_t *)h);
}

static void on_check(uv_check_t *h)
{
    on_flush((uv_handle_t *)h);
}

static double per_second(uint64_t now_count, uint64_t *last, uint64_t ms)
{
    double r = (double)(now_count - *last) * 1000.0 / (double)ms;
    *last = now_count;
    return r;
}

/* Message and byte rates over the last second or so. */
static void update_rates(sb_server_t *srv, uint64_t now)
{
    uint64_t ms = now - srv->rates_at;
    if (ms < 1000)
        return;
    sb_metrics_t *m = &srv->metrics;
    m->messages_in_rate = per_second(m->messages_in, &srv->last_msgs_in, ms);
    m->messages_out_rate = per_second(m->messages_out, &srv->last_msgs_out, ms);
    m->bytes_in_rate = per_second(m->bytes_in, &srv->last_bytes_in, ms);
    m->bytes_out_rate = per_second(m->bytes_out, &srv->last_bytes_out, ms);
    srv->rates_at = now;
}

static void on_sweep(uv_timer_t *t)
{
    sb_server_t *srv = t->data;
    uint64_t now = uv_now(&srv->loop);
    update_rates(srv, now);
#ifdef __GLIBC__
    /* Bursts (a join storm, a big broadcast) leave freed pages inside the
     * heap; hand them back every ten seconds or so, so that memory returns
     * to its baseline once the burst is over. */
    uint64_t every = 10000 / srv->cfg.sweep_interval_ms;
    if (++srv->sweeps % (every ? every : 1) == 0)
        malloc_trim(0);
#endif
    /* Closing a connection only marks it: nothing leaves the array until
     * the flush point, so this walk is safe. */
    for (uint32_t i = 0; i < srv->nconns; i++)
        sb__conn_sweep(srv->conns[i], now);
}

/* Binds and listens on host:port, polled by h. Returns 0 and sets *fd_out
 * and *port_out, or SB_EADDR (logged). */
static int open_listener(sb_server_t *srv, int port, uv_poll_t *h, int *fd_out, int *port_out)
{
    struct sockaddr_storage addr;
    int r;
    if (strchr(srv->host, ':'))
        r = uv_ip6_addr(srv->host, port, (struct sockaddr_in6 *)&addr);
    else
        r = uv_ip4_addr(srv->host, port, (struct sockaddr_in *)&addr);
    if (r) {
        sb__log(srv, SB_LOG_ERROR, "cannot listen on %s: not an IP address (%s)", srv->host,
                uv_strerror(r));
        return SB_EADDR;
    }
    socklen_t alen = addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in);
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&addr, alen) || listen(fd, SOMAXCONN)) {
        sb__log(srv, SB_LOG_ERROR, "cannot listen on %s port %d: %s", srv->host, port,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return SB_EADDR;
    }
    struct sockaddr_storage bound;
    alen = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &alen);
    if (uv_poll_init(&srv->loop, h, fd)) {
        close(fd);
        return SB_EADDR;
    }
    h->data = srv;
    uv_poll_start(h, UV_READABLE, on_listener);
    *fd_out = fd;
    *port_out = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

static void close_fd_poll(uv_poll_t *h, int *fd)
{
    if (*fd < 0)
        return;
    uv_close((uv_handle_t *)h, NULL); /* stops polling at once */
    close(*fd);
    *fd = -1;
}

int sb_server_listen(sb_server_t *srv)
{
    if (srv->listen_fd >= 0)
        return SB_EINVAL;
    const sb_server_config_t *cfg = &srv->cfg;
    if (cfg->tls_cert || cfg->tls_key) {
        char err[SB__TLS_ERROR_SIZE];
        if (!cfg->tls_cert || !cfg->tls_key) {
            sb__log(srv, SB_LOG_ERROR, "TLS needs both a certificate and a key");
            return SB_EINVAL;
        }
        int r = sb__tls_ctx_new(&srv->tls_ctx, cfg->tls_cert, cfg->tls_key, err, sizeof err);
        if (r) {
            sb__log(srv, SB_LOG_ERROR, "%s", err);
            return r;
        }
        if (sb__tls_ctx_describe(srv->tls_ctx, err, sizeof err) == 1)
            sb__log(srv, SB_LOG_WARN, "TLS certificate expired or not yet valid: %s", err);
        else
            sb__log(srv, SB_LOG_INFO, "TLS certificate: %s", err);
        if (!(srv->tls_rbuf = malloc(SB_READ_SIZE)))
            return SB_ENOMEM;
    }
    int r = open_listener(srv, cfg->port, &srv->listen_poll, &srv->listen_fd, &srv->port);
    if (r)
        return r;
    if (srv->tls_ctx) {
        r = open_listener(srv, cfg->tls_port, &srv->tls_listen_poll, &srv->tls_listen_fd,
                          &srv->tls_port);
        if (r) {
            close_fd_poll(&srv->listen_poll, &srv->listen_fd);
            uv_run(&srv->loop, UV_RUN_NOWAIT); /* let the handle close */
            return r;
        }
    }
    srv->listening = 1;
    return 0;
}

int sb_server_tls_port(const sb_server_t *srv)
{
    return srv->tls_listen_fd >= 0 ? srv->tls_port : 0;
}

int sb_tls_check_files(const char *cert_file, const char *key_file, char *err, size_t err_size)
{
    return sb__tls_check_files(cert_file, key_file, err, err_size);
}

int sb_server_tls_reload(sb_server_t *srv, char *err, size_t err_size)
{
    char buf[SB__TLS_ERROR_SIZE];
    if (!srv->tls_ctx) {
        if (err && err_size)
            snprintf(err, err_size, "TLS is off (no certificate configured)");
        return SB_EINVAL;
    }
    int r = sb__tls_ctx_reload(srv->tls_ctx, NULL, NULL, buf, sizeof buf);
    if (err && err_size)
        snprintf(err, err_size, "%s", r ? buf : "");
    if (!r && sb__tls_ctx_describe(srv->tls_ctx, buf, sizeof buf) >= 0)
        sb__log(srv, SB_LOG_INFO, "TLS certificate reloaded: %s", buf);
    return r;
}

/* Stops accepting for good: no more readiness, and the port is free again. */
static void close_listener(sb_server_t *srv)
{
    if (!srv->listening)
        return;
    srv->listening = 0;
    close_fd_poll(&srv->listen_poll, &srv->listen_fd);
    close_fd_poll(&srv->tls_listen_poll, &srv->tls_listen_fd);
    uv_timer_stop(&srv->accept_timer);
}

static void close_server_handles(sb_server_t *srv)
{
    if (srv->handles_closed)
        return;
    srv->handles_closed = 1;
    close_listener(srv);
    uv_close((uv_handle_t *)&srv->epoll, NULL);
    uv_close((uv_handle_t *)&srv->accept_timer, NULL);
    uv_close((uv_handle_t *)&srv->prepare, NULL);
    uv_close((uv_handle_t *)&srv->check, NULL);
    uv_close((uv_handle_t *)&srv->sweep, NULL);
    uv_close((uv_handle_t *)&srv->stop_timer, NULL);
    uv_close((uv_handle_t *)&srv->stop_async, NULL);
    /* Refuse more posts, then run what was accepted: in this order, nothing
     * accepted is left for after the embedder freed what it refers to. */
    uv_mutex_lock(&srv->post_lock);
    srv->posts_closed = 1;
    uv_mutex_unlock(&srv->post_lock);
    on_post(&srv->post_async);
    uv_close((uv_handle_t *)&srv->post_async, NULL);
}

void sb__server_conn_gone(sb_server_t *srv, sb_conn_t *c)
{
    uint32_t i = c->index;
    sb_conn_t *last = srv->conns[--srv->nconns];
    srv->conns[i] = last;
    last->index = i;
    if (srv->stopping && srv->nconns == 0)
        close_server_handles(srv);
}

static void on_stop_timeout(uv_timer_t *t)
{
    sb_server_t *srv = t->data;
    sb__log(srv, SB_LOG_WARN, "shutdown timeout: closing %u remaining connection(s)", srv->nconns);
    for (uint32_t i = 0; i < srv->nconns; i++)
        sb__conn_abort(srv->conns[i]);
}

static void on_stop(uv_async_t *a)
{
    sb_server_t *srv = a->data;
    if (srv->stopping)
        return;
    srv->stopping = 1;
    sb__log(srv, SB_LOG_INFO, "shutting down: closing %u connection(s)", srv->nconns);
    if (srv->stop_hook)
        srv->stop_hook(srv->stop_hook_data);
    close_listener(srv);
    uv_timer_start(&srv->stop_timer, on_stop_timeout, srv->stop_timeout_ms, 0);
    for (uint32_t i = 0; i < srv->nconns; i++)
        sb__conn_stop(srv->conns[i]);
    if (srv->nconns == 0)
        close_server_handles(srv);
}

void sb_server_stop(sb_server_t *srv, uint64_t timeout_ms)
{
    srv->stop_timeout_ms = timeout_ms;
    uv_async_send(&srv->stop_async);
}

/* Starts the loop's own handles once, whichever run function comes first. */
static void start_handles(sb_server_t *srv)
{
    if (srv->running)
        return;
    srv->running = 1;
    srv->started_at = srv->rates_at = uv_now(&srv->loop);
    uv_poll_start(&srv->epoll, UV_READABLE, on_epoll);
    uv_prepare_start(&srv->prepare, on_prepare);
    uv_check_start(&srv->check, on_check);
    uv_timer_start(&srv->sweep, on_sweep, srv->cfg.sweep_interval_ms, srv->cfg.sweep_interval_ms);
    /* The flushers alone must not keep the loop alive. */
    uv_unref((uv_handle_t *)&srv->prepare);
    uv_unref((uv_handle_t *)&srv->check);
}

int sb_server_run(sb_server_t *srv)
{
    if (!srv->listening)
        return SB_EINVAL;
    start_handles(srv);
    int r = uv_run(&srv->loop, UV_RUN_DEFAULT);
    return r < 0 ? SB_EIO : 0;
}

int sb_server_run_once(sb_server_t *srv, int block)
{
    if (!srv->listening && !srv->running)
        return SB_EINVAL;
    start_handles(srv);
    return uv_run(&srv->loop, block ? UV_RUN_ONCE : UV_RUN_NOWAIT) != 0;
}

/* ---- posting from other threads ---------------------------------------- */

static void on_post(uv_async_t *a)
{
    sb_server_t *srv = a->data;
    uv_mutex_lock(&srv->post_lock);
    sb__post_t *p = srv->posts;
    srv->posts = NULL;
    srv->posts_tail = &srv->posts;
    uv_mutex_unlock(&srv->post_lock);
    while (p) {
        sb__post_t *next = p->next;
        p->fn(p->arg);
        free(p);
        p = next;
    }
}

int sb_server_post(sb_server_t *srv, void (*fn)(void *arg), void *arg)
{
    sb__post_t *p = malloc(sizeof *p);
    if (!p)
        return SB_ENOMEM;
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    uv_mutex_lock(&srv->post_lock);
    if (srv->posts_closed) {
        uv_mutex_unlock(&srv->post_lock);
        free(p);
        return SB_ECLOSED;
    }
    *srv->posts_tail = p;
    srv->posts_tail = &p->next;
    uv_mutex_unlock(&srv->post_lock);
    uv_async_send(&srv->post_async);
    return 0;
}

/* ---- hooks for the hub ------------------------------------------------- */

uv_loop_t *sb__server_loop(sb_server_t *srv)
{
    return &srv->loop;
}

void sb__server_set_flush_hook(sb_server_t *srv, void (*fn)(void *data), void *data)
{
    srv->flush_hook = fn;
    srv->flush_hook_data = data;
}

void sb__server_set_stop_hook(sb_server_t *srv, void (*fn)(void *data), void *data)
{
    srv->stop_hook = fn;
    srv->stop_hook_data = data;
}

void sb_server_metrics(const sb_server_t *srv, sb_metrics_t *m)
{
    *m = srv->metrics;
    if (srv->pmd) {
        const sb__pmd_stats_t *st = sb__pmd_stats(srv->pmd);
        m->deflate_messages = st->compressed;
        m->deflate_bytes_in = st->compressed_in;
        m->deflate_bytes_out = st->compressed_out;
        m->inflate_messages = st->inflated;
    }
    m->uptime_ms = srv->started_at ? uv_now(&srv->loop) - srv->started_at : 0;
}
