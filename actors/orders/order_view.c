/*  order_view.c - an order as the API shows it (API.md, `order`).
 *
 *  The journal, the lease, the key's hash and the failure's code stay
 *  inside the service: they are how the saga keeps its place, not what
 *  a customer bought. The shipping address goes out as the bytes the
 *  client sent (checked msgpack, stored as it came).
 */
#include "actors/orders/orders_impl.h"

static int s_time(msgpack_packer *pk, const char *key, int64_t ms)
{
    char at[32];
    call_rfc3339(ms, at);
    return mp_pack_str(pk, key) | mp_pack_str(pk, at);
}

int order_view_pack(msgpack_packer *pk, const order_t *o)
{
    int rc = msgpack_pack_map(pk, 11);
    rc |= mp_pack_str(pk, "id") | mp_pack_str(pk, o->id);
    rc |= mp_pack_str(pk, "user_id") | mp_pack_str(pk, o->user_id);
    rc |= mp_pack_str(pk, "items") | msgpack_pack_array(pk, (size_t)o->n_items);
    for (int i = 0; i < o->n_items; i++) {
        const order_item_t *it = &o->items[i];
        rc |= msgpack_pack_map(pk, 5);
        rc |= mp_pack_str(pk, "product_id") | mp_pack_str(pk, it->product_id);
        rc |= mp_pack_str(pk, "sku") | mp_pack_str(pk, it->sku);
        rc |= mp_pack_str(pk, "name") | mp_pack_str(pk, it->name);
        rc |= mp_pack_str(pk, "unit_price_cents") | msgpack_pack_int64(pk, it->unit_price_cents);
        rc |= mp_pack_str(pk, "qty") | msgpack_pack_int64(pk, it->qty);
    }
    rc |= mp_pack_str(pk, "total_cents") | msgpack_pack_int64(pk, o->total_cents);
    rc |= mp_pack_str(pk, "currency") | mp_pack_str(pk, o->currency);
    rc |= mp_pack_str(pk, "status") | mp_pack_str(pk, order_status_name(o->status));
    rc |= mp_pack_str(pk, "status_history") | msgpack_pack_array(pk, (size_t)o->n_history);
    for (int i = 0; i < o->n_history; i++) {
        rc |= msgpack_pack_map(pk, 2);
        rc |= mp_pack_str(pk, "status") | mp_pack_str(pk, order_status_name(o->history[i].status));
        rc |= s_time(pk, "at", o->history[i].at_ms);
    }
    rc |= mp_pack_str(pk, "payment");
    if (o->payment_id[0]) {
        rc |= msgpack_pack_map(pk, 4);
        rc |= mp_pack_str(pk, "id") | mp_pack_str(pk, o->payment_id);
        rc |= mp_pack_str(pk, "status") | mp_pack_str(pk, o->payment_status);
        rc |= mp_pack_str(pk, "brand") | mp_pack_str(pk, o->brand);
        rc |= mp_pack_str(pk, "last4") | mp_pack_str(pk, o->last4);
    } else
        rc |= msgpack_pack_nil(pk);
    rc |= mp_pack_str(pk, "shipping_address");
    rc |= o->address_len ? mp_pack_raw(pk, o->address, o->address_len) : msgpack_pack_nil(pk);
    rc |= s_time(pk, "created_at", o->created_at_ms);
    rc |= s_time(pk, "updated_at", o->updated_at_ms);
    return rc ? -1 : 0;
}

void order_view_reply(call_t *call, const order_t *order)
{
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "order");
    order_view_pack(pk, order);
}

int order_view_bytes(const order_t *order, mpout_t *out)
{
    mpout_clear(out);
    msgpack_packer pk;
    mpout_packer(out, &pk);
    int rc = msgpack_pack_map(&pk, 1) | mp_pack_str(&pk, "order");
    return rc != 0 || order_view_pack(&pk, order) != 0 || out->failed ? -1 : 0;
}
