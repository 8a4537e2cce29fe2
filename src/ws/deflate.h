/*
 * deflate.h — permessage-deflate (RFC 7692): negotiation, compression and
 * bounded decompression of whole WebSocket messages. zlib only: no I/O, no
 * libuv. "pmd" below stands for permessage-deflate.
 *
 * Three objects:
 * - sb__pmd_policy_t: what the server is willing to do (configuration).
 * - sb__pmd_t: one per event loop. Holds the zlib streams every connection
 *   without context takeover shares: one compressor per window size (almost
 *   always just the 15-bit one) and a small pool of decompressors. Not
 *   thread-safe: use it from its loop's thread only.
 * - sb__pmd_conn_t: per connection, 24 bytes: the agreed parameters and two
 *   stream pointers that stay NULL unless context takeover was negotiated
 *   (or, for the decompressor, while a compressed message is arriving in
 *   several chunks).
 *
 * By default the server answers every acceptable offer with
 * server_no_context_takeover and client_no_context_takeover, so no zlib
 * state outlives a message: a connection costs its 24 bytes, and a
 * broadcast is compressed once and the same bytes go to every recipient
 * with the same sb__pmd_share_key().
 *
 * Errors and the close code each one calls for (sb__pmd_close_code):
 *   SB_ETOOBIG  1009  a message inflates to more than the caller's limit
 *   SB_EPROTO   1007  invalid compressed data (RFC 7692 says "fail the
 *                     connection" without a code; 1007 is RFC 6455's code for
 *                     data inconsistent with the message, as Node's ws uses)
 *   SB_ENOMEM   1011  zlib or a buffer could not be allocated
 */
#ifndef SB_WS_DEFLATE_H
#define SB_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "switchboard.h"

struct z_stream_s; /* zlib's z_stream; deflate.h does not include zlib.h */

/* Room for the longest Sec-WebSocket-Extensions answer, with its NUL. */
#define SB_PMD_RESPONSE_MAX 160

/* Defaults (see sb__pmd_policy_default and docs/protocol.md for why). */
#define SB_PMD_DEFAULT_LEVEL 6
#define SB_PMD_DEFAULT_MIN_SIZE 64
#define SB_PMD_DEFAULT_MEM_LEVEL 8

/* ---- negotiation ------------------------------------------------------- */

typedef struct sb__pmd_policy_s {
    int enabled;                /* 0: decline every offer */
    int level;                  /* zlib level 0..9; 0 sends everything uncompressed */
    size_t min_size;            /* messages shorter than this go uncompressed */
    int allow_context_takeover; /* 0: always answer with both *_no_context_takeover */
    int max_window_bits;        /* 9..15: the server's LZ77 window, and the client's when it
                                   offers client_max_window_bits */
    int mem_level;              /* zlib memLevel 1..9 of the compressors */
} sb__pmd_policy_t;

/* Fills p with the defaults: enabled, level 6, min_size 64, no context
 * takeover, 15-bit windows, memLevel 8. */
void sb__pmd_policy_default(sb__pmd_policy_t *p);

/* Checks a policy: SB_EINVAL (and *why, if not NULL, says which field and
 * the valid range) when a field is out of range, else 0. */
int sb__pmd_policy_check(const sb__pmd_policy_t *p, const char **why);

typedef struct sb__pmd_params_s {
    uint8_t enabled;            /* permessage-deflate is in use on this connection */
    uint8_t server_no_takeover; /* the server resets its compressor after each message */
    uint8_t client_no_takeover; /* the client resets its compressor after each message */
    uint8_t server_window_bits; /* the window the server compresses with, 9..15 */
    uint8_t client_window_bits; /* the largest window the client may use, 8..15 */
} sb__pmd_params_t;

/* Picks the first acceptable permessage-deflate offer of a
 * Sec-WebSocket-Extensions value (value[0..len), several headers joined
 * with ", " are one value; not NUL-terminated; NULL is no header). An offer
 * with an unknown parameter, a parameter given twice, a bad value or bad
 * syntax is declined and the next one tried; other extensions are ignored.
 * Offers asking for server_max_window_bits=8 are declined too (zlib cannot
 * compress with a 256-byte window). Names are compared case-insensitively;
 * a window value is 8..15 without leading zeros, as a token or quoted.
 * On acceptance returns 1, fills *params and writes the answer header value
 * (NUL-terminated) into response, which has room for SB_PMD_RESPONSE_MAX
 * bytes. Returns 0 (params zeroed, response "") when nothing was accepted
 * or the policy is disabled. */
int sb__pmd_negotiate(const sb__pmd_policy_t *policy, const char *value, size_t len,
                      sb__pmd_params_t *params, char response[SB_PMD_RESPONSE_MAX]);

/* ---- the per-loop codec ------------------------------------------------ */

typedef struct sb__pmd_s sb__pmd_t;

typedef struct sb__pmd_conn_s {
    sb__pmd_params_t params;
    uint8_t msg_fed;             /* bytes of the compressed message in progress were fed */
    struct z_stream_s *deflater; /* context takeover only; lazily allocated */
    struct z_stream_s *inflater; /* context takeover, or a message in progress */
} sb__pmd_conn_t;

