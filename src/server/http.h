/*
 * http.h — an HTTP/1.1 request reader on top of http-parser. Pure: bytes in,
 * one complete request (or an error status) out; no sockets. Requests are
 * handed out one at a time, so pipelined requests are answered in order.
 */
#ifndef SB_SERVER_HTTP_H
#define SB_SERVER_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#define SB_HTTP_MAX_HEADERS 64

enum {
    SB_HTTP_MORE = 0, /* need more bytes */
    SB_HTTP_DONE = 1, /* a whole request is ready */
    /* errors are reported as the HTTP status to answer with: 400, 413, 431 */
};

typedef struct sb__http_header_s {
    uint32_t name_off, name_len, value_off, value_len;
} sb__http_header_t;

typedef struct sb__http_req_s {
    http_parser parser;
    size_t max_head; /* request line + headers, bytes */
    size_t max_body;
    size_t head_size; /* head bytes handed to callbacks so far for this request */
    size_t head_raw;  /* bytes fed while the head was unfinished */
    char *arena;      /* url, header names and values, body */
    uint32_t arena_len, arena_cap;
    uint32_t url_off, url_len;
    uint32_t body_off, body_len;
    sb__http_header_t headers[SB_HTTP_MAX_HEADERS];
    uint16_t nheaders;
    uint8_t in_value; /* the last header callback was a value */
    uint8_t headers_done;
    uint8_t complete;
    uint8_t keep_alive; /* valid once complete */
    uint8_t upgrade;    /* valid once complete: the bytes after it are not HTTP */
    int error;          /* HTTP status to answer with, 0 if none */
    const char *error_text;
} sb__http_req_t;

void sb__http_req_init(sb__http_req_t *r, size_t max_head, size_t max_body);
/* Releases the arena. The struct may be reused after sb__http_req_init. */
void sb__http_req_free(sb__http_req_t *r);
/* Forgets the request just handled, ready for the next one on the same
 * connection. */
void sb__http_req_next(sb__http_req_t *r);

/* Feeds bytes. Returns the bytes consumed and sets *result to SB_HTTP_MORE
 * (all consumed, the request is incomplete), SB_HTTP_DONE (a request ends
 * at the returned offset: handle it, call sb__http_req_next and feed the
 * rest — or, for an upgrade, hand the rest to the new protocol) or an error
 * status (400, 413, 431; r->error_text says why; stop reading). */
size_t sb__http_req_feed(sb__http_req_t *r, const char *data, size_t len, int *result);

/* Header lookup, name case-insensitive. Returns the first value or NULL. */
const char *sb__http_req_header(const sb__http_req_t *r, const char *name, size_t *len);

static inline const char *sb__http_req_str(const sb__http_req_t *r, uint32_t off)
{
    return r->arena + off;
}

#endif /* SB_SERVER_HTTP_H */
