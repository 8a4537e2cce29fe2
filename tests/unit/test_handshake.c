/* test_handshake.c — the opening-handshake helpers (src/ws/handshake.c):
 * Sec-WebSocket-Accept, token lists and subprotocol selection. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "ws/ws.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Runs sb__ws_accept_key on a copy of key in its own allocation (no NUL
 * after it), so a read past the given length trips ASan. */
static int accept_key(const char *key, char out[29])
{
    size_t len = strlen(key);
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, key, len);
    int rc = sb__ws_accept_key(copy, len, out);
    free(copy);
    return rc;
}

static int has_token(const char *value, const char *token)
{
    size_t len = strlen(value);
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, value, len);
    int rc = sb__token_list_has(copy, len, token);
    free(copy);
    return rc;
}

static const char *select_subprotocol(const char *offer, const char *const *supported)
{
    return sb__ws_select_subprotocol(offer, offer ? strlen(offer) : 0, supported);
}

/* ---- Sec-WebSocket-Accept --------------------------------------------- */

Test(accept_key, rfc6455_sample)
{
    char out[29];
    memset(out, 'x', sizeof out);
    cr_assert_eq(accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* Expected values computed independently (Python hashlib + base64). */
Test(accept_key, other_keys)
{
    static const struct {
        const char *key, *accept;
    } cases[] = {
        {"AQIDBAUGBwgJCgsMDQ4PEA==", "C/0nmHhBztSRGR1CwL6Tf4ZjwpY="},
        {"/////////////////////w==", "XXpj4jYzLM2yUE0C7TIgMwTQh2g="},
        {"+/+/+/+/+/+/+/+/+/+//g==", "Aa+UvdHpmpOov76SQAuK1UwAaxc="},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        char out[29];
        cr_assert_eq(accept_key(cases[i].key, out), 0, "%s", cases[i].key);
        cr_assert_str_eq(out, cases[i].accept, "%s", cases[i].key);
    }
}

Test(accept_key, surrounding_blanks_are_ignored)
{
    static const char *keys[] = {
        " dGhlIHNhbXBsZSBub25jZQ==",
        "dGhlIHNhbXBsZSBub25jZQ== ",
        "\tdGhlIHNhbXBsZSBub25jZQ==\t",
        "  \t dGhlIHNhbXBsZSBub25jZQ==  \t ",
    };
    for (size_t i = 0; i < COUNT(keys); i++) {
        char out[29];
        cr_assert_eq(accept_key(keys[i], out), 0, "[%s]", keys[i]);
        cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "[%s]", keys[i]);
    }
}

Test(accept_key, keys_that_are_not_base64_of_16_bytes_are_refused)
{
    static const char *keys[] = {
        "",
        "   ",
        "dGhlIHNhbXBsZSBub25jZQ=",      /* one '=' short */
        "dGhlIHNhbXBsZSBub25jZQ",       /* padding missing */
        "dGhlIHNhbXBsZSBub25jZQ===",    /* too long */
        "dGhlIHNhbXBsZSBub25jZQ==A",    /* trailing garbage */
        "AAAAAAAAAAAAAAAAAAAA",         /* 15 bytes */
        "AAAAAAAAAAAAAAAAAAAAAA=",      /* 16 bytes, padding cut */
        "AAAAAAAAAAAAAAAAAAAAAAA=",     /* 17 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAA",     /* 18 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAAAA==", /* 19 bytes */
        "dGhlIHNhbXBsZSBub25jZ===",     /* '=' inside the data */
        "dGhlIHNhbXBsZSBub25jZ.==",     /* bad character */
        "dGhlIHNhbXBsZSBub25j-Q==",     /* base64url, not base64 */
        "dGhlIHNhbXBsZSBub25j_Q==",
        "dGhlIHNhbXBs ZSBub25jZQ==", /* blank inside */
        "\xc3\xa9GhlIHNhbXBsZSBub25jZQ==",
    };
    for (size_t i = 0; i < COUNT(keys); i++) {
        char out[29];
        cr_assert_eq(accept_key(keys[i], out), SB_EPROTO, "[%s] should be refused", keys[i]);
    }
}

Test(accept_key, a_bad_character_anywhere_is_refused)
{
    const char *good = "dGhlIHNhbXBsZSBub25jZQ==";
    static const char bad[] = {'.', '-', '_', '=', ' ', '\x80', ':', '@', '[', '`', '{'};
    for (size_t pos = 0; pos < 22; pos++) {
        for (size_t b = 0; b < sizeof bad; b++) {
            char key[25];
            memcpy(key, good, 25);
            key[pos] = bad[b];
            char out[29];
            /* A blank at the very start is trimmed, leaving 23 characters. */
            cr_assert_eq(accept_key(key, out), SB_EPROTO, "[%s]", key);
        }
    }
}

/* ---- token lists (Connection, Upgrade) -------------------------------- */

Test(token_list, finds_tokens_case_insensitively)
{
    cr_assert(has_token("Upgrade", "upgrade"));
    cr_assert(has_token("UPGRADE", "upgrade"));
    cr_assert(has_token("upgrade", "Upgrade"));
    cr_assert(has_token("keep-alive, Upgrade", "upgrade"));
    cr_assert(has_token("Upgrade, keep-alive", "upgrade"));
    cr_assert(has_token("keep-alive,Upgrade", "upgrade"));
    cr_assert(has_token("websocket", "websocket"));
    cr_assert(has_token("WebSocket", "websocket"));
}

Test(token_list, blanks_around_items_are_ignored)
{
    cr_assert(has_token("  upgrade  ", "upgrade"));
    cr_assert(has_token("\tupgrade\t", "upgrade"));
    cr_assert(has_token("keep-alive ,  Upgrade  , foo", "upgrade"));
    cr_assert(has_token("a,\t upgrade \t,b", "upgrade"));
}

Test(token_list, empty_items_are_skipped)
{
    cr_assert(has_token(",upgrade", "upgrade"));
    cr_assert(has_token("upgrade,", "upgrade"));
    cr_assert(has_token(",, ,upgrade,,", "upgrade"));
    cr_assert(has_token("keep-alive, , Upgrade", "upgrade"));
    cr_assert_not(has_token("", "upgrade"));
    cr_assert_not(has_token(",", "upgrade"));
    cr_assert_not(has_token(" , ,, ", "upgrade"));
}

Test(token_list, only_whole_items_match)
{
    cr_assert_not(has_token("upgradex", "upgrade"));
    cr_assert_not(has_token("xupgrade", "upgrade"));
    cr_assert_not(has_token("upgrad", "upgrade"));
    cr_assert_not(has_token("keep-alive, upgradex", "upgrade"));
    cr_assert_not(has_token("up grade", "upgrade"));
    cr_assert_not(has_token("upgrade-insecure", "upgrade"));
    cr_assert_not(has_token("keep-alive", "upgrade"));
    cr_assert_not(has_token("websockets", "websocket"));
}

Test(token_list, only_the_given_length_is_read)
{
    /* "upgrade" lies past len: not part of the value. */
    const char value[] = "keep-alive, upgrade";
    cr_assert_not(sb__token_list_has(value, 10, "upgrade"));
    cr_assert(sb__token_list_has(value, 10, "keep-alive"));
    cr_assert_not(sb__token_list_has(value, 4, "keep-alive"));
}

Test(token_list, null_value_has_nothing)
{
    cr_assert_not(sb__token_list_has(NULL, 0, "upgrade"));
}

/* ---- subprotocols ----------------------------------------------------- */

Test(subprotocol, server_preference_order_wins)
{
    static const char *const supported[] = {"v2.chat", "chat", NULL};
    cr_assert_eq(select_subprotocol("chat, v2.chat", supported), supported[0]);
    cr_assert_eq(select_subprotocol("v2.chat, chat", supported), supported[0]);
    cr_assert_eq(select_subprotocol("chat", supported), supported[1]);
    cr_assert_eq(select_subprotocol("foo, chat, bar", supported), supported[1]);
    cr_assert_eq(select_subprotocol("  chat  ,x", supported), supported[1]);
}

Test(subprotocol, comparison_is_case_sensitive)
{
    static const char *const supported[] = {"chat", NULL};
    cr_assert_null(select_subprotocol("Chat", supported));
    cr_assert_null(select_subprotocol("CHAT", supported));
    cr_assert_eq(select_subprotocol("CHAT, chat", supported), supported[0]);
}

Test(subprotocol, none_offered)
{
    static const char *const supported[] = {"chat", NULL};
    cr_assert_null(select_subprotocol(NULL, supported));
    cr_assert_null(select_subprotocol("", supported));
    cr_assert_null(select_subprotocol(" , ", supported));
}

Test(subprotocol, none_matching)
{
    static const char *const supported[] = {"chat", "v2.chat", NULL};
    cr_assert_null(select_subprotocol("mqtt, wamp", supported));
    cr_assert_null(select_subprotocol("chatty", supported));
    cr_assert_null(select_subprotocol("cha", supported));
    cr_assert_null(select_subprotocol("v2.chat.x", supported));
}

Test(subprotocol, server_supports_none)
{
    static const char *const none[] = {NULL};
    cr_assert_null(select_subprotocol("chat", none));
    cr_assert_null(select_subprotocol("chat", NULL));
}
