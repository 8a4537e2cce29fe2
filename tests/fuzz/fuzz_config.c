/* fuzz_config.c — the configuration reader (src/app/config.c): arbitrary
 * bytes as a YAML configuration file, and as the text of one setting (a
 * flag's or an environment variable's value).
 *
 * Input: the whole input is the YAML text; its first byte also picks the key
 * whose value the same bytes are given as text.
 *
 * Checked besides "no crash, no leak, no UB":
 *   - a load fails exactly when it reported an error, and every error line
 *     names the file;
 *   - a configuration that loaded writes itself out (config_format, YAML,
 *     secrets included) as YAML that loads again without error into the same
 *     values: what --print-config shows is what the server runs with;
 *   - the log form of every value fits its buffer and is NUL-terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "fuzz.h"

#define NAME "fuzz.yaml"

/* The configuration as YAML with its secrets (no source comments). */
static char *as_yaml(const config_t *cfg)
{
    bytes_t b = {0};
    for (size_t i = 0; i < config_nkeys; i++) {
        char *v = config_format_alloc(cfg, &config_keys[i], CONFIG_FMT_SECRETS);
        CHECK(v, "config_format_alloc: out of memory");
        put(&b, config_keys[i].name, strlen(config_keys[i].name));
        put(&b, ": ", 2);
        put(&b, v, strlen(v));
        put(&b, "\n", 1);
        free(v);
    }
    put(&b, "", 1);
    return (char *)b.p;
}

static void check_errors(int rc, const config_errors_t *errs)
{
    CHECK((rc != 0) == (errs->count != 0), "rc %d with %zu error(s)", rc, errs->count);
    for (const char *p = errs->text ? errs->text : ""; *p;) {
        const char *nl = strchr(p, '\n');
        CHECK(nl, "an error line ends in a newline");
        CHECK(strncmp(p, NAME, strlen(NAME)) == 0 || strncmp(p, "(more", 5) == 0 ||
                  strncmp(p, "--", 2) == 0,
              "an error names where it is: %.*s", (int)(nl - p), p);
        p = nl + 1;
    }
}

static void round_trip(const config_t *cfg)
{
    char *text = as_yaml(cfg);
    config_t again;
    CHECK(config_init(&again) == 0, "config_init");
    config_errors_t errs = {0};
    int rc = config_load_yaml(&again, NAME, text, strlen(text), &errs);
    CHECK(rc == 0, "the configuration written out loads again: %s\n---\n%s",
          errs.text ? errs.text : "", text);
    for (size_t i = 0; i < config_nkeys; i++) {
        char *a = config_format_alloc(cfg, &config_keys[i], CONFIG_FMT_SECRETS);
        char *b = config_format_alloc(&again, &config_keys[i], CONFIG_FMT_SECRETS);
        CHECK(a && b && strcmp(a, b) == 0, "%s: %s, read back as %s", config_keys[i].name,
              a ? a : "?", b ? b : "?");
        free(a);
        free(b);
        char shown[96];
        memset(shown, 'x', sizeof shown);
        config_format(cfg, &config_keys[i], 0, shown, sizeof shown);
        CHECK(memchr(shown, '\0', sizeof shown), "the log form is NUL-terminated");
    }
    char *dump = config_dump(cfg, 0);
    CHECK(dump, "config_dump: out of memory");
    free(dump);
    config_errors_free(&errs);
    config_free(&again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config_t cfg;
    CHECK(config_init(&cfg) == 0, "config_init");
    config_errors_t errs = {0};
    uint8_t *copy = dup_exact(data, size); /* ASan sees a read past the end */
    int rc = config_load_yaml(&cfg, NAME, (const char *)copy, size, &errs);
    check_errors(rc, &errs);
    if (rc == 0) {
        config_errors_t check = {0};
        config_check(&cfg, &check);
        config_errors_free(&check);
        round_trip(&cfg);
    }
    config_errors_free(&errs);

    /* The same bytes as the text of one setting. */
    if (size && !memchr(data, '\0', size)) {
        char *text = malloc(size + 1);
        CHECK(text, "malloc");
        memcpy(text, data, size);
        text[size] = '\0';
        const config_key_t *key = &config_keys[data[0] % config_nkeys];
        config_errors_t e = {0};
        rc = config_set(&cfg, key, text, CONFIG_FROM_FLAG, "--flag", &e);
        check_errors(rc, &e);
        config_errors_free(&e);
        free(text);
    }
    config_free(&cfg);
    free(copy);
    return 0;
}
