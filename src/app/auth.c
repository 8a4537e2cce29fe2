/* auth.c — authentication (JWT, with libjwt), the origin check and the
 * limits of the server application (auth.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jwt.h>
#include <uthash.h>

#include "app/auth.h"
/* For what the public API does not offer an upgrade hook yet: the peer
 * address of a request, the plain-text refusal every other handshake
 * refusal uses, and the loop for the one expiry timer. */
#include "server/internal.h"

#define DEFAULT_COOKIE "token"
#define DEFAULT_WARNING_MS 60000
#define DEFAULT_STRIKES 10
#define TOKEN_MAX 8192   /* longer is malformed (a request head is 8 KiB anyway) */
#define SUB_MAX 256      /* bytes of the sub claim */
#define NAME_MAX_LEN 128 /* bytes of the name claim */
/* The expiry timer fires at most this often: expiries that fall close
 * together are handled in one walk of the list. */
#define TICK_MIN_MS 200

enum {
    F_AUTHED = 1 << 0,    /* opened with a token (authenticated mode) */
    F_BROADCAST = 1 << 1, /* the token allows `broadcast` */
    F_ROOMS = 1 << 2,     /* the token lists the rooms it may join (rooms) */
    F_NAMED = 1 << 3,     /* the token names the user (name) */
    F_JSON = 1 << 4,      /* speaks the JSON protocol (/ws): gets token_expiring */
    F_WARNED = 1 << 5,    /* token_expiring was sent for the current token */
    F_CLOSING = 1 << 6,   /* closed by this file: its messages are dropped */
};

/* Open (or accepted and about to open) connections from one address. */
typedef struct auth_ip_s {
    UT_hash_handle hh;
    uint32_t count;
    char ip[];
} auth_ip_t;

struct auth_conn_s {
    sb_conn_t *conn;
    auth_ip_t *ip;      /* the per-address count this connection holds, or NULL */
    char *rooms;        /* F_ROOMS: the names, each NUL-terminated, then an empty one */
    int64_t exp_ms;     /* the token's exp as Unix ms; 0: none */
    uint64_t rate_at;   /* loop time the buckets were last filled */
    float msg_tokens;   /* messages that may be sent now */
    float byte_tokens;  /* bytes that may be sent now; may go below zero (see below) */
    uint32_t exp_index; /* 1-based position in auth_t.expiring; 0: not there */
    uint16_t strikes;   /* rate_limited errors since the buckets were last full */
    uint8_t flags;
};

/* The budget: one 64-byte allocator chunk per connection that needs it. */
_Static_assert(sizeof(auth_conn_t) <= 56, "auth_conn_t outgrew its 56 bytes");

/* The counters of /metrics and /stats. */
enum { R_ORIGIN, R_UNAUTHORIZED, R_MAX_CONNS, R_MAX_PER_IP, R_KINDS };
static const char *const refusal_names[R_KINDS] = {"origin", "unauthorized", "max_connections",
                                                   "max_connections_per_ip"};
static const char *const request_refusal_names[AUTH_REFUSED_KINDS] = {"forbidden", "too_many_rooms",
                                                                      "room_limit"};

typedef struct auth_s {
    app_t *app;
    auth_ip_t *ips; /* uthash head */

    /* The state of the upgrade accepted last, until its connection opens.
     * Upgrade and open happen in one call, so there is at most one; one left
     * over (the 101 could not be queued) is released by the next upgrade. */
    auth_conn_t *pending;
    char *pending_sub, *pending_name;

    /* Connections whose token expires, walked by one timer (never a timer
     * per connection); the timer is armed for the earliest event. */
    auth_conn_t **expiring;
    uint32_t nexpiring, expiring_cap;
    uv_timer_t timer;
    int64_t armed_at; /* Unix ms the timer fires at; 0: not armed */
    int64_t last_tick;

    uint64_t refused[R_KINDS];
    uint64_t requests_refused[AUTH_REFUSED_KINDS];
    uint64_t rate_limited, rate_closes, expired_closes, refreshes, refresh_failures;
} auth_t;

/* ---- settings with their defaults --------------------------------------- */

static const char *cookie_name(const app_security_t *sec)
{
    return sec->jwt_cookie && *sec->jwt_cookie ? sec->jwt_cookie : DEFAULT_COOKIE;
}

static int64_t warning_ms(const app_security_t *sec)
{
    return sec->token_warning_ms ? (int64_t)sec->token_warning_ms : DEFAULT_WARNING_MS;
}

static double burst(const app_security_t *sec)
{
    double b = sec->rate_burst > 0 ? sec->rate_burst : 2 * sec->rate_messages;
    return b < 1 ? 1 : b;
}

