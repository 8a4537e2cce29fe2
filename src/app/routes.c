/* routes.c — the server's HTTP endpoints: health, embedded static files (the
 * chat at /, the dashboard at /dashboard, /switchboard.js) and the /echo
 * WebSocket endpoint. */
#include <stdio.h>
#include <string.h>

#include "app/app.h"
#include "app/assets.h"
#include "app/auth.h"

static void health(sb_request_t *req, void *data)
{
    app_t *app = data;
    char body[320];
    uint64_t up = sb_server_now(app->server) - app->started_ms;
    /* "degraded": the node cannot reach the cluster and serves only its own
     * clients; still 200, since those are served. */
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"%s\",\"version\":\"%s\",\"uptime_seconds\":%llu,"
                     "\"connections\":%zu,\"engine\":\"%s\"}\n",
                     sb_hub_engine_status(app->hub), sb_version(), (unsigned long long)(up / 1000),
                     sb_server_conn_count(app->server),
                     sb_hub_clustered(app->hub) ? "redis" : "local");
    sb_request_respond(req, 200, "application/json", "Cache-Control: no-store\r\n", body,
                       (size_t)n);
}

/* Does an If-None-Match list name this ETag (or "*")? */
static int etag_matches(const char *list, size_t len, const char *etag)
{
    size_t elen = strlen(etag);
    for (size_t i = 0; i < len;) {
        while (i < len && (list[i] == ' ' || list[i] == ','))
            i++;
        size_t j = i;
        while (j < len && list[j] != ',')
            j++;
        size_t n = j - i;
        while (n && list[i + n - 1] == ' ')
            n--;
        const char *item = list + i;
        if (n > 2 && item[0] == 'W' && item[1] == '/')
            item += 2, n -= 2;
        if ((n == 1 && item[0] == '*') || (n == elen && memcmp(item, etag, n) == 0))
            return 1;
        i = j;
    }
    return 0;
}

static void static_file(sb_request_t *req, void *data)
{
    const sb__asset_t *a = data;
    char headers[128];
    snprintf(headers, sizeof headers, "ETag: %s\r\nCache-Control: no-cache\r\n", a->etag);
    size_t len;
    const char *inm = sb_request_header(req, "If-None-Match", &len);
    if (inm && etag_matches(inm, len, a->etag)) {
        sb_request_respond(req, 304, NULL, headers, NULL, 0);
        return;
    }
    sb_request_respond(req, 200, a->content_type, headers, a->data, a->len);
}

/* Pages also answer without their extension: /index.html at /, and
 * /dashboard.html at /dashboard. */
static int route_page(app_t *app, const sb__asset_t *a)
{
    size_t n = strlen(a->path);
    if (n < 6 || strcmp(a->path + n - 5, ".html") != 0)
        return 0;
    if (strcmp(a->path, "/index.html") == 0)
        return sb_server_route(app->server, "/", SB_METHOD_GET, static_file, (void *)a);
    char path[256];
    if (n - 5 >= sizeof path)
        return 0;
    memcpy(path, a->path, n - 5);
    path[n - 5] = '\0';
    return sb_server_route(app->server, path, SB_METHOD_GET, static_file, (void *)a);
}

static void echo_message(sb_conn_t *conn, int opcode, const void *msg, size_t len, void *data)
{
    (void)data;
    sb_conn_send(conn, opcode, msg, len);
}

int app_routes(app_t *app)
{
    int r = 0;
    app->started_ms = sb_server_now(app->server);
    r = sb_server_route(app->server, "/health", SB_METHOD_GET, health, app);
    for (size_t i = 0; !r && i < sb__assets_count; i++) {
        const sb__asset_t *a = &sb__assets[i];
        r = sb_server_route(app->server, a->path, SB_METHOD_GET, static_file, (void *)a);
        if (!r)
            r = route_page(app, a);
    }
    if (!r && app->echo) {
        sb_ws_handlers_t echo = {
            .on_upgrade = auth_upgrade, /* origin, connection limits, token */
            .on_open = auth_ws_open,
            .on_message = echo_message,
            .on_close = auth_ws_close,
            .data = app,
        };
        r = sb_server_route_ws(app->server, "/echo", &echo);
    }
    if (!r)
        r = chat_routes(app);
    if (!r)
        r = api_routes(app);
    return r;
}
