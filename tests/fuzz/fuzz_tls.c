/* fuzz_tls.c — the TLS engine (src/server/tls.c) fed arbitrary bytes as a
 * client's first flight, as the server feeds it: in chunks, each drained
 * with sb__tls_read until SB_EAGAIN or an error, the output taken in steps.
 * A fresh engine per input, from one context made at start-up with a
 * self-signed EC certificate generated in memory.
 *
 * Input: 3 bytes of settings, then the bytes of the "client".
 *   byte 0  bits 0-1: chunking (byte at a time, up to 7, up to 300, at once)
 *           bits 2-3: plaintext buffer size (1, 16, 1000, 16384)
 *           bit 4: call sb__tls_shutdown at the end; bit 5: try sb__tls_write
 *   byte 1-2  the seed of the chunk lengths
 *
 * Checked besides "no crash, no leak, no UB": plaintext never over the
 * buffer, SB_EAGAIN only with every byte consumed, consumption never past
 * the input, results only from the documented set, failures stick, plain
 * HTTP answered with a complete 400, a non-TLS first byte answered with
 * nothing, a failed handshake with at most an alert, output bounded, and
 * no application data or write before a completed handshake. */
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "fuzz.h"
#include "server/tls.h"

static const size_t caps[4] = {1, 16, 1000, 16384};

static sb__tls_ctx_t *ctx;

/* A self-signed P-256 certificate for localhost, through files that exist
 * only while the context is built (the engine loads files). */
static void make_context(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    CHECK(key && x, "cannot make a key");
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -86400);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 3650);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    CHECK(X509_sign(x, key, EVP_sha256()) > 0, "cannot sign");

    char dir[] = "/tmp/sb-fuzz-tls-XXXXXX", cert[64], keyf[64];
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(keyf, sizeof keyf, "%s/key.pem", dir);
    BIO *b = BIO_new_file(cert, "w");
    CHECK(b && PEM_write_bio_X509(b, x), "cannot write %s", cert);
    BIO_free(b);
    b = BIO_new_file(keyf, "w");
    CHECK(b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), "cannot write %s",
          keyf);
    BIO_free(b);
    char err[SB__TLS_ERROR_SIZE];
    int rc = sb__tls_ctx_new(&ctx, cert, keyf, err, sizeof err);
    unlink(cert);
    unlink(keyf);
    rmdir(dir);
    CHECK(rc == 0, "sb__tls_ctx_new: %s", err);
    X509_free(x);
    EVP_PKEY_free(key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    make_context();
    return 0;
}

static void check_failure(sb__tls_t *t, int rc)
{
    sb__tls_failure_t f = sb__tls_failure(t);
    CHECK(f != SB__TLS_FAIL_NONE, "%d without a failure", rc);
    CHECK(rc == (f == SB__TLS_FAIL_NOMEM ? SB_ENOMEM : SB_EPROTO), "%d for failure %d", rc, f);
    char err[SB__TLS_ERROR_SIZE];
    CHECK(sb__tls_error(t, err, sizeof err)[0], "an empty error text");
    const uint8_t *out;
    size_t n = sb__tls_pending(t, &out);
    switch (f) {
    case SB__TLS_FAIL_PLAIN_HTTP:
        CHECK(n > 30 && !memcmp(out, "HTTP/1.1 400 Bad Request\r\n", 26),
              "plain HTTP not answered with a 400");
        break;
    case SB__TLS_FAIL_NOT_TLS:
        CHECK(n == 0, "%zu bytes sent to a client that does not speak TLS", n);
        break;
    case SB__TLS_FAIL_HANDSHAKE:
        CHECK(!sb__tls_established(t), "a failed handshake is established");
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t flags = data[0];
    chunker_t ch;
    chunker_init(&ch, (uint64_t)data[1] << 8 | data[2], chunk_max_of(flags));
    size_t cap = caps[(flags >> 2) & 3];
    uint8_t *plain = malloc(cap);
    CHECK(plain, "out of memory");
    size_t n = size - 3;
    uint8_t *input = dup_exact(data + 3, n);

    sb__tls_t *t;
    CHECK(sb__tls_new(&t, ctx) == 0, "sb__tls_new");
    int rc = SB_EAGAIN;
    size_t off = 0;
    while (off < n && rc == SB_EAGAIN) {
        size_t len = chunker_next(&ch, n - off);
        /* Each chunk in a block of its own size, so ASan sees overreads. */
        uint8_t *chunk = dup_exact(input + off, len);
        const uint8_t *in = chunk;
        size_t left = len;
        while ((rc = sb__tls_read(t, &in, &left, plain, cap)) > 0) {
            CHECK((size_t)rc <= cap, "%d bytes of plaintext in a %zu-byte buffer", rc, cap);
            CHECK(sb__tls_established(t), "application data before the handshake completed");
        }
        CHECK(left <= len && in == chunk + (len - left), "consumption out of the input");
        CHECK(rc == SB_EAGAIN || rc == 0 || rc == SB_EPROTO || rc == SB_ENOMEM,
              "sb__tls_read returned %d", rc);
        if (rc == SB_EAGAIN)
            CHECK(left == 0, "SB_EAGAIN with %zu of %zu bytes not consumed", left, len);
        off += len - left;
        free(chunk);
        if (rc == SB_EAGAIN) {
            /* Take the output in two steps, as a socket might. */
            const uint8_t *out;
            size_t pending = sb__tls_pending(t, &out);
            CHECK(pending <= SB__TLS_OUT_HARD_LIMIT, "%zu bytes of output", pending);
            sb__tls_sent(t, pending / 2);
            size_t rest = sb__tls_pending(t, &out);
            CHECK(rest == pending - pending / 2, "sb__tls_sent lost track");
            sb__tls_sent(t, rest);
        }
    }
    if (rc == SB_EPROTO || rc == SB_ENOMEM) {
        check_failure(t, rc);
        /* Failures stick. */
        const uint8_t *in = data;
        size_t left = size;
        CHECK(sb__tls_read(t, &in, &left, plain, cap) == rc, "a failure did not stick");
    }
    if (flags & 0x20) {
        struct iovec iov = {(void *)data, size};
        int w = sb__tls_write(t, &iov, 1);
        if (!sb__tls_established(t))
            CHECK(w == SB_EAGAIN || w == SB_EPROTO || w == SB_ENOMEM,
                  "sb__tls_write before the handshake returned %d", w);
    }
    if (flags & 0x10)
        CHECK(sb__tls_shutdown(t) == 0 || sb__tls_failure(t) == SB__TLS_FAIL_NOMEM,
              "sb__tls_shutdown failed");
    sb__tls_free(t);
    free(input);
    free(plain);
    return 0;
}