/* The byte bucket holds two seconds' worth. */
static double byte_capacity(const app_security_t *sec)
{
    return 2 * sec->rate_bytes;
}

static unsigned strikes_max(const app_security_t *sec)
{
    return sec->rate_strikes ? sec->rate_strikes : DEFAULT_STRIKES;
}

static int rate_on(const app_security_t *sec)
{
    return sec->rate_messages > 0 || sec->rate_bytes > 0;
}

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

size_t auth_room_name_max(const app_t *app)
{
    size_t n = app->sec.max_room_name;
    return n && n < AUTH_ROOM_NAME_MAX ? n : AUTH_ROOM_NAME_MAX;
}

/* ---- sending -------------------------------------------------------------- */

static void send_obj(sb_conn_t *conn, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (s)
        sb_conn_send(conn, SB_OP_TEXT, s, strlen(s));
    free(s);
}

static json_t *stamp_json(int64_t unix_ms)
{
    char ts[32];
    chat_timestamp(unix_ms, ts);
    return json_string(ts);
}

/* ---- JWT ------------------------------------------------------------------ */

/* Decodes unpadded base64url (RFC 7515 2). Returns a NUL-terminated copy, or
 * NULL when s is not base64url or out of memory. */
static char *b64url_decode(const char *s, size_t n)
{
    if (n % 4 == 1)
        return NULL;
    char *out = malloc(n * 3 / 4 + 1);
    if (!out)
        return NULL;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '-'             ? 62
                : c == '_'             ? 63
                                       : -1;
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    return out;
}

/* The JSON object in a base64url segment, or NULL. */
static json_t *segment_json(const char *s, size_t n)
{
    char *text = b64url_decode(s, n);
    if (!text)
        return NULL;
    json_t *obj = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    free(text);
    if (obj && !json_is_object(obj)) {
        json_decref(obj);
        obj = NULL;
    }
    return obj;
}

static int claim_is_time(json_t *v)
{
    return !v || json_is_number(v);
}

/* Checks a token against the settings. Returns its claims (the caller owns
 * them), or NULL with *why set to a reason for the client. */
static json_t *token_verify(const app_security_t *sec, const char *token, size_t len,
                            const char **why)
{
    const char *dot1 = len ? memchr(token, '.', len) : NULL;
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (len > TOKEN_MAX || !dot1 || !dot2 || dot1 == token || dot2 == dot1 + 1 ||
        memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) || memchr(token, '\0', len)) {
        *why = "the token is malformed: a JWT is three base64url parts separated by dots";
        return NULL;
    }
    json_t *head = segment_json(token, (size_t)(dot1 - token));
    json_t *claims = segment_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    const char *alg = head ? json_string_value(json_object_get(head, "alg")) : NULL;
    if (!head || !claims || !alg) {
        *why = "the token is malformed: its header or claims are not base64url JSON objects";
        goto fail;
    }
    /* The algorithm picks the key, and only the key configured for it:
     * never the public key as an HMAC secret (algorithm confusion), and
     * never no key at all (libjwt then skips the signature). */
    const char *key = NULL;
    jwt_alg_t want = JWT_ALG_INVAL;
    if (strcmp(alg, "HS256") == 0) {
        key = nonempty(sec->jwt_secret);
        want = JWT_ALG_HS256;
    } else if (strcmp(alg, "RS256") == 0) {
        key = nonempty(sec->jwt_public_key);
        want = JWT_ALG_RS256;
    } else if (strcasecmp(alg, "none") == 0) {
        *why = "unsigned tokens (alg none) are not accepted";
        goto fail;
    }
    if (!key) {
        *why = nonempty(sec->jwt_secret) && nonempty(sec->jwt_public_key)
                   ? "the token's algorithm is not accepted: use HS256 or RS256"
               : nonempty(sec->jwt_secret) ? "the token's algorithm is not accepted: use HS256"
               : nonempty(sec->jwt_public_key)
                   ? "the token's algorithm is not accepted: use RS256"
                   : "the server has no key to check tokens with (set jwt_secret or "
                     "jwt_public_key)";
        goto fail;
    }
    char *copy = strndup(token, len); /* libjwt wants a C string */
    jwt_t *jwt = NULL;
    int r = copy ? jwt_decode(&jwt, copy, (const unsigned char *)key, (int)strlen(key)) : -1;
    int ok = r == 0 && jwt && jwt_get_alg(jwt) == want;
    jwt_free(jwt);
    free(copy);
    if (!ok) {
        *why = "the token's signature does not verify";
        goto fail;
    }
    /* The claims read below are the bytes libjwt just verified. */
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    json_t *sub = json_object_get(claims, "sub"), *name = json_object_get(claims, "name");
    json_t *rooms = json_object_get(claims, "rooms"), *bc = json_object_get(claims, "broadcast");
    double now = (double)chat_now_ms() / 1000.0;
    if (!claim_is_time(exp) || !claim_is_time(nbf)) {
        *why = "the token's exp and nbf must be numbers (seconds since 1970)";
        goto fail;
    }
    if (exp && now >= json_number_value(exp)) {
        *why = "the token has expired";
        goto fail;
    }
    if (nbf && now < json_number_value(nbf)) {
        *why = "the token is not valid yet (nbf is in the future)";
        goto fail;
    }
    if (nonempty(sec->jwt_issuer)) {
        const char *iss = json_string_value(json_object_get(claims, "iss"));
        if (!iss || strcmp(iss, sec->jwt_issuer) != 0) {
            *why = "the token's issuer (iss) is not the one this server trusts";
            goto fail;
        }
    }
    if (nonempty(sec->jwt_audience)) {
        json_t *aud = json_object_get(claims, "aud");
        int found = json_is_string(aud) && strcmp(json_string_value(aud), sec->jwt_audience) == 0;
        size_t i;
        json_t *v;
        json_array_foreach(aud, i, v) /* nothing when aud is not a list */
        {
            found |= json_is_string(v) && strcmp(json_string_value(v), sec->jwt_audience) == 0;
        }
        if (!found) {
            *why = "the token's audience (aud) does not name this server";
            goto fail;
        }
    }
    if (!json_is_string(sub) || !json_string_length(sub) || json_string_length(sub) > SUB_MAX) {
        *why = "the token needs a sub (the user id): a string of 1 to 256 bytes";
        goto fail;
    }
    if (name && (!json_is_string(name) || !json_string_length(name) ||
                 json_string_length(name) > NAME_MAX_LEN)) {
        *why = "the token's name must be a string of 1 to 128 bytes";
        goto fail;
    }
    int rooms_ok = !rooms || json_is_array(rooms);
    size_t i;
    json_t *v;
    json_array_foreach(rooms, i, v)
    {
        rooms_ok &= json_is_string(v);
    }
    if (!rooms_ok) {
        *why = "the token's rooms must be a list of room names";
        goto fail;
    }
    if (bc && !json_is_boolean(bc)) {
        *why = "the token's broadcast must be true or false";
        goto fail;
    }
    json_decref(head);
    return claims;

