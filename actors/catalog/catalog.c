/*  catalog.c - the `catalog` service. See catalog.h.
 *
 *  Each worker owns a catalog_store_t (its own read transaction) and a
 *  token verifier; the LMDB environment is shared. Handlers read and check
 *  arguments with call.h (all problems reported at once), call the store,
 *  and map its statuses to the error codes of API.md section 3.
 *
 *  Updates pass the store only the fields the caller sent (a mask and
 *  their values), never a record read here: the store applies them to
 *  the record it reads inside the write transaction, so nothing that
 *  commits between a read here and the write is undone.
 *
 *  The stock ops (the orders' checkouts and cancels) do not block the
 *  worker: the handler checks the arguments, prepares the store's write
 *  in the call's context (stock_write_t) and hands it to call_write; the
 *  worker serves other requests while it waits for the disk, and the
 *  resume answers once it is there, so the writes a worker holds share
 *  commits. The other writes (products, categories: an admin's) still
 *  wait for their commit in the handler.
 *
 *  Events: the shared state makes the service's outbox in the catalog's
 *  environment and gives it, with the stock.low threshold, to every
 *  worker's store handle, which appends product.* and stock.low inside
 *  its writes (storage/catalog/catalog_store.h).
 *
 *  A write that finds no room, the disk or the map (map_mb, settings.h)
 *  full, is CATALOG_NO_SPACE: unavailable "storage is full" with
 *  retry_after (call_fail_no_space); reads go on, and the same write
 *  succeeds once space is freed.
 */
#include "actors/catalog/catalog.h"
#include "actors/events_since.h"
#include "protocol/auth.h"
#include "protocol/mdp.h"
#include "storage/catalog/catalog_store.h"

#include <stddef.h>
#include <time.h>

struct catalog_shared_t {
    kv_t *env;
    outbox_t *outbox; /* the service's events, in env */
    int stock_low;    /* stock.low's threshold (settings.h) */
    char public_pem[1100];
};

typedef struct {
    catalog_shared_t *shared;
    catalog_store_t *store;
    auth_verifier_t *verifier;
    product_t product; /* scratch: records are large */
    product_t patch;   /* scratch: the fields an update sets */
    product_t page[CATALOG_PAGE_MAX];
    category_t categories[CATALOG_PAGE_MAX];
} catalog_state_t;

catalog_shared_t *catalog_shared_new(const service_env_t *env, const catalog_settings_t *settings,
                                     char *err, size_t errlen)
{
    catalog_shared_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->stock_low = settings->stock_low;
    snprintf(self->public_pem, sizeof self->public_pem, "%s/jwt.pub.pem", env->common->keys_dir);
    char *path = zsys_sprintf("%s/catalog", env->common->data_dir);
    /* address space, not disk: the file grows as it is written */
    size_t map_size = (size_t)settings->map_mb << 20;
    self->env = kv_open(path, map_size, catalog_store_names, NULL, CATALOG_STORE_DBS, err, errlen);
    zstr_free(&path);
    if (self->env && catalog_store_upgrade(self->env, 0) != CATALOG_OK) {
        snprintf(err, errlen, "cannot index the catalog's product names (see the log)");
        kv_close(&self->env);
    }
    if (self->env)
        self->outbox = service_outbox_new(env, "catalog", self->env, CATALOG_STORE_DB_OUTBOX,
                                          CATALOG_STORE_DB_OUTBOX_META, err, errlen);
    if (!self->outbox) {
        catalog_shared_destroy(&self);
        return NULL;
    }
    return self;
}

void catalog_shared_destroy(catalog_shared_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    catalog_shared_t *self = *self_p;
    /* the workers' handles that borrow it are closed; the environment it
     * is in goes after it */
    outbox_destroy(&self->outbox);
    kv_close(&self->env);
    free(self);
    *self_p = NULL;
}

outbox_t *catalog_shared_outbox(void *shared)
{
    return ((catalog_shared_t *)shared)->outbox;
}

void *catalog_state_new(void *shared_ptr)
{
    catalog_shared_t *shared = shared_ptr;
    catalog_state_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->shared = shared;
    self->store = catalog_store_open(shared->env, 0);
    if (self->store)
        catalog_store_set_outbox(self->store, shared->outbox, shared->stock_low);
    self->verifier = auth_verifier_new(shared->public_pem, AUTH_ISSUER, AUTH_AUDIENCE, 0);
    if (!self->store || !self->verifier) {
        void *state = self;
        catalog_state_destroy(&state);
        return NULL;
    }
    return self;
}

