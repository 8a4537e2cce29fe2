/*
 * tls.c — the TLS engine: OpenSSL 3 server sessions driven by bytes the
 * caller moves, for a non-blocking event loop that does its own socket I/O.
 *
 * Each session talks to OpenSSL through one small in-memory BIO of our own
 * rather than a pair of BIO_s_mem:
 *   - input is read straight from the caller's read buffer, never copied into
 *     a BIO first. OpenSSL (read-ahead off) asks for exactly the bytes of the
 *     record it is working on and keeps a partial record in its own buffer,
 *     so whatever it has not asked for when it runs dry is nothing: the
 *     caller's buffer is always fully consumed on SB_EAGAIN;
 *   - output goes into a buffer the engine owns, hands out in place and frees
 *     as soon as the socket took all of it (a BIO_s_mem keeps its high-water
 *     allocation for the life of the connection).
 * With SSL_MODE_RELEASE_BUFFERS OpenSSL frees its record buffers when they
 * are empty, so an idle established session holds the SSL object, its keys
 * and nothing else; a connection that sent nothing yet holds no SSL at all.
 */
#include "server/tls.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* The largest plaintext of one TLS record: sb__tls_write gathers small
 * pieces up to this, and encrypts larger ones from the caller's memory. */
#define TLS_RECORD 16384

/* A certificate or key file larger than this is not what it claims to be. */
#define TLS_MAX_FILE (1024 * 1024)

/* ECDHE only (forward secrecy), AEAD only; the order is the server's
 * preference (ChaCha20 goes first for clients that put it first, see
 * SSL_OP_PRIORITIZE_CHACHA: they lack AES hardware). TLS 1.3 keeps
 * OpenSSL's defaults, which are all modern. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:"
                                    "ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:"
                                    "ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:"
                                    "ECDHE-RSA-CHACHA20-POLY1305";
static const char tls_groups[] = "X25519:P-256:P-384";

static const char plain_http_body[] =
    "400 Bad Request: this port speaks TLS; use https:// or wss:// instead of http:// or ws://\n";

struct sb__tls_ctx_s {
    SSL_CTX *ssl_ctx;
    char *cert_file;
    char *key_file;
};

struct sb__tls_s {
    SSL_CTX *ssl_ctx;  /* the context at creation (a reference) until ssl exists */
    SSL *ssl;          /* NULL until the first bytes of a TLS handshake arrive */
    const uint8_t *in; /* the caller's ciphertext, during sb__tls_read only */
    size_t in_len;
    uint8_t *out; /* ciphertext to send: out[out_off..out_len); NULL when empty */
    uint32_t out_off, out_len, out_cap;
    unsigned long err; /* the OpenSSL error of the failure; NOT_TLS: the first byte */
    uint8_t failure;   /* sb__tls_failure_t */
    uint8_t established;
    uint8_t shut;        /* close_notify queued (or nothing more to say) */
    uint8_t peer_closed; /* the peer's close_notify arrived */
    uint8_t overflow;    /* output passed SB__TLS_OUT_HARD_LIMIT */
    uint8_t nomem;       /* an allocation of the BIO failed */
};

/* ---- errors ------------------------------------------------------------ */

