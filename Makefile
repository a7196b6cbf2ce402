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

.PHONY: test demo envtest helm tools crds lint build

## test: install what is missing, then run every check and test
test: tools lint
	$(CARGO) test --workspace --all-targets

## demo: regcred working locally in under two minutes, no cloud account; leaves nothing running
demo: tools
	@hack/demo.sh

## envtest: build etcd, kube-apiserver and kubelet from Go modules into the cache (once per version)
envtest:
	@hack/build-envtest.sh >/dev/null

## helm: build helm from its Go module into the cache (once per version)
helm:
	@hack/install-helm.sh >/dev/null

## tools: everything the tests need besides Rust crates
tools: envtest helm
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
