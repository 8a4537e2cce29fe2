/* test_hub.c — the hub (src/hub/hub.c) on a real server: the registry of
 * connections and users, fan-out to everyone and to a user checked on the
 * client sockets, connections that close in the middle of a fan-out, the
 * thread-safe entry points, shutdown hooks and the server's metrics as hub
 * traffic flows. The harness (a server on 127.0.0.1 port 0, raw clients) is
 * hub_harness.h. */
#include <pthread.h>
#include <sys/socket.h>

#include "hub_harness.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

TestSuite(hub_registry, .fini = fx_fini);
TestSuite(hub_fanout, .fini = fx_fini);
TestSuite(hub_closing, .fini = fx_fini);
TestSuite(hub_async, .fini = fx_fini);
TestSuite(hub_shutdown, .fini = fx_fini);
TestSuite(hub_metrics, .fini = fx_fini);

/* ---- helpers ------------------------------------------------------------ */

/* sb_hub_user_conns(user) holds exactly the n connections want (any order). */
static void expect_user(const char *user, sb_conn_t *const *want, size_t n)
{
    sb_conn_t *got[MAX_CLIENTS];
    size_t total = sb_hub_user_conns(fx.hub, user, got, COUNT(got));
    cr_assert_eq(total, n, "user %s has %zu connection(s), expected %zu", user, total, n);
    for (size_t i = 0; i < n; i++) {
        size_t found = 0;
        for (size_t k = 0; k < total; k++)
            found += got[k] == want[i];
        cr_assert_eq(found, 1, "user %s: connection %zu listed %zu times", user, i, found);
    }
}

#define EXPECT_USER(user, ...)                                                                     \
    expect_user((user), (sb_conn_t *const[]){__VA_ARGS__},                                         \
                sizeof((sb_conn_t *const[]){__VA_ARGS__}) / sizeof(sb_conn_t *))
#define EXPECT_NO_USER(user) expect_user((user), NULL, 0)

/* The message at the head of each listed client's queue is one and the same
 * (encoded once), held by n queues. */
static void expect_shared_head(const size_t *clients, size_t n)
{
    const sb_msg_t *first = NULL;
    for (size_t k = 0; k < n; k++) {
        sb_conn_t *c = conn_of(clients[k]);
        cr_assert_eq(c->q_count, 1, "client %zu: %u queued", clients[k], c->q_count);
        const sb_msg_t *m = c->q[c->q_head];
        if (!first)
            first = m;
        cr_assert_eq(m, first, "client %zu got its own copy of the frame", clients[k]);
    }
    cr_assert_eq(first->refs, n);
}

static void expect_close_frame(size_t ci, int code, const char *reason)
{
    frame_t f;
    cr_assert(client_next(&fx.cl[ci], &f), "client %zu: no close frame", ci);
    cr_assert_eq(f.opcode, SB_OP_CLOSE, "client %zu: opcode %d ('%.40s')", ci, f.opcode,
                 (char *)f.data);
    cr_assert_geq(f.len, 2);
    cr_assert_eq(f.data[0] << 8 | f.data[1], code);
    cr_assert(f.len - 2 == strlen(reason) && memcmp(f.data + 2, reason, f.len - 2) == 0,
              "reason '%s'", (char *)f.data + 2);
    free(f.data);
}

/* ---- registry ----------------------------------------------------------- */

Test(hub_registry, open_registers_each_connection)
{
    fx_start();
    cr_assert_eq(sb_hub_conn_count(fx.hub), 0);
    cr_assert_eq(sb_hub_user_count(fx.hub), 0);
    connect_clients(3);
    cr_assert_eq(sb_hub_conn_count(fx.hub), 3);
    cr_assert_eq(sb_hub_user_count(fx.hub), 3, "each connection is its own user at first");
    for (size_t i = 0; i < 3; i++) {
        sb_conn_t *c = conn_of(i);
        cr_assert_eq(sb_hub_conn(fx.hub, sb_conn_id(c)), c);
        cr_assert_str_eq(sb_conn_user_id(c), sb_conn_id(c));
        cr_assert_null(sb_conn_name(c));
        cr_assert_eq(sb_conn_rooms(c, NULL, 0), 0);
        EXPECT_USER(sb_conn_id(c), c);
        for (size_t k = 0; k < i; k++)
            cr_assert_str_neq(sb_conn_id(c), sb_conn_id(conn_of(k)));
    }
    cr_assert_null(sb_hub_conn(fx.hub, "c-ffff"));
    cr_assert_null(sb_hub_conn(fx.hub, ""));
    cr_assert_eq(sb_hub_user_conns(fx.hub, "nobody", NULL, 0), 0);
}

