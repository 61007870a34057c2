/*  template.c - compiles and fills args templates (template.h).
 *
 *  A compiled template is a tree of nodes. A subtree without placeholders
 *  is one CONST node holding its packed msgpack bytes, so the common case
 *  (most of a request is fixed) is a memcpy per fill. A map keeps its keys
 *  packed and its values as nodes; a string with placeholders is a list of
 *  parts, each literal text or one expression.
 *
 *  Parsing a placeholder is one pass over the string (the expression
 *  between `{{` and `}}` is split into words), so compiling is linear in
 *  the scenario's size.
 */
#include "tools/harness/template.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/envelope.h"
#include "protocol/jsonpack.h"

#define S_WORDS_MAX 64

typedef enum { N_CONST, N_MAP, N_ARRAY, N_TEXT } node_kind_t;
typedef enum {
    E_LITERAL,
    E_SEQ,
    E_VU,
    E_ITER,
    E_RUN,
    E_UNIQUE,
    E_RANDOM,
    E_PICK,
    E_LINE,
    E_VAR
} expr_kind_t;

typedef struct {
    expr_kind_t kind;
    char *text; /* E_LITERAL */
    size_t text_len;
    int64_t lo, hi; /* E_RANDOM */
    char **words;   /* E_PICK */
    size_t nwords;
    int index;             /* E_LINE: file, E_VAR: var */
    template_path_t *path; /* E_VAR: a field of the variable ({{NAME.a.b}}); NULL: all of it */
} part_t;

typedef struct node_t node_t;
struct node_t {
    node_kind_t kind;
    msgpack_sbuffer packed; /* N_CONST; N_MAP: the keys, one after another */
    size_t *key_len;        /* N_MAP: each key's packed length */
    node_t **children;      /* N_MAP values, N_ARRAY items */
    size_t count;
    part_t *parts; /* N_TEXT */
    size_t nparts;
};

struct template_t {
    node_t *root;
};

struct template_path_t {
    char **segments;
    size_t count;
};

static void s_node_destroy(node_t **node_p)
{
    node_t *node = *node_p;
    if (!node)
        return;
    msgpack_sbuffer_destroy(&node->packed);
    for (size_t i = 0; i < node->count; i++)
        s_node_destroy(&node->children[i]);
    free(node->children);
    free(node->key_len);
    for (size_t i = 0; i < node->nparts; i++) {
        free(node->parts[i].text);
        for (size_t w = 0; w < node->parts[i].nwords; w++)
            free(node->parts[i].words[w]);
        free(node->parts[i].words);
        template_path_destroy(&node->parts[i].path);
    }
    free(node->parts);
    free(node);
    *node_p = NULL;
}

static node_t *s_node_new(node_kind_t kind)
{
    node_t *node = calloc(1, sizeof *node);
    if (node) {
        node->kind = kind;
        msgpack_sbuffer_init(&node->packed);
    }
    return node;
}

/* True when the JSON value holds a placeholder anywhere. */
static bool s_has_placeholder(const json_t *value)
{
    if (json_is_string(value))
        return strstr(json_string_value(value), "{{") != NULL;
    if (json_is_object(value)) {
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)value, key, item) if (s_has_placeholder(item)) return true;
    }
    if (json_is_array(value)) {
        size_t i;
        json_t *item;
        json_array_foreach(value, i, item) if (s_has_placeholder(item)) return true;
    }
    return false;
}

static int s_pack_const(const json_t *value, msgpack_sbuffer *out, char *err, size_t errlen)
{
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = jsonpack_from_json(text, strlen(text), out, JSONPACK_DEPTH_LIMIT, err, errlen);
    free(text);
    return rc;
}

static char *s_strndup(const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (copy) {
        memcpy(copy, s, n);
        copy[n] = '\0';
    }
    return copy;
}

static bool s_parse_int(const char *word, int64_t *out)
{
    char *end;
    long long v = strtoll(word, &end, 10);
    if (end == word || *end)
        return false;
    *out = v;
    return true;
}

