/*  cart.c - the cart ops of the `orders` service (see orders.h).
 *
 *  Every op first reads its arguments and the caller's token (the cart is
 *  the token's user's), then changes the store, then shows the cart:
 *
 *      cart.get          read ----------------------------> show
 *      cart.set_item     ask catalog for the product -> write -> show
 *                        (qty 0: write -> show; no product needs to exist)
 *      cart.remove_item  write ---------------------------> show
 *      cart.clear        write -> nil (204)
 *
 *  "show" is one product.get_many of every id in the cart, asked with
 *  call_ask: the worker serves others until the catalog answers, then
 *  s_shown packs each line with the product's current name and price and
 *  drops (from the answer and the store) the lines whose product is gone.
 *  What a step needs from the one before (the user, the cart as it was
 *  written) travels in the call's context, not in the worker's state,
 *  since one worker holds many calls at once.
 *
 *  The catalog's currency decides a new line's: set_item passes it to the
 *  store, which refuses one that differs from the cart's lines' in the
 *  same write that would add it.
 *
 *  CART_NO_SPACE (a write found the disk or the map full) answers
 *  unavailable "storage is full" with retry_after (call_fail_no_space).
 */
#include "actors/orders/orders_impl.h"

#include <inttypes.h>

/* What lives from a handler to its resumes. */
typedef struct {
    char user[AUTH_SUB_MAX + 1];
    char product_id[CART_PRODUCT_ID_MAX + 1]; /* set_item */
    int qty;                                  /* set_item */
    cart_t cart;                              /* the cart being shown */
} cart_ctx_t;

/* The call's context, or NULL after answering unavailable. */
static cart_ctx_t *s_ctx(call_t *call)
{
    cart_ctx_t *ctx = call_context(call, sizeof *ctx);
    if (!ctx)
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
    return ctx;
}

static void s_fail_store(call_t *call, cart_status_t status)
{
    char message[96];
    switch (status) {
    case CART_OTHER_CURRENCY:
        call_fail(call, ERR_CONFLICT, "all of a cart's products share one currency");
        break;
    case CART_FULL:
        snprintf(message, sizeof message, "a cart holds at most %d lines", CART_LINES_MAX);
        call_fail(call, ERR_CONFLICT, message);
        break;
    case CART_UNAVAILABLE:
        call_fail(call, ERR_UNAVAILABLE, "the orders store is unavailable");
        break;
    case CART_NO_SPACE:
        call_fail_no_space(call);
        break;
    case CART_OK:
        call_fail(call, ERR_INTERNAL, "no error to report");
        break;
    default:
        call_fail(call, ERR_INTERNAL, "the orders store failed (see the log)");
        break;
    }
}

/* The answer of an ask that failed: the catalog is asked only for reads
 * that cannot be refused, so any failure means it is not there to ask. */
static void s_fail_catalog(call_t *call, const call_answer_t *answer)
{
    char message[160];
    snprintf(message, sizeof message, "the catalog could not be read: %s",
             answer->message ? answer->message : "no answer");
    call_fail(call, ERR_UNAVAILABLE, message);
}

/* The items of a product.get_many answer, checked to be n; NULL after
 * answering internal. */
static const msgpack_object *s_items(call_t *call, const call_answer_t *answer, int n)
{
    const msgpack_object *items = answer->data && answer->data->type == MSGPACK_OBJECT_MAP
                                      ? mp_map_get(answer->data, "items")
                                      : NULL;
    if (!items || items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size != (uint32_t)n) {
        call_fail(call, ERR_INTERNAL, "the catalog answered product.get_many out of shape");
        return NULL;
    }
    return items;
}

/* Asks the catalog for the products of ids[0..n) and returns; resume
 * runs with the answer. */
static void s_ask_products(call_t *call, const cart_line_t *lines, int n, const char *single,
                           call_resume_fn *resume)
{
    msgpack_packer *pk = call_ask_args(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "ids");
    msgpack_pack_array(pk, single ? 1 : (size_t)n);
    if (single)
        mp_pack_str(pk, single);
    for (int i = 0; !single && i < n; i++)
        mp_pack_str(pk, lines[i].product_id);
    call_ask(call, "catalog", "product.get_many", ORDERS_CATALOG_TIMEOUT_MS, resume);
}

static void s_reply_empty(call_t *call)
{
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 3);
    mp_pack_str(pk, "items");
    msgpack_pack_array(pk, 0);
    mp_pack_str(pk, "total_cents");
    msgpack_pack_int64(pk, 0);
    mp_pack_str(pk, "currency");
    msgpack_pack_nil(pk);
}

/* A line's product as the catalog has it now. */
typedef struct {
    const char *name;
    size_t name_len;
    int64_t price;
} s_product_t;