static void set_err(char *err, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t size, const char *fmt, ...)
{
    if (!err || !size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
}

/* The reason text of an OpenSSL error code, never NULL. */
static const char *ossl_reason(unsigned long e)
{
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "no details";
}

/* The first error of the thread's OpenSSL queue that comes from libssl (the
 * most specific one), else the first; the queue is emptied. */
static unsigned long take_error(void)
{
    unsigned long first = 0, ssl = 0, e;
    while ((e = ERR_get_error())) {
        if (!first)
            first = e;
        if (!ssl && ERR_GET_LIB(e) == ERR_LIB_SSL)
            ssl = e;
    }
    return ssl ? ssl : first;
}

static int is_ssl_reason(unsigned long e, int reason)
{
    return ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == reason;
}

/* What a session error means in plain words, or NULL for OpenSSL's own. */
static const char *explain(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return NULL;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
        return "the client offers only TLS versions older than 1.2, which this server refuses";
    case SSL_R_NO_SHARED_CIPHER:
        return "the client offers none of this server's cipher suites "
               "(ECDHE with AES-GCM or ChaCha20-Poly1305)";
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
        return "the client offers no key exchange group this server supports "
               "(X25519, P-256, P-384)";
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_LENGTH_TOO_SHORT:
    case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
    case SSL_R_BAD_PACKET_LENGTH:
    case SSL_R_UNEXPECTED_MESSAGE:
    case SSL_R_UNEXPECTED_RECORD:
    case SSL_R_LENGTH_MISMATCH:
    case SSL_R_BAD_PACKET:
        return "the client sent data that is not valid TLS";
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
        return "a TLS record failed its integrity check (corrupted or forged data)";
    case SSL_R_NO_RENEGOTIATION:
        return "the client asked for a renegotiation, which this server refuses";
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
        return "the client rejected the server's certificate (a self-signed or private-CA "
               "certificate must be trusted by the client; check its names and dates)";
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return "the client supports no TLS version this server accepts (1.2 or 1.3)";
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
    case SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY:
        return "the client ended the handshake: it found no acceptable parameters";
    default:
        return NULL;
    }
}

/* ---- the in-memory BIO ------------------------------------------------- */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static size_t out_pending(const sb__tls_t *t)
{
    return t->out_len - t->out_off;
}

/* Appends to the output buffer. Returns 0, or -1 when out of memory or
 * over the hard limit (the flags say which). */
static int out_append(sb__tls_t *t, const void *p, size_t n)
{
    if (out_pending(t) + n > SB__TLS_OUT_HARD_LIMIT) {
        t->overflow = 1;
        return -1;
    }
    if (t->out_len + n > t->out_cap && t->out_off) {
        /* Slide the unsent tail to the front before growing. */
        memmove(t->out, t->out + t->out_off, out_pending(t));
        t->out_len -= t->out_off;
        t->out_off = 0;
    }
    if (t->out_len + n > t->out_cap) {
        size_t cap = t->out_cap ? t->out_cap : 4096;
        while (cap < t->out_len + n)
            cap *= 2;
        uint8_t *grown = realloc(t->out, cap);
        if (!grown) {
            t->nomem = 1;
            return -1;
        }
        t->out = grown;
        t->out_cap = (uint32_t)cap;
    }
    memcpy(t->out + t->out_len, p, n);
    t->out_len += (uint32_t)n;
    return 0;
}

static int bio_read(BIO *b, char *buf, int len)
{
    sb__tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!t->in_len) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < t->in_len ? (size_t)len : t->in_len;
    memcpy(buf, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    sb__tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    /* No retry flag on failure: OpenSSL reports SSL_ERROR_SYSCALL. */
    return out_append(t, buf, (size_t)len) ? -1 : len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH; /* writes are complete when they return */
}

static void bio_method_create(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "switchboard");
    if (m && (!BIO_meth_set_read(m, bio_read) || !BIO_meth_set_write(m, bio_write) ||
              !BIO_meth_set_ctrl(m, bio_ctrl))) {
        BIO_meth_free(m);
        m = NULL;
    }
    bio_method = m; /* kept for the life of the process */
}

/* ---- context ----------------------------------------------------------- */

/* Never ask for a passphrase (OpenSSL's default prompts on the terminal). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

/* ALPN: "http/1.1" when the client offers it; otherwise no ALPN at all
 * rather than a failed handshake (such a client may still speak it). */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    static const char proto[] = "http/1.1";
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == sizeof proto - 1 && !memcmp(in + i + 1, proto, n)) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* Reads a whole file (NUL-terminated) for PEM parsing, with messages that
 * name it. Returns 0, or SB_EINVAL / SB_ENOMEM with err set. */