/* Compiles the expression expr[0..len) (between the braces) into part. */
static int s_compile_expr(const char *expr, size_t len, const template_names_t *names, part_t *part,
                          char *err, size_t errlen)
{
    char *copy = s_strndup(expr, len);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char *words[S_WORDS_MAX];
    size_t n = 0;
    for (char *save = NULL, *w = strtok_r(copy, " \t", &save); w;
         w = strtok_r(NULL, " \t", &save)) {
        if (n == S_WORDS_MAX) {
            snprintf(err, errlen, "{{%.40s}} has more than %d words", copy, S_WORDS_MAX);
            free(copy);
            return -1;
        }
        words[n++] = w;
    }
    int rc = -1;
    if (n == 0) {
        snprintf(err, errlen, "an empty placeholder {{}}");
        goto done;
    }
    const char *head = words[0];
    if (n == 1 && strcmp(head, "seq") == 0)
        part->kind = E_SEQ;
    else if (n == 1 && strcmp(head, "vu") == 0)
        part->kind = E_VU;
    else if (n == 1 && strcmp(head, "iter") == 0)
        part->kind = E_ITER;
    else if (n == 1 && strcmp(head, "run") == 0)
        part->kind = E_RUN;
    else if (n == 1 && strcmp(head, "unique") == 0)
        part->kind = E_UNIQUE;
    else if (strcmp(head, "random") == 0) {
        part->kind = E_RANDOM;
        if (n != 3 || !s_parse_int(words[1], &part->lo) || !s_parse_int(words[2], &part->hi) ||
            part->lo > part->hi || part->hi - part->lo < 0) {
            snprintf(err, errlen, "{{random A B}} needs two integers A <= B");
            goto done;
        }
    } else if (strcmp(head, "pick") == 0) {
        part->kind = E_PICK;
        if (n < 2) {
            snprintf(err, errlen, "{{pick W1 W2 ...}} needs at least one word");
            goto done;
        }
        part->words = calloc(n - 1, sizeof *part->words);
        if (!part->words) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
        for (size_t i = 1; i < n; i++) {
            part->words[i - 1] = strdup(words[i]);
            if (!part->words[i - 1]) {
                snprintf(err, errlen, "out of memory");
                goto done;
            }
            part->nwords++;
        }
    } else if (strcmp(head, "line") == 0) {
        part->kind = E_LINE;
        part->index = n == 2 && names->file_index ? names->file_index(names->arg, words[1]) : -1;
        if (part->index < 0) {
            snprintf(err, errlen, "{{line NAME}}: no file named '%s' in the scenario's files",
                     n == 2 ? words[1] : "");
            goto done;
        }
    } else if (n == 1) {
        /* NAME, or NAME.a.b: a field of the variable (names have no dot) */
        part->kind = E_VAR;
        char *dot = strchr(words[0], '.');
        if (dot) {
            *dot = '\0';
            char why[128] = "";
            part->path = template_path_compile(dot + 1, why, sizeof why);
            if (!part->path || !dot[1]) {
                snprintf(err, errlen, "{{%s.%s}}: %s", head, dot + 1,
                         *why ? why : "an empty field path");
                goto done;
            }
        }
        part->index = names->var_index ? names->var_index(names->arg, head) : -1;
        if (part->index < 0) {
            snprintf(err, errlen,
                     "{{%s}}: not a variable (no step captures it and it is not in vars)", head);
            goto done;
        }
    } else {
        snprintf(err, errlen, "{{%s ...}}: unknown placeholder", head);
        goto done;
    }
    rc = 0;
done:
    free(copy);
    return rc;
}

static int s_add_part(node_t *node, part_t *part, char *err, size_t errlen)
{
    part_t *grown = realloc(node->parts, (node->nparts + 1) * sizeof *grown);
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    node->parts = grown;
    node->parts[node->nparts++] = *part;
    return 0;
}

