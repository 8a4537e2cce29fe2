/* test_tls.c — the TLS engine of src/server/tls.c against a real OpenSSL
 * client. Each test makes its own self-signed certificates (EC or RSA, with
 * the OpenSSL API) in a temporary directory, then moves bytes between a
 * client SSL object on memory BIOs and the engine, as a server's event loop
 * would: ciphertext in chunks, plaintext out into a bounded buffer, output
 * taken from the engine and acknowledged in pieces. */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "server/tls.h"

/* ---- temporary files --------------------------------------------------- */

static char tmpdir[64];
static char *tmpfiles[64];
static int ntmpfiles;

static void setup(void)
{
    strcpy(tmpdir, "/tmp/sb-test-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    for (int i = 0; i < ntmpfiles; i++) {
        unlink(tmpfiles[i]);
        free(tmpfiles[i]);
    }
    ntmpfiles = 0;
    rmdir(tmpdir);
}

TestSuite(tls, .init = setup, .fini = teardown);

/* A path in the temporary directory (removed at the end of the test). */
static const char *tmp_path(const char *name)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    for (int i = 0; i < ntmpfiles; i++)
        if (!strcmp(tmpfiles[i], buf))
            return tmpfiles[i];
    cr_assert_lt(ntmpfiles, 64);
    tmpfiles[ntmpfiles] = strdup(buf);
    return tmpfiles[ntmpfiles++];
}

static void write_text(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* ---- certificates ------------------------------------------------------ */

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
    const char *cert_file, *key_file;
} ident_t;

/* rsa_bits 0: an EC P-256 key. Valid from days_from to days_to (from now). */
static EVP_PKEY *make_key(unsigned rsa_bits)
{
    EVP_PKEY *k = rsa_bits ? EVP_RSA_gen(rsa_bits) : EVP_EC_gen("P-256");
    cr_assert_not_null(k);
    return k;
}

static X509 *make_cert(EVP_PKEY *key, const char *cn, long days_from, long days_to)
{
    X509 *x = X509_new();
    cr_assert_not_null(x);
    X509_set_version(x, X509_VERSION_3);
    unsigned char serial[8];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), days_from * 86400L);
    X509_gmtime_adj(X509_getm_notAfter(x), days_to * 86400L);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    cr_assert_not_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    cr_assert(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

static void write_cert(const char *path, X509 *const *certs, int n)
{
    BIO *b = BIO_new_file(path, "w");
    cr_assert_not_null(b);
    for (int i = 0; i < n; i++)
        cr_assert(PEM_write_bio_X509(b, certs[i]));
    BIO_free(b);
}

static void write_key(const char *path, EVP_PKEY *key)
{
    BIO *b = BIO_new_file(path, "w");
    cr_assert_not_null(b);
    cr_assert(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL));
    BIO_free(b);
}

/* A key and a self-signed certificate for "localhost", written as
 * NAME.crt and NAME.key. */
static ident_t ident_make(const char *name, unsigned rsa_bits, long days_from, long days_to)
{
    ident_t id;
    char file[64];
    id.key = make_key(rsa_bits);
    id.cert = make_cert(id.key, "localhost", days_from, days_to);
    snprintf(file, sizeof file, "%s.crt", name);
    id.cert_file = tmp_path(file);
    snprintf(file, sizeof file, "%s.key", name);
    id.key_file = tmp_path(file);
    write_cert(id.cert_file, &id.cert, 1);
    write_key(id.key_file, id.key);
    return id;
}

static ident_t ident_ec(const char *name)
{
    return ident_make(name, 0, -1, 30);
}

static void ident_free(ident_t *id)
{
    EVP_PKEY_free(id->key);
    X509_free(id->cert);
}

static sb__tls_ctx_t *ctx_of(const ident_t *id)
{
    sb__tls_ctx_t *ctx = NULL;
    char err[SB__TLS_ERROR_SIZE];
    int rc = sb__tls_ctx_new(&ctx, id->cert_file, id->key_file, err, sizeof err);
    cr_assert_eq(rc, 0, "sb__tls_ctx_new: %d: %s", rc, err);
    return ctx;
}

/* ---- byte strings ------------------------------------------------------ */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes_t;

static void put(bytes_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        cr_assert_not_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void bytes_free(bytes_t *b)
{
    free(b->p);
    *b = (bytes_t){0};
}

/* n bytes of a pattern that differs per seed and never repeats with a short
 * period, so a lost, doubled or reordered piece shows. */
static uint8_t *pattern(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

/* ---- a client and the engine, connected by memory ---------------------- */

typedef struct {
    sb__tls_t *t;
    SSL *c;
    BIO *c_in;  /* engine -> client */
    BIO *c_out; /* client -> engine */

    size_t chunk;     /* feed the engine at most this many bytes at a time; 0: all */
    int random_chunk; /* chunk lengths drawn from 1..chunk */
    uint64_t rng;
    size_t out_cap;   /* the engine's plaintext buffer */
    size_t sent_step; /* acknowledge engine output in pieces of this many bytes; 0: all */

    bytes_t to_server; /* plaintext the client sends */
    size_t to_server_off;
    bytes_t got_server; /* plaintext the engine delivered */

    struct iovec *iov; /* plaintext the engine still has to send */
    int iovcnt;
    bytes_t got_client; /* plaintext the client received */
    int write_rc;       /* a negative sb__tls_write result other than SB_EAGAIN */
    size_t max_pending; /* the largest engine output seen */

    int engine_rc; /* 1 while running; then 0 (close_notify) or the error */
    int client_err;
    unsigned long client_reason;
    int client_closed;
} pipe_t;

static SSL_CTX *client_ctx(int min_version, int max_version, X509 *trust)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    cr_assert_not_null(ctx);
    cr_assert(SSL_CTX_set_min_proto_version(ctx, min_version));
    cr_assert(SSL_CTX_set_max_proto_version(ctx, max_version));
    if (trust) {
        cr_assert(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), trust));
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    return ctx;
}

static void pipe_init(pipe_t *p, SSL_CTX *cctx, sb__tls_ctx_t *sctx)
{
    memset(p, 0, sizeof *p);
    if (sctx) /* else the caller sets p->t */
        cr_assert_eq(sb__tls_new(&p->t, sctx), 0);
    p->c = SSL_new(cctx);
    cr_assert_not_null(p->c);
    p->c_in = BIO_new(BIO_s_mem());
    p->c_out = BIO_new(BIO_s_mem());
    SSL_set_bio(p->c, p->c_in, p->c_out);
    SSL_set_connect_state(p->c);
    SSL_set_tlsext_host_name(p->c, "localhost");
    cr_assert(SSL_set1_host(p->c, "localhost"));
    p->out_cap = 4096;
    p->engine_rc = 1;
    p->rng = 0x1234567;
}

