/* main.c — the switchboard server: settings (config.c) from a file, the
 * environment and flags; the server, hub and routes; signals (graceful
 * stop, reload) and the periodic stats line. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "app/app.h"
#include "app/config.h"
#include "app/log.h"
#include "switchboard.h"

extern char **environ;

/* A setting given on the command line, applied after the file and the
 * environment (and again at each reload, so flags keep winning). */
typedef struct flag_s {
    const config_key_t *key;
    const char *value; /* points into argv, or a literal */
} flag_t;

/* What a reload needs to build the configuration again. */
typedef struct setup_s {
    const char *config_path; /* --config, or NULL */
    flag_t *flags;
    size_t nflags;
} setup_t;

/* The signal thread: its own libuv loop with the signal handles and the
 * stats timer, since the server's loop is the library's. What it decides
 * runs on the server's loop through sb_server_post (reload, stats) or is
 * thread-safe (sb_server_stop). */
typedef struct ops_s {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t stats;
    uv_async_t wake; /* the settings changed, or the server stopped */
    uv_thread_t thread;
    sb_server_t *srv;
    app_t *app;
    atomic_ullong stats_interval_ms;
    atomic_ullong shutdown_timeout_ms;
    atomic_int quit;
    uint64_t timer_ms; /* the interval the timer runs with (ops thread only) */
    int stops;         /* SIGINT/SIGTERM received (ops thread only) */
} ops_t;

static config_t g_cfg; /* the running configuration: owns the strings app_t points to */
static setup_t g_setup;
static ops_t g_ops;

/* ---- command line ------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: switchboard [OPTIONS]\n"
            "\n"
            "A real-time WebSocket hub. Serves http://HOST:PORT/ with the JSON chat and\n"
            "pub-sub protocol at /ws, a raw relay at /ws/raw, /health, /stats, /metrics,\n"
            "/api/* and the WebSocket echo endpoint /echo.\n"
            "\n"
            "Settings come from defaults, then the --config file, then SWITCHBOARD_*\n"
            "environment variables, then flags (the last wins). Every setting of the file\n"
            "has a flag: --NAME-WITH-DASHES VALUE ('switchboard --help-config' lists them).\n"
            "\n"
            "Options:\n"
            "  --config FILE            read settings from a YAML file\n"
            "  --check-config FILE      check a configuration file, say what is wrong, exit\n"
            "                           0 (valid) or 1 (not)\n"
            "  --print-config           print the configuration in effect and exit\n"
            "  --help-config            list every setting with its default and exit\n"
            "  --host ADDR              address to listen on (default 127.0.0.1; 0.0.0.0 or ::\n"
            "                           for every interface)\n"
            "  --port N                 port to listen on (default 8080; 0 picks a free one)\n"
            "  --log-level LEVEL        error, warn, info or debug (default info)\n"
            "  --no-echo                do not serve the /echo endpoint\n"
            "  --max-message-size BYTES largest WebSocket message (default 512k; suffixes\n"
            "                           k, m: 16m)\n"
            "  --ping-interval DURATION ping connections silent this long (default 54s;\n"
            "                           units ms, s, m, h, d)\n"
            "  --pong-timeout DURATION  close connections silent this long (default 60s)\n"
            "  --write-timeout DURATION close connections whose output is stuck this long\n"
            "                           (default 10s)\n"
            "  --shutdown-timeout DURATION  on SIGTERM, how long connections get to close\n"
            "                           (default 5s); a second signal exits at once\n"
            "  --stats-interval DURATION  log a stats line this often (default 30s; 0 = off)\n"
            "  --data-dir DIR           where history is kept (default ./data; an empty\n"
            "                           value keeps history in memory only)\n"
            "  --rooms LIST             a fixed, comma-separated list of rooms; joining\n"
            "                           another fails (default: rooms are created on join)\n"
            "  --history-size N         messages sent to a client when it joins (default 50)\n"
            "  --history-max N          messages kept per room (default 10000; 0 = all)\n"
            "  --history-max-age DURATION  drop messages older than this (default 0: keep)\n"
            "  --max-content BYTES      longest message content (default 4096)\n"
            "  --presence-limit N       rooms with more members get no join, leave or\n"
            "                           presence notices (default 1000; 0 = always)\n"
            "  --api-key KEY            require 'Authorization: Bearer KEY' on /api/*\n"
            "  -h, --help               show this help and exit\n"
            "  -V, --version            print the version and exit\n"
            "\n"
            "Signals: SIGTERM or SIGINT stops gracefully; SIGHUP reloads the settings\n"
            "that can change at run time and logs what changed.\n");
}

static void help_config(void)
{
    const char *group = NULL;
    for (size_t i = 0; i < config_nkeys; i++) {
        const config_key_t *k = &config_keys[i];
        char want[256], env[96], flag[208];
        config_describe_type(k, want, sizeof want);
        config_env_name(k, env, sizeof env);
        snprintf(flag, sizeof flag, "--%s", k->name);
        for (char *p = flag; *p; p++)
            if (*p == '_')
                *p = '-';
        if (!group || strcmp(group, k->group) != 0)
            printf("%s[%s]\n", group ? "\n" : "", k->group);
        group = k->group;
        if (k->type == CONFIG_BOOL) {
            char plain[100];
            snprintf(plain, sizeof plain, "%.96s", flag + 2);
            size_t n = strlen(flag);
            snprintf(flag + n, sizeof flag - n, " / --no-%s", plain);
        }
        printf("%s\n    %s; default %s\n    %s, %s; %s\n    %s\n", k->name, want,
               k->def ? (*k->def ? k->def : "''") : "none", flag, env,
               k->flags & CONFIG_RELOAD ? "SIGHUP applies a change" : "changes need a restart",
               k->doc);
    }
}

static void try_help(void)
{
    fprintf(stderr, "Try 'switchboard --help' for the list of options and 'switchboard "
                    "--help-config' for every setting.\n");
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "switchboard: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    try_help();
    return 2;
}

static void print_errors(const config_errors_t *errs)
{
    const char *p = errs->text ? errs->text : "";
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(stderr, "switchboard: %.*s\n", (int)n, p);
        p += n + (nl != NULL);
    }
}

/* Builds a configuration: defaults, the file, the environment (unless
 * env is NULL), the flags; then the rules between keys. */
