/*
 * tls.h — the TLS engine (OpenSSL 3) for wss:// and https://: a server-side
 * TLS session that never touches a socket. The caller reads ciphertext from
 * its socket and hands it in; plaintext comes out into the caller's buffer.
 * Plaintext to send goes in as an iovec; ciphertext waits in the engine's
 * output buffer until the caller has written it to the socket.
 *
 * Shapes of the API (see each function for the contract):
 *
 *   read:   n = read(fd, buf, len);           p = buf;
 *           while ((r = sb__tls_read(t, &p, &n, plain, sizeof plain)) > 0)
 *               handle(plain, r);
 *           r == SB_EAGAIN: all of buf was taken; r == 0: the peer sent
 *           close_notify; r < 0: failed (sb__tls_error says why).
 *           Then, always: write out what sb__tls_pending holds (handshake
 *           messages, alerts and key updates are produced by reading).
 *   write:  while (queue not empty) {
 *               if (!sb__tls_pending(t, &out)) r = sb__tls_write(t, iov, cnt);
 *               w = write(fd, out, len); sb__tls_sent(t, w); ...
 *           }
 *   close:  sb__tls_shutdown(t); write out sb__tls_pending; shut the socket.
 *
 * One engine belongs to one connection and is used from one thread. A
 * context may be shared by any number of engines on that thread.
 */
#ifndef SB_SERVER_TLS_H
#define SB_SERVER_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "switchboard.h"

/* sb__tls_write takes no more plaintext while this much ciphertext waits to
 * be written; past it the output buffer grows by at most one record. */
#define SB__TLS_OUT_LIMIT (64 * 1024)

/* A peer that keeps making the engine answer (key updates) without reading
 * the answers fails once this much output waits: far above what writes
 * (SB__TLS_OUT_LIMIT and a record) and a handshake flight can leave. */
#define SB__TLS_OUT_HARD_LIMIT (256 * 1024)

/* Room for any error text of this module, NUL included. */
#define SB__TLS_ERROR_SIZE 512

typedef struct sb__tls_ctx_s sb__tls_ctx_t;
typedef struct sb__tls_s sb__tls_t;

/* ---- context: certificate, key and settings shared by connections ------ */

/* Creates a server context from a PEM certificate chain file (the server's
 * own certificate first, then the intermediates) and a PEM private key file
 * (not encrypted). TLS 1.2 and 1.3 only; for 1.2 only ECDHE with AES-GCM or
 * ChaCha20-Poly1305; the server's cipher order; no compression, no
 * renegotiation; session tickets; ALPN "http/1.1". Returns 0 and sets *out,
 * or SB_EINVAL (bad or missing files, key does not match: err, if not NULL,
 * receives a sentence naming the file and what to do) or SB_ENOMEM. */
int sb__tls_ctx_new(sb__tls_ctx_t **out, const char *cert_file, const char *key_file, char *err,
                    size_t err_size);

/* Loads the files again (cert_file/key_file NULL: the ones used last) into a
 * new context for the connections created from now on; connections that
 * exist keep the context they started with. On failure the context is left
 * as it was. Returns 0, SB_EINVAL (err says why) or SB_ENOMEM. */
int sb__tls_ctx_reload(sb__tls_ctx_t *ctx, const char *cert_file, const char *key_file, char *err,
                       size_t err_size);

/* Writes one line about the certificate in use ("CN=example.com, EC 256-bit
 * key, valid until 2027-03-01 12:00:00 UTC") for the log. Returns 1 when the
 * certificate is expired or not yet valid (worth a warning), else 0. */
int sb__tls_ctx_describe(const sb__tls_ctx_t *ctx, char *buf, size_t size);

/* NULL-safe. Connections created from the context keep what they need of it. */
void sb__tls_ctx_free(sb__tls_ctx_t *ctx);

/* Validates a certificate/key pair as sb__tls_ctx_new would (for
 * --check-config). Returns 0, SB_EINVAL (err says why) or SB_ENOMEM. */
int sb__tls_check_files(const char *cert_file, const char *key_file, char *err, size_t err_size);

/* ---- one connection -------------------------------------------------- */