Test(hub_registry, identify_groups_connections_by_user)
{
    fx_start();
    connect_clients(4);
    sb_conn_t *c0 = conn_of(0), *c1 = conn_of(1), *c2 = conn_of(2), *c3 = conn_of(3);
    char c0_id[24];
    snprintf(c0_id, sizeof c0_id, "%s", sb_conn_id(c0));
    cr_assert_eq(sb_hub_identify(fx.hub, c0, "alice", "Alice"), 0);
    cr_assert_eq(sb_hub_identify(fx.hub, c1, "alice", "Alice (phone)"), 0);
    cr_assert_eq(sb_hub_identify(fx.hub, c2, "alice", NULL), 0);
    cr_assert_eq(sb_hub_identify(fx.hub, c3, "bob", "Bob"), 0);

    cr_assert_eq(sb_hub_conn_count(fx.hub), 4);
    cr_assert_eq(sb_hub_user_count(fx.hub), 2, "unique users");
    EXPECT_USER("alice", c0, c1, c2);
    EXPECT_USER("bob", c3);
    EXPECT_NO_USER(c0_id); /* its provisional identity is gone */
    sb_conn_t *one[1] = {0};
    cr_assert_eq(sb_hub_user_conns(fx.hub, "alice", one, 1), 3, "the total, at most max filled");
    cr_assert(one[0] == c0 || one[0] == c1 || one[0] == c2);
    cr_assert_str_eq(sb_conn_user_id(c0), "alice");
    cr_assert_str_eq(sb_conn_user_id(c3), "bob");
    cr_assert_str_eq(sb_conn_name(c0), "Alice");
    cr_assert_str_eq(sb_conn_name(c1), "Alice (phone)");
    cr_assert_null(sb_conn_name(c2));
    cr_assert_str_eq(sb_conn_name(c3), "Bob");

    cr_assert_eq(sb_hub_identify(fx.hub, c0, NULL, "Al"), 0, "a NULL user keeps the user");
    cr_assert_str_eq(sb_conn_user_id(c0), "alice");
    cr_assert_str_eq(sb_conn_name(c0), "Al");
    cr_assert_eq(sb_hub_identify(fx.hub, c0, "alice", NULL), 0, "the same user again");
    cr_assert_str_eq(sb_conn_name(c0), "Al", "a NULL name keeps the name");
    EXPECT_USER("alice", c0, c1, c2);
    cr_assert_eq(sb_hub_identify(fx.hub, c0, "", "x"), SB_EINVAL);
    cr_assert_str_eq(sb_conn_user_id(c0), "alice");
    cr_assert_str_eq(sb_conn_name(c0), "Al", "a refused identify changes nothing");
}

/* A user id is one user: naming a connection after another connection's
 * own id makes the two one user; going back to its own id makes a
 * connection its own user again. */
Test(hub_registry, an_id_in_use_as_a_connections_own_user_is_one_user)
{
    fx_start();
    connect_clients(3);
    sb_conn_t *c0 = conn_of(0), *c1 = conn_of(1), *c2 = conn_of(2);
    char c0_id[24], c1_id[24];
    snprintf(c0_id, sizeof c0_id, "%s", sb_conn_id(c0));
    snprintf(c1_id, sizeof c1_id, "%s", sb_conn_id(c1));
    cr_assert_eq(sb_hub_identify(fx.hub, c1, c0_id, NULL), 0);
    EXPECT_USER(c0_id, c0, c1);
    EXPECT_NO_USER(c1_id);
    cr_assert_str_eq(sb_conn_user_id(c0), c0_id);
    cr_assert_str_eq(sb_conn_user_id(c1), c0_id);
    cr_assert_eq(sb_hub_user_count(fx.hub), 2);
    cr_assert_eq(sb_hub_send_user(fx.hub, c0_id, SB_OP_TEXT, "x", 1), 2);

    cr_assert_eq(sb_hub_identify(fx.hub, c1, c1_id, NULL), 0);
    EXPECT_USER(c0_id, c0);
    EXPECT_USER(c1_id, c1);
    EXPECT_USER(sb_conn_id(c2), c2);
    cr_assert_eq(sb_hub_user_count(fx.hub), 3);
}

Test(hub_registry, reidentifying_moves_a_connection_and_empty_users_vanish)
{
    fx_start();
    connect_clients(4);
    sb_conn_t *c0 = conn_of(0), *c1 = conn_of(1), *c2 = conn_of(2), *c3 = conn_of(3);
    sb_hub_identify(fx.hub, c0, "alice", NULL);
    sb_hub_identify(fx.hub, c1, "alice", NULL);
    sb_hub_identify(fx.hub, c2, "alice", NULL);
    sb_hub_identify(fx.hub, c3, "bob", NULL);

    cr_assert_eq(sb_hub_identify(fx.hub, c1, "bob", NULL), 0);
    EXPECT_USER("alice", c0, c2);
    EXPECT_USER("bob", c3, c1);
    cr_assert_eq(sb_hub_user_count(fx.hub), 2);

    cr_assert_eq(sb_hub_identify(fx.hub, c0, "carol", NULL), 0);
    cr_assert_eq(sb_hub_identify(fx.hub, c2, "carol", NULL), 0);
    EXPECT_NO_USER("alice");
    EXPECT_USER("carol", c0, c2);
    cr_assert_eq(sb_hub_user_count(fx.hub), 2, "alice left with her last connection");
    cr_assert_eq(sb_hub_send_user(fx.hub, "alice", SB_OP_TEXT, "x", 1), 0);

    /* A user goes when the last of its connections closes. */
    close_client(3);
    EXPECT_USER("bob", c1);
    cr_assert_eq(sb_hub_user_count(fx.hub), 2);
    close_client(1);
    EXPECT_NO_USER("bob");
    cr_assert_eq(sb_hub_user_count(fx.hub), 1);
    EXPECT_USER("carol", c0, c2);
    cr_assert_eq(sb_hub_conn_count(fx.hub), 2);
}

