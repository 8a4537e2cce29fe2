/* test_room.c — rooms (src/hub/room.c) on a real hub: create, get, list and
 * remove; join, leave and membership from both sides (the room's dense member
 * array and each connection's list of rooms, kept in step by swap-removal);
 * fan-out to a room checked on the client sockets; membership changing from
 * inside callbacks between fan-outs; and the room's view of the history.
 * The harness (a server on 127.0.0.1 port 0, raw clients) is hub_harness.h. */
#include "hub_harness.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

TestSuite(room, .fini = fx_fini);
TestSuite(room_members, .fini = fx_fini);
TestSuite(room_fanout, .fini = fx_fini);
TestSuite(room_churn, .fini = fx_fini);
TestSuite(room_history, .fini = fx_fini);

/* ---- helpers ------------------------------------------------------------ */

static int rooms_of_has(sb_conn_t *conn, const sb_room_t *room)
{
    sb_room_t *rooms[64];
    size_t n = sb_conn_rooms(conn, rooms, COUNT(rooms));
    cr_assert_leq(n, COUNT(rooms));
    int found = 0;
    for (size_t i = 0; i < n; i++)
        found += rooms[i] == room;
    cr_assert_leq(found, 1, "a room is listed twice in sb_conn_rooms");
    return found;
}

static int members_have(const sb_room_t *room, const sb_conn_t *conn)
{
    sb_conn_t *members[MAX_CLIENTS];
    size_t n = sb_room_members(room, members, COUNT(members));
    cr_assert_leq(n, COUNT(members));
    int found = 0;
    for (size_t i = 0; i < n; i++)
        found += members[i] == conn;
    cr_assert_leq(found, 1, "a connection is listed twice in sb_room_members");
    return found;
}

/* ---- create, get, list, remove ------------------------------------------ */

Test(room, create_get_list_remove)
{
    fx_start();
    sb_room_t *a = sb_hub_room_create(fx.hub, "lobby");
    sb_room_t *b = sb_hub_room_create(fx.hub, "games");
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_neq(a, b);
    cr_assert_str_eq(sb_room_name(a), "lobby");
    cr_assert_eq(sb_hub_room_create(fx.hub, "lobby"), a, "create returns the existing room");
    cr_assert_eq(sb_hub_room(fx.hub, "lobby"), a);
    cr_assert_eq(sb_hub_room(fx.hub, "games"), b);
    cr_assert_null(sb_hub_room(fx.hub, "Lobby"), "names are case-sensitive");
    cr_assert_null(sb_hub_room(fx.hub, "nowhere"));
    cr_assert_eq(sb_room_count(a), 0);

    sb_room_t *list[4] = {0};
    cr_assert_eq(sb_hub_rooms(fx.hub, list, COUNT(list)), 2);
    cr_assert((list[0] == a && list[1] == b) || (list[0] == b && list[1] == a));
    sb_room_t *one[1] = {0};
    cr_assert_eq(sb_hub_rooms(fx.hub, one, 1), 2, "returns the total, fills at most max");
    cr_assert(one[0] == a || one[0] == b);
    cr_assert_eq(sb_hub_rooms(fx.hub, NULL, 0), 2);

    int tag = 7;
    sb_room_set_data(b, &tag);
    cr_assert_eq(sb_room_get_data(b), &tag);
    cr_assert_null(sb_room_get_data(a));

    cr_assert_eq(sb_hub_room_remove(fx.hub, "lobby"), 0);
    cr_assert_null(sb_hub_room(fx.hub, "lobby"));
    cr_assert_eq(sb_hub_room_remove(fx.hub, "lobby"), SB_EINVAL);
    cr_assert_eq(sb_hub_room_remove(fx.hub, "nowhere"), SB_EINVAL);
    cr_assert_eq(sb_hub_rooms(fx.hub, list, COUNT(list)), 1);
    cr_assert_eq(list[0], b);

    sb_room_t *again = sb_hub_room_create(fx.hub, "lobby");
    cr_assert_not_null(again);
    cr_assert_eq(sb_room_count(again), 0);
    cr_assert_eq(sb_hub_rooms(fx.hub, NULL, 0), 2);
}