static void pipe_free(pipe_t *p)
{
    sb__tls_free(p->t);
    SSL_free(p->c);
    bytes_free(&p->to_server);
    bytes_free(&p->got_server);
    bytes_free(&p->got_client);
}

static void client_failed(pipe_t *p, int r)
{
    int e = SSL_get_error(p->c, r);
    if (e == SSL_ERROR_WANT_READ)
        return;
    if (e == SSL_ERROR_ZERO_RETURN) {
        p->client_closed = 1;
        return;
    }
    if (!p->client_err) {
        p->client_err = e;
        unsigned long err;
        while ((err = ERR_get_error()))
            if (!p->client_reason)
                p->client_reason = err;
    }
    ERR_clear_error();
}

static size_t next_chunk(pipe_t *p, size_t avail)
{
    size_t n = p->chunk ? p->chunk : avail;
    if (p->chunk && p->random_chunk) {
        p->rng ^= p->rng << 13;
        p->rng ^= p->rng >> 7;
        p->rng ^= p->rng << 17;
        n = 1 + (size_t)(p->rng % p->chunk);
    }
    return n < avail ? n : avail;
}

static void iov_advance(struct iovec **iov, int *cnt, size_t n)
{
    while (*cnt && (n || !(*iov)->iov_len)) {
        if (n >= (*iov)->iov_len) {
            n -= (*iov)->iov_len;
            (*iov)++;
            (*cnt)--;
        } else {
            (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
            (*iov)->iov_len -= n;
            n = 0;
        }
    }
    cr_assert_eq(n, 0, "consumed more than was given");
}

/* Moves bytes both ways until nothing moves any more. */
static void pump(pipe_t *p)
{
    static uint8_t buf[1 << 17];
    uint8_t *plain = malloc(p->out_cap);
    cr_assert_not_null(plain);
    for (int round = 0;; round++) {
        cr_assert_lt(round, 1000000, "the pump does not settle");
        int moved = 0;

        /* The client: handshake, send, receive. */
        if (!p->client_err && !p->client_closed) {
            ERR_clear_error();
            if (!SSL_is_init_finished(p->c)) {
                int r = SSL_do_handshake(p->c);
                if (r != 1)
                    client_failed(p, r);
            }
            if (SSL_is_init_finished(p->c) && !p->client_err) {
                while (p->to_server_off < p->to_server.len) {
                    size_t n = p->to_server.len - p->to_server_off;
                    int r = SSL_write(p->c, p->to_server.p + p->to_server_off,
                                      (int)(n > 16384 ? 16384 : n));
                    if (r <= 0) {
                        client_failed(p, r);
                        break;
                    }
                    p->to_server_off += (size_t)r;
                }
                for (;;) {
                    int r = SSL_read(p->c, buf, sizeof buf);
                    if (r <= 0) {
                        client_failed(p, r);
                        break;
                    }
                    put(&p->got_client, buf, (size_t)r);
                }
            }
        }

        /* Client -> engine, in chunks; each chunk drained to SB_EAGAIN. */
        size_t avail;
        while ((avail = BIO_ctrl_pending(p->c_out))) {
            size_t n = next_chunk(p, avail > sizeof buf ? sizeof buf : avail);
            cr_assert_eq(BIO_read(p->c_out, buf, (int)n), (int)n);
            moved = 1;
            if (p->engine_rc != 1)
                continue; /* a closed server reads nothing */
            const uint8_t *in = buf;
            size_t len = n;
            int r;
            while ((r = sb__tls_read(p->t, &in, &len, plain, p->out_cap)) > 0) {
                cr_assert_leq((size_t)r, p->out_cap);
                put(&p->got_server, plain, (size_t)r);
            }
            if (r == SB_EAGAIN) {
                cr_assert_eq(len, 0, "SB_EAGAIN with %zu bytes left unconsumed", len);
                cr_assert_eq(in, buf + n);
            } else {
                p->engine_rc = r;
            }
        }

        /* Engine -> client: encrypt when the output is empty, as a caller
         * does, then hand over the output in steps. */
        const uint8_t *out;
        if (p->iovcnt && !sb__tls_pending(p->t, &out)) {
            int r = sb__tls_write(p->t, p->iov, p->iovcnt);
            if (r > 0) {
                iov_advance(&p->iov, &p->iovcnt, (size_t)r);
                moved = 1;
            } else if (r != SB_EAGAIN && r != 0) {
                p->write_rc = r;
                p->iovcnt = 0;
            }
        }
        size_t pending = sb__tls_pending(p->t, &out);
        if (pending > p->max_pending)
            p->max_pending = pending;
        if (pending) {
            size_t n = p->sent_step && p->sent_step < pending ? p->sent_step : pending;
            cr_assert_eq(BIO_write(p->c_in, out, (int)n), (int)n);
            sb__tls_sent(p->t, n);
            moved = 1;
        }
        if (!moved)
            break;
    }
    free(plain);
}

static void connect_pipe(pipe_t *p)
{
    pump(p);
    cr_assert_eq(p->client_err, 0, "client failed: %s", ERR_reason_error_string(p->client_reason));
    cr_assert_eq(p->engine_rc, 1, "engine failed: %d", p->engine_rc);
    cr_assert(SSL_is_init_finished(p->c));
    cr_assert(sb__tls_established(p->t));
}

/* Sends n bytes client -> engine and checks they arrive exactly. */
static void client_sends(pipe_t *p, size_t n, uint32_t seed)
{
    uint8_t *data = pattern(n, seed);
    p->to_server.len = p->to_server_off = 0;
    p->got_server.len = 0;
    put(&p->to_server, data, n);
    pump(p);
    cr_assert_eq(p->got_server.len, n, "%zu bytes sent, %zu arrived", n, p->got_server.len);
    cr_assert(!memcmp(p->got_server.p, data, n), "%zu bytes arrived changed", n);
    free(data);
}

/* Sends n bytes engine -> client, as the iovecs lens[] (the last takes the
 * rest), and checks they arrive exactly. */
static void engine_sends(pipe_t *p, size_t n, uint32_t seed, const size_t *lens, int nlens)
{
    uint8_t *data = pattern(n, seed);
    struct iovec iov[64];
    int cnt = 0;
    size_t off = 0;
    for (int i = 0; i < nlens && off < n; i++) {
        size_t l = lens[i] < n - off ? lens[i] : n - off;
        iov[cnt++] = (struct iovec){data + off, l};
        off += l;
    }
    if (off < n)
        iov[cnt++] = (struct iovec){data + off, n - off};
    p->iov = iov;
    p->iovcnt = cnt;
    p->got_client.len = 0;
    pump(p);
    cr_assert_eq(p->write_rc, 0, "sb__tls_write: %d", p->write_rc);
    cr_assert_eq(p->iovcnt, 0, "the engine did not take everything");
    cr_assert_eq(p->got_client.len, n, "%zu bytes sent, %zu arrived", n, p->got_client.len);
    cr_assert(!memcmp(p->got_client.p, data, n), "%zu bytes arrived changed", n);
    p->iov = NULL;
    free(data);
}

static const size_t sizes[] = {1, 2, 100, 1000, 16383, 16384, 16385, 65536, 100000, 1 << 20};

static void data_both_ways(pipe_t *p)
{
    static const size_t lens[] = {1, 700, 16384, 3, 40000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        client_sends(p, sizes[i], (uint32_t)i);
        engine_sends(p, sizes[i], (uint32_t)i + 100, lens, 5);
        engine_sends(p, sizes[i], (uint32_t)i + 200, NULL, 0);
    }
}

static void session_with(unsigned rsa_bits, int version, const char *expect_version,
                         const char *expect_kx)
{
    ident_t id = ident_make("srv", rsa_bits, -1, 30);
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(version, version, id.cert);
    pipe_t p;
    pipe_init(&p, cctx, ctx);
    cr_assert_eq(sb__tls_established(p.t), 0);
    cr_assert_null(sb__tls_version(p.t));
    connect_pipe(&p);

    /* The client verified the chain and the name against the test's cert. */
    cr_assert_eq(SSL_get_verify_result(p.c), X509_V_OK);
    X509 *peer = SSL_get1_peer_certificate(p.c);
    cr_assert_eq(X509_cmp(peer, id.cert), 0);
    X509_free(peer);
    cr_assert_str_eq(sb__tls_version(p.t), expect_version);
    cr_assert_str_eq(SSL_get_version(p.c), expect_version);
    cr_assert_str_eq(sb__tls_cipher(p.t), SSL_get_cipher_name(p.c));
    cr_assert_null(SSL_get_current_compression(p.c));
    if (expect_kx)
        cr_assert(strstr(sb__tls_cipher(p.t), expect_kx), "cipher %s", sb__tls_cipher(p.t));

    data_both_ways(&p);
    pipe_free(&p);
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

/* ---- handshake and data ------------------------------------------------ */

Test(tls, tls13_ec_handshake_and_data_of_every_size_both_ways)
{
    session_with(0, TLS1_3_VERSION, "TLSv1.3", NULL);
}

Test(tls, tls12_ec_handshake_and_data_of_every_size_both_ways)
{
    session_with(0, TLS1_2_VERSION, "TLSv1.2", "ECDHE-ECDSA-");
}

Test(tls, tls12_rsa_handshake_and_data_of_every_size_both_ways)
{
    session_with(2048, TLS1_2_VERSION, "TLSv1.2", "ECDHE-RSA-");
}

Test(tls, tls13_rsa_handshake)
{
    ident_t id = ident_make("srv", 2048, -1, 30);
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, id.cert);
    pipe_t p;
    pipe_init(&p, cctx, ctx);
    connect_pipe(&p);
    cr_assert_str_eq(sb__tls_version(p.t), "TLSv1.3");
    client_sends(&p, 5000, 1);
    engine_sends(&p, 5000, 2, NULL, 0);
    pipe_free(&p);
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

/* Ciphertext arrives in any chunking: a byte at a time, a few bytes, random
 * lengths; plaintext leaves through a 1-byte buffer; output is taken a few
 * bytes at a time. */
Test(tls, any_chunking_of_input_and_output)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, id.cert);
    static const struct {
        size_t chunk, out_cap, sent_step;
        int random;
    } runs[] = {{1, 1, 1, 0}, {7, 5, 13, 0}, {3000, 100, 0, 1}, {1, 16384, 0, 0}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
            SSL_CTX_set_max_proto_version(cctx, v);
            pipe_t p;
            pipe_init(&p, cctx, ctx);
            p.chunk = runs[i].chunk;
            p.out_cap = runs[i].out_cap;
            p.sent_step = runs[i].sent_step;
            p.random_chunk = runs[i].random;
            connect_pipe(&p);
            client_sends(&p, 40000, (uint32_t)i);
            engine_sends(&p, 20000, (uint32_t)i, (const size_t[]){1, 2, 3}, 3);
            pipe_free(&p);
        }
    }
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