fail:
    json_decref(head);
    json_decref(claims);
    return NULL;
}

/* Sets what a verified token grants on s: its expiry and permissions (and,
 * for the token a connection opens with, whether it names the user: a
 * refresh keeps the name). Returns 0, or -1 when out of memory (s
 * unchanged). */
static int claims_apply(auth_conn_t *s, json_t *claims, int opening)
{
    json_t *rooms = json_object_get(claims, "rooms");
    char *list = NULL;
    if (rooms) {
        size_t total = 1, i;
        json_t *v;
        json_array_foreach(rooms, i, v)
        {
            total += json_string_length(v) + 1;
        }
        if (!(list = malloc(total)))
            return -1;
        char *p = list;
        json_array_foreach(rooms, i, v)
        {
            /* A name with a NUL inside could never match a room; skip it
             * rather than let it end the list early. */
            size_t n = json_string_length(v);
            if (memchr(json_string_value(v), '\0', n))
                continue;
            memcpy(p, json_string_value(v), n + 1);
            p += n + 1;
        }
        *p = '\0';
    }
    free(s->rooms);
    s->rooms = list;
    json_t *exp = json_object_get(claims, "exp");
    double e = exp ? json_number_value(exp) * 1000.0 : 0; /* positive: a cast truncates */
    s->exp_ms = e >= 1 ? (e < 9e15 ? (int64_t)e : (int64_t)9e15) : 0;
    s->flags &= (uint8_t) ~(F_BROADCAST | F_ROOMS | F_WARNED);
    s->flags |= F_AUTHED;
    if (json_is_true(json_object_get(claims, "broadcast")))
        s->flags |= F_BROADCAST;
    if (rooms)
        s->flags |= F_ROOMS;
    if (opening && json_object_get(claims, "name"))
        s->flags |= F_NAMED;
    return 0;
}

/* ---- where a token comes from --------------------------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* The token of a request: "Authorization: Bearer T", else "?token=T", else
 * the cookie. NULL when there is none. */