static int read_file(const char *path, const char *what, char **data, size_t *len, char *err,
                     size_t err_size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, err_size, "cannot open the TLS %s file '%s': %s", what, path, strerror(errno));
        return SB_EINVAL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        set_err(err, err_size, "the TLS %s file '%s' is not a regular file", what, path);
        fclose(f);
        return SB_EINVAL;
    }
    if (st.st_size > TLS_MAX_FILE) {
        set_err(err, err_size,
                "the TLS %s file '%s' is larger than 1 MiB; it should be a PEM file of a few KiB",
                what, path);
        fclose(f);
        return SB_EINVAL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        set_err(err, err_size, "out of memory reading '%s'", path);
        return SB_ENOMEM;
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        set_err(err, err_size, "cannot read the TLS %s file '%s': %s", what, path, strerror(errno));
        free(buf);
        return SB_EINVAL;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

static void free_file(char *data, size_t len)
{
    if (data)
        OPENSSL_cleanse(data, len); /* it may hold the private key */
    free(data);
}

/* Parses the certificate chain: the server's certificate, then the rest. */
static int parse_certs(const char *path, const char *pem, size_t len, X509 **leaf,
                       STACK_OF(X509) * *chain, char *err, size_t err_size)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        return SB_ENOMEM;
    int rc = SB_EINVAL;
    ERR_clear_error();
    *leaf = PEM_read_bio_X509_AUX(b, NULL, no_passphrase, NULL);
    if (!*leaf) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
            set_err(err, err_size,
                    "the TLS certificate file '%s' holds no PEM certificate (a '-----BEGIN "
                    "CERTIFICATE-----' block); convert a DER file with 'openssl x509 -inform der "
                    "-in FILE -out FILE.pem'",
                    path);
        else
            set_err(err, err_size,
                    "the certificate in '%s' is damaged and cannot be read (OpenSSL: %s)", path,
                    ossl_reason(e));
        goto out;
    }
    if (!(*chain = sk_X509_new_null())) {
        rc = SB_ENOMEM;
        goto out;
    }
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL))) {
        if (!sk_X509_push(*chain, x)) {
            X509_free(x);
            rc = SB_ENOMEM;
            goto out;
        }
    }
    /* The loop ends at the end of the file ("no start line") or on a
     * damaged certificate. */
    unsigned long e = ERR_peek_last_error();
    if (!(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        set_err(err, err_size,
                "certificate %d in the chain file '%s' is damaged and cannot be read "
                "(OpenSSL: %s)",
                sk_X509_num(*chain) + 2, path, ossl_reason(e));
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    BIO_free(b);
    return rc;
}

static int parse_key(const char *path, const char *pem, size_t len, EVP_PKEY **key, char *err,
                     size_t err_size)
{
    if (strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----") ||
        strstr(pem, "Proc-Type: 4,ENCRYPTED")) {
        set_err(err, err_size,
                "the private key in '%s' is protected by a passphrase, which the server cannot "
                "ask for; decrypt it with 'openssl pkey -in KEY -out KEY.plain' and keep that "
                "file readable only by the server's user",
                path);
        return SB_EINVAL;
    }
    if (!strstr(pem, "PRIVATE KEY-----")) {
        set_err(err, err_size,
                "the TLS key file '%s' holds no PEM private key (a '-----BEGIN PRIVATE "
                "KEY-----' block)%s",
                path,
                strstr(pem, "-----BEGIN CERTIFICATE-----")
                    ? "; it holds a certificate: is it the certificate file given twice?"
                    : "");
        return SB_EINVAL;
    }
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        return SB_ENOMEM;
    ERR_clear_error();
    *key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    if (!*key) {
        set_err(err, err_size,
                "the private key in '%s' is damaged and cannot be read (OpenSSL: %s)", path,
                ossl_reason(ERR_peek_last_error()));
        ERR_clear_error();
        return SB_EINVAL;
    }
    return 0;
}

/* A certificate OpenSSL refused for the context (its security level). */
static void cert_refused(const char *path, const char *which, char *err, size_t err_size)
{
    unsigned long e = take_error();
    if (is_ssl_reason(e, SSL_R_EE_KEY_TOO_SMALL) || is_ssl_reason(e, SSL_R_CA_KEY_TOO_SMALL))
        set_err(err, err_size,
                "the %s in '%s' has a key too small to be secure (RSA needs 2048 bits or more, "
                "EC 256 or more); issue a new one",
                which, path);
    else if (is_ssl_reason(e, SSL_R_CA_MD_TOO_WEAK))
        set_err(err, err_size,
                "the %s in '%s' is signed with a weak digest (MD5 or SHA-1); issue a new one "
                "signed with SHA-256",
                which, path);
    else
        set_err(err, err_size, "the %s in '%s' cannot be used (OpenSSL: %s)", which, path,
                ossl_reason(e));
}

static int build_ssl_ctx(SSL_CTX **out, const char *cert_file, const char *key_file, char *err,
                         size_t err_size)
{
    char *cert_pem = NULL, *key_pem = NULL;
    size_t cert_len = 0, key_len = 0;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    SSL_CTX *ctx = NULL;
    int rc;

    if (!cert_file || !*cert_file || !key_file || !*key_file) {
        set_err(err, err_size, "TLS needs both a certificate file and a private key file");
        return SB_EINVAL;
    }
    pthread_once(&bio_once, bio_method_create);
    if (!bio_method) {
        set_err(err, err_size, "out of memory setting up TLS");
        return SB_ENOMEM;
    }
    if ((rc = read_file(cert_file, "certificate", &cert_pem, &cert_len, err, err_size)) ||
        (rc = read_file(key_file, "key", &key_pem, &key_len, err, err_size)) ||
        (rc = parse_certs(cert_file, cert_pem, cert_len, &leaf, &chain, err, err_size)) ||
        (rc = parse_key(key_file, key_pem, key_len, &key, err, err_size)))
        goto fail;

    rc = SB_EINVAL;
    if (!X509_check_private_key(leaf, key)) {
        ERR_clear_error();
        int other = 0;
        for (int i = 0; i < sk_X509_num(chain) && !other; i++)
            other = X509_check_private_key(sk_X509_value(chain, i), key);
        ERR_clear_error();
        if (other)
            set_err(err, err_size,
                    "the private key in '%s' belongs to a later certificate of '%s', not to the "
                    "first: put the server's own certificate first, then the intermediates",
                    key_file, cert_file);
        else
            set_err(err, err_size,
                    "the private key in '%s' does not match the certificate in '%s'; give the "
                    "key the certificate was issued for",
                    key_file, cert_file);
        goto fail;
    }

    rc = SB_ENOMEM;
    ERR_clear_error();
    if (!(ctx = SSL_CTX_new(TLS_server_method())))
        goto fail_ossl;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, tls12_ciphers) || !SSL_CTX_set1_groups_list(ctx, tls_groups))
        goto fail_ossl;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    /* Resumption is by stateless tickets only: a server-side session cache
     * would hold memory per past connection. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 0); /* see the top of this file */
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);

    rc = SB_EINVAL;
    if (!SSL_CTX_use_certificate(ctx, leaf)) {
        cert_refused(cert_file, "certificate", err, err_size);
        goto fail;
    }
    for (int i = 0; i < sk_X509_num(chain); i++)
        if (!SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i))) {
            cert_refused(cert_file, "intermediate certificate", err, err_size);
            goto fail;
        }
    if (!SSL_CTX_use_PrivateKey(ctx, key) || !SSL_CTX_check_private_key(ctx)) {
        set_err(err, err_size, "the private key in '%s' cannot be used (OpenSSL: %s)", key_file,
                ossl_reason(take_error()));
        goto fail;
    }
    *out = ctx;
    ctx = NULL;
    rc = 0;
    goto done;