/* The client's first flight split in two at every point: nothing is
 * answered before the ClientHello is complete, then a ServerHello. */
Test(tls, client_hello_split_at_every_point)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, id.cert);
    SSL *c = SSL_new(cctx);
    BIO *cin = BIO_new(BIO_s_mem()), *cout = BIO_new(BIO_s_mem());
    SSL_set_bio(c, cin, cout);
    SSL_set_connect_state(c);
    cr_assert_eq(SSL_do_handshake(c), -1);
    uint8_t hello[4096];
    int n = BIO_read(cout, hello, sizeof hello);
    cr_assert_gt(n, 100);
    uint8_t plain[64];
    for (int split = 0; split < n; split++) {
        sb__tls_t *t;
        cr_assert_eq(sb__tls_new(&t, ctx), 0);
        const uint8_t *in = hello;
        size_t len = (size_t)split;
        const uint8_t *out;
        cr_assert_eq(sb__tls_read(t, &in, &len, plain, sizeof plain), SB_EAGAIN);
        cr_assert_eq(len, 0);
        cr_assert_eq(sb__tls_pending(t, &out), 0, "an answer to part of a ClientHello");
        in = hello + split;
        len = (size_t)(n - split);
        cr_assert_eq(sb__tls_read(t, &in, &len, plain, sizeof plain), SB_EAGAIN);
        cr_assert_eq(len, 0);
        size_t pending = sb__tls_pending(t, &out);
        cr_assert_gt(pending, 100, "split at %d: no ServerHello", split);
        /* A handshake record holding a ServerHello (type 2). */
        cr_assert_eq(out[0], 22);
        cr_assert_eq(out[5], 2);
        cr_assert_eq(sb__tls_failure(t), SB__TLS_FAIL_NONE);
        sb__tls_free(t);
    }
    SSL_free(c);
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

/* Counts the TLS records in a ciphertext stream and checks it splits into
 * whole records. */
static int count_records(const uint8_t *p, size_t n, int type)
{
    int count = 0;
    size_t off = 0;
    while (off < n) {
        cr_assert_leq(off + 5, n, "a partial record header");
        size_t len = (size_t)p[off + 3] << 8 | p[off + 4];
        cr_assert_leq(off + 5 + len, n, "a partial record");
        count += p[off] == type;
        off += 5 + len;
    }
    return count;
}