void catalog_state_destroy(void **state)
{
    if (!state || !*state)
        return;
    catalog_state_t *self = *state;
    catalog_store_close(&self->store);
    auth_verifier_destroy(&self->verifier);
    free(self);
    *state = NULL;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static void s_pack_product(msgpack_packer *pk, const product_t *p)
{
    char created[32], updated[32];
    call_rfc3339(p->created_at_ms, created);
    call_rfc3339(p->updated_at_ms, updated);
    msgpack_pack_map(pk, 12);
    mp_pack_str(pk, "id");
    mp_pack_str(pk, p->id);
    mp_pack_str(pk, "sku");
    mp_pack_str(pk, p->sku);
    mp_pack_str(pk, "name");
    mp_pack_str(pk, p->name);
    mp_pack_str(pk, "description");
    mp_pack_str(pk, p->description);
    mp_pack_str(pk, "price_cents");
    msgpack_pack_int64(pk, p->price_cents);
    mp_pack_str(pk, "currency");
    mp_pack_str(pk, p->currency);
    mp_pack_str(pk, "category_id");
    mp_pack_str(pk, p->category_id);
    mp_pack_str(pk, "attributes");
    if (p->attributes_len)
        mp_pack_raw(pk, p->attributes, p->attributes_len);
    else
        msgpack_pack_map(pk, 0);
    mp_pack_str(pk, "stock");
    msgpack_pack_int64(pk, p->stock);
    mp_pack_str(pk, "version");
    msgpack_pack_int64(pk, p->version);
    mp_pack_str(pk, "created_at");
    mp_pack_str(pk, created);
    mp_pack_str(pk, "updated_at");
    mp_pack_str(pk, updated);
}

static void s_reply_product(call_t *call, const product_t *p)
{
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "product");
    s_pack_product(pk, p);
}

static void s_pack_category(msgpack_packer *pk, const category_t *c)
{
    msgpack_pack_map(pk, 4);
    mp_pack_str(pk, "id");
    mp_pack_str(pk, c->id);
    mp_pack_str(pk, "name");
    mp_pack_str(pk, c->name);
    mp_pack_str(pk, "slug");
    mp_pack_str(pk, c->slug);
    mp_pack_str(pk, "parent_id");
    if (c->parent_id[0])
        mp_pack_str(pk, c->parent_id);
    else
        msgpack_pack_nil(pk);
}

static void s_reply_category(call_t *call, const category_t *c)
{
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "category");
    s_pack_category(pk, c);
}

/* Answers a store status; true when it was OK. */
static bool s_ok(call_t *call, catalog_status_t status, const char *what)
{
    char message[160];
    switch (status) {
    case CATALOG_OK:
        return true;
    case CATALOG_NOT_FOUND:
        snprintf(message, sizeof message, "no such %s", what);
        call_fail(call, ERR_NOT_FOUND, message);
        break;
    case CATALOG_SKU_TAKEN:
        call_fail(call, ERR_SKU_TAKEN, "another product has this sku");
        break;
    case CATALOG_SLUG_TAKEN:
        call_fail(call, ERR_CONFLICT, "another category has this slug");
        break;
    case CATALOG_VERSION_MISMATCH:
        call_fail(call, ERR_VERSION_MISMATCH, "the product changed since that version");
        break;
    case CATALOG_IN_USE:
        call_fail(call, ERR_CONFLICT, "products or child categories use this category");
        break;
    case CATALOG_NO_CATEGORY:
        call_arg_invalid(call, strcmp(what, "category") == 0 ? "parent_id" : "category_id",
                         "names no category");
        call_args_ok(call);
        break;
    case CATALOG_CYCLE:
        call_arg_invalid(call, "parent_id", "would make the category its own ancestor");
        call_args_ok(call);
        break;
    case CATALOG_CONFLICT:
        call_fail(call, ERR_CONFLICT, "not allowed in the current state");
        break;
    case CATALOG_NO_SPACE:
        call_fail_no_space(call);
        break;
    default:
        call_fail(call, ERR_INTERNAL, "the catalog store failed");
    }
    return false;
}

static void s_check_currency(call_t *call, const char *currency)
{
    if (strlen(currency) != 3 || currency[0] < 'A' || currency[0] > 'Z' || currency[1] < 'A' ||
        currency[1] > 'Z' || currency[2] < 'A' || currency[2] > 'Z')
        call_arg_invalid(call, "currency", "must be 3 capital letters (ISO 4217)");
}

/* The product's attributes array as a msgpack output: packing straight
 * into it allocates nothing, so the only way to fail is to be too large. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} fixed_out_t;

static int s_fixed_write(void *data, const char *buf, size_t len)
{
    fixed_out_t *out = data;
    if (len > out->cap - out->len)
        return -1;
    memcpy(out->data + out->len, buf, len);
    out->len += len;
    return 0;
}

/* Reads the optional `attributes` map into p (msgpack bytes, verbatim). */
static bool s_attributes(call_t *call, product_t *p)
{
    const msgpack_object *attrs;
    if (!call_arg_map(call, "attributes", ARG_OPTIONAL, &attrs))
        return false;
    fixed_out_t out = {p->attributes, 0, sizeof p->attributes};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, s_fixed_write);
    /* msgpack_pack_object stops at the first refused write. */
    if (msgpack_pack_object(&pk, *attrs) != 0) {
        call_arg_invalid(call, "attributes", "is too large (16 KiB of msgpack at most)");
        return false;
    }
    p->attributes_len = out.len;
    return true;
}

