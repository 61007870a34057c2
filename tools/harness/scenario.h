/*  scenario.h - a load scenario: what each virtual user of a run does.
 *
 *  A scenario is a JSON file (tools/scenarios/ has examples and README's
 *  "Load harness" the walk-through):
 *
 *      {"name": "shop",
 *       "vars":  {"password": "...", "card": {...}},        constants
 *       "files": {"products": "{{data_dir}}/ids.txt"},      one value per line
 *       "json_files": {"admin": "{{data_dir}}/admin-credentials.json"},
 *                                      a constant read from a JSON file
 *       "setup": [step, ...],          once per virtual user, before its flows
 *       "flows": [{"name": "browse", "weight": 6, "steps": [step, ...]}, ...]}
 *
 *      step = {"name": "view",  "service": "catalog", "op": "product.get",
 *              "args": {"id": "{{line products}}"},     a template (template.h)
 *              "token": "{{access_token}}",            optional, a template
 *              "let": {"key": "{{unique}}"},           var <- a template, before args
 *              "capture": {"order_id": "order.id"},    var <- path in the reply's data
 *              "repeat": [1, 4],                       optional: N, or a draw from [A, B]
 *              "chance": 0.5,                          optional: the odds it runs at all
 *              "accept": ["out_of_stock"]}             expected error codes: not errors
 *
 *  "let" sets variables of the virtual user when the step is sent (each
 *  repeat again), before its args and token are filled, so a value made
 *  once can be sent twice: a checkout's Idempotency key, "let" in the
 *  checkout and used again by a retry step after it.
 *
 *  "json_files" makes each NAME a constant variable holding the file's
 *  JSON value, read when the scenario is loaded: a secret such as the
 *  admin's password (tools/run.sh writes DIR/admin-credentials.json,
 *  0600) reaches the requests as {{admin.password}} without being in the
 *  scenario, on a command line or in any message (errors name the path,
 *  never the content). `--file NAME=PATH` replaces its path too.
 *
 *  A virtual user runs its setup steps once (again from the start if one
 *  fails), then forever: draws a flow by weight and runs its steps in
 *  order. A step that does not succeed (an error, an accepted one too; a
 *  capture that finds nothing; a template whose variable is not set) ends
 *  that flow and the next begins; an accepted code is counted apart from
 *  the errors. Captured values belong to the virtual user
 *  and last until captured again, across flows.
 *
 *  Step names are unique in a scenario (they key the per-step figures and
 *  the record); a step without one is named after its op. A file's path
 *  may hold {{data_dir}} (the settings' data directory); `--file
 *  NAME=PATH` replaces it.
 *
 *  Ownership: the scenario owns every step, template and file line; the
 *  pointers the accessors return live as long as the scenario.
 */
#ifndef RETAIL_HARNESS_SCENARIO_H
#define RETAIL_HARNESS_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/errors.h"
#include "tools/harness/template.h"

#define SCENARIO_NAME_MAX 64
#define SCENARIO_STEPS_MAX 256
#define SCENARIO_CAPTURES_MAX 16

typedef struct scenario_t scenario_t;

typedef struct {
    int var; /* index in the scenario's variables */
    template_path_t *path;
} scenario_capture_t;

/* "let": var <- a template, filled when the step is sent (before its
 * args, which may use it). */
typedef struct {
    int var;
    template_t *value;
} scenario_let_t;

typedef struct {
    char *name, *service, *op;
    size_t index;      /* in scenario_step(), for figures */
    template_t *args;  /* NULL: no args */
    template_t *token; /* NULL: no token */
    scenario_capture_t *captures;
    size_t ncaptures;
    scenario_let_t *lets;
    size_t nlets;
    uint32_t repeat_min, repeat_max; /* 1, 1 unless asked */
    double chance;                   /* 1 unless asked */
    bool accept[ERR__COUNT];
} scenario_step_t;

typedef struct {
    char *name;
    double weight;
    size_t first, count; /* its steps: scenario_step(first) .. first + count - 1 */
} scenario_flow_t;

/* A --file NAME=PATH given on the command line. */
typedef struct {
    const char *name, *path;
} scenario_file_override_t;

/* Reads and compiles the scenario at path. NULL with a message in err. */
scenario_t *scenario_load(const char *path, const char *data_dir,
                          const scenario_file_override_t *overrides, size_t noverrides, char *err,
                          size_t errlen);
/* The same from JSON text (tests). */
scenario_t *scenario_parse(const char *json, const char *data_dir,
                           const scenario_file_override_t *overrides, size_t noverrides, char *err,
                           size_t errlen);
/* One step, service.op with args {"pad": "<pad x's>"}: loadgen without a
 * scenario. */
scenario_t *scenario_single(const char *service, const char *op, size_t pad, char *err,
                            size_t errlen);
void scenario_destroy(scenario_t **self_p);

const char *scenario_name(const scenario_t *self);
const scenario_flow_t *scenario_setup(const scenario_t *self); /* count 0: none */
size_t scenario_flow_count(const scenario_t *self);
const scenario_flow_t *scenario_flow(const scenario_t *self, size_t index);
/* A flow index drawn by weight. */
size_t scenario_pick_flow(const scenario_t *self, uint64_t *rng);
size_t scenario_step_count(const scenario_t *self);
const scenario_step_t *scenario_step(const scenario_t *self, size_t index);

/* Variables: the constants of "vars" first (their values set), then the
 * captured ones (unset until captured). */
size_t scenario_var_count(const scenario_t *self);
const char *scenario_var_name(const scenario_t *self, size_t index);
const template_value_t *scenario_constants(const scenario_t *self); /* scenario_var_count of them */
const template_file_t *scenario_files(const scenario_t *self);

#endif
