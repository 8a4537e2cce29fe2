/* main.c — the switchboard server: command line, routes, signals. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "app/app.h"
#include "switchboard.h"

static sb_server_t *g_server;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: switchboard [OPTIONS]\n"
            "\n"
            "A real-time WebSocket hub. Serves http://HOST:PORT/ with the JSON chat and\n"
            "pub-sub protocol at /ws, a raw relay at /ws/raw, /health, /stats, /metrics,\n"
            "/api/* and the WebSocket echo endpoint /echo.\n"
            "\n"
            "Options:\n"
            "  --host ADDR              address to listen on (default 127.0.0.1; 0.0.0.0 or ::\n"
            "                           for every interface)\n"
            "  --port N                 port to listen on (default 8080; 0 picks a free one)\n"
            "  --log-level LEVEL        error, warn, info or debug (default info)\n"
            "  --no-echo                do not serve the /echo endpoint\n"
            "  --max-message-size BYTES largest WebSocket message (default 524288; suffixes\n"
            "                           k, m: 16m)\n"
            "  --ping-interval DURATION ping connections silent this long (default 54s;\n"
            "                           units ms, s, m)\n"
            "  --pong-timeout DURATION  close connections silent this long (default 60s)\n"
            "  --write-timeout DURATION close connections whose output is stuck this long\n"
            "                           (default 10s)\n"
            "  --data-dir DIR           where history is kept (default ./data; an empty\n"
            "                           value keeps history in memory only)\n"
            "  --rooms LIST             a fixed, comma-separated list of rooms; joining\n"
            "                           another fails (default: rooms are created on join)\n"
            "  --history-size N         messages sent to a client when it joins (default 50)\n"
            "  --history-max N          messages kept per room (default 10000; 0 = all)\n"
            "  --history-max-age DURATION  drop messages older than this (default: keep;\n"
            "                           units ms, s, m, h, d)\n"
            "  --max-content BYTES      longest message content (default 4096)\n"
            "  --presence-limit N       rooms with more members get no join, leave or\n"
            "                           presence notices (default 1000; 0 = always)\n"
            "  --api-key KEY            require 'Authorization: Bearer KEY' on /api/*\n"
            "  -h, --help               show this help and exit\n"
            "  -V, --version            print the version and exit\n");
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "switchboard: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'switchboard --help' for the list of options.\n");
    return 2;
}

/* "16m", "512k", "1024" -> bytes. */
static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return -1;
    if (*end == 'k' || *end == 'K')
        v *= 1024, end++;
    else if (*end == 'm' || *end == 'M')
        v *= 1024 * 1024, end++;
    if (*end || v == 0 || v > (1ull << 40))
        return -1;
    *out = (size_t)v;
    return 0;
}

/* "54s", "500ms", "2m", "60" (seconds) -> milliseconds. */
static int parse_duration(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return -1;
    if (strcmp(end, "ms") == 0)
        ;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        v *= 1000;
    else if (strcmp(end, "m") == 0)
        v *= 60000;
    else if (strcmp(end, "h") == 0)
        v *= 3600000;
    else if (strcmp(end, "d") == 0)
        v *= 86400000;
    else
        return -1;
    if (v == 0)
        return -1;
    *ms = v;
    return 0;
}

static void log_stderr(void *data, sb_log_level_t level, const char *msg)
{
    (void)data;
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s %-5s %s\n", ts, names[level], msg);
}

/* Splits a comma-separated room list into app->fixed_rooms. */
static int split_rooms(const char *list, app_t *app)
{
    char *copy = strdup(list);
    if (!copy)
        return -1;
    for (char *save, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char **rooms = realloc(app->fixed_rooms, (app->nfixed_rooms + 1) * sizeof *rooms);
        if (!rooms || !chat_room_name_valid(tok)) {
            if (rooms)
                app->fixed_rooms = rooms;
            free(copy);
            return -1;
        }
        app->fixed_rooms = rooms;
        if (!(app->fixed_rooms[app->nfixed_rooms] = strdup(tok))) {
            free(copy);
            return -1;
        }
        app->nfixed_rooms++;
    }
    free(copy);
    return app->nfixed_rooms ? 0 : -1;
}

