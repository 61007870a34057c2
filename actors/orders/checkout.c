/*  checkout.c - order.create (POST /v1/orders) and cart.checkout (POST
 *  /v1/cart/checkout): step 0 of the saga and its first write (orders.h
 *  has the whole design).
 *
 *      check the request (items, card, address) ------------------------+
 *      (cart.checkout: read the cart; empty and the key unknown: 400)   |
 *      its Idempotency-Key seen before? replay / in use / reused        |
 *      product.get_many of its products (one ask): names, prices,       |
 *        one currency                                                   | nothing
 *      WRITE the order pending + the key running (one transaction)      | written
 *      -> saga_drive: reserve, charge, commit, paid (saga.c)            |
 *                                                                  -----+
 *  Bad input is refused before anything is written, naming the field
 *  (payment.card_number, shipping_address.country, items[2].qty, ...).
 *  The card is read from the request's own arguments when the charge is
 *  asked (still readable on every resume) and never stored here.
 *
 *  The request's fingerprint is the keyed hash of its op and its
 *  arguments without the key itself: the same body with the same key is
 *  the same request.
 */
#include "actors/orders/orders_impl.h"

#include <string.h>
#include <time.h>

#define S_ADDRESS_FIELD_MAX 200

static saga_t *s_saga(call_t *call)
{
    saga_t *saga = call_context(call, sizeof(saga_t));
    if (!saga)
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
    return saga;
}

static bool s_luhn(const char *digits, size_t n)
{
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int d = digits[n - 1 - i] - '0';
        if (i % 2 == 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return sum % 10 == 0;
}

/* payment = {card_number, exp_month, exp_year, cvc} (API.md). */
static void s_check_payment(call_t *call)
{
    const msgpack_object *p;
    if (!call_arg_map(call, "payment", ARG_REQUIRED, &p))
        return;
    const msgpack_object *number = mp_map_get(p, "card_number");
    const msgpack_object *month = mp_map_get(p, "exp_month");
    const msgpack_object *year = mp_map_get(p, "exp_year");
    const msgpack_object *cvc = mp_map_get(p, "cvc");
    char digits[20];
    size_t n = 0;
    bool ok = number && number->type == MSGPACK_OBJECT_STR && number->via.str.size <= 64;
    for (uint32_t i = 0; ok && i < number->via.str.size; i++) {
        char c = number->via.str.ptr[i];
        if (c >= '0' && c <= '9') {
            if (n == sizeof digits - 1)
                ok = false;
            else
                digits[n++] = c;
        } else if (c != ' ' && c != '-')
            ok = false;
    }
    if (!ok || n < 12 || n > 19)
        call_arg_invalid(call, "payment.card_number", "must be 12 to 19 digits");
    else if (!s_luhn(digits, n))
        call_arg_invalid(call, "payment.card_number", "fails the Luhn check");
    memset(digits, 0, sizeof digits);
    bool month_ok = month && month->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                    month->via.u64 >= 1 && month->via.u64 <= 12;
    bool year_ok = year && year->type == MSGPACK_OBJECT_POSITIVE_INTEGER && year->via.u64 >= 1000 &&
                   year->via.u64 <= 9999;
    if (!month_ok)
        call_arg_invalid(call, "payment.exp_month", "must be an integer 1 to 12");
    if (!year_ok)
        call_arg_invalid(call, "payment.exp_year", "must be a four-digit year");
    if (month_ok && year_ok) {
        time_t now = (time_t)(call_now_ms() / 1000);
        struct tm tm;
        gmtime_r(&now, &tm);
        int64_t this_month = (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
        int64_t card_month = (int64_t)year->via.u64 * 12 + (int64_t)month->via.u64 - 1;
        if (card_month < this_month)
            call_arg_invalid(call, "payment.exp_year", "the card has expired");
    }
    bool cvc_ok = cvc && cvc->type == MSGPACK_OBJECT_STR &&
                  (cvc->via.str.size == 3 || cvc->via.str.size == 4);
    for (uint32_t i = 0; cvc_ok && i < cvc->via.str.size; i++)
        cvc_ok = cvc->via.str.ptr[i] >= '0' && cvc->via.str.ptr[i] <= '9';
    if (!cvc_ok)
        call_arg_invalid(call, "payment.cvc", "must be 3 or 4 digits");
}

/* shipping_address = {name, line1, line2?, city, postal_code, region?,
 * country}: strings, country ISO 3166-1 alpha-2; packed as sent into
 * o->address. */
static void s_check_address(call_t *call, order_t *o)
{
    const msgpack_object *a;
    if (!call_arg_map(call, "shipping_address", ARG_REQUIRED, &a))
        return;
    static const char *const keys[] = {"name",        "line1",  "line2",  "city",
                                       "postal_code", "region", "country"};
    static const bool required[] = {true, true, false, true, true, false, true};
    char field[64];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const msgpack_object *v = mp_map_get(a, keys[i]);
        snprintf(field, sizeof field, "shipping_address.%s", keys[i]);
        if (!v || v->type == MSGPACK_OBJECT_NIL) {
            if (required[i])
                call_arg_invalid(call, field, "is required");
            continue;
        }
        if (v->type != MSGPACK_OBJECT_STR || v->via.str.size > S_ADDRESS_FIELD_MAX ||
            memchr(v->via.str.ptr, '\0', v->via.str.size) ||
            (required[i] && v->via.str.size == 0)) {
            call_arg_invalid(call, field, "must be a string of 1 to 200 characters");
            continue;
        }
        if (streq(keys[i], "country") &&
            (v->via.str.size != 2 || v->via.str.ptr[0] < 'A' || v->via.str.ptr[0] > 'Z' ||
             v->via.str.ptr[1] < 'A' || v->via.str.ptr[1] > 'Z'))
            call_arg_invalid(call, field, "must be an ISO 3166-1 alpha-2 code (\"FR\")");
    }
    for (uint32_t i = 0; i < a->via.map.size; i++) {
        const msgpack_object *k = &a->via.map.ptr[i].key;
        bool known = false;
        for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++)
            known |= mp_str_eq(k, keys[j]);
        if (!known)
            call_arg_invalid(call, "shipping_address", "has a field that is none of its own");
    }
    mpout_t out;
    mpout_init(&out, ORDER_ADDRESS_MAX);
    msgpack_packer pk;
    mpout_packer(&out, &pk);
    msgpack_pack_object(&pk, *a);
    if (out.failed)
        call_arg_invalid(call, "shipping_address", "is too large");
    else {
        memcpy(o->address, out.buf.data, out.buf.size);
        o->address_len = out.buf.size;
    }
    mpout_destroy(&out);
}

