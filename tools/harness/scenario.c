/*  scenario.c - reads a scenario file and compiles it (scenario.h).
 *
 *  Two passes over the JSON: the first collects the names (constants from
 *  "vars", captured ones from every step's "capture", files from "files")
 *  so that the second can compile each template against all of them,
 *  whatever the order in which steps capture and use a variable. Every
 *  step of the setup and of the flows goes into one array, flows being
 *  ranges of it, so a step's index keys its figures directly.
 */
#include "tools/harness/scenario.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/envelope.h"
#include "protocol/jsonpack.h"

#define S_VARS_MAX 256
#define S_FILES_MAX 32
#define S_FLOWS_MAX 64
#define S_REPEAT_MAX 1000
#define S_FILE_BYTES_MAX (256u * 1024 * 1024)

struct scenario_t {
    char *name;
    scenario_flow_t setup;
    scenario_flow_t *flows;
    size_t nflows;
    double total_weight;
    scenario_step_t *steps;
    size_t nsteps;
    char *var_names[S_VARS_MAX];
    template_value_t constants[S_VARS_MAX];
    msgpack_sbuffer constants_packed[S_VARS_MAX];
    size_t nvars;
    char *file_names[S_FILES_MAX];
    template_file_t files[S_FILES_MAX];
    char *file_text[S_FILES_MAX];
    size_t nfiles;
    char *json_names[S_FILES_MAX]; /* json_files: each one of the variables too */
    size_t njson;
};

static const char *const s_builtins[] = {"seq",    "vu",     "iter", "run",
                                         "unique", "random", "pick", "line"};

static int s_var_index(void *arg, const char *name)
{
    const scenario_t *self = arg;
    for (size_t i = 0; i < self->nvars; i++)
        if (strcmp(self->var_names[i], name) == 0)
            return (int)i;
    return -1;
}

static int s_file_index(void *arg, const char *name)
{
    const scenario_t *self = arg;
    for (size_t i = 0; i < self->nfiles; i++)
        if (strcmp(self->file_names[i], name) == 0)
            return (int)i;
    return -1;
}

static bool s_valid_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > SCENARIO_NAME_MAX)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return false;
    return true;
}

static int s_add_var(scenario_t *self, const char *name, char *err, size_t errlen)
{
    if (s_var_index(self, name) >= 0)
        return 0;
    for (size_t i = 0; i < sizeof s_builtins / sizeof *s_builtins; i++)
        if (strcmp(name, s_builtins[i]) == 0) {
            snprintf(err, errlen, "'%s' is a built-in placeholder, not a variable name", name);
            return -1;
        }
    if (!s_valid_name(name) || strchr(name, '.')) {
        snprintf(err, errlen, "'%.40s' is not a variable name (letters, digits, _ and -)", name);
        return -1;
    }
    if (self->nvars == S_VARS_MAX) {
        snprintf(err, errlen, "more than %d variables", S_VARS_MAX);
        return -1;
    }
    self->var_names[self->nvars] = strdup(name);
    if (!self->var_names[self->nvars]) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    msgpack_sbuffer_init(&self->constants_packed[self->nvars]);
    self->nvars++;
    return 0;
}

/* Reads a file of lines: each line (without \r\n) that is not empty. */
static int s_load_file(scenario_t *self, size_t index, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "file '%s' (%s): cannot open %s", self->file_names[index],
                 self->file_names[index], path);
        return -1;
    }
    int rc = -1;
    size_t cap = 0, len = 0;
    char *text = NULL;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 65536 * 2;
            char *grown = cap <= S_FILE_BYTES_MAX ? realloc(text, cap) : NULL;
            if (!grown) {
                snprintf(err, errlen, "%s: too large or out of memory", path);
                goto done;
            }
            text = grown;
        }
        size_t n = fread(text + len, 1, 65536, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto done;
    }
    text[len] = '\0';
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    template_file_t *file = &self->files[index];
    file->lines = calloc(lines + 1, sizeof *file->lines);
    if (!file->lines) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    char *line = text;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && text[i] != '\n')
            continue;
        text[i] = '\0';
        size_t n = (size_t)(text + i - line);
        if (n && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n)
            file->lines[file->count++] = line;
        line = text + i + 1;
    }
    if (file->count == 0) {
        snprintf(err, errlen, "%s has no lines", path);
        goto done;
    }
    self->file_text[index] = text;
    text = NULL;
    rc = 0;