Test(tls, small_frames_are_gathered_into_full_records)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_3_VERSION, TLS1_3_VERSION, id.cert);
    pipe_t p;
    pipe_init(&p, cctx, ctx);
    connect_pipe(&p);

    /* 64 frames of 100 bytes: 6400 bytes, one record. */
    uint8_t *data = pattern(6400, 9);
    struct iovec iov[64];
    for (int i = 0; i < 64; i++)
        iov[i] = (struct iovec){data + i * 100, 100};
    cr_assert_eq(sb__tls_write(p.t, iov, 64), 6400);
    const uint8_t *out;
    size_t n = sb__tls_pending(p.t, &out);
    cr_assert_eq(count_records(out, n, 23), 1, "64 small frames took several records");
    cr_assert_lt(n, 6400 + 64, "more than one record's overhead");
    free(data);

    /* 40 KiB of 200 frames: whole 16 KiB records, three of them. */
    sb__tls_sent(p.t, n);
    data = pattern(40960, 10);
    for (int i = 0; i < 64; i++)
        iov[i] = (struct iovec){data + i * 640, 640};
    cr_assert_eq(sb__tls_write(p.t, iov, 64), 40960);
    n = sb__tls_pending(p.t, &out);
    cr_assert_eq(count_records(out, n, 23), 3);
    sb__tls_sent(p.t, n);
    free(data);
    pipe_free(&p);
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, output_is_bounded_and_writing_resumes_where_it_stopped)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, id.cert);
    pipe_t p;
    pipe_init(&p, cctx, ctx);
    connect_pipe(&p);

    size_t total = 3 << 20;
    uint8_t *data = pattern(total, 3);
    struct iovec iov[3] = {{data, 1}, {data + 1, total - 2}, {data + total - 1, 1}};
    int r = sb__tls_write(p.t, iov, 3);
    cr_assert_gt(r, 0);
    cr_assert_leq((size_t)r, SB__TLS_OUT_LIMIT + 16384);
    const uint8_t *out;
    size_t pending = sb__tls_pending(p.t, &out);
    cr_assert_leq(pending, SB__TLS_OUT_LIMIT + 16384 + 256);
    /* Full output: nothing more is taken until some is sent. */
    struct iovec *rest = iov;
    int cnt = 3;
    iov_advance(&rest, &cnt, (size_t)r);
    cr_assert_eq(sb__tls_write(p.t, rest, cnt), 0);

    /* The pipe sends the rest, taking output in odd steps. */
    p.iov = rest;
    p.iovcnt = cnt;
    p.sent_step = 10000;
    pump(&p);
    cr_assert_eq(p.iovcnt, 0);
    cr_assert_eq(p.got_client.len, total);
    cr_assert(!memcmp(p.got_client.p, data, total));
    cr_assert_leq(p.max_pending, SB__TLS_OUT_LIMIT + 16384 + 256);
    cr_assert_eq(sb__tls_pending(p.t, &out), 0);
    cr_assert_null(out, "an empty output keeps no buffer");
    free(data);
    pipe_free(&p);
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, nothing_is_written_before_the_handshake_completes)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    sb__tls_t *t;
    cr_assert_eq(sb__tls_new(&t, ctx), 0);
    struct iovec iov = {"hello", 5};
    cr_assert_eq(sb__tls_write(t, &iov, 1), SB_EAGAIN);
    const uint8_t *out;
    cr_assert_eq(sb__tls_pending(t, &out), 0);
    uint8_t plain[16];
    const uint8_t *in = (const uint8_t *)"";
    size_t len = 0;
    cr_assert_eq(sb__tls_read(t, &in, &len, plain, sizeof plain), SB_EAGAIN);
    cr_assert_eq(sb__tls_read(t, &in, &len, plain, 0), SB_EINVAL);
    cr_assert_eq(sb__tls_shutdown(t), 0, "shutdown before any input sends nothing");
    cr_assert_eq(sb__tls_pending(t, &out), 0);
    sb__tls_free(t);
    sb__tls_free(NULL);
    sb__tls_ctx_free(ctx);
    sb__tls_ctx_free(NULL);
    ident_free(&id);
}

/* ---- refused parameters ------------------------------------------------ */

/* The client ends with a handshake error and the engine with
 * SB__TLS_FAIL_HANDSHAKE whose text contains expect. */
static void expect_refused(SSL_CTX *cctx, sb__tls_ctx_t *ctx, const char *expect)
{
    pipe_t p;
    pipe_init(&p, cctx, ctx);
    pump(&p);
    cr_assert_eq(p.engine_rc, SB_EPROTO, "the engine accepted the client");
    cr_assert_eq(sb__tls_failure(p.t), SB__TLS_FAIL_HANDSHAKE);
    cr_assert_eq(sb__tls_established(p.t), 0);
    char err[SB__TLS_ERROR_SIZE];
    sb__tls_error(p.t, err, sizeof err);
    cr_assert(strstr(err, expect), "error text: %s", err);
    cr_assert(strstr(err, "TLS handshake failed: "), "error text: %s", err);
    /* The client was told with an alert, and is not connected. */
    cr_assert_eq(p.client_err, SSL_ERROR_SSL);
    cr_assert(!SSL_is_init_finished(p.c));
    /* Failures stick. */
    const uint8_t *in = (const uint8_t *)"\x16";
    size_t len = 1;
    uint8_t plain[8];
    cr_assert_eq(sb__tls_read(p.t, &in, &len, plain, sizeof plain), SB_EPROTO);
    cr_assert_eq(sb__tls_write(p.t, &(struct iovec){"x", 1}, 1), SB_EPROTO);
    cr_assert_eq(sb__tls_shutdown(p.t), 0);
    pipe_free(&p);
}