static const char *request_token(const app_security_t *sec, sb_request_t *req, size_t *len)
{
    size_t n;
    const char *v = sb_request_header(req, "Authorization", &n);
    if (v && n > 7 && strncasecmp(v, "Bearer ", 7) == 0) {
        v += 7, n -= 7;
        while (n && is_space(*v))
            v++, n--;
        while (n && is_space(v[n - 1]))
            n--;
        if (n) {
            *len = n;
            return v;
        }
    }
    v = sb_request_query(req, &n);
    for (size_t i = 0; v && i < n;) {
        size_t j = i;
        while (j < n && v[j] != '&')
            j++;
        if (j - i > 6 && memcmp(v + i, "token=", 6) == 0) {
            *len = j - i - 6;
            return v + i + 6;
        }
        i = j + 1;
    }
    const char *name = cookie_name(sec);
    size_t name_len = strlen(name);
    v = sb_request_header(req, "Cookie", &n);
    for (size_t i = 0; v && i < n;) {
        while (i < n && (is_space(v[i]) || v[i] == ';'))
            i++;
        size_t j = i;
        while (j < n && v[j] != ';')
            j++;
        if (j - i > name_len + 1 && memcmp(v + i, name, name_len) == 0 && v[i + name_len] == '=') {
            size_t end = j;
            while (end > i && is_space(v[end - 1]))
                end--;
            *len = end - i - name_len - 1;
            return v + i + name_len + 1;
        }
        i = j;
    }
    return NULL;
}

/* ---- the origin check ---------------------------------------------------- */

/* Splits "host[:port]" or "[v6]:port". Returns 0 (port 0 when absent) or -1. */
static int split_host_port(const char *s, size_t n, size_t *host_len, long *port)
{
    size_t h;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return -1;
        h = (size_t)(close - s) + 1;
    } else {
        const char *colon = memchr(s, ':', n);
        h = colon ? (size_t)(colon - s) : n;
    }
    if (!h)
        return -1;
    *host_len = h;
    *port = 0;
    if (h == n)
        return 0;
    if (s[h] != ':' || n - h < 2 || n - h > 6)
        return -1;
    long p = 0;
    for (size_t i = h + 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        p = p * 10 + (s[i] - '0');
    }
    if (p < 1 || p > 65535)
        return -1;
    *port = p;
    return 0;
}

/* Is origin (scheme://host[:port]) this server, as the Host header names it?
 * Ports left out are the scheme's default. */
static int same_origin(const char *o, size_t olen, const char *host, size_t hlen)
{
    long def;
    if (olen > 7 && strncasecmp(o, "http://", 7) == 0)
        o += 7, olen -= 7, def = 80;
    else if (olen > 8 && strncasecmp(o, "https://", 8) == 0)
        o += 8, olen -= 8, def = 443;
    else
        return 0;
    while (hlen && is_space(host[hlen - 1]))
        hlen--;
    size_t oh, hh;
    long op, hp;
    if (memchr(o, '/', olen) || split_host_port(o, olen, &oh, &op) ||
        split_host_port(host, hlen, &hh, &hp))
        return 0;
    return oh == hh && strncasecmp(o, host, oh) == 0 && (op ? op : def) == (hp ? hp : def);
}

/* May a page of this Origin open a WebSocket here? No Origin (not a
 * browser), the server's own origin, and allowed_origins may. */
static int origin_allowed(const app_security_t *sec, sb_request_t *req, const char *o, size_t n)
{
    for (size_t i = 0; i < sec->nallowed_origins; i++) {
        const char *a = sec->allowed_origins[i];
        if (!a)
            continue;
        if (strcmp(a, "*") == 0 || (strlen(a) == n && strncasecmp(a, o, n) == 0))
            return 1;
    }
    size_t hlen;
    const char *host = sb_request_header(req, "Host", &hlen);
    return host && same_origin(o, n, host, hlen);
}

/* ---- per-address counts --------------------------------------------------- */

/* The address of a request's peer, without the port ("127.0.0.2", "::1").
 * Returns 0 or -1. */
static int request_ip(sb_request_t *req, char *out, size_t size)
{
    char peer[80];
    if (sb_conn_peer(req->conn, peer, sizeof peer))
        return -1;
    const char *start = peer, *end = strrchr(peer, ':');
    if (peer[0] == '[') {
        start = peer + 1;
        end = strchr(peer, ']');
    }
    if (!end || (size_t)(end - start) >= size)
        return -1;
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
    return 0;
}

static void ip_release(auth_t *a, auth_ip_t *e)
{
    if (e && !--e->count) {
        HASH_DEL(a->ips, e);
        free(e);
    }
}

/* ---- the expiry list and its timer ----------------------------------------- */

/* When s next needs attention: the warning, then the expiry. */
static int64_t next_event(const app_t *app, const auth_conn_t *s)
{
    if ((s->flags & F_JSON) && !(s->flags & F_WARNED))
        return s->exp_ms - warning_ms(&app->sec);
    return s->exp_ms;
}

static void on_tick(uv_timer_t *t);

/* Makes sure the timer fires by `when` (Unix ms), but not sooner than
 * TICK_MIN_MS after the last walk. */