/* items = [{product_id, qty}] (1..100) into o->items (ids and qty). */
static void s_check_items(call_t *call, order_t *o)
{
    const msgpack_object *items;
    if (!call_arg_array(call, "items", ARG_REQUIRED, &items))
        return;
    if (items->via.array.size == 0 || items->via.array.size > ORDER_ITEMS_MAX) {
        call_arg_invalid(call, "items", "must hold 1 to 100 items");
        return;
    }
    char field[32];
    for (uint32_t i = 0; i < items->via.array.size; i++) {
        const msgpack_object *it = &items->via.array.ptr[i];
        const msgpack_object *id =
            it->type == MSGPACK_OBJECT_MAP ? mp_map_get(it, "product_id") : NULL;
        const msgpack_object *qty = it->type == MSGPACK_OBJECT_MAP ? mp_map_get(it, "qty") : NULL;
        if (!id || id->type != MSGPACK_OBJECT_STR || id->via.str.size == 0 ||
            id->via.str.size > ORDER_ID_MAX || memchr(id->via.str.ptr, '\0', id->via.str.size)) {
            snprintf(field, sizeof field, "items[%u].product_id", i);
            call_arg_invalid(call, field, "must be a product id");
            continue;
        }
        if (!qty || qty->type != MSGPACK_OBJECT_POSITIVE_INTEGER || qty->via.u64 < 1 ||
            qty->via.u64 > ORDER_QTY_MAX) {
            snprintf(field, sizeof field, "items[%u].qty", i);
            call_arg_invalid(call, field, "must be an integer 1 to 999");
            continue;
        }
        order_item_t *item = &o->items[o->n_items++];
        call_copy_text(item->product_id, sizeof item->product_id, id->via.str.ptr,
                       id->via.str.size);
        item->qty = (int)qty->via.u64;
    }
}