Test(tls, clients_offering_only_tls10_or_tls11_are_refused)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);

    /* Control: this client is able to connect to a server that allows old
     * versions, so the engine's refusal is the engine's own doing. */
    SSL_CTX *old_server = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_security_level(old_server, 0);
    SSL_CTX_set_min_proto_version(old_server, TLS1_VERSION);
    cr_assert(SSL_CTX_use_certificate(old_server, id.cert));
    cr_assert(SSL_CTX_use_PrivateKey(old_server, id.key));

    for (int v = TLS1_VERSION; v <= TLS1_1_VERSION; v++) {
        SSL_CTX *cctx = client_ctx(v, v, NULL);
        SSL_CTX_set_security_level(cctx, 0);
        SSL_CTX_set_cipher_list(cctx, "ALL:@SECLEVEL=0");

        SSL *s = SSL_new(old_server), *c = SSL_new(cctx);
        BIO *a, *b;
        cr_assert(BIO_new_bio_pair(&a, 0, &b, 0));
        SSL_set_bio(s, a, a);
        SSL_set_bio(c, b, b);
        SSL_set_accept_state(s);
        SSL_set_connect_state(c);
        int rs = 0, rc = 0;
        for (int i = 0; i < 20 && (rs != 1 || rc != 1); i++) {
            rc = SSL_do_handshake(c);
            rs = SSL_do_handshake(s);
        }
        cr_assert(rs == 1 && rc == 1, "the control handshake failed");
        cr_assert_eq(SSL_version(c), v);
        SSL_free(s);
        SSL_free(c);

        expect_refused(cctx, ctx, "older than 1.2");
        SSL_CTX_free(cctx);
    }
    SSL_CTX_free(old_server);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, cbc_and_non_ecdhe_cipher_suites_are_refused)
{
    ident_t id = ident_make("srv", 2048, -1, 30);
    sb__tls_ctx_t *ctx = ctx_of(&id);
    static const char *const weak[] = {
        "ECDHE-RSA-AES128-SHA",    /* CBC */
        "ECDHE-RSA-AES256-SHA384", /* CBC */
        "AES128-GCM-SHA256",       /* RSA key exchange: no forward secrecy */
        "DHE-RSA-AES128-GCM-SHA256",
    };
    for (size_t i = 0; i < sizeof weak / sizeof weak[0]; i++) {
        SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, id.cert);
        cr_assert(SSL_CTX_set_cipher_list(cctx, weak[i]));
        expect_refused(cctx, ctx, "none of this server's cipher suites");
        SSL_CTX_free(cctx);
    }
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

static const char *negotiated_cipher(sb__tls_ctx_t *ctx, X509 *trust, int version,
                                     const char *tls12, const char *tls13)
{
    SSL_CTX *cctx = client_ctx(version, version, trust);
    if (tls12)
        cr_assert(SSL_CTX_set_cipher_list(cctx, tls12));
    if (tls13)
        cr_assert(SSL_CTX_set_ciphersuites(cctx, tls13));
    pipe_t p;
    pipe_init(&p, cctx, ctx);
    connect_pipe(&p);
    static char name[64];
    snprintf(name, sizeof name, "%s", sb__tls_cipher(p.t));
    cr_assert_str_eq(name, SSL_get_cipher_name(p.c));
    pipe_free(&p);
    SSL_CTX_free(cctx);
    return name;
}

Test(tls, the_server_chooses_the_cipher_but_honours_a_chacha_first_client)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    /* The client prefers AES-256; the server's AES-128 comes first. */
    cr_assert_str_eq(
        negotiated_cipher(ctx, id.cert, TLS1_2_VERSION,
                          "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256", NULL),
        "ECDHE-ECDSA-AES128-GCM-SHA256");
    /* A client without AES hardware lists ChaCha20 first and gets it. */
    cr_assert_str_eq(
        negotiated_cipher(ctx, id.cert, TLS1_2_VERSION,
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256", NULL),
        "ECDHE-ECDSA-CHACHA20-POLY1305");
    cr_assert_str_eq(negotiated_cipher(ctx, id.cert, TLS1_3_VERSION, NULL,
                                       "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"),
                     "TLS_CHACHA20_POLY1305_SHA256");
    cr_assert_str_eq(negotiated_cipher(ctx, id.cert, TLS1_3_VERSION, NULL,
                                       "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"),
                     "TLS_AES_256_GCM_SHA384");
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, alpn_selects_http11_and_tolerates_other_offers)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    static const struct {
        const char *offer;
        size_t len;
        const char *expect;
    } cases[] = {
        {"\x02h2\x08http/1.1", 12, "http/1.1"},
        {"\x08http/1.1", 9, "http/1.1"},
        {"\x02h2", 3, ""},
        {NULL, 0, ""},
    };
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, id.cert);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pipe_t p;
        pipe_init(&p, cctx, ctx);
        if (cases[i].offer)
            cr_assert_eq(SSL_set_alpn_protos(p.c, (const unsigned char *)cases[i].offer,
                                             (unsigned)cases[i].len),
                         0);
        connect_pipe(&p);
        const unsigned char *proto;
        unsigned len;
        SSL_get0_alpn_selected(p.c, &proto, &len);
        cr_assert_eq(len, strlen(cases[i].expect), "case %zu", i);
        cr_assert(!len || !memcmp(proto, cases[i].expect, len));
        pipe_free(&p);
    }
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, renegotiation_is_refused)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, id.cert);
    pipe_t p;
    pipe_init(&p, cctx, ctx);
    connect_pipe(&p);
    cr_assert(SSL_renegotiate(p.c));
    pump(&p);
    /* The engine answered the new ClientHello with a no_renegotiation
     * alert, which ends the client's attempt. */
    cr_assert_eq(p.client_err, SSL_ERROR_SSL);
    cr_assert_eq(ERR_GET_REASON(p.client_reason), SSL_R_NO_RENEGOTIATION, "client: %s",
                 ERR_reason_error_string(p.client_reason));
    pipe_free(&p);
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

/* ---- TLS 1.3 post-handshake messages ----------------------------------- */

Test(tls, key_updates_are_answered_and_data_keeps_flowing)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_3_VERSION, TLS1_3_VERSION, id.cert);
    pipe_t p;
    pipe_init(&p, cctx, ctx);
    connect_pipe(&p);
    for (int i = 0; i < 3; i++) {
        cr_assert(SSL_key_update(p.c, SSL_KEY_UPDATE_REQUESTED));
        client_sends(&p, 1000, (uint32_t)i);
        /* The engine's reply to the request was written along. */
        engine_sends(&p, 1000, (uint32_t)i, NULL, 0);
    }
    pipe_free(&p);
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, a_client_that_keeps_requesting_answers_without_reading_fails)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_3_VERSION, TLS1_3_VERSION, id.cert);
    pipe_t p;
    pipe_init(&p, cctx, ctx);
    connect_pipe(&p);
    /* Key update requests, and never read what the engine answers. */
    uint8_t buf[4096], plain[256];
    int r = SB_EAGAIN;
    for (int i = 0; i < 100000 && r == SB_EAGAIN; i++) {
        cr_assert(SSL_key_update(p.c, SSL_KEY_UPDATE_REQUESTED));
        cr_assert_eq(SSL_do_handshake(p.c), 1); /* sends it */
        int n;
        while ((n = BIO_read(p.c_out, buf, sizeof buf)) > 0) {
            const uint8_t *in = buf;
            size_t len = (size_t)n;
            while ((r = sb__tls_read(p.t, &in, &len, plain, sizeof plain)) > 0)
                ;
            if (r != SB_EAGAIN)
                break;
        }
    }
    cr_assert_eq(r, SB_EPROTO);
    const uint8_t *out;
    cr_assert_leq(sb__tls_pending(p.t, &out), SB__TLS_OUT_HARD_LIMIT);
    char err[SB__TLS_ERROR_SIZE];
    cr_assert(strstr(sb__tls_error(p.t, err, sizeof err), "without reading"), "%s", err);
    pipe_free(&p);
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, sessions_resume_with_tickets)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
        SSL_CTX *cctx = client_ctx(v, v, id.cert);
        pipe_t p;
        pipe_init(&p, cctx, ctx);
        connect_pipe(&p);
        client_sends(&p, 10, 1); /* TLS 1.3 tickets come after the handshake */
        /* A session ended without close_notify is not resumed (OpenSSL). */
        cr_assert_eq(SSL_shutdown(p.c), 0);
        SSL_SESSION *s = SSL_get1_session(p.c);
        cr_assert(SSL_SESSION_is_resumable(s), "no ticket (version %x)", v);
        cr_assert_eq(SSL_session_reused(p.c), 0);
        pipe_free(&p);

        pipe_init(&p, cctx, ctx);
        SSL_set_session(p.c, s);
        connect_pipe(&p);
        cr_assert_eq(SSL_session_reused(p.c), 1, "not resumed (version %x)", v);
        client_sends(&p, 100, 2);
        engine_sends(&p, 100, 3, NULL, 0);
        pipe_free(&p);
        SSL_SESSION_free(s);
        SSL_CTX_free(cctx);
    }
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

