/*  template.h - the args templates of a load scenario, and the paths that
 *  capture values from replies.
 *
 *  A template is a JSON value whose strings may hold placeholders,
 *  `{{ expr }}`. Filling it packs one msgpack value:
 *
 *      seq            the request's number in the run (integer)
 *      vu             the virtual user's number, from 0 (integer)
 *      iter           the virtual user's flow iteration, from 0 (integer)
 *      run            the run's id (string)
 *      unique         a key no other request of any run gets:
 *                     "<run>-<vu>-<n>" (string)
 *      random A B     an integer drawn uniformly from A..B
 *      pick W1 W2 ..  one of the words, drawn uniformly (string)
 *      line NAME      a line of the file NAME, drawn uniformly (string)
 *      NAME           a variable: a value captured from an earlier reply of
 *                     the same virtual user, or a scenario constant
 *      NAME.a.b       a field of a variable that is a map (a capture
 *                     path, below): {{admin.email}}; a field that is not
 *                     there is like a variable not set
 *
 *  A string that is exactly one placeholder takes the placeholder's type,
 *  so `"qty": "{{random 1 3}}"` is an integer and a captured map stays a
 *  map; any other string is text with each placeholder's value written
 *  into it (an integer in decimal; a map or an array there is an error).
 *  `{{{{` writes a literal `{{`. A subtree with no placeholders is packed
 *  once, when compiled, and copied on every fill.
 *
 *  Names are resolved when compiling, through template_names_t, so a typo
 *  is an error in the scenario, not at the thousandth request.
 *
 *  A capture path is dot-separated keys into a reply's data
 *  ("order.id", "items.0.id": a segment of digits indexes an array; ""
 *  is the whole data).
 *
 *  Ownership: a template owns everything it compiled; a fill writes only
 *  through the caller's packer and reads the caller's context.
 */
#ifndef RETAIL_HARNESS_TEMPLATE_H
#define RETAIL_HARNESS_TEMPLATE_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TEMPLATE_TEXT_MAX 4096 /* the longest string a fill writes */

typedef struct template_t template_t;
typedef struct template_path_t template_path_t;

/* How compiling finds names: each returns an index, or -1 for a name it
 * does not know. arg is passed back. */
typedef struct {
    int (*var_index)(void *arg, const char *name);
    int (*file_index)(void *arg, const char *name);
    void *arg;
} template_names_t;

/* A packed msgpack value (one whole value); data NULL when not set. */
typedef struct {
    const void *data;
    size_t len;
} template_value_t;

/* The lines of a file, each NUL-terminated, none empty. */
typedef struct {
    char **lines;
    size_t count;
} template_file_t;

/* What a fill reads. unique and rng are the virtual user's and advance. */
typedef struct {
    uint64_t seq, vu, iter;
    const char *run;
    uint64_t *unique;
    uint64_t *rng; /* template_random's state, never 0 */
    const template_value_t *vars;
    const template_file_t *files;
} template_ctx_t;

/* Compiles value (borrowed). NULL with a message in err. */
template_t *template_compile(const json_t *value, const template_names_t *names, char *err,
                             size_t errlen);
void template_destroy(template_t **self_p);

/* True when the template has no placeholder at all. */
bool template_is_constant(const template_t *self);

/* Packs the filled value. 0; -1 when a variable is not set (its index in
 * *missing_var) or a value does not fit where it goes (*why says); -2
 * when the packer's output refused a write. */
int template_fill(const template_t *self, const template_ctx_t *ctx, msgpack_packer *pk,
                  int *missing_var, const char **why);

/* The next number of a xorshift64* generator (state never 0). */
uint64_t template_random(uint64_t *state);

template_path_t *template_path_compile(const char *text, char *err, size_t errlen);
void template_path_destroy(template_path_t **self_p);
/* The object the path names inside data, or NULL when it is not there.
 * Points into data. */
const msgpack_object *template_path_find(const template_path_t *self, const msgpack_object *data);

#endif
