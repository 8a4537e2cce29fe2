/* hub.c — a peer server for bench/: the bench subset of Switchboard's
 * protocol on libwebsockets (Debian's libwebsockets-dev), written the way the
 * library's documentation asks: one event loop, one lws_write() per
 * SERVER_WRITEABLE callback, a per-connection queue drained by asking for the
 * next writable callback. JSON is parsed and built with jansson.
 *
 *   hub PORT
 *
 * /echo  every message is sent back as received (same opcode).
 * /ws    {"type":"join","room":R}                -> joins R, answers
 *                                                   {"type":"history","room":R,"messages":[]}
 *        {"type":"message","room":R,"content":C} -> {"type":"message","room":R,"content":C}
 *                                                   to every member of R, the sender included.
 *
 * A closed connection leaves its rooms. Listens on 127.0.0.1 only.
 * Built by bench/setup.sh: cc hub.c $(pkg-config --cflags --libs libwebsockets jansson) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libwebsockets.h>

#define QUEUE_CAP 1024    /* messages queued per connection; past it, the peer is too slow */
#define QUEUE_MIN 8       /* the queue starts this small and doubles as needed */
#define MAX_MESSAGE 65536 /* bytes of one incoming message */

/* An outgoing message, shared by every queue that holds it. lws_write()
 * writes the frame header into the LWS_PRE bytes before the payload; the
 * header is the same for every recipient and writes happen one at a time on
 * the one service thread, so sharing the buffer is safe. */
typedef struct msg {
    int refs;
    int binary;
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes, then len bytes of payload */
} msg_t;

typedef struct room room_t;
typedef struct pss pss_t;

struct room {
    char *name;
    pss_t **members; /* dense; swap-remove */
    size_t count, cap;
    room_t *next;
};

typedef struct {
    room_t *room;
    size_t index; /* this connection's slot in room->members */
} membership_t;

struct pss {
    struct lws *wsi;
    int is_hub; /* 0: /echo, 1: /ws */
    unsigned char *rx;
    size_t rx_len, rx_cap;
    int rx_binary;
    msg_t **queue; /* ring of q_cap slots (a power of two), grown on demand */
    unsigned q_head, q_count, q_cap;
    membership_t *rooms;
    size_t nrooms;
    int dead; /* queue overflowed: being closed */
};

static room_t *g_rooms;
static volatile sig_atomic_t g_interrupted;

static msg_t *msg_new(const void *data, size_t len, int binary)
{
    msg_t *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m)
        return NULL;
    m->refs = 0;
    m->binary = binary;
    m->len = len;
    memcpy(m->buf + LWS_PRE, data, len);
    return m;
}

static void msg_unref(msg_t *m)
{
    if (--m->refs == 0)
        free(m);
}

/* Queues m for pss; a connection whose queue is full is closed, as a slow
 * consumer, rather than allowed to grow without bound. */
