/* httpconn.c — the HTTP phase of a connection: requests are read one at a
 * time (pipelining answers in order), routed, and answered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"

const char *sb__http_status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    }
    return status < 400 ? "OK" : "Error";
}

static const struct {
    unsigned bit;
    const char *name;
} methods[] = {
    {SB_METHOD_GET, "GET"},     {SB_METHOD_HEAD, "HEAD"},     {SB_METHOD_POST, "POST"},
    {SB_METHOD_PUT, "PUT"},     {SB_METHOD_DELETE, "DELETE"}, {SB_METHOD_OPTIONS, "OPTIONS"},
    {SB_METHOD_PATCH, "PATCH"},
};

unsigned sb_request_method(const sb_request_t *req)
{
    const char *name = http_method_str((enum http_method)req->http.parser.method);
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(name, methods[i].name) == 0)
            return methods[i].bit;
    return 0;
}

const char *sb_request_method_name(const sb_request_t *req)
{
    return http_method_str((enum http_method)req->http.parser.method);
}

const char *sb_request_path(const sb_request_t *req, size_t *len)
{
    if (len)
        *len = req->path_len;
    return sb__http_req_str(&req->http, req->http.url_off);
}

const char *sb_request_query(const sb_request_t *req, size_t *len)
{
    if (!req->query_off)
        return NULL;
    if (len)
        *len = req->query_len;
    return sb__http_req_str(&req->http, req->query_off);
}

const char *sb_request_header(const sb_request_t *req, const char *name, size_t *len)
{
    return sb__http_req_header(&req->http, name, len);
}

const void *sb_request_body(const sb_request_t *req, size_t *len)
{
    if (len)
        *len = req->http.body_len;
    return req->http.body_len ? sb__http_req_str(&req->http, req->http.body_off) : "";
}

sb_server_t *sb_request_server(const sb_request_t *req)
{
    return req->conn->srv;
}

sb_conn_t *sb_request_conn(const sb_request_t *req)
{
    return req->conn;
}

void sb_request_set_user_data(sb_request_t *req, void *data)
{
    req->conn_data = data;
}

/* ---- request states ---------------------------------------------------- */

sb_request_t *sb__request_get(sb_conn_t *c)
{
    sb_server_t *srv = c->srv;
    sb_request_t *req = srv->req_pool;
    if (req) {
        srv->req_pool = req->next_free;
        srv->req_pool_n--;
    } else if (!(req = calloc(1, sizeof *req))) {
        return NULL;
    }
    /* Keep the arena's memory across uses. */
    char *arena = req->http.arena;
    uint32_t cap = req->http.arena_cap;
    sb__http_req_init(&req->http, srv->cfg.max_head_size, srv->cfg.max_body_size);
    req->http.arena = arena;
    req->http.arena_cap = cap;
    req->conn = c;
    req->next_free = NULL;
    req->responded = 0;
    req->conn_data = NULL;
    req->path_len = 0;
    req->started = sb__now32(srv);
    c->req = req;
    return req;
}

void sb__request_put(sb_conn_t *c)
{
    sb_server_t *srv = c->srv;
    sb_request_t *req = c->req;
    c->req = NULL;
    if (!req)
        return;
    if (srv->req_pool_n >= SB_REQ_POOL) {
        sb__http_req_free(&req->http);
        free(req);
        return;
    }
    if (req->http.arena_cap > SB_REQ_POOL_ARENA)
        sb__http_req_free(&req->http); /* a big body's arena is not worth keeping */
    req->conn = NULL;
    req->next_free = srv->req_pool;
    srv->req_pool = req;
    srv->req_pool_n++;
}

void sb__request_pool_free(sb_server_t *srv)
{
    while (srv->req_pool) {
        sb_request_t *req = srv->req_pool;
        srv->req_pool = req->next_free;
        sb__http_req_free(&req->http);
        free(req);
    }
    srv->req_pool_n = 0;
}

/* ---- answering -------------------------------------------------------- */

