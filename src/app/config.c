/* config.c — the settings table, and reading it from YAML (libyaml's event
 * parser), the environment and flags. Every value goes through one text
 * parser per type, whatever its source, so a key means the same thing and
 * fails with the same words everywhere; only the "where" of the message
 * differs ("file.yaml:3: port", "SWITCHBOARD_PORT", "--port"). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "app/config.h"

#define ENV_PREFIX "SWITCHBOARD_"
#define MAX_FILE_SIZE (1024 * 1024)
#define MAX_LIST_ITEMS 10000
#define MAX_STRING (64 * 1024) /* bytes of a text value or list item */
#define MAX_ERRORS 50
#define NO_MAX 1e15 /* a range without a useful upper end */

/* ---- checks of single values -------------------------------------------- */

static const char *check_room(const char *name)
{
    return chat_room_name_valid(name)
               ? NULL
               : "room names of 1 to 64 letters, digits, '_', '-', '.' or ':'";
}

/* An origin as browsers send it: scheme://host[:port], no path; or "*". */
static const char *check_origin(const char *o)
{
    static const char *const want =
        "origins like https://chat.example.com or http://localhost:3000 (scheme, host and "
        "optional port, no path), or *";
    if (strcmp(o, "*") == 0)
        return NULL;
    const char *p = strncmp(o, "http://", 7) == 0    ? o + 7
                    : strncmp(o, "https://", 8) == 0 ? o + 8
                                                     : NULL;
    if (!p)
        return want;
    const char *host = p;
    if (*p == '[') { /* [v6] */
        p++;
        while (isxdigit((unsigned char)*p) || *p == ':' || *p == '.')
            p++;
        if (*p != ']' || p == host + 1)
            return want;
        p++;
    } else {
        while (isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == '*')
            p++;
        if (p == host)
            return want;
    }
    if (*p == ':') {
        const char *digits = ++p;
        while (isdigit((unsigned char)*p))
            p++;
        if (p == digits || p - digits > 5)
            return want;
    }
    return *p ? want : NULL;
}

static const char *check_pem(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    return strncmp(s, "-----BEGIN ", 11) == 0
               ? NULL
               : "a PEM public key (the text from -----BEGIN PUBLIC KEY----- to -----END PUBLIC "
                 "KEY-----)";
}

/* ---- the table ----------------------------------------------------------- */

#define AT(field) .offset = offsetof(config_t, field), .width = sizeof(((config_t *)0)->field)
#define KEY(name_, group_, type_, field, def_, min_, max_, flags_, doc_)                           \
    {                                                                                              \
        .name = name_, .group = group_, .type = type_, AT(field), .def = def_, .min = min_,        \
        .max = max_, .flags = flags_, .doc = doc_                                                  \
    }
#define LIST(name_, group_, field, count, flags_, check_, doc_)                                    \
    {                                                                                              \
        .name = name_, .group = group_, .type = CONFIG_LIST, AT(field),                            \
        .count_offset = offsetof(config_t, count), .flags = flags_, .check = check_, .doc = doc_   \
    }

enum { R = CONFIG_RELOAD, S = CONFIG_SECRET, C = CONFIG_COMMON, NE = CONFIG_NONEMPTY };

/* Durations are in ms, sizes in bytes. The hub's keys are seed 003's
 * HubConfig names; the security keys are app_security_t's field names. */
