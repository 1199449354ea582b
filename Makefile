GO ?= go
BIN := immune
PKGS := ./...

.PHONY: build run test lint fuzz bench bench-micro bench-ingest clean

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
## fuzz: each fuzz target for FUZZTIME
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

bench: bench-micro bench-ingest

## bench-micro: go test benchmarks (benchstat-ready)
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./tsdb/... ./ingest/... ./query/...

SERIES ?= 10000
STEPS ?= 60
## bench-ingest: for each protocol, a fresh server on a temporary directory, remote-written to by `immune bench`
bench-ingest: build
	@for p in v1 v2; do \
	  dir=$$(mktemp -d); ./$(BIN) serve --data-dir $$dir --http-listen 127.0.0.1:19480 --log-level warn & pid=$$!; \
	  ./$(BIN) bench --url http://127.0.0.1:19480/api/v1/write --protocol $$p --series $(SERIES) --steps $(STEPS) --server-pid $$pid; \
	  kill $$pid; wait $$pid; rm -rf $$dir; \
	done

clean:
	rm -f $(BIN)