/* Whether the connection can take another request after this answer. */
static int keeps_alive(const sb_request_t *req, int status)
{
    const sb_conn_t *c = req->conn;
    if (c->srv->stopping || (c->flags & SB_F_STOP_AFTER_REQUEST))
        return 0;
    /* After a parse error or an upgrade we refused, the rest of the stream is
     * not a request we can find the start of. */
    if (status == 400 || status == 413 || status == 431 || status == 505 || req->http.error ||
        req->http.upgrade)
        return 0;
    return req->http.complete && req->http.keep_alive;
}

/* One access-log entry for an answered request. */
static void log_access(const sb_request_t *req, int status, size_t body_out)
{
    const sb_conn_t *c = req->conn;
    const sb_server_t *srv = c->srv;
    char peer[64];
    if (sb_conn_peer(c, peer, sizeof peer))
        snprintf(peer, sizeof peer, "-");
    sb_access_t e = {
        .peer = peer,
        .method = req->http.error ? "-" : sb_request_method_name(req),
        .path = req->path_len ? sb_request_path(req, NULL) : "-",
        .status = status,
        .duration_ms = (uint32_t)(sb__now32(srv) - req->started),
        .bytes_in = req->http.body_len,
        .bytes_out = body_out,
    };
    srv->cfg.access_log(srv->cfg.log_data, &e);
}

int sb_request_respond(sb_request_t *req, int status, const char *content_type, const char *headers,
                       const void *body, size_t len)
{
    if (req->responded)
        return SB_EINVAL;
    req->responded = 1;
    sb_conn_t *c = req->conn;
    int alive = keeps_alive(req, status);
    int bodiless = status == 204 || status == 304 || status < 200;

    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "Server: switchboard/%s\r\n"
                     "Date: %s\r\n"
                     "Connection: %s\r\n",
                     status, sb__http_status_text(status), SB_VERSION, sb__server_date(c->srv),
                     alive ? "keep-alive" : "close");
    if (!bodiless)
        n += snprintf(head + n, sizeof head - (size_t)n,
                      "Content-Type: %s\r\nContent-Length: %zu\r\n",
                      content_type ? content_type : "text/plain; charset=utf-8", len);
    size_t extra = headers ? strlen(headers) : 0;
    size_t send_body = (bodiless || req->head) ? 0 : len;
    sb_msg_t *m = sb__msg_alloc((size_t)n + extra + 2 + send_body);
    if (!m) {
        sb__conn_abort(c);
        return SB_ENOMEM;
    }
    uint8_t *p = m->data;
    memcpy(p, head, (size_t)n);
    p += n;
    memcpy(p, headers ? headers : "", extra);
    p += extra;
    memcpy(p, "\r\n", 2);
    p += 2;
    if (send_body)
        memcpy(p, body, send_body);
    int r = sb__conn_queue(c, m);
    sb_msg_unref(m);
    if (c->srv->cfg.access_log)
        log_access(req, status, send_body);
    if (!alive)
        sb__conn_end(c);
    else
        c->deadline = sb__now32(c->srv) + (uint32_t)c->srv->cfg.idle_timeout_ms;
    return r == SB_ECLOSED ? 0 : r;
}

/* Answers with a short plain-text body: the status line's words and what to
 * do about it. */
void sb__http_respond_text(sb_request_t *req, int status, const char *headers, const char *text)
{
    char body[256];
    int n = snprintf(body, sizeof body, "%d %s: %s\n", status, sb__http_status_text(status), text);
    if (n >= (int)sizeof body)
        n = (int)sizeof body - 1;
    sb_request_respond(req, status, "text/plain; charset=utf-8", headers, body, (size_t)n);
}

void sb__http_error(sb_conn_t *c, int status, const char *text)
{
    sb__log(c->srv, SB_LOG_DEBUG, "%s: HTTP %d: %s", c->id, status, text);
    c->req->responded = 0;
    sb__http_respond_text(c->req, status, NULL, text);
}

