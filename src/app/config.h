/* config.h — the server's settings: one table of every key (type, default,
 * range, documentation), read from a YAML file, SWITCHBOARD_* environment
 * variables and command-line flags, in that order of increasing precedence.
 *
 * Every value lives in a config_t, which owns its strings. A config_t that
 * failed to load is still valid to free; the running server keeps its own
 * and swaps it for a new one only when the new one loaded cleanly (SIGHUP). */
#ifndef SB_APP_CONFIG_H
#define SB_APP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "app/app.h"

/* Room for the table; config.c checks that the table fits. */
#define CONFIG_MAX_KEYS 96

typedef enum {
    CONFIG_BOOL,     /* int: true/false, yes/no, on/off, 1/0 */
    CONFIG_INT,      /* a whole number in an int, size_t or unsigned (by the field's width) */
    CONFIG_SIZE,     /* bytes, with a k/m/g suffix: 512k */
    CONFIG_DURATION, /* uint64_t milliseconds: 500ms, 54s, 2m, 1h, 7d (a bare number: seconds) */
    CONFIG_NUMBER,   /* double, with an optional k/m suffix */
    CONFIG_STRING,   /* char * (NULL: not set) */
    CONFIG_LIST,     /* char ** and a size_t count: a YAML list, or comma-separated text */
    CONFIG_CHOICE,   /* int: the index of one of the choices */
} config_type_t;

/* config_key_t.flags */
enum {
    CONFIG_RELOAD = 1 << 0,   /* applied on SIGHUP; otherwise a change needs a restart */
    CONFIG_SECRET = 1 << 1,   /* never printed or logged */
    CONFIG_COMMON = 1 << 2,   /* listed in --help */
    CONFIG_NONEMPTY = 1 << 3, /* strings: "" is refused (leave the key out to unset it) */
};

typedef struct config_key_s {
    const char *name;  /* the YAML key; SWITCHBOARD_<NAME> and --<name-with-dashes> */
    const char *group; /* the section of the docs and the example file */
    config_type_t type;
    size_t offset, width; /* of the value in config_t */
    size_t count_offset;  /* lists: of the item count */
    const char *def;      /* the default as it would be written in the file; NULL: unset */
    double min, max;      /* numbers, counts, sizes (bytes), durations (ms) */
    unsigned flags;
    const char *choices; /* CONFIG_CHOICE: "error|warn|info|debug" */
    /* Checks a string or list item beyond its type; returns NULL when it is
     * fine, else what the key wants ("room names of 1 to 64 letters..."). */
    const char *(*check)(const char *value);
    const char *expect; /* replaces the type's own description in errors, or NULL */
    const char *doc;
} config_key_t;

typedef enum {
    CONFIG_FROM_DEFAULT = 0,
    CONFIG_FROM_FILE,
    CONFIG_FROM_ENV,
    CONFIG_FROM_FLAG,
} config_source_t;

typedef struct config_origin_s {
    uint8_t source; /* config_source_t */
    int line;       /* CONFIG_FROM_FILE: 1-based line */
} config_origin_t;

typedef struct config_s {
    /* server */
    char *host;
    int port;
    int log_level; /* sb_log_level_t */
    int echo;
    int access_log;
    size_t max_message_size;
    uint64_t ping_interval_ms, pong_timeout_ms, write_timeout_ms, cleanup_interval_ms;
    uint64_t handshake_timeout_ms, idle_timeout_ms, close_timeout_ms;
    size_t max_head_size, max_body_size, max_queued_bytes;
    int slow_consumer_drop; /* slow_consumer_policy: 0 close, 1 drop */
    /* TLS and compression */
    char *tls_cert, *tls_key;
    int tls_port;
    int compression, compression_level, compression_context_takeover;
    size_t compression_min_size;
    uint64_t shutdown_timeout_ms, stats_interval_ms;
    /* history */
    char *data_dir;
    size_t history_size, history_max, history_cache;
    uint64_t history_max_age_ms;
    /* cluster */
    int engine; /* 0 local, 1 redis */
    char *redis_url;
    /* chat */
    char **rooms;
    size_t nrooms;
    size_t max_content, presence_limit;
    char *api_key;
    /* authentication, origins, limits: the strings and the origin list are
     * owned by this config */
    app_security_t sec;

    /* where each value came from (indexed like config_keys) */
    char *file; /* the YAML file read, or NULL */
    config_origin_t from[CONFIG_MAX_KEYS];
} config_t;