Test(room, names_must_be_1_to_64_bytes)
{
    fx_start();
    char name[80];
    memset(name, 'n', sizeof name);
    name[64] = 0;
    sb_room_t *longest = sb_hub_room_create(fx.hub, name);
    cr_assert_not_null(longest, "64 bytes is allowed");
    cr_assert_eq(strlen(sb_room_name(longest)), 64);
    name[64] = 'n';
    name[65] = 0;
    cr_assert_null(sb_hub_room_create(fx.hub, name), "65 bytes is too long");
    cr_assert_null(sb_hub_room(fx.hub, name));
    cr_assert_null(sb_hub_room_create(fx.hub, ""));
    cr_assert_null(sb_hub_room_create(fx.hub, NULL));
    cr_assert_not_null(sb_hub_room_create(fx.hub, "x"));
    cr_assert_not_null(sb_hub_room_create(fx.hub, "r\xc3\xa9union"), "names may be UTF-8");
    cr_assert_eq(sb_hub_rooms(fx.hub, NULL, 0), 3, "no room was made of a bad name");
}

/* ---- membership --------------------------------------------------------- */

Test(room_members, join_is_idempotent_leave_has_members_count)
{
    fx_start();
    connect_clients(3);
    sb_conn_t *c0 = conn_of(0), *c1 = conn_of(1), *c2 = conn_of(2);
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    sb_room_t *s = sb_hub_room_create(fx.hub, "s");

    cr_assert_eq(sb_room_join(r, c0), 0);
    cr_assert_eq(sb_room_join(r, c0), 0, "joining twice is not an error");
    cr_assert_eq(sb_room_count(r), 1, "joining twice counts once");
    cr_assert_eq(sb_conn_rooms(c0, NULL, 0), 1);
    cr_assert_eq(sb_room_join(r, c1), 0);
    cr_assert_eq(sb_room_join(s, c1), 0);
    cr_assert_eq(sb_room_join(s, c2), 0);

    cr_assert(sb_room_has(r, c0) && sb_room_has(r, c1) && !sb_room_has(r, c2));
    cr_assert(!sb_room_has(s, c0) && sb_room_has(s, c1) && sb_room_has(s, c2));
    cr_assert_eq(sb_room_count(r), 2);
    cr_assert_eq(sb_room_count(s), 2);
    cr_assert(members_have(r, c0) && members_have(r, c1) && !members_have(r, c2));
    sb_conn_t *first[1];
    cr_assert_eq(sb_room_members(r, first, 1), 2, "returns the count, fills at most max");
    cr_assert(first[0] == c0 || first[0] == c1);
    cr_assert_eq(sb_conn_rooms(c1, NULL, 0), 2);
    cr_assert(rooms_of_has(c1, r) && rooms_of_has(c1, s));
    cr_assert_eq(sb_conn_rooms(c2, NULL, 0), 1);

    cr_assert_eq(sb_room_leave(r, c0), 0);
    cr_assert_eq(sb_room_leave(r, c0), SB_EINVAL, "leaving a room one is not in");
    cr_assert_eq(sb_room_leave(r, c2), SB_EINVAL);
    cr_assert(!sb_room_has(r, c0));
    cr_assert_eq(sb_room_count(r), 1);
    cr_assert_eq(sb_conn_rooms(c0, NULL, 0), 0);
    cr_assert(!members_have(r, c0));

    cr_assert_eq(sb_room_leave(s, c1), 0);
    cr_assert(rooms_of_has(c1, r) && !rooms_of_has(c1, s));
    cr_assert_eq(sb_room_join(s, c1), 0, "one can join again after leaving");
    cr_assert(sb_room_has(s, c1));
    cr_assert_eq(sb_room_count(s), 2);
}