static int load_config(config_t *cfg, const setup_t *st, char *const *env, config_errors_t *errs)
{
    if (config_init(cfg)) {
        config_free(cfg);
        return -1;
    }
    int r = 0;
    if (st->config_path)
        r |= config_load_file(cfg, st->config_path, errs);
    if (env)
        r |= config_load_env(cfg, env, errs);
    for (size_t i = 0; i < st->nflags; i++) {
        char where[128];
        snprintf(where, sizeof where, "--%s", st->flags[i].key->name);
        for (char *p = where; *p; p++)
            if (*p == '_')
                *p = '-';
        r |= config_set(cfg, st->flags[i].key, st->flags[i].value, CONFIG_FROM_FLAG, where, errs);
    }
    if (!r)
        r = config_check(cfg, errs);
    return r ? -1 : 0;
}

/* ---- applying settings ---------------------------------------------------- */

/* Pushes the settings that may change at run time to where they are used. */
static void apply_runtime(app_t *app, const config_t *cfg)
{
    app->api_key = cfg->api_key;
    app->max_content = cfg->max_content;
    app->presence_limit = cfg->presence_limit;
    app->history_on_join = cfg->history_size;
    app->access_log = cfg->access_log;
    app->sec = cfg->sec;
    log_set_level((sb_log_level_t)cfg->log_level);
    if (app->server)
        sb_server_set_log_level(app->server, (sb_log_level_t)cfg->log_level);
    atomic_store(&g_ops.stats_interval_ms, cfg->stats_interval_ms);
    atomic_store(&g_ops.shutdown_timeout_ms, cfg->shutdown_timeout_ms);
}

/* Appends "name old -> new" to a list of changes. */
static void add_change(char *list, size_t size, const char *name, const char *from, const char *to)
{
    size_t len = strlen(list);
    snprintf(list + len, size - len, "%s%s %s -> %s", len ? ", " : "", name, from, to);
}

