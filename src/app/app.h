/* app.h — the server application: routes on top of libswitchboard. */
#ifndef SB_APP_APP_H
#define SB_APP_APP_H

#include <stdint.h>

#include "switchboard.h"

typedef struct app_s {
    sb_server_t *server;
    int echo;            /* serve /echo */
    uint64_t started_ms; /* loop time at start, for uptime */
} app_t;

/* Registers every route of the server application. Returns 0 or SB_E*. */
int app_routes(app_t *app);

#endif /* SB_APP_APP_H */