typedef enum {
    SB__TLS_FAIL_NONE = 0,
    SB__TLS_FAIL_PLAIN_HTTP, /* plain HTTP on the TLS port: the 400 answer is pending output */
    SB__TLS_FAIL_NOT_TLS,    /* the first byte starts neither TLS nor HTTP; nothing to send */
    SB__TLS_FAIL_HANDSHAKE,  /* the handshake failed; an alert is pending output */
    SB__TLS_FAIL_RECORD,     /* bad data after the handshake; an alert may be pending */
    SB__TLS_FAIL_NOMEM,      /* out of memory */
} sb__tls_failure_t;

/* Creates the TLS state of an accepted connection: a small struct; the
 * OpenSSL session is created when the first bytes arrive. The connection
 * uses ctx's current settings even if ctx is reloaded later. Returns 0 and
 * sets *out, or SB_ENOMEM. */
int sb__tls_new(sb__tls_t **out, sb__tls_ctx_t *ctx);

/* NULL-safe. Sends nothing (see sb__tls_shutdown). */
void sb__tls_free(sb__tls_t *t);

/* Takes ciphertext from *in (*in_len bytes, read from the socket), advances
 * *in / *in_len past what it consumed, and writes decrypted application data
 * to out (cap bytes, not overlapping *in). Drives the handshake as needed.
 * Returns:
 *   > 0         bytes of plaintext in out; call again (more may follow, from
 *               OpenSSL's buffer or from what is left of *in);
 *   SB_EAGAIN   all of *in was consumed (*in_len is 0); wait for the socket;
 *   0           the peer sent close_notify (stays 0; later input is dropped);
 *   SB_EPROTO   failed: sb__tls_failure() says how and sb__tls_error() why;
 *               write out the pending output, then close. Sticks.
 *   SB_ENOMEM   out of memory. Sticks.
 *   SB_EINVAL   cap is 0.
 * After every call sequence, write out what sb__tls_pending() holds. If
 * plaintext HTTP arrives instead of a TLS handshake (the first byte is an
 * ASCII capital letter), nothing is consumed and the pending output is a
 * complete "400 Bad Request" HTTP answer in plain text. */
int sb__tls_read(sb__tls_t *t, const uint8_t **in, size_t *in_len, uint8_t *out, size_t cap);

/* Encrypts application data from iov[0..iovcnt), in order, into the output
 * buffer: small pieces are gathered into full records, large ones are
 * encrypted in place. Stops taking data once SB__TLS_OUT_LIMIT bytes of
 * ciphertext are pending. Returns the plaintext bytes consumed (0..total;
 * it may end inside an iovec), SB_EAGAIN before the handshake is complete,
 * SB_ECLOSED after sb__tls_shutdown, SB_EPROTO after a failure, or
 * SB_ENOMEM. */
int sb__tls_write(sb__tls_t *t, const struct iovec *iov, int iovcnt);

/* Ciphertext waiting to be written to the socket: sets *data (valid until
 * the next call on t) and returns its length, 0 when there is none. */
size_t sb__tls_pending(const sb__tls_t *t, const uint8_t **data);

/* The socket took n bytes (n <= sb__tls_pending()) from the front of the
 * pending output. The buffer is freed when it empties. */
void sb__tls_sent(sb__tls_t *t, size_t n);

/* Queues a close_notify alert (once; a no-op during the handshake, after a
 * failure or before any input, when there is nothing to say). Further
 * sb__tls_write calls return SB_ECLOSED; reading may go on and reports the
 * peer's close_notify with 0. Returns 0 or SB_ENOMEM. */
int sb__tls_shutdown(sb__tls_t *t);

/* 1 once the handshake is complete (application data can flow). */
int sb__tls_established(const sb__tls_t *t);

/* How the connection failed, SB__TLS_FAIL_NONE while it has not. */
sb__tls_failure_t sb__tls_failure(const sb__tls_t *t);

/* Writes why the connection failed, for the log ("TLS handshake failed:
 * the client offers only TLS versions older than 1.2 (OpenSSL: unsupported
 * protocol)"). Returns buf. */
const char *sb__tls_error(const sb__tls_t *t, char *buf, size_t size);

/* The negotiated protocol ("TLSv1.3") and cipher suite, or NULL before the
 * handshake is complete: for the access log. */
const char *sb__tls_version(const sb__tls_t *t);
const char *sb__tls_cipher(const sb__tls_t *t);

#endif /* SB_SERVER_TLS_H */