/* Error messages, one per line, gathered while loading. */
typedef struct config_errors_s {
    char *text; /* NUL-terminated lines, each ending in '\n'; NULL when none */
    size_t len, count;
} config_errors_t;

/* The table, in documentation order, and its length. */
extern const config_key_t config_keys[];
extern const size_t config_nkeys;

/* Fills cfg with every default. Returns 0, or -1 when out of memory. */
int config_init(config_t *cfg);
/* Frees what cfg owns. NULL-safe; cfg may be partly loaded. */
void config_free(config_t *cfg);

/* The key of that name (also "SWITCHBOARD_NAME" with env set, or
 * "name-with-dashes" with flag set), or NULL. */
const config_key_t *config_key(const char *name);
/* A key whose name is close to name (a likely typo), or NULL. */
const config_key_t *config_suggest(const char *name);

/* Reads YAML text (a mapping of keys to values). name is what errors call
 * it (the file's path). Errors are appended to errs. Returns 0, or -1 when
 * there was an error; the keys read before it keep their new values. */
int config_load_yaml(config_t *cfg, const char *name, const char *text, size_t len,
                     config_errors_t *errs);
/* Reads a YAML file (at most 1 MiB). Returns as config_load_yaml. */
int config_load_file(config_t *cfg, const char *path, config_errors_t *errs);
/* Reads every SWITCHBOARD_* variable of env (NULL-terminated "NAME=value"
 * strings, as environ). Unknown names are errors. Returns 0 or -1. */
int config_load_env(config_t *cfg, char *const *env, config_errors_t *errs);
/* Sets one key from text (a flag's value; "where" names it in errors, as
 * "--port"). Returns 0 or -1. */
int config_set(config_t *cfg, const config_key_t *key, const char *value, config_source_t source,
               const char *where, config_errors_t *errs);
/* Checks what no single key can: pong_timeout longer than ping_interval,
 * authentication with a key to check tokens against, ... Returns 0 or -1. */
int config_check(const config_t *cfg, config_errors_t *errs);

/* config_format flags */
enum {
    CONFIG_FMT_YAML = 1 << 0,    /* as YAML ("~", quoted strings, [lists]); else for logs */
    CONFIG_FMT_SECRETS = 1 << 1, /* print secrets; else "***" */
};

/* Writes the value of key in cfg into out: as YAML that reads back as the
 * same value, or for a log line ("(none)", "a,b", long values shortened). */
void config_format(const config_t *cfg, const config_key_t *key, unsigned fmt, char *out,
                   size_t size);
/* Writes where the value of key came from ("default", "file x.yaml:3",
 * "environment SWITCHBOARD_PORT", "flag --port") into out. */
void config_describe_source(const config_t *cfg, const config_key_t *key, char *out, size_t size);
/* "SWITCHBOARD_MAX_CONNECTIONS" for max_connections. */
void config_env_name(const config_key_t *key, char *out, size_t size);
/* What a key wants, in words ("a duration like 500ms, 54s, 2m, 1h or 7d"). */
void config_describe_type(const config_key_t *key, char *out, size_t size);

/* config_format into a string of its own (never cut short); the caller
 * frees it. NULL when out of memory. */
char *config_format_alloc(const config_t *cfg, const config_key_t *key, unsigned fmt);

/* The whole configuration as YAML, each line with a comment naming its
 * source (for --print-config); secrets as "***" without CONFIG_FMT_SECRETS.
 * The caller frees the text. NULL when out of memory. */
char *config_dump(const config_t *cfg, unsigned fmt);

void config_errors_free(config_errors_t *errs);

#endif /* SB_APP_CONFIG_H */