/* The key argument, checked: NULL when absent (or after recording it as
 * invalid). */
static const char *s_key(call_t *call, char out[ORDER_KEY_MAX + 1])
{
    if (!call_arg_text(call, "idempotency_key", ARG_OPTIONAL, ORDER_KEY_MAX, out,
                       ORDER_KEY_MAX + 1))
        return NULL;
    bool ok = out[0] != '\0';
    for (const char *c = out; ok && *c; c++)
        ok = *c > 0x20 && *c < 0x7f;
    if (!ok) {
        call_arg_invalid(call, "idempotency_key", "must be 1 to 255 visible ASCII characters");
        return NULL;
    }
    return out;
}

/* The keyed hash of the op and the args without the key. */
static void s_fingerprint(call_t *call, orders_state_t *self, uint8_t out[32])
{
    const envelope_request_t *req = call_request(call);
    const msgpack_object *args = call_args(call);
    mpout_t buf;
    mpout_init(&buf, 0);
    msgpack_packer pk;
    mpout_packer(&buf, &pk);
    mp_pack_strn(&pk, req->op, req->op_len);
    uint32_t n = 0;
    for (uint32_t i = 0; i < args->via.map.size; i++)
        n += !mp_str_eq(&args->via.map.ptr[i].key, "idempotency_key");
    msgpack_pack_map(&pk, n);
    for (uint32_t i = 0; i < args->via.map.size; i++)
        if (!mp_str_eq(&args->via.map.ptr[i].key, "idempotency_key")) {
            msgpack_pack_object(&pk, args->via.map.ptr[i].key);
            msgpack_pack_object(&pk, args->via.map.ptr[i].val);
        }
    order_store_fingerprint(self->orders, buf.failed ? "" : buf.buf.data,
                            buf.failed ? 0 : buf.buf.size, out);
    mpout_destroy(&buf);
}

/* The first answer to the key, again. */
static void s_replay(call_t *call, const order_key_t *key)
{
    if (!key->code[0]) {
        msgpack_packer *pk = call_reply_replayed(call);
        mp_pack_raw(pk, key->body, key->body_len);
        return;
    }
    err_code_t code = err_code_from_name(key->code, strlen(key->code));
    call_fail_replayed(call, code, key->message, key->body_len ? key->body : NULL, key->body_len);
}

static void s_key_in_use(call_t *call)
{
    static const uint8_t details[] = {0x81, 0xab, 'r', 'e', 't', 'r', 'y',
                                      '_',  'a',  'f', 't', 'e', 'r', 0x01};
    call_fail_details(call, ERR_IDEMPOTENCY_KEY_IN_USE,
                      "a request with this Idempotency-Key is still running", details,
                      sizeof details);
}

/* Answers when the key was seen; true if it did. */
static bool s_key_seen(call_t *call, orders_state_t *self, order_store_status_t status,
                       const order_key_t *key)
{
    switch (status) {
    case ORDER_KEY_DONE:
        s_replay(call, key);
        return true;
    case ORDER_KEY_RUNNING:
        s_key_in_use(call);
        return true;
    case ORDER_KEY_REUSED:
        call_fail(call, ERR_IDEMPOTENCY_KEY_REUSED,
                  "this Idempotency-Key was used with another request");
        return true;
    default:
        (void)self;
        return false;
    }
}