const config_key_t config_keys[] = {
    /* server */
    KEY("host", "server", CONFIG_STRING, host, "127.0.0.1", 0, 0, C | NE,
        "Address to listen on: an IPv4 or IPv6 address; 0.0.0.0 or :: for every interface."),
    KEY("port", "server", CONFIG_INT, port, "8080", 0, 65535, C,
        "Port to listen on; 0 picks a free one (the listening line names it)."),
    {.name = "log_level",
     .group = "server",
     .type = CONFIG_CHOICE,
     AT(log_level),
     .def = "info",
     .flags = R | C,
     .choices = "error|warn|info|debug",
     .doc = "Least severe log lines written to stderr."},
    KEY("echo", "server", CONFIG_BOOL, echo, "true", 0, 0, C,
        "Serve the /echo WebSocket endpoint (the flag --no-echo turns it off)."),
    KEY("access_log", "server", CONFIG_BOOL, access_log, "true", 0, 0, R,
        "Log one 'access' line per HTTP request and per WebSocket session."),
    KEY("stats_interval", "server", CONFIG_DURATION, stats_interval_ms, "30s", 0, NO_MAX, R,
        "How often the 'stats' line (connections, users, rooms, messages per second) is "
        "logged; 0 turns it off."),
    KEY("shutdown_timeout", "server", CONFIG_DURATION, shutdown_timeout_ms, "5s", 0, NO_MAX, R | C,
        "On SIGTERM or SIGINT, how long connections get to close before they are cut."),
    KEY("handshake_timeout", "server", CONFIG_DURATION, handshake_timeout_ms, "10s", 1, NO_MAX, 0,
        "A new connection must send its complete HTTP request head within this."),
    KEY("idle_timeout", "server", CONFIG_DURATION, idle_timeout_ms, "60s", 1, NO_MAX, 0,
        "A keep-alive HTTP connection idle this long is closed."),
    KEY("close_timeout", "server", CONFIG_DURATION, close_timeout_ms, "5s", 1, NO_MAX, 0,
        "How long a peer gets to answer a WebSocket close before TCP is closed."),
    KEY("max_head_size", "server", CONFIG_SIZE, max_head_size, "8k", 1024, 1024 * 1024, 0,
        "Largest HTTP request head (431 past it)."),
    KEY("max_body_size", "server", CONFIG_SIZE, max_body_size, "1m", 1, 1024.0 * 1024 * 1024, 0,
        "Largest HTTP request body (413 past it)."),
    KEY("max_queued_bytes", "server", CONFIG_SIZE, max_queued_bytes, "4m", 1024, 1099511627776.0, 0,
        "Outbound bytes queued for one connection before it counts as a slow consumer and "
        "is closed with 1008."),
    {.name = "slow_consumer_policy",
     .group = "server",
     .type = CONFIG_CHOICE,
     AT(slow_consumer_drop),
     .def = "close",
     .choices = "close|drop",
     .doc = "Past max_queued_bytes: close the connection with 1008, or drop the messages that "
            "do not fit and send it a 'messages_dropped' error once it has caught up."},
    /* TLS */
    KEY("tls_cert", "server", CONFIG_STRING, tls_cert, NULL, 0, 0, NE,
        "PEM certificate chain (the server's certificate first) for https:// and wss:// on "
        "tls_port; needs tls_key. SIGHUP reads the files again (certificate renewal)."),
    KEY("tls_key", "server", CONFIG_STRING, tls_key, NULL, 0, 0, NE,
        "PEM private key (unencrypted) of tls_cert."),
    KEY("tls_port", "server", CONFIG_INT, tls_port, "8443", 0, 65535, 0,
        "Port of the TLS listener (with tls_cert and tls_key), beside the plain port; 0 picks "
        "a free one."),
    /* compression */
    KEY("compression", "server", CONFIG_BOOL, compression, "true", 0, 0, C,
        "Accept permessage-deflate (RFC 7692) when a client offers it."),
    KEY("compression_level", "server", CONFIG_INT, compression_level, "6", 0, 9, 0,
        "zlib level of what the server compresses (1 fastest, 9 smallest; 0 sends "
        "everything uncompressed)."),
    KEY("compression_min_size", "server", CONFIG_SIZE, compression_min_size, "64", 0,
        1099511627776.0, 0, "Messages shorter than this are sent uncompressed."),
    KEY("compression_context_takeover", "server", CONFIG_BOOL, compression_context_takeover,
        "false", 0, 0, 0,
        "Keep compression context between messages: better ratios, but about 300 KB of zlib "
        "state per connection and no shared compression of broadcasts."),
    /* hub: seed 003's HubConfig */
    KEY("max_message_size", "hub", CONFIG_SIZE, max_message_size, "512k", 1, 1099511627776.0, C,
        "Largest WebSocket message (all fragments together); a larger one gets close 1009."),
    KEY("ping_interval", "hub", CONFIG_DURATION, ping_interval_ms, "54s", 1, NO_MAX, C,
        "A connection that has sent nothing for this long gets a ping."),
    KEY("pong_timeout", "hub", CONFIG_DURATION, pong_timeout_ms, "60s", 1, NO_MAX, C,
        "A connection that has sent nothing (no pong, no data) for this long is closed; "
        "longer than ping_interval."),
    KEY("write_timeout", "hub", CONFIG_DURATION, write_timeout_ms, "10s", 1, NO_MAX, C,
        "A connection whose queued output makes no progress for this long is closed."),
    KEY("cleanup_interval", "hub", CONFIG_DURATION, cleanup_interval_ms, "30s", 1, NO_MAX, 0,
        "How often history retention (history_max, history_max_age) runs."),
    /* history */
    KEY("data_dir", "history", CONFIG_STRING, data_dir, "data", 0, 0, C,
        "Directory of the history database (DIR/history.db), created if missing; '' keeps "
        "history in memory only."),
    KEY("history_size", "history", CONFIG_INT, history_size, "50", 1, 100000000, R | C,
        "Messages a client gets as 'history' when it joins a room, and the default 'limit' "
        "of a history request."),
    KEY("history_max", "history", CONFIG_INT, history_max, "10000", 0, 100000000, C,
        "Messages kept per room in the database; 0 keeps all."),
    KEY("history_max_age", "history", CONFIG_DURATION, history_max_age_ms, "0", 0, NO_MAX, C,
        "Messages older than this are dropped at each cleanup; 0 keeps them forever."),
    KEY("history_cache", "history", CONFIG_INT, history_cache, "100", 1, 1000000, 0,
        "Recent messages per room kept in memory."),
    /* cluster (docs/cluster.md) */
    {.name = "engine",
     .group = "cluster",
     .type = CONFIG_CHOICE,
     AT(engine),
     .def = "local",
     .flags = C,
     .choices = "local|redis",
     .doc = "What the hub shares with other nodes: local (one node, history in SQLite) or redis "
            "(many nodes as one, through redis_url)."},
    KEY("redis_url", "cluster", CONFIG_STRING, redis_url, "redis://127.0.0.1:6379", 0, 0, NE,
        "The Redis of the redis engine: redis://HOST:PORT (a database number after / is not "
        "supported)."),
    /* chat */
    LIST("rooms", "chat", rooms, nrooms, C, check_room,
         "A fixed list of rooms; joining another gets room_not_found. Unset: rooms are "
         "created on first join."),
    KEY("max_content", "chat", CONFIG_INT, max_content, "4096", 1, 100000000, R | C,
        "Longest 'content' of a chat message in bytes; longer gets content_too_long."),
    KEY("presence_limit", "chat", CONFIG_INT, presence_limit, "1000", 0, 100000000, R | C,
        "Rooms with more members get no join, leave or presence notices; 0 announces always."),
    KEY("api_key", "chat", CONFIG_STRING, api_key, NULL, 0, 0, R | S | C | NE,
        "When set, /api/... needs 'Authorization: Bearer KEY' (401 otherwise)."),
    /* authentication and origins (app_security_t) */
    KEY("auth_required", "security", CONFIG_BOOL, sec.auth_required, "false", 0, 0, R,
        "WebSocket clients need a valid JWT (needs jwt_secret or jwt_public_key); false is "
        "anonymous mode."),
    KEY("jwt_secret", "security", CONFIG_STRING, sec.jwt_secret, NULL, 0, 0, R | S | NE,
        "HS256 key that tokens are signed with."),
    {.name = "jwt_public_key",
     .group = "security",
     .type = CONFIG_STRING,
     AT(sec.jwt_public_key),
     .flags = R | NE,
     .check = check_pem,
     .doc = "RS256 public key (PEM text) that tokens are checked against."},
    KEY("jwt_cookie", "security", CONFIG_STRING, sec.jwt_cookie, "token", 0, 0, R | NE,
        "Cookie a token may come in (besides ?token= and Authorization: Bearer)."),
    KEY("jwt_issuer", "security", CONFIG_STRING, sec.jwt_issuer, NULL, 0, 0, R | NE,
        "When set, a token's 'iss' must be this."),
    KEY("jwt_audience", "security", CONFIG_STRING, sec.jwt_audience, NULL, 0, 0, R | NE,
        "When set, a token's 'aud' must be (or contain) this."),
    KEY("token_warning", "security", CONFIG_DURATION, sec.token_warning_ms, "60s", 1, NO_MAX, R,
        "A connection gets 'token_expiring' this long before its token's 'exp'."),
    KEY("protect_stats", "security", CONFIG_BOOL, sec.protect_stats, "false", 0, 0, R,
        "/metrics, /stats and /status need the API key too."),
    LIST("allowed_origins", "security", sec.allowed_origins, sec.nallowed_origins, R, check_origin,
         "Origins allowed to open WebSockets besides the server's own (and clients that send "
         "none); * allows any."),
    /* limits */
    KEY("max_connections", "limits", CONFIG_INT, sec.max_connections, "0", 0, 1e9, R,
        "WebSocket connections in total (503 past it); 0 = no limit."),
    KEY("max_connections_per_ip", "limits", CONFIG_INT, sec.max_connections_per_ip, "0", 0, 1e9, R,
        "WebSocket connections per client IP (429 past it); 0 = no limit."),
    KEY("max_rooms_per_conn", "limits", CONFIG_INT, sec.max_rooms_per_conn, "0", 0, 1e9, R,
        "Rooms one connection may be in; 0 = no limit."),
    KEY("max_rooms", "limits", CONFIG_INT, sec.max_rooms, "0", 0, 1e9, R,
        "Rooms in total; 0 = no limit."),
    KEY("max_room_name", "limits", CONFIG_INT, sec.max_room_name, "64", 1, 64, R,
        "Longest room name in bytes."),
    KEY("rate_messages", "limits", CONFIG_NUMBER, sec.rate_messages, "0", 0, 1e9, R,
        "Messages per second per connection (token bucket); 0 = no limit."),
    KEY("rate_burst", "limits", CONFIG_NUMBER, sec.rate_burst, "0", 0, 1e9, R,
        "Bucket size in messages; 0 = twice rate_messages."),
    KEY("rate_bytes", "limits", CONFIG_NUMBER, sec.rate_bytes, "0", 0, 1e12, R,
        "Bytes per second per connection (k and m suffixes); 0 = no limit."),
    KEY("rate_strikes", "limits", CONFIG_INT, sec.rate_strikes, "10", 1, 1000000, R,
        "rate_limited errors a connection gets before it is closed with 1008."),
    /* To add TLS or compression keys: one line each here (and a field in
     * config_t); a rule between keys ("tls_cert needs tls_key") goes into
     * config_check. */
};
const size_t config_nkeys = sizeof config_keys / sizeof config_keys[0];
_Static_assert(sizeof config_keys / sizeof config_keys[0] <= CONFIG_MAX_KEYS,
               "raise CONFIG_MAX_KEYS");

