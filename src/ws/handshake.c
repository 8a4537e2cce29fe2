/* handshake.c — the pieces of the opening handshake (RFC 6455 4.2) that do
 * not depend on how the HTTP request was parsed. */
#include <strings.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "ws/ws.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

static void trim(const char **s, size_t *len)
{
    while (*len && is_blank(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && is_blank((*s)[*len - 1]))
        (*len)--;
}

int sb__ws_accept_key(const char *key, size_t len, char out[29])
{
    trim(&key, &len);
    /* 16 bytes encode to 22 base64 characters and "==". */
    if (len != 24 || key[22] != '=' || key[23] != '=')
        return SB_EPROTO;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64(key[i]))
            return SB_EPROTO;

    char buf[24 + sizeof ws_guid];
    memcpy(buf, key, 24);
    memcpy(buf + 24, ws_guid, sizeof ws_guid - 1);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)buf, 24 + sizeof ws_guid - 1, digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
    out[28] = '\0';
    return 0;
}

/* Calls fn on each trimmed, non-empty item of a comma-separated list until fn
 * returns non-zero; returns that value or 0. */
static int each_item(const char *s, size_t len, int (*fn)(const char *, size_t, const void *),
                     const void *arg)
{
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && s[j] != ',')
            j++;
        const char *item = s + i;
        size_t n = j - i;
        trim(&item, &n);
        if (n) {
            int r = fn(item, n, arg);
            if (r)
                return r;
        }
        i = j + 1;
    }
    return 0;
}

static int token_eq_nocase(const char *item, size_t n, const void *arg)
{
    const char *token = arg;
    return strlen(token) == n && strncasecmp(item, token, n) == 0;
}

int sb__token_list_has(const char *value, size_t len, const char *token)
{
    return value ? each_item(value, len, token_eq_nocase, token) : 0;
}

static int token_eq_exact(const char *item, size_t n, const void *arg)
{
    const char *token = arg;
    return strlen(token) == n && memcmp(item, token, n) == 0;
}

const char *sb__ws_select_subprotocol(const char *offer, size_t len, const char *const *supported)
{
    if (!offer || !supported)
        return NULL;
    for (; *supported; supported++)
        if (each_item(offer, len, token_eq_exact, *supported))
            return *supported;
    return NULL;
}