static int s_add_literal(node_t *node, const char *text, size_t len, char *err, size_t errlen)
{
    if (len == 0)
        return 0;
    part_t part = {.kind = E_LITERAL, .text = s_strndup(text, len), .text_len = len};
    if (!part.text || s_add_part(node, &part, err, errlen) != 0) {
        free(part.text);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static node_t *s_compile_text(const char *s, size_t len, const template_names_t *names, char *err,
                              size_t errlen)
{
    node_t *node = s_node_new(N_TEXT);
    if (!node) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t i = 0, literal_from = 0;
    /* Literal text accumulates in place; "{{{{" adds a literal "{{". */
    while (i < len) {
        if (s[i] != '{' || i + 1 >= len || s[i + 1] != '{') {
            i++;
            continue;
        }
        if (i + 3 < len && s[i + 2] == '{' && s[i + 3] == '{') {
            if (s_add_literal(node, s + literal_from, i - literal_from + 2, err, errlen) != 0)
                goto fail;
            i += 4;
            literal_from = i;
            continue;
        }
        if (s_add_literal(node, s + literal_from, i - literal_from, err, errlen) != 0)
            goto fail;
        const char *close = NULL;
        for (size_t j = i + 2; j + 1 < len; j++)
            if (s[j] == '}' && s[j + 1] == '}') {
                close = s + j;
                break;
            }
        if (!close) {
            snprintf(err, errlen, "'%.40s': a {{ without its }}", s);
            goto fail;
        }
        part_t part = {0};
        if (s_compile_expr(s + i + 2, (size_t)(close - (s + i + 2)), names, &part, err, errlen) !=
                0 ||
            s_add_part(node, &part, err, errlen) != 0) {
            for (size_t w = 0; w < part.nwords; w++)
                free(part.words[w]);
            free(part.words);
            template_path_destroy(&part.path);
            goto fail;
        }
        i = (size_t)(close - s) + 2;
        literal_from = i;
    }
    if (s_add_literal(node, s + literal_from, len - literal_from, err, errlen) != 0)
        goto fail;
    return node;
fail:
    s_node_destroy(&node);
    return NULL;
}

static node_t *s_compile(const json_t *value, const template_names_t *names, int depth, char *err,
                         size_t errlen)
{
    if (depth > JSONPACK_DEPTH_LIMIT) {
        snprintf(err, errlen, "a template nested deeper than %d", JSONPACK_DEPTH_LIMIT);
        return NULL;
    }
    node_t *node = NULL;
    if (!s_has_placeholder(value)) {
        node = s_node_new(N_CONST);
        if (!node || s_pack_const(value, &node->packed, err, errlen) != 0)
            goto fail;
        return node;
    }
    if (json_is_string(value))
        return s_compile_text(json_string_value(value), json_string_length(value), names, err,
                              errlen);
    bool is_map = json_is_object(value);
    node = s_node_new(is_map ? N_MAP : N_ARRAY);
    size_t n = is_map ? json_object_size(value) : json_array_size(value);
    if (!node || !(node->children = calloc(n ? n : 1, sizeof *node->children)) ||
        (is_map && !(node->key_len = calloc(n ? n : 1, sizeof *node->key_len)))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (is_map) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &node->packed, msgpack_sbuffer_write);
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)value, key, item)
        {
            size_t before = node->packed.size;
            if (mp_pack_str(&pk, key) != 0) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            node->key_len[node->count] = node->packed.size - before;
            node->children[node->count] = s_compile(item, names, depth + 1, err, errlen);
            if (!node->children[node->count])
                goto fail;
            node->count++;
        }
    } else {
        size_t i;
        json_t *item;
        json_array_foreach(value, i, item)
        {
            node->children[node->count] = s_compile(item, names, depth + 1, err, errlen);
            if (!node->children[node->count])
                goto fail;
            node->count++;
        }
    }
    return node;
fail:
    if (!*err)
        snprintf(err, errlen, "out of memory");
    s_node_destroy(&node);
    return NULL;
}

template_t *template_compile(const json_t *value, const template_names_t *names, char *err,
                             size_t errlen)
{
    if (errlen)
        *err = '\0';
    template_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->root = s_compile(value, names, 0, err, errlen);
    if (!self->root) {
        free(self);
        return NULL;
    }
    return self;
}

void template_destroy(template_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_node_destroy(&(*self_p)->root);
    free(*self_p);
    *self_p = NULL;
}

bool template_is_constant(const template_t *self)
{
    return self->root->kind == N_CONST;
}

uint64_t template_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A uniform draw from 0..n-1 (n > 0); the modulo bias is below 2^-32 for
 * every n a scenario uses. */
static uint64_t s_below(uint64_t *rng, uint64_t n)
{
    return template_random(rng) % n;
}

/* The value of a variable placeholder: the variable, or its field, in
 * *out (pointing into *one, which the caller destroys on 0). -1 when the
 * variable is not set or has no such field (*missing_var names it). */
static int s_var_object(const part_t *part, const template_ctx_t *ctx, msgpack_unpacked *one,
                        const msgpack_object **out, int *missing_var, const char **why)
{
    const template_value_t *var = &ctx->vars[part->index];
    if (!var->data) {
        *missing_var = part->index;
        *why = "a variable is not set yet";
        return -1;
    }
    msgpack_unpacked_init(one);
    if (msgpack_unpack_next(one, var->data, var->len, NULL) != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(one);
        *why = "a variable's value does not decode";
        return -1;
    }
    *out = part->path ? template_path_find(part->path, &one->data) : &one->data;
    if (!*out) {
        msgpack_unpacked_destroy(one);
        *missing_var = part->index;
        *why = "the variable has no such field";
        return -1;
    }
    return 0;
}

