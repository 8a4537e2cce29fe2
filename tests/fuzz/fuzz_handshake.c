/* fuzz_handshake.c — the handshake helpers of src/ws/handshake.c:
 * sb__ws_accept_key, sb__token_list_has and sb__ws_select_subprotocol, each
 * against a reference written here.
 *
 * Input: parts separated by '\n'. The first part is a header value (the
 * key, the token list, the client's subprotocol offer); the second is the
 * token looked up; the rest are the server's subprotocols, in order. Every
 * part is handed over in a block of exactly its length (values are not
 * NUL-terminated on the wire). */
#include <ctype.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "fuzz.h"
#include "ws/ws.h"

#define MAX_PROTOCOLS 8

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims blanks in place of (*s, *n). */
static void trim(const char **s, size_t *n)
{
    while (*n && blank(**s))
        (*s)++, (*n)--;
    while (*n && blank((*s)[*n - 1]))
        (*n)--;
}

/* RFC 6455 4.2.1: the key is base64 of 16 bytes, which is 24 characters
 * ending in "==". Decoded with OpenSSL rather than checked by character. */
static void check_accept(const char *key, size_t len)
{
    char out[29];
    memset(out, 0x55, sizeof out);
    int r = sb__ws_accept_key(key, len, out);
    const char *k = key;
    size_t n = len;
    trim(&k, &n);
    int valid = n == 24 && k[22] == '=' && k[23] == '=';
    if (valid) {
        unsigned char raw[18];
        /* EVP_DecodeBlock counts the padding as zero bytes: 18 for 24 chars. */
        valid =
            EVP_DecodeBlock(raw, (const unsigned char *)k, 24) == 18 && memchr(k, '=', 22) == NULL;
    }
    CHECK((r == 0) == valid, "key '%.*s': accept_key returned %d", (int)len, key, r);
    if (r != 0) {
        CHECK(r == SB_EPROTO, "accept_key returned %d", r);
        return;
    }
    char buf[24 + 36];
    memcpy(buf, k, 24);
    memcpy(buf + 24, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)buf, sizeof buf, digest);
    char want[29];
    EVP_EncodeBlock((unsigned char *)want, digest, SHA_DIGEST_LENGTH);
    CHECK(memcmp(out, want, 29) == 0, "Sec-WebSocket-Accept '%.28s', expected '%s'", out, want);
}

/* Is `item` (trimmed) one of the comma-separated, blank-trimmed items? */
static int ref_list_has(const char *list, size_t len, const char *token, int nocase)
{
    size_t tn = strlen(token);
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && list[j] != ',')
            j++;
        const char *item = list + i;
        size_t n = j - i;
        trim(&item, &n);
        if (n && n == tn) {
            size_t k = 0;
            while (k < n &&
                   (nocase ? tolower((unsigned char)item[k]) == tolower((unsigned char)token[k])
                           : item[k] == token[k]))
                k++;
            if (k == n)
                return 1;
        }
        if (j >= len)
            return 0;
        i = j + 1;
    }
}

/* A part of the input as a NUL-terminated string (a NUL inside cuts it). */
static char *cstr(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *parts[2 + MAX_PROTOCOLS];
    size_t lens[2 + MAX_PROTOCOLS], nparts = 0;
    const uint8_t *p = data, *end = data + size;
    while (nparts < 2 + MAX_PROTOCOLS) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        parts[nparts] = p;
        lens[nparts++] = (size_t)((nl ? nl : end) - p);
        if (!nl)
            break;
        p = nl + 1;
    }

    char *value = (char *)dup_exact(parts[0], lens[0]);
    size_t vlen = lens[0];
    check_accept(value, vlen);

    char *token =
        cstr(nparts > 1 ? parts[1] : (const uint8_t *)"websocket", nparts > 1 ? lens[1] : 9);
    int has = sb__token_list_has(value, vlen, token);
    CHECK(has == ref_list_has(value, vlen, token, 1), "token_list_has('%.*s', '%s') = %d",
          (int)vlen, value, token, has);
    CHECK(sb__token_list_has(NULL, 0, token) == 0, "a missing header has a token");

    char *supported[MAX_PROTOCOLS + 1];
    size_t nsup = 0;
    for (size_t i = 2; i < nparts; i++)
        supported[nsup++] = cstr(parts[i], lens[i]);
    supported[nsup] = NULL;
    const char *chosen = sb__ws_select_subprotocol(value, vlen, (const char *const *)supported);
    const char *want = NULL;
    for (size_t i = 0; i < nsup && !want; i++)
        if (ref_list_has(value, vlen, supported[i], 0))
            want = supported[i];
    CHECK(chosen == want, "subprotocol %s chosen, %s expected", chosen ? chosen : "(none)",
          want ? want : "(none)");
    CHECK(sb__ws_select_subprotocol(NULL, 0, (const char *const *)supported) == NULL,
          "a subprotocol chosen without an offer");
    CHECK(sb__ws_select_subprotocol(value, vlen, NULL) == NULL,
          "a subprotocol chosen without a list");

    for (size_t i = 0; i < nsup; i++)
        free(supported[i]);
    free(token);
    free(value);
    return 0;
}