fail_ossl:
    set_err(err, err_size, "cannot set up TLS (OpenSSL: %s)", ossl_reason(take_error()));
fail:
done:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    EVP_PKEY_free(key);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    free_file(cert_pem, cert_len);
    free_file(key_pem, key_len);
    return rc;
}

static char *dup_str(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

int sb__tls_ctx_new(sb__tls_ctx_t **out, const char *cert_file, const char *key_file, char *err,
                    size_t err_size)
{
    set_err(err, err_size, "%s", "");
    sb__tls_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        set_err(err, err_size, "out of memory setting up TLS");
        return SB_ENOMEM;
    }
    int rc = sb__tls_ctx_reload(ctx, cert_file, key_file, err, err_size);
    if (rc) {
        sb__tls_ctx_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

int sb__tls_ctx_reload(sb__tls_ctx_t *ctx, const char *cert_file, const char *key_file, char *err,
                       size_t err_size)
{
    set_err(err, err_size, "%s", "");
    cert_file = cert_file ? cert_file : ctx->cert_file;
    key_file = key_file ? key_file : ctx->key_file;
    SSL_CTX *ssl_ctx = NULL;
    int rc = build_ssl_ctx(&ssl_ctx, cert_file, key_file, err, err_size);
    if (rc)
        return rc;
    char *c = dup_str(cert_file), *k = dup_str(key_file);
    if (!c || !k) {
        free(c);
        free(k);
        SSL_CTX_free(ssl_ctx);
        set_err(err, err_size, "out of memory setting up TLS");
        return SB_ENOMEM;
    }
    /* Sessions hold their own reference to the SSL_CTX they started with. */
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx->cert_file);
    free(ctx->key_file);
    ctx->ssl_ctx = ssl_ctx;
    ctx->cert_file = c;
    ctx->key_file = k;
    return 0;
}

void sb__tls_ctx_free(sb__tls_ctx_t *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx->cert_file);
    free(ctx->key_file);
    free(ctx);
}