/* ------------------------------------------------------------------ */
/* Categories                                                          */

/* A page of categories in id order; the cursor is the last id of the
 * page before (opaque to clients, as API.md section 2 has it). */
static void s_category_list(call_t *call, void *state)
{
    catalog_state_t *self = state;
    int64_t limit = 20;
    char after[CATALOG_ID_MAX + 1] = "";
    call_arg_int(call, "limit", ARG_OPTIONAL, 1, CATALOG_PAGE_MAX, &limit);
    call_arg_text(call, "cursor", ARG_OPTIONAL, CATALOG_ID_MAX, after, sizeof after);
    if (!call_args_ok(call))
        return;
    int count = 0;
    bool more = false;
    if (!s_ok(
            call,
            catalog_category_page(self->store, after, (int)limit, self->categories, &count, &more),
            "category"))
        return;
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "items");
    msgpack_pack_array(pk, (size_t)count);
    for (int i = 0; i < count; i++)
        s_pack_category(pk, &self->categories[i]);
    mp_pack_str(pk, "next_cursor");
    if (more && count > 0)
        mp_pack_str(pk, self->categories[count - 1].id);
    else
        msgpack_pack_nil(pk);
}

static void s_category_create(call_t *call, void *state)
{
    catalog_state_t *self = state;
    if (!auth_require_admin(self->verifier, call, NULL))
        return;
    category_t c = {0};
    call_arg_text(call, "name", ARG_REQUIRED, CATALOG_NAME_MAX, c.name, sizeof c.name);
    call_arg_text(call, "slug", ARG_OPTIONAL, CATALOG_SLUG_MAX, c.slug, sizeof c.slug);
    call_arg_text(call, "parent_id", ARG_OPTIONAL, CATALOG_ID_MAX, c.parent_id, sizeof c.parent_id);
    if (!call_args_ok(call))
        return;
    if (s_ok(call, catalog_category_create(self->store, &c), "category"))
        s_reply_category(call, &c);
}

/* A patch: only the fields given change, applied by the store to the
 * record it reads in the write transaction. */
static void s_category_update(call_t *call, void *state)
{
    catalog_state_t *self = state;
    if (!auth_require_admin(self->verifier, call, NULL))
        return;
    category_t values = {0}, out;
    unsigned fields = 0;
    char id[CATALOG_ID_MAX + 1] = "";
    call_arg_text(call, "id", ARG_REQUIRED, CATALOG_ID_MAX, id, sizeof id);
    if (call_arg_text(call, "name", ARG_OPTIONAL, CATALOG_NAME_MAX, values.name,
                      sizeof values.name)) {
        fields |= CATALOG_CATEGORY_NAME;
        if (!values.name[0])
            call_arg_invalid(call, "name", "must not be empty");
    }
    if (call_arg_text(call, "slug", ARG_OPTIONAL, CATALOG_SLUG_MAX, values.slug,
                      sizeof values.slug))
        fields |= CATALOG_CATEGORY_SLUG;
    const msgpack_object *parent = mp_map_get(call_args(call), "parent_id");
    if (parent && parent->type == MSGPACK_OBJECT_NIL)
        fields |= CATALOG_CATEGORY_PARENT; /* null makes it a root: values.parent_id is "" */
    else if (call_arg_text(call, "parent_id", ARG_OPTIONAL, CATALOG_ID_MAX, values.parent_id,
                           sizeof values.parent_id))
        fields |= CATALOG_CATEGORY_PARENT;
    if (!call_args_ok(call))
        return;
    if (s_ok(call, catalog_category_update(self->store, id, fields, &values, &out), "category"))
        s_reply_category(call, &out);
}

static void s_category_delete(call_t *call, void *state)
{
    catalog_state_t *self = state;
    if (!auth_require_admin(self->verifier, call, NULL))
        return;
    char id[CATALOG_ID_MAX + 1] = "";
    call_arg_text(call, "id", ARG_REQUIRED, CATALOG_ID_MAX, id, sizeof id);
    if (!call_args_ok(call))
        return;
    if (s_ok(call, catalog_category_delete(self->store, id), "category"))
        msgpack_pack_nil(call_reply(call));
}

/* ------------------------------------------------------------------ */
/* Products                                                            */

static void s_product_get(call_t *call, void *state)
{
    catalog_state_t *self = state;
    char id[CATALOG_ID_MAX + 1] = "";
    call_arg_text(call, "id", ARG_REQUIRED, CATALOG_ID_MAX, id, sizeof id);
    if (!call_args_ok(call))
        return;
    if (s_ok(call, catalog_product_get(self->store, id, &self->product), "product"))
        s_reply_product(call, &self->product);
}

/* product.get_many {ids: [id, ...] (1..100)} -> {items: [product | nil]},
 * in the order asked, nil for an id with no product: a cart or an order
 * shown in one call, not one per line. Every read is in the worker's one
 * read transaction, so the products are of one moment. */
