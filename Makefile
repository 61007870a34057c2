# retail: an online shop backend in C on CZMQ actors.
#
#   make run     install missing packages, build, start the whole system (on a
#                new data directory: a demo catalog and an admin first, tools/run.sh)
#   make test    install missing packages, build, run every test
#   make check   the tests again under AddressSanitizer + UBSan
#   make bench   the broker benchmark of docs/BENCHMARKS.md
#   make bench-bridge  the HTTP bridge against nginx (docs/BENCHMARKS.md)
#   make bench-users   /v1/users/me against a ping, and logins per second
#   make bench-catalog product reads at 10k and 1M products, search, size
#   make bench-catalog-writes  durable stock writes over HTTP by worker count
#   make bench-bodies  the worst 1 MiB request bodies, in process and over HTTP
#   make bench-asks    a service asking another (replies that wait), by B's delay
#   make bench-payments  charges per second, the gateway at once and at 20 ms
#   make bench-checkout  checkouts per second over HTTP, with and without group commit,
#                the outbox, a subscriber on the event stream
#   make bench-harness  the load harness's ceiling (vs echo) and the shop scenario's figures
#   make bench-events  the event stream's ceiling: outbox, relay, proxy, CURVE subscriber
#   make lint    the served OpenAPI document through two OpenAPI checkers
#
# The reliability suite (docs/RELIABILITY.md), one command per part:
#   make fuzz FUZZ_SECONDS=N   every fuzzer (libFuzzer, ASan + UBSan) for N s each
#   make crash-test            SIGKILL under mixed load, restart, check (CRASH_CYCLES=20)
#   make full-disk             a small filesystem filled under load, then freed
#   make lost-db               PostgreSQL stopped and restarted under login load
#   make strangers             unknown CURVE keys, malformed MDP, stalled HTTP clients
#   make soak SOAK_MINUTES=N   mixed load for N minutes, sampled every 10 s
#   make clean   remove build/
#
# Output goes to $(BUILD) (build/ by default, build/san for `make check`).
# Variables are lazy (=) so pkg-config is asked only after install-deps ran.

BUILD ?= build
PKGS = libczmq libzmq msgpack jansson libsodium libmicrohttpd libcrypto libjwt lmdb libpq
TEST_PKGS = cmocka libcurl

OPT ?= -O2
CFLAGS = $(OPT) -g -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -I. \
         $(shell pkg-config --cflags $(PKGS)) $(SANFLAGS)
LDLIBS = $(shell pkg-config --libs $(PKGS)) -lpthread -lm
ifeq ($(SAN),1)
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT = -O1
endif

LIB_SRC = $(wildcard protocol/*.c) $(filter-out router/retaild.c,$(wildcard router/*.c)) \
          $(wildcard actors/*.c) $(wildcard actors/*/*.c) $(wildcard storage/*.c) \
          $(wildcard storage/*/*.c)