static bool s_product(const msgpack_object *item, s_product_t *out)
{
    const msgpack_object *name = mp_map_get(item, "name");
    const msgpack_object *price = mp_map_get(item, "price_cents");
    if (!name || name->type != MSGPACK_OBJECT_STR || !price ||
        (price->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
         price->type != MSGPACK_OBJECT_NEGATIVE_INTEGER))
        return false;
    out->name = name->via.str.ptr;
    out->name_len = name->via.str.size;
    out->price = price->type == MSGPACK_OBJECT_POSITIVE_INTEGER && price->via.u64 <= INT64_MAX
                     ? (int64_t)price->via.u64
                     : price->via.i64;
    return out->price >= 0;
}

/* The catalog answered for every line of ctx->cart: the reply. */
static void s_shown(call_t *call, void *state, const call_answer_t *answer)
{
    orders_state_t *self = state;
    cart_ctx_t *ctx = s_ctx(call);
    if (!ctx)
        return;
    if (!answer->ok) {
        s_fail_catalog(call, answer);
        return;
    }
    const cart_t *cart = &ctx->cart;
    const msgpack_object *items = s_items(call, answer, cart->n_lines);
    if (!items)
        return;

    /* Products gone since they were added leave the cart, and the sum of
     * the others must fit (a price may be up to INT64_MAX / 4). */
    const char *gone[CART_LINES_MAX];
    int n_gone = 0;
    int64_t total = 0;
    for (int i = 0; i < cart->n_lines; i++) {
        const msgpack_object *item = &items->via.array.ptr[i];
        s_product_t p;
        if (item->type == MSGPACK_OBJECT_NIL) {
            gone[n_gone++] = cart->lines[i].product_id;
            continue;
        }
        if (item->type != MSGPACK_OBJECT_MAP || !s_product(item, &p)) {
            call_fail(call, ERR_INTERNAL, "the catalog answered a product out of shape");
            return;
        }
        int64_t line_total;
        if (__builtin_mul_overflow(p.price, (int64_t)cart->lines[i].qty, &line_total) ||
            __builtin_add_overflow(total, line_total, &total)) {
            call_fail(call, ERR_CONFLICT, "the cart's total is too large to show");
            return;
        }
    }
    if (n_gone > 0) {
        cart_status_t st = cart_store_remove(self->carts, ctx->user, gone, n_gone, NULL);
        if (st != CART_OK) /* shown without them all the same; the next show tries again */
            zsys_warning("orders: cannot drop %d deleted products from a cart (%d)", n_gone, st);
    }
    int live = cart->n_lines - n_gone;
    if (live == 0) {
        s_reply_empty(call);
        return;
    }

    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 3);
    mp_pack_str(pk, "items");
    msgpack_pack_array(pk, (size_t)live);
    for (int i = 0; i < cart->n_lines; i++) {
        const msgpack_object *item = &items->via.array.ptr[i];
        s_product_t p;
        if (item->type == MSGPACK_OBJECT_NIL || !s_product(item, &p))
            continue;
        const cart_line_t *line = &cart->lines[i];
        msgpack_pack_map(pk, 5);
        mp_pack_str(pk, "product_id");
        mp_pack_str(pk, line->product_id);
        mp_pack_str(pk, "name");
        mp_pack_strn(pk, p.name, p.name_len);
        mp_pack_str(pk, "unit_price_cents");
        msgpack_pack_int64(pk, p.price);
        mp_pack_str(pk, "qty");
        msgpack_pack_int64(pk, line->qty);
        mp_pack_str(pk, "line_total_cents");
        msgpack_pack_int64(pk, p.price * line->qty); /* checked above */
    }
    mp_pack_str(pk, "total_cents");
    msgpack_pack_int64(pk, total);
    mp_pack_str(pk, "currency");
    mp_pack_str(pk, cart->currency);
}

/* Shows ctx->cart: at once when empty, else after the catalog's answer. */
static void s_show(call_t *call, cart_ctx_t *ctx)
{
    if (ctx->cart.n_lines == 0) {
        s_reply_empty(call);
        return;
    }
    s_ask_products(call, ctx->cart.lines, ctx->cart.n_lines, NULL, s_shown);
}

/* The caller's context with its user, or NULL after answering. */
static cart_ctx_t *s_begin(call_t *call, orders_state_t *self)
{
    auth_identity_t who;
    if (!call_args_ok(call) || !auth_require(self->verifier, call, &who))
        return NULL;
    cart_ctx_t *ctx = s_ctx(call);
    if (ctx)
        snprintf(ctx->user, sizeof ctx->user, "%s", who.sub);
    return ctx;
}

/* cart.get {user_id?} -> cart. user_id names another user's cart: only
 * for an admin, or the operator (the caller retailctl without a token,
 * for `retailctl check-record`); a customer may name only itself. */