Test(room_members, removing_a_room_takes_it_off_its_members_lists)
{
    fx_start();
    connect_clients(4);
    sb_room_t *x = sb_hub_room_create(fx.hub, "x");
    sb_room_t *y = sb_hub_room_create(fx.hub, "y");
    sb_room_t *z = sb_hub_room_create(fx.hub, "z");
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(sb_room_join(y, conn_of(i)), 0);
        cr_assert_eq(sb_room_join(x, conn_of(i)), 0);
        if (i % 2)
            cr_assert_eq(sb_room_join(z, conn_of(i)), 0);
    }
    cr_assert_eq(sb_hub_room_remove(fx.hub, "x"), 0);
    for (size_t i = 0; i < 4; i++) {
        sb_room_t *rooms[4];
        size_t n = sb_conn_rooms(conn_of(i), rooms, COUNT(rooms));
        cr_assert_eq(n, i % 2 ? 2 : 1, "client %zu", i);
        for (size_t k = 0; k < n; k++)
            cr_assert(rooms[k] == y || rooms[k] == z, "client %zu still lists a removed room", i);
        cr_assert(sb_room_has(y, conn_of(i)));
        cr_assert_eq(sb_room_has(z, conn_of(i)), (int)(i % 2));
    }
    cr_assert_eq(sb_room_count(y), 4);
    cr_assert_eq(sb_room_count(z), 2);
    cr_assert_eq(sb_room_broadcast(y, NULL, SB_OP_TEXT, "still here", 10), 4);
    for (size_t i = 0; i < 4; i++)
        EXPECT(i, "still here");

    /* Connections that were in the removed room close cleanly afterwards
     * (ASan would see a stale membership), and leave the others. */
    close_client(1);
    close_client(2);
    cr_assert_eq(sb_room_count(y), 2);
    cr_assert_eq(sb_room_count(z), 1);
    cr_assert(sb_room_has(z, conn_of(3)));
    cr_assert_eq(sb_hub_room_remove(fx.hub, "y"), 0);
    cr_assert_eq(sb_conn_rooms(conn_of(0), NULL, 0), 0);
    cr_assert_eq(sb_conn_rooms(conn_of(3), NULL, 0), 1);
}

Test(room_members, an_unregistered_connection_cannot_join)
{
    fx_start();
    connect_clients(1);
    sb_conn_t *c = conn_of(0);
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    cr_assert_eq(sb_room_join(r, c), 0);
    sb_hub_unregister(fx.hub, c);
    cr_assert_eq(sb_room_count(r), 0, "unregistering leaves every room");
    cr_assert(!sb_room_has(r, c));
    cr_assert_eq(sb_room_join(r, c), SB_EINVAL);
    cr_assert_eq(sb_room_leave(r, c), SB_EINVAL);
    cr_assert_eq(sb_conn_rooms(c, NULL, 0), 0);
    cr_assert_eq(sb_hub_register(fx.hub, c), 0);
    cr_assert_eq(sb_room_join(r, c), 0);
    cr_assert_eq(sb_room_count(r), 1);
}

/* Every view of membership agrees with the model in[][]: the room's member
 * array, its count, sb_room_has, each connection's list of rooms, and the
 * index each membership keeps into its room's array (what swap-removal must
 * keep up to date, or a later leave removes the wrong member). */
#define CHURN_CONNS 24
#define CHURN_ROOMS 4

typedef struct {
    sb_room_t *room[CHURN_ROOMS];
    int in[CHURN_CONNS][CHURN_ROOMS];
    int live[CHURN_CONNS];
} model_t;

static void check_model(const model_t *m, const char *when)
{
    for (size_t r = 0; r < CHURN_ROOMS; r++) {
        sb_conn_t *members[CHURN_CONNS + 1];
        size_t n = sb_room_members(m->room[r], members, COUNT(members));
        size_t want = 0;
        for (size_t i = 0; i < CHURN_CONNS; i++)
            want += m->live[i] && m->in[i][r];
        cr_assert_eq(n, want, "%s: room %zu has %zu members, expected %zu", when, r, n, want);
        cr_assert_eq(sb_room_count(m->room[r]), want, "%s", when);
        int seen[CHURN_CONNS] = {0};
        for (size_t k = 0; k < n; k++) {
            size_t i = 0;
            while (i < CHURN_CONNS && fx.cl[i].conn != members[k])
                i++;
            cr_assert_lt(i, CHURN_CONNS, "%s: room %zu lists a closed connection", when, r);
            cr_assert(m->in[i][r], "%s: room %zu lists client %zu, not a member", when, r, i);
            cr_assert_not(seen[i]++, "%s: room %zu lists client %zu twice", when, r, i);
        }
    }
    for (size_t i = 0; i < CHURN_CONNS; i++) {
        if (!m->live[i])
            continue;
        sb_conn_t *c = conn_of(i);
        size_t want = 0;
        for (size_t r = 0; r < CHURN_ROOMS; r++) {
            want += m->in[i][r];
            cr_assert_eq(sb_room_has(m->room[r], c), m->in[i][r], "%s: has(room %zu, %zu)", when, r,
                         i);
            cr_assert_eq(rooms_of_has(c, m->room[r]), m->in[i][r], "%s: rooms of %zu", when, i);
        }
        cr_assert_eq(sb_conn_rooms(c, NULL, 0), want, "%s: client %zu", when, i);
        /* Internals: each membership's index points back at the connection. */
        const sb__hconn_t *hc = sb__hconn(c);
        for (uint16_t k = 0; k < hc->nrooms; k++) {
            const sb__member_t *mb = &hc->rooms[k];
            cr_assert_lt(mb->index, mb->room->n, "%s", when);
            cr_assert_eq(mb->room->members[mb->index], hc, "%s: client %zu's index in %s is stale",
                         when, i, mb->room->name);
        }
    }
}