static void value_move(config_t *dst, config_t *src, const config_key_t *k)
{
    /* Moves the value of one key (and its list count and origin), leaving
     * src's old value in dst's place so that freeing src frees it. */
    char tmp[64];
    memcpy(tmp, (char *)dst + k->offset, k->width);
    memcpy((char *)dst + k->offset, (char *)src + k->offset, k->width);
    memcpy((char *)src + k->offset, tmp, k->width);
    if (k->type == CONFIG_LIST) {
        size_t *a = (size_t *)((char *)dst + k->count_offset);
        size_t *b = (size_t *)((char *)src + k->count_offset);
        size_t t = *a;
        *a = *b;
        *b = t;
    }
    size_t i = (size_t)(k - config_keys);
    config_origin_t f = dst->from[i];
    dst->from[i] = src->from[i];
    src->from[i] = f;
}

/* SIGHUP, on the loop thread: build the configuration again; if it is
 * valid, apply what may change at run time and log every change. */
static void reload(void *arg)
{
    app_t *app = arg;
    config_t next;
    config_errors_t errs = {0};
    if (load_config(&next, &g_setup, environ, &errs)) {
        log_line_t l;
        if (log_begin(&l, SB_LOG_ERROR, "config_reload_failed")) {
            log_str(&l, "file", g_setup.config_path);
            log_u64(&l, "errors", errs.count);
            log_str(&l, "msg", "the new configuration is not valid; keeping the running one");
            log_end(&l);
        }
        for (const char *p = errs.text ? errs.text : ""; *p;) {
            const char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            char line[1100];
            snprintf(line, sizeof line, "%.*s", (int)(n < 1000 ? n : 1000), p);
            log_event(SB_LOG_ERROR, "config_error", "msg", line, LOG_END);
            p += n + (nl != NULL);
        }
        config_errors_free(&errs);
        config_free(&next);
        return;
    }
    config_errors_free(&errs);

    char changed[LOG_LINE_MAX] = "", restart[LOG_LINE_MAX] = "";
    for (size_t i = 0; i < config_nkeys; i++) {
        const config_key_t *k = &config_keys[i];
        char a[1024], b[1024];
        char *fa = config_format_alloc(&g_cfg, k, CONFIG_FMT_SECRETS);
        char *fb = config_format_alloc(&next, k, CONFIG_FMT_SECRETS);
        int differ = !fa || !fb || strcmp(fa, fb) != 0;
        free(fa);
        free(fb);
        if (differ) {
            config_format(&g_cfg, k, 0, a, sizeof a);
            config_format(&next, k, 0, b, sizeof b);
            if (k->flags & CONFIG_SECRET) {
                /* both "***": say that it changed without saying what to */
                snprintf(a, sizeof a, "%s", strcmp(a, "(none)") ? "***" : "(none)");
                snprintf(b, sizeof b, "%s", strcmp(b, "(none)") ? "***(new)" : "(none)");
            }
            if (k->flags & CONFIG_RELOAD)
                add_change(changed, sizeof changed, k->name, a, b);
            else
                add_change(restart, sizeof restart, k->name, a, b);
        }
        /* Settings applied only at start keep their running values, and
         * their storage: app_t points into it (fixed_rooms). */
        if (!(k->flags & CONFIG_RELOAD))
            value_move(&next, &g_cfg, k);
    }
    config_t old = g_cfg;
    g_cfg = next;
    apply_runtime(app, &g_cfg);
    config_free(&old);
    if (sb_server_tls_port(app->server)) {
        /* Certificates are renewed in place: read the files again. */
        char why[512];
        if (sb_server_tls_reload(app->server, why, sizeof why))
            log_event(SB_LOG_ERROR, "tls_reload_failed", "msg", why, LOG_END);
    }
    uv_async_send(&g_ops.wake); /* the stats interval may have changed */

    log_line_t l;
    if (log_begin(&l, SB_LOG_INFO, "config_reloaded")) {
        log_str(&l, "file", g_setup.config_path);
        log_str(&l, "changed", *changed ? changed : "nothing");
        if (*restart)
            log_str(&l, "needs_restart", restart);
        log_end(&l);
    }
    if (*restart)
        log_event(SB_LOG_WARN, "config_needs_restart", "keys", restart, "msg",
                  "these settings keep their running values until the server restarts", LOG_END);
}

