# happen: run `make run` to start the engine on an embedded NATS server,
# `make test` to run every test.

GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
PLUGINS := $(notdir $(wildcard plugins/*))

.PHONY: build run test vet bench fuzz clean

## build: the happen binary and every built-in plugin, in bin/
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/happen ./cmd/happen
	@for p in $(PLUGINS); do \
		echo "$(GO) build -o $(BIN)/happen-plugin-$$p ./plugins/$$p"; \
		$(GO) build -o $(BIN)/happen-plugin-$$p ./plugins/$$p || exit 1; \
	done

## run: the engine on the embedded NATS server (extra flags: make run ARGS="--interval 2s")
run: build
	./$(BIN)/happen engine $(ARGS)

## test: vet, then every test with the race detector
test: vet
	$(GO) test -race -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

## bench: the benchmarks quoted in docs/performance.md
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./engine/flow/ ./rules/ ./engine/sampler/

## fuzz: the ruleset loader fuzz test (FUZZTIME=60s by default)
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(or $(FUZZTIME),60s) ./rules/

clean:
	rm -rf $(BIN)