/* Other names of keys: names an older version or another document uses. */
static const struct {
    const char *alias, *name;
    int bare_ms; /* a bare number is milliseconds (as the field name says) */
} aliases[] = {
    {"token_warning_ms", "token_warning", 1},
};

/* ---- errors --------------------------------------------------------------- */

static void err_add(config_errors_t *errs, const char *fmt, ...)
{
    if (!errs)
        return;
    errs->count++;
    if (errs->count > MAX_ERRORS)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = sizeof line - 2;
    if (errs->count == MAX_ERRORS)
        n = snprintf(line, sizeof line, "(more errors not shown)");
    line[n++] = '\n';
    line[n] = '\0';
    char *t = realloc(errs->text, errs->len + (size_t)n + 1);
    if (!t)
        return;
    memcpy(t + errs->len, line, (size_t)n + 1);
    errs->text = t;
    errs->len += (size_t)n;
}

void config_errors_free(config_errors_t *errs)
{
    if (!errs)
        return;
    free(errs->text);
    *errs = (config_errors_t){0};
}

/* A value quoted for an error message: printable, at most 60 bytes. */
static void show_value(const char *v, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; v[i] && o + 8 < size; i++) {
        unsigned char c = (unsigned char)v[i];
        if (i == 60) {
            o += (size_t)snprintf(out + o, size - o, "...");
            break;
        }
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
}

/* ---- describing ----------------------------------------------------------- */

static void fmt_duration(uint64_t ms, char *out, size_t size)
{
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    if (ms == 0) {
        snprintf(out, size, "0");
        return;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms % units[i].ms == 0) {
            snprintf(out, size, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    snprintf(out, size, "%llums", (unsigned long long)ms);
}

static void fmt_size(double bytes, char *out, size_t size)
{
    static const struct {
        double n;
        const char *unit;
    } units[] = {{1099511627776.0, "t"}, {1073741824.0, "g"}, {1048576.0, "m"}, {1024.0, "k"}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (bytes >= units[i].n && bytes < 9e15 && (uint64_t)bytes % (uint64_t)units[i].n == 0) {
            snprintf(out, size, "%.0f%s", bytes / units[i].n, units[i].unit);
            return;
        }
    snprintf(out, size, "%.0f", bytes);
}

/* The shortest text that reads back as exactly d. */
static void fmt_number(double d, char *out, size_t size)
{
    snprintf(out, size, "%.15g", d);
    if (strtod(out, NULL) != d)
        snprintf(out, size, "%.17g", d);
}

static void choice_list(const char *choices, char *out, size_t size)
{
    /* "a|b|c" -> "a, b or c" */
    size_t n = 0, count = 1, o = 0;
    for (const char *p = choices; *p; p++)
        count += *p == '|';
    for (const char *p = choices; *p && o + 5 < size; p++) {
        if (*p != '|') {
            out[o++] = *p;
            continue;
        }
        n++;
        o += (size_t)snprintf(out + o, size - o, n + 1 == count ? " or " : ", ");
    }
    out[o < size ? o : size - 1] = '\0';
}

void config_describe_type(const config_key_t *key, char *out, size_t size)
{
    char lo[32], hi[32];
    if (key->expect) {
        snprintf(out, size, "%s", key->expect);
        return;
    }
    switch (key->type) {
    case CONFIG_BOOL:
        snprintf(out, size, "true or false");
        break;
    case CONFIG_INT:
    case CONFIG_NUMBER:
        fmt_number(key->min, lo, sizeof lo);
        fmt_number(key->max, hi, sizeof hi);
        if (key->type == CONFIG_NUMBER)
            snprintf(out, size, "a number (like 10, 2.5 or 64k) from %s to %s", lo, hi);
        else
            snprintf(out, size, "a number from %s to %s", lo, hi);
        break;
    case CONFIG_SIZE:
        fmt_size(key->min, lo, sizeof lo);
        fmt_size(key->max, hi, sizeof hi);
        snprintf(out, size, "a size in bytes (like 65536, 512k or 16m) from %s to %s", lo, hi);
        break;
    case CONFIG_DURATION:
        if (key->min == 0)
            snprintf(out, size, "a duration like 500ms, 54s, 2m, 1h or 7d, or 0");
        else
            snprintf(out, size, "a duration like 500ms, 54s, 2m, 1h or 7d, at least 1ms");
        break;
    case CONFIG_STRING:
        if (key->check)
            snprintf(out, size, "%s", key->check(""));
        else
            snprintf(out, size, (key->flags & CONFIG_NONEMPTY) ? "a non-empty text" : "a text");
        break;
    case CONFIG_LIST:
        snprintf(out, size, "%s", key->check ? key->check("") : "a list of texts");
        break;
    case CONFIG_CHOICE:
        choice_list(key->choices, out, size);
        break;
    }
}

void config_env_name(const config_key_t *key, char *out, size_t size)
{
    size_t o = (size_t)snprintf(out, size, ENV_PREFIX);
    for (const char *p = key->name; *p && o + 1 < size; p++)
        out[o++] = (char)toupper((unsigned char)*p);
    out[o < size ? o : size - 1] = '\0';
}

static int key_index(const config_key_t *key)
{
    return (int)(key - config_keys);
}

void config_describe_source(const config_t *cfg, const config_key_t *key, char *out, size_t size)
{
    int i = key_index(key);
    char env[96];
    switch (cfg->from[i].source) {
    case CONFIG_FROM_FILE:
        snprintf(out, size, "file %s:%d", cfg->file ? cfg->file : "?", cfg->from[i].line);
        break;
    case CONFIG_FROM_ENV:
        config_env_name(key, env, sizeof env);
        snprintf(out, size, "environment %s", env);
        break;
    case CONFIG_FROM_FLAG:
        snprintf(out, size, "flag --%s", key->name);
        for (char *p = out + 7; *p; p++)
            if (*p == '_')
                *p = '-';
        break;
    default:
        snprintf(out, size, "default");
    }
}

/* ---- lookup --------------------------------------------------------------- */

const config_key_t *config_key(const char *name)
{
    for (size_t i = 0; i < config_nkeys; i++)
        if (strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

static const config_key_t *lookup(const char *name, int *bare_ms)
{
    *bare_ms = 0;
    const config_key_t *k = config_key(name);
    if (k)
        return k;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(aliases[i].alias, name) == 0) {
            *bare_ms = aliases[i].bare_ms;
            return config_key(aliases[i].name);
        }
    return NULL;
}

/* Optimal string alignment distance between a and b, or cap when it is cap
 * or more (rows are dropped as soon as every entry reaches cap). */
static size_t edit_distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return cap;
    unsigned char rows[3][64];
    unsigned char *before = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (unsigned char)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (unsigned char)i;
        size_t row_min = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t v = prev[j] + 1u;
            if (cur[j - 1] + 1u < v)
                v = cur[j - 1] + 1u;
            if (prev[j - 1] + (size_t)(a[i - 1] != b[j - 1]) < v)
                v = prev[j - 1] + (size_t)(a[i - 1] != b[j - 1]);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                before[j - 2] + 1u < v)
                v = before[j - 2] + 1u;
            cur[j] = (unsigned char)v;
            if (v < row_min)
                row_min = v;
        }
        if (row_min >= cap)
            return cap;
        unsigned char *t = before;
        before = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb] < cap ? prev[lb] : cap;
}

