/* http.c — HTTP/1.1 request reader (see http.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/http.h"

/* Each header line costs its name, value and ": " + CRLF; the request line
 * costs the method, URL and version. This is what the head limit counts. */
#define HEADER_OVERHEAD 4
#define REQUEST_LINE_OVERHEAD 16

static int set_error(sb__http_req_t *r, int status, const char *text)
{
    if (!r->error) {
        r->error = status;
        r->error_text = text;
    }
    return -1; /* any non-zero return stops http-parser */
}

/* Appends bytes to the arena and returns their offset, or -1. Items are kept
 * NUL-terminated so that callers may use them as C strings. */
static int64_t arena_append(sb__http_req_t *r, const char *p, size_t n, int extend)
{
    size_t need = (size_t)r->arena_len + n + 1;
    if (need > r->arena_cap) {
        size_t cap = r->arena_cap ? r->arena_cap : 512;
        while (cap < need)
            cap *= 2;
        char *a = realloc(r->arena, cap);
        if (!a)
            return -1;
        r->arena = a;
        r->arena_cap = (uint32_t)cap;
    }
    /* Extending the previous item overwrites its terminating NUL. */
    uint32_t off = r->arena_len;
    if (extend && off)
        off--;
    memcpy(r->arena + off, p, n);
    r->arena[off + n] = '\0';
    r->arena_len = (uint32_t)(off + n + 1);
    return off;
}

static int head_bytes(sb__http_req_t *r, size_t n)
{
    r->head_size += n;
    if (r->head_size > r->max_head)
        return set_error(r, 431, "request head too large");
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    sb__http_req_t *r = p->data;
    if (head_bytes(r, n))
        return -1;
    int64_t off = arena_append(r, at, n, r->url_len > 0);
    if (off < 0)
        return set_error(r, 503, "out of memory");
    if (!r->url_len)
        r->url_off = (uint32_t)off;
    r->url_len += (uint32_t)n;
    return 0;
}