/* ---- the signal thread ------------------------------------------------------ */

static void post_stats(void *arg)
{
    log_stats(arg);
}

static void on_stats_timer(uv_timer_t *t)
{
    ops_t *ops = t->data;
    sb_server_post(ops->srv, post_stats, ops->app);
}

/* (Re)starts the stats timer with the current interval. */
static void arm_stats(ops_t *ops)
{
    uint64_t ms = atomic_load(&ops->stats_interval_ms);
    if (ms == ops->timer_ms)
        return;
    ops->timer_ms = ms;
    uv_timer_stop(&ops->stats);
    if (ms)
        uv_timer_start(&ops->stats, on_stats_timer, ms, ms);
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_wake(uv_async_t *a)
{
    ops_t *ops = a->data;
    if (atomic_load(&ops->quit)) {
        uv_walk(&ops->loop, close_handle, NULL);
        return;
    }
    arm_stats(ops);
}

static void on_signal(uv_signal_t *h, int sig)
{
    ops_t *ops = h->data;
    if (sig == SIGHUP) {
        if (sb_server_post(ops->srv, reload, ops->app))
            log_event(SB_LOG_WARN, "reload_ignored", "msg", "the server is stopping", LOG_END);
        return;
    }
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    if (++ops->stops > 1) {
        /* The operator does not want to wait: no more cleanup. What the
         * history committed is already in the database (WAL). */
        log_event(SB_LOG_WARN, "shutdown_forced", "signal", name, "msg",
                  "second signal: exiting now", LOG_END);
        fflush(stderr);
        _exit(1);
    }
    uint64_t ms = atomic_load(&ops->shutdown_timeout_ms);
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%llums", (unsigned long long)ms);
    log_event(SB_LOG_INFO, "shutdown_started", "signal", name, "timeout", timeout, "msg",
              "closing connections; send the signal again to exit at once", LOG_END);
    sb_server_stop(ops->srv, ms);
}

/* The signals this thread alone takes: every other thread blocks them (main
 * blocks them before any thread starts, and threads inherit the mask), so
 * they never interrupt the server's loop or the history's thread, and once
 * this thread is gone a late signal waits, harmless, until the exit. */
static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

static void ops_main(void *arg)
{
    ops_t *ops = arg;
    sigset_t set;
    stop_signals(&set);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    uv_run(&ops->loop, UV_RUN_DEFAULT);
}

static int ops_start(ops_t *ops, sb_server_t *srv, app_t *app)
{
    ops->srv = srv;
    ops->app = app;
    if (uv_loop_init(&ops->loop))
        return -1;
    uv_signal_t *sigs[] = {&ops->sigint, &ops->sigterm, &ops->sighup};
    int nums[] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&ops->loop, sigs[i]);
        sigs[i]->data = ops;
        uv_signal_start(sigs[i], on_signal, nums[i]);
    }
    uv_timer_init(&ops->loop, &ops->stats);
    ops->stats.data = ops;
    uv_async_init(&ops->loop, &ops->wake, on_wake);
    ops->wake.data = ops;
    arm_stats(ops);
    if (uv_thread_create(&ops->thread, ops_main, ops)) {
        uv_walk(&ops->loop, close_handle, NULL);
        uv_run(&ops->loop, UV_RUN_DEFAULT);
        uv_loop_close(&ops->loop);
        return -1;
    }
    return 0;
}

static void ops_stop(ops_t *ops)
{
    atomic_store(&ops->quit, 1);
    uv_async_send(&ops->wake);
    uv_thread_join(&ops->thread);
    uv_loop_close(&ops->loop);
}

/* ---- main ------------------------------------------------------------------- */

static void shutdown_app(app_t *app)
{
    sb_hub_free(app->hub);
    chat_free(app);
    sb_server_free(app->server);
}

enum {
    OPT_KEY = 1000,    /* + key index: --name VALUE */
    OPT_NO_KEY = 2000, /* + key index: --no-name (booleans) */
    OPT_CONFIG = 3000,
    OPT_CHECK,
    OPT_PRINT,
    OPT_HELP_CONFIG,
};