static void enqueue(pss_t *p, msg_t *m)
{
    if (p->dead)
        return;
    if (p->q_count == QUEUE_CAP) {
        p->dead = 1;
        lws_set_timeout(p->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    if (p->q_count == p->q_cap) {
        unsigned cap = p->q_cap ? p->q_cap * 2 : QUEUE_MIN;
        msg_t **q = malloc(cap * sizeof *q);
        if (!q)
            return;
        for (unsigned i = 0; i < p->q_count; i++)
            q[i] = p->queue[(p->q_head + i) & (p->q_cap - 1)];
        free(p->queue);
        p->queue = q;
        p->q_cap = cap;
        p->q_head = 0;
    }
    m->refs++;
    p->queue[(p->q_head + p->q_count++) & (p->q_cap - 1)] = m;
    if (p->q_count == 1)
        lws_callback_on_writable(p->wsi);
}

static room_t *room_find(const char *name, int create)
{
    for (room_t *r = g_rooms; r; r = r->next)
        if (strcmp(r->name, name) == 0)
            return r;
    if (!create)
        return NULL;
    room_t *r = calloc(1, sizeof *r);
    r->name = strdup(name);
    r->next = g_rooms;
    g_rooms = r;
    return r;
}

static membership_t *membership_of(pss_t *p, room_t *r)
{
    for (size_t i = 0; i < p->nrooms; i++)
        if (p->rooms[i].room == r)
            return &p->rooms[i];
    return NULL;
}

static void room_join(pss_t *p, room_t *r)
{
    if (membership_of(p, r))
        return;
    if (r->count == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->members = realloc(r->members, r->cap * sizeof *r->members);
    }
    p->rooms = realloc(p->rooms, (p->nrooms + 1) * sizeof *p->rooms);
    p->rooms[p->nrooms++] = (membership_t){r, r->count};
    r->members[r->count++] = p;
}

static void room_leave_all(pss_t *p)
{
    for (size_t i = 0; i < p->nrooms; i++) {
        room_t *r = p->rooms[i].room;
        size_t at = p->rooms[i].index;
        pss_t *last = r->members[--r->count];
        if (last != p) {
            r->members[at] = last;
            membership_of(last, r)->index = at;
        }
        if (r->count == 0) { /* an empty room is forgotten */
            room_t **link = &g_rooms;
            while (*link != r)
                link = &(*link)->next;
            *link = r->next;
            free(r->members);
            free(r->name);
            free(r);
        }
    }
    free(p->rooms);
    p->rooms = NULL;
    p->nrooms = 0;
}

static void send_json(pss_t *p, json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        return;
    msg_t *m = msg_new(text, strlen(text), 0);
    free(text);
    if (!m)
        return;
    m->refs = 1; /* held while queued to p */
    enqueue(p, m);
    msg_unref(m);
}

static void hub_message(pss_t *p, const unsigned char *data, size_t len)
{
    json_t *in = json_loadb((const char *)data, len, 0, NULL);
    if (!json_is_object(in))
        goto done;
    const char *type = json_string_value(json_object_get(in, "type"));
    json_t *room = json_object_get(in, "room");
    if (!type || !json_is_string(room))
        goto done;
    if (strcmp(type, "join") == 0) {
        room_join(p, room_find(json_string_value(room), 1));
        json_t *ack = json_pack("{s:s, s:O, s:[]}", "type", "history", "room", room, "messages");
        send_json(p, ack);
        json_decref(ack);
    } else if (strcmp(type, "message") == 0) {
        json_t *content = json_object_get(in, "content");
        room_t *r = room_find(json_string_value(room), 0);
        if (!json_is_string(content) || !r || !membership_of(p, r))
            goto done;
        /* Serialize once; every member's queue holds the same message. */
        json_t *out =
            json_pack("{s:s, s:O, s:O}", "type", "message", "room", room, "content", content);
        char *text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(out);
        if (!text)
            goto done;
        msg_t *m = msg_new(text, strlen(text), 0);
        free(text);
        if (!m)
            goto done;
        m->refs = 1;
        for (size_t i = 0; i < r->count; i++)
            enqueue(r->members[i], m);
        msg_unref(m);
    }
done:
    json_decref(in);
}

static int callback_hub(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    pss_t *p = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: {
        char uri[64];
        memset(p, 0, sizeof *p);
        p->wsi = wsi;
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0)
            return -1;
        if (strcmp(uri, "/ws") == 0)
            p->is_hub = 1;
        else if (strcmp(uri, "/echo") != 0)
            return -1;
        break;
    }
    case LWS_CALLBACK_RECEIVE:
        if (p->rx_len == 0)
            p->rx_binary = lws_frame_is_binary(wsi);
        if (p->rx_len + len > MAX_MESSAGE)
            return -1;
        if (p->rx_len + len > p->rx_cap) {
            p->rx_cap = (p->rx_len + len) * 2;
            p->rx = realloc(p->rx, p->rx_cap);
        }
        memcpy(p->rx + p->rx_len, in, len);
        p->rx_len += len;
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
            break;
        if (p->is_hub) {
            if (!p->rx_binary)
                hub_message(p, p->rx, p->rx_len);
        } else {
            msg_t *m = msg_new(p->rx, p->rx_len, p->rx_binary);
            if (m) {
                m->refs = 1;
                enqueue(p, m);
                msg_unref(m);
            }
        }
        p->rx_len = 0;
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (!p->q_count || p->dead)
            break;
        msg_t *m = p->queue[p->q_head];
        int n =
            lws_write(wsi, m->buf + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        p->q_head = (p->q_head + 1) & (p->q_cap - 1);
        p->q_count--;
        msg_unref(m);
        if (n < 0)
            return -1;
        if (p->q_count)
            lws_callback_on_writable(wsi);
        break;
    }
    case LWS_CALLBACK_CLOSED:
        room_leave_all(p);
        while (p->q_count) {
            msg_unref(p->queue[p->q_head]);
            p->q_head = (p->q_head + 1) & (p->q_cap - 1);
            p->q_count--;
        }
        free(p->queue);
        p->queue = NULL;
        free(p->rx);
        p->rx = NULL;
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    /* The first protocol serves clients that name none. */
    {"switchboard-bench", callback_hub, sizeof(pss_t), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: hub PORT\n");
        return 2;
    }
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = atoi(argv[1]);
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "lws peer: cannot listen on 127.0.0.1:%d\n", info.port);
        return 1;
    }
    printf("lws peer listening on 127.0.0.1:%d (libwebsockets %s)\n", info.port,
           lws_get_library_version());
    fflush(stdout);
    while (!g_interrupted && lws_service(ctx, 0) >= 0) {
    }
    lws_context_destroy(ctx);
    return 0;
}