done:
    free(text);
    fclose(f);
    return rc;
}

/* path with every {{data_dir}} replaced. */
static char *s_file_path(const char *path, const char *data_dir)
{
    const char *marker = "{{data_dir}}";
    size_t n = 0;
    for (const char *p = strstr(path, marker); p; p = strstr(p + strlen(marker), marker))
        n++;
    size_t len = strlen(path) + n * strlen(data_dir ? data_dir : ".") + 1;
    char *out = malloc(len);
    if (!out)
        return NULL;
    char *w = out;
    for (const char *p = path; *p;) {
        if (strncmp(p, marker, strlen(marker)) == 0) {
            w += sprintf(w, "%s", data_dir ? data_dir : ".");
            p += strlen(marker);
        } else
            *w++ = *p++;
    }
    *w = '\0';
    return out;
}

static bool s_is_json_file(const scenario_t *self, const char *name)
{
    for (size_t i = 0; i < self->njson; i++)
        if (strcmp(self->json_names[i], name) == 0)
            return true;
    return false;
}

/* Reads the JSON file of json_files.NAME (its path, or the --file
 * override of NAME) into the constant of variable var. The file's text
 * is never quoted in a message: it may be a secret (the admin's
 * password). */
static int s_load_json_file(scenario_t *self, size_t var, const char *path, const char *data_dir,
                            const scenario_file_override_t *overrides, size_t noverrides, char *err,
                            size_t errlen)
{
    const char *name = self->var_names[var];
    for (size_t o = 0; o < noverrides; o++)
        if (strcmp(overrides[o].name, name) == 0)
            path = overrides[o].path;
    char *resolved = s_file_path(path, data_dir);
    if (!resolved) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    json_error_t jerr;
    json_t *doc = json_load_file(resolved, JSON_DECODE_ANY, &jerr);
    int rc = -1;
    char *text = NULL;
    if (!doc) {
        snprintf(err, errlen, "json_files.%s: %s is not readable JSON (line %d)", name, resolved,
                 jerr.line);
        goto done;
    }
    text = json_dumps(doc, JSON_ENCODE_ANY | JSON_COMPACT);
    char why[128];
    if (!text || jsonpack_from_json(text, strlen(text), &self->constants_packed[var],
                                    JSONPACK_DEPTH_LIMIT, why, sizeof why) != 0) {
        snprintf(err, errlen, "json_files.%s: %s cannot be packed", name, resolved);
        goto done;
    }
    self->constants[var].data = self->constants_packed[var].data;
    self->constants[var].len = self->constants_packed[var].size;
    rc = 0;
done:
    free(text);
    json_decref(doc);
    free(resolved);
    return rc;
}

/* The variables the steps set: their captures' and their lets'. */
static int s_collect_captures(scenario_t *self, const json_t *steps, char *err, size_t errlen)
{
    size_t i;
    json_t *step;
    json_array_foreach(steps, i, step)
    {
        static const char *const kinds[] = {"capture", "let"};
        for (size_t k = 0; k < 2; k++) {
            json_t *names = json_object_get(step, kinds[k]);
            if (!names)
                continue;
            if (!json_is_object(names)) {
                snprintf(err, errlen, "a step's %s is not an object of var: %s", kinds[k],
                         k == 0 ? "path" : "template");
                return -1;
            }
            const char *var;
            json_t *value;
            json_object_foreach(names, var,
                                value) if (s_add_var(self, var, err, errlen) != 0) return -1;
        }
    }
    return 0;
}