Test(hub_registry, close_unregisters_after_on_close)
{
    fx_start();
    connect_clients(3);
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    sb_room_t *s = sb_hub_room_create(fx.hub, "s");
    for (size_t i = 0; i < 3; i++)
        sb_room_join(r, conn_of(i));
    sb_room_join(s, conn_of(1));
    sb_hub_identify(fx.hub, conn_of(1), "dave", "Dave");

    close_client(1);
    const close_rec_t *rec = close_of(1);
    cr_assert_not_null(rec);
    cr_assert_eq(rec->code, SB_CLOSE_ABNORMAL, "TCP closed without a close frame");
    cr_assert(rec->registered, "on_close runs while the connection is still registered");
    cr_assert_eq(rec->rooms, 2, "... and still in its rooms");
    cr_assert_null(sb_hub_conn(fx.hub, fx.cl[1].id));
    cr_assert_eq(sb_hub_conn_count(fx.hub), 2);
    cr_assert_eq(sb_hub_user_count(fx.hub), 2);
    EXPECT_NO_USER("dave");
    cr_assert_eq(sb_room_count(r), 2);
    cr_assert_eq(sb_room_count(s), 0);
    cr_assert_eq(sb_hub_broadcast(fx.hub, SB_OP_TEXT, "left", 4), 2);

    /* A closing handshake from the client: on_close gets its code. */
    client_send(0, SB_OP_CLOSE, "\x03\xe8", 2);
    frame_t f;
    cr_assert(client_next(&fx.cl[0], &f));
    if (f.opcode == SB_OP_TEXT) { /* "left" was queued first */
        free(f.data);
        cr_assert(client_next(&fx.cl[0], &f));
    }
    cr_assert_eq(f.opcode, SB_OP_CLOSE);
    free(f.data);
    close_client(0);
    cr_assert_eq(close_of(0)->code, SB_CLOSE_NORMAL);
    cr_assert_eq(sb_hub_conn_count(fx.hub), 1);
    cr_assert_eq(sb_room_count(r), 1);
    EXPECT(2, "left");
}

Test(hub_registry, register_and_unregister_by_hand)
{
    fx_start();
    connect_clients(2);
    sb_conn_t *c0 = conn_of(0);
    cr_assert_eq(sb_hub_register(fx.hub, c0), SB_EEXIST, "hub routes register on open");
    sb_hub_identify(fx.hub, c0, "erin", "Erin");
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    sb_room_join(r, c0);

    sb_hub_unregister(fx.hub, c0);
    cr_assert_eq(sb_hub_conn_count(fx.hub), 1);
    cr_assert_null(sb_hub_conn(fx.hub, sb_conn_id(c0)));
    cr_assert_null(sb_conn_user_id(c0));
    cr_assert_null(sb_conn_name(c0));
    cr_assert_eq(sb_conn_rooms(c0, NULL, 0), 0);
    cr_assert_eq(sb_room_count(r), 0);
    cr_assert_eq(sb_hub_user_count(fx.hub), 1);
    EXPECT_NO_USER("erin");
    sb_hub_unregister(fx.hub, c0); /* idempotent */
    cr_assert_eq(sb_hub_conn_count(fx.hub), 1);
    cr_assert_eq(sb_hub_identify(fx.hub, c0, "erin", NULL), SB_EINVAL);
    cr_assert_eq(sb_hub_broadcast(fx.hub, SB_OP_TEXT, "registered only", 15), 1);
    EXPECT_NONE(0);
    EXPECT(1, "registered only");

    cr_assert_eq(sb_hub_register(fx.hub, c0), 0);
    cr_assert_eq(sb_hub_conn_count(fx.hub), 2);
    cr_assert_eq(sb_hub_conn(fx.hub, sb_conn_id(c0)), c0);
    cr_assert_str_eq(sb_conn_user_id(c0), sb_conn_id(c0), "a fresh identity");
    cr_assert_eq(sb_hub_broadcast(fx.hub, SB_OP_TEXT, "both", 4), 2);
    EXPECT(0, "both");
    EXPECT(1, "both");
}

/* A WebSocket route of the embedder's own, whose connections join the hub
 * by hand. */
static void raw_open(sb_conn_t *conn, void *data)
{
    (void)data;
    record(sb_hub_register(fx.hub, conn));
    h_open(fx.hub, conn, NULL);
}

static void raw_close(sb_conn_t *conn, int code, const char *reason, size_t len, void *data)
{
    (void)reason;
    (void)len;
    (void)data;
    h_close(fx.hub, conn, code, NULL);
    sb_hub_unregister(fx.hub, conn);
}

Test(hub_registry, connections_of_a_route_of_ones_own)
{
    fx_start();
    sb_ws_handlers_t raw = {.on_open = raw_open, .on_close = raw_close};
    cr_assert_eq(sb_server_route_ws(fx.srv, "/raw", &raw), 0);
    connect_client();
    connect_client_to("/raw", 0);
    cr_assert_eq(fx.nresults, 1);
    cr_assert_eq(fx.results[0], 0, "sb_hub_register");
    cr_assert_eq(sb_hub_conn_count(fx.hub), 2);
    cr_assert_eq(sb_hub_conn(fx.hub, fx.cl[1].id), conn_of(1));
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    sb_room_join(r, conn_of(0));
    sb_room_join(r, conn_of(1));
    cr_assert_eq(sb_hub_broadcast(fx.hub, SB_OP_TEXT, "everyone", 8), 2);
    EXPECT(0, "everyone");
    EXPECT(1, "everyone");

    close_client(1);
    cr_assert(close_of(1)->registered);
    cr_assert_eq(sb_hub_conn_count(fx.hub), 1);
    cr_assert_null(sb_hub_conn(fx.hub, fx.cl[1].id));
    cr_assert_eq(sb_room_count(r), 1);
    cr_assert_eq(sb_room_broadcast(r, NULL, SB_OP_TEXT, "one", 3), 1);
    EXPECT(0, "one");
}