/* The pending order (and its key) is written, or the key was there. */
static void s_created(call_t *call, void *state, const call_answer_t *a)
{
    orders_state_t *self = state;
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    order_store_status_t status = order_write_end(&saga->write, a->ok, a->result, NULL);
    if (status == ORDER_OK) {
        saga_crash_point(self->shared, STEP_CREATED);
        saga->has_card = true;
        saga_drive(call, self, saga);
        return;
    }
    if (status != ORDER_KEY_DONE) {
        if (!s_key_seen(call, self, status, NULL))
            orders_fail_store(call, status);
        return;
    }
    /* Finished by a request that raced this one since the first look:
     * its answer, read again (a rare path, so the write keeps none). */
    char key_buf[ORDER_KEY_MAX + 1] = "";
    const char *key = s_key(call, key_buf);
    uint8_t fingerprint[32];
    s_fingerprint(call, self, fingerprint);
    order_key_t *seen = calloc(1, sizeof *seen);
    status = seen && key
                 ? order_store_key(self->orders, saga->order.user_id, key, fingerprint, seen)
                 : ORDER_UNAVAILABLE;
    if (!s_key_seen(call, self, status, seen))
        orders_fail_store(call, status == ORDER_NOT_FOUND ? ORDER_ERROR : status);
    free(seen);
}

/* The products, in the order of saga->order.items: fill names, skus,
 * prices, the currency and the total, then write and drive. */
static void s_priced(call_t *call, void *state, const call_answer_t *a)
{
    orders_state_t *self = state;
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    if (!a->ok) {
        char message[160];
        snprintf(message, sizeof message, "the catalog could not be read: %s",
                 a->message ? a->message : "no answer");
        call_fail(call, ERR_UNAVAILABLE, message);
        return;
    }
    order_t *o = &saga->order;
    const msgpack_object *items =
        a->data && a->data->type == MSGPACK_OBJECT_MAP ? mp_map_get(a->data, "items") : NULL;
    if (!items || items->type != MSGPACK_OBJECT_ARRAY ||
        items->via.array.size != (uint32_t)o->n_items) {
        call_fail(call, ERR_INTERNAL, "the catalog answered product.get_many out of shape");
        return;
    }
    int64_t total = 0;
    for (int i = 0; i < o->n_items; i++) {
        const msgpack_object *p = &items->via.array.ptr[i];
        order_item_t *item = &o->items[i];
        if (p->type != MSGPACK_OBJECT_MAP) {
            uint8_t details[64];
            size_t n = strlen(item->product_id);
            details[0] = 0x81;
            details[1] = 0xaa;
            memcpy(details + 2, "product_id", 10);
            details[12] = (uint8_t)(0xa0 | n);
            memcpy(details + 13, item->product_id, n);
            call_fail_details(call, ERR_NOT_FOUND, "no such product", details, 13 + n);
            return;
        }
        const msgpack_object *name = mp_map_get(p, "name"), *sku = mp_map_get(p, "sku"),
                             *price = mp_map_get(p, "price_cents"),
                             *currency = mp_map_get(p, "currency");
        if (!name || name->type != MSGPACK_OBJECT_STR || !sku || sku->type != MSGPACK_OBJECT_STR ||
            !price || price->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            price->via.u64 > INT64_MAX || !currency || currency->type != MSGPACK_OBJECT_STR ||
            currency->via.str.size != 3) {
            call_fail(call, ERR_INTERNAL, "the catalog answered a product out of shape");
            return;
        }
        call_copy_text(item->name, sizeof item->name, name->via.str.ptr, name->via.str.size);
        call_copy_text(item->sku, sizeof item->sku, sku->via.str.ptr, sku->via.str.size);
        item->unit_price_cents = (int64_t)price->via.u64;
        if (i == 0)
            call_copy_text(o->currency, sizeof o->currency, currency->via.str.ptr, 3);
        else if (memcmp(o->currency, currency->via.str.ptr, 3) != 0) {
            call_fail(call, ERR_INVALID_ARGUMENT, "all items of an order must share one currency");
            return;
        }
        int64_t line;
        if (__builtin_mul_overflow(item->unit_price_cents, (int64_t)item->qty, &line) ||
            __builtin_add_overflow(total, line, &total)) {
            call_fail(call, ERR_INVALID_ARGUMENT, "the order's total is too large");
            return;
        }
    }
    o->total_cents = total;
    if (total == 0) {
        call_fail(call, ERR_INVALID_ARGUMENT, "an order's total must be above zero");
        return;
    }

    char key_buf[ORDER_KEY_MAX + 1] = "";
    const char *key = s_key(call, key_buf);
    uint8_t fingerprint[32];
    if (key)
        s_fingerprint(call, self, fingerprint);
    saga_new_lease(self->shared, saga->lease);
    snprintf(o->lease, sizeof o->lease, "%s", saga->lease);
    o->lease_until_ms = call_now_ms() + self->shared->settings.lease_ms;
    if (!order_write_create(&saga->write, self->orders, o, key, key ? fingerprint : NULL, NULL)) {
        orders_fail_store(call, ORDER_ERROR);
        return;
    }
    call_write(call, order_store_kv(self->orders), order_write_txn, &saga->write, s_created);
}

