/*  seed.c - retail-seed: fills the catalog store with generated products.
 *
 *      retail-seed [--data-dir DIR] [-n N] [--seed S] [--ids FILE] [-q]
 *
 *  It writes straight into the LMDB environment DIR/catalog through
 *  storage/catalog/catalog_store (the same calls, rules and indexes as the catalog
 *  service), not over HTTP: a million products through the API would take
 *  far longer and measure the API, not fill a store. Run it while retaild
 *  is stopped. LMDB would let both write (writers are serialised across
 *  processes through the lock file), so nothing breaks if one runs, but a
 *  running service would see the catalog change under it and its writes
 *  would queue behind the seeder's.
 *
 *  First the category tree below (36 categories: 5 roots, their children,
 *  some grandchildren), each made unless a category with its slug exists,
 *  so a second run reuses the first run's tree. Then N products, each in a
 *  random leaf category: a name from word lists (brand, adjective, product
 *  type, model: "Nordvik Compact Espresso Machine X200"; books get a title
 *  and a subtitle), a description of 2 or 3 generated sentences, a unique
 *  sku, a price of 199..199999 cents in EUR (log-uniform, so cheap items are
 *  more common, as in a shop), attributes that fit the category kind
 *  ({"color": "red", "weight_g": 1200, ...}) and a stock of 0..500 (zero
 *  for about one product in ten).
 *
 *  Determinism: the content (names, prices, categories, skus) depends only
 *  on --seed and on how many products the store held before (skus count
 *  on from there, so a second run into the same directory adds new ones
 *  instead of colliding). Ids and timestamps come from the store (clock +
 *  random), so they differ between runs.
 *
 *  Speed and durability. The store commits one LMDB transaction per
 *  product, and a durable commit waits for fsync: some milliseconds each,
 *  hours for a million products. So the environment gets MDB_NOSYNC for
 *  this process only (the flag is per handle; retaild keeps its durable
 *  commits) and one mdb_env_sync at the end, also after an error. What that
 *  costs: if retail-seed itself dies, nothing committed is lost (the pages
 *  are in the kernel's cache); if the machine loses power or the kernel
 *  crashes before the final sync, the last products may be gone, and LMDB
 *  promises integrity without sync only on file systems that keep write
 *  order, so after such a crash seed again into a fresh directory.
 *
 *  Output: a progress line on stderr (rewritten with \r, at most every
 *  250 ms: products done, rate, ETA) unless -q; a summary on stdout (count,
 *  seconds, rate, the size of data.mdb on disk and of the pages LMDB uses,
 *  each also per product of the store). --ids FILE gets the id of every
 *  product made, one a line (benchmarks pick ids from it).
 *
 *  Exit status: 0 done, 1 a store or I/O error (what was committed before
 *  it stays), 2 usage or configuration error.
 */
#include "protocol/settings.h"
#include "storage/catalog/catalog_store.h"
#include "storage/kv.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum {
    EXIT_DONE = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
};

/* The map size retaild opens the catalog environment with: the two must
 * agree, or the smaller one would fail once the file outgrows it. */
#define CATALOG_MAP_SIZE ((size_t)16 << 30)
#define DEFAULT_COUNT 1000
#define MAX_COUNT 10000000L
#define DEFAULT_SEED 1
#define PROGRESS_NS (250 * 1000000LL)
#define NS_PER_S 1000000000LL
/* More categories than any shop tree this tool meets; the list call
 * returns them all at once. */
#define CATEGORY_LIST_MAX 4096
/* A run of taken skus this long means something else is wrong. */
#define SKU_TRIES_MAX 1000

/* ---------------------------------------------------------------------
 *  Random numbers: xoshiro256** seeded through splitmix64, so one 64-bit
 *  seed gives the same stream on every machine (rand() differs by libc).
 */

typedef struct {
    uint64_t s[4];
} rng_t;

static uint64_t s_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_init(rng_t *self, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        self->s[i] = s_splitmix64(&seed);
}