/* The registry keeps dense arrays (all connections; each user's connections)
 * with swap-removal. Connections change users and close at the front, the
 * back and the middle of those arrays; after every step every view agrees
 * with the model, including the indexes the arrays rely on. */
#define REG_CONNS 16
#define REG_USERS 4

typedef struct {
    int user[REG_CONNS]; /* -1: still its own user (its connection id) */
    int live[REG_CONNS];
} reg_model_t;

static void check_registry(const reg_model_t *m, const char *when)
{
    size_t live = 0, own = 0;
    for (size_t i = 0; i < REG_CONNS; i++) {
        if (!m->live[i]) {
            cr_assert_null(sb_hub_conn(fx.hub, fx.cl[i].id), "%s: closed %zu found", when, i);
            continue;
        }
        live++;
        own += m->user[i] < 0;
        sb_conn_t *c = conn_of(i);
        cr_assert_eq(sb_hub_conn(fx.hub, fx.cl[i].id), c, "%s", when);
        char want[24];
        snprintf(want, sizeof want, "u%d", m->user[i]);
        cr_assert_str_eq(sb_conn_user_id(c), m->user[i] < 0 ? fx.cl[i].id : want, "%s", when);
        /* Internals: both indexes point back at the connection. */
        const sb__hconn_t *hc = sb__hconn(c);
        cr_assert_eq(fx.hub->all[hc->all_index], hc, "%s: client %zu: stale all_index", when, i);
        /* A connection that is its own user has no user record. */
        cr_assert_eq(hc->user == NULL, m->user[i] < 0, "%s: client %zu: user record", when, i);
        if (hc->user)
            cr_assert_eq(hc->user->conns[hc->user_index], hc, "%s: client %zu: stale user_index",
                         when, i);
        if (m->user[i] < 0)
            EXPECT_USER(fx.cl[i].id, c);
    }
    size_t users = own;
    for (int u = 0; u < REG_USERS; u++) {
        char name[8];
        snprintf(name, sizeof name, "u%d", u);
        sb_conn_t *want[REG_CONNS];
        size_t n = 0;
        for (size_t i = 0; i < REG_CONNS; i++)
            if (m->live[i] && m->user[i] == u)
                want[n++] = conn_of(i);
        expect_user(name, want, n);
        users += n > 0;
    }
    cr_assert_eq(sb_hub_conn_count(fx.hub), live, "%s", when);
    cr_assert_eq(sb_hub_user_count(fx.hub), users, "%s", when);
}

Test(hub_registry, swap_removal_keeps_connections_and_users_consistent)
{
    fx_start();
    connect_clients(REG_CONNS);
    reg_model_t m;
    for (size_t i = 0; i < REG_CONNS; i++) {
        m.user[i] = -1;
        m.live[i] = 1;
    }
    check_registry(&m, "opened");
    uint32_t seed = 777;
    int closes = 0;
    for (int op = 0; op < 600; op++) {
        seed = seed * 1103515245u + 12345u;
        size_t i = (seed >> 8) % REG_CONNS;
        int u = (int)((seed >> 20) % REG_USERS);
        if (m.live[i]) {
            char name[8];
            snprintf(name, sizeof name, "u%d", u);
            cr_assert_eq(sb_hub_identify(fx.hub, conn_of(i), name, NULL), 0);
            m.user[i] = u;
        }
        if (op % 60 == 59 && closes < 9) {
            /* The first, the last, then a middle one of the hub's array. */
            uint32_t n = fx.hub->nall;
            uint32_t pos = closes % 3 == 0 ? 0 : closes % 3 == 1 ? n - 1 : n / 2;
            size_t victim = 0;
            while (fx.cl[victim].conn != fx.hub->all[pos]->conn)
                victim++;
            close_client(victim);
            m.live[victim] = 0;
            closes++;
            size_t left = (size_t)(REG_CONNS - closes);
            cr_assert_eq(sb_hub_broadcast(fx.hub, SB_OP_TEXT, "tick", 4), (int)left);
            for (size_t k = 0; k < REG_CONNS; k++)
                if (m.live[k])
                    EXPECT(k, "tick");
        }
        check_registry(&m, "churn");
    }
}

/* ---- fan-out ------------------------------------------------------------ */

