#ifndef SB_APP_ASSETS_H
#define SB_APP_ASSETS_H
#include <stddef.h>
typedef struct sb__asset_s {
    const char *path;
    const unsigned char *data;
    size_t len;
    const char *content_type;
    const char *etag;
} sb__asset_t;
extern const sb__asset_t sb__assets[];
extern const size_t sb__assets_count;
#endif