static uint64_t s_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng_t *self)
{
    uint64_t *s = self->s;
    uint64_t result = s_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

/* Uniform in 0..n-1 (n > 0), without modulo bias: draws that fall in the
 * incomplete last block of 2^64 are redrawn. */
static uint64_t rng_below(rng_t *self, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do
        v = rng_next(self);
    while (v >= limit);
    return v % n;
}

/* Uniform in [0, 1). */
static double rng_unit(rng_t *self)
{
    return (double)(rng_next(self) >> 11) * 0x1.0p-53;
}

static int64_t rng_range(rng_t *self, int64_t lo, int64_t hi)
{
    return lo + (int64_t)rng_below(self, (uint64_t)(hi - lo + 1));
}

/* A random entry of a NULL-terminated list. */
static const char *s_pick(rng_t *rng, const char *const *list)
{
    size_t n = 0;
    while (list[n])
        n++;
    return list[rng_below(rng, n)];
}

/* ---------------------------------------------------------------------
 *  Word lists. Invented brands, so no real company's name is attached to
 *  made-up products.
 */

static const char *const s_brands[] = {
    "Nordvik", "Aurelia", "Brightwell", "Kestrel", "Lumora",  "Valtor",  "Oakhaven", "Zephyra",
    "Halden",  "Corvina", "Tessaro",    "Fjellby", "Marlowe", "Quillon", "Ridgeway", "Altamira",
    "Cindral", "Dunmore", "Elmsted",    "Grafton", "Ivora",   "Kaldera", "Linnea",   "Mistral",
    "Novaro",  "Orrin",   "Pellham",    "Sorrel",  "Tamsin",  "Vireo",   NULL};

/* Shared by every kind but books; the search benchmark queries one of them
 * (tools/bench/catalog.sh), so keep "compact" in the list. */
static const char *const s_adjectives[] = {
    "Compact",     "Premium",   "Classic", "Portable", "Essential", "Deluxe",
    "Lightweight", "Slim",      "Modern",  "Rugged",   "Silent",    "Ergonomic",
    "Everyday",    "Signature", "Urban",   "Vintage",  "Advanced",  "Heavy-Duty",
    "Eco",         "Elite",     "Smart",   "Ultra",    NULL};

static const char *const s_model_prefixes[] = {"X", "S", "Z",  "TR", "GT", "V",
                                               "K", "M", "RS", "LX", "Q",  NULL};

static const char *const s_colors[] = {
    "black", "white", "silver", "graphite", "red",  "navy",     "forest green", "sand",
    "blue",  "grey",  "rose",   "olive",    "teal", "charcoal", "mustard",      NULL};

static const char *const s_home_materials[] = {
    "stainless steel", "oak",   "walnut", "cast iron", "ceramic",   "glass",
    "bamboo",          "linen", "cotton", "aluminium", "stoneware", NULL};

static const char *const s_apparel_materials[] = {"cotton",   "merino wool",        "linen",
                                                  "denim",    "recycled polyester", "silk",
                                                  "cashmere", "organic cotton",     NULL};

static const char *const s_shoe_materials[] = {"leather", "suede", "mesh", "canvas", "knit", NULL};
static const char *const s_sport_materials[] = {
    "ripstop nylon", "aluminium", "carbon fibre", "neoprene", "polyester", "steel", NULL};
static const char *const s_sizes[] = {"XS", "S", "M", "L", "XL", "XXL", NULL};
static const char *const s_languages[] = {"en", "de", "fr", "es", "it", "nl", "sv", NULL};
static const char *const s_book_formats[] = {"hardcover", "paperback", NULL};

static const char *const s_book_adjectives[] = {
    "Silent",  "Last",   "Hidden", "Golden", "Forgotten", "Northern", "Burning", "Quiet",
    "Endless", "Broken", "Secret", "Winter", "Distant",   "Wild",     "Bright",  NULL};
static const char *const s_book_nouns[] = {
    "Harbor",  "Garden", "Kingdom", "River",  "Letters", "Orchard", "Lighthouse", "Mountain",
    "Archive", "Island", "Voyage",  "Forest", "Kitchen", "Table",   "Summer",     NULL};
static const char *const s_first_names[] = {"Mara",  "Jonas",  "Elena", "Tomas",  "Ines",  "Oskar",
                                            "Lena",  "Rafael", "Sofia", "Henrik", "Amira", "Pieter",
                                            "Clara", "Mateo",  "Freya", NULL};
static const char *const s_last_names[] = {"Lindqvist", "Moreau", "Castell",  "Okafor", "Brandt",
                                           "Varga",     "Holm",   "Ferreira", "Novak",  "Sato",
                                           "Keller",    "Duval",  "Rossi",    "Nyberg", NULL};

/* ---------------------------------------------------------------------
 *  The category tree and what each kind of product looks like.
 */

typedef enum {
    KIND_GADGET,
    KIND_HOME,
    KIND_APPAREL,
    KIND_FOOTWEAR,
    KIND_BOOK,
    KIND_SPORT,
} kind_t;

typedef struct {
    const char *name;
    const char *slug;
    int parent; /* index in the table, -1 for a root; parents come first */
    kind_t kind;
    /* Product types (books: subtitles) of a leaf; NULL for a category
     * with children, which gets no products. */
    const char *const *types;
} category_spec_t;

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

static const category_spec_t s_tree[] = {
    /* 0 */ {"Electronics", "electronics", -1, KIND_GADGET, NULL},
    /* 1 */ {"Audio", "audio", 0, KIND_GADGET, NULL},
    {"Headphones", "headphones", 1, KIND_GADGET,
     LIST("Wireless Headphones", "Noise-Cancelling Headphones", "Earbuds", "Studio Headphones",
          "Gaming Headset")},
    {"Speakers", "speakers", 1, KIND_GADGET,
     LIST("Bluetooth Speaker", "Soundbar", "Bookshelf Speakers", "Smart Speaker", "Party Speaker")},
    /* 4 */ {"Computers & Tablets", "computers-tablets", 0, KIND_GADGET, NULL},
    {"Laptops", "laptops", 4, KIND_GADGET,
     LIST("Laptop", "Ultrabook", "Gaming Laptop", "Convertible Laptop", "Chromebook")},
    {"Tablets", "tablets", 4, KIND_GADGET,
     LIST("Tablet", "Drawing Tablet", "E-Reader", "Kids Tablet")},
    {"Computer Accessories", "computer-accessories", 4, KIND_GADGET,
     LIST("Mechanical Keyboard", "Wireless Mouse", "USB-C Hub", "Monitor Stand", "Webcam",
          "External SSD")},
    {"Cameras", "cameras", 0, KIND_GADGET,
     LIST("Mirrorless Camera", "Action Camera", "Instant Camera", "Camera Lens", "Tripod",
          "Dash Cam")},
    {"Smart Home", "smart-home", 0, KIND_GADGET,
     LIST("Smart Plug", "Video Doorbell", "Smart Thermostat", "Security Camera", "Smart Bulb",
          "Robot Vacuum")},
    {"Phones & Accessories", "phones-accessories", 0, KIND_GADGET,
     LIST("Smartphone", "Phone Case", "Wireless Charger", "Power Bank", "Screen Protector",
          "Car Mount")},
    /* 11 */ {"Home & Kitchen", "home-kitchen", -1, KIND_HOME, NULL},
    /* 12 */ {"Kitchen Appliances", "kitchen-appliances", 11, KIND_HOME, NULL},
    {"Coffee & Espresso", "coffee-espresso", 12, KIND_HOME,
     LIST("Espresso Machine", "Coffee Grinder", "Drip Coffee Maker", "Milk Frother", "French Press",
          "Moka Pot")},
    {"Blenders & Mixers", "blenders-mixers", 12, KIND_HOME,
     LIST("Blender", "Stand Mixer", "Hand Mixer", "Food Processor", "Immersion Blender")},
    {"Cookware", "cookware", 11, KIND_HOME,
     LIST("Frying Pan", "Dutch Oven", "Saucepan", "Wok", "Stockpot", "Cookware Set")},
    {"Furniture", "furniture", 11, KIND_HOME,
     LIST("Office Chair", "Bookshelf", "Coffee Table", "Standing Desk", "Sofa", "Dining Chair")},
    {"Bedding", "bedding", 11, KIND_HOME,
     LIST("Duvet", "Pillow", "Sheet Set", "Mattress Topper", "Weighted Blanket")},
    {"Home Decor", "home-decor", 11, KIND_HOME,
     LIST("Table Lamp", "Wall Mirror", "Area Rug", "Vase", "Wall Clock", "Picture Frame")},
    /* 19 */ {"Clothing", "clothing", -1, KIND_APPAREL, NULL},
    {"Men's Clothing", "mens-clothing", 19, KIND_APPAREL,
     LIST("Oxford Shirt", "Chinos", "Hoodie", "Wool Sweater", "Rain Jacket", "Polo Shirt")},
    {"Women's Clothing", "womens-clothing", 19, KIND_APPAREL,
     LIST("Wrap Dress", "Blouse", "Cardigan", "Jeans", "Trench Coat", "Pleated Skirt")},
    {"Shoes", "shoes", 19, KIND_FOOTWEAR,
     LIST("Running Shoes", "Sneakers", "Hiking Boots", "Loafers", "Sandals", "Chelsea Boots")},
    {"Bags & Accessories", "bags-accessories", 19, KIND_APPAREL,
     LIST("Tote Bag", "Wallet", "Belt", "Sunglasses", "Scarf", "Messenger Bag")},
    /* 24 */ {"Books", "books", -1, KIND_BOOK, NULL},
    {"Fiction", "fiction", 24, KIND_BOOK, LIST("A Novel", "A Thriller", "A Mystery", "Stories")},
    {"Non-Fiction", "non-fiction", 24, KIND_BOOK,
     LIST("A History", "A Memoir", "A Field Guide", "Essays")},
    {"Children's Books", "childrens-books", 24, KIND_BOOK,
     LIST("A Picture Book", "An Adventure", "A Bedtime Story")},
    {"Cookbooks", "cookbooks", 24, KIND_BOOK,
     LIST("Simple Recipes", "A Cookbook", "Recipes for Every Season", "Baking at Home")},
    /* 29 */ {"Sports & Outdoors", "sports-outdoors", -1, KIND_SPORT, NULL},
    /* 30 */ {"Camping & Hiking", "camping-hiking", 29, KIND_SPORT, NULL},
    {"Tents", "tents", 30, KIND_SPORT,
     LIST("Dome Tent", "Backpacking Tent", "Family Tent", "Ultralight Tent", "Bivy Shelter")},
    {"Backpacks", "backpacks", 30, KIND_SPORT,
     LIST("Hiking Backpack", "Daypack", "Trekking Pack", "Hydration Pack")},
    {"Cycling", "cycling", 29, KIND_SPORT,
     LIST("Road Bike", "Bike Helmet", "Bike Light", "Cycling Gloves", "Bike Lock",
          "Mountain Bike")},
    {"Fitness", "fitness", 29, KIND_SPORT,
     LIST("Yoga Mat", "Dumbbell Set", "Kettlebell", "Resistance Bands", "Rowing Machine",
          "Foam Roller")},
    {"Water Sports", "water-sports", 29, KIND_SPORT,
     LIST("Paddle Board", "Wetsuit", "Snorkel Set", "Kayak Paddle", "Swim Goggles", "Dry Bag")},
};

#define TREE_SIZE ((int)(sizeof s_tree / sizeof s_tree[0]))

/* Description phrases per kind (books have their own): participles, so
 * that "the ... sandals, made for ..." needs no verb agreeing in number. */
static const char *const *const s_purposes[] = {
    [KIND_GADGET] =
        LIST("built for long days of work and play", "designed for crisp, reliable performance",
             "made to fit a busy, connected life", "tuned for travel and the office"),
    [KIND_HOME] = LIST("made for everyday cooking and living", "built to last in a busy home",
                       "designed to look good and work hard", "made for slow weekend mornings"),
    [KIND_APPAREL] =
        LIST("cut for comfort from morning to night", "made for city streets and weekend trips",
             "tailored for a clean, easy fit", "made to be worn for years"),
    [KIND_FOOTWEAR] = LIST("made for all-day comfort", "built for city miles and light trails",
                           "shaped to support every step"),
    [KIND_BOOK] = LIST(""), /* books have their own phrases */
    [KIND_SPORT] = LIST("built for trails, tracks and open water",
                        "made for training in any weather", "designed for long days outdoors"),
};

/* Features general enough to fit every product type of their kind. */
static const char *const *const s_features[] = {
    [KIND_GADGET] =
        LIST("a scratch-resistant finish", "simple setup", "a premium build",
             "a protective travel pouch", "free software updates", "a recycled aluminium frame"),
    [KIND_HOME] = LIST("a timeless look", "carefully chosen materials", "an easy-care finish",
                       "a space-saving design", "sturdy construction", "a five-year guarantee"),
    [KIND_APPAREL] = LIST("reinforced seams", "a relaxed fit", "breathable fabric",
                          "a soft brushed finish", "easy-care fabric", "a timeless cut"),
    [KIND_FOOTWEAR] = LIST("a cushioned midsole", "a grippy rubber outsole", "a padded collar",
                           "a removable insole", "water-resistant uppers"),
    [KIND_BOOK] = LIST(""), /* books have their own phrases */
    [KIND_SPORT] = LIST("weather-resistant materials", "a lightweight build", "a reflective trim",
                        "reinforced stress points", "a lifetime repair service"),
};

static const char *const s_book_themes[] = {"family secrets on a windswept coast",
                                            "an unlikely friendship",
                                            "ambition and loss",
                                            "a city in transition",
                                            "the people who keep a village alive",
                                            "one summer that changed everything",
                                            "the food of a lost generation",
                                            "courage in hard times",
                                            NULL};
static const char *const s_book_praise[] = {"A gripping read from the first page.",
                                            "Warm, sharp and hard to put down.",
                                            "Beautifully written and carefully researched.",
                                            "A book to read twice.",
                                            "Funny, wise and full of surprises.",
                                            NULL};
static const char *const s_closers[] = {
    "Ships in recyclable packaging.", "Backed by a two-year warranty.",
    "Free returns within 30 days.", "A favourite with our customers.", NULL};

/* ---------------------------------------------------------------------
 *  Products
 */

/* A fixed buffer as a msgpack write target: attributes must fit the
 * product's array, and writing into it directly saves a copy. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} fixbuf_t;

static int s_fixbuf_write(void *data, const char *buf, size_t len)
{
    fixbuf_t *self = data;
    if (len > self->cap - self->len)
        return -1;
    memcpy(self->data + self->len, buf, len);
    self->len += len;
    return 0;
}

/* Packs one string (key or value); nonzero on failure. */
static int s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    return msgpack_pack_str(pk, len) || msgpack_pack_str_body(pk, s, len);
}