typedef struct sb__pmd_stats_s {
    uint64_t compressed;     /* messages compressed */
    uint64_t compressed_in;  /* their bytes before */
    uint64_t compressed_out; /* and after (what went on the wire) */
    uint64_t uncompressed;   /* messages sent as they were (short or incompressible) */
    uint64_t inflated;       /* compressed messages received */
    uint64_t inflated_in;    /* their bytes on the wire */
    uint64_t inflated_out;   /* and inflated */
    uint64_t inflate_errors; /* invalid data or over the size limit */
} sb__pmd_stats_t;

/* Creates a codec with a copy of policy. Returns 0, SB_EINVAL (bad policy)
 * or SB_ENOMEM. Nothing of zlib is allocated until it is needed. */
int sb__pmd_new(const sb__pmd_policy_t *policy, sb__pmd_t **out);

/* Frees the codec and its shared streams. Every connection's streams must
 * have been released with sb__pmd_conn_free first. NULL-safe. */
void sb__pmd_free(sb__pmd_t *pmd);

/* Replaces the policy (SIGHUP): new negotiations and the shared compressors
 * follow it at once; connections keep what they negotiated, and their own
 * compressors (context takeover) keep their level. Returns 0 or SB_EINVAL. */
int sb__pmd_set_policy(sb__pmd_t *pmd, const sb__pmd_policy_t *policy);

const sb__pmd_policy_t *sb__pmd_policy(const sb__pmd_t *pmd);
const sb__pmd_stats_t *sb__pmd_stats(const sb__pmd_t *pmd);

/* Prepares a connection's state from what sb__pmd_negotiate agreed
 * (params may be NULL or not enabled: then nothing is ever compressed). */
void sb__pmd_conn_init(sb__pmd_conn_t *pc, const sb__pmd_params_t *params);

/* Releases a connection's streams (to the shared pool or to free). The
 * connection can be used again as if freshly initialised. NULL-safe. */
void sb__pmd_conn_free(sb__pmd_t *pmd, sb__pmd_conn_t *pc);

/* ---- compression ------------------------------------------------------- */

/* Which connections can receive the same compressed bytes: 0 when this one
 * must compress its own (not negotiated, or the server keeps context), else
 * a key (the server's window bits, 9..15). A payload compressed for key k is
 * valid for every connection whose key is k or larger. */
int sb__pmd_share_key(const sb__pmd_conn_t *pc);

/* Compresses one whole message for connections of share key `key` (>= 9),
 * with a shared compressor reset for each message. Returns 1 and points
 * *out at the payload to send with RSV1 (the deflate data without its
 * trailing 00 00 ff ff; owned by pmd, valid until the next compress call on
 * pmd), 0 when the message should be sent uncompressed (shorter than
 * min_size, level 0, or compressing would not make it smaller), or
 * SB_EINVAL (bad key) / SB_ENOMEM. */
int sb__pmd_compress_shared(sb__pmd_t *pmd, int key, const void *in, size_t len,
                            const uint8_t **out, size_t *out_len);

/* Compresses one whole message for one connection: the shared compressor
 * when its share key is not 0, else its own (context takeover), created on
 * first use. Returns as sb__pmd_compress_shared; 0 as well when
 * permessage-deflate is not in use on pc. With context takeover, a message
 * that ends up sent uncompressed resets the connection's compressor (the
 * peer never sees it, so later messages must not refer to it). */
int sb__pmd_compress(sb__pmd_t *pmd, sb__pmd_conn_t *pc, const void *in, size_t len,
                     const uint8_t **out, size_t *out_len);

/* ---- decompression ----------------------------------------------------- */

/* Inflates the next chunk in[0..n) of a compressed message's payload (RSV1
 * was set on its first frame); last says the message ends with this chunk
 * (a whole message is one call with last = 1). The output is appended to
 * the caller's buffer (*buf, *len, *cap: realloc'd as needed, owned by the
 * caller, *buf may start NULL), which never grows past max bytes in all,
 * what it held before included (max 0: no limit): the moment the output
 * would pass max, SB_ETOOBIG. Returns 0, SB_ETOOBIG (close 1009), SB_EPROTO
 * (invalid, truncated or not sync-flushed deflate data, close 1007),
 * SB_ENOMEM, SB_EINVAL (*len > *cap). After an error the message is
 * abandoned (the stream is released) and the connection should be failed.
 * A message with no payload at all inflates to nothing. Text must be
 * validated as UTF-8 after inflation (the reader skips compressed text).
 *
 * Between the first and the last chunk of a message the connection holds a
 * decompressor (about 7 KiB of zlib state plus a 2^window_bits window);
 * feeding a whole message at once uses a pooled one and holds nothing. */
int sb__pmd_inflate(sb__pmd_t *pmd, sb__pmd_conn_t *pc, const uint8_t *in, size_t n, int last,
                    uint8_t **buf, size_t *len, size_t *cap, size_t max);

/* The close code for an error of this module (table at the top), 1011 for
 * anything else. */
int sb__pmd_close_code(int err);

/* A close reason / log text for an error of this module. */
const char *sb__pmd_strerror(int err);

#endif /* SB_WS_DEFLATE_H */