static void arm(auth_t *a, int64_t when)
{
    if (when < a->last_tick + TICK_MIN_MS)
        when = a->last_tick + TICK_MIN_MS;
    if (a->armed_at && a->armed_at <= when)
        return;
    int64_t now = chat_now_ms();
    a->armed_at = when;
    uv_timer_start(&a->timer, on_tick, when > now ? (uint64_t)(when - now) : 0, 0);
}

static void expiring_remove(auth_t *a, auth_conn_t *s)
{
    if (!s->exp_index)
        return;
    uint32_t i = s->exp_index - 1;
    auth_conn_t *last = a->expiring[--a->nexpiring];
    a->expiring[i] = last;
    last->exp_index = i + 1;
    s->exp_index = 0;
}

/* Puts s on the list (or updates its place in time). Returns 0 or -1. */
static int expiring_add(auth_t *a, auth_conn_t *s)
{
    if (!s->exp_index) {
        if (a->nexpiring == a->expiring_cap) {
            uint32_t cap = a->expiring_cap ? a->expiring_cap * 2 : 64;
            auth_conn_t **p = realloc(a->expiring, cap * sizeof *p);
            if (!p)
                return -1;
            a->expiring = p;
            a->expiring_cap = cap;
        }
        a->expiring[a->nexpiring++] = s;
        s->exp_index = a->nexpiring;
    }
    arm(a, next_event(a->app, s));
    return 0;
}

static void on_tick(uv_timer_t *t)
{
    auth_t *a = t->data;
    app_t *app = a->app;
    int64_t now = chat_now_ms(), next = INT64_MAX;
    a->armed_at = 0;
    a->last_tick = now;
    for (uint32_t i = 0; i < a->nexpiring;) {
        auth_conn_t *s = a->expiring[i];
        if (now >= s->exp_ms) {
            s->flags |= F_CLOSING;
            a->expired_closes++;
            sb_conn_close(s->conn, SB_CLOSE_POLICY,
                          "the token has expired: reconnect with a new one, or send refresh "
                          "in time");
            expiring_remove(a, s); /* the last one moved to i */
            continue;
        }
        if ((s->flags & F_JSON) && !(s->flags & F_WARNED) &&
            now >= s->exp_ms - warning_ms(&app->sec)) {
            s->flags |= F_WARNED;
            send_obj(s->conn, json_pack("{s:s, s:o, s:o}", "type", "token_expiring", "expires_at",
                                        stamp_json(s->exp_ms), "timestamp", stamp_json(now)));
        }
        int64_t e = next_event(app, s);
        if (e < next)
            next = e;
        i++;
    }
    if (a->nexpiring)
        arm(a, next);
}

/* ---- setup ---------------------------------------------------------------- */

int auth_init(app_t *app)
{
    auth_t *a = calloc(1, sizeof *a);
    if (!a)
        return SB_ENOMEM;
    a->app = app;
    uv_timer_init(sb__server_loop(app->server), &a->timer);
    a->timer.data = a;
    uv_unref((uv_handle_t *)&a->timer); /* the expiry timer alone keeps no loop alive */
    app->auth = a;
    return 0;
}

static void pending_release(auth_t *a)
{
    if (a->pending) {
        ip_release(a, a->pending->ip);
        free(a->pending->rooms);
        free(a->pending);
        a->pending = NULL;
    }
    free(a->pending_sub);
    free(a->pending_name);
    a->pending_sub = a->pending_name = NULL;
}

void auth_free(app_t *app)
{
    auth_t *a = app->auth;
    if (!a)
        return;
    uv_close((uv_handle_t *)&a->timer, NULL);
    uv_run(sb__server_loop(app->server), UV_RUN_NOWAIT);
    pending_release(a);
    /* Every connection has closed (and left the list) before the server
     * stopped; what remains here would be a bug, but is not leaked. */
    auth_ip_t *e, *tmp;
    HASH_ITER(hh, a->ips, e, tmp)
    {
        HASH_DEL(a->ips, e);
        free(e);
    }
    free(a->expiring);
    free(a);
    app->auth = NULL;
}

/* ---- the upgrade ---------------------------------------------------------- */

/* Answers a refused upgrade (kind < 0: not counted). */
static int refuse(auth_t *a, sb_request_t *req, int kind, int status, const char *headers,
                  const char *text)
{
    if (kind >= 0)
        a->refused[kind]++;
    sb__log(sb_request_server(req), SB_LOG_DEBUG, "%s: WebSocket refused with %d: %s",
            sb_conn_id(req->conn), status, text);
    sb__http_respond_text(req, status, headers, text);
    return status;
}

/* The state of an accepted upgrade, as a->pending (so that pending_release
 * frees it and everything it holds). NULL when out of memory. */