/* The option table: one (two for booleans) per setting, and the commands. */
static struct option *make_options(void)
{
    size_t n = 0;
    struct option *o = calloc(2 * config_nkeys + 8, sizeof *o);
    if (!o)
        return NULL;
    for (size_t i = 0; i < config_nkeys; i++) {
        const config_key_t *k = &config_keys[i];
        char name[96];
        snprintf(name, sizeof name, "%s", k->name);
        for (char *p = name; *p; p++)
            if (*p == '_')
                *p = '-';
        o[n++] = (struct option){strdup(name),
                                 k->type == CONFIG_BOOL ? optional_argument : required_argument,
                                 NULL, OPT_KEY + (int)i};
        if (k->type == CONFIG_BOOL) {
            char no[100];
            snprintf(no, sizeof no, "no-%s", name);
            o[n++] = (struct option){strdup(no), no_argument, NULL, OPT_NO_KEY + (int)i};
        }
    }
    o[n++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    o[n++] = (struct option){"check-config", required_argument, NULL, OPT_CHECK};
    o[n++] = (struct option){"print-config", no_argument, NULL, OPT_PRINT};
    o[n++] = (struct option){"help-config", no_argument, NULL, OPT_HELP_CONFIG};
    o[n++] = (struct option){"help", no_argument, NULL, 'h'};
    o[n++] = (struct option){"version", no_argument, NULL, 'V'};
    for (size_t i = 0; i < n; i++)
        if (!o[i].name)
            return NULL; /* out of memory: exiting anyway */
    return o;
}

static void free_options(struct option *o)
{
    for (size_t i = 0; o && o[i].name; i++)
        if (o[i].val >= OPT_KEY && o[i].val < OPT_CONFIG)
            free((char *)o[i].name);
    free(o);
}

/* "unknown option '--max-conections'" and, for a likely typo, the flag
 * meant. */
static int unknown_option(const char *arg)
{
    const config_key_t *near = NULL;
    if (strncmp(arg, "--", 2) == 0) {
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(arg + 2, "="), arg + 2);
        near = config_suggest(name);
    }
    if (!near)
        return bad_usage("unknown option '%s'", arg);
    char flag[96];
    snprintf(flag, sizeof flag, "--%s", near->name);
    for (char *p = flag; *p; p++)
        if (*p == '_')
            *p = '-';
    fprintf(stderr, "switchboard: unknown option '%s' (did you mean '%s'?)\n", arg, flag);
    try_help();
    return 2;
}

/* Reads the command line into g_setup. Returns -1 to go on, else the exit
 * status (after --help, --version, a usage error, ...). */
static int parse_args(int argc, char **argv, const char **check, int *print)
{
    struct option *options = make_options();
    if (!options) {
        fprintf(stderr, "switchboard: out of memory\n");
        return 1;
    }
    int rc = -1;
    g_setup.flags = calloc((size_t)argc + 1, sizeof *g_setup.flags);
    if (!g_setup.flags) {
        free_options(options);
        fprintf(stderr, "switchboard: out of memory\n");
        return 1;
    }
    opterr = 0;
    int opt;
    while (rc < 0 && (opt = getopt_long(argc, argv, ":hV", options, NULL)) != -1) {
        if (opt >= OPT_KEY && opt < OPT_KEY + (int)config_nkeys) {
            const config_key_t *k = &config_keys[opt - OPT_KEY];
            g_setup.flags[g_setup.nflags++] = (flag_t){k, optarg ? optarg : "true"};
        } else if (opt >= OPT_NO_KEY && opt < OPT_NO_KEY + (int)config_nkeys) {
            g_setup.flags[g_setup.nflags++] = (flag_t){&config_keys[opt - OPT_NO_KEY], "false"};
        } else if (opt == OPT_CONFIG) {
            g_setup.config_path = optarg;
        } else if (opt == OPT_CHECK) {
            *check = optarg;
        } else if (opt == OPT_PRINT) {
            *print = 1;
        } else if (opt == OPT_HELP_CONFIG) {
            help_config();
            rc = 0;
        } else if (opt == 'h') {
            usage(stdout);
            rc = 0;
        } else if (opt == 'V') {
            printf("switchboard %s\n", sb_version());
            rc = 0;
        } else if (opt == ':') {
            rc = bad_usage("option '%s' needs a value", argv[optind - 1]);
        } else {
            rc = unknown_option(argv[optind - 1]);
        }
    }
    if (rc < 0 && optind < argc)
        rc = bad_usage("unexpected argument '%s'", argv[optind]);
    free_options(options);
    return rc;
}