const config_key_t *config_suggest(const char *name)
{
    char norm[64];
    size_t n = 0;
    for (; name[n] && n + 1 < sizeof norm; n++)
        norm[n] = name[n] == '-' ? '_' : (char)tolower((unsigned char)name[n]);
    norm[n] = '\0';
    const config_key_t *best = NULL;
    size_t best_d = n < 6 ? 2 : 3; /* at most this many edits */
    for (size_t i = 0; i < config_nkeys; i++) {
        size_t kn = strlen(config_keys[i].name);
        if ((kn > n ? kn - n : n - kn) >= best_d)
            continue; /* too many insertions or deletions already */
        size_t d = edit_distance(norm, config_keys[i].name, best_d);
        if (d < best_d) {
            best_d = d;
            best = &config_keys[i];
        }
    }
    return best;
}

/* ---- parsing text into values --------------------------------------------- */

static void *field(config_t *cfg, const config_key_t *key)
{
    return (char *)cfg + key->offset;
}

static const void *cfield(const config_t *cfg, const config_key_t *key)
{
    return (const char *)cfg + key->offset;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

/* Whole number with an optional unit suffix (of units, scaling mult). */
static int parse_unsigned(const char *s, unsigned long long *v, char **end)
{
    if (!isdigit((unsigned char)*s))
        return -1; /* no sign, no space */
    errno = 0;
    *v = strtoull(s, end, 10);
    return errno ? -1 : 0;
}

static int parse_count(const char *s, double *out)
{
    unsigned long long v;
    char *end;
    if (parse_unsigned(s, &v, &end) || *end)
        return -1;
    *out = (double)v;
    return 0;
}

static int parse_size(const char *s, double *out)
{
    unsigned long long v;
    char *end;
    if (parse_unsigned(s, &v, &end))
        return -1;
    double mult = 1;
    switch (tolower((unsigned char)*end)) {
    case 'k':
        mult = 1024.0, end++;
        break;
    case 'm':
        mult = 1048576.0, end++;
        break;
    case 'g':
        mult = 1073741824.0, end++;
        break;
    case 't':
        mult = 1099511627776.0, end++;
        break;
    }
    if (*end)
        return -1;
    *out = (double)v * mult;
    return 0;
}

/* "54s", "500ms", "2m", "60" (seconds, or ms with bare_ms) -> ms. */
static int parse_duration(const char *s, int bare_ms, double *out)
{
    unsigned long long v;
    char *end;
    if (parse_unsigned(s, &v, &end))
        return -1;
    double mult;
    if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = 1000;
    else if (*end == '\0')
        mult = bare_ms ? 1 : 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else if (strcmp(end, "d") == 0)
        mult = 86400000;
    else
        return -1;
    *out = (double)v * mult;
    return 0;
}

static int parse_number(const char *s, double *out)
{
    if (!isdigit((unsigned char)*s) && !(*s == '.' && isdigit((unsigned char)s[1])))
        return -1;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || !isfinite(d))
        return -1;
    if (*end == 'k' || *end == 'K')
        d *= 1024, end++;
    else if (*end == 'm' || *end == 'M')
        d *= 1048576, end++;
    if (*end)
        return -1;
    *out = d;
    return 0;
}

static void free_list(char **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
}

/* Frees the value a key holds now (strings and lists). */
static void free_value(config_t *cfg, const config_key_t *key)
{
    if (key->type == CONFIG_STRING) {
        char **p = field(cfg, key);
        free(*p);
        *p = NULL;
    } else if (key->type == CONFIG_LIST) {
        char ***p = field(cfg, key);
        size_t *n = (size_t *)((char *)cfg + key->count_offset);
        free_list(*p, *n);
        *p = NULL;
        *n = 0;
    }
}

static void store_uint(void *dst, size_t width, double v)
{
    if (width == sizeof(uint64_t)) {
        uint64_t u = (uint64_t)v;
        memcpy(dst, &u, sizeof u);
    } else {
        uint32_t u = (uint32_t)v;
        memcpy(dst, &u, sizeof u);
    }
}

static double load_uint(const void *src, size_t width)
{
    if (width == sizeof(uint64_t)) {
        uint64_t u;
        memcpy(&u, src, sizeof u);
        return (double)u;
    }
    uint32_t u;
    memcpy(&u, src, sizeof u);
    return (double)u;
}

/* Splits comma-separated text into trimmed items. Returns 0, -1 for an
 * empty item or too many, -2 when out of memory. */
static int split_list(const char *s, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!*s)
        return 0;
    for (const char *p = s;;) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        while (p < e && isspace((unsigned char)*p))
            p++;
        const char *t = e;
        while (t > p && isspace((unsigned char)t[-1]))
            t--;
        if (t == p || *n >= MAX_LIST_ITEMS || (size_t)(t - p) > MAX_STRING)
            return -1;
        char **items = realloc(*out, (*n + 1) * sizeof *items);
        if (!items)
            return -2;
        *out = items;
        if (!(items[*n] = strndup(p, (size_t)(t - p))))
            return -2;
        ++*n;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

/* Parses text for key and stores it. On error, says why into errs with
 * where ("file.yaml:3: port") and returns -1; -2 when out of memory. */