static void model_join(model_t *m, size_t i, size_t r)
{
    cr_assert_eq(sb_room_join(m->room[r], conn_of(i)), 0);
    m->in[i][r] = 1;
}

static void model_leave(model_t *m, size_t i, size_t r)
{
    cr_assert_eq(sb_room_leave(m->room[r], conn_of(i)), m->in[i][r] ? 0 : SB_EINVAL);
    m->in[i][r] = 0;
}

/* The member at position pos of the room's array leaves. */
static void model_leave_at(model_t *m, size_t r, size_t pos)
{
    sb_conn_t *members[CHURN_CONNS];
    size_t n = sb_room_members(m->room[r], members, COUNT(members));
    cr_assert_lt(pos, n);
    size_t i = 0;
    while (fx.cl[i].conn != members[pos])
        i++;
    model_leave(m, i, r);
}

Test(room_members, swap_removal_keeps_every_view_consistent)
{
    fx_start();
    connect_clients(CHURN_CONNS);
    model_t m = {0};
    static const char *names[CHURN_ROOMS] = {"r0", "r1", "r2", "r3"};
    for (size_t r = 0; r < CHURN_ROOMS; r++)
        m.room[r] = sb_hub_room_create(fx.hub, names[r]);
    for (size_t i = 0; i < CHURN_CONNS; i++)
        m.live[i] = 1;

    /* Everyone in every room (joined in different orders per room), then
     * leave r0 from the front, r1 from the back, r2 from the middle. */
    for (size_t r = 0; r < CHURN_ROOMS; r++)
        for (size_t k = 0; k < CHURN_CONNS; k++)
            model_join(&m, r % 2 ? CHURN_CONNS - 1 - k : (k * 7 + r) % CHURN_CONNS, r);
    check_model(&m, "all joined");
    for (size_t k = 0; k < CHURN_CONNS; k++) {
        model_leave_at(&m, 0, 0);
        model_leave_at(&m, 1, CHURN_CONNS - 1 - k);
        model_leave_at(&m, 2, (CHURN_CONNS - k) / 2);
        check_model(&m, "draining r0 (first), r1 (last), r2 (middle)");
    }
    cr_assert_eq(sb_room_count(m.room[0]) + sb_room_count(m.room[1]) + sb_room_count(m.room[2]), 0);

    /* Random joins and leaves (a fixed LCG), two connections closing and a
     * room removed and made again on the way. */
    uint32_t seed = 12345;
    for (int op = 0; op < 1500; op++) {
        seed = seed * 1103515245u + 12345u;
        size_t i = (seed >> 8) % CHURN_CONNS;
        size_t r = (seed >> 20) % CHURN_ROOMS;
        if (!m.live[i])
            continue;
        if ((seed >> 16) & 1)
            model_join(&m, i, r);
        else
            model_leave(&m, i, r);
        if (op == 500 || op == 900) {
            size_t victim = op == 500 ? 5 : 17;
            close_client(victim);
            m.live[victim] = 0;
        }
        if (op == 700) {
            cr_assert_eq(sb_hub_room_remove(fx.hub, "r1"), 0);
            m.room[1] = sb_hub_room_create(fx.hub, "r1");
            for (size_t k = 0; k < CHURN_CONNS; k++)
                m.in[k][1] = 0;
        }
        check_model(&m, "random churn");
    }
}

/* ---- fan-out to a room -------------------------------------------------- */