/* --check-config FILE: the file alone (and any flags given with it). */
static int check_config(const char *path)
{
    setup_t st = g_setup;
    st.config_path = path;
    config_t cfg;
    config_errors_t errs = {0};
    int r = load_config(&cfg, &st, NULL, &errs);
    if (r) {
        print_errors(&errs);
        if (!errs.count)
            fprintf(stderr, "switchboard: out of memory\n");
        fprintf(stderr, "switchboard: %s: %zu error(s); the server would refuse to start\n", path,
                errs.count);
    } else {
        size_t set = 0;
        for (size_t i = 0; i < config_nkeys; i++)
            set += cfg.from[i].source == CONFIG_FROM_FILE;
        printf("switchboard: %s: the configuration is valid (%zu setting(s) from the file, the "
               "rest default)\n",
               path, set);
    }
    config_errors_free(&errs);
    config_free(&cfg);
    return r ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *check = NULL;
    int print = 0;
    int rc = parse_args(argc, argv, &check, &print);
    if (rc >= 0 || check) {
        if (rc < 0)
            rc = check_config(check);
        free(g_setup.flags);
        return rc;
    }

    config_errors_t errs = {0};
    if (load_config(&g_cfg, &g_setup, environ, &errs)) {
        print_errors(&errs);
        if (!errs.count)
            fprintf(stderr, "switchboard: out of memory\n");
        try_help();
        config_errors_free(&errs);
        config_free(&g_cfg);
        free(g_setup.flags);
        return 2;
    }
    if (print) {
        char *text = config_dump(&g_cfg, 0);
        if (text)
            fputs(text, stdout);
        free(text);
        config_free(&g_cfg);
        free(g_setup.flags);
        return text ? 0 : 1;
    }

    sigset_t set;
    stop_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    app_t app = {0};
    rc = 1;
    sb_server_config_t cfg;
    sb_server_config_init(&cfg);
    cfg.host = g_cfg.host;
    cfg.port = g_cfg.port;
    cfg.max_message_size = g_cfg.max_message_size;
    cfg.max_head_size = g_cfg.max_head_size;
    cfg.max_body_size = g_cfg.max_body_size;
    cfg.max_queued_bytes = g_cfg.max_queued_bytes;
    cfg.slow_consumer_drop = g_cfg.slow_consumer_drop;
    cfg.ping_interval_ms = g_cfg.ping_interval_ms;
    cfg.pong_timeout_ms = g_cfg.pong_timeout_ms;
    cfg.write_timeout_ms = g_cfg.write_timeout_ms;
    cfg.handshake_timeout_ms = g_cfg.handshake_timeout_ms;
    cfg.idle_timeout_ms = g_cfg.idle_timeout_ms;
    cfg.close_timeout_ms = g_cfg.close_timeout_ms;
    cfg.tls_cert = g_cfg.tls_cert;
    cfg.tls_key = g_cfg.tls_key;
    cfg.tls_port = g_cfg.tls_port;
    cfg.compression = g_cfg.compression;
    cfg.compression_level = g_cfg.compression_level;
    cfg.compression_min_size = g_cfg.compression_min_size;
    cfg.compression_context_takeover = g_cfg.compression_context_takeover;
    cfg.log_level = (sb_log_level_t)g_cfg.log_level;
    cfg.log = log_library;
    cfg.access_log = log_access;
    cfg.log_data = &app;
    /* A sweep at least four times per heartbeat period keeps deadlines
     * within a quarter of their length. */
    uint64_t shortest =
        cfg.ping_interval_ms < cfg.pong_timeout_ms ? cfg.ping_interval_ms : cfg.pong_timeout_ms;
    if (shortest / 4 < cfg.sweep_interval_ms)
        cfg.sweep_interval_ms = shortest / 4 ? shortest / 4 : 1;

    sb_hub_config_t hub_cfg;
    sb_hub_config_init(&hub_cfg);
    hub_cfg.ping_interval_ms = g_cfg.ping_interval_ms;
    hub_cfg.pong_timeout_ms = g_cfg.pong_timeout_ms;
    hub_cfg.write_timeout_ms = g_cfg.write_timeout_ms;
    hub_cfg.max_message_size = g_cfg.max_message_size;
    hub_cfg.cleanup_interval_ms = g_cfg.cleanup_interval_ms;
    hub_cfg.history_cache = g_cfg.history_cache;
    hub_cfg.history_max = g_cfg.history_max;
    hub_cfg.history_max_age_ms = g_cfg.history_max_age_ms;
    hub_cfg.engine = g_cfg.engine == 1 ? SB_ENGINE_REDIS : SB_ENGINE_LOCAL;
    hub_cfg.redis_url = g_cfg.redis_url;
    char history_path[4096];
    if (*g_cfg.data_dir) {
        if (mkdir(g_cfg.data_dir, 0755) && errno != EEXIST) {
            fprintf(stderr, "switchboard: cannot create the data directory '%s': %s\n",
                    g_cfg.data_dir, strerror(errno));
            goto out;
        }
        snprintf(history_path, sizeof history_path, "%s/history.db", g_cfg.data_dir);
        hub_cfg.history_path = history_path;
    }

    apply_runtime(&app, &g_cfg);
    app.echo = g_cfg.echo;
    app.fixed_rooms = g_cfg.rooms; /* rooms never change at run time: the config keeps them */
    app.nfixed_rooms = g_cfg.nrooms;

    int r = sb_server_new(&app.server, &cfg);
    if (r) {
        fprintf(stderr, "switchboard: cannot start: %s\n", sb_strerror(r));
        goto out;
    }
    const char *err = NULL;
    r = sb_hub_new(&app.hub, app.server, &hub_cfg, &err);
    if (r) {
        fprintf(stderr, "switchboard: cannot start: %s\n", err ? err : sb_strerror(r));
        goto out_server;
    }
    r = app_routes(&app);
    if (!r)
        r = sb_server_listen(app.server);
    if (r) {
        fprintf(stderr, "switchboard: cannot start: %s\n", sb_strerror(r));
        goto out_server;
    }
    app.stats_last_ms = sb_server_now(app.server);
    if (ops_start(&g_ops, app.server, &app)) {
        fprintf(stderr, "switchboard: cannot start: the signal thread did not start\n");
        goto out_server;
    }
    signal(SIGPIPE, SIG_IGN);

    const char *host = g_cfg.host;
    int v6 = strchr(host, ':') != NULL;
    int port = sb_server_port(app.server);
    /* The TLS line first: whoever waits for the http:// line then has both. */
    if (sb_server_tls_port(app.server))
        printf("switchboard %s listening on https://%s%s%s:%d/\n", sb_version(), v6 ? "[" : "",
               host, v6 ? "]" : "", sb_server_tls_port(app.server));
    printf("switchboard %s listening on http://%s%s%s:%d/\n", sb_version(), v6 ? "[" : "", host,
           v6 ? "]" : "", port);
    fflush(stdout);
    {
        log_line_t l;
        if (log_begin(&l, SB_LOG_INFO, "started")) {
            log_str(&l, "version", sb_version());
            log_str(&l, "host", host);
            log_fmt(&l, "port", "%d", port);
            log_str(&l, "config", g_setup.config_path);
            log_str(&l, "data_dir", *g_cfg.data_dir ? g_cfg.data_dir : "(memory)");
            log_end(&l);
        }
    }

    r = sb_server_run(app.server);
    ops_stop(&g_ops);
    rc = r ? 1 : 0;
    log_event(SB_LOG_INFO, "stopped", "exit", rc ? "1" : "0", "msg", "switchboard: stopped",
              LOG_END);

out_server:
    shutdown_app(&app);
out:
    config_free(&g_cfg);
    free(g_setup.flags);
    return rc;
}
