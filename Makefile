# regcred — one set-up, two commands: `make test` and `make demo`.
SHELL := /bin/bash
include hack/versions.env

CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/regcred
export REGCRED_CACHE := $(CACHE)
export REGCRED_ENVTEST_DIR := $(CACHE)/envtest/k8s-$(K8S_VERSION)-etcd-$(ETCD_VERSION)
VENV := $(CURDIR)/.venv
export REGCRED_MOTO_SERVER := $(VENV)/bin/moto_server
export REGCRED_HELM := $(CACHE)/helm/$(HELM_VERSION)/helm
CARGO ?= cargo

.PHONY: test demo envtest containerd helm tools crds lint build image fuzz soak bench

## test: install what is missing, then run every check and test (every test
## binary of `cargo test --workspace --all-targets`, two at a time: hack/run-tests.py)
test: tools lint
	CARGO=$(CARGO) python3 hack/run-tests.py

## demo: regcred working locally in under two minutes, no cloud account; leaves nothing running
demo: tools
	@hack/demo.sh

## soak: the fault suite at full size (tests/faults.rs: 50 kill -9 over 1,000 namespaces under a concurrent writer, API-server outages, etcd compaction, APF throttling, provider faults); `make test` runs it small
soak: tools
	@hack/soak.sh

## envtest: build etcd, kube-apiserver, kubelet, kube-controller-manager and kube-scheduler from Go modules into the cache (once per version)
envtest:
	@hack/build-envtest.sh >/dev/null

## containerd: build containerd 2.x (CONTAINERD_VERSION) from its Go module into the cache (once per version); the test node runs it beside Debian's 1.6
containerd:
	@hack/build-containerd.sh >/dev/null

## helm: build helm from its Go module into the cache (once per version)
helm:
	@hack/install-helm.sh >/dev/null

## tools: everything the tests need besides Rust crates
tools: envtest containerd helm
	@hack/install-tools.sh

## crds: regenerate crds/ (and the chart's copy, and README's spec reference) from the Rust types
crds:
	$(CARGO) run --quiet -- crd > crds/regcred.dev_registrycredentials.yaml
	cp crds/regcred.dev_registrycredentials.yaml charts/regcred/crds/
	hack/update-readme.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build:
	$(CARGO) build --release

IMAGE_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
IMAGE_TAG ?= dev
## image: the Dockerfile's image without a Docker engine, as an OCI layout in target/image/regcred with its SPDX SBOM in target/image/regcred.spdx.json (PUSH=host[:port]/repository[:tag] also pushes it; SOURCE=<repository URL> for its org.opencontainers.image.source)
image:
	$(CARGO) build --release --locked --bin regcred
	REGCRED_IMAGE_SOURCE=$(SOURCE) $(CARGO) run --quiet --locked -p regcred-testenv --bin regcred-image -- \
	  --binary $(IMAGE_DIR)/release/regcred --out $(IMAGE_DIR)/image/regcred --tag $(IMAGE_TAG) $(if $(PUSH),--push $(PUSH))

BENCH_TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
## bench: the release binary on a local control plane at 1,000 and 10,000 namespaces, each figure beside a plain client's; one table, saved as bench/results/<UTC time>.json (BENCH_SCALE=small: a quick run); not part of `make test`
bench: tools
	$(CARGO) build --release --bin regcred
	REGCRED_BENCH_OPERATOR=$(BENCH_TARGET_DIR)/release/regcred $(CARGO) run --release -p regcred-bench

FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?= dockerconfig challenge token_response image_ref ecr_token acr_jwt spec targets
# regcred's parsers are safe Rust: panics, failed assertions and overflow
# (debug assertions) are what the fuzzer looks for, so no address sanitizer,
# which would cost half the executions. FUZZ_SANITIZER=address turns it on.
FUZZ_SANITIZER ?= none
FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
FUZZ_FLAGS = --fuzz-dir fuzz --target-dir fuzz/target --sanitizer $(FUZZ_SANITIZER) --debug-assertions

## fuzz: run each fuzz target (fuzz/) for FUZZ_SECONDS, from the seeds in fuzz/corpus/; not part of `make test`
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	$(FUZZ) build $(FUZZ_FLAGS)
	@mkdir -p fuzz/target/logs
	@# New inputs go to fuzz/target/corpus (ignored); fuzz/corpus keeps only the committed seeds.
	@failed=; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/target/corpus/$$t; \
	  if $(FUZZ) run $(FUZZ_FLAGS) $$t fuzz/target/corpus/$$t fuzz/corpus/$$t -- \
	      -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 -print_final_stats=1 \
	      >fuzz/target/logs/$$t.log 2>&1; then \
	    echo "fuzz: $$t: $$(grep -h '^Done' fuzz/target/logs/$$t.log)"; \
	  else \
	    tail -n 30 fuzz/target/logs/$$t.log; \
	    echo "fuzz: $$t FAILED: input under fuzz/artifacts/$$t/, log fuzz/target/logs/$$t.log"; failed="$$failed $$t"; \
	  fi; \
	done; test -z "$$failed" || { echo "fuzz: failed:$$failed"; exit 1; }