Test(room_fanout, reaches_exactly_the_members_once)
{
    fx_start();
    connect_clients(5);
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    sb_room_t *empty = sb_hub_room_create(fx.hub, "empty");
    for (size_t i = 0; i < 3; i++)
        sb_room_join(r, conn_of(i));

    cr_assert_eq(sb_room_broadcast(r, NULL, SB_OP_TEXT, "to r", 4), 3);
    cr_assert_eq(sb_room_broadcast(r, conn_of(1), SB_OP_TEXT, "not 1", 5), 2);
    cr_assert_eq(sb_room_broadcast(r, conn_of(4), SB_OP_TEXT, "except outsider", 15), 3);
    cr_assert_eq(sb_room_broadcast_json(r, conn_of(0), "{\"n\":1}"), 2);
    cr_assert_eq(sb_room_broadcast(empty, NULL, SB_OP_TEXT, "nobody", 6), 0);
    EXPECT(0, "to r", "not 1", "except outsider");
    EXPECT(1, "to r", "except outsider", "{\"n\":1}");
    EXPECT(2, "to r", "not 1", "except outsider", "{\"n\":1}");
    EXPECT_NONE(3);
    EXPECT_NONE(4);
}

Test(room_fanout, binary_and_every_length_encoding_arrive_intact)
{
    fx_start();
    connect_clients(3);
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    sb_room_join(r, conn_of(0));
    sb_room_join(r, conn_of(2));
    static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 300000};
    uint8_t *payload = malloc(300000);
    cr_assert_not_null(payload);
    for (size_t k = 0; k < 300000; k++)
        payload[k] = (uint8_t)(k * 31 + (k >> 9));
    for (size_t s = 0; s < COUNT(sizes); s++) {
        cr_assert_eq(sb_room_broadcast(r, NULL, SB_OP_BINARY, payload, sizes[s]), 2);
        for (size_t ci = 0; ci < 3; ci += 2) {
            frame_t f;
            cr_assert(client_next(&fx.cl[ci], &f));
            cr_assert_eq(f.opcode, SB_OP_BINARY);
            cr_assert(f.fin);
            cr_assert_eq(f.len, sizes[s], "client %zu: %zu bytes, expected %zu", ci, f.len,
                         sizes[s]);
            cr_assert_eq(f.hdr, sizes[s] < 126 ? 2u : sizes[s] <= 0xffff ? 4u : 10u);
            cr_assert(memcmp(f.data, payload, f.len) == 0, "client %zu: payload differs", ci);
            free(f.data);
        }
    }
    free(payload);
    EXPECT_NONE(0);
    EXPECT_NONE(1);
    EXPECT_NONE(2);
}

/* One encoded message, shared: every member's queue holds the very same
 * sb_msg_t (a reference each), released as it is written. */
Test(room_fanout, a_message_is_encoded_once_and_shared)
{
    fx_start();
    connect_clients(4);
    sb_room_t *r = sb_hub_room_create(fx.hub, "r");
    for (size_t i = 0; i < 3; i++)
        sb_room_join(r, conn_of(i));

    sb_msg_t *m = sb_msg_new(SB_OP_TEXT, "shared", 6);
    cr_assert_not_null(m);
    cr_assert_eq(sb_room_broadcast_msg(r, conn_of(1), m), 2);
    cr_assert_eq(m->refs, 3, "ours and one per recipient's queue");
    cr_assert_eq(conn_of(0)->q_count, 1);
    cr_assert_eq(conn_of(0)->q[conn_of(0)->q_head], m);
    cr_assert_eq(conn_of(2)->q[conn_of(2)->q_head], m);
    cr_assert_eq(conn_of(1)->q_count, 0);
    settle(0);
    settle(2);
    cr_assert_eq(m->refs, 1, "the queues released it once written");
    sb_msg_unref(m);

    /* sb_room_broadcast encodes once too. */
    cr_assert_eq(sb_room_broadcast(r, NULL, SB_OP_TEXT, "once", 4), 3);
    const sb_msg_t *first = conn_of(0)->q[conn_of(0)->q_head];
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(conn_of(i)->q_count, 1);
        cr_assert_eq(conn_of(i)->q[conn_of(i)->q_head], first, "client %zu got its own copy", i);
    }
    cr_assert_eq(first->refs, 3);
    EXPECT(0, "shared", "once");
    EXPECT(1, "once");
    EXPECT(2, "shared", "once");
    EXPECT_NONE(3);
}