# Every OpenAPI document of the tree, compiled in (router/openapi.h).
OPENAPI_JSON = router/openapi.json $(wildcard actors/*/openapi.json)
OPENAPI_OBJ = $(OPENAPI_JSON:%.json=$(BUILD)/obj/gen/%.o)
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(OPENAPI_OBJ)
LIB     = $(BUILD)/libretail.a

BINS = $(BUILD)/retaild $(BUILD)/retailctl $(BUILD)/loadgen $(BUILD)/relay $(BUILD)/auth-bench \
       $(BUILD)/retail-seed $(BUILD)/catalog-store-bench $(BUILD)/bodies-bench \
       $(BUILD)/retail-openapi $(BUILD)/asks-bench $(BUILD)/payments-bench \
       $(BUILD)/payment-log-bench $(BUILD)/events-bench \
       $(BUILD)/events-stream-bench $(BUILD)/accounts-load $(BUILD)/http-stall

TEST_SRC  = $(wildcard tests/unit/test_*.c) $(wildcard tests/integration/test_*.c)
TEST_BINS = $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_COMMON = $(BUILD)/obj/tests/testutil.o $(BUILD)/obj/tests/httpc.o $(BUILD)/obj/tests/fixture.o \
              $(BUILD)/obj/tests/events.o

.PHONY: all deps run test check bench bench-bridge bench-users bench-catalog bench-catalog-writes \
        bench-bodies bench-asks bench-payments bench-checkout bench-events bench-harness clean \
        format build-tests lint fuzz fuzz-smoke fuzz-build fuzz-bins crash-test full-disk lost-db strangers soak heap-growth
.DEFAULT_GOAL := all

all: $(BINS)

deps:
	@bash tools/install-deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@bash tools/run.sh $(BUILD)

test: deps
	@$(MAKE) --no-print-directory build-tests
	@bash tests/run.sh $(BUILD)
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory lint

check: deps
	@$(MAKE) --no-print-directory BUILD=build/san SAN=1 build-tests
	@bash tests/run.sh build/san

bench: deps
	@$(MAKE) --no-print-directory all
	@bash tools/bench/broker.sh $(BUILD)

bench-bridge: deps
	@$(MAKE) --no-print-directory $(BUILD)/retaild
	@bash tools/bench/bridge.sh $(BUILD)

bench-users: deps
	@$(MAKE) --no-print-directory $(BUILD)/retaild $(BUILD)/auth-bench
	@bash tools/bench/users.sh $(BUILD)

bench-catalog: deps
	@$(MAKE) --no-print-directory $(BUILD)/retaild $(BUILD)/retail-seed
	@bash tools/bench/catalog.sh $(BUILD)

bench-events: deps
	@$(MAKE) --no-print-directory $(BUILD)/events-stream-bench
	@for r in 1 2 3; do \
	    $(BUILD)/events-stream-bench --batch 1 --events 20000; \
	    $(BUILD)/events-stream-bench --batch 10 --events 100000; \
	    $(BUILD)/events-stream-bench --batch 100 --events 400000; \
	done

bench-harness: deps
	@$(MAKE) --no-print-directory $(BUILD)/retaild $(BUILD)/relay $(BUILD)/loadgen \
	    $(BUILD)/retail-seed
	@bash tools/bench/harness.sh $(BUILD)

bench-checkout: deps
	@$(MAKE) --no-print-directory $(BUILD)/retaild
	@bash tools/bench/checkout.sh $(BUILD)

bench-catalog-writes: deps
	@$(MAKE) --no-print-directory $(BUILD)/retaild $(BUILD)/retail-seed
	@bash tools/bench/catalog_writes.sh $(BUILD)

bench-asks: deps
	@$(MAKE) --no-print-directory $(BUILD)/asks-bench
	$(BUILD)/asks-bench

bench-payments: deps
	@$(MAKE) --no-print-directory $(BUILD)/payments-bench
	$(BUILD)/payments-bench

bench-bodies: deps
	@$(MAKE) --no-print-directory $(BUILD)/retaild $(BUILD)/bodies-bench
	$(BUILD)/bodies-bench
	@bash tools/bench/bodies.sh $(BUILD)

build-tests: $(BINS) $(TEST_BINS)

# The document the bridge serves (retail-openapi prints the same
# assembly), linted by @redocly/cli (its recommended rules: any error
# fails) and validated by @apidevtools/swagger-parser. Both are pinned in
# tools/lint/package-lock.json and installed by `npm ci` into
# tools/lint/node_modules the first time, or again when the lock changes.
LINT_DIR = tools/lint
$(LINT_DIR)/node_modules/.installed: $(LINT_DIR)/package.json $(LINT_DIR)/package-lock.json
	@command -v npm >/dev/null || bash tools/install-deps.sh
	cd $(LINT_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(BUILD)/retail-openapi $(LINT_DIR)/node_modules/.installed
	@mkdir -p $(BUILD)/gen
	$(BUILD)/retail-openapi > $(BUILD)/gen/openapi.json
	cd $(LINT_DIR) && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
	    node_modules/.bin/redocly lint --format=stylish $(abspath $(BUILD))/gen/openapi.json
	node $(LINT_DIR)/validate.js $(BUILD)/gen/openapi.json

# Fuzzers (tests/fuzz/, libFuzzer): the library is built again with clang,
# ASan and UBSan into $(FUZZ_BUILD) (a build of its own, like build/san),
# and each tests/fuzz/fuzz_NAME.c is linked with libFuzzer's main into
# $(FUZZ_BUILD)/fuzz_NAME. tools/fuzz.sh runs them: each first replays its
# committed corpus and regressions (tests/fuzz/corpus/NAME/), then fuzzes
# for FUZZ_SECONDS, and prints executions and crashes per target.
FUZZ_BUILD = $(BUILD)/fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_TARGETS = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

fuzz: deps fuzz-build
	@bash tools/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# What `make test` runs: every fuzzer for a few seconds.
fuzz-smoke: fuzz-build
	@bash tools/fuzz.sh $(FUZZ_BUILD) 3 $(FUZZ_TARGETS)

fuzz-build:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang OPT=-O1 \
	    SANFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" fuzz-bins

fuzz-bins: $(addprefix $(BUILD)/fuzz_,$(FUZZ_TARGETS))

$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(LIB)
	@$(if $(V),,echo "  FUZZ    $@")
	$(Q)$(CC) $(OPT) -g -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -I. \
	    $(shell pkg-config --cflags $(PKGS)) -fsanitize=fuzzer $(FUZZ_SAN) $< $(LIB) -o $@ $(LDLIBS)

# The reliability suite: each part is a script of tools/reliability/ that
# starts what it needs on free ports and prints its figures; `make test`
# runs a short smoke of each (tests/smoke/).
CRASH_CYCLES ?= 20
SOAK_MINUTES ?= 10

crash-test: deps
	@$(MAKE) --no-print-directory all
	@bash tools/reliability/crash_loop.sh $(BUILD) $(CRASH_CYCLES)

full-disk: deps
	@$(MAKE) --no-print-directory all
	@bash tools/reliability/full_disk.sh $(BUILD)

lost-db: deps
	@$(MAKE) --no-print-directory all
	@bash tools/reliability/lost_db.sh $(BUILD)

strangers: deps
	@$(MAKE) --no-print-directory all $(BUILD)/tests/integration/test_strangers
	@bash tools/reliability/strangers.sh $(BUILD)

soak: deps
	@$(MAKE) --no-print-directory all
	@bash tools/reliability/soak.sh $(BUILD) $(SOAK_MINUTES)

heap-growth: deps
	@$(MAKE) --no-print-directory all
	@bash tools/reliability/heap_growth.sh $(BUILD)

# V=1 shows the full commands.
Q = $(if $(V),,@)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# Each OpenAPI document is compiled in as a NUL-terminated byte array
# named after its path: actors/users/openapi.json -> actors_users_openapi_json
# (router/openapi.h).
$(BUILD)/gen/%.c: %.json
	@mkdir -p $(dir $@)
	@{ echo 'const char $(subst /,_,$*)_json[] = {'; \
	   od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	   echo '0};'; } > $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ) Makefile
	@rm -f $@
	$(Q)$(AR) rcs $@ $(LIB_OBJ)

$(BUILD)/retaild: $(BUILD)/obj/router/retaild.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/retailctl: $(BUILD)/obj/tools/retailctl.o $(BUILD)/obj/tools/retailctl_payments.o \
                   $(BUILD)/obj/tools/retailctl_check.o $(BUILD)/obj/tools/retailctl_watch.o \
                   $(BUILD)/obj/tools/retailctl_record.o $(BUILD)/obj/tools/retailctl_ask.o \
                   $(BUILD)/obj/tools/retailctl_record_effects.o \
                   $(BUILD)/obj/tools/retailctl_stock.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# The load harness's parts, shared by loadgen and its tests.
HARNESS_OBJ = $(addprefix $(BUILD)/obj/tools/harness/,histogram.o template.o scenario.o \
                runner.o record.o)

$(BUILD)/loadgen: $(BUILD)/obj/tools/loadgen.o $(HARNESS_OBJ) $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/retail-seed: $(BUILD)/obj/tools/seed.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/auth-bench: $(BUILD)/obj/tools/bench/auth.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/relay: $(BUILD)/obj/tools/bench/relay.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/catalog-store-bench: $(BUILD)/obj/tools/bench/catalog_store.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/payments-bench: $(BUILD)/obj/tools/bench/payments.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/payment-log-bench: $(BUILD)/obj/tools/bench/payment_log.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/events-bench: $(BUILD)/obj/tools/bench/events_sub.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/events-stream-bench: $(BUILD)/obj/tools/bench/events.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/asks-bench: $(BUILD)/obj/tools/bench/asks.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/bodies-bench: $(BUILD)/obj/tools/bench/bodies.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# The reliability suite's own clients (tools/reliability/).
$(BUILD)/accounts-load: $(BUILD)/obj/tools/reliability/accounts_load.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/http-stall: $(BUILD)/obj/tools/reliability/http_stall.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/retail-openapi: $(BUILD)/obj/tools/openapi.o $(LIB)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# Test objects are kept (not treated as intermediate) so relinks are cheap.
.SECONDARY:

# the load harness's parts that unit tests check (issue 14)
$(BUILD)/tests/unit/test_histogram: $(BUILD)/obj/tools/harness/histogram.o
$(BUILD)/tests/unit/test_scenario: $(HARNESS_OBJ)
$(BUILD)/tests/unit/test_runner: $(HARNESS_OBJ)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_COMMON) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $(filter-out $(LIB),$^) $(LIB) -o $@ $(LDLIBS) $(shell pkg-config --libs $(TEST_PKGS))

format:
	clang-format -i $(shell git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