Test(hub_fanout, broadcast_reaches_everyone_once)
{
    fx_start();
    connect_clients(4);
    cr_assert_eq(sb_hub_broadcast(fx.hub, SB_OP_TEXT, "hello", 5), 4);
    expect_shared_head((const size_t[]){0, 1, 2, 3}, 4);
    for (size_t i = 0; i < 4; i++)
        settle(i);
    cr_assert_eq(sb_hub_broadcast_json(fx.hub, "{\"a\":1}"), 4);
    for (size_t i = 0; i < 4; i++)
        EXPECT(i, "hello", "{\"a\":1}");

    cr_assert_eq(sb_hub_broadcast(fx.hub, SB_OP_BINARY, "\x00\x01\xff", 3), 4);
    for (size_t i = 0; i < 4; i++) {
        frame_t f;
        cr_assert(client_next(&fx.cl[i], &f));
        cr_assert_eq(f.opcode, SB_OP_BINARY);
        cr_assert(f.len == 3 && memcmp(f.data, "\x00\x01\xff", 3) == 0);
        free(f.data);
        EXPECT_NONE(i);
    }

    close_client(3);
    cr_assert_eq(sb_hub_broadcast(fx.hub, SB_OP_TEXT, "after", 5), 3);
    for (size_t i = 0; i < 3; i++)
        EXPECT(i, "after");
}

Test(hub_fanout, send_user_reaches_only_that_users_connections)
{
    fx_start();
    connect_clients(4);
    sb_hub_identify(fx.hub, conn_of(0), "alice", NULL);
    sb_hub_identify(fx.hub, conn_of(2), "alice", NULL);
    sb_hub_identify(fx.hub, conn_of(1), "bob", NULL);

    cr_assert_eq(sb_hub_send_user(fx.hub, "alice", SB_OP_TEXT, "for alice", 9), 2);
    expect_shared_head((const size_t[]){0, 2}, 2);
    cr_assert_eq(sb_hub_send_user(fx.hub, "bob", SB_OP_TEXT, "for bob", 7), 1);
    cr_assert_eq(sb_hub_send_user(fx.hub, "nobody", SB_OP_TEXT, "lost", 4), 0);
    cr_assert_eq(sb_hub_send_user(fx.hub, fx.cl[3].id, SB_OP_TEXT, "for 3", 5), 1,
                 "an unidentified connection is the user of its own id");
    EXPECT(0, "for alice");
    EXPECT(1, "for bob");
    EXPECT(2, "for alice");
    EXPECT(3, "for 3");
}

Test(hub_fanout, send_msg_to_a_list)
{
    fx_start();
    connect_clients(3);
    sb_msg_t *m = sb_msg_new(SB_OP_TEXT, "listed", 6);
    cr_assert_not_null(m);
    sb_conn_t *list[] = {conn_of(2), conn_of(0)};
    cr_assert_eq(sb_hub_send_msg(fx.hub, list, 2, m), 2);
    cr_assert_eq(m->refs, 3);
    cr_assert_eq(sb_hub_send_msg(fx.hub, list, 0, m), 0);
    settle(0);
    settle(2);
    cr_assert_eq(m->refs, 1);
    sb_msg_unref(m);
    EXPECT(0, "listed");
    EXPECT_NONE(1);
    EXPECT(2, "listed");
}

/* ---- connections closing around a fan-out ------------------------------- */

/* Records, from inside the callback that fans out, whether the client that
 * is about to go is still registered and whether any on_close ran. */
static size_t probe;

static void fanout_and_probe(sb_conn_t *conn, const char *msg, size_t len)
{
    run_commands(conn, msg, len);
    record(sb_hub_conn(fx.hub, fx.cl[probe].id) != NULL);
    record((int)fx.ncloses);
    record((int)sb_room_count(sb_hub_room(fx.hub, "r")));
}

Test(hub_closing, a_client_gone_during_a_broadcast)
{
    fx_start();
    connect_clients(4);
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    for (size_t i = 0; i < 4; i++)
        sb_room_join(r, conn_of(i));

    /* The socket is closed, the loop has not run since: the server cannot
     * know, queues the message, and finds out afterwards. */
    close(fx.cl[3].fd);
    fx.cl[3].fd = -1;
    cr_assert_eq(sb_room_broadcast(r, NULL, SB_OP_TEXT, "after-close", 11), 4);
    WAIT_UNTIL(fx.cl[3].conn == NULL);
    const close_rec_t *rec = close_of(3);
    cr_assert_eq(rec->code, SB_CLOSE_ABNORMAL);
    cr_assert(rec->registered);
    cr_assert_null(sb_hub_conn(fx.hub, fx.cl[3].id));
    cr_assert_eq(sb_room_count(r), 3);
    cr_assert_eq(sb_hub_conn_count(fx.hub), 3);
    for (size_t i = 0; i < 3; i++)
        EXPECT(i, "after-close");

    /* Now the fan-out runs in a callback, in the iteration that may also
     * read the other socket's end: either way on_close comes after it. */
    fx.on_msg = fanout_and_probe;
    probe = 2;
    close(fx.cl[2].fd);
    fx.cl[2].fd = -1;
    client_say(0, "all r again");
    cr_assert_eq(fx.nresults, 4);
    cr_assert(fx.results[0] == 2 || fx.results[0] == 3, "reached %d", fx.results[0]);
    cr_assert_eq(fx.results[1], 1, "still registered during the fan-out");
    cr_assert_eq(fx.results[2], 1, "no on_close during the fan-out");
    cr_assert_eq(fx.results[3], 3);
    WAIT_UNTIL(fx.cl[2].conn == NULL);
    cr_assert_eq(close_of(2)->in_callback, 0);
    cr_assert_eq(sb_room_count(r), 2);
    EXPECT(0, "again");
    EXPECT(1, "again");
}

