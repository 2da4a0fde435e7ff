# minipush. `make run` starts the system locally, `make test` runs every test; both work
# on a fresh machine (infra/install.sh installs the local stand-ins they need).

GO        ?= go
FUNCTIONS := collect admin plan send expire deadletter webhook
BUILD     := .build
LAMBDA_ENV := CGO_ENABLED=0 GOOS=linux GOARCH=arm64
LAMBDA_FLAGS := -tags lambda.norpc -trimpath -ldflags='-s -w'
# Seconds each fuzz target runs inside make test (bounded so the suite stays short).
FUZZTIME  ?= 10s

.PHONY: all build build-lambda build-host test fuzz bench coldstart chaos vet fmt deps run demo events stack clean \
	build-CollectFunction build-AdminFunction build-PlanFunction build-SendFunction build-ExpireFunction \
	build-DeadLetterFunction build-WebhookFunction

all: build

## build: every function's arm64 Lambda bootstrap and host binaries for local use
build: build-lambda build-host

build-lambda:
	@for f in $(FUNCTIONS); do \
	  echo "build $(BUILD)/lambda/$$f/bootstrap (linux/arm64)"; \
	  $(LAMBDA_ENV) $(GO) build $(LAMBDA_FLAGS) -o $(BUILD)/lambda/$$f/bootstrap ./functions/$$f || exit 1; \
	done

build-host:
	$(GO) build -o $(BUILD)/host/ ./functions/... ./cmd/...

# Targets sam build calls (BuildMethod: makefile) with ARTIFACTS_DIR set: one per
# function logical id, each writing $(ARTIFACTS_DIR)/bootstrap.
define sam_target
build-$(1):
	$(LAMBDA_ENV) $(GO) build $(LAMBDA_FLAGS) -o $$(ARTIFACTS_DIR)/bootstrap ./functions/$(2)
endef
$(eval $(call sam_target,CollectFunction,collect))
$(eval $(call sam_target,AdminFunction,admin))
$(eval $(call sam_target,PlanFunction,plan))
$(eval $(call sam_target,SendFunction,send))
$(eval $(call sam_target,ExpireFunction,expire))
$(eval $(call sam_target,DeadLetterFunction,deadletter))
$(eval $(call sam_target,WebhookFunction,webhook))

## deps: install the local stack (Java if missing, npm packages, DynamoDB Local) and the
## mini-program client's pinned dev tools (typescript, miniprogram-api-typings; npm ci
## only when its lock changed)
deps:
	bash infra/install.sh
	@cd examples/miniprogram && { cmp -s package-lock.json node_modules/.minipush-installed-lock || \
	  { npm ci --no-audit --no-fund --loglevel=error >&2 && cp package-lock.json node_modules/.minipush-installed-lock; }; }

## test: every test, against one local stack shared by all test binaries
test: deps vet
	$(GO) run ./cmd/localstack exec -- $(GO) test -race -count=1 -timeout 15m ./...
	@$(MAKE) --no-print-directory fuzz

## fuzz: each fuzz target for FUZZTIME (a short bounded run in make test)
fuzz:
	@$(GO) run ./cmd/localstack exec -- bash -c 'set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f "{{.Dir}}" $$pkg); \
	  for t in $$(grep -ho "^func Fuzz[A-Za-z0-9_]*" $$dir/*_test.go 2>/dev/null | cut -c6-); do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test -run "^$$" -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done'

## bench: measure collect, plan, send (next to its floor) and the cost per million
## messages on the local stack, and write BENCHMARKS.md (no -race: it measures speed)
bench: deps
	MINIPUSH_BENCH_OUT="$(CURDIR)/BENCHMARKS.md" MINIPUSH_BENCH_CMD="make bench" \
	  $(GO) run ./cmd/localstack exec -- $(GO) test -count=1 -timeout 60m -run '^TestBench' -v ./internal/dev/bench

## coldstart: every function's init under the runtime interface emulator (its real
## bootstrap, 7 cold starts each, one at a time), written into the Cold start section of
## BENCHMARKS.md (make bench keeps that section)
coldstart: deps
	MINIPUSH_COLDSTART_OUT="$(CURDIR)/BENCHMARKS.md" \
	  $(GO) run ./cmd/localstack exec -- $(GO) test -count=1 -run '^TestColdStart$$' -v ./internal/dev/e2e

## chaos: the whole system through the local runner under injected WeChat errors,
## latency, lost answers, token invalidation, runner kills, duplicated SQS messages and
## overlapping planners, over 20,000 recipients; then the forecast of a 25,000-recipient
## campaign against the run that follows it; writes CHAOS.md (make test runs short forms)
chaos: deps
	MINIPUSH_CHAOS_USERS=20000 MINIPUSH_CHAOS_REPORT="$(CURDIR)/CHAOS.md" \
	  $(GO) run ./cmd/localstack exec -- $(GO) test -count=1 -timeout 30m -run '^TestChaos$$' -v ./internal/dev/chaos
	MINIPUSH_FORECAST_USERS=25000 MINIPUSH_FORECAST_REPORT="$(CURDIR)/CHAOS.md" \
	  $(GO) run ./cmd/localstack exec -- $(GO) test -count=1 -timeout 20m -run '^TestForecastMatchesRun$$' -v ./internal/admin

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## run: the whole system locally: local stack, WeChat sandbox, the five functions behind
## the emulated HTTP API, schedule, SQS and stream mappings (data kept in .local/;
## RESET=1 starts afresh; the functions' JSON logs go to .local/logs/functions.jsonl,
## LOGS=1 shows them instead)
run: deps
	$(GO) run ./cmd/minipush-local -data .local $(if $(RESET),-reset) $(if $(LOGS),-logs,-log-file .local/logs/functions.jsonl)

## demo: seed DEMO_USERS sandbox users with grants through the public API, send them a
## campaign through the operator API, show progress, print the summary (fresh data; logs
## in .local/logs/demo.jsonl, LOGS=1 shows them instead)
DEMO_USERS ?= 2000
demo: deps
	$(GO) run ./cmd/minipush-local -data "" -addr 127.0.0.1:0 -demo $(DEMO_USERS) $(if $(LOGS),-logs,-log-file .local/logs/demo.jsonl)

## events: regenerate events/*.json (samples for sam local invoke -e) from real requests
events: deps
	MINIPUSH_UPDATE_EVENTS=1 $(GO) run ./cmd/localstack exec -- $(GO) test -count=1 -run TestFunctionsUnderRIE ./internal/dev/e2e

## stack: the local stack alone, in memory
stack: deps
	$(GO) run ./cmd/localstack serve

clean:
	rm -rf $(BUILD) .aws-sam