static int set_text(config_t *cfg, const config_key_t *key, const char *text, int bare_ms,
                    const char *where, config_errors_t *errs)
{
    void *dst = field(cfg, key);
    double v = 0;
    int ok = 0;
    switch (key->type) {
    case CONFIG_BOOL: {
        int b;
        if ((ok = !parse_bool(text, &b)))
            *(int *)dst = b;
        break;
    }
    case CONFIG_INT:
    case CONFIG_SIZE:
    case CONFIG_DURATION:
    case CONFIG_NUMBER: {
        int r;
        if (key->type == CONFIG_SIZE)
            r = parse_size(text, &v);
        else if (key->type == CONFIG_DURATION)
            r = parse_duration(text, bare_ms, &v);
        else if (key->type == CONFIG_NUMBER)
            r = parse_number(text, &v);
        else
            r = parse_count(text, &v);
        ok = !r && v >= key->min && v <= key->max;
        if (!ok)
            break;
        if (key->type == CONFIG_NUMBER)
            *(double *)dst = v;
        else /* int fields hold non-negative values here: same bits as unsigned */
            store_uint(dst, key->width, v);
        break;
    }
    case CONFIG_STRING: {
        ok = !(key->flags & CONFIG_NONEMPTY && !*text) && !(key->check && key->check(text)) &&
             strlen(text) <= MAX_STRING;
        if (!ok)
            break;
        char *copy = strdup(text);
        if (!copy)
            return -2;
        free_value(cfg, key);
        *(char **)dst = copy;
        break;
    }
    case CONFIG_LIST: {
        char **items;
        size_t n;
        int r = split_list(text, &items, &n);
        if (r == -2) {
            free_list(items, n);
            return -2;
        }
        ok = r == 0;
        for (size_t i = 0; ok && i < n; i++)
            ok = !(key->check && key->check(items[i]));
        if (!ok) {
            free_list(items, n);
            break;
        }
        free_value(cfg, key);
        *(char ***)dst = items;
        *(size_t *)((char *)cfg + key->count_offset) = n;
        break;
    }
    case CONFIG_CHOICE: {
        int i = 0;
        for (const char *p = key->choices; *p; i++) {
            size_t len = strcspn(p, "|");
            if (strlen(text) == len && strncasecmp(p, text, len) == 0) {
                *(int *)dst = i;
                ok = 1;
                break;
            }
            p += len + (p[len] == '|');
        }
        break;
    }
    }
    if (ok)
        return 0;
    char want[256], shown[256];
    config_describe_type(key, want, sizeof want);
    if (key->flags & CONFIG_SECRET && *text)
        snprintf(shown, sizeof shown, "***");
    else
        show_value(text, shown, sizeof shown);
    const char *why = "";
    if ((key->type == CONFIG_STRING || key->type == CONFIG_LIST) && strlen(text) > MAX_STRING)
        why = " (longer than 64 KiB)";
    else if ((key->type == CONFIG_DURATION || key->type == CONFIG_INT || key->type == CONFIG_SIZE ||
              key->type == CONFIG_NUMBER) &&
             text[0] == '-')
        why = " (it cannot be negative)";
    if (key->type == CONFIG_LIST && !*why)
        why = " (a comma-separated list)";
    err_add(errs, "%s wants %s, not '%s'%s", where, want, shown, why);
    return -1;
}

/* Stores the default of key (and marks it as such). */
static int set_default(config_t *cfg, const config_key_t *key)
{
    cfg->from[key_index(key)].source = CONFIG_FROM_DEFAULT;
    cfg->from[key_index(key)].line = 0;
    if (!key->def) {
        free_value(cfg, key);
        return 0;
    }
    return set_text(cfg, key, key->def, 0, key->name, NULL) ? -1 : 0;
}

int config_init(config_t *cfg)
{
    *cfg = (config_t){0};
    for (size_t i = 0; i < config_nkeys; i++)
        if (set_default(cfg, &config_keys[i]))
            return -1;
    return 0;
}

void config_free(config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < config_nkeys; i++)
        free_value(cfg, &config_keys[i]);
    free(cfg->file);
    cfg->file = NULL;
}

int config_set(config_t *cfg, const config_key_t *key, const char *value, config_source_t source,
               const char *where, config_errors_t *errs)
{
    int r = set_text(cfg, key, value, 0, where, errs);
    if (r == -2)
        err_add(errs, "%s: out of memory", where);
    if (r)
        return -1;
    cfg->from[key_index(key)].source = (uint8_t)source;
    cfg->from[key_index(key)].line = 0;
    return 0;
}

/* ---- the environment ------------------------------------------------------ */

int config_load_env(config_t *cfg, char *const *env, config_errors_t *errs)
{
    int rc = 0;
    size_t plen = strlen(ENV_PREFIX);
    for (; env && *env; env++) {
        if (strncmp(*env, ENV_PREFIX, plen) != 0)
            continue;
        const char *eq = strchr(*env, '=');
        if (!eq)
            continue;
        char name[128];
        size_t n = (size_t)(eq - *env) - plen;
        if (n >= sizeof name)
            n = sizeof name - 1;
        for (size_t i = 0; i < n; i++)
            name[i] = (char)tolower((unsigned char)(*env)[plen + i]);
        name[n] = '\0';
        char var[160];
        snprintf(var, sizeof var, "%.*s", (int)(eq - *env), *env);
        int bare_ms;
        const config_key_t *key = lookup(name, &bare_ms);
        if (!key) {
            const config_key_t *near = config_suggest(name);
            char env_near[96] = "";
            if (near)
                config_env_name(near, env_near, sizeof env_near);
            err_add(errs,
                    "%s: unknown setting '%s'%s%s%s; 'switchboard --help-config' lists every "
                    "setting",
                    var, name, near ? " (did you mean " : "", env_near, near ? "?)" : "");
            rc = -1;
            continue;
        }
        int r = set_text(cfg, key, eq + 1, bare_ms, var, errs);
        if (r == -2)
            err_add(errs, "%s: out of memory", var);
        if (r) {
            rc = -1;
            continue;
        }
        cfg->from[key_index(key)].source = CONFIG_FROM_ENV;
        cfg->from[key_index(key)].line = 0;
    }
    return rc;
}

/* ---- YAML ------------------------------------------------------------------ */

typedef struct {
    config_t *cfg;
    const char *name;
    config_errors_t *errs;
    yaml_parser_t parser;
    int failed;
    int seen[CONFIG_MAX_KEYS]; /* line where each key was met, valid or not */
} yaml_reader_t;

static int next_event(yaml_reader_t *r, yaml_event_t *ev)
{
    if (yaml_parser_parse(&r->parser, ev))
        return 0;
    const yaml_parser_t *p = &r->parser;
    const yaml_mark_t *m = &p->problem_mark;
    if (p->error == YAML_MEMORY_ERROR)
        err_add(r->errs, "%s: out of memory while reading it", r->name);
    else
        err_add(r->errs, "%s:%zu:%zu: not valid YAML: %s%s%s", r->name, m->line + 1, m->column + 1,
                p->problem ? p->problem : "syntax error", p->context ? " " : "",
                p->context ? p->context : "");
    r->failed = 1;
    return -1;
}