static auth_conn_t *pending_new(auth_t *a, json_t *claims)
{
    auth_conn_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    a->pending = s;
    if (claims) {
        const char *sub = json_string_value(json_object_get(claims, "sub"));
        const char *name = json_string_value(json_object_get(claims, "name"));
        if (claims_apply(s, claims, 1) || !(a->pending_sub = strdup(sub)) ||
            (name && !(a->pending_name = strdup(name)))) {
            pending_release(a);
            return NULL;
        }
    }
    return s;
}

int auth_upgrade(sb_request_t *req, void *data)
{
    app_t *app = data;
    auth_t *a = app->auth;
    const app_security_t *sec = &app->sec;
    char text[200];
    if (!a)
        return 0;
    pending_release(a);

    size_t olen;
    const char *origin = sb_request_header(req, "Origin", &olen);
    if (origin && !origin_allowed(sec, req, origin, olen)) {
        snprintf(text, sizeof text,
                 "pages from %.*s%s may not open WebSockets here: only this server's own pages "
                 "and allowed_origins may",
                 (int)(olen > 80 ? 80 : olen), origin, olen > 80 ? "..." : "");
        return refuse(a, req, R_ORIGIN, 403, NULL, text);
    }
    if (sec->max_connections) {
        sb_metrics_t m;
        sb_server_metrics(app->server, &m);
        if (m.connections >= sec->max_connections)
            return refuse(a, req, R_MAX_CONNS, 503, NULL,
                          "the server has as many WebSocket connections as it allows "
                          "(max_connections); try again later");
    }
    char ip[64];
    auth_ip_t *e = NULL;
    if (sec->max_connections_per_ip) {
        if (request_ip(req, ip, sizeof ip))
            return refuse(a, req, -1, 503, NULL,
                          "the connection's address could not be read; try again");
        HASH_FIND_STR(a->ips, ip, e);
        if (e && e->count >= sec->max_connections_per_ip) {
            snprintf(text, sizeof text,
                     "this address already has %u WebSocket connections, the most the server "
                     "allows (max_connections_per_ip); close one first",
                     e->count);
            return refuse(a, req, R_MAX_PER_IP, 429, NULL, text);
        }
    }
    json_t *claims = NULL;
    if (sec->auth_required) {
        size_t len;
        const char *token = request_token(sec, req, &len);
        const char *why = text;
        if (token)
            claims = token_verify(sec, token, len, &why);
        else
            snprintf(text, sizeof text,
                     "a token is required: send a JWT as ?token=, as Authorization: Bearer, "
                     "or in the cookie %.40s",
                     cookie_name(sec));
        if (!claims)
            return refuse(a, req, R_UNAUTHORIZED, 401,
                          "WWW-Authenticate: Bearer realm=\"switchboard\"\r\n", why);
    }
    if (!sec->auth_required && !sec->max_connections_per_ip && !rate_on(sec))
        return 0; /* nothing to keep for this connection */

    auth_conn_t *s = pending_new(a, claims);
    json_decref(claims);
    if (s && sec->max_connections_per_ip && !e) {
        size_t n = strlen(ip) + 1;
        if ((e = calloc(1, sizeof *e + n))) {
            memcpy(e->ip, ip, n);
            HASH_ADD_KEYPTR(hh, a->ips, e->ip, n - 1, e);
        }
    }
    if (!s || (sec->max_connections_per_ip && !e)) {
        pending_release(a);
        return refuse(a, req, -1, 503, NULL, "the server is out of memory; try again later");
    }
    if (e) {
        e->count++; /* counted from here: the open follows in this same call */
        s->ip = e;
    }
    return 0;
}

/* ---- open connections ------------------------------------------------------ */

auth_conn_t *auth_open(app_t *app, sb_conn_t *conn)
{
    auth_t *a = app->auth;
    auth_conn_t *s = a ? a->pending : NULL;
    if (!s)
        return NULL;
    a->pending = NULL;
    s->conn = conn;
    s->rate_at = sb_server_now(app->server);
    s->msg_tokens = (float)burst(&app->sec);
    s->byte_tokens = (float)byte_capacity(&app->sec);
    /* On a hub connection (/ws) the token names the user. */
    if (a->pending_sub && sb_conn_user_id(conn)) {
        s->flags |= F_JSON;
        if (sb_hub_identify(app->hub, conn, a->pending_sub, a->pending_name))
            sb_conn_close(conn, SB_CLOSE_INTERNAL, "server out of memory");
    }
    free(a->pending_sub);
    free(a->pending_name);
    a->pending_sub = a->pending_name = NULL;
    if (s->exp_ms && expiring_add(a, s)) {
        s->flags |= F_CLOSING;
        sb_conn_close(conn, SB_CLOSE_INTERNAL, "server out of memory");
    }
    return s;
}