/* The key's look: true when that answered the request (the first
 * answer replayed, in use, reused; a bad key; the store failing), false
 * when there is no key or it is new. */
static bool s_key_answered(call_t *call, orders_state_t *self, saga_t *saga)
{
    char key_buf[ORDER_KEY_MAX + 1] = "";
    const char *key = s_key(call, key_buf);
    if (!call_args_ok(call))
        return true;
    if (!key)
        return false;
    uint8_t fingerprint[32];
    s_fingerprint(call, self, fingerprint);
    order_key_t *seen = calloc(1, sizeof *seen);
    if (!seen) {
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
        return true;
    }
    order_store_status_t status =
        order_store_key(self->orders, saga->order.user_id, key, fingerprint, seen);
    bool answered = s_key_seen(call, self, status, seen);
    free(seen);
    if (answered)
        return true;
    if (status != ORDER_NOT_FOUND) {
        orders_fail_store(call, status);
        return true;
    }
    return false;
}

/* Both ops, once the items are in saga->order: the key's first look, then
 * the catalog. */
static void s_start(call_t *call, orders_state_t *self, saga_t *saga)
{
    if (s_key_answered(call, self, saga))
        return;
    msgpack_packer *pk = call_ask_args(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "ids");
    msgpack_pack_array(pk, (size_t)saga->order.n_items);
    for (int i = 0; i < saga->order.n_items; i++)
        mp_pack_str(pk, saga->order.items[i].product_id);
    call_ask(call, "catalog", "product.get_many", ORDERS_CATALOG_TIMEOUT_MS, s_priced);
}

/* order.create {items, payment, shipping_address, idempotency_key?} */
void orders_order_create(call_t *call, void *state)
{
    orders_state_t *self = state;
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    s_check_items(call, &saga->order);
    s_check_payment(call);
    s_check_address(call, &saga->order);
    if (!call_args_ok(call) || !orders_caller(call, self, saga->user, &saga->admin))
        return;
    snprintf(saga->order.user_id, sizeof saga->order.user_id, "%s", saga->user);
    s_start(call, self, saga);
}

/* cart.checkout {payment, shipping_address, idempotency_key?} */
void orders_cart_checkout(call_t *call, void *state)
{
    orders_state_t *self = state;
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    s_check_payment(call);
    s_check_address(call, &saga->order);
    if (!call_args_ok(call) || !orders_caller(call, self, saga->user, &saga->admin))
        return;
    snprintf(saga->order.user_id, sizeof saga->order.user_id, "%s", saga->user);
    cart_t *cart = calloc(1, sizeof *cart);
    if (!cart) {
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
        return;
    }
    cart_status_t st = cart_store_get(self->carts, saga->user, cart);
    if (st != CART_OK)
        call_fail(call, ERR_INTERNAL, "the cart could not be read (see the log)");
    else if (cart->n_lines == 0) {
        /* A checkout that succeeded emptied the cart: the same one asked
         * again with its key (its reply was lost) must hear the first
         * answer, not that the cart is empty. The key is looked at after
         * the cart is read, so a first checkout that emptied the cart
         * meanwhile has its key written already (with its pending
         * order, before the cart is touched): this sees it. */
        if (!s_key_answered(call, self, saga))
            call_fail(call, ERR_INVALID_ARGUMENT, "the cart is empty");
    } else {
        for (int i = 0; i < cart->n_lines; i++) {
            order_item_t *item = &saga->order.items[saga->order.n_items++];
            snprintf(item->product_id, sizeof item->product_id, "%s", cart->lines[i].product_id);
            item->qty = cart->lines[i].qty;
        }
        saga->from_cart = true;
        s_start(call, self, saga);
    }
    free(cart);
}
