/*  settings.h - the catalog service's own settings.
 *
 *      ZPL                          variable                     default  range
 *      retail/catalog/stock_low     RETAIL_CATALOG_STOCK_LOW     5        0..1000000
 *      retail/catalog/map_mb        RETAIL_CATALOG_MAP_MB        16384    1..4194304
 *
 *  stock_low is the threshold of the stock.low event: a write that takes
 *  a product's stock (the units free to reserve, what product.get shows)
 *  from above it to at or below it appends stock.low, once per crossing
 *  (storage/catalog/catalog_store.h). A product overrides it with an
 *  integer attribute "low_stock_threshold" in the same range; one that is
 *  not such an integer is ignored.
 *
 *  map_mb is the size limit of the catalog's LMDB map in MiB (address
 *  space, not disk: the file grows as it is written). A write that would
 *  take the catalog past it answers unavailable "storage is full", like
 *  a full disk, and succeeds again once deletes have made room
 *  (storage/kv.h); an existing store larger than the limit opens at its
 *  own size. The default is what the catalog always had.
 */
#ifndef RETAIL_CATALOG_SETTINGS_H
#define RETAIL_CATALOG_SETTINGS_H

#include "protocol/settings.h"

#define CATALOG_STOCK_LOW_DEFAULT 5
#define CATALOG_STOCK_LOW_MAX 1000000
#define CATALOG_MAP_MB_DEFAULT 16384
#define CATALOG_MAP_MB_MAX 4194304

typedef struct {
    int stock_low;
    int map_mb;
} catalog_settings_t;

#endif
