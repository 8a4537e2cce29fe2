/* auth.h — authentication (JWT), the origin check and the limits of the
 * server application: what is checked before a WebSocket upgrade, what a
 * connection may do once open, and the counters of what was refused
 * (docs/protocol.md, docs/api.md, docs/configuration.md).
 *
 * The settings are app->sec (app_security_t), read at each use, so a
 * reload (SIGHUP) applies to the next upgrade or message. Limits that need
 * per-connection state (the per-address count, the rate limits, a token's
 * claims) apply to connections opened while they are on. */
#ifndef SB_APP_AUTH_H
#define SB_APP_AUTH_H

#include <stddef.h>

#include <jansson.h>

#include "app/app.h"

/* The room name limit no setting can raise: the hub's (sb_hub_room_create). */
#define AUTH_ROOM_NAME_MAX 64

/* What one WebSocket connection keeps for these features (about 64 bytes).
 * It exists only when one of them needs it: authenticated mode, a per-address
 * connection limit or a rate limit. NULL otherwise, and every function below
 * takes NULL as "no restriction". */
typedef struct auth_conn_s auth_conn_t;

/* Why a protocol request was refused (auth_count_refusal). */
typedef enum {
    AUTH_REFUSED_FORBIDDEN = 0, /* the token does not allow it */
    AUTH_REFUSED_TOO_MANY_ROOMS,
    AUTH_REFUSED_ROOM_LIMIT,
    AUTH_REFUSED_KINDS
} auth_refusal_t;

/* Creates app->auth (the address table, the expiry timer, the counters).
 * Call once the server exists, before it runs. Returns 0 or SB_ENOMEM. */
int auth_init(app_t *app);
/* Frees app->auth; call after the server stopped, before sb_server_free.
 * NULL-safe (app->auth may be NULL). */
void auth_free(app_t *app);

/* The on_upgrade of every WebSocket route (data: the app_t): the origin
 * check (403), max_connections (503), max_connections_per_ip (429) and, in
 * authenticated mode, the token (401). A refusal is answered here, in plain
 * text that says why. An accepted upgrade leaves its state for the
 * auth_open of the connection it becomes. */
int auth_upgrade(sb_request_t *req, void *data);

/* Takes the state auth_upgrade made for the connection now opening (NULL
 * when nothing needs one). A connection registered with the hub is
 * identified as the token's user (sub, name). The caller keeps the result
 * (in the connection's user data slot) and hands it to auth_close. */
auth_conn_t *auth_open(app_t *app, sb_conn_t *conn);
/* Releases what a connection held (its per-address count, its place in the
 * expiry list). NULL-safe. */
void auth_close(app_t *app, auth_conn_t *s);

/* on_open and on_close of a route with nothing else in the user data slot
 * (/echo; data: the app_t). */
void auth_ws_open(sb_conn_t *conn, void *data);
void auth_ws_close(sb_conn_t *conn, int code, const char *reason, size_t len, void *data);

/* May a message of len bytes be handled? 1: yes (its cost is taken from
 * the rate buckets). 0: it is dropped — the connection is closing, or it is
 * over the rate limit and was told so with an `error` rate_limited (or,
 * after rate_strikes of those, closed with 1008). */
int auth_message_allowed(app_t *app, sb_conn_t *conn, auth_conn_t *s, size_t len);

/* The token's permissions: may the connection join (or read) this room,
 * and send the protocol's `broadcast`? */
int auth_may_join(const auth_conn_t *s, const char *room);
int auth_may_broadcast(const auth_conn_t *s);
/* Does the display name come from the token (so `join` does not change it)? */
int auth_name_fixed(const auth_conn_t *s);
/* The longest room name the settings allow (max_room_name, default and at
 * most AUTH_ROOM_NAME_MAX). */
size_t auth_room_name_max(const app_t *app);

/* Handles the protocol's {"type":"refresh","token":"..."}: answers
 * token_refreshed, or an `error` (the connection keeps its old token). */
void auth_refresh(app_t *app, sb_conn_t *conn, auth_conn_t *s, json_t *msg);

/* Counts a protocol request refused by a permission or limit. */
void auth_count_refusal(app_t *app, auth_refusal_t why);

/* Appends the counters as Prometheus text to buf (size bytes, NUL-terminated).
 * Returns the bytes written (at most size - 1). */
size_t auth_metrics(const app_t *app, char *buf, size_t size);
/* Adds the counters to a /stats object. */
void auth_stats(const app_t *app, json_t *obj);

#endif /* SB_APP_AUTH_H */