int sb__tls_check_files(const char *cert_file, const char *key_file, char *err, size_t err_size)
{
    set_err(err, err_size, "%s", "");
    SSL_CTX *ssl_ctx = NULL;
    int rc = build_ssl_ctx(&ssl_ctx, cert_file, key_file, err, err_size);
    SSL_CTX_free(ssl_ctx);
    return rc;
}

int sb__tls_ctx_describe(const sb__tls_ctx_t *ctx, char *buf, size_t size)
{
    X509 *x = SSL_CTX_get0_certificate(ctx->ssl_ctx);
    EVP_PKEY *k = x ? X509_get0_pubkey(x) : NULL;
    if (!x || !k) {
        set_err(buf, size, "no certificate");
        return 1;
    }
    char cn[256] = "(no common name)";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    const char *type = EVP_PKEY_get0_type_name(k);
    struct tm tm;
    char until[64] = "?";
    const ASN1_TIME *not_after = X509_get0_notAfter(x);
    if (ASN1_TIME_to_tm(not_after, &tm))
        strftime(until, sizeof until, "%Y-%m-%d %H:%M:%S UTC", &tm);
    int expired = X509_cmp_current_time(not_after) <= 0;
    int early = X509_cmp_current_time(X509_get0_notBefore(x)) >= 0;
    set_err(buf, size, "CN=%s, %s %d-bit key, %s %s%s", cn, type ? type : "?", EVP_PKEY_get_bits(k),
            expired ? "EXPIRED since" : "valid until", until, early ? ", NOT YET VALID" : "");
    ERR_clear_error();
    return expired || early;
}

/* ---- connection -------------------------------------------------------- */

int sb__tls_new(sb__tls_t **out, sb__tls_ctx_t *ctx)
{
    sb__tls_t *t = calloc(1, sizeof *t);
    if (!t)
        return SB_ENOMEM;
    if (!SSL_CTX_up_ref(ctx->ssl_ctx)) {
        free(t);
        return SB_ENOMEM;
    }
    t->ssl_ctx = ctx->ssl_ctx;
    *out = t;
    return 0;
}

void sb__tls_free(sb__tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* and the BIO, and its reference to the SSL_CTX */
    SSL_CTX_free(t->ssl_ctx);
    free(t->out);
    free(t);
}

/* Records the first failure; later ones keep it. Returns the code to give. */
static int fail(sb__tls_t *t, sb__tls_failure_t kind, unsigned long e)
{
    if (!t->failure) {
        t->failure = (uint8_t)(t->nomem ? SB__TLS_FAIL_NOMEM : kind);
        t->err = e;
    }
    ERR_clear_error();
    return t->failure == SB__TLS_FAIL_NOMEM ? SB_ENOMEM : SB_EPROTO;
}

static int failed_code(const sb__tls_t *t)
{
    return t->failure == SB__TLS_FAIL_NOMEM ? SB_ENOMEM : SB_EPROTO;
}