/* p's attributes for its kind; -1 if they do not fit (they always do:
 * they are a few dozen bytes). */
static int s_make_attributes(rng_t *rng, kind_t kind, product_t *p)
{
    fixbuf_t buf = {p->attributes, 0, sizeof p->attributes};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, s_fixbuf_write);
    int bad = 0;
    switch (kind) {
    case KIND_GADGET:
        bad |= msgpack_pack_map(&pk, 4);
        bad |= s_pack_str(&pk, "color") || s_pack_str(&pk, s_pick(rng, s_colors));
        bad |= s_pack_str(&pk, "weight_g") || msgpack_pack_int64(&pk, rng_range(rng, 40, 3000));
        bad |= s_pack_str(&pk, "warranty_years") || msgpack_pack_int64(&pk, rng_range(rng, 1, 3));
        bad |= s_pack_str(&pk, "wireless") ||
               (rng_below(rng, 2) ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk));
        break;
    case KIND_HOME:
        bad |= msgpack_pack_map(&pk, 3);
        bad |= s_pack_str(&pk, "color") || s_pack_str(&pk, s_pick(rng, s_colors));
        bad |= s_pack_str(&pk, "material") || s_pack_str(&pk, s_pick(rng, s_home_materials));
        bad |= s_pack_str(&pk, "weight_g") || msgpack_pack_int64(&pk, rng_range(rng, 150, 40000));
        break;
    case KIND_APPAREL:
        bad |= msgpack_pack_map(&pk, 3);
        bad |= s_pack_str(&pk, "color") || s_pack_str(&pk, s_pick(rng, s_colors));
        bad |= s_pack_str(&pk, "size") || s_pack_str(&pk, s_pick(rng, s_sizes));
        bad |= s_pack_str(&pk, "material") || s_pack_str(&pk, s_pick(rng, s_apparel_materials));
        break;
    case KIND_FOOTWEAR:
        bad |= msgpack_pack_map(&pk, 3);
        bad |= s_pack_str(&pk, "color") || s_pack_str(&pk, s_pick(rng, s_colors));
        bad |= s_pack_str(&pk, "size_eu") || msgpack_pack_int64(&pk, rng_range(rng, 35, 47));
        bad |= s_pack_str(&pk, "material") || s_pack_str(&pk, s_pick(rng, s_shoe_materials));
        break;
    case KIND_BOOK:
        bad |= msgpack_pack_map(&pk, 3);
        bad |= s_pack_str(&pk, "pages") || msgpack_pack_int64(&pk, rng_range(rng, 48, 900));
        bad |= s_pack_str(&pk, "language") || s_pack_str(&pk, s_pick(rng, s_languages));
        bad |= s_pack_str(&pk, "format") || s_pack_str(&pk, s_pick(rng, s_book_formats));
        break;
    case KIND_SPORT:
        bad |= msgpack_pack_map(&pk, 3);
        bad |= s_pack_str(&pk, "color") || s_pack_str(&pk, s_pick(rng, s_colors));
        bad |= s_pack_str(&pk, "weight_g") || msgpack_pack_int64(&pk, rng_range(rng, 80, 15000));
        bad |= s_pack_str(&pk, "material") || s_pack_str(&pk, s_pick(rng, s_sport_materials));
        break;
    }
    if (bad)
        return -1;
    p->attributes_len = buf.len;
    return 0;
}