/* ---- membership changing between fan-outs ------------------------------ */

Test(room_churn, join_leave_remove_from_callbacks_between_fanouts)
{
    fx_start();
    connect_clients(4);
    fx.on_msg = run_commands;
    for (size_t i = 0; i < 4; i++)
        client_say(i, "join r");
    cr_assert_eq(sb_room_count(sb_hub_room(fx.hub, "r")), 4);

    client_say(0, "say r 1");
    client_say(1, "leave r;say r 2"); /* no longer a member: everyone left gets it */
    /* One callback: fan-out, leave, fan-out, join, fan-out. */
    client_say(2, "all r 3;leave r;all r 4;join r;all r 5");
    client_say(3, "remove r;join r");
    client_say(0, "say r 6"); /* the new r has only client 3 */
    client_say(1, "leave r");
    int want[] = {0, 0, 0, 0, 3, 0, 3, 3, 0, 2, 0, 3, 0, 0, 1, SB_EINVAL};
    cr_assert_eq(fx.nresults, COUNT(want));
    for (size_t k = 0; k < COUNT(want); k++)
        cr_assert_eq(fx.results[k], want[k], "result %zu: %d, expected %d", k, fx.results[k],
                     want[k]);

    EXPECT(0, "2", "3", "4", "5");
    EXPECT(1, "1");
    EXPECT(2, "1", "2", "3", "5");
    EXPECT(3, "1", "2", "3", "4", "5", "6");
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(sb_conn_rooms(conn_of(i), NULL, 0), 0, "client %zu", i);
    cr_assert_eq(sb_conn_rooms(conn_of(3), NULL, 0), 1);
    cr_assert_eq(sb_room_count(sb_hub_room(fx.hub, "r")), 1);
}

Test(room_churn, commands_in_one_read_run_in_order)
{
    fx_start();
    connect_clients(2);
    fx.on_msg = run_commands;
    client_say(1, "join q");
    /* Three frames in one write: the join in the first callback is seen by
     * the fan-out in the second. */
    static const char *cmds[] = {"join q", "all q hi", "leave q;all q bye"};
    uint8_t buf[256];
    size_t n = 0;
    for (size_t k = 0; k < COUNT(cmds); k++)
        n += frame_build(buf + n, SB_OP_TEXT, cmds[k], strlen(cmds[k]));
    size_t before = fx.nmsgs;
    send_all(fx.cl[0].fd, buf, n);
    WAIT_UNTIL(fx.nmsgs == before + 3);
    EXPECT(0, "hi");
    EXPECT(1, "hi", "bye");
}

/* A member stays through everything while another leaves and rejoins
 * between the fan-outs: the steady one gets every message once in order,
 * the other an in-order subset with no repeats. */
Test(room_churn, a_member_toggling_while_others_broadcast)
{
    fx_start();
    connect_clients(3);
    fx.on_msg = run_commands;
    client_say(0, "join r");
    client_say(1, "join r");
    client_say(2, "join r");
    char text[32];
    for (int k = 0; k < 60; k++) {
        snprintf(text, sizeof text, "all r %d", k);
        client_send(0, SB_OP_TEXT, text, strlen(text));
        client_send(1, SB_OP_TEXT, k % 2 ? "join r" : "leave r", k % 2 ? 6 : 7);
        if (k % 3 == 0)
            cr_assert_geq(sb_server_run_once(fx.srv, 0), 0);
    }
    WAIT_UNTIL(fx.nmsgs == 3 + 120);
    const char *want[60];
    char texts[60][8];
    for (int k = 0; k < 60; k++) {
        snprintf(texts[k], sizeof texts[k], "%d", k);
        want[k] = texts[k];
    }
    expect_texts(0, want, 60);
    expect_texts(2, want, 60);

    settle(1);
    char marker[] = "end-of-toggle";
    cr_assert_eq(sb_conn_send(conn_of(1), SB_OP_TEXT, marker, strlen(marker)), 0);
    int last = -1;
    for (;;) {
        frame_t f;
        cr_assert(client_next(&fx.cl[1], &f));
        if (strcmp((char *)f.data, marker) == 0) {
            free(f.data);
            break;
        }
        int k = atoi((char *)f.data);
        cr_assert_gt(k, last, "client 1 got %d after %d", k, last);
        last = k;
        free(f.data);
    }
    cr_assert(sb_room_has(sb_hub_room(fx.hub, "r"), conn_of(1)), "the last command was a join");
}