/* Plain HTTP where a ClientHello should be: answer in plain HTTP, so a
 * browser shows why instead of a garbled page. */
static int answer_plain_http(sb__tls_t *t)
{
    char head[160];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 400 Bad Request\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     sizeof plain_http_body - 1);
    if (out_append(t, head, (size_t)n) ||
        out_append(t, plain_http_body, sizeof plain_http_body - 1))
        return fail(t, SB__TLS_FAIL_NOMEM, 0);
    return fail(t, SB__TLS_FAIL_PLAIN_HTTP, 0);
}

static int start_session(sb__tls_t *t)
{
    SSL *ssl = SSL_new(t->ssl_ctx);
    BIO *bio = ssl ? BIO_new(bio_method) : NULL;
    if (!bio) {
        SSL_free(ssl);
        return fail(t, SB__TLS_FAIL_NOMEM, 0);
    }
    BIO_set_data(bio, t);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl, bio, bio); /* one BIO both ways: SSL_free frees it once */
    SSL_set_accept_state(ssl);
    t->ssl = ssl;
    /* The SSL holds its own reference now. */
    SSL_CTX_free(t->ssl_ctx);
    t->ssl_ctx = NULL;
    return 0;
}

/* Turns the result r of an SSL call into our return code. */
static int ssl_result(sb__tls_t *t, int r)
{
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return SB_EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        t->peer_closed = 1;
        ERR_clear_error();
        return 0;
    default: /* SSL_ERROR_SSL; SSL_ERROR_SYSCALL: our BIO failed */
        return fail(t, t->established ? SB__TLS_FAIL_RECORD : SB__TLS_FAIL_HANDSHAKE, take_error());
    }
}

int sb__tls_read(sb__tls_t *t, const uint8_t **in, size_t *in_len, uint8_t *out, size_t cap)
{
    if (t->failure)
        return failed_code(t);
    if (!cap)
        return SB_EINVAL;
    if (t->peer_closed) {
        *in += *in_len; /* nothing may follow a close_notify */
        *in_len = 0;
        return 0;
    }
    if (!t->ssl) {
        if (!*in_len)
            return SB_EAGAIN;
        uint8_t first = **in;
        if (first >= 'A' && first <= 'Z')
            return answer_plain_http(t);
        /* 22: a TLS handshake record. Anything else would only get an alert
         * from OpenSSL; we spare the session and say nothing. */
        if (first != 22)
            return fail(t, SB__TLS_FAIL_NOT_TLS, first);
        int rc = start_session(t);
        if (rc)
            return rc;
    }

    t->in = *in;
    t->in_len = *in_len;
    ERR_clear_error();
    int rc;
    if (!t->established) {
        int r = SSL_do_handshake(t->ssl);
        if (r == 1) {
            t->established = 1;
        } else {
            rc = ssl_result(t, r);
            goto out;
        }
    }
    int r = SSL_read(t->ssl, out, cap > INT_MAX ? INT_MAX : (int)cap);
    rc = r > 0 ? r : ssl_result(t, r);
out:
    *in = t->in;
    *in_len = t->in_len;
    t->in = NULL;
    t->in_len = 0;
    return rc;
}

/* Encrypts p[0..n) (n <= TLS_RECORD: one record) into the output. */
static int seal(sb__tls_t *t, const uint8_t *p, size_t n)
{
    ERR_clear_error();
    int r = SSL_write(t->ssl, p, (int)n);
    if (r == (int)n)
        return 0;
    /* The BIO never asks to retry, so anything else is a failure. */
    return fail(t, SB__TLS_FAIL_RECORD, take_error());
}