/* A copy of s lower-cased (ASCII: the lists are ASCII), to use a product
 * type inside a sentence. */
static void s_lower(char *out, size_t size, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < size; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
    out[i] = '\0';
}

/* True when snprintf's result fits (it never fails on these formats, but
 * a cut name would make a wrong product, so it is checked). */
static bool s_fits(int n, size_t size)
{
    return n >= 0 && (size_t)n < size;
}

/* Fills name, description, price, currency, attributes and stock of p for
 * the leaf spec; the caller sets category_id and sku. -1 if something
 * does not fit (a bug in the lists). Every draw is a statement of its own:
 * C leaves the order of a call's arguments open, and two draws in one
 * call could come out in another order with another compiler. */
static int s_make_product(rng_t *rng, const category_spec_t *spec, product_t *p)
{
    const char *type = s_pick(rng, spec->types);
    bool ok;
    if (spec->kind == KIND_BOOK) {
        const char *first = s_pick(rng, s_first_names);
        const char *last = s_pick(rng, s_last_names);
        const char *adjective = s_pick(rng, s_book_adjectives);
        const char *noun = s_pick(rng, s_book_nouns);
        const char *theme = s_pick(rng, s_book_themes);
        const char *praise = s_pick(rng, s_book_praise);
        bool third = rng_below(rng, 2);
        ok = s_fits(snprintf(p->name, sizeof p->name, "The %s %s: %s", adjective, noun, type),
                    sizeof p->name);
        ok = ok && s_fits(snprintf(p->description, sizeof p->description,
                                   "%s %s tells a story of %s. %s%s", first, last, theme, praise,
                                   third ? " Published by Oakhaven Press." : ""),
                          sizeof p->description);
    } else {
        const char *brand = s_pick(rng, s_brands);
        const char *adjective = s_pick(rng, s_adjectives);
        const char *prefix = s_pick(rng, s_model_prefixes);
        int model = (int)rng_range(rng, 1, 99) * 10;
        const char *purpose = s_pick(rng, s_purposes[spec->kind]);
        const char *feature = s_pick(rng, s_features[spec->kind]);
        const char *other = s_pick(rng, s_features[spec->kind]);
        const char *closer = rng_below(rng, 2) ? s_pick(rng, s_closers) : NULL;
        char lower_adjective[32], lower_type[64];
        s_lower(lower_adjective, sizeof lower_adjective, adjective);
        s_lower(lower_type, sizeof lower_type, type);
        ok = s_fits(snprintf(p->name, sizeof p->name, "%s %s %s %s%d", brand, adjective, type,
                             prefix, model),
                    sizeof p->name);
        /* Two features, or one when the same was drawn twice. */
        ok = ok && s_fits(snprintf(p->description, sizeof p->description,
                                   "From %s: the %s %s, %s. With %s%s%s.%s%s", brand,
                                   lower_adjective, lower_type, purpose, feature,
                                   other != feature ? " and " : "", other != feature ? other : "",
                                   closer ? " " : "", closer ? closer : ""),
                          sizeof p->description);
    }
    if (!ok)
        return -1;
    /* Whole euros spread log-uniformly over 1..1999, priced at .99. */
    double euros = exp(rng_unit(rng) * log(2000.0));
    int64_t whole = (int64_t)euros;
    if (whole < 1)
        whole = 1;
    if (whole > 1999)
        whole = 1999;
    p->price_cents = whole * 100 + 99;
    snprintf(p->currency, sizeof p->currency, "EUR");
    p->stock = rng_below(rng, 10) == 0 ? 0 : rng_range(rng, 1, 500);
    return s_make_attributes(rng, spec->kind, p);
}