static int s_compile_step(scenario_t *self, const json_t *json, const char *where,
                          scenario_step_t *step, char *err, size_t errlen)
{
    step->repeat_min = step->repeat_max = 1;
    step->chance = 1;
    step->index = (size_t)(step - self->steps);
    template_names_t names = {s_var_index, s_file_index, self};
    if (!json_is_object(json)) {
        snprintf(err, errlen, "%s: a step is not an object", where);
        return -1;
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)json, key, value)
    {
        if (strcmp(key, "name") != 0 && strcmp(key, "service") != 0 && strcmp(key, "op") != 0 &&
            strcmp(key, "args") != 0 && strcmp(key, "token") != 0 && strcmp(key, "capture") != 0 &&
            strcmp(key, "repeat") != 0 && strcmp(key, "chance") != 0 &&
            strcmp(key, "accept") != 0 && strcmp(key, "let") != 0) {
            snprintf(err, errlen, "%s: a step has an unknown key '%.40s'", where, key);
            return -1;
        }
    }
    const char *service = json_string_value(json_object_get(json, "service"));
    const char *op = json_string_value(json_object_get(json, "op"));
    if (!service || !*service || strlen(service) > 255 || !op || !*op ||
        strlen(op) > ENVELOPE_MAX_OP) {
        snprintf(err, errlen, "%s: a step needs a service and an op (strings)", where);
        return -1;
    }
    json_t *name_json = json_object_get(json, "name");
    const char *name = name_json ? json_string_value(name_json) : op;
    if (!name || !s_valid_name(name)) {
        snprintf(err, errlen, "%s: step name '%.40s' is not a name (letters, digits, _ - .)", where,
                 name ? name : "?");
        return -1;
    }
    for (size_t i = 0; i < step->index; i++)
        if (strcmp(self->steps[i].name, name) == 0) {
            snprintf(err, errlen, "%s: two steps are named '%s' (give one a \"name\")", where,
                     name);
            return -1;
        }
    step->name = strdup(name);
    step->service = strdup(service);
    step->op = strdup(op);
    if (!step->name || !step->service || !step->op) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    json_t *args = json_object_get(json, "args");
    if (args) {
        if (!json_is_object(args)) {
            snprintf(err, errlen, "step %s: args is not an object", name);
            return -1;
        }
        char why[256] = "";
        step->args = template_compile(args, &names, why, sizeof why);
        if (!step->args) {
            snprintf(err, errlen, "step %s: args: %s", name, why);
            return -1;
        }
    }
    json_t *token = json_object_get(json, "token");
    if (token && !json_is_null(token)) {
        char why[256] = "";
        if (!json_is_string(token) ||
            !(step->token = template_compile(token, &names, why, sizeof why))) {
            snprintf(err, errlen, "step %s: token: %s", name, *why ? why : "not a string");
            return -1;
        }
    }
    json_t *capture = json_object_get(json, "capture");
    if (capture) {
        size_t n = json_object_size(capture);
        if (n > SCENARIO_CAPTURES_MAX) {
            snprintf(err, errlen, "step %s: more than %d captures", name, SCENARIO_CAPTURES_MAX);
            return -1;
        }
        step->captures = calloc(n ? n : 1, sizeof *step->captures);
        if (!step->captures) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        const char *var;
        json_t *path;
        json_object_foreach(capture, var, path)
        {
            char why[256] = "";
            scenario_capture_t *c = &step->captures[step->ncaptures];
            c->var = s_var_index(self, var);
            if (!json_is_string(path) ||
                !(c->path = template_path_compile(json_string_value(path), why, sizeof why))) {
                snprintf(err, errlen, "step %s: capture %s: %s", name, var,
                         *why ? why : "the path is not a string");
                return -1;
            }
            step->ncaptures++;
        }
    }
    json_t *let = json_object_get(json, "let");
    if (let) {
        size_t n = json_object_size(let);
        if (n > SCENARIO_CAPTURES_MAX) {
            snprintf(err, errlen, "step %s: more than %d lets", name, SCENARIO_CAPTURES_MAX);
            return -1;
        }
        step->lets = calloc(n ? n : 1, sizeof *step->lets);
        if (!step->lets) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        const char *var;
        json_t *value;
        json_object_foreach(let, var, value)
        {
            char why[256] = "";
            scenario_let_t *l = &step->lets[step->nlets];
            l->var = s_var_index(self, var);
            if (!(l->value = template_compile(value, &names, why, sizeof why))) {
                snprintf(err, errlen, "step %s: let %s: %s", name, var, why);
                return -1;
            }
            step->nlets++;
        }
    }
    json_t *repeat = json_object_get(json, "repeat");
    if (repeat) {
        json_int_t lo = -1, hi = -1;
        if (json_is_integer(repeat))
            lo = hi = json_integer_value(repeat);
        else if (json_is_array(repeat) && json_array_size(repeat) == 2 &&
                 json_is_integer(json_array_get(repeat, 0)) &&
                 json_is_integer(json_array_get(repeat, 1))) {
            lo = json_integer_value(json_array_get(repeat, 0));
            hi = json_integer_value(json_array_get(repeat, 1));
        }
        if (lo < 0 || hi < lo || hi > S_REPEAT_MAX) {
            snprintf(err, errlen, "step %s: repeat is N or [A, B], 0 <= A <= B <= %d", name,
                     S_REPEAT_MAX);
            return -1;
        }
        step->repeat_min = (uint32_t)lo;
        step->repeat_max = (uint32_t)hi;
    }
    json_t *chance = json_object_get(json, "chance");
    if (chance) {
        double p = json_is_number(chance) ? json_number_value(chance) : -1;
        if (!(p >= 0 && p <= 1)) {
            snprintf(err, errlen, "step %s: chance is a number from 0 to 1", name);
            return -1;
        }
        step->chance = p;
    }
    json_t *accept = json_object_get(json, "accept");
    if (accept) {
        size_t i;
        json_t *code;
        if (!json_is_array(accept)) {
            snprintf(err, errlen, "step %s: accept is a list of error codes", name);
            return -1;
        }
        json_array_foreach(accept, i, code)
        {
            const char *text = json_string_value(code);
            err_code_t c = text ? err_code_from_name(text, strlen(text)) : ERR_NONE;
            if (!text || strcmp(err_code_name(c), text) != 0) {
                snprintf(err, errlen, "step %s: accept: '%.40s' is not an error code", name,
                         text ? text : "?");
                return -1;
            }
            step->accept[c] = true;
        }
    }
    return 0;
}