void orders_cart_get(call_t *call, void *state)
{
    orders_state_t *self = state;
    char other[AUTH_SUB_MAX + 1] = "";
    call_arg_text(call, "user_id", ARG_OPTIONAL, AUTH_SUB_MAX, other, sizeof other);
    if (!call_args_ok(call))
        return;
    cart_ctx_t *ctx;
    if (*other && streq(call_caller(call), "retailctl") && !call_request(call)->token) {
        ctx = s_ctx(call);
        if (!ctx)
            return;
    } else {
        char user[AUTH_SUB_MAX + 1];
        bool admin = false;
        if (!orders_caller(call, self, user, &admin))
            return;
        if (*other && !admin && !streq(other, user)) {
            call_fail(call, ERR_FORBIDDEN, "only an admin may read another user's cart");
            return;
        }
        ctx = s_ctx(call);
        if (!ctx)
            return;
        snprintf(ctx->user, sizeof ctx->user, "%s", user);
    }
    if (*other)
        snprintf(ctx->user, sizeof ctx->user, "%s", other);
    cart_status_t st = cart_store_get(self->carts, ctx->user, &ctx->cart);
    if (st != CART_OK) {
        s_fail_store(call, st);
        return;
    }
    s_show(call, ctx);
}

/* set_item's write, once the catalog said the product exists (or for
 * qty 0, at once); then the cart is shown. */
static void s_set_write(call_t *call, orders_state_t *self, cart_ctx_t *ctx, const char *currency)
{
    cart_status_t st =
        cart_store_set(self->carts, ctx->user, ctx->product_id, currency, ctx->qty, &ctx->cart);
    if (st != CART_OK) {
        s_fail_store(call, st);
        return;
    }
    s_show(call, ctx);
}

static void s_set_found(call_t *call, void *state, const call_answer_t *answer)
{
    orders_state_t *self = state;
    cart_ctx_t *ctx = s_ctx(call);
    if (!ctx)
        return;
    if (!answer->ok) {
        s_fail_catalog(call, answer);
        return;
    }
    const msgpack_object *items = s_items(call, answer, 1);
    if (!items)
        return;
    const msgpack_object *item = &items->via.array.ptr[0];
    if (item->type == MSGPACK_OBJECT_NIL) {
        call_fail(call, ERR_NOT_FOUND, "no such product");
        return;
    }
    const msgpack_object *currency =
        item->type == MSGPACK_OBJECT_MAP ? mp_map_get(item, "currency") : NULL;
    if (!currency || currency->type != MSGPACK_OBJECT_STR ||
        currency->via.str.size != CART_CURRENCY_LEN) {
        call_fail(call, ERR_INTERNAL, "the catalog answered a product without a currency");
        return;
    }
    char code[CART_CURRENCY_LEN + 1];
    call_copy_text(code, sizeof code, currency->via.str.ptr, currency->via.str.size);
    s_set_write(call, self, ctx, code);
}

/* cart.set_item {product_id, qty (0..999; 0 removes)} -> cart */
void orders_cart_set_item(call_t *call, void *state)
{
    orders_state_t *self = state;
    char product_id[CART_PRODUCT_ID_MAX + 1] = "";
    int64_t qty = 0;
    call_arg_text(call, "product_id", ARG_REQUIRED, CART_PRODUCT_ID_MAX, product_id,
                  sizeof product_id);
    if (call_args_ok(call) && !product_id[0])
        call_arg_invalid(call, "product_id", "must not be empty");
    call_arg_int(call, "qty", ARG_REQUIRED, 0, CART_QTY_MAX, &qty);
    cart_ctx_t *ctx = s_begin(call, self);
    if (!ctx)
        return;
    snprintf(ctx->product_id, sizeof ctx->product_id, "%s", product_id);
    ctx->qty = (int)qty;
    if (qty == 0) /* a removal: the product need not exist any more */
        s_set_write(call, self, ctx, NULL);
    else
        s_ask_products(call, NULL, 0, ctx->product_id, s_set_found);
}

/* cart.remove_item {product_id} -> cart */
void orders_cart_remove_item(call_t *call, void *state)
{
    orders_state_t *self = state;
    char product_id[CART_PRODUCT_ID_MAX + 1] = "";
    call_arg_text(call, "product_id", ARG_REQUIRED, CART_PRODUCT_ID_MAX, product_id,
                  sizeof product_id);
    cart_ctx_t *ctx = s_begin(call, self);
    if (!ctx)
        return;
    const char *ids[1] = {product_id};
    cart_status_t st = cart_store_remove(self->carts, ctx->user, ids, 1, &ctx->cart);
    if (st != CART_OK) {
        s_fail_store(call, st);
        return;
    }
    s_show(call, ctx);
}

/* cart.clear {} -> nil */
void orders_cart_clear(call_t *call, void *state)
{
    orders_state_t *self = state;
    cart_ctx_t *ctx = s_begin(call, self);
    if (!ctx)
        return;
    cart_status_t st = cart_store_clear(self->carts, ctx->user);
    if (st != CART_OK) {
        s_fail_store(call, st);
        return;
    }
    msgpack_pack_nil(call_reply(call));
}