static void s_product_get_many(call_t *call, void *state)
{
    catalog_state_t *self = state;
    const msgpack_object *ids = NULL;
    if (call_arg_array(call, "ids", ARG_REQUIRED, &ids)) {
        if (ids->via.array.size < 1 || ids->via.array.size > CATALOG_PAGE_MAX)
            call_arg_invalid(call, "ids", "must hold 1 to 100 ids");
        for (uint32_t i = 0; i < ids->via.array.size; i++) {
            const msgpack_object *id = &ids->via.array.ptr[i];
            if (id->type != MSGPACK_OBJECT_STR || id->via.str.size == 0 ||
                id->via.str.size > CATALOG_ID_MAX) {
                call_arg_invalid(call, "ids", "must be product ids (strings)");
                break;
            }
        }
    }
    if (!call_args_ok(call))
        return;
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "items");
    msgpack_pack_array(pk, ids->via.array.size);
    for (uint32_t i = 0; i < ids->via.array.size; i++) {
        char id[CATALOG_ID_MAX + 1];
        call_copy_text(id, sizeof id, ids->via.array.ptr[i].via.str.ptr,
                       ids->via.array.ptr[i].via.str.size);
        catalog_status_t st = catalog_product_get(self->store, id, &self->product);
        if (st == CATALOG_OK)
            s_pack_product(pk, &self->product);
        else if (st == CATALOG_NOT_FOUND)
            msgpack_pack_nil(pk);
        else {
            s_ok(call, st, "product"); /* answers the error instead */
            return;
        }
    }
}

/* Reads the product fields present in args into p; required ones only
 * when `create` (stock is optional for both). The CATALOG_PRODUCT_* mask
 * of those present and valid. */
static unsigned s_product_fields(call_t *call, product_t *p, bool create)
{
    arg_need_t need = create ? ARG_REQUIRED : ARG_OPTIONAL;
    unsigned fields = 0;
    if (call_arg_text(call, "sku", need, CATALOG_SKU_MAX, p->sku, sizeof p->sku)) {
        fields |= CATALOG_PRODUCT_SKU;
        if (!p->sku[0])
            call_arg_invalid(call, "sku", "must not be empty");
    }
    if (call_arg_text(call, "name", need, CATALOG_NAME_MAX, p->name, sizeof p->name)) {
        fields |= CATALOG_PRODUCT_NAME;
        if (!p->name[0])
            call_arg_invalid(call, "name", "must not be empty");
    }
    if (call_arg_text(call, "description", need, CATALOG_DESCRIPTION_MAX, p->description,
                      sizeof p->description))
        fields |= CATALOG_PRODUCT_DESCRIPTION;
    if (call_arg_int(call, "price_cents", need, 0, INT64_MAX / 4, &p->price_cents))
        fields |= CATALOG_PRODUCT_PRICE;
    if (call_arg_text(call, "currency", need, 3, p->currency, sizeof p->currency)) {
        fields |= CATALOG_PRODUCT_CURRENCY;
        s_check_currency(call, p->currency);
    }
    if (call_arg_text(call, "category_id", need, CATALOG_ID_MAX, p->category_id,
                      sizeof p->category_id)) {
        fields |= CATALOG_PRODUCT_CATEGORY;
        if (!p->category_id[0])
            call_arg_invalid(call, "category_id", "must not be empty");
    }
    if (s_attributes(call, p))
        fields |= CATALOG_PRODUCT_ATTRIBUTES;
    if (call_arg_int(call, "stock", ARG_OPTIONAL, 0, INT64_MAX / 4, &p->stock))
        fields |= CATALOG_PRODUCT_STOCK;
    return fields;
}

static void s_product_create(call_t *call, void *state)
{
    catalog_state_t *self = state;
    if (!auth_require_admin(self->verifier, call, NULL))
        return;
    product_t *p = &self->product;
    memset(p, 0, sizeof *p);
    s_product_fields(call, p, true);
    if (!call_args_ok(call))
        return;
    if (s_ok(call, catalog_product_create(self->store, p), "product"))
        s_reply_product(call, p);
}

/* If-Match: a version number, bare or quoted as an ETag ("3", W/"3"). */
static bool s_if_match(call_t *call, int64_t *version)
{
    const char *s;
    size_t n;
    *version = 0;
    if (!call_arg_str(call, "if_match", ARG_OPTIONAL, 32, &s, &n))
        return true;
    if (n >= 2 && s[0] == 'W' && s[1] == '/') {
        s += 2;
        n -= 2;
    }
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > INT64_MAX / 10 - 9) {
            call_arg_invalid(call, "if_match", "must be a product version number");
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (n == 0 || v == 0) {
        call_arg_invalid(call, "if_match", "must be a product version number");
        return false;
    }
    *version = v;
    return true;
}

/* A patch: only the fields given change, applied by the store to the
 * record it reads in the write transaction (If-Match checked there too).
 * A patch without stock leaves it alone; with stock it sets the units free
 * to reserve, as PUT .../stock does, so a patch never undoes a reservation. */
