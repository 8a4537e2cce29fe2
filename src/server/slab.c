/* slab.c — fixed-size objects in 64 KiB blocks (see slab.h). */
#include <string.h>
#include <sys/mman.h>

#include "server/slab.h"

/* Under AddressSanitizer objects come from malloc one by one, so that a use
 * after free of a connection is still caught. */
#if defined(SB_SLAB_FORCE_BLOCKS)
/* the unit test of the blocks themselves */
#elif defined(__SANITIZE_ADDRESS__)
#define SB_SLAB_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_SLAB_MALLOC 1
#endif
#endif

#ifdef SB_SLAB_MALLOC
#include <stdlib.h>
#endif

#define BLOCK_SIZE (64 * 1024)
/* Blocks are aligned to their size, so an object finds its block by masking
 * its address: no per-object header. A free object's first bytes link the
 * block's free list. */
#define BLOCK_OF(p) ((sb__slab_block_t *)((uintptr_t)(p) & ~(uintptr_t)(BLOCK_SIZE - 1)))

struct sb__slab_block_s {
    sb__slab_block_t *prev, *next; /* in the slab's partial list */
    void *free;                    /* first free object (its header) */
    uint32_t used;
    uint8_t listed;
};

#define FIRST_OBJ ((sizeof(sb__slab_block_t) + 15) & ~(size_t)15)

void sb__slab_init(sb__slab_t *s, size_t size)
{
    memset(s, 0, sizeof *s);
    s->size = size;
    s->stride = (size + 15) & ~(size_t)15;
}

static void list_add(sb__slab_t *s, sb__slab_block_t *b)
{
    b->prev = NULL;
    b->next = s->partial;
    if (s->partial)
        s->partial->prev = b;
    s->partial = b;
    b->listed = 1;
}

static void list_del(sb__slab_t *s, sb__slab_block_t *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        s->partial = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->listed = 0;
}

static sb__slab_block_t *block_new(sb__slab_t *s)
{
    /* Map twice the size and keep the aligned block inside. */
    char *raw = mmap(NULL, 2 * BLOCK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                     0);
    if (raw == MAP_FAILED)
        return NULL;
    char *mem = (char *)BLOCK_OF(raw + BLOCK_SIZE - 1);
    if (mem > raw)
        munmap(raw, (size_t)(mem - raw));
    if (raw + 2 * BLOCK_SIZE > mem + BLOCK_SIZE)
        munmap(mem + BLOCK_SIZE, (size_t)(raw + 2 * BLOCK_SIZE - (mem + BLOCK_SIZE)));
    sb__slab_block_t *b = (sb__slab_block_t *)mem;
    memset(b, 0, sizeof *b);
    /* Thread the free list through the objects, first object first. */
    void **link = &b->free;
    for (size_t off = FIRST_OBJ; off + s->stride <= BLOCK_SIZE; off += s->stride) {
        *link = (char *)mem + off;
        link = (void **)((char *)mem + off);
    }
    *link = NULL;
    s->nblocks++;
    list_add(s, b);
    return b;
}

void *sb__slab_alloc(sb__slab_t *s)
{
#ifdef SB_SLAB_MALLOC
    return calloc(1, s->size);
#endif
    sb__slab_block_t *b = s->partial;
    if (!b && !(b = block_new(s)))
        return NULL;
    char *obj = b->free;
    b->free = *(void **)obj;
    b->used++;
    if (!b->free)
        list_del(s, b);
    memset(obj, 0, s->size);
    return obj;
}

void sb__slab_free(sb__slab_t *s, void *p)
{
    if (!p)
        return;
#ifdef SB_SLAB_MALLOC
    (void)s;
    free(p);
    return;
#endif
    sb__slab_block_t *b = BLOCK_OF(p);
    *(void **)p = b->free;
    b->free = p;
    if (!b->listed)
        list_add(s, b);
    /* Keep the last block mapped: a server at rest should not map and
     * unmap a block per connection. */
    if (--b->used == 0 && s->nblocks > 1) {
        list_del(s, b);
        munmap(b, BLOCK_SIZE);
        s->nblocks--;
    }
}

void sb__slab_destroy(sb__slab_t *s)
{
    while (s->partial) {
        sb__slab_block_t *b = s->partial;
        list_del(s, b);
        munmap(b, BLOCK_SIZE);
    }
    s->nblocks = 0;
}