Test(hub_closing, a_slow_consumer_is_closed_after_the_fanout_not_during)
{
    /* Past 16 queued bytes behind the one being written, a connection is a
     * slow consumer. */
    fx_start_with(16);
    connect_clients(3);
    size_t slow = connect_client_rcvbuf(4096);
    int small = 4096;
    cr_assert_eq(setsockopt(conn_of(slow)->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    for (size_t i = 0; i < 4; i++)
        sb_room_join(r, conn_of(i));

    /* 1 MiB to everyone: the others read it, the slow one does not. */
    size_t big_len = 1 << 20;
    uint8_t *big = calloc(1, big_len);
    cr_assert_not_null(big);
    cr_assert_eq(sb_room_broadcast(r, NULL, SB_OP_BINARY, big, big_len), 4);
    free(big);
    for (size_t i = 0; i < 3; i++) {
        frame_t f;
        cr_assert(client_next(&fx.cl[i], &f));
        cr_assert_eq(f.len, big_len);
        free(f.data);
        settle(i);
    }
    cr_assert_gt(sb_conn_queued_bytes(conn_of(slow)), 0, "the slow client's output is stuck");

    fx.on_msg = fanout_and_probe;
    probe = slow;
    client_say(0, "all r hello-everyone-in-the-room");
    cr_assert_eq(fx.nresults, 4);
    cr_assert_eq(fx.results[0], 3, "the slow consumer is not counted as reached");
    cr_assert_eq(fx.results[1], 1, "still registered during the fan-out");
    cr_assert_eq(fx.results[2], 0, "no on_close during the fan-out");
    cr_assert_eq(fx.results[3], 4, "still in the room during the fan-out");

    WAIT_UNTIL(fx.cl[slow].conn == NULL);
    const close_rec_t *rec = close_of(slow);
    cr_assert_eq(rec->code, SB_CLOSE_POLICY);
    cr_assert_eq(rec->in_callback, 0);
    cr_assert(rec->registered);
    cr_assert_eq(rec->rooms, 1);
    cr_assert_null(sb_hub_conn(fx.hub, fx.cl[slow].id));
    cr_assert_eq(sb_room_count(r), 3);
    sb_metrics_t m;
    sb_server_metrics(fx.srv, &m);
    cr_assert_eq(m.slow_consumers, 1);
    for (size_t i = 0; i < 3; i++)
        EXPECT(i, "hello-everyone-in-the-room");
}

Test(hub_closing, a_connection_closing_in_a_callback_is_skipped)
{
    fx_start();
    connect_clients(3);
    fx.on_msg = run_commands;
    for (size_t i = 0; i < 3; i++)
        client_say(i, "join r");
    char cmd[64];
    snprintf(cmd, sizeof cmd, "kick %s;all r after-kick", fx.cl[2].id);
    client_say(0, cmd);
    cr_assert_eq(fx.nresults, 5);
    cr_assert_eq(fx.results[3], 0, "sb_conn_close");
    cr_assert_eq(fx.results[4], 2, "a closing connection is not reached");
    cr_assert_not_null(fx.cl[2].conn, "closing, not yet closed");
    cr_assert_eq(sb_room_count(sb_hub_room(fx.hub, "r")), 3);

    expect_close_frame(2, 4000, "kicked");
    client_send(2, SB_OP_CLOSE, "\x0f\xa0", 2);
    close_client(2);
    cr_assert_eq(close_of(2)->code, 4000);
    cr_assert_eq(sb_room_count(sb_hub_room(fx.hub, "r")), 2);
    EXPECT(0, "after-kick");
    EXPECT(1, "after-kick");
}

/* What apps do in on_close: tell each of the connection's rooms it left.
 * The connection itself is closed by then, so it is not reached. */
static void say_goodbye_to_rooms(sb_conn_t *conn)
{
    sb_room_t *rooms[8];
    size_t n = sb_conn_rooms(conn, rooms, COUNT(rooms));
    for (size_t k = 0; k < n && k < COUNT(rooms); k++) {
        char text[80];
        snprintf(text, sizeof text, "left %s", sb_room_name(rooms[k]));
        record(sb_room_broadcast(rooms[k], NULL, SB_OP_TEXT, text, strlen(text)));
    }
}

/* ... or removes them. */
static void remove_own_rooms(sb_conn_t *conn)
{
    sb_room_t *rooms[8];
    size_t n = sb_conn_rooms(conn, rooms, COUNT(rooms));
    char names[8][80];
    for (size_t k = 0; k < n && k < COUNT(rooms); k++)
        snprintf(names[k], sizeof names[k], "%s", sb_room_name(rooms[k]));
    for (size_t k = 0; k < n && k < COUNT(rooms); k++)
        record(sb_hub_room_remove(fx.hub, names[k]));
}

Test(hub_closing, on_close_may_fan_out_to_and_remove_its_rooms)
{
    fx_start();
    connect_clients(4);
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    sb_room_t *s = sb_hub_room_create(fx.hub, "s");
    for (size_t i = 0; i < 3; i++)
        sb_room_join(r, conn_of(i));
    sb_room_join(s, conn_of(2));
    sb_room_join(s, conn_of(0));

    fx.on_close_hook = say_goodbye_to_rooms;
    close_client(2);
    cr_assert_eq(fx.nresults, 2);
    cr_assert_eq(fx.results[0], 2, "r: the closed connection is not reached");
    cr_assert_eq(fx.results[1], 1, "s");
    cr_assert_eq(sb_room_count(r), 2);
    cr_assert_eq(sb_room_count(s), 1);
    EXPECT(0, "left r", "left s");
    EXPECT(1, "left r");
    EXPECT_NONE(3);

    fx.on_close_hook = remove_own_rooms;
    fx.nresults = 0;
    sb_room_join(s, conn_of(1));
    close_client(0);
    cr_assert_eq(fx.nresults, 2);
    cr_assert_eq(fx.results[0], 0);
    cr_assert_eq(fx.results[1], 0);
    cr_assert_null(sb_hub_room(fx.hub, "r"));
    cr_assert_null(sb_hub_room(fx.hub, "s"));
    cr_assert_eq(sb_conn_rooms(conn_of(1), NULL, 0), 0);
    cr_assert_eq(sb_hub_conn_count(fx.hub), 2);
}

/* ---- from another thread ------------------------------------------------ */

#define ASYNC_MANY 100

typedef struct {
    sb_hub_t *hub;
    sb_server_t *srv;
    int rc[6];
    int done; /* set on the loop thread, after everything posted before it */
} async_job_t;

static void mark_done(void *arg)
{
    *(int *)arg = 1;
}

static void *post_everything(void *arg)
{
    async_job_t *j = arg;
    j->rc[0] = sb_hub_broadcast_async(j->hub, SB_OP_TEXT, "to-all", 6);
    j->rc[1] = sb_hub_send_user_async(j->hub, "alice", SB_OP_TEXT, "to-alice", 8);
    j->rc[2] = sb_room_broadcast_async(j->hub, "r", SB_OP_TEXT, "to-r", 4);
    j->rc[3] = sb_room_broadcast_async(j->hub, "no-such-room", SB_OP_TEXT, "lost", 4);
    for (int k = 0; k < ASYNC_MANY; k++) {
        char text[16];
        int n = snprintf(text, sizeof text, "n-%d", k);
        int r = sb_hub_broadcast_async(j->hub, SB_OP_TEXT, text, (size_t)n);
        if (r)
            j->rc[4] = r;
    }
    j->rc[5] = sb_server_post(j->srv, mark_done, &j->done);
    return NULL;
}

Test(hub_async, messages_posted_from_another_thread_arrive)
{
    fx_start();
    connect_clients(3);
    sb_hub_identify(fx.hub, conn_of(1), "alice", NULL);
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    sb_room_join(r, conn_of(0));
    sb_room_join(r, conn_of(2));

    async_job_t job = {.hub = fx.hub, .srv = fx.srv};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, post_everything, &job), 0);
    WAIT_UNTIL(job.done); /* the loop runs while the thread posts */
    pthread_join(t, NULL);
    for (size_t k = 0; k < COUNT(job.rc); k++)
        cr_assert_eq(job.rc[k], 0, "call %zu returned %d", k, job.rc[k]);

    static char texts[ASYNC_MANY][16];
    const char *want[2 + ASYNC_MANY];
    for (int k = 0; k < ASYNC_MANY; k++) {
        snprintf(texts[k], sizeof texts[k], "n-%d", k);
        want[2 + k] = texts[k];
    }
    want[0] = "to-all";
    want[1] = "to-r";
    expect_texts(0, want, COUNT(want));
    expect_texts(2, want, COUNT(want));
    want[1] = "to-alice";
    expect_texts(1, want, COUNT(want));
}