int sb__tls_write(sb__tls_t *t, const struct iovec *iov, int iovcnt)
{
    if (t->failure)
        return failed_code(t);
    if (t->shut)
        return SB_ECLOSED;
    if (!t->established)
        return SB_EAGAIN;
    if (iovcnt < 0 || (iovcnt && !iov))
        return SB_EINVAL;

    /* Small frames (a chat line, a ping) are gathered into full records:
     * one record per frame would cost 22+ bytes and a cipher call each. */
    uint8_t stage[TLS_RECORD];
    size_t staged = 0, taken = 0;
    int rc;
    for (int i = 0; i < iovcnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left) {
            if (out_pending(t) >= SB__TLS_OUT_LIMIT)
                goto full;
            if (!staged && left >= TLS_RECORD) {
                if ((rc = seal(t, p, TLS_RECORD)))
                    return rc;
                p += TLS_RECORD;
                left -= TLS_RECORD;
                taken += TLS_RECORD;
                continue;
            }
            size_t n = left < TLS_RECORD - staged ? left : TLS_RECORD - staged;
            memcpy(stage + staged, p, n);
            staged += n;
            p += n;
            left -= n;
            if (staged == TLS_RECORD) {
                if ((rc = seal(t, stage, staged)))
                    return rc;
                taken += staged;
                staged = 0;
            }
        }
    }
full:
    if (staged) {
        if ((rc = seal(t, stage, staged)))
            return rc;
        taken += staged;
    }
    return (int)taken;
}

size_t sb__tls_pending(const sb__tls_t *t, const uint8_t **data)
{
    *data = t->out ? t->out + t->out_off : NULL;
    return out_pending(t);
}

void sb__tls_sent(sb__tls_t *t, size_t n)
{
    if (n > out_pending(t))
        n = out_pending(t);
    t->out_off += (uint32_t)n;
    if (t->out_off == t->out_len) {
        /* Idle connections hold no output buffer. */
        free(t->out);
        t->out = NULL;
        t->out_off = t->out_len = t->out_cap = 0;
    }
}

int sb__tls_shutdown(sb__tls_t *t)
{
    if (t->shut)
        return 0;
    t->shut = 1;
    /* OpenSSL must not send close_notify after a fatal error, and cannot
     * during a handshake: the caller just closes the socket. */
    if (!t->ssl || !t->established || t->failure)
        return 0;
    ERR_clear_error();
    if (SSL_shutdown(t->ssl) < 0) {
        if (t->nomem)
            return fail(t, SB__TLS_FAIL_NOMEM, 0);
        ERR_clear_error();
    }
    return 0;
}

int sb__tls_established(const sb__tls_t *t)
{
    return t->established;
}

sb__tls_failure_t sb__tls_failure(const sb__tls_t *t)
{
    return (sb__tls_failure_t)t->failure;
}

const char *sb__tls_error(const sb__tls_t *t, char *buf, size_t size)
{
    const char *what =
        t->failure == SB__TLS_FAIL_HANDSHAKE ? "TLS handshake failed" : "TLS connection failed";
    switch ((sb__tls_failure_t)t->failure) {
    case SB__TLS_FAIL_NONE:
        set_err(buf, size, "no TLS error");
        break;
    case SB__TLS_FAIL_PLAIN_HTTP:
        set_err(buf, size,
                "a plain HTTP request arrived on the TLS port (answered 400: use https:// or "
                "wss://)");
        break;
    case SB__TLS_FAIL_NOT_TLS:
        set_err(buf, size,
                "the client's first byte (0x%02lx) starts neither a TLS handshake nor an HTTP "
                "request",
                t->err);
        break;
    case SB__TLS_FAIL_NOMEM:
        set_err(buf, size, "out of memory in a TLS session");
        break;
    case SB__TLS_FAIL_HANDSHAKE:
    case SB__TLS_FAIL_RECORD:
        if (t->overflow) {
            set_err(buf, size,
                    "%s: the client keeps sending TLS messages that need an answer (such as key "
                    "updates) without reading the answers",
                    what);
        } else {
            const char *plain = explain(t->err);
            if (plain)
                set_err(buf, size, "%s: %s (OpenSSL: %s)", what, plain, ossl_reason(t->err));
            else
                set_err(buf, size, "%s (OpenSSL: %s)", what, ossl_reason(t->err));
        }
        break;
    }
    return buf;
}

const char *sb__tls_version(const sb__tls_t *t)
{
    return t->established ? SSL_get_version(t->ssl) : NULL;
}

const char *sb__tls_cipher(const sb__tls_t *t)
{
    return t->established ? SSL_get_cipher_name(t->ssl) : NULL;
}
