/* broadcast.c — seed 004's hub in a few lines: every message a client sends
 * is broadcast to every connected client, the sender included.
 *
 *   ./build/examples/broadcast [PORT]      then connect to ws://127.0.0.1:PORT/ws
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <switchboard.h>

static sb_server_t *server;

static void on_message(sb_hub_t *hub, sb_conn_t *conn, int opcode, const void *msg, size_t len,
                       void *data)
{
    (void)conn;
    (void)data;
    sb_hub_broadcast(hub, opcode, msg, len); /* encoded once, shared by every queue */
}

static void on_signal(int sig)
{
    (void)sig;
    sb_server_stop(server, 2000);
}

int main(int argc, char **argv)
{
    sb_server_config_t cfg;
    sb_server_config_init(&cfg);
    cfg.port = argc > 1 ? atoi(argv[1]) : 8080;

    sb_hub_config_t hub_cfg;
    sb_hub_config_init(&hub_cfg); /* seed 003's defaults; history in memory */

    sb_hub_t *hub = NULL;
    if (sb_server_new(&server, &cfg) || sb_hub_new(&hub, server, &hub_cfg, NULL))
        return 1;
    sb_hub_handlers_t h = {.on_message = on_message};
    if (sb_hub_route(hub, "/ws", &h) || sb_server_listen(server)) {
        fprintf(stderr, "broadcast: cannot listen on port %d\n", cfg.port);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("broadcast listening on ws://127.0.0.1:%d/ws\n", sb_server_port(server));
    fflush(stdout);
    int r = sb_server_run(server);
    sb_hub_free(hub);
    sb_server_free(server);
    return r ? 1 : 0;
}