/* ---- bad input --------------------------------------------------------- */

Test(tls, garbage_handshakes_fail_cleanly_with_an_alert)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    uint8_t plain[64], buf[600];
    uint32_t x = 12345;
    int alerts = 0;
    for (int i = 0; i < 300; i++) {
        size_t n = 1 + i % 599;
        for (size_t k = 0; k < n; k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf[k] = (uint8_t)x;
        }
        buf[0] = 22; /* a handshake record... */
        if (i % 2 && n > 5) {
            /* ...with a plausible header half of the time */
            buf[1] = 3;
            buf[2] = 1;
            buf[3] = (uint8_t)((n - 5) >> 8);
            buf[4] = (uint8_t)(n - 5);
        }
        sb__tls_t *t;
        cr_assert_eq(sb__tls_new(&t, ctx), 0);
        const uint8_t *in = buf;
        size_t len = n;
        int r = sb__tls_read(t, &in, &len, plain, sizeof plain);
        cr_assert(r == SB_EAGAIN || r == SB_EPROTO, "r = %d", r);
        cr_assert(len <= n);
        if (r == SB_EPROTO) {
            cr_assert_eq(sb__tls_failure(t), SB__TLS_FAIL_HANDSHAKE);
            const uint8_t *out;
            size_t pending = sb__tls_pending(t, &out);
            if (pending) {
                cr_assert_eq(out[0], 21, "not an alert");
                alerts++;
            }
            char err[SB__TLS_ERROR_SIZE];
            cr_assert(strstr(sb__tls_error(t, err, sizeof err), "TLS handshake failed"));
        } else {
            cr_assert_eq(len, 0);
        }
        sb__tls_free(t);
    }
    cr_assert_gt(alerts, 100, "garbage is answered with an alert");
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, corrupted_records_after_the_handshake_fail_cleanly)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, id.cert);
    for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
        SSL_CTX_set_max_proto_version(cctx, v);
        pipe_t p;
        pipe_init(&p, cctx, ctx);
        connect_pipe(&p);
        /* A real record with one bit flipped. */
        cr_assert_eq(SSL_write(p.c, "hello there", 11), 11);
        uint8_t rec[256];
        int n = BIO_read(p.c_out, rec, sizeof rec);
        cr_assert_gt(n, 20);
        rec[n - 3] ^= 0x10;
        const uint8_t *in = rec;
        size_t len = (size_t)n;
        uint8_t plain[64];
        cr_assert_eq(sb__tls_read(p.t, &in, &len, plain, sizeof plain), SB_EPROTO);
        cr_assert_eq(sb__tls_failure(p.t), SB__TLS_FAIL_RECORD);
        char err[SB__TLS_ERROR_SIZE];
        sb__tls_error(p.t, err, sizeof err);
        cr_assert(strstr(err, "integrity check"), "%s", err);
        /* The client learns it from an alert. */
        pump(&p);
        cr_assert_eq(p.client_err, SSL_ERROR_SSL);
        cr_assert_eq(sb__tls_write(p.t, &(struct iovec){"x", 1}, 1), SB_EPROTO);
        pipe_free(&p);
    }
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, a_first_byte_that_is_neither_tls_nor_http_fails_silently)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    static const uint8_t firsts[] = {0x00, 0x15, 0x17, 0x80, 0xff, 'a', '\r'};
    for (size_t i = 0; i < sizeof firsts; i++) {
        sb__tls_t *t;
        cr_assert_eq(sb__tls_new(&t, ctx), 0);
        uint8_t data[3] = {firsts[i], 3, 3}, plain[8];
        const uint8_t *in = data;
        size_t len = 3;
        cr_assert_eq(sb__tls_read(t, &in, &len, plain, sizeof plain), SB_EPROTO);
        cr_assert_eq(sb__tls_failure(t), SB__TLS_FAIL_NOT_TLS);
        const uint8_t *out;
        cr_assert_eq(sb__tls_pending(t, &out), 0);
        char err[SB__TLS_ERROR_SIZE], want[16];
        snprintf(want, sizeof want, "0x%02x", firsts[i]);
        cr_assert(strstr(sb__tls_error(t, err, sizeof err), want), "%s", err);
        sb__tls_free(t);
    }
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, plain_http_on_the_tls_port_gets_a_plain_400)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    static const char *const requests[] = {
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "G", /* the first byte is enough */
        "POST /api HTTP/1.1\r\n",
    };
    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
        sb__tls_t *t;
        cr_assert_eq(sb__tls_new(&t, ctx), 0);
        const uint8_t *in = (const uint8_t *)requests[i];
        size_t len = strlen(requests[i]);
        uint8_t plain[64];
        cr_assert_eq(sb__tls_read(t, &in, &len, plain, sizeof plain), SB_EPROTO);
        cr_assert_eq(len, strlen(requests[i]), "plain HTTP input is not consumed");
        cr_assert_eq(sb__tls_failure(t), SB__TLS_FAIL_PLAIN_HTTP);
        const uint8_t *out;
        size_t n = sb__tls_pending(t, &out);
        char *answer = strndup((const char *)out, n);
        cr_assert(!strncmp(answer, "HTTP/1.1 400 Bad Request\r\n", 26), "%s", answer);
        cr_assert(strstr(answer, "\r\nConnection: close\r\n"));
        char *body = strstr(answer, "\r\n\r\n");
        cr_assert_not_null(body);
        body += 4;
        unsigned long clen = 0;
        char *cl = strstr(answer, "\r\nContent-Length: ");
        cr_assert_not_null(cl);
        clen = strtoul(cl + 18, NULL, 10);
        cr_assert_eq(clen, strlen(body), "Content-Length %lu, body %zu", clen, strlen(body));
        cr_assert(strstr(body, "https://"), "%s", body);
        free(answer);
        /* It sticks, and the answer goes out in pieces like any output. */
        cr_assert_eq(sb__tls_read(t, &in, &len, plain, sizeof plain), SB_EPROTO);
        sb__tls_sent(t, 10);
        cr_assert_eq(sb__tls_pending(t, &out), n - 10);
        sb__tls_free(t);
    }
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