/* ---------------------------------------------------------------------
 *  Categories
 */

/* Makes every category of s_tree that no category's slug names yet;
 * ids[i] receives the id of s_tree[i]. *made counts the new ones. */
static int s_ensure_tree(catalog_store_t *store, char ids[][CATALOG_ID_MAX + 1], int *made)
{
    category_t *existing = calloc(CATEGORY_LIST_MAX, sizeof *existing);
    if (!existing) {
        fprintf(stderr, "retail-seed: out of memory\n");
        return -1;
    }
    int count = 0;
    catalog_status_t st = catalog_category_list(store, existing, CATEGORY_LIST_MAX, &count);
    if (st != CATALOG_OK) {
        fprintf(stderr, "retail-seed: cannot list categories (status %d)\n", (int)st);
        free(existing);
        return -1;
    }
    *made = 0;
    int rc = 0;
    for (int i = 0; i < TREE_SIZE && rc == 0; i++) {
        const category_spec_t *spec = &s_tree[i];
        ids[i][0] = '\0';
        for (int k = 0; k < count; k++)
            if (streq(existing[k].slug, spec->slug)) {
                snprintf(ids[i], CATALOG_ID_MAX + 1, "%s", existing[k].id);
                break;
            }
        if (ids[i][0])
            continue;
        category_t c;
        memset(&c, 0, sizeof c);
        snprintf(c.name, sizeof c.name, "%s", spec->name);
        snprintf(c.slug, sizeof c.slug, "%s", spec->slug);
        if (spec->parent >= 0)
            snprintf(c.parent_id, sizeof c.parent_id, "%s", ids[spec->parent]);
        st = catalog_category_create(store, &c);
        if (st != CATALOG_OK) {
            fprintf(stderr, "retail-seed: cannot create category %s (status %d)\n", spec->slug,
                    (int)st);
            rc = -1;
            break;
        }
        snprintf(ids[i], CATALOG_ID_MAX + 1, "%s", c.id);
        (*made)++;
    }
    free(existing);
    return rc;
}