static void *post_after_stop(void *arg)
{
    async_job_t *j = arg;
    j->rc[0] = sb_hub_broadcast_async(j->hub, SB_OP_TEXT, "late", 4);
    j->rc[1] = sb_hub_send_user_async(j->hub, "alice", SB_OP_TEXT, "late", 4);
    j->rc[2] = sb_room_broadcast_async(j->hub, "r", SB_OP_TEXT, "late", 4);
    return NULL;
}

Test(hub_async, after_the_server_stopped_they_return_closed)
{
    fx_start();
    connect_clients(2);
    sb_hub_room_create(fx.hub, "r");
    fx_stop();
    cr_assert_eq(sb_hub_broadcast_async(fx.hub, SB_OP_TEXT, "late", 4), SB_ECLOSED);
    cr_assert_eq(sb_hub_send_user_async(fx.hub, "alice", SB_OP_TEXT, "late", 4), SB_ECLOSED);
    cr_assert_eq(sb_room_broadcast_async(fx.hub, "r", SB_OP_TEXT, "late", 4), SB_ECLOSED);

    async_job_t job = {.hub = fx.hub, .srv = fx.srv};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, post_after_stop, &job), 0);
    pthread_join(t, NULL);
    for (size_t k = 0; k < 3; k++)
        cr_assert_eq(job.rc[k], SB_ECLOSED, "call %zu returned %d", k, job.rc[k]);
}

/* ---- shutdown ----------------------------------------------------------- */

static char hook_log[8];
static size_t hook_conns[2];
static int hook_reached[2];