/* Skips the rest of a collection whose start event was just read. */
static int skip_collection(yaml_reader_t *r)
{
    int depth = 1;
    while (depth > 0) {
        yaml_event_t ev;
        if (next_event(r, &ev))
            return -1;
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT)
            depth++;
        else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT)
            depth--;
        else if (ev.type == YAML_STREAM_END_EVENT)
            depth = 0;
        yaml_event_delete(&ev);
    }
    return 0;
}

static int is_null(const yaml_event_t *ev)
{
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = (const char *)ev->data.scalar.value;
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* Reads a YAML sequence of scalars into one comma-free list value. */
static int read_list(yaml_reader_t *r, const config_key_t *key, const char *where)
{
    char **items = NULL;
    size_t n = 0;
    int bad = 0;
    for (;;) {
        yaml_event_t ev;
        if (next_event(r, &ev)) {
            free_list(items, n);
            return -1;
        }
        if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        size_t line = ev.start_mark.line + 1;
        if (ev.type != YAML_SCALAR_EVENT) {
            int nested =
                ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT;
            yaml_event_delete(&ev);
            char want[256];
            config_describe_type(key, want, sizeof want);
            err_add(r->errs, "%s:%zu: %s wants %s; an item is not a plain value", r->name, line,
                    key->name, want);
            bad = 1;
            if (nested && skip_collection(r)) {
                free_list(items, n);
                return -1;
            }
            continue;
        }
        const char *v = (const char *)ev.data.scalar.value;
        const char *why = NULL;
        if (!*v || strchr(v, ',') || n >= MAX_LIST_ITEMS || strlen(v) > MAX_STRING)
            why = "";
        else if (key->check)
            why = key->check(v);
        if (why) {
            char want[256], shown[256];
            config_describe_type(key, want, sizeof want);
            show_value(v, shown, sizeof shown);
            err_add(r->errs, "%s:%zu: %s wants %s, not '%s'", r->name, line, key->name, want,
                    shown);
            bad = 1;
        } else if (!bad) {
            char **more = realloc(items, (n + 1) * sizeof *more);
            char *copy = more ? strdup(v) : NULL;
            if (more)
                items = more;
            if (!copy) {
                yaml_event_delete(&ev);
                free_list(items, n);
                err_add(r->errs, "%s: out of memory", where);
                return -1;
            }
            items[n++] = copy;
        }
        yaml_event_delete(&ev);
    }
    if (bad) {
        free_list(items, n);
        r->failed = 1;
        return 0;
    }
    free_value(r->cfg, key);
    *(char ***)field(r->cfg, key) = items;
    *(size_t *)((char *)r->cfg + key->count_offset) = n;
    return 0;
}

/* Reads one "key: value" pair whose key event is ev. Returns -1 only when
 * reading cannot go on. */
static int read_pair(yaml_reader_t *r, yaml_event_t *kev)
{
    size_t kline = kev->start_mark.line + 1;
    char name[128];
    snprintf(name, sizeof name, "%s", (const char *)kev->data.scalar.value);
    int bare_ms;
    const config_key_t *key = lookup(name, &bare_ms);
    char where[512];
    snprintf(where, sizeof where, "%s:%zu: %s", r->name, kline, name);
    if (!key) {
        const config_key_t *near = config_suggest(name);
        char shown[256];
        show_value(name, shown, sizeof shown);
        err_add(r->errs,
                "%s:%zu: unknown setting '%s'%s%s%s; 'switchboard --help-config' lists every "
                "setting",
                r->name, kline, shown, near ? " (did you mean '" : "", near ? near->name : "",
                near ? "'?)" : "");
        r->failed = 1;
    } else if (r->seen[key_index(key)]) {
        err_add(r->errs, "%s:%zu: %s is set twice (first on line %d); keep one", r->name, kline,
                key->name, r->seen[key_index(key)]);
        r->failed = 1;
        key = NULL;
    } else
        r->seen[key_index(key)] = (int)kline;

    yaml_event_t ev;
    if (next_event(r, &ev))
        return -1;
    size_t vline = ev.start_mark.line + 1;
    snprintf(where, sizeof where, "%s:%zu: %s", r->name, vline, key ? key->name : name);
    int rc = 0, set = 0;
    if (ev.type == YAML_SCALAR_EVENT) {
        if (!key)
            ;
        else if (is_null(&ev)) { /* "key:" or "key: ~": the default */
            if (set_default(r->cfg, key)) {
                err_add(r->errs, "%s: out of memory", where);
                rc = -1;
            } else
                set = 1;
        } else {
            int s =
                set_text(r->cfg, key, (const char *)ev.data.scalar.value, bare_ms, where, r->errs);
            if (s == -2) {
                err_add(r->errs, "%s: out of memory", where);
                rc = -1;
            } else if (s)
                r->failed = 1;
            else
                set = 1;
        }
    } else if (ev.type == YAML_SEQUENCE_START_EVENT && key && key->type == CONFIG_LIST) {
        int f = r->failed;
        r->failed = 0;
        rc = read_list(r, key, where);
        set = !rc && !r->failed;
        r->failed |= f;
    } else if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT) {
        if (key) {
            char want[256];
            config_describe_type(key, want, sizeof want);
            err_add(r->errs, "%s wants %s, not a %s", where, want,
                    ev.type == YAML_SEQUENCE_START_EVENT ? "list" : "mapping");
            r->failed = 1;
        }
        rc = skip_collection(r);
    } else if (ev.type == YAML_ALIAS_EVENT) {
        err_add(r->errs, "%s: aliases (*name) are not supported; write the value out", where);
        r->failed = 1;
    } else {
        err_add(r->errs, "%s: a value is missing", where);
        r->failed = 1;
        rc = -1;
    }
    yaml_event_delete(&ev);
    if (set && key) {
        r->cfg->from[key_index(key)].source = CONFIG_FROM_FILE;
        r->cfg->from[key_index(key)].line = (int)kline;
    }
    return rc;
}

static int read_document(yaml_reader_t *r)
{
    yaml_event_t ev;
    if (next_event(r, &ev))
        return -1;
    if (ev.type == YAML_SCALAR_EVENT && is_null(&ev)) {
        yaml_event_delete(&ev); /* an empty document */
        return 0;
    }
    if (ev.type != YAML_MAPPING_START_EVENT) {
        err_add(r->errs,
                "%s:%zu: the file must be a mapping of settings (\"port: 8080\" lines), not %s",
                r->name, ev.start_mark.line + 1,
                ev.type == YAML_SEQUENCE_START_EVENT ? "a list" : "a single value");
        int nested = ev.type == YAML_SEQUENCE_START_EVENT;
        yaml_event_delete(&ev);
        r->failed = 1;
        return nested ? skip_collection(r) : 0;
    }
    yaml_event_delete(&ev);
    for (;;) {
        if (next_event(r, &ev))
            return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (ev.type == YAML_SCALAR_EVENT) {
            int rc = read_pair(r, &ev);
            yaml_event_delete(&ev);
            if (rc)
                return -1;
            continue;
        }
        err_add(r->errs, "%s:%zu: a setting's name must be a plain word like max_connections",
                r->name, ev.start_mark.line + 1);
        r->failed = 1;
        int nested = ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT;
        yaml_event_delete(&ev);
        if (nested && skip_collection(r))
            return -1;
        /* and its value */
        if (next_event(r, &ev))
            return -1;
        nested = ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT;
        int end = ev.type == YAML_MAPPING_END_EVENT;
        yaml_event_delete(&ev);
        if (end)
            return 0;
        if (nested && skip_collection(r))
            return -1;
    }
}