static void shutdown_app(app_t *app)
{
    sb_hub_free(app->hub);
    chat_free(app);
    sb_server_free(app->server);
    for (size_t i = 0; i < app->nfixed_rooms; i++)
        free(app->fixed_rooms[i]);
    free(app->fixed_rooms);
}

static void on_signal(int sig)
{
    (void)sig;
    if (g_server)
        sb_server_stop(g_server, 5000);
}

int main(int argc, char **argv)
{
    enum {
        OPT_HOST = 256,
        OPT_PORT,
        OPT_LOG,
        OPT_NO_ECHO,
        OPT_MAX_MSG,
        OPT_PING,
        OPT_PONG,
        OPT_WRITE,
        OPT_DATA,
        OPT_ROOMS,
        OPT_HIST,
        OPT_HIST_MAX,
        OPT_HIST_AGE,
        OPT_CONTENT,
        OPT_API_KEY,
        OPT_PRESENCE
    };
    static const struct option options[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"no-echo", no_argument, NULL, OPT_NO_ECHO},
        {"max-message-size", required_argument, NULL, OPT_MAX_MSG},
        {"ping-interval", required_argument, NULL, OPT_PING},
        {"pong-timeout", required_argument, NULL, OPT_PONG},
        {"write-timeout", required_argument, NULL, OPT_WRITE},
        {"data-dir", required_argument, NULL, OPT_DATA},
        {"rooms", required_argument, NULL, OPT_ROOMS},
        {"history-size", required_argument, NULL, OPT_HIST},
        {"history-max", required_argument, NULL, OPT_HIST_MAX},
        {"history-max-age", required_argument, NULL, OPT_HIST_AGE},
        {"presence-limit", required_argument, NULL, OPT_PRESENCE},
        {"max-content", required_argument, NULL, OPT_CONTENT},
        {"api-key", required_argument, NULL, OPT_API_KEY},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    sb_server_config_t cfg;
    sb_server_config_init(&cfg);
    cfg.log = log_stderr;
    int echo = 1;
    sb_hub_config_t hub_cfg;
    sb_hub_config_init(&hub_cfg);
    const char *data_dir = "data";
    const char *rooms = NULL;
    app_t app = {.history_on_join = 50, .max_content = 4096, .presence_limit = 1000};

    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":hV", options, NULL)) != -1) {
        char *end;
        long port;
        switch (opt) {
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("switchboard %s\n", sb_version());
            return 0;
        case OPT_HOST:
            cfg.host = optarg;
            break;
        case OPT_PORT:
            errno = 0;
            port = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || port < 0 || port > 65535)
                return bad_usage("--port wants a number from 0 to 65535, not '%s'", optarg);
            cfg.port = (int)port;
            break;
        case OPT_LOG: {
            int level = sb_log_level_parse(optarg);
            if (level < 0)
                return bad_usage("--log-level wants error, warn, info or debug, not '%s'", optarg);
            cfg.log_level = (sb_log_level_t)level;
            break;
        }
        case OPT_NO_ECHO:
            echo = 0;
            break;
        case OPT_MAX_MSG:
            if (parse_size(optarg, &cfg.max_message_size))
                return bad_usage("--max-message-size wants a size in bytes (like 65536, 512k or "
                                 "16m), not '%s'",
                                 optarg);
            break;
        case OPT_PING:
        case OPT_PONG:
        case OPT_WRITE:
        case OPT_HIST_AGE: {
            uint64_t *field = opt == OPT_PING    ? &cfg.ping_interval_ms
                              : opt == OPT_PONG  ? &cfg.pong_timeout_ms
                              : opt == OPT_WRITE ? &cfg.write_timeout_ms
                                                 : &hub_cfg.history_max_age_ms;
            if (parse_duration(optarg, field))
                return bad_usage("a duration looks like 500ms, 54s, 2m, 1h or 7d, not '%s'",
                                 optarg);
            break;
        }
        case OPT_DATA:
            data_dir = optarg;
            break;
        case OPT_ROOMS:
            rooms = optarg;
            break;
        case OPT_HIST:
        case OPT_HIST_MAX:
        case OPT_PRESENCE:
        case OPT_CONTENT: {
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            int zero_ok = opt == OPT_HIST_MAX || opt == OPT_PRESENCE;
            if (errno || *end || end == optarg || v < (zero_ok ? 0 : 1) || v > 100000000)
                return bad_usage("a count wants a whole number (like 50), not '%s'", optarg);
            if (opt == OPT_HIST)
                app.history_on_join = (size_t)v;
            else if (opt == OPT_HIST_MAX)
                hub_cfg.history_max = (size_t)v;
            else if (opt == OPT_PRESENCE)
                app.presence_limit = (size_t)v;
            else
                app.max_content = (size_t)v;
            break;
        }
        case OPT_API_KEY:
            if (!*optarg)
                return bad_usage("--api-key wants a non-empty key%s", "");
            app.api_key = optarg;
            break;
        case ':':
            return bad_usage("option '%s' needs a value", argv[optind - 1]);
        default:
            return bad_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_usage("unexpected argument '%s'", argv[optind]);

    /* A sweep at least four times per heartbeat period keeps deadlines
     * within a quarter of their length. */
    uint64_t shortest =
        cfg.ping_interval_ms < cfg.pong_timeout_ms ? cfg.ping_interval_ms : cfg.pong_timeout_ms;
    if (shortest / 4 < cfg.sweep_interval_ms)
        cfg.sweep_interval_ms = shortest / 4 ? shortest / 4 : 1;

    if (rooms && split_rooms(rooms, &app))
        return bad_usage("--rooms wants names of 1 to 64 letters, digits, '_', '-', '.' or ':' "
                         "separated by commas, not '%s'",
                         rooms);

    char history_path[4096];
    if (*data_dir) {
        if (mkdir(data_dir, 0755) && errno != EEXIST) {
            fprintf(stderr, "switchboard: cannot create the data directory '%s': %s\n", data_dir,
                    strerror(errno));
            return 1;
        }
        snprintf(history_path, sizeof history_path, "%s/history.db", data_dir);
        hub_cfg.history_path = history_path;
    }
    hub_cfg.ping_interval_ms = cfg.ping_interval_ms;
    hub_cfg.pong_timeout_ms = cfg.pong_timeout_ms;
    hub_cfg.write_timeout_ms = cfg.write_timeout_ms;
    hub_cfg.max_message_size = cfg.max_message_size;

    sb_server_t *srv;
    int r = sb_server_new(&srv, &cfg);
    if (r) {
        fprintf(stderr, "switchboard: cannot start: %s\n", sb_strerror(r));
        return 1;
    }
    const char *err = NULL;
    r = sb_hub_new(&app.hub, srv, &hub_cfg, &err);
    if (r) {
        fprintf(stderr, "switchboard: cannot start: %s\n", err ? err : sb_strerror(r));
        sb_server_free(srv);
        return 1;
    }
    app.server = srv;
    app.echo = echo;
    r = app_routes(&app);
    if (!r)
        r = sb_server_listen(srv);
    if (r) {
        fprintf(stderr, "switchboard: cannot start: %s\n", sb_strerror(r));
        shutdown_app(&app);
        return 1;
    }

    g_server = srv;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *host = cfg.host;
    int v6 = strchr(host, ':') != NULL;
    printf("switchboard %s listening on http://%s%s%s:%d/\n", sb_version(), v6 ? "[" : "", host,
           v6 ? "]" : "", sb_server_port(srv));
    fflush(stdout);

    r = sb_server_run(srv);
    g_server = NULL;
    shutdown_app(&app);
    fprintf(stderr, "switchboard: stopped\n");
    return r ? 1 : 0;
}
