/*
 * slab.h — a fixed-size object allocator for long-lived objects such as
 * connections. Objects are packed into 64 KiB blocks mapped on their own, so
 * they sit together instead of between transient allocations (which would
 * leave a hole next to every connection once they are freed), and a block
 * that empties goes back to the system.
 */
#ifndef SB_SERVER_SLAB_H
#define SB_SERVER_SLAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct sb__slab_block_s sb__slab_block_t;

typedef struct sb__slab_s {
    size_t size;               /* object size as asked */
    size_t stride;             /* bytes per object in a block, header included */
    sb__slab_block_t *partial; /* blocks with a free object */
    size_t nblocks;
} sb__slab_t;

void sb__slab_init(sb__slab_t *s, size_t size);
/* A zeroed object, or NULL when out of memory. */
void *sb__slab_alloc(sb__slab_t *s);
/* Gives back an object of this slab. NULL-safe. */
void sb__slab_free(sb__slab_t *s, void *p);
/* Unmaps every block; every object must have been freed. */
void sb__slab_destroy(sb__slab_t *s);

#endif /* SB_SERVER_SLAB_H */