int config_load_yaml(config_t *cfg, const char *name, const char *text, size_t len,
                     config_errors_t *errs)
{
    yaml_reader_t r = {.cfg = cfg, .name = name, .errs = errs};
    if (!cfg->file && !(cfg->file = strdup(name))) {
        err_add(errs, "%s: out of memory", name);
        return -1;
    }
    if (!yaml_parser_initialize(&r.parser)) {
        err_add(errs, "%s: out of memory", name);
        return -1;
    }
    yaml_parser_set_input_string(&r.parser, (const unsigned char *)text, len);
    int documents = 0;
    for (;;) {
        yaml_event_t ev;
        if (next_event(&r, &ev))
            break;
        yaml_event_type_t type = ev.type;
        size_t line = ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            break;
        if (type != YAML_DOCUMENT_START_EVENT)
            continue; /* stream start, document end */
        if (++documents > 1) {
            err_add(errs, "%s:%zu: a second YAML document ('---'); put every setting in one", name,
                    line);
            r.failed = 1;
            break;
        }
        if (read_document(&r))
            break;
    }
    yaml_parser_delete(&r.parser);
    return r.failed ? -1 : 0;
}

int config_load_file(config_t *cfg, const char *path, config_errors_t *errs)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_add(errs, "%s: cannot read the configuration file: %s", path, strerror(errno));
        return -1;
    }
    char *text = malloc(MAX_FILE_SIZE + 1);
    size_t len = text ? fread(text, 1, MAX_FILE_SIZE + 1, f) : 0;
    int bad = !text || ferror(f) || len > MAX_FILE_SIZE;
    int e = errno;
    fclose(f);
    if (bad) {
        err_add(errs, "%s: cannot read the configuration file: %s", path,
                !text                 ? "out of memory"
                : len > MAX_FILE_SIZE ? "larger than 1 MiB"
                                      : strerror(e));
        free(text);
        return -1;
    }
    int r = config_load_yaml(cfg, path, text, len, errs);
    free(text);
    return r;
}

/* ---- rules between keys ---------------------------------------------------- */

/* "file.yaml:3: pong_timeout", "SWITCHBOARD_PONG_TIMEOUT", "--pong-timeout"
 * or "pong_timeout (default)": where the value of key was set. */
