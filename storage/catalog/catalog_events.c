/*  catalog_events.c - the events the catalog's writes append to its
 *  outbox (catalog_store.h, catalog_store_set_outbox; the fields are in
 *  protocol/SPEC.md, "Events: types and data").
 *
 *  Each function runs inside a write function, on the environment's
 *  committer thread, once the write's own changes are in its transaction:
 *  it begins the event (outbox_event), packs its data and stores it
 *  (outbox_event_put) in that same transaction, so the event is committed
 *  or undone with the change. A failed store is returned as CATALOG_ERROR
 *  for the write to return, so that its change is undone too.
 *
 *  Product events carry the public fields a subscriber needs to follow
 *  the catalog (id, sku, name, price, currency, category, stock,
 *  version), not the description or the attributes: those are up to 4000
 *  and 16384 bytes, and an event is small (whoever needs them reads the
 *  product).
 *
 *  stock.low's threshold: the product's own attribute
 *  "low_stock_threshold" when it is an integer in 0..1000000, else the
 *  service's setting. The attributes are one msgpack map (the store
 *  checks that before it writes them); it is read only when the product
 *  has attributes, so the checkout's reserve of a product without any
 *  costs no decoding.
 */
#include "storage/catalog/catalog_store_impl.h"

#include <czmq.h>
#include <msgpack.h>
#include <string.h>

#define S_THRESHOLD_KEY "low_stock_threshold"
#define S_THRESHOLD_MAX 1000000

static catalog_status_t s_put(outbox_t *outbox, MDB_txn *txn, const char *id)
{
    int rc = outbox_event_put(outbox, txn);
    if (rc == 0)
        return CATALOG_OK;
    if (rc != -1) /* an LMDB error; -1 is the outbox's own: the data does not fit */
        return catalog_fail("outbox", rc);
    zsys_error("catalog_store: the event of product %s does not fit the outbox", id);
    return CATALOG_ERROR;
}

catalog_status_t catalog_event_product(outbox_t *outbox, MDB_txn *txn, const char *type,
                                       const product_t *p)
{
    msgpack_packer *pk = outbox_event(outbox, type);
    if (!pk)
        return CATALOG_OK; /* no outbox, or it is off */
    msgpack_pack_map(pk, 8);
    outbox_pack_str(pk, "id", p->id);
    outbox_pack_str(pk, "sku", p->sku);
    outbox_pack_str(pk, "name", p->name);
    outbox_pack_int(pk, "price_cents", p->price_cents);
    outbox_pack_str(pk, "currency", p->currency);
    outbox_pack_str(pk, "category_id", p->category_id);
    outbox_pack_int(pk, "stock", p->stock);
    outbox_pack_int(pk, "version", p->version);
    return s_put(outbox, txn, p->id);
}

catalog_status_t catalog_event_deleted(outbox_t *outbox, MDB_txn *txn, const product_t *p)
{
    msgpack_packer *pk = outbox_event(outbox, "product.deleted");
    if (!pk)
        return CATALOG_OK;
    msgpack_pack_map(pk, 2);
    outbox_pack_str(pk, "id", p->id);
    outbox_pack_str(pk, "sku", p->sku);
    return s_put(outbox, txn, p->id);
}

int64_t catalog_stock_threshold(const product_t *p, int stock_low)
{
    if (p->attributes_len == 0)
        return stock_low;
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    int64_t threshold = stock_low;
    size_t offset = 0;
    if (msgpack_unpack_next(&msg, (const char *)p->attributes, p->attributes_len, &offset) ==
            MSGPACK_UNPACK_SUCCESS &&
        msg.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *map = &msg.data.via.map;
        size_t key_len = strlen(S_THRESHOLD_KEY);
        for (uint32_t i = 0; i < map->size; i++) {
            const msgpack_object *k = &map->ptr[i].key, *v = &map->ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != key_len ||
                memcmp(k->via.str.ptr, S_THRESHOLD_KEY, key_len) != 0)
                continue;
            /* a negative, a float, a string or one too large is not a
             * threshold: the setting stands */
            if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= S_THRESHOLD_MAX)
                threshold = (int64_t)v->via.u64;
            break;
        }
    }
    msgpack_unpacked_destroy(&msg);
    return threshold;
}

catalog_status_t catalog_event_stock(outbox_t *outbox, MDB_txn *txn, int64_t stock_before,
                                     int64_t threshold_before, const product_t *p,
                                     int64_t threshold)
{
    if (stock_before <= threshold_before || p->stock > threshold)
        return CATALOG_OK; /* low already, or not low now: no crossing */
    msgpack_packer *pk = outbox_event(outbox, "stock.low");
    if (!pk)
        return CATALOG_OK;
    msgpack_pack_map(pk, 4);
    outbox_pack_str(pk, "product_id", p->id);
    outbox_pack_str(pk, "sku", p->sku);
    outbox_pack_int(pk, "stock", p->stock);
    outbox_pack_int(pk, "threshold", threshold);
    return s_put(outbox, txn, p->id);
}