static int s_compile_steps(scenario_t *self, const json_t *steps, const char *where,
                           scenario_flow_t *flow, char *err, size_t errlen)
{
    if (!json_is_array(steps)) {
        snprintf(err, errlen, "%s: steps is not a list", where);
        return -1;
    }
    flow->first = self->nsteps;
    size_t i;
    json_t *step;
    json_array_foreach(steps, i, step)
    {
        if (self->nsteps == SCENARIO_STEPS_MAX) {
            snprintf(err, errlen, "more than %d steps", SCENARIO_STEPS_MAX);
            return -1;
        }
        scenario_step_t *s = &self->steps[self->nsteps++];
        if (s_compile_step(self, step, where, s, err, errlen) != 0)
            return -1;
        flow->count++;
    }
    return 0;
}

static int s_build(scenario_t *self, const json_t *doc, const char *data_dir,
                   const scenario_file_override_t *overrides, size_t noverrides, char *err,
                   size_t errlen)
{
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "a scenario is a JSON object");
        return -1;
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)doc, key, value)
    {
        if (strcmp(key, "name") != 0 && strcmp(key, "description") != 0 &&
            strcmp(key, "vars") != 0 && strcmp(key, "files") != 0 && strcmp(key, "setup") != 0 &&
            strcmp(key, "flows") != 0 && strcmp(key, "json_files") != 0) {
            snprintf(err, errlen, "unknown key '%.40s' in the scenario", key);
            return -1;
        }
    }
    const char *name = json_string_value(json_object_get(doc, "name"));
    if (!name || !s_valid_name(name)) {
        snprintf(err, errlen, "the scenario needs a \"name\" (letters, digits, _ - .)");
        return -1;
    }
    self->name = strdup(name);
    self->steps = calloc(SCENARIO_STEPS_MAX, sizeof *self->steps);
    self->flows = calloc(S_FLOWS_MAX, sizeof *self->flows);
    if (!self->name || !self->steps || !self->flows) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    /* Names first: constants, files, captures. */
    json_t *vars = json_object_get(doc, "vars");
    if (vars && !json_is_object(vars)) {
        snprintf(err, errlen, "vars is not an object");
        return -1;
    }
    json_object_foreach(vars, key, value)
    {
        if (s_add_var(self, key, err, errlen) != 0)
            return -1;
        size_t i = self->nvars - 1;
        char why[256];
        char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
        int rc = text ? jsonpack_from_json(text, strlen(text), &self->constants_packed[i],
                                           JSONPACK_DEPTH_LIMIT, why, sizeof why)
                      : -1;
        free(text);
        if (rc != 0) {
            snprintf(err, errlen, "vars.%s cannot be packed", key);
            return -1;
        }
        self->constants[i].data = self->constants_packed[i].data;
        self->constants[i].len = self->constants_packed[i].size;
    }
    json_t *json_files = json_object_get(doc, "json_files");
    if (json_files && !json_is_object(json_files)) {
        snprintf(err, errlen, "json_files is not an object of name: path");
        return -1;
    }
    json_object_foreach(json_files, key, value)
    {
        if (!json_is_string(value) || self->njson == S_FILES_MAX) {
            snprintf(err, errlen, "json_files.%.40s: a name and a path (at most %d files)", key,
                     S_FILES_MAX);
            return -1;
        }
        if (s_var_index(self, key) >= 0) {
            snprintf(err, errlen, "json_files.%.40s: vars has that name too", key);
            return -1;
        }
        if (s_add_var(self, key, err, errlen) != 0)
            return -1;
        self->json_names[self->njson] = strdup(key);
        if (!self->json_names[self->njson]) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        self->njson++;
        if (s_load_json_file(self, self->nvars - 1, json_string_value(value), data_dir, overrides,
                             noverrides, err, errlen) != 0)
            return -1;
    }
    json_t *files = json_object_get(doc, "files");
    if (files && !json_is_object(files)) {
        snprintf(err, errlen, "files is not an object of name: path");
        return -1;
    }
    json_object_foreach(files, key, value)
    {
        if (!json_is_string(value) || !s_valid_name(key) || self->nfiles == S_FILES_MAX) {
            snprintf(err, errlen, "files.%.40s: a name and a path (at most %d files)", key,
                     S_FILES_MAX);
            return -1;
        }
        size_t i = self->nfiles++;
        self->file_names[i] = strdup(key);
        const char *path = json_string_value(value);
        for (size_t o = 0; o < noverrides; o++)
            if (strcmp(overrides[o].name, key) == 0)
                path = overrides[o].path;
        char *resolved = s_file_path(path, data_dir);
        int rc = self->file_names[i] && resolved ? s_load_file(self, i, resolved, err, errlen) : -1;
        if (rc != 0 && !*err)
            snprintf(err, errlen, "out of memory");
        free(resolved);
        if (rc != 0)
            return -1;
    }
    for (size_t o = 0; o < noverrides; o++)
        if (s_file_index(self, overrides[o].name) < 0 && !s_is_json_file(self, overrides[o].name)) {
            snprintf(err, errlen, "--file %s: the scenario has no file of that name",
                     overrides[o].name);
            return -1;
        }
    json_t *setup = json_object_get(doc, "setup");
    json_t *flows = json_object_get(doc, "flows");
    if (!json_is_array(flows) || json_array_size(flows) == 0 ||
        json_array_size(flows) > S_FLOWS_MAX) {
        snprintf(err, errlen, "flows is a list of 1 to %d flows", S_FLOWS_MAX);
        return -1;
    }
    if (setup && s_collect_captures(self, setup, err, errlen) != 0)
        return -1;
    size_t i;
    json_t *flow;
    json_array_foreach(flows, i, flow)
    {
        json_t *steps = json_object_get(flow, "steps");
        if (!json_is_object(flow) || !json_is_array(steps)) {
            snprintf(err, errlen, "flows[%zu] needs a list of steps", i);
            return -1;
        }
        if (s_collect_captures(self, steps, err, errlen) != 0)
            return -1;
    }

    /* Then the steps, against all the names. */
    self->setup.name = strdup("setup");
    if (!self->setup.name) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (setup && s_compile_steps(self, setup, "setup", &self->setup, err, errlen) != 0)
        return -1;
    json_array_foreach(flows, i, flow)
    {
        scenario_flow_t *f = &self->flows[self->nflows++];
        const char *flow_name = json_string_value(json_object_get(flow, "name"));
        json_t *weight = json_object_get(flow, "weight");
        f->weight = weight ? (json_is_number(weight) ? json_number_value(weight) : -1) : 1;
        if (!flow_name || !s_valid_name(flow_name) || !(f->weight >= 0 && f->weight <= 1e6)) {
            snprintf(err, errlen, "flows[%zu] needs a name and a weight of 0 to 1000000", i);
            return -1;
        }
        f->name = strdup(flow_name);
        if (!f->name) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        char where[96];
        snprintf(where, sizeof where, "flow %s", flow_name);
        if (s_compile_steps(self, json_object_get(flow, "steps"), where, f, err, errlen) != 0)
            return -1;
        if (f->count == 0) {
            snprintf(err, errlen, "flow %s has no steps", flow_name);
            return -1;
        }
        self->total_weight += f->weight;
    }
    if (!(self->total_weight > 0)) {
        snprintf(err, errlen, "every flow has weight 0");
        return -1;
    }
    return 0;
}

