/*  fuzz_cursor.c - catalog search cursors (catalog_cursor_decode) from
 *  any text, as a client sends one back in ?cursor=. What decodes must
 *  encode again, and that text must decode to the same cursor.
 */
#include <stdlib.h>
#include <string.h>

#include "storage/catalog/catalog_store_impl.h"

static bool s_same(const catalog_cursor_t *a, const catalog_cursor_t *b)
{
    return a->sort == b->sort && a->hash == b->hash && a->a == b->a && a->b == b->b &&
           a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0 &&
           a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0; /* the bridge refuses long URLs long before */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* a query value is a C string: cut at a NUL */
    catalog_cursor_t first, second;
    if (catalog_cursor_decode(text, &first)) {
        char again[CATALOG_CURSOR_MAX + 1];
        if (!catalog_cursor_encode(&first, again))
            abort(); /* decoded, yet cannot be encoded */
        if (!catalog_cursor_decode(again, &second) || !s_same(&first, &second))
            abort();
    }
    free(text);
    return 0;
}