/* ---- close_notify ------------------------------------------------------ */

Test(tls, close_notify_from_the_server)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, id.cert);
    for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
        SSL_CTX_set_max_proto_version(cctx, v);
        pipe_t p;
        pipe_init(&p, cctx, ctx);
        connect_pipe(&p);
        /* Data queued before the close_notify arrives before it. */
        cr_assert_eq(sb__tls_write(p.t, &(struct iovec){"bye", 3}, 1), 3);
        cr_assert_eq(sb__tls_shutdown(p.t), 0);
        cr_assert_eq(sb__tls_shutdown(p.t), 0, "twice is harmless");
        cr_assert_eq(sb__tls_write(p.t, &(struct iovec){"x", 1}, 1), SB_ECLOSED);
        pump(&p);
        cr_assert_eq(p.got_client.len, 3);
        cr_assert(p.client_closed, "the client saw no close_notify");
        /* The client answers with its own; the engine reports it. */
        cr_assert_eq(SSL_shutdown(p.c), 1);
        pump(&p);
        cr_assert_eq(p.engine_rc, 0);
        cr_assert_eq(sb__tls_failure(p.t), SB__TLS_FAIL_NONE);
        pipe_free(&p);
    }
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, close_notify_from_the_client)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, id.cert);
    for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
        SSL_CTX_set_max_proto_version(cctx, v);
        pipe_t p;
        pipe_init(&p, cctx, ctx);
        connect_pipe(&p);
        /* Data and close_notify in one flight: the data comes first. */
        cr_assert_eq(SSL_write(p.c, "last words", 10), 10);
        cr_assert_eq(SSL_shutdown(p.c), 0);
        pump(&p);
        cr_assert_eq(p.got_server.len, 10);
        cr_assert_eq(p.engine_rc, 0, "the engine did not report the close_notify");
        /* 0 sticks and swallows anything after it. */
        uint8_t plain[8];
        const uint8_t *in = (const uint8_t *)"\x17\x03\x03";
        size_t len = 3;
        cr_assert_eq(sb__tls_read(p.t, &in, &len, plain, sizeof plain), 0);
        cr_assert_eq(len, 0);
        /* The server replies; the client sees the reply. */
        cr_assert_eq(sb__tls_shutdown(p.t), 0);
        const uint8_t *out;
        cr_assert_gt(sb__tls_pending(p.t, &out), 0);
        pump(&p);
        cr_assert_eq(SSL_shutdown(p.c), 1, "the client got no close_notify back");
        pipe_free(&p);
    }
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

Test(tls, shutdown_during_the_handshake_sends_nothing_and_frees_cleanly)
{
    ident_t id = ident_ec("srv");
    sb__tls_ctx_t *ctx = ctx_of(&id);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, id.cert);
    pipe_t p;
    pipe_init(&p, cctx, ctx);
    cr_assert_eq(SSL_do_handshake(p.c), -1);
    uint8_t hello[4096], plain[16];
    int n = BIO_read(p.c_out, hello, sizeof hello);
    const uint8_t *in = hello;
    size_t len = (size_t)n;
    cr_assert_eq(sb__tls_read(p.t, &in, &len, plain, sizeof plain), SB_EAGAIN);
    const uint8_t *out;
    size_t flight = sb__tls_pending(p.t, &out);
    cr_assert_gt(flight, 0);
    cr_assert_eq(sb__tls_shutdown(p.t), 0);
    cr_assert_eq(sb__tls_pending(p.t, &out), flight, "nothing added during the handshake");
    pipe_free(&p); /* with output pending and the handshake half done */
    SSL_CTX_free(cctx);
    sb__tls_ctx_free(ctx);
    ident_free(&id);
}

/* ---- contexts: files and errors ---------------------------------------- */

/* sb__tls_ctx_new and sb__tls_check_files refuse the pair with SB_EINVAL
 * and a message containing each of the NULL-terminated expects. */
static void expect_ctx_error(const char *cert, const char *key, ...)
{
    char err[SB__TLS_ERROR_SIZE] = "unset", err2[SB__TLS_ERROR_SIZE];
    sb__tls_ctx_t *ctx = NULL;
    cr_assert_eq(sb__tls_ctx_new(&ctx, cert, key, err, sizeof err), SB_EINVAL);
    cr_assert_null(ctx);
    cr_assert_eq(sb__tls_check_files(cert, key, err2, sizeof err2), SB_EINVAL);
    cr_assert_str_eq(err, err2);
    va_list ap;
    va_start(ap, key);
    const char *want;
    while ((want = va_arg(ap, const char *)))
        cr_assert(strstr(err, want), "'%s' not in: %s", want, err);
    va_end(ap);
}

