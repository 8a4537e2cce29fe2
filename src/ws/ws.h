/*
 * ws.h — the RFC 6455 codec: frames, masking, UTF-8, the handshake key and
 * the message reader. Pure: no I/O, no allocation. Bytes in, events out.
 */
#ifndef SB_WS_WS_H
#define SB_WS_WS_H

#include <stddef.h>
#include <stdint.h>

#include "switchboard.h"

/* Largest frame header: 2 + 8 (64-bit length) + 4 (mask). */
#define SB_WS_MAX_HEADER 14
/* Control frame payloads are at most 125 bytes (RFC 6455 5.5). */
#define SB_WS_MAX_CONTROL 125

/* ---- frame header ------------------------------------------------------ */

typedef struct sb__frame_s {
    uint64_t len; /* payload length */
    uint8_t fin;  /* 1 when this is the final fragment */
    uint8_t rsv;  /* the three RSV bits, as 0..7 (RSV1 = 4) */
    uint8_t opcode;
    uint8_t masked;
    uint8_t mask[4];
} sb__frame_t;

/* Parses a frame header from p[0..n). Returns the header length (2..14),
 * 0 when more bytes are needed, or SB_EPROTO for a 64-bit length with the
 * most significant bit set. Non-minimal length encodings are accepted. Only
 * the encoding is checked here; opcode, RSV and mask rules are the reader's. */
int sb__frame_header_parse(const uint8_t *p, size_t n, sb__frame_t *f);

/* Writes a header for a frame into out (room for SB_WS_MAX_HEADER bytes) with
 * the minimal length encoding. mask may be NULL (server frames). Returns the
 * header length. */
size_t sb__frame_header_write(uint8_t *out, int fin, int rsv, int opcode, uint64_t len,
                              const uint8_t *mask);

/* XORs p[0..n) with mask, starting at mask byte (offset % 4). Word-at-a-time. */
void sb__mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t offset);

/* Is code a close code a peer may send (RFC 6455 7.4, IANA registry)? */
int sb__close_code_valid(int code);

/* ---- UTF-8 ------------------------------------------------------------- */

#define SB_UTF8_ACCEPT 0u
#define SB_UTF8_REJECT 1u

/* Validates p[0..n) continuing from state (start with SB_UTF8_ACCEPT).
 * Returns the new state: SB_UTF8_ACCEPT at a character boundary,
 * SB_UTF8_REJECT (sticky) as soon as the bytes cannot be UTF-8 (overlong
 * forms, surrogates, code points above U+10FFFF, bad continuation), or
 * another value inside a character. */
uint32_t sb__utf8_validate(uint32_t state, const uint8_t *p, size_t n);

/* 1 when p[0..n) is complete, valid UTF-8. */
int sb__utf8_valid(const uint8_t *p, size_t n);

/* ---- handshake --------------------------------------------------------- */

/* Computes Sec-WebSocket-Accept for a Sec-WebSocket-Key into out (28
 * characters and a NUL). Returns 0, or SB_EPROTO when the key (surrounding
 * blanks ignored) is not base64 of exactly 16 bytes. */
int sb__ws_accept_key(const char *key, size_t len, char out[29]);

/* 1 when the comma-separated header value contains token (compared
 * case-insensitively, blanks around items ignored). */
int sb__token_list_has(const char *value, size_t len, const char *token);

/* Picks the first of supported (NULL-terminated, server preference order)
 * that appears in the client's comma-separated offer (case-sensitive, as
 * RFC 6455 4.2.2). Returns it, or NULL. */
const char *sb__ws_select_subprotocol(const char *offer, size_t len, const char *const *supported);

/* ---- reader ------------------------------------------------------------ */

typedef enum {
    SB_WS_EV_NONE = 0, /* need more bytes: keep the unconsumed tail */
    SB_WS_EV_DATA,     /* a chunk of a text or binary message */
    SB_WS_EV_CONTROL,  /* a complete close, ping or pong frame */
    SB_WS_EV_ERROR,    /* fail the connection with close_code */
} sb__ws_event_type_t;

typedef struct sb__ws_event_s {
    sb__ws_event_type_t type;
    int opcode;    /* DATA: the message's opcode (TEXT/BINARY); CONTROL: its opcode */
    uint8_t *data; /* payload bytes, unmasked in place in the caller's buffer */
    size_t len;
    uint8_t first;      /* DATA: first chunk of the message */
    uint8_t last;       /* DATA: the message is complete with this chunk */
    uint8_t compressed; /* DATA: RSV1 was set on the message's first frame */
    int close_code;     /* ERROR: code to close with; CLOSE: code received (1005 if none) */
    const char *reason; /* ERROR: what was wrong; CLOSE: the reason (not NUL-terminated) */
    size_t reason_len;
} sb__ws_event_t;

/* Size limits, shared by every reader of a server. */
typedef struct sb__ws_limits_s {
    uint64_t max_message; /* 0 = no limit */
    uint64_t max_frame;   /* 0 = no limit */
} sb__ws_limits_t;

typedef struct sb__ws_reader_s {
    const sb__ws_limits_t *limits; /* NULL: no limits */
    uint64_t remaining;   /* payload bytes left in the current data frame */
    uint64_t msg_len;     /* bytes of the current message so far */
    uint32_t utf8;        /* validator state for the current text message */
    uint8_t mask[4];
    uint8_t mask_pos;      /* payload offset of the current frame, mod 4 */
    uint8_t in_frame;      /* streaming a data frame's payload */
    uint8_t frame_fin;     /* the current data frame is final */
    uint8_t msg_opcode;    /* opcode of the message in progress, 0 if none */
    uint8_t compressed;    /* the message in progress had RSV1 */
    uint8_t rsv_allowed;   /* RSV bits negotiated by an extension (4 = RSV1) */
    uint8_t expect_masked; /* 1: frames must be masked (server side); 0: must not */
    uint8_t emitted;       /* a chunk of the current message was reported */
    uint8_t failed;        /* an error was reported; no more events */
} sb__ws_reader_t;

/* Prepares a reader. expect_masked is 1 on the server side. limits (NULL:
 * none) must outlive the reader. */
void sb__ws_reader_init(sb__ws_reader_t *r, int expect_masked, const sb__ws_limits_t *limits);

/* Consumes bytes from buf (unmasking payload in place) and reports at most one
 * event in *ev. Returns the number of bytes consumed. Call in a loop until it
 * returns an event of type NONE; the bytes not consumed then (at most
 * SB_WS_MAX_HEADER + SB_WS_MAX_CONTROL) are an incomplete header or control
 * frame and must be presented again, followed by more input. Data payload is
 * streamed: DATA events may carry part of a frame. Text is validated as it
 * arrives (not for compressed messages: inflate first, then validate). After
 * an ERROR event, the reader reports nothing more. */
size_t sb__ws_read(sb__ws_reader_t *r, uint8_t *buf, size_t len, sb__ws_event_t *ev);

#endif /* SB_WS_WS_H */