/* ---- history ------------------------------------------------------------ */

typedef struct {
    uint64_t ids[16];
    int64_t ts[16];
    char json[16][32];
    size_t n;
} hist_t;

static void collect(void *arg, uint64_t id, int64_t ts_ms, const char *json, size_t len)
{
    hist_t *h = arg;
    cr_assert_lt(h->n, COUNT(h->ids));
    cr_assert_lt(len, sizeof h->json[0]);
    h->ids[h->n] = id;
    h->ts[h->n] = ts_ms;
    memcpy(h->json[h->n], json, len);
    h->json[h->n][len] = 0;
    h->n++;
}

static hist_t read_history(sb_room_t *room, uint64_t since, size_t limit)
{
    hist_t h = {0};
    int n = sb_room_history(room, since, limit, collect, &h);
    cr_assert_eq(n, (int)h.n, "returns the number of calls");
    return h;
}

static void expect_ids(const hist_t *h, const uint64_t *ids, size_t n)
{
    cr_assert_eq(h->n, n, "%zu messages, expected %zu", h->n, n);
    for (size_t k = 0; k < n; k++) {
        cr_assert_eq(h->ids[k], ids[k], "message %zu: id %llu, expected %llu", k,
                     (unsigned long long)h->ids[k], (unsigned long long)ids[k]);
        char want[32];
        snprintf(want, sizeof want, "{\"n\":%llu}", (unsigned long long)ids[k]);
        cr_assert_str_eq(h->json[k], want);
        cr_assert_eq(h->ts[k], 1000 + (int64_t)ids[k]);
    }
}

#define EXPECT_IDS(h, ...)                                                                         \
    expect_ids((h), (const uint64_t[]){__VA_ARGS__},                                               \
               sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t))

Test(room_history, ids_per_room_and_reading_back)
{
    fx_start();
    sb_room_t *a = sb_hub_room_create(fx.hub, "a");
    sb_room_t *b = sb_hub_room_create(fx.hub, "b");
    cr_assert_eq(sb_room_next_id(a), 1);
    cr_assert_eq(sb_room_next_id(a), 1, "asking does not reserve");
    cr_assert_eq(sb_room_message_count(a), 0);
    cr_assert_eq(sb_room_last_activity(a), 0);
    cr_assert_eq(read_history(a, 0, 10).n, 0);

    char json[32];
    for (uint64_t id = 1; id <= 6; id++) {
        cr_assert_eq(sb_room_next_id(a), id);
        int len = snprintf(json, sizeof json, "{\"n\":%llu}", (unsigned long long)id);
        cr_assert_eq(sb_room_history_append(a, 1000 + (int64_t)id, json, (size_t)len), (int64_t)id);
    }
    cr_assert_eq(sb_room_next_id(b), 1, "ids are per room");
    for (uint64_t id = 1; id <= 2; id++) {
        int len = snprintf(json, sizeof json, "{\"n\":%llu}", (unsigned long long)id);
        cr_assert_eq(sb_room_history_append(b, 1000 + (int64_t)id, json, (size_t)len), (int64_t)id);
    }
    cr_assert_eq(sb_room_next_id(a), 7);
    cr_assert_eq(sb_room_next_id(b), 3);
    cr_assert_eq(sb_room_message_count(a), 6);
    cr_assert_eq(sb_room_message_count(b), 2);
    cr_assert_eq(sb_room_last_activity(a), 1006);

    hist_t h = read_history(a, 0, 3);
    EXPECT_IDS(&h, 4, 5, 6);
    h = read_history(a, 0, 100);
    EXPECT_IDS(&h, 1, 2, 3, 4, 5, 6);
    h = read_history(a, 2, 100);
    EXPECT_IDS(&h, 3, 4, 5, 6);
    h = read_history(a, 2, 2);
    EXPECT_IDS(&h, 3, 4);
    h = read_history(a, 5, 10);
    EXPECT_IDS(&h, 6);
    cr_assert_eq(read_history(a, 6, 10).n, 0);
    cr_assert_eq(read_history(a, 60, 10).n, 0);
    h = read_history(b, 0, 10);
    EXPECT_IDS(&h, 1, 2);
    cr_assert_eq(read_history(sb_hub_room_create(fx.hub, "c"), 0, 10).n, 0);

    /* Ids are never reused: a room removed and made again goes on. */
    cr_assert_eq(sb_hub_room_remove(fx.hub, "b"), 0);
    b = sb_hub_room_create(fx.hub, "b");
    cr_assert_eq(sb_room_next_id(b), 3);
    h = read_history(b, 0, 10);
    EXPECT_IDS(&h, 1, 2);
}

