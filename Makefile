# Hearth: a FHIR R4 server with patient-access SMART on FHIR.
# The two commands a newcomer needs: `make run` and `make test`.

GO      ?= go
BIN     := bin/hearth
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build run test lint generate bench bench-go bench-http clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/hearth

# Serves Hearth on http://127.0.0.1:8080/fhir with the embedded store in
# ./hearth-data; a fresh data directory gets the demo patients.
run: build
	./$(BIN) serve --listen 127.0.0.1:8080 --data ./hearth-data

# Everything CI runs.
test: lint
	$(GO) test -count=1 ./...

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

generate:
	$(GO) generate ./...

# Benchmarks: Go micro-benchmarks, then wrk against a running server
# (needs wrk: apt-get install wrk).
bench: bench-go bench-http

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./fhir ./store/sqlite

bench-http: build
	$(GO) build -o bin/hearthbench ./cmd/hearthbench
	./bin/hearthbench --hearth $(BIN)

clean:
	rm -rf bin
