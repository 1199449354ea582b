GO ?= go
BIN := immune
PKGS := ./...

.PHONY: build run test lint fuzz bench bench-micro bench-compare bench-gate soak clean

build:
	$(GO) build -o $(BIN) ./cmd/immune

## run: the server on its embedded defaults (data in ./data, HTTP on 127.0.0.1:9480)
run: build
	./$(BIN) serve

## test: every test, including the end-to-end ones against a real Prometheus
test: lint
	$(GO) test -count=1 -timeout 30m $(PKGS)

## lint: formatting and vet (stdmethods is off: Prometheus' iterator interface has a Seek(int64) of its own)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -stdmethods=false $(PKGS)

FUZZTIME ?= 30s
FUZZFLAGS ?=
## fuzz: each fuzz target for FUZZTIME (FUZZFLAGS=-parallel=1 keeps it to one core)
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg; \
	  done; done

BENCH_SCALE ?= quick
ifeq ($(BENCH_SCALE),full)
COMPARE_FLAGS ?= --series 100000 --duration 24h --interval 1m --rounds 2 --query-runs 20
else
COMPARE_FLAGS ?= --series 10000 --duration 24h --interval 1m --rounds 2 --query-runs 10
endif

## bench: the micro-benchmarks, then Immune, VictoriaMetrics and Prometheus side by side
## (BENCH_SCALE=quick, the default: 10k series; BENCH_SCALE=full: 100k series), then the gate's latency
bench: bench-micro bench-compare bench-gate

## bench-micro: go test benchmarks (benchstat-ready)
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./tsdb/... ./ingest/... ./query/...

## bench-compare: one remote-write load and query set on each system, started fresh, in rounds A B C A B C
bench-compare: build
	./$(BIN) bench compare $(COMPARE_FLAGS)

## bench-gate: verdict latency and poll latency under 100 pollers
bench-gate: build
	./$(BIN) bench gate

SOAK_DURATION ?= 30m
## soak: remote write, queries and verdict reads together on a fresh server for SOAK_DURATION
## (not in test or CI); fails on a refused or lost write, an RSS slope or a p99 growth over its limits
soak: build
	./$(BIN) bench soak --duration $(SOAK_DURATION) $(SOAK_FLAGS)

clean:
	rm -f $(BIN)
