/* util.c — error strings, version, log levels, configuration defaults. */
#include <stdio.h>
#include <strings.h>

#include "server/internal.h"

const char *sb_strerror(int code)
{
    switch (code) {
    case SB_OK:
        return "success";
    case SB_EAGAIN:
        return "try again later";
    case SB_ECLOSED:
        return "the connection is closing or closed";
    case SB_EINVAL:
        return "invalid argument";
    case SB_EEXIST:
        return "already exists";
    case SB_ENOMEM:
        return "out of memory";
    case SB_ELIMIT:
        return "a configured limit was reached";
    case SB_EIO:
        return "I/O error";
    case SB_EADDR:
        return "cannot listen on that address";
    case SB_EPROTO:
        return "WebSocket protocol violation";
    case SB_EUTF8:
        return "invalid UTF-8";
    case SB_ETOOBIG:
        return "message too big";
    }
    return "unknown error";
}

const char *sb_version(void)
{
    return SB_VERSION;
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int sb_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    if (strcasecmp(name, "warning") == 0)
        return SB_LOG_WARN;
    return SB_EINVAL;
}

void sb__log(const sb_server_t *srv, sb_log_level_t level, const char *fmt, ...)
{
    if (!srv->cfg.log || level > srv->cfg.log_level)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    srv->cfg.log(srv->cfg.log_data, level, line);
}

void sb_server_config_init(sb_server_config_t *cfg)
{
    *cfg = (sb_server_config_t){
        .host = "127.0.0.1",
        .port = 8080,
        .max_message_size = 512 * 1024,
        .max_frame_size = 0,
        .max_head_size = 8 * 1024,
        .max_body_size = 1024 * 1024,
        .max_queued_bytes = 4 * 1024 * 1024,
        .ping_interval_ms = 54000,
        .pong_timeout_ms = 60000,
        .write_timeout_ms = 10000,
        .handshake_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .close_timeout_ms = 5000,
        .sweep_interval_ms = 1000,
        .log_level = SB_LOG_INFO,
        .tls_port = 8443,
        .compression = 1,
        .compression_level = SB_PMD_DEFAULT_LEVEL,
        .compression_min_size = SB_PMD_DEFAULT_MIN_SIZE,
    };
}

void sb_server_set_log_level(sb_server_t *srv, sb_log_level_t level)
{
    srv->cfg.log_level = level;
}
