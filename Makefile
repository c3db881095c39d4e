# Hearth: a FHIR R4 server with patient-access SMART on FHIR.
# The two commands a newcomer needs: `make run` and `make test`.

# Hearth builds with Go 1.27.3 (its standard library fixes vulnerabilities
# of 1.26); the go command fetches that toolchain from the module proxy.
export GOTOOLCHAIN := go1.27.3

GO      ?= go
BIN     := bin/hearth
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build run test test-mongo lint vuln generate fuzz bench bench-go bench-http bench-search bench-mongo bench-data clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/hearth

# Serves Hearth on http://127.0.0.1:8080/fhir with the embedded store in
# ./hearth-data; a fresh data directory gets the demo patients.
run: build
	./$(BIN) serve --listen 127.0.0.1:8080 --data ./hearth-data

# Everything CI runs. The MongoDB tests run against FerretDB 1.24, which
# the tests start from bin/ferretdb (built once from the module proxy).
test: lint vuln bin/ferretdb bin/oidc-op
	HEARTH_REQUIRE_MONGO=1 HEARTH_REQUIRE_OP=1 $(GO) test -count=1 ./...
	@$(GO) test -count=1 -run 'TestHL7' -v ./fhir/fhirpath | grep -E 'suite: '

# The MongoDB backend's tests alone (store suite, search table, OAuth state
# shared by two servers).
test-mongo: bin/ferretdb
	HEARTH_REQUIRE_MONGO=1 $(GO) test -count=1 ./store/mongo/... ./cmd/hearth -run 'Conformance|Mongo'

# FerretDB, in its own module so that its dependencies stay out of ours.
bin/ferretdb: store/mongo/ferretdb/main.go store/mongo/ferretdb/go.mod store/mongo/ferretdb/go.sum
	cd store/mongo/ferretdb && $(GO) build -o ../../../bin/ferretdb .

# A real OpenID Provider for the federated sign-in tests (zitadel/oidc's
# example provider), in its own module too.
bin/oidc-op: smart/oidctest/op/main.go smart/oidctest/op/go.mod smart/oidctest/op/go.sum
	cd smart/oidctest/op && $(GO) build -o ../../../bin/oidc-op .

GOIMPORTS := golang.org/x/tools/cmd/goimports@v0.52.0
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@unimported=$$($(GO) run $(GOIMPORTS) -l -local github.com/hearth-fhir/hearth $$(git ls-files '*.go' 2>/dev/null | grep -v _gen.go || find . -name '*.go')); \
	if [ -n "$$unimported" ]; then echo "goimports needed:"; echo "$$unimported"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) vet ./...

# govulncheck against a pinned Go vulnerability database (the
# golang.org/x/vulndb module from the module proxy, indexed by
# cmd/vulndbindex): offline, reproducible, and failing on any vulnerability
# Hearth's code reaches.
GOVULNCHECK := golang.org/x/vuln/cmd/govulncheck@v1.9.0
VULNDB      := golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018
vuln:
	@dir=$$($(GO) mod download -json $(VULNDB) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); \
	$(GO) run ./cmd/vulndbindex -osv "$$dir/data/osv" -out bin/vulndb
	$(GO) run $(GOVULNCHECK) -db file://$(CURDIR)/bin/vulndb ./...

generate:
	$(GO) generate ./...

# Each fuzz target for FUZZTIME; what a run finds to fail lands in the
# package's testdata/fuzz and then runs in every `make test`.
FUZZTIME ?= 30s
FUZZ_TARGETS := ./fhir:FuzzValidate ./fhir:FuzzParseSearch ./fhir:FuzzReferences ./smart/scopes:FuzzParseScope ./interact:FuzzBundleEntries ./interact:FuzzPatch ./fhir/fhirpath:FuzzFHIRPath
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; echo "== $$fn ($$pkg)"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# Benchmarks: Go micro-benchmarks, then wrk against a running server
# (needs wrk: apt-get install wrk).
bench: bench-go bench-http bench-search

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./fhir ./store/sqlite

bench-http: build
	$(GO) build -o bin/hearthbench ./cmd/hearthbench
	./bin/hearthbench --hearth $(BIN)

# The read/create benchmark on the MongoDB backend, on a FerretDB it starts
# (figures measure FerretDB's SQLite engine as much as Hearth).
bench-mongo: build bin/ferretdb
	$(GO) build -o bin/hearthbench ./cmd/hearthbench
	./bin/hearthbench --hearth $(BIN) --ferretdb bin/ferretdb

# Searches, $$everything, a full $$export (resources/s and peak RSS) and transaction ingest on 1,000 generated patients
# (about 1.26M resources; generating and loading them takes minutes, once).
BENCH_PATIENTS ?= 1000
bench-data: build
	@if [ ! -f bench-data/db/hearth.db ]; then \
	  ./$(BIN) generate --patients $(BENCH_PATIENTS) --out bench-data/ndjson && \
	  ./$(BIN) import --data bench-data/db $$(for t in Organization Practitioner Patient Encounter Condition MedicationRequest Observation; do echo bench-data/ndjson/$$t.ndjson.gz; done); \
	fi

bench-search: build bench-data
	$(GO) build -o bin/hearthbench ./cmd/hearthbench
	./bin/hearthbench search --hearth $(BIN) --data bench-data/db --patients $(BENCH_PATIENTS)

clean:
	rm -rf bin