/* RFC 7230 3.2.6: a field name is a token. */
static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    sb__http_req_t *r = p->data;
    /* Trailers of a chunked body would add headers that were not in the
     * head; nothing here needs them, so they are dropped. */
    if (r->headers_done)
        return 0;
    if (head_bytes(r, n))
        return -1;
    /* http-parser, as Debian builds it (not strict), lets blanks into field
     * names ("Transfer-Encoding : chunked"); RFC 7230 3.2.4 says to answer
     * such a request with 400, and a name with a blank is a smuggling aid. */
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)at[i]))
            return set_error(r, 400, "invalid character in a header name");
    int continuing = r->nheaders && !r->in_value;
    if (!continuing) {
        if (r->nheaders == SB_HTTP_MAX_HEADERS)
            return set_error(r, 431, "too many request headers");
        if (head_bytes(r, HEADER_OVERHEAD))
            return -1;
        r->nheaders++;
    }
    sb__http_header_t *h = &r->headers[r->nheaders - 1];
    int64_t off = arena_append(r, at, n, continuing);
    if (off < 0)
        return set_error(r, 503, "out of memory");
    if (!continuing) {
        h->name_off = (uint32_t)off;
        h->name_len = 0;
        h->value_off = 0;
        h->value_len = 0;
    }
    h->name_len += (uint32_t)n;
    r->in_value = 0;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    sb__http_req_t *r = p->data;
    if (r->headers_done)
        return 0; /* a trailer: dropped, see on_header_field */
    if (head_bytes(r, n))
        return -1;
    sb__http_header_t *h = &r->headers[r->nheaders - 1];
    int continuing = r->in_value;
    int64_t off = arena_append(r, at, n, continuing);
    if (off < 0)
        return set_error(r, 503, "out of memory");
    if (!continuing)
        h->value_off = (uint32_t)off;
    h->value_len += (uint32_t)n;
    r->in_value = 1;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    sb__http_req_t *r = p->data;
    r->headers_done = 1;
    for (uint16_t i = 0; i < r->nheaders; i++) {
        sb__http_header_t *h = &r->headers[i];
        /* A header with an empty value gets no value callback: point it at "". */
        if (!h->value_len)
            h->value_off = h->name_off + h->name_len;
        /* http-parser hands trailing blanks over as part of the value, but
         * they are not (RFC 7230 3.2.4): "Upgrade: websocket " is
         * "websocket". Trim them; the value stays NUL-terminated. */
        while (h->value_len && (r->arena[h->value_off + h->value_len - 1] == ' ' ||
                                r->arena[h->value_off + h->value_len - 1] == '\t'))
            h->value_len--;
        r->arena[h->value_off + h->value_len] = '\0';
    }
    if (!r->url_len) {
        int64_t off = arena_append(r, "", 0, 0);
        if (off < 0)
            return set_error(r, 503, "out of memory");
        r->url_off = (uint32_t)off;
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > r->max_body)
        return set_error(r, 413, "request body too large");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    sb__http_req_t *r = p->data;
    if ((size_t)r->body_len + n > r->max_body)
        return set_error(r, 413, "request body too large");
    int64_t off = arena_append(r, at, n, r->body_len > 0);
    if (off < 0)
        return set_error(r, 503, "out of memory");
    if (!r->body_len)
        r->body_off = (uint32_t)off;
    r->body_len += (uint32_t)n;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    sb__http_req_t *r = p->data;
    r->complete = 1;
    r->keep_alive = (uint8_t)http_should_keep_alive(p);
    /* Hand out one request at a time: the caller answers it before the
     * parser looks at a pipelined successor. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void sb__http_req_init(sb__http_req_t *r, size_t max_head, size_t max_body)
{
    memset(r, 0, sizeof *r);
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
    r->max_head = max_head;
    r->max_body = max_body;
    r->head_size = REQUEST_LINE_OVERHEAD;
}

void sb__http_req_free(sb__http_req_t *r)
{
    free(r->arena);
    r->arena = NULL;
    r->arena_cap = r->arena_len = 0;
}

void sb__http_req_next(sb__http_req_t *r)
{
    /* Keep the parser (its pause flag is cleared) and the arena memory. */
    http_parser_pause(&r->parser, 0);
    r->head_size = REQUEST_LINE_OVERHEAD;
    r->head_raw = 0;
    r->arena_len = 0;
    r->url_off = r->url_len = 0;
    r->body_off = r->body_len = 0;
    r->nheaders = 0;
    r->in_value = 0;
    r->headers_done = 0;
    r->complete = 0;
    r->keep_alive = 0;
    r->upgrade = 0;
}

size_t sb__http_req_feed(sb__http_req_t *r, const char *data, size_t len, int *result)
{
    if (r->error) {
        *result = r->error;
        return 0;
    }
    size_t n = 0;
    do {
        /* The callbacks count what they are handed; blanks between the
         * pieces are not handed over, so also bound the raw bytes of an
         * unfinished head. http-parser gets at most one byte past that
         * bound at a time, so the bound trips at the same byte (and before
         * any error further on) however the input was split. */
        size_t give = len - n;
        int head_open = !r->headers_done;
        if (head_open && give > r->max_head + 1 - r->head_raw)
            give = r->max_head + 1 - r->head_raw;
        size_t used = http_parser_execute(&r->parser, &settings, n ? data + n : data, give);
        n += used;
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (r->complete) {
            r->upgrade = (uint8_t)r->parser.upgrade;
            *result = SB_HTTP_DONE;
            return n;
        }
        if (e != HPE_OK) {
            if (e == HPE_HEADER_OVERFLOW)
                set_error(r, 431, "request head too large");
            else
                set_error(r, 400, http_errno_description(e));
            *result = r->error;
            return n;
        }
        if (head_open && !r->headers_done) {
            r->head_raw += used;
            if (r->head_raw > r->max_head) {
                set_error(r, 431, "request head too large");
                *result = r->error;
                return n;
            }
        }
    } while (n < len);
    *result = SB_HTTP_MORE;
    return n;
}

const char *sb__http_req_header(const sb__http_req_t *r, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (uint16_t i = 0; i < r->nheaders; i++) {
        const sb__http_header_t *h = &r->headers[i];
        if (h->name_len == n && strncasecmp(r->arena + h->name_off, name, n) == 0) {
            if (len)
                *len = h->value_len;
            return r->arena + h->value_off;
        }
    }
    return NULL;
}