/* Text of one expression into buf (appending at *at, at most cap).
 * 0, or -1 with why. */
static int s_text_of(const part_t *part, const template_ctx_t *ctx, char *buf, size_t cap,
                     size_t *at, int *missing_var, const char **why)
{
    char scratch[96];
    const char *text = scratch;
    size_t len;
    switch (part->kind) {
    case E_LITERAL:
        text = part->text;
        len = part->text_len;
        break;
    case E_SEQ:
        len = (size_t)snprintf(scratch, sizeof scratch, "%" PRIu64, ctx->seq);
        break;
    case E_VU:
        len = (size_t)snprintf(scratch, sizeof scratch, "%" PRIu64, ctx->vu);
        break;
    case E_ITER:
        len = (size_t)snprintf(scratch, sizeof scratch, "%" PRIu64, ctx->iter);
        break;
    case E_RUN:
        text = ctx->run;
        len = strlen(text);
        break;
    case E_UNIQUE:
        len = (size_t)snprintf(scratch, sizeof scratch, "%s-%" PRIu64 "-%" PRIu64, ctx->run,
                               ctx->vu, (*ctx->unique)++);
        break;
    case E_RANDOM: {
        uint64_t span = (uint64_t)(part->hi - part->lo) + 1;
        int64_t v = span == 0 ? (int64_t)template_random(ctx->rng)
                              : part->lo + (int64_t)s_below(ctx->rng, span);
        len = (size_t)snprintf(scratch, sizeof scratch, "%" PRId64, v);
        break;
    }
    case E_PICK:
        text = part->words[s_below(ctx->rng, part->nwords)];
        len = strlen(text);
        break;
    case E_LINE: {
        const template_file_t *file = &ctx->files[part->index];
        text = file->lines[s_below(ctx->rng, file->count)];
        len = strlen(text);
        break;
    }
    case E_VAR: {
        msgpack_unpacked one;
        const msgpack_object *o;
        if (s_var_object(part, ctx, &one, &o, missing_var, why) != 0)
            return -1;
        if (o->type == MSGPACK_OBJECT_STR) {
            if (*at + o->via.str.size > cap) {
                msgpack_unpacked_destroy(&one);
                *why = "a filled string is over the template's text limit";
                return -1;
            }
            memcpy(buf + *at, o->via.str.ptr, o->via.str.size);
            *at += o->via.str.size;
            msgpack_unpacked_destroy(&one);
            return 0;
        }
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            len = (size_t)snprintf(scratch, sizeof scratch, "%" PRIu64, o->via.u64);
        else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            len = (size_t)snprintf(scratch, sizeof scratch, "%" PRId64, o->via.i64);
        else if (o->type == MSGPACK_OBJECT_BOOLEAN)
            len =
                (size_t)snprintf(scratch, sizeof scratch, "%s", o->via.boolean ? "true" : "false");
        else {
            msgpack_unpacked_destroy(&one);
            *why = "only a string, an integer or a boolean can go inside a string";
            return -1;
        }
        msgpack_unpacked_destroy(&one);
        break;
    }
    default:
        *why = "an unknown placeholder";
        return -1;
    }
    if (len >= sizeof scratch && text == scratch)
        len = sizeof scratch - 1;
    if (*at + len > cap) {
        *why = "a filled string is over the template's text limit";
        return -1;
    }
    memcpy(buf + *at, text, len);
    *at += len;
    return 0;
}