static void where_set(const config_t *cfg, const config_key_t *key, char *out, size_t size)
{
    int i = key_index(key);
    switch (cfg->from[i].source) {
    case CONFIG_FROM_FILE:
        snprintf(out, size, "%s:%d: %s", cfg->file ? cfg->file : "?", cfg->from[i].line, key->name);
        break;
    case CONFIG_FROM_ENV:
        config_env_name(key, out, size);
        break;
    case CONFIG_FROM_FLAG:
        snprintf(out, size, "--%s", key->name);
        for (char *p = out + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        break;
    default:
        snprintf(out, size, "%s (default)", key->name);
    }
}

/* The key of the two that was set by the more specific source (the one to
 * blame for a conflict). */
static const config_key_t *blame(const config_t *cfg, const config_key_t *a, const config_key_t *b)
{
    const config_origin_t *fa = &cfg->from[key_index(a)], *fb = &cfg->from[key_index(b)];
    if (fa->source != fb->source)
        return fa->source > fb->source ? a : b;
    return fa->source == CONFIG_FROM_FILE && fa->line > fb->line ? a : b;
}

int config_check(const config_t *cfg, config_errors_t *errs)
{
    int rc = 0;
    char where[512], v1[64], v2[64];
    const config_key_t *ping = config_key("ping_interval"), *pong = config_key("pong_timeout");
    if (cfg->pong_timeout_ms <= cfg->ping_interval_ms) {
        where_set(cfg, blame(cfg, ping, pong), where, sizeof where);
        fmt_duration(cfg->pong_timeout_ms, v1, sizeof v1);
        fmt_duration(cfg->ping_interval_ms, v2, sizeof v2);
        err_add(errs,
                "%s: pong_timeout (%s) must be longer than ping_interval (%s), or silent "
                "clients are closed before they are pinged",
                where, v1, v2);
        rc = -1;
    }
    if (cfg->sec.auth_required && !cfg->sec.jwt_secret && !cfg->sec.jwt_public_key) {
        where_set(cfg, config_key("auth_required"), where, sizeof where);
        err_add(errs,
                "%s: auth_required needs jwt_secret (HS256) or jwt_public_key (RS256) to check "
                "tokens with",
                where);
        rc = -1;
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        where_set(cfg, config_key(cfg->tls_cert ? "tls_cert" : "tls_key"), where, sizeof where);
        err_add(errs, "%s: TLS needs both tls_cert and tls_key", where);
        rc = -1;
    } else if (cfg->tls_cert) {
        char why[512];
        if (sb_tls_check_files(cfg->tls_cert, cfg->tls_key, why, sizeof why)) {
            where_set(cfg, config_key("tls_cert"), where, sizeof where);
            err_add(errs, "%s: %s", where, why);
            rc = -1;
        }
        if (cfg->tls_port && cfg->tls_port == cfg->port) {
            where_set(cfg, config_key("tls_port"), where, sizeof where);
            err_add(errs, "%s: tls_port (%d) must differ from port", where, cfg->tls_port);
            rc = -1;
        }
    }
    if (cfg->sec.rate_burst > 0 && cfg->sec.rate_burst < 1) {
        where_set(cfg, config_key("rate_burst"), where, sizeof where);
        fmt_number(cfg->sec.rate_burst, v1, sizeof v1);
        err_add(errs,
                "%s: rate_burst (%s) must be at least 1 message, or 0 for twice rate_messages",
                where, v1);
        rc = -1;
    }
    return rc;
}

/* ---- writing values back ------------------------------------------------- */

/* Decodes the UTF-8 sequence at p: returns its length and sets *cp, or 0
 * when it is not valid UTF-8. */
static size_t utf8_decode(const unsigned char *p, uint32_t *cp)
{
    size_t n;
    uint32_t c, min;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2, c = p[0] & 0x1fu, min = 0x80;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3, c = p[0] & 0x0fu, min = 0x800;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4, c = p[0] & 0x07u, min = 0x10000;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0; /* also stops at the NUL */
        c = c << 6 | (p[i] & 0x3fu);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

/* Writes s as a YAML double-quoted scalar that reads back as s: what YAML
 * would not take as it is (control characters, the line breaks NEL, LS and
 * PS, a BOM, non-characters) is escaped. Bytes that are not UTF-8 cannot be
 * written in YAML; they come out as \xNN (the code point of that value). */
static size_t yaml_quote(const char *s, char *out, size_t size)
{
    size_t o = 0;
#define PUTS(str)                                                                                  \
    do {                                                                                           \
        for (const char *e_ = (str); *e_; e_++)                                                    \
            if (o + 1 < size)                                                                      \
                out[o++] = *e_;                                                                    \
    } while (0)
    PUTS("\"");
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        char esc[16];
        uint32_t cp = 0;
        size_t n = *p < 0x80 ? 1 : utf8_decode(p, &cp);
        if (*p < 0x80)
            cp = *p;
        if (n == 0) {
            snprintf(esc, sizeof esc, "\\x%02x", *p);
            PUTS(esc);
            p++;
            continue;
        }
        if (cp == '"' || cp == '\\')
            snprintf(esc, sizeof esc, "\\%c", (char)cp);
        else if (cp == '\n')
            snprintf(esc, sizeof esc, "\\n");
        else if (cp < 0x20 || cp == 0x7f)
            snprintf(esc, sizeof esc, "\\x%02x", (unsigned)cp);
        else if (cp == 0x85)
            snprintf(esc, sizeof esc, "\\N");
        else if (cp == 0x2028)
            snprintf(esc, sizeof esc, "\\L");
        else if (cp == 0x2029)
            snprintf(esc, sizeof esc, "\\P");
        else if ((cp >= 0x80 && cp < 0xa0) || cp == 0xfeff || cp == 0xfffe || cp == 0xffff)
            snprintf(esc, sizeof esc, "\\u%04X", (unsigned)cp);
        else
            snprintf(esc, sizeof esc, "%.*s", (int)n, (const char *)p);
        PUTS(esc);
        p += n;
    }
    PUTS("\"");
#undef PUTS
    out[o < size ? o : size - 1] = '\0';
    return o;
}

void config_format(const config_t *cfg, const config_key_t *key, unsigned fmt, char *out,
                   size_t size)
{
    const void *src = cfield(cfg, key);
    int yaml = fmt & CONFIG_FMT_YAML;
    int hide = (key->flags & CONFIG_SECRET) && !(fmt & CONFIG_FMT_SECRETS);
    const char *none = yaml ? "~" : "(none)";
    if (!size)
        return;
    switch (key->type) {
    case CONFIG_BOOL:
        snprintf(out, size, "%s", *(const int *)src ? "true" : "false");
        break;
    case CONFIG_INT:
        fmt_number(load_uint(src, key->width), out, size);
        break;
    case CONFIG_SIZE:
        fmt_size(load_uint(src, key->width), out, size);
        break;
    case CONFIG_DURATION:
        fmt_duration((uint64_t)load_uint(src, key->width), out, size);
        break;
    case CONFIG_NUMBER:
        fmt_number(*(const double *)src, out, size);
        break;
    case CONFIG_CHOICE: {
        const char *p = key->choices;
        for (int i = 0; i < *(const int *)src && strchr(p, '|'); i++)
            p = strchr(p, '|') + 1;
        snprintf(out, size, "%.*s", (int)strcspn(p, "|"), p);
        break;
    }
    case CONFIG_STRING: {
        const char *s = *(char *const *)src;
        if (!s)
            snprintf(out, size, "%s", none);
        else if (hide)
            snprintf(out, size, yaml ? "\"***\"" : "***");
        else if (yaml)
            yaml_quote(s, out, size);
        else if (!*s)
            snprintf(out, size, "''");
        else
            show_value(s, out, size < 72 ? size : 72);
        break;
    }
    case CONFIG_LIST: {
        char *const *items = *(char **const *)src;
        size_t n = *(const size_t *)((const char *)cfg + key->count_offset);
        size_t o = 0;
        if (!n) {
            snprintf(out, size, "%s", yaml ? "[]" : "(none)");
            break;
        }
        if (yaml)
            o += (size_t)snprintf(out, size, "[");
        for (size_t i = 0; i < n && o + 1 < size; i++) {
            if (i)
                o += (size_t)snprintf(out + o, size - o, yaml ? ", " : ",");
            if (o + 1 >= size)
                break;
            if (yaml)
                o += yaml_quote(items[i], out + o, size - o);
            else
                o += (size_t)snprintf(out + o, size - o, "%s", items[i]);
        }
        if (yaml && o + 1 < size)
            snprintf(out + o, size - o, "]");
        break;
    }
    }
}

/* Enough room for config_format of key in YAML: every byte of text may
 * become a 4-byte escape. */
static size_t format_room(const config_t *cfg, const config_key_t *key)
{
    size_t room = 128;
    if (key->type == CONFIG_STRING) {
        const char *s = *(char *const *)cfield(cfg, key);
        room += s ? 4 * strlen(s) : 0;
    } else if (key->type == CONFIG_LIST) {
        char *const *items = *(char **const *)cfield(cfg, key);
        size_t n = *(const size_t *)((const char *)cfg + key->count_offset);
        for (size_t i = 0; i < n; i++)
            room += 4 * strlen(items[i]) + 4;
    }
    return room;
}

char *config_format_alloc(const config_t *cfg, const config_key_t *key, unsigned fmt)
{
    size_t room = format_room(cfg, key);
    char *out = malloc(room);
    if (out)
        config_format(cfg, key, fmt | CONFIG_FMT_YAML, out, room);
    return out;
}

char *config_dump(const config_t *cfg, unsigned fmt)
{
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    if (!text)
        return NULL;
    text[0] = '\0';
    const char *group = NULL;
    for (size_t i = 0; i < config_nkeys; i++) {
        const config_key_t *k = &config_keys[i];
        size_t vsize = format_room(cfg, k);
        char *value = malloc(vsize);
        char source[600];
        if (!value) {
            free(text);
            return NULL;
        }
        config_format(cfg, k, fmt | CONFIG_FMT_YAML, value, vsize);
        config_describe_source(cfg, k, source, sizeof source);
        size_t need = strlen(k->name) + strlen(value) + strlen(source) + 64;
        if (len + need >= cap) {
            while (len + need >= cap)
                cap *= 2;
            char *t = realloc(text, cap);
            if (!t) {
                free(value);
                free(text);
                return NULL;
            }
            text = t;
        }
        if (!group || strcmp(group, k->group) != 0)
            len += (size_t)snprintf(text + len, cap - len, "%s# %s\n", group ? "\n" : "", k->group);
        group = k->group;
        len += (size_t)snprintf(text + len, cap - len, "%s: %s  # %s\n", k->name, value, source);
        free(value);
    }
    return text;
}
