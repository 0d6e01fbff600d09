# happen: run `make run` to start the engine on an embedded NATS server,
# `make test` to run every test.

GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
PLUGINS := $(filter-out internal,$(notdir $(wildcard plugins/*)))

.PHONY: build run demo test vet browser bench bench-scale property fuzz proto proto-tools example clean

## build: the happen binary and every built-in plugin, in bin/
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/happen ./cmd/happen
	@for p in $(PLUGINS); do \
		echo "$(GO) build -o $(BIN)/happen-plugin-$$p ./plugins/$$p"; \
		$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/happen-plugin-$$p ./plugins/$$p || exit 1; \
	done

## run: the engine on the embedded NATS server (extra flags: make run ARGS="--interval 2s")
run: build
	./$(BIN)/happen engine $(ARGS)

## demo: build, then show every pattern detected live on an embedded server (about 70s)
demo: build
	./$(BIN)/happen demo $(ARGS)

## test: vet, then every test with the race detector (installs Debian's chromium
## for the web view's browser test where it is missing; see scripts/ensure-chromium.sh).
## The scenario tests mostly wait on real time, so four run at once even on two cores.
test: vet browser
	$(GO) test -race -count=1 -parallel 4 -timeout 20m ./...

## browser: the headless browser the web view's test drives (never fails; the test skips without it)
browser:
	@./scripts/ensure-chromium.sh

vet:
	$(GO) vet ./...

## bench: the benchmarks quoted in docs/performance.md
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./engine/flow/ ./rules/ ./engine/sampler/ ./engine/plugins/ ./engine/summary/

## bench-scale: the engine's cost watching 1,000 and 10,000 consumers (a few minutes;
## ARGS="-o markdown" for docs/performance.md, ARGS="--consumers 30000 --engines 3" for
## engines sharing the streams, ARGS="--help" for the flags)
bench-scale:
	$(GO) run ./cmd/bench-scale $(ARGS)

## property: the randomized detection property tests on fresh seeds (SEEDS=300 by default)
property:
	HAPPEN_PROPERTY_BASE=random HAPPEN_PROPERTY_SEEDS=$(or $(SEEDS),300) $(GO) test -count=1 -run Property ./rulesets/

## fuzz: the ruleset loader, rule-test series, consumer-listing and JSZ decoder fuzz tests (FUZZTIME=60s each by default)
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(or $(FUZZTIME),60s) ./rules/
	$(GO) test -run '^$$' -fuzz FuzzSeries -fuzztime $(or $(FUZZTIME),60s) ./rules/ruletest/
	$(GO) test -run '^$$' -fuzz FuzzDecodeConsumerPage -fuzztime $(or $(FUZZTIME),60s) ./engine/sampler/
	$(GO) test -run '^$$' -fuzz FuzzDecodeJSZ -fuzztime $(or $(FUZZTIME),60s) ./engine/sampler/

## proto: regenerate the plugin protocol's Go code from sdk/internal/pb/plugin.proto
## (the generated files are committed; builds and tests never need protoc)
proto:
	protoc --proto_path=sdk/internal/pb \
		--go_out=sdk/internal/pb --go_opt=paths=source_relative \
		--go-grpc_out=sdk/internal/pb --go-grpc_opt=paths=source_relative \
		sdk/internal/pb/plugin.proto

## proto-tools: the code generators `make proto` needs (protoc itself: apt-get install protobuf-compiler)
proto-tools:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

## example: the example plugin of docs/plugins.md, in bin/ (not part of `make build`)
example:
	$(GO) build -o $(BIN)/happen-plugin-incidents ./sdk/example/happen-plugin-incidents

clean:
	rm -rf $(BIN)