static void s_product_update(call_t *call, void *state)
{
    catalog_state_t *self = state;
    if (!auth_require_admin(self->verifier, call, NULL))
        return;
    char id[CATALOG_ID_MAX + 1] = "";
    int64_t expected = 0;
    call_arg_text(call, "id", ARG_REQUIRED, CATALOG_ID_MAX, id, sizeof id);
    s_if_match(call, &expected);
    product_t *values = &self->patch;
    memset(values, 0, offsetof(product_t, attributes));
    values->attributes_len = 0;
    unsigned fields = s_product_fields(call, values, false);
    if (!call_args_ok(call))
        return;
    if (s_ok(call,
             catalog_product_update(self->store, id, fields, values, expected, &self->product),
             "product"))
        s_reply_product(call, &self->product);
}

static void s_product_delete(call_t *call, void *state)
{
    catalog_state_t *self = state;
    if (!auth_require_admin(self->verifier, call, NULL))
        return;
    char id[CATALOG_ID_MAX + 1] = "";
    call_arg_text(call, "id", ARG_REQUIRED, CATALOG_ID_MAX, id, sizeof id);
    if (!call_args_ok(call))
        return;
    if (s_ok(call, catalog_product_delete(self->store, id), "product"))
        msgpack_pack_nil(call_reply(call));
}

static void s_product_set_stock(call_t *call, void *state)
{
    catalog_state_t *self = state;
    if (!auth_require_admin(self->verifier, call, NULL))
        return;
    char id[CATALOG_ID_MAX + 1] = "";
    int64_t stock = 0;
    call_arg_text(call, "id", ARG_REQUIRED, CATALOG_ID_MAX, id, sizeof id);
    call_arg_int(call, "stock", ARG_REQUIRED, 0, INT64_MAX / 4, &stock);
    if (!call_args_ok(call))
        return;
    if (s_ok(call, catalog_product_set_stock(self->store, id, stock, &self->product), "product"))
        s_reply_product(call, &self->product);
}

static void s_product_search(call_t *call, void *state)
{
    catalog_state_t *self = state;
    char q[512] = "", category[CATALOG_ID_MAX + 1] = "", sort[16] = "",
         cursor[CATALOG_CURSOR_MAX + 1] = "";
    catalog_query_t query = {.limit = 20};
    int64_t limit = 20;
    call_arg_text(call, "q", ARG_OPTIONAL, sizeof q - 1, q, sizeof q);
    call_arg_text(call, "category", ARG_OPTIONAL, CATALOG_ID_MAX, category, sizeof category);
    query.has_min_price =
        call_arg_int(call, "min_price", ARG_OPTIONAL, 0, INT64_MAX / 4, &query.min_price);
    query.has_max_price =
        call_arg_int(call, "max_price", ARG_OPTIONAL, 0, INT64_MAX / 4, &query.max_price);
    call_arg_bool(call, "in_stock", ARG_OPTIONAL, &query.in_stock_only);
    call_arg_text(call, "sort", ARG_OPTIONAL, sizeof sort - 1, sort, sizeof sort);
    call_arg_int(call, "limit", ARG_OPTIONAL, 1, CATALOG_PAGE_MAX, &limit);
    call_arg_text(call, "cursor", ARG_OPTIONAL, CATALOG_CURSOR_MAX, cursor, sizeof cursor);
    query.sort = q[0] ? SORT_RELEVANCE : SORT_NEWEST;
    if (sort[0]) {
        static const struct {
            const char *name;
            catalog_sort_t sort;
        } sorts[] = {{"relevance", SORT_RELEVANCE},
                     {"newest", SORT_NEWEST},
                     {"price_asc", SORT_PRICE_ASC},
                     {"price_desc", SORT_PRICE_DESC},
                     {"name", SORT_NAME}};
        bool known = false;
        for (size_t i = 0; i < sizeof sorts / sizeof sorts[0]; i++)
            if (strcmp(sort, sorts[i].name) == 0) {
                query.sort = sorts[i].sort;
                known = true;
            }
        if (!known)
            call_arg_invalid(call, "sort",
                             "must be relevance, newest, price_asc, price_desc or name");
        else if (query.sort == SORT_RELEVANCE && !q[0])
            call_arg_invalid(call, "sort", "relevance needs q");
    }
    if (query.has_min_price && query.has_max_price && query.min_price > query.max_price)
        call_arg_invalid(call, "min_price", "is above max_price");
    if (!call_args_ok(call))
        return;
    query.q = q[0] ? q : NULL;
    query.category_id = category[0] ? category : NULL;
    query.limit = (int)limit;
    query.cursor = cursor[0] ? cursor : NULL;
    catalog_page_t page = {.items = self->page};
    catalog_status_t status = catalog_search(self->store, &query, &page);
    if (status == CATALOG_CONFLICT) {
        call_arg_invalid(call, "cursor", "is not a cursor of this query");
        call_args_ok(call);
        return;
    }
    if (status == CATALOG_NOT_FOUND) { /* an unknown category: nothing in it */
        page.count = 0;
        page.next_cursor[0] = '\0';
    } else if (!s_ok(call, status, "product"))
        return;
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "items");
    msgpack_pack_array(pk, (size_t)page.count);
    for (int i = 0; i < page.count; i++)
        s_pack_product(pk, &page.items[i]);
    mp_pack_str(pk, "next_cursor");
    if (page.next_cursor[0])
        mp_pack_str(pk, page.next_cursor);
    else
        msgpack_pack_nil(pk);
}