static void allow_header(char *out, size_t size, unsigned allowed)
{
    size_t n = (size_t)snprintf(out, size, "Allow: ");
    const char *sep = "";
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (allowed & methods[i].bit) {
            n += (size_t)snprintf(out + n, size - n, "%s%s", sep, methods[i].name);
            sep = ", ";
        }
    snprintf(out + n, size - n, "\r\n");
}

/* Finds path and query in the request target: origin-form ("/a?b") or
 * absolute-form ("http://host/a?b"). */
static int split_target(sb_request_t *req)
{
    const sb__http_req_t *h = &req->http;
    const char *url = sb__http_req_str(h, h->url_off);
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, h->url_len, 0, &u) || !(u.field_set & (1 << UF_PATH)))
        return -1;
    /* Paths are handed out NUL-terminated: terminate in place (the arena
     * copy is ours), remembering the query's position first. */
    req->path_len = u.field_data[UF_PATH].len;
    uint32_t path_off = h->url_off + u.field_data[UF_PATH].off;
    if (u.field_set & (1 << UF_QUERY)) {
        req->query_off = h->url_off + u.field_data[UF_QUERY].off;
        req->query_len = u.field_data[UF_QUERY].len;
        req->http.arena[req->query_off + req->query_len] = '\0';
    }
    req->http.arena[path_off + req->path_len] = '\0';
    req->http.url_off = path_off;
    return 0;
}

/* Routes one complete request. Returns 1 when the connection became a
 * WebSocket (the remaining bytes are frames). */
static int dispatch(sb_conn_t *c, uint8_t *rest, size_t rest_len)
{
    sb_request_t *req = c->req;
    req->responded = 0;
    req->conn_data = NULL;
    req->path_len = 0;
    req->query_off = req->query_len = 0;
    const http_parser *hp = &req->http.parser;
    if (hp->http_major != 1) {
        sb__http_respond_text(req, 505, NULL, "this server speaks HTTP/1.0 and HTTP/1.1");
        return 0;
    }
    if (hp->http_minor >= 1 && !sb_request_header(req, "Host", NULL)) {
        sb__http_respond_text(req, 400, NULL, "an HTTP/1.1 request needs a Host header");
        return 0;
    }
    if (split_target(req)) {
        sb__http_respond_text(req, 400, NULL, "the request target is not a valid path or URL");
        return 0;
    }
    unsigned method = sb_request_method(req);
    req->head = method == SB_METHOD_HEAD;
    size_t path_len;
    const char *path = sb_request_path(req, &path_len);
    const sb__route_t *route = sb__route_match(c->srv, path, path_len);
    req->route = route;
    if (!route) {
        sb__http_respond_text(req, 404, NULL, "nothing is served at this path");
        return 0;
    }
    if (route->is_ws) {
        sb__wsconn_handshake(c, rest, rest_len);
        return c->state != SB_CONN_HTTP;
    }
    if (!(route->methods & method)) {
        char allow[128];
        allow_header(allow, sizeof allow, route->methods);
        sb__http_respond_text(req, 405, allow, "this path does not accept that method; see Allow");
        return 0;
    }
    route->handler(req, route->data);
    if (!req->responded) {
        sb__log(c->srv, SB_LOG_ERROR, "handler for %s did not answer", route->path);
        sb__http_respond_text(req, 500, NULL, "the handler gave no answer");
    }
    return 0;
}

void sb__http_read(sb_conn_t *c, uint8_t *data, size_t len)
{
    while (len && c->state == SB_CONN_HTTP && !(c->flags & SB_F_END_AFTER_FLUSH)) {
        if (!c->req && !sb__request_get(c)) {
            sb__conn_abort(c);
            return;
        }
        int result;
        size_t n = sb__http_req_feed(&c->req->http, (const char *)data, len, &result);
        data += n;
        len -= n;
        if (result == SB_HTTP_MORE)
            return;
        if (result != SB_HTTP_DONE) {
            sb__http_error(c, result, c->req->http.error_text);
            return;
        }
        if (dispatch(c, data, len))
            return; /* now a WebSocket; the handshake consumed the rest */
        sb__http_req_next(&c->req->http);
        c->req->path_len = 0;
        c->req->started = sb__now32(c->srv);
    }
}
