/* fuzz.h — what the libFuzzer targets of tests/fuzz share: an invariant check
 * that crashes (so libFuzzer keeps the input as a crash artifact), and input-
 * chosen chunking. */
#ifndef SB_TESTS_FUZZ_H
#define SB_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An invariant of the code under test. Not assert(): the fuzz build defines
 * NDEBUG, and a broken invariant must crash there too. */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Chunk lengths drawn from a seed the input gives (splitmix64): the same
 * input is always split the same way, so every crash reproduces. */
typedef struct {
    uint64_t state;
    size_t max; /* longest chunk; 0: everything at once */
} chunker_t;

static inline void chunker_init(chunker_t *c, uint64_t seed, size_t max)
{
    c->state = seed;
    c->max = max;
}

/* The length of the next chunk of at most left bytes (>= 1 when left >= 1). */
static inline size_t chunker_next(chunker_t *c, size_t left)
{
    if (!c->max || left <= 1)
        return left;
    uint64_t z = (c->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    size_t n = 1 + (size_t)(z % c->max);
    return n < left ? n : left;
}

/* Longest chunks to choose from with a 2-bit selector: byte at a time, a few
 * bytes (splits every header), a few hundred bytes, or all at once. */
static inline size_t chunk_max_of(unsigned sel)
{
    static const size_t max[4] = {1, 7, 300, 0};
    return max[sel & 3];
}

/* A copy of p[0..n) in a heap block of exactly n bytes, so that ASan sees a
 * read past the length the code was given. Never NULL (aborts instead). */
static inline uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *d = malloc(n); /* ASan: a 0-byte block is a valid pointer */
    if (!d && !(d = malloc(1)))
        abort();
    if (n)
        memcpy(d, p, n);
    return d;
}

/* A growing byte string (a message being assembled, an event log, bytes
 * received). Aborts when out of memory. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes_t;

static inline void put(bytes_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static inline void put_u32(bytes_t *b, uint32_t v)
{
    put(b, &v, sizeof v);
}

#endif /* SB_TESTS_FUZZ_H */