/* ------------------------------------------------------------------ */
/* Inventory, for the orders service                                   */

/* Only the orders service: its certificate over TCP, or its pool in this
 * process (the broker names callers; the bridge is "bridge"). */
static bool s_orders_only(call_t *call)
{
    if (strcmp(call_caller(call), "orders") == 0)
        return true;
    call_fail(call, ERR_FORBIDDEN, "stock operations are for the orders service");
    return false;
}

static bool s_order_id(call_t *call, char *out)
{
    return call_arg_text(call, "order_id", ARG_REQUIRED, CATALOG_ORDER_ID_MAX, out,
                         CATALOG_ORDER_ID_MAX + 1) &&
           out[0];
}

/* A stock write held until its commit (call_write): the prepared write
 * and what the reply needs, in the call's context, since the write and
 * its resume outlive the handler. */
typedef struct {
    stock_write_t write;
    stock_short_t short_line; /* reserve: the refused line, filled by the write */
    char order_id[CATALOG_ORDER_ID_MAX + 1];
    bool reserve;
    const char *state; /* the reply's state once done */
} s_stock_call_t;

static s_stock_call_t *s_stock_call(call_t *call)
{
    s_stock_call_t *held = call_context(call, sizeof *held);
    if (!held)
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
    return held;
}

/* The ok reply of every stock op: {order_id, state}. */
static void s_stock_reply(call_t *call, const s_stock_call_t *held)
{
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "order_id");
    mp_pack_str(pk, held->order_id);
    mp_pack_str(pk, "state");
    mp_pack_str(pk, held->state);
}

/* A refused reserve: not_found {product_id}, or out_of_stock with API.md's
 * {product_id, requested, available}, the qty summed over the order's
 * lines of that product. */
static void s_reserve_refused(call_t *call, catalog_status_t status, const stock_short_t *line)
{
    bool short_of_stock = status == CATALOG_OUT_OF_STOCK;
    mpout_t details;
    mpout_init(&details, 0);
    msgpack_packer pk;
    mpout_packer(&details, &pk);
    /* Checked at once by call_fail_packed (the output's error sticks). */
    msgpack_pack_map(&pk, short_of_stock ? 3 : 1);
    mp_pack_str(&pk, "product_id");
    mp_pack_str(&pk, line->product_id);
    if (short_of_stock) {
        mp_pack_str(&pk, "requested");
        msgpack_pack_int64(&pk, line->requested);
        mp_pack_str(&pk, "available");
        msgpack_pack_int64(&pk, line->available);
    }
    call_fail_packed(call, short_of_stock ? ERR_OUT_OF_STOCK : ERR_NOT_FOUND,
                     short_of_stock ? "not enough stock" : "no such product", &details);
    mpout_destroy(&details);
}

/* The resume of every stock write: its commit is on disk (or failed). */
static void s_stock_written(call_t *call, void *state, const call_answer_t *answer)
{
    (void)state;
    s_stock_call_t *held = call_context(call, sizeof *held);
    catalog_status_t status = catalog_stock_write_end(&held->write, answer->ok, answer->result);
    if (held->reserve && (status == CATALOG_OUT_OF_STOCK || status == CATALOG_NOT_FOUND))
        s_reserve_refused(call, status, &held->short_line);
    else if (s_ok(call, status, "reservation"))
        s_stock_reply(call, held);
}

/* Reads stock.reserve's lines into lines[CATALOG_LINES_MAX]; their count
 * (problems recorded in call). */
static int s_reserve_lines(call_t *call, stock_line_t *lines)
{
    const msgpack_object *lines_arg;
    int n = 0;
    if (!call_arg_array(call, "lines", ARG_REQUIRED, &lines_arg))
        return 0;
    if (lines_arg->via.array.size == 0 || lines_arg->via.array.size > CATALOG_LINES_MAX)
        call_arg_invalid(call, "lines", "must hold 1 to 100 lines");
    for (uint32_t i = 0; i < lines_arg->via.array.size && i < CATALOG_LINES_MAX; i++) {
        const msgpack_object *line = &lines_arg->via.array.ptr[i];
        const msgpack_object *pid = mp_map_get(line, "product_id");
        const msgpack_object *qty = mp_map_get(line, "qty");
        if (!pid || pid->type != MSGPACK_OBJECT_STR || pid->via.str.size == 0 ||
            pid->via.str.size > CATALOG_ID_MAX || !qty ||
            qty->type != MSGPACK_OBJECT_POSITIVE_INTEGER || qty->via.u64 == 0 ||
            qty->via.u64 > 1000000) {
            call_arg_invalid(call, "lines", "each line needs product_id and qty 1..1000000");
            break;
        }
        call_copy_text(lines[n].product_id, sizeof lines[n].product_id, pid->via.str.ptr,
                       pid->via.str.size);
        lines[n++].qty = (int64_t)qty->via.u64;
    }
    return n;
}