void auth_close(app_t *app, auth_conn_t *s)
{
    auth_t *a = app->auth;
    if (!s || !a)
        return;
    ip_release(a, s->ip);
    expiring_remove(a, s);
    free(s->rooms);
    free(s);
}

void auth_ws_open(sb_conn_t *conn, void *data)
{
    sb_conn_set_data(conn, auth_open(data, conn));
}

void auth_ws_close(sb_conn_t *conn, int code, const char *reason, size_t len, void *data)
{
    (void)code;
    (void)reason;
    (void)len;
    auth_close(data, sb_conn_get_data(conn));
    sb_conn_set_data(conn, NULL);
}

/* ---- messages -------------------------------------------------------------- */

/* Two token buckets, refilled by the time since the last message: one of
 * messages (burst deep), one of bytes (two seconds deep). A message needs a
 * whole message token and a byte bucket above zero; it then takes its
 * length, so one message larger than the bucket still passes on a full
 * bucket and the debt is paid by waiting. */
int auth_message_allowed(app_t *app, sb_conn_t *conn, auth_conn_t *s, size_t len)
{
    if (!s)
        return 1;
    if (s->flags & F_CLOSING)
        return 0;
    const app_security_t *sec = &app->sec;
    if (!rate_on(sec))
        return 1;
    uint64_t now = sb_server_now(app->server);
    double dt = (double)(now - s->rate_at) / 1000.0;
    s->rate_at = now;
    int full = 1, ok = 1;
    if (sec->rate_messages > 0) {
        double cap = burst(sec), v = s->msg_tokens + dt * sec->rate_messages;
        s->msg_tokens = (float)(v < cap ? v : cap);
        full &= v >= cap;
        ok &= s->msg_tokens >= 1;
    }
    if (sec->rate_bytes > 0) {
        double cap = byte_capacity(sec), v = s->byte_tokens + dt * sec->rate_bytes;
        s->byte_tokens = (float)(v < cap ? v : cap);
        full &= v >= cap;
        ok &= s->byte_tokens > 0;
    }
    /* A client that kept quiet until its buckets filled starts over. */
    if (full)
        s->strikes = 0;
    if (ok) {
        if (sec->rate_messages > 0)
            s->msg_tokens -= 1;
        if (sec->rate_bytes > 0)
            s->byte_tokens -= (float)len;
        return 1;
    }
    auth_t *a = app->auth;
    a->rate_limited++;
    char text[200];
    snprintf(text, sizeof text,
             "this message was dropped: you are sending faster than the server allows "
             "(rate_limited %u of %u before the connection is closed); slow down",
             (unsigned)s->strikes + 1, strikes_max(sec));
    chat_send_error(conn, "rate_limited", text);
    if (++s->strikes >= strikes_max(sec)) {
        s->flags |= F_CLOSING;
        a->rate_closes++;
        sb_conn_close(conn, SB_CLOSE_POLICY,
                      "rate limit exceeded: the connection kept sending too fast");
    }
    return 0;
}

int auth_may_join(const auth_conn_t *s, const char *room)
{
    if (!s || !(s->flags & F_ROOMS))
        return 1;
    for (const char *p = s->rooms; *p; p += strlen(p) + 1)
        if (strcmp(p, room) == 0)
            return 1;
    return 0;
}

int auth_may_broadcast(const auth_conn_t *s)
{
    return !s || !(s->flags & F_AUTHED) || (s->flags & F_BROADCAST);
}

int auth_name_fixed(const auth_conn_t *s)
{
    return s && (s->flags & F_NAMED);
}

void auth_count_refusal(app_t *app, auth_refusal_t why)
{
    if (app->auth && why < AUTH_REFUSED_KINDS)
        app->auth->requests_refused[why]++;
}

void auth_refresh(app_t *app, sb_conn_t *conn, auth_conn_t *s, json_t *msg)
{
    auth_t *a = app->auth;
    if (!a || !s || !(s->flags & F_AUTHED)) {
        chat_send_error(conn, "not_authenticated",
                        "this connection was opened without a token: there is none to refresh");
        return;
    }
    json_t *token = json_object_get(msg, "token");
    if (!json_is_string(token)) {
        chat_send_error(conn, "invalid_field", "refresh needs token: the new JWT as a string");
        return;
    }
    const char *why = NULL;
    json_t *claims =
        token_verify(&app->sec, json_string_value(token), json_string_length(token), &why);
    const char *sub = claims ? json_string_value(json_object_get(claims, "sub")) : NULL;
    const char *uid = sb_conn_user_id(conn);
    if (claims && (!uid || strcmp(sub, uid) != 0))
        why = "the new token is for another user (sub): a connection keeps its user";
    if (!why && claims_apply(s, claims, 0))
        why = "the server is out of memory; try again";
    json_decref(claims);
    if (why) {
        a->refresh_failures++;
        char text[200];
        snprintf(text, sizeof text, "the token was not refreshed: %s", why);
        chat_send_error(conn, "invalid_token", text);
        return;
    }
    a->refreshes++;
    if (!s->exp_ms)
        expiring_remove(a, s);
    else if (expiring_add(a, s)) {
        s->flags |= F_CLOSING;
        sb_conn_close(conn, SB_CLOSE_INTERNAL, "server out of memory");
        return;
    }
    json_t *reply = json_pack("{s:s, s:s, s:o}", "type", "token_refreshed", "user_id", uid,
                              "timestamp", stamp_json(chat_now_ms()));
    if (reply)
        json_object_set_new(reply, "expires_at", s->exp_ms ? stamp_json(s->exp_ms) : json_null());
    send_obj(conn, reply);
}