/* data is the hook's one-letter name: logs it, and says goodbye. */
static void goodbye_hook(sb_hub_t *hub, void *data)
{
    const char *name = data;
    size_t k = strlen(hook_log);
    cr_assert_lt(k, 2, "a hook ran twice");
    hook_log[k] = name[0];
    hook_conns[k] = sb_hub_conn_count(hub);
    char text[16];
    int n = snprintf(text, sizeof text, "bye-%s", name);
    hook_reached[k] = sb_hub_broadcast(hub, SB_OP_TEXT, text, (size_t)n);
}

static void run_until_stopped(void)
{
    int spin = 0;
    while (spin++ < SPIN_MAX && sb_server_run_once(fx.srv, 1) > 0)
        ;
    cr_assert_lt(spin, SPIN_MAX, "the server did not stop");
    fx.stopped = 1;
}

Test(hub_shutdown, hooks_run_in_order_while_connections_are_open)
{
    fx_start();
    connect_clients(3);
    cr_assert_eq(sb_hub_on_shutdown(fx.hub, goodbye_hook, "a"), 0);
    cr_assert_eq(sb_hub_on_shutdown(fx.hub, goodbye_hook, "b"), 0);
    sb_hub_shutdown(fx.hub, 1000);
    sb_hub_shutdown(fx.hub, 1000); /* twice: the hooks still run once */
    cr_assert_str_eq(hook_log, "", "the stop begins on the loop thread");

    for (size_t i = 0; i < 3; i++) {
        frame_t f;
        for (size_t k = 0; k < 2; k++) {
            cr_assert(client_next(&fx.cl[i], &f));
            cr_assert_eq(f.opcode, SB_OP_TEXT);
            cr_assert_str_eq((char *)f.data, k ? "bye-b" : "bye-a", "client %zu", i);
            free(f.data);
        }
        expect_close_frame(i, SB_CLOSE_GOING_AWAY, "server shutting down");
        client_send(i, SB_OP_CLOSE, "\x03\xe9", 2);
    }
    cr_assert_str_eq(hook_log, "ab");
    for (size_t k = 0; k < 2; k++) {
        cr_assert_eq(hook_conns[k], 3, "hook %zu ran with the connections open", k);
        cr_assert_eq(hook_reached[k], 3);
    }
    for (size_t i = 0; i < 3; i++)
        close_client(i);
    run_until_stopped();
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(close_of(i)->code, SB_CLOSE_GOING_AWAY);
    cr_assert_eq(sb_hub_conn_count(fx.hub), 0);
    cr_assert_str_eq(hook_log, "ab");
}

Test(hub_shutdown, sb_server_stop_runs_the_hooks_too)
{
    fx_start();
    cr_assert_eq(sb_hub_on_shutdown(fx.hub, goodbye_hook, "x"), 0);
    cr_assert_eq(sb_hub_on_shutdown(fx.hub, goodbye_hook, "y"), 0);
    sb_server_stop(fx.srv, 1000);
    run_until_stopped();
    cr_assert_str_eq(hook_log, "xy");
    cr_assert_eq(hook_reached[0], 0);
}

/* ---- metrics ------------------------------------------------------------ */

Test(hub_metrics, count_connections_messages_and_bytes)
{
    fx_start();
    sb_metrics_t m;
    sb_server_metrics(fx.srv, &m);
    cr_assert_eq(m.connections + m.connections_total + m.messages_in + m.messages_out, 0);
    cr_assert_eq(m.bytes_in + m.bytes_out + m.slow_consumers, 0);

    connect_clients(3);
    sb_server_metrics(fx.srv, &m);
    cr_assert_eq(m.connections, 3);
    cr_assert_eq(m.connections_total, 3);
    cr_assert_eq(m.messages_out, 0, "the handshake is not a message");

    client_say(0, "abcde");
    client_say(1, "1234567");
    size_t before = fx.nmsgs;
    size_t big = 70000; /* a 64-bit length on the wire */
    uint8_t *payload = calloc(1, big);
    cr_assert_not_null(payload);
    client_send(2, SB_OP_BINARY, payload, big);
    free(payload);
    WAIT_UNTIL(fx.nmsgs == before + 1);
    sb_server_metrics(fx.srv, &m);
    cr_assert_eq(m.messages_in, 3);
    cr_assert_eq(m.bytes_in, 5 + 7 + big);

    cr_assert_eq(sb_hub_broadcast(fx.hub, SB_OP_TEXT, "0123456789", 10), 3);
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    sb_room_join(r, conn_of(0));
    sb_room_join(r, conn_of(1));
    cr_assert_eq(sb_room_broadcast(r, NULL, SB_OP_TEXT, "xy", 2), 2);
    cr_assert_eq(sb_hub_send_user(fx.hub, fx.cl[2].id, SB_OP_BINARY, "u", 1), 1);
    sb_server_metrics(fx.srv, &m);
    cr_assert_eq(m.messages_out, 3 + 2 + 1);
    cr_assert_eq(m.bytes_out, 30 + 4 + 1, "payload bytes");
    cr_assert_eq(m.messages_in, 3, "sending counts nothing in");

    close_client(2);
    sb_server_metrics(fx.srv, &m);
    cr_assert_eq(m.connections, 2);
    cr_assert_eq(m.connections_total, 3);
    connect_client();
    sb_server_metrics(fx.srv, &m);
    cr_assert_eq(m.connections, 3);
    cr_assert_eq(m.connections_total, 4);
    cr_assert_eq(m.slow_consumers, 0);
}