/* The write goes out and the worker serves on; s_stock_written answers. */
static void s_stock_reserve(call_t *call, void *state)
{
    catalog_state_t *self = state;
    if (!s_orders_only(call))
        return;
    char order_id[CATALOG_ORDER_ID_MAX + 1] = "";
    s_order_id(call, order_id);
    stock_line_t lines[CATALOG_LINES_MAX];
    int n = s_reserve_lines(call, lines);
    if (!call_args_ok(call))
        return;
    s_stock_call_t *held = s_stock_call(call);
    if (!held)
        return;
    snprintf(held->order_id, sizeof held->order_id, "%s", order_id);
    held->reserve = true;
    held->state = "reserved";
    if (!catalog_stock_write_reserve(&held->write, self->store, order_id, lines, n,
                                     &held->short_line)) {
        s_ok(call, CATALOG_ERROR, "reservation");
        return;
    }
    call_write(call, catalog_store_kv(self->store), catalog_stock_write_txn, &held->write,
               s_stock_written);
}

static void s_stock_finish(call_t *call, void *state, bool commit)
{
    catalog_state_t *self = state;
    if (!s_orders_only(call))
        return;
    char order_id[CATALOG_ORDER_ID_MAX + 1] = "";
    s_order_id(call, order_id);
    if (!call_args_ok(call))
        return;
    s_stock_call_t *held = s_stock_call(call);
    if (!held)
        return;
    snprintf(held->order_id, sizeof held->order_id, "%s", order_id);
    held->state = commit ? "committed" : "released";
    bool prepared = commit ? catalog_stock_write_commit(&held->write, self->store, order_id)
                           : catalog_stock_write_release(&held->write, self->store, order_id);
    if (!prepared) {
        s_ok(call, CATALOG_ERROR, "reservation");
        return;
    }
    call_write(call, catalog_store_kv(self->store), catalog_stock_write_txn, &held->write,
               s_stock_written);
}

static void s_stock_release(call_t *call, void *state)
{
    s_stock_finish(call, state, false);
}

static void s_stock_commit(call_t *call, void *state)
{
    s_stock_finish(call, state, true);
}

/* ------------------------------------------------------------------ */
/* Checks, for retailctl check and the orders service                  */

/* An admin's token, or the callers that cross-check the books by name
 * (retailctl, orders): they hold no user token. */
static bool s_checker(catalog_state_t *self, call_t *call)
{
    const char *caller = call_caller(call);
    if (strcmp(caller, "retailctl") == 0 || strcmp(caller, "orders") == 0)
        return true;
    return auth_require_admin(self->verifier, call, NULL);
}

/* ops.check {} -> {ok, problems: [{check, message, id?}], counts}; one
 * read transaction (catalog_store_check). */
static void s_ops_check(call_t *call, void *state)
{
    catalog_state_t *self = state;
    if (!s_checker(self, call) || !call_args_ok(call))
        return;
    catalog_check_t *check = malloc(sizeof *check);
    if (!check) {
        call_fail(call, ERR_INTERNAL, "out of memory");
        return;
    }
    if (s_ok(call, catalog_store_check(self->store, check), "product")) {
        msgpack_packer *pk = call_reply(call);
        msgpack_pack_map(pk, 3);
        mp_pack_str(pk, "ok");
        if (check->ok)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        mp_pack_str(pk, "problems");
        msgpack_pack_array(pk, (size_t)check->n_problems);
        for (int i = 0; i < check->n_problems; i++) {
            const catalog_problem_t *p = &check->problems[i];
            msgpack_pack_map(pk, p->id[0] ? 3 : 2);
            mp_pack_str(pk, "check");
            mp_pack_str(pk, p->check);
            mp_pack_str(pk, "message");
            mp_pack_str(pk, p->message);
            if (p->id[0]) {
                mp_pack_str(pk, "id");
                mp_pack_str(pk, p->id);
            }
        }
        mp_pack_str(pk, "counts");
        msgpack_pack_map(pk, 6);
        mp_pack_str(pk, "products");
        msgpack_pack_int64(pk, check->products);
        mp_pack_str(pk, "stock_units");
        msgpack_pack_int64(pk, check->stock_units);
        mp_pack_str(pk, "reserved_units");
        msgpack_pack_int64(pk, check->reserved_units);
        mp_pack_str(pk, "live_reservations");
        msgpack_pack_int64(pk, check->live_reservations);
        mp_pack_str(pk, "committed_units");
        msgpack_pack_int64(pk, check->committed_units);
        mp_pack_str(pk, "released");
        msgpack_pack_int64(pk, check->released);
    }
    free(check);
}