/* ---------------------------------------------------------------------
 *  Progress and summary
 */

static int64_t s_now_ns(void)
{
    struct timespec ts;
    /* It cannot fail on Linux; if it did, progress would stall, no more. */
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void s_progress(long done, long total, int64_t elapsed_ns, bool final)
{
    double secs = (double)elapsed_ns / NS_PER_S;
    double rate = secs > 0 ? (double)done / secs : 0;
    long eta = rate > 0 ? (long)((double)(total - done) / rate + 0.5) : 0;
    fprintf(stderr, "\rretail-seed: %ld/%ld products (%3.0f%%), %.0f/s, ETA %ldm%02lds   %s", done,
            total, total > 0 ? 100.0 * (double)done / (double)total : 100.0, rate, eta / 60,
            eta % 60, final ? "\n" : "");
}

/* How many products the store holds (entries of the products database). */
static int s_product_count(kv_t *env, int products_dbi, size_t *out)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(kv_mdb(env), NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        fprintf(stderr, "retail-seed: mdb_txn_begin: %s\n", mdb_strerror(rc));
        return -1;
    }
    MDB_stat st;
    rc = mdb_stat(txn, kv_dbi(env, products_dbi), &st);
    mdb_txn_abort(txn);
    if (rc != 0) {
        fprintf(stderr, "retail-seed: mdb_stat: %s\n", mdb_strerror(rc));
        return -1;
    }
    *out = st.ms_entries;
    return 0;
}

/* The size lines: data.mdb on disk (allocated blocks, so a sparse file is
 * not overstated) and LMDB's pages up to the last one in use. */
static int s_report_size(kv_t *env, const char *dir, int products_dbi)
{
    size_t products = 0;
    if (s_product_count(env, products_dbi, &products) != 0)
        return -1;
    MDB_stat est;
    MDB_envinfo info;
    int rc = mdb_env_stat(kv_mdb(env), &est);
    if (rc == 0)
        rc = mdb_env_info(kv_mdb(env), &info);
    if (rc != 0) {
        fprintf(stderr, "retail-seed: mdb_env_stat/info: %s\n", mdb_strerror(rc));
        return -1;
    }
    char *file = zsys_sprintf("%s/data.mdb", dir);
    struct stat fst;
    if (!file || stat(file, &fst) != 0) {
        fprintf(stderr, "retail-seed: cannot stat %s/data.mdb: %s\n", dir, strerror(errno));
        zstr_free(&file);
        return -1;
    }
    zstr_free(&file);
    double disk = (double)fst.st_blocks * 512;
    double used = ((double)info.me_last_pgno + 1) * est.ms_psize;
    double per = products > 0 ? (double)products : 1;
    printf("retail-seed: store %s: %zu products; data.mdb %.1f MiB on disk = %.0f bytes/product, "
           "%.1f MiB in pages up to the last used = %.0f bytes/product (page %u bytes)\n",
           dir, products, disk / (1 << 20), disk / per, used / (1 << 20), used / per, est.ms_psize);
    return 0;
}

