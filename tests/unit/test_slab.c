/* test_slab.c — the fixed-size allocator of src/server/slab.c, with its
 * blocks (the sanitizer build otherwise hands objects to malloc). */
#define SB_SLAB_FORCE_BLOCKS 1
#include "server/slab.c"

#include <criterion/criterion.h>

#define N 5000

Test(slab, objects_are_zeroed_aligned_distinct_and_reused)
{
    sb__slab_t s;
    sb__slab_init(&s, 200);
    static unsigned char *objs[N];
    for (int i = 0; i < N; i++) {
        objs[i] = sb__slab_alloc(&s);
        cr_assert_not_null(objs[i]);
        cr_assert_eq((uintptr_t)objs[i] % 16, 0, "16-byte aligned");
        for (int k = 0; k < 200; k++)
            cr_assert_eq(objs[i][k], 0, "zeroed");
        memset(objs[i], 0xab, 200); /* every byte of it is ours */
    }
    /* 5000 objects of 216 bytes need several 64 KiB blocks. */
    cr_assert_gt(s.nblocks, 10);
    for (int i = 0; i < N; i++)
        for (int k = i + 1; k < i + 3 && k < N; k++)
            cr_assert(objs[k] >= objs[i] + 200 || objs[i] >= objs[k] + 200, "no overlap");

    /* Free every other one: they come back (zeroed) before new blocks. */
    size_t blocks = s.nblocks;
    for (int i = 0; i < N; i += 2)
        sb__slab_free(&s, objs[i]);
    for (int i = 0; i < N; i += 2) {
        objs[i] = sb__slab_alloc(&s);
        cr_assert_eq(objs[i][0], 0);
        cr_assert_eq(objs[i][199], 0);
    }
    cr_assert_eq(s.nblocks, blocks, "freed objects were reused");

    /* Emptied blocks go back, all but one. */
    for (int i = 0; i < N; i++)
        sb__slab_free(&s, objs[i]);
    cr_assert_eq(s.nblocks, 1);
    void *again = sb__slab_alloc(&s);
    cr_assert_not_null(again);
    cr_assert_eq(s.nblocks, 1);
    sb__slab_free(&s, again);
    sb__slab_free(&s, NULL);
    sb__slab_destroy(&s);
    cr_assert_eq(s.nblocks, 0);
}