/* ---- counters ---------------------------------------------------------------- */

size_t auth_metrics(const app_t *app, char *buf, size_t size)
{
    static const auth_t none;
    const auth_t *a = app->auth ? app->auth : &none;
    size_t n = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w = snprintf(buf + n, size - n, __VA_ARGS__);                                          \
        n = w < 0 ? n : n + (size_t)w < size ? n + (size_t)w : size - 1;                           \
    } while (0)
    if (!size)
        return 0;
    buf[0] = '\0';
    PUT("# HELP switchboard_upgrades_refused_total WebSocket upgrades refused before the "
        "handshake, by reason.\n"
        "# TYPE switchboard_upgrades_refused_total counter\n");
    for (int i = 0; i < R_KINDS; i++)
        PUT("switchboard_upgrades_refused_total{reason=\"%s\"} %llu\n", refusal_names[i],
            (unsigned long long)a->refused[i]);
    PUT("# HELP switchboard_requests_refused_total Protocol requests refused by a token's "
        "permissions or a room limit, by reason.\n"
        "# TYPE switchboard_requests_refused_total counter\n");
    for (int i = 0; i < AUTH_REFUSED_KINDS; i++)
        PUT("switchboard_requests_refused_total{reason=\"%s\"} %llu\n", request_refusal_names[i],
            (unsigned long long)a->requests_refused[i]);
    PUT("# HELP switchboard_rate_limited_total Messages dropped by the per-connection rate "
        "limit.\n"
        "# TYPE switchboard_rate_limited_total counter\n"
        "switchboard_rate_limited_total %llu\n"
        "# HELP switchboard_rate_limit_closes_total Connections closed (1008) for staying over "
        "the rate limit.\n"
        "# TYPE switchboard_rate_limit_closes_total counter\n"
        "switchboard_rate_limit_closes_total %llu\n"
        "# HELP switchboard_token_expired_closes_total Connections closed (1008) because their "
        "token expired.\n"
        "# TYPE switchboard_token_expired_closes_total counter\n"
        "switchboard_token_expired_closes_total %llu\n"
        "# HELP switchboard_token_refreshes_total Tokens replaced by a refresh, by result.\n"
        "# TYPE switchboard_token_refreshes_total counter\n"
        "switchboard_token_refreshes_total{result=\"ok\"} %llu\n"
        "switchboard_token_refreshes_total{result=\"refused\"} %llu\n",
        (unsigned long long)a->rate_limited, (unsigned long long)a->rate_closes,
        (unsigned long long)a->expired_closes, (unsigned long long)a->refreshes,
        (unsigned long long)a->refresh_failures);
#undef PUT
    return n;
}

void auth_stats(const app_t *app, json_t *obj)
{
    static const auth_t none;
    const auth_t *a = app->auth ? app->auth : &none;
    char key[64];
    for (int i = 0; i < R_KINDS; i++) {
        snprintf(key, sizeof key, "upgrades_refused_%s", refusal_names[i]);
        json_object_set_new(obj, key, json_integer((json_int_t)a->refused[i]));
    }
    for (int i = 0; i < AUTH_REFUSED_KINDS; i++) {
        snprintf(key, sizeof key, "requests_refused_%s", request_refusal_names[i]);
        json_object_set_new(obj, key, json_integer((json_int_t)a->requests_refused[i]));
    }
    json_object_set_new(obj, "rate_limited", json_integer((json_int_t)a->rate_limited));
    json_object_set_new(obj, "rate_limit_closes", json_integer((json_int_t)a->rate_closes));
    json_object_set_new(obj, "token_expired_closes", json_integer((json_int_t)a->expired_closes));
    json_object_set_new(obj, "token_refreshes", json_integer((json_int_t)a->refreshes));
    json_object_set_new(obj, "token_refreshes_refused",
                        json_integer((json_int_t)a->refresh_failures));
}