/* ---------------------------------------------------------------------
 *  main
 */

typedef struct {
    const char *data_dir; /* NULL: from settings */
    long count;
    uint64_t seed;
    const char *ids_path; /* NULL: none */
    bool quiet;
} options_t;

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: retail-seed [--data-dir DIR] [-n N] [--seed S] [--ids FILE] [-q]\n"
            "\n"
            "Loads N generated products (and, unless they exist, a tree of %d\n"
            "categories) straight into the catalog store DIR/catalog.\n"
            "Stop retaild first: the seeder writes the LMDB files directly.\n"
            "\n"
            "  --data-dir DIR  data directory (default $RETAIL_DATA_DIR or ./var)\n"
            "  -n, --count N   products to add, 0..%ld (default %d)\n"
            "  --seed S        random seed, 0..2^64-1 (default %d); the same seed into\n"
            "                  the same store gives the same products (not the same ids)\n"
            "  --ids FILE      write the id of each product made to FILE, one a line\n"
            "  -q, --quiet     no progress line\n"
            "\n"
            "Commits are not synced to disk one by one (that would take hours for a\n"
            "million products); one sync at the end makes them durable. If the machine\n"
            "crashes during seeding, seed again into a fresh directory.\n"
            "\n"
            "exit status: 0 done, 1 store or I/O error, 2 usage error.\n",
            TREE_SIZE, MAX_COUNT, DEFAULT_COUNT, DEFAULT_SEED);
}

static int s_parse_options(int argc, char **argv, options_t *opt)
{
    enum { OPT_DATA_DIR = 256, OPT_SEED, OPT_IDS };
    static const struct option longopts[] = {{"data-dir", required_argument, NULL, OPT_DATA_DIR},
                                             {"count", required_argument, NULL, 'n'},
                                             {"seed", required_argument, NULL, OPT_SEED},
                                             {"ids", required_argument, NULL, OPT_IDS},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "n:qh", longopts, NULL)) != -1) {
        char *end = NULL;
        errno = 0;
        switch (c) {
        case OPT_DATA_DIR:
            opt->data_dir = optarg;
            break;
        case 'n':
            opt->count = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || opt->count < 0 || opt->count > MAX_COUNT) {
                fprintf(stderr, "retail-seed: -n must be in 0..%ld\n", MAX_COUNT);
                return EXIT_USAGE;
            }
            break;
        case OPT_SEED:
            opt->seed = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-') {
                fprintf(stderr, "retail-seed: --seed must be an unsigned 64-bit integer\n");
                return EXIT_USAGE;
            }
            break;
        case OPT_IDS:
            opt->ids_path = optarg;
            break;
        case 'q':
            opt->quiet = true;
            break;
        case 'h':
            s_usage(stdout);
            return -1;
        default:
            s_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        s_usage(stderr);
        return EXIT_USAGE;
    }
    return 0;
}

/* The index of the products database in catalog_store_names (the store
 * keeps its order private; the name is its contract). */
static int s_products_index(void)
{
    for (int i = 0; i < CATALOG_STORE_DBS; i++)
        if (streq(catalog_store_names[i], "products"))
            return i;
    return -1;
}

/* Adds opt->count products; 0 or -1 (a message was printed). *done
 * counts the products made. */
static int s_seed_products(catalog_store_t *store, const options_t *opt,
                           char ids[][CATALOG_ID_MAX + 1], size_t first_sku, FILE *ids_file,
                           long *done)
{
    int leaves[TREE_SIZE];
    int n_leaves = 0;
    for (int i = 0; i < TREE_SIZE; i++)
        if (s_tree[i].types)
            leaves[n_leaves++] = i;
    product_t *p = malloc(sizeof *p);
    if (!p) {
        fprintf(stderr, "retail-seed: out of memory\n");
        return -1;
    }
    rng_t rng;
    rng_init(&rng, opt->seed);
    size_t sku_counter = first_sku;
    int64_t start = s_now_ns(), last = start;
    int rc = 0;
    *done = 0;
    for (long i = 0; i < opt->count; i++) {
        int leaf = leaves[rng_below(&rng, (uint64_t)n_leaves)];
        memset(p, 0, sizeof *p);
        if (s_make_product(&rng, &s_tree[leaf], p) != 0) {
            fprintf(stderr, "\nretail-seed: a generated product does not fit its fields\n");
            rc = -1;
            break;
        }
        snprintf(p->category_id, sizeof p->category_id, "%s", ids[leaf]);
        catalog_status_t st = CATALOG_SKU_TAKEN;
        /* A taken sku (products added by hand, or an earlier run that
         * counted further) moves the counter on. */
        for (int tries = 0; st == CATALOG_SKU_TAKEN && tries < SKU_TRIES_MAX; tries++) {
            static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
            char suffix[5];
            for (int k = 0; k < 4; k++)
                suffix[k] = alphabet[rng_below(&rng, sizeof alphabet - 1)];
            suffix[4] = '\0';
            snprintf(p->sku, sizeof p->sku, "SKU-%08zu-%s", sku_counter++, suffix);
            st = catalog_product_create(store, p);
        }
        if (st != CATALOG_OK) {
            fprintf(stderr, "\nretail-seed: cannot create product %ld (%s): status %d\n", i + 1,
                    p->sku, (int)st);
            rc = -1;
            break;
        }
        (*done)++;
        if (ids_file && (fputs(p->id, ids_file) == EOF || fputc('\n', ids_file) == EOF)) {
            fprintf(stderr, "\nretail-seed: cannot write %s: %s\n", opt->ids_path, strerror(errno));
            rc = -1;
            break;
        }
        int64_t now = s_now_ns();
        if (!opt->quiet && now - last >= PROGRESS_NS) {
            s_progress(*done, opt->count, now - start, false);
            last = now;
        }
    }
    if (!opt->quiet && opt->count > 0)
        s_progress(*done, opt->count, s_now_ns() - start, true);
    free(p);
    return rc;
}