scenario_t *scenario_parse(const char *json, const char *data_dir,
                           const scenario_file_override_t *overrides, size_t noverrides, char *err,
                           size_t errlen)
{
    if (errlen)
        *err = '\0';
    json_error_t jerr;
    json_t *doc = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        snprintf(err, errlen, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    scenario_t *self = calloc(1, sizeof *self);
    if (!self || s_build(self, doc, data_dir, overrides, noverrides, err, errlen) != 0) {
        if (!self || !*err)
            snprintf(err, errlen, "out of memory");
        scenario_destroy(&self);
    }
    json_decref(doc);
    return self;
}

scenario_t *scenario_load(const char *path, const char *data_dir,
                          const scenario_file_override_t *overrides, size_t noverrides, char *err,
                          size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        snprintf(err, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    char why[512] = "";
    scenario_t *self = scenario_parse(text, data_dir, overrides, noverrides, why, sizeof why);
    free(text);
    if (!self)
        snprintf(err, errlen, "%s: %s", path, why);
    return self;
}

scenario_t *scenario_single(const char *service, const char *op, size_t pad, char *err,
                            size_t errlen)
{
    char *padding = malloc(pad + 1);
    if (!padding) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memset(padding, 'x', pad);
    padding[pad] = '\0';
    json_t *doc =
        json_pack("{s:s, s:[{s:s, s:[{s:s, s:s, s:{s:s}}]}]}", "name", "single", "flows", "name",
                  "single", "steps", "service", service, "op", op, "args", "pad", padding);
    free(padding);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    scenario_t *self = scenario_parse(text, NULL, NULL, 0, err, errlen);
    free(text);
    return self;
}

void scenario_destroy(scenario_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    scenario_t *self = *self_p;
    for (size_t i = 0; self->steps && i < self->nsteps; i++) {
        scenario_step_t *s = &self->steps[i];
        free(s->name);
        free(s->service);
        free(s->op);
        template_destroy(&s->args);
        template_destroy(&s->token);
        for (size_t c = 0; c < s->ncaptures; c++)
            template_path_destroy(&s->captures[c].path);
        free(s->captures);
        for (size_t l = 0; l < s->nlets; l++)
            template_destroy(&s->lets[l].value);
        free(s->lets);
    }
    free(self->steps);
    for (size_t i = 0; i < self->nflows; i++)
        free(self->flows[i].name);
    free(self->flows);
    free(self->setup.name);
    for (size_t i = 0; i < self->nvars; i++) {
        free(self->var_names[i]);
        msgpack_sbuffer_destroy(&self->constants_packed[i]);
    }
    for (size_t i = 0; i < self->njson; i++)
        free(self->json_names[i]);
    for (size_t i = 0; i < self->nfiles; i++) {
        free(self->file_names[i]);
        free(self->files[i].lines);
        free(self->file_text[i]);
    }
    free(self->name);
    free(self);
    *self_p = NULL;
}

const char *scenario_name(const scenario_t *self)
{
    return self->name;
}

const scenario_flow_t *scenario_setup(const scenario_t *self)
{
    return &self->setup;
}

size_t scenario_flow_count(const scenario_t *self)
{
    return self->nflows;
}

const scenario_flow_t *scenario_flow(const scenario_t *self, size_t index)
{
    return index < self->nflows ? &self->flows[index] : NULL;
}

size_t scenario_pick_flow(const scenario_t *self, uint64_t *rng)
{
    double r = (double)(template_random(rng) >> 11) / 9007199254740992.0 * self->total_weight;
    for (size_t i = 0; i < self->nflows; i++) {
        if (r < self->flows[i].weight)
            return i;
        r -= self->flows[i].weight;
    }
    /* Rounding left r at the very top: the last flow that can run. */
    for (size_t i = self->nflows; i > 0; i--)
        if (self->flows[i - 1].weight > 0)
            return i - 1;
    return 0;
}

size_t scenario_step_count(const scenario_t *self)
{
    return self->nsteps;
}

const scenario_step_t *scenario_step(const scenario_t *self, size_t index)
{
    return index < self->nsteps ? &self->steps[index] : NULL;
}

size_t scenario_var_count(const scenario_t *self)
{
    return self->nvars;
}

const char *scenario_var_name(const scenario_t *self, size_t index)
{
    return index < self->nvars ? self->var_names[index] : NULL;
}

const template_value_t *scenario_constants(const scenario_t *self)
{
    return self->constants;
}

const template_file_t *scenario_files(const scenario_t *self)
{
    return self->files;
}
