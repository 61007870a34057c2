/*  settings.h - the catalog service's own settings.
 *
 *      ZPL                          variable                     default  range
 *      retail/catalog/stock_low     RETAIL_CATALOG_STOCK_LOW     5        0..1000000
 *
 *  stock_low is the threshold of the stock.low event: a write that takes
 *  a product's stock (the units free to reserve, what product.get shows)
 *  from above it to at or below it appends stock.low, once per crossing
 *  (storage/catalog/catalog_store.h). A product overrides it with an
 *  integer attribute "low_stock_threshold" in the same range; one that is
 *  not such an integer is ignored.
 */
#ifndef RETAIL_CATALOG_SETTINGS_H
#define RETAIL_CATALOG_SETTINGS_H

#include "protocol/settings.h"

#define CATALOG_STOCK_LOW_DEFAULT 5
#define CATALOG_STOCK_LOW_MAX 1000000

typedef struct {
    int stock_low;
} catalog_settings_t;

#endif