/* The items of a stock.reservations page, packed as they come (the
 * count is known only at the end). */
typedef struct {
    mpout_t *out;
    msgpack_packer pk;
    uint32_t count;
    char last[CATALOG_ORDER_ID_MAX + 1];
} s_page_t;

/* What the items of one reply may take: a page ends early (with a
 * cursor) rather than grow a reply past the envelope's limit. */
#define S_ITEMS_BUDGET (ENVELOPE_MAX_BYTES - 64 * 1024)

static bool s_pack_reservation(const char *order_id, stock_state_t state, const stock_line_t *lines,
                               int n_lines, void *arg)
{
    s_page_t *page = arg;
    size_t worst = 128 + (size_t)n_lines * (CATALOG_ID_MAX + 32);
    if (page->out->buf.size + worst > S_ITEMS_BUDGET)
        return false;
    msgpack_packer *pk = &page->pk;
    msgpack_pack_map(pk, 3);
    mp_pack_str(pk, "order_id");
    mp_pack_str(pk, order_id);
    mp_pack_str(pk, "state");
    mp_pack_str(pk, stock_state_names[state]);
    mp_pack_str(pk, "lines");
    msgpack_pack_array(pk, (size_t)n_lines);
    for (int i = 0; i < n_lines; i++) {
        msgpack_pack_map(pk, 2);
        mp_pack_str(pk, "product_id");
        mp_pack_str(pk, lines[i].product_id);
        mp_pack_str(pk, "qty");
        msgpack_pack_int64(pk, lines[i].qty);
    }
    page->count++;
    snprintf(page->last, sizeof page->last, "%s", order_id);
    return true;
}

/* stock.reservations {state?, cursor?, limit? 1..1000 (100)} ->
 * {items: [{order_id, state, lines}], next_cursor}, by order id; the
 * cursor is the last order id of the page before. */
static void s_stock_reservations(call_t *call, void *state_ptr)
{
    catalog_state_t *self = state_ptr;
    if (!s_checker(self, call))
        return;
    char state[16] = "", cursor[CATALOG_ORDER_ID_MAX + 1] = "";
    int64_t limit = 100;
    int want = -1;
    if (call_arg_text(call, "state", ARG_OPTIONAL, sizeof state - 1, state, sizeof state)) {
        for (int i = 0; i < 3; i++)
            if (strcmp(state, stock_state_names[i]) == 0)
                want = i;
        if (want < 0)
            call_arg_invalid(call, "state", "must be reserved, committed or released");
    }
    call_arg_text(call, "cursor", ARG_OPTIONAL, CATALOG_ORDER_ID_MAX, cursor, sizeof cursor);
    call_arg_int(call, "limit", ARG_OPTIONAL, 1, CATALOG_RESERVATIONS_PAGE_MAX, &limit);
    if (!call_args_ok(call))
        return;
    mpout_t items;
    mpout_init(&items, 0);
    s_page_t page = {.out = &items, .count = 0};
    mpout_packer(&items, &page.pk);
    bool more = false;
    catalog_status_t status = catalog_reservation_page(self->store, want, cursor, (int)limit,
                                                       s_pack_reservation, &page, &more);
    if (status == CATALOG_OK && items.failed)
        status = CATALOG_ERROR;
    if (s_ok(call, status, "reservation")) {
        msgpack_packer *pk = call_reply(call);
        msgpack_pack_map(pk, 2);
        mp_pack_str(pk, "items");
        msgpack_pack_array(pk, page.count);
        mp_pack_raw(pk, items.buf.data, items.buf.size);
        mp_pack_str(pk, "next_cursor");
        if (more && page.count > 0)
            mp_pack_str(pk, page.last);
        else
            msgpack_pack_nil(pk);
    }
    mpout_destroy(&items);
}

static void s_events_since(call_t *call, void *state)
{
    events_since_reply(call, ((catalog_state_t *)state)->shared->outbox);
}

static const worker_op_t s_ops[] = {
    {"category.list", s_category_list},
    {"category.create", s_category_create},
    {"category.update", s_category_update},
    {"category.delete", s_category_delete},
    {"product.get", s_product_get},
    {"product.get_many", s_product_get_many},
    {"product.search", s_product_search},
    {"product.create", s_product_create},
    {"product.update", s_product_update},
    {"product.delete", s_product_delete},
    {"product.set_stock", s_product_set_stock},
    {"stock.reserve", s_stock_reserve},
    {"stock.release", s_stock_release},
    {"stock.commit", s_stock_commit},
    {"stock.reservations", s_stock_reservations},
    {"ops.check", s_ops_check},
    {"events.since", s_events_since},
    {NULL, NULL},
};

const worker_op_t *catalog_ops(bool with_test_ops)
{
    (void)with_test_ops;
    return s_ops;
}