/* ---- limits ------------------------------------------------------------- */

/* Puts the connection (in no room yet) in n new rooms "d0".."d<n-1>" as n
 * sb_room_join calls would leave it, list capacity included, but without
 * their linear membership scans (32768 real joins take seconds under ASan).
 * The real code paths take over from there: join, leave, and the close. */
static void join_many_directly(sb_conn_t *conn, uint16_t n)
{
    sb__hconn_t *hc = sb__hconn(conn);
    cr_assert_eq(hc->nrooms, 0);
    cr_assert_eq(hc->rooms, &hc->first, "no room yet: the list is the inline slot");
    hc->rooms = malloc(n * sizeof *hc->rooms);
    cr_assert_not_null(hc->rooms);
    hc->rooms_cap = n;
    char name[16];
    for (uint16_t k = 0; k < n; k++) {
        snprintf(name, sizeof name, "d%u", k);
        sb_room_t *room = sb_hub_room_create(fx.hub, name);
        cr_assert_not_null(room);
        room->members = malloc(8 * sizeof *room->members);
        cr_assert_not_null(room->members);
        room->cap = 8;
        room->members[room->n++] = hc;
        hc->rooms[hc->nrooms++] = (sb__member_t){room, 0};
    }
}

/* A connection's list of rooms doubles as it grows, and its count is 16-bit:
 * the doubling past 32768 must stop at 65535, not wrap to 0 (which freed the
 * list and then wrote past it). */
Test(room_members, a_connection_in_more_than_32768_rooms)
{
    fx_start();
    connect_clients(2);
    sb_conn_t *c = conn_of(0);
    join_many_directly(c, 32768);
    sb_room_t *extra = sb_hub_room_create(fx.hub, "extra");
    cr_assert_eq(sb_room_join(extra, c), 0);
    cr_assert_eq(sb_room_join(extra, conn_of(1)), 0);
    cr_assert_eq(sb_conn_rooms(c, NULL, 0), 32769);
    cr_assert(sb_room_has(extra, c));
    cr_assert(sb_room_has(sb_hub_room(fx.hub, "d32767"), c));
    cr_assert_eq(sb_room_leave(sb_hub_room(fx.hub, "d0"), c), 0);
    cr_assert(!sb_room_has(sb_hub_room(fx.hub, "d0"), c));
    cr_assert_eq(sb_room_join(sb_hub_room_create(fx.hub, "more"), c), 0);
    cr_assert_eq(sb_conn_rooms(c, NULL, 0), 32769);
    cr_assert_eq(sb_room_broadcast(extra, NULL, SB_OP_TEXT, "many", 4), 2);
    EXPECT(0, "many");
    close_client(0);
    cr_assert_eq(sb_room_count(extra), 1);
    cr_assert_eq(sb_room_count(sb_hub_room(fx.hub, "d32767")), 0);
}

/* The count is 16-bit: one room more than 65535 is refused. */
Test(room_members, the_65536th_room_is_refused)
{
    fx_start();
    connect_clients(1);
    sb_conn_t *c = conn_of(0);
    join_many_directly(c, UINT16_MAX);
    sb_room_t *extra = sb_hub_room_create(fx.hub, "extra");
    cr_assert_eq(sb_room_join(extra, c), SB_ELIMIT);
    cr_assert(!sb_room_has(extra, c));
    cr_assert_eq(sb_room_count(extra), 0);
    cr_assert_eq(sb_conn_rooms(c, NULL, 0), UINT16_MAX);
    cr_assert_eq(sb_room_leave(sb_hub_room(fx.hub, "d7"), c), 0);
    cr_assert_eq(sb_room_join(extra, c), 0);
    close_client(0);
    cr_assert_eq(sb_room_count(extra), 0);
}