/* One placeholder alone in its string: packed with its own type. */
static int s_pack_typed(const part_t *part, const template_ctx_t *ctx, msgpack_packer *pk,
                        int *missing_var, const char **why)
{
    switch (part->kind) {
    case E_SEQ:
        return msgpack_pack_uint64(pk, ctx->seq) == 0 ? 0 : -2;
    case E_VU:
        return msgpack_pack_uint64(pk, ctx->vu) == 0 ? 0 : -2;
    case E_ITER:
        return msgpack_pack_uint64(pk, ctx->iter) == 0 ? 0 : -2;
    case E_RANDOM: {
        uint64_t span = (uint64_t)(part->hi - part->lo) + 1;
        int64_t v = span == 0 ? (int64_t)template_random(ctx->rng)
                              : part->lo + (int64_t)s_below(ctx->rng, span);
        return msgpack_pack_int64(pk, v) == 0 ? 0 : -2;
    }
    case E_VAR: {
        const template_value_t *var = &ctx->vars[part->index];
        if (var->data && !part->path)
            return mp_pack_raw(pk, var->data, var->len) == 0 ? 0 : -2;
        msgpack_unpacked one;
        const msgpack_object *o;
        if (s_var_object(part, ctx, &one, &o, missing_var, why) != 0)
            return -1;
        int rc = msgpack_pack_object(pk, *o) == 0 ? 0 : -2;
        msgpack_unpacked_destroy(&one);
        return rc;
    }
    default:
        return 1; /* a string: the caller writes it as text */
    }
}

static int s_fill(const node_t *node, const template_ctx_t *ctx, msgpack_packer *pk,
                  int *missing_var, const char **why)
{
    switch (node->kind) {
    case N_CONST:
        return mp_pack_raw(pk, node->packed.data, node->packed.size) == 0 ? 0 : -2;
    case N_MAP: {
        if (msgpack_pack_map(pk, (uint32_t)node->count) != 0)
            return -2;
        const char *key = node->packed.data;
        for (size_t i = 0; i < node->count; i++) {
            if (mp_pack_raw(pk, key, node->key_len[i]) != 0)
                return -2;
            key += node->key_len[i];
            int rc = s_fill(node->children[i], ctx, pk, missing_var, why);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    case N_ARRAY:
        if (msgpack_pack_array(pk, (uint32_t)node->count) != 0)
            return -2;
        for (size_t i = 0; i < node->count; i++) {
            int rc = s_fill(node->children[i], ctx, pk, missing_var, why);
            if (rc != 0)
                return rc;
        }
        return 0;
    case N_TEXT: {
        if (node->nparts == 1) {
            int rc = s_pack_typed(&node->parts[0], ctx, pk, missing_var, why);
            if (rc <= 0)
                return rc;
        }
        char buf[TEMPLATE_TEXT_MAX];
        size_t at = 0;
        for (size_t i = 0; i < node->nparts; i++)
            if (s_text_of(&node->parts[i], ctx, buf, sizeof buf, &at, missing_var, why) != 0)
                return -1;
        return mp_pack_strn(pk, buf, at) == 0 ? 0 : -2;
    }
    }
    return -1;
}

int template_fill(const template_t *self, const template_ctx_t *ctx, msgpack_packer *pk,
                  int *missing_var, const char **why)
{
    *missing_var = -1;
    *why = NULL;
    return s_fill(self->root, ctx, pk, missing_var, why);
}

template_path_t *template_path_compile(const char *text, char *err, size_t errlen)
{
    template_path_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!*text)
        return self;
    size_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == '.';
    self->segments = calloc(n, sizeof *self->segments);
    if (!self->segments)
        goto oom;
    const char *from = text;
    for (const char *p = text;; p++) {
        if (*p != '.' && *p)
            continue;
        if (p == from) {
            snprintf(err, errlen, "capture path '%s' has an empty segment", text);
            template_path_destroy(&self);
            return NULL;
        }
        self->segments[self->count] = s_strndup(from, (size_t)(p - from));
        if (!self->segments[self->count])
            goto oom;
        self->count++;
        if (!*p)
            break;
        from = p + 1;
    }
    return self;
oom:
    snprintf(err, errlen, "out of memory");
    template_path_destroy(&self);
    return NULL;
}

void template_path_destroy(template_path_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    template_path_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        free(self->segments[i]);
    free(self->segments);
    free(self);
    *self_p = NULL;
}

const msgpack_object *template_path_find(const template_path_t *self, const msgpack_object *data)
{
    const msgpack_object *at = data;
    for (size_t i = 0; i < self->count && at; i++) {
        const char *segment = self->segments[i];
        if (at->type == MSGPACK_OBJECT_MAP)
            at = mp_map_get(at, segment);
        else if (at->type == MSGPACK_OBJECT_ARRAY) {
            char *end;
            unsigned long index = strtoul(segment, &end, 10);
            at = *end || segment[0] == '-' || index >= at->via.array.size
                     ? NULL
                     : &at->via.array.ptr[index];
        } else
            at = NULL;
    }
    return at;
}