Test(tls, context_errors_name_the_file_and_the_problem)
{
    ident_t a = ident_ec("a"), b = ident_ec("b");
    const char *missing = tmp_path("missing.pem");

    expect_ctx_error(missing, a.key_file, missing, "No such file", NULL);
    expect_ctx_error(a.cert_file, missing, missing, "No such file", NULL);
    expect_ctx_error(NULL, a.key_file, "both a certificate file and a private key file", NULL);
    expect_ctx_error(a.cert_file, "", "both a certificate file and a private key file", NULL);
    expect_ctx_error(tmpdir, a.key_file, tmpdir, "not a regular file", NULL);

    /* Key and certificate of different pairs. */
    expect_ctx_error(a.cert_file, b.key_file, "does not match", a.cert_file, b.key_file, NULL);

    /* A DER certificate, or text that is no PEM at all. */
    const char *der = tmp_path("der.crt");
    unsigned char *d = NULL;
    int dlen = i2d_X509(a.cert, &d);
    write_text(der, d, (size_t)dlen);
    OPENSSL_free(d);
    expect_ctx_error(der, a.key_file, der, "no PEM certificate", "openssl x509", NULL);

    /* A damaged PEM certificate. */
    const char *bad = tmp_path("bad.crt");
    const char damaged[] = "-----BEGIN CERTIFICATE-----\nMIIBnotbase64!!!\n"
                           "-----END CERTIFICATE-----\n";
    write_text(bad, damaged, sizeof damaged - 1);
    expect_ctx_error(bad, a.key_file, bad, "damaged", NULL);

    /* A damaged intermediate after a good certificate. */
    const char *chain = tmp_path("chain.crt");
    BIO *f = BIO_new_file(chain, "w");
    PEM_write_bio_X509(f, a.cert);
    BIO_write(f, damaged, (int)sizeof damaged - 1);
    BIO_free(f);
    expect_ctx_error(chain, a.key_file, "certificate 2", "damaged", NULL);

    /* The certificate given as the key. */
    expect_ctx_error(a.cert_file, a.cert_file, "no PEM private key", "holds a certificate", NULL);

    /* A damaged key. */
    const char *badkey = tmp_path("bad.key");
    const char damaged_key[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    write_text(badkey, damaged_key, sizeof damaged_key - 1);
    expect_ctx_error(a.cert_file, badkey, badkey, "damaged", NULL);

    /* A key protected by a passphrase: refused, never prompted for. */
    const char *enc = tmp_path("enc.key");
    f = BIO_new_file(enc, "w");
    cr_assert(PEM_write_bio_PKCS8PrivateKey(f, a.key, EVP_aes_128_cbc(), NULL, 0, NULL,
                                            (void *)"secret"));
    BIO_free(f);
    expect_ctx_error(a.cert_file, enc, enc, "passphrase", "openssl pkey", NULL);

    /* The chain in the wrong order: the key is the second certificate's. */
    const char *swapped = tmp_path("swapped.crt");
    X509 *both[2] = {b.cert, a.cert};
    write_cert(swapped, both, 2);
    expect_ctx_error(swapped, a.key_file, "first", "intermediates", NULL);
    /* In the right order it loads. */
    const char *ordered = tmp_path("ordered.crt");
    X509 *right[2] = {a.cert, b.cert};
    write_cert(ordered, right, 2);
    sb__tls_ctx_t *ctx = NULL;
    char err[SB__TLS_ERROR_SIZE];
    cr_assert_eq(sb__tls_ctx_new(&ctx, ordered, a.key_file, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sb__tls_check_files(ordered, a.key_file, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(err, "");
    sb__tls_ctx_free(ctx);

    ident_free(&a);
    ident_free(&b);
}

Test(tls, a_weak_rsa_key_is_refused)
{
    ident_t weak = ident_make("weak", 1024, -1, 30);
    expect_ctx_error(weak.cert_file, weak.key_file, "too small", "2048", NULL);
    ident_free(&weak);
}

Test(tls, describe_names_the_certificate_and_warns_when_expired)
{
    ident_t good = ident_ec("good"), old = ident_make("old", 0, -30, -1);
    char buf[256];
    sb__tls_ctx_t *ctx = ctx_of(&good);
    cr_assert_eq(sb__tls_ctx_describe(ctx, buf, sizeof buf), 0, "%s", buf);
    cr_assert(strstr(buf, "CN=localhost") && strstr(buf, "valid until") && strstr(buf, "EC 256"),
              "%s", buf);
    sb__tls_ctx_free(ctx);
    /* An expired certificate loads (the operator decides) but is flagged. */
    ctx = ctx_of(&old);
    cr_assert_eq(sb__tls_ctx_describe(ctx, buf, sizeof buf), 1, "%s", buf);
    cr_assert(strstr(buf, "EXPIRED"), "%s", buf);
    sb__tls_ctx_free(ctx);
    ident_free(&good);
    ident_free(&old);
}

/* ---- reload ------------------------------------------------------------ */

static X509 *served_cert(SSL_CTX *cctx, sb__tls_t *t)
{
    pipe_t p;
    pipe_init(&p, cctx, NULL);
    p.t = t;
    connect_pipe(&p);
    X509 *x = SSL_get1_peer_certificate(p.c);
    p.t = NULL;
    pipe_free(&p);
    return x;
}

Test(tls, reload_affects_new_connections_only_and_keeps_the_old_context_on_error)
{
    ident_t a = ident_ec("a"), b = ident_ec("b");
    sb__tls_ctx_t *ctx = ctx_of(&a);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL);
    char err[SB__TLS_ERROR_SIZE];

    /* before: accepted before the reload, no byte read yet */
    sb__tls_t *before, *after;
    cr_assert_eq(sb__tls_new(&before, ctx), 0);
    cr_assert_eq(sb__tls_ctx_reload(ctx, b.cert_file, b.key_file, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sb__tls_new(&after, ctx), 0);

    X509 *x = served_cert(cctx, after);
    cr_assert_eq(X509_cmp(x, b.cert), 0, "a new connection does not get the new certificate");
    X509_free(x);
    x = served_cert(cctx, before);
    cr_assert_eq(X509_cmp(x, a.cert), 0, "an older connection changed certificate");
    X509_free(x);
    sb__tls_free(before);
    sb__tls_free(after);

    /* A failed reload says why and changes nothing. */
    cr_assert_eq(sb__tls_ctx_reload(ctx, a.cert_file, b.key_file, err, sizeof err), SB_EINVAL);
    cr_assert(strstr(err, "does not match"), "%s", err);
    cr_assert_eq(sb__tls_new(&after, ctx), 0);
    x = served_cert(cctx, after);
    cr_assert_eq(X509_cmp(x, b.cert), 0, "a failed reload changed the certificate");
    X509_free(x);
    sb__tls_free(after);

    /* NULL paths: the same files again, with what they hold now (renewed). */
    ident_t renewed = ident_ec("renewed");
    write_cert(b.cert_file, &renewed.cert, 1);
    write_key(b.key_file, renewed.key);
    cr_assert_eq(sb__tls_ctx_reload(ctx, NULL, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sb__tls_new(&after, ctx), 0);
    x = served_cert(cctx, after);
    cr_assert_eq(X509_cmp(x, renewed.cert), 0, "reload did not re-read the files");
    X509_free(x);
    sb__tls_free(after);

    /* A connection mid-session when its context is reloaded and freed. */
    pipe_t p;
    pipe_init(&p, cctx, ctx);
    connect_pipe(&p);
    cr_assert_eq(sb__tls_ctx_reload(ctx, a.cert_file, a.key_file, err, sizeof err), 0, "%s", err);
    sb__tls_ctx_free(ctx);
    client_sends(&p, 3000, 1);
    engine_sends(&p, 3000, 2, NULL, 0);
    pipe_free(&p);

    SSL_CTX_free(cctx);
    ident_free(&a);
    ident_free(&b);
    ident_free(&renewed);
}