int main(int argc, char **argv)
{
    options_t opt = {.count = DEFAULT_COUNT, .seed = DEFAULT_SEED};
    int prc = s_parse_options(argc, argv, &opt);
    if (prc != 0)
        return prc < 0 ? EXIT_DONE : prc;

    settings_t settings;
    char err[512];
    if (settings_load(&settings, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "retail-seed: %s\n", err);
        return EXIT_USAGE;
    }
    if (opt.data_dir) {
        if (!*opt.data_dir || strlen(opt.data_dir) + 6 >= sizeof settings.data_dir) {
            fprintf(stderr, "retail-seed: --data-dir is empty or too long\n");
            return EXIT_USAGE;
        }
        snprintf(settings.data_dir, sizeof settings.data_dir, "%s", opt.data_dir);
        settings_derive(&settings);
    }
    int products_dbi = s_products_index();
    if (products_dbi < 0) {
        fprintf(stderr, "retail-seed: the catalog store has no products database\n");
        return EXIT_FAILED;
    }

    char *dir = zsys_sprintf("%s/catalog", settings.data_dir);
    if (!dir) {
        fprintf(stderr, "retail-seed: out of memory\n");
        return EXIT_FAILED;
    }
    FILE *ids_file = NULL;
    if (opt.ids_path && !(ids_file = fopen(opt.ids_path, "w"))) {
        fprintf(stderr, "retail-seed: cannot open %s: %s\n", opt.ids_path, strerror(errno));
        zstr_free(&dir);
        return EXIT_FAILED;
    }
    kv_t *env = kv_open(dir, CATALOG_MAP_SIZE, catalog_store_names, NULL, CATALOG_STORE_DBS, err,
                        sizeof err);
    /* Indexes added since an older version made the store are filled
     * first: once new products are in them, an empty index no longer
     * tells that the old ones are missing. */
    bool upgraded = env && catalog_store_upgrade(env, 0) == CATALOG_OK;
    catalog_store_t *store = upgraded ? catalog_store_open(env, 0) : NULL;
    int status = EXIT_FAILED;
    if (!env)
        fprintf(stderr, "retail-seed: %s\n", err);
    else if (!upgraded)
        fprintf(stderr, "retail-seed: cannot index the older products of %s\n", dir);
    else if (!store)
        fprintf(stderr, "retail-seed: cannot open the catalog store in %s\n", dir);
    else {
        int rc = mdb_env_set_flags(kv_mdb(env), MDB_NOSYNC, 1);
        if (rc != 0)
            fprintf(stderr, "retail-seed: mdb_env_set_flags: %s\n", mdb_strerror(rc));
        char(*ids)[CATALOG_ID_MAX + 1] = calloc(TREE_SIZE, sizeof *ids);
        int made = 0;
        size_t existing = 0;
        long done = 0;
        int64_t start = s_now_ns();
        bool ok = rc == 0 && ids && s_ensure_tree(store, ids, &made) == 0 &&
                  s_product_count(env, products_dbi, &existing) == 0 &&
                  s_seed_products(store, &opt, ids, existing + 1, ids_file, &done) == 0;
        if (rc == 0 && !ids)
            fprintf(stderr, "retail-seed: out of memory\n");
        free(ids);
        /* Always: whatever was committed, error or not, goes to disk. */
        rc = mdb_env_sync(kv_mdb(env), 1);
        if (rc != 0) {
            fprintf(stderr, "retail-seed: mdb_env_sync: %s\n", mdb_strerror(rc));
            ok = false;
        }
        double secs = (double)(s_now_ns() - start) / NS_PER_S;
        printf("retail-seed: %ld products in %.1f s (%.0f/s, with the final sync); %d "
               "categories, %d new\n",
               done, secs, secs > 0 ? (double)done / secs : 0.0, TREE_SIZE, made);
        if (s_report_size(env, dir, products_dbi) != 0)
            ok = false;
        status = ok ? EXIT_DONE : EXIT_FAILED;
    }
    catalog_store_close(&store);
    kv_close(&env);
    zstr_free(&dir);
    if (ids_file && fclose(ids_file) != 0) {
        fprintf(stderr, "retail-seed: cannot write %s: %s\n", opt.ids_path, strerror(errno));
        status = EXIT_FAILED;
    }
    if (fflush(stdout) != 0 || ferror(stdout))
        status = EXIT_FAILED;
    return status;
}
