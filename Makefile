# webstack.django - developer entry points. Run as root on Debian/Ubuntu (the lab
# needs network namespaces and systemd-nspawn). `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LAB := $(BIN)/python molecule/lab/lab.py
LAB_INVENTORY ?= examples/inventory/
TEST_INVENTORY := molecule/inventory/
HOST_APT_PACKAGES := python3-venv systemd-container debootstrap iproute2 iptables openssh-client e2fsprogs mount
COLLECTION_LINK := .collections/ansible_collections/webstack/django
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Fail if the lab of inventory $(1) left any host, namespace, link, cgroup or rule (status exits 3 when clean).
assert_lab_gone = @$(LAB) status -i $(1) >/dev/null && { echo "lab state of $(1) left behind"; exit 1; } || test $$? -eq 3
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Every pytest session records its results for the test report (when WEBSTACK_REPORT_DIR is set).
export PYTHONPATH := $(CURDIR)/tools/pytest_plugins
export PYTEST_PLUGINS := webstack_report

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements-dev.txt constraints-dev.txt examples/demoapp/requirements.txt examples/demoapp/requirements-test.txt | host-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints-dev.txt -r requirements-dev.txt -r examples/demoapp/requirements-test.txt
	touch $@

# sslyze needs its own virtualenv (it pins an older cryptography than the dev tools).
SSLYZE_VENV := .venv-sslyze
$(SSLYZE_VENV)/.installed: requirements-sslyze.txt | host-deps
	$(PYTHON) -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/pip install --quiet -r requirements-sslyze.txt
	touch $@

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../.. $@

.PHONY: venv
venv: $(BIN)/.installed $(COLLECTION_LINK) ## Create the virtualenv with the pinned tools

.PHONY: host-deps
host-deps: ## Install the Debian packages the venv and the lab need (root)
	@missing=""; for p in $(HOST_APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi

.PHONY: lint
lint: venv ## yamllint and ansible-lint (production profile)
	yamllint --strict .
	ansible-lint
	antsibull-changelog lint
	tools/sanity.sh

.PHONY: unit
unit: venv ## Unit tests (tests/unit) and the demo app's own tests
	pytest -q tests/unit
	cd examples/demoapp && ../../$(BIN)/python -m pytest -q

.PHONY: build
build: venv ## Build the collection tarball and install it into a scratch path
	rm -rf build && mkdir -p build
	ansible-galaxy collection build --force --output-path build .
	ANSIBLE_COLLECTIONS_PATH=build/collections ansible-galaxy collection install --force -p build/collections build/webstack-django-*.tar.gz
	test -f build/collections/ansible_collections/webstack/django/meta/runtime.yml

.PHONY: base
base: venv ## Build (or reuse) the cached Debian 12 and 13 base trees
	$(LAB) base

.PHONY: lab-test
lab-test: base ## Integration tests of the lab itself (boot, stale sweep, teardown)
	pytest -q tests/integration

.PHONY: molecule
molecule: base $(SSLYZE_VENV)/.installed ## Every molecule scenario on one shared lab (booted once, removed at the end)
	molecule destroy --all  # forget hosts an earlier run left "created": every run boots fresh ones
	molecule test --all --destroy=always
	$(call assert_lab_gone,$(TEST_INVENTORY))

.PHONY: bench-appservers
bench-appservers: base ## Requests/s on /health/ per server kind over its socket (prints JSON lines)
	mkdir -p build
	tools/bench_appservers.sh

$(BIN)/.bench-installed: requirements-bench.txt | $(BIN)/.installed
	$(BIN)/pip install --quiet -c constraints-dev.txt -r requirements-bench.txt
	touch $@

.PHONY: bench
bench: base $(BIN)/.bench-installed ## Deploy, switch and roll back under load on the bench lab; seed procedures beside (docs/benchmarks/)
	$(BIN)/python tools/bench.py
	$(call assert_lab_gone,bench/inventory/)

# Not under build/: `make build` empties that.
REPORT_DIR := .test-report

.PHONY: test
test: venv ## Everything CI runs; writes docs/test-report.md (every session's tests and results), failed or not
	rm -rf $(REPORT_DIR)
	status=0; WEBSTACK_REPORT_DIR=$(CURDIR)/$(REPORT_DIR) $(MAKE) --no-print-directory lint unit build lab-test molecule || status=$$?; \
	$(BIN)/python tools/test_report.py $(REPORT_DIR) docs/test-report.md; exit $$status

.PHONY: lab-up
lab-up: base ## Boot the hosts of LAB_INVENTORY (default: the example inventory)
	$(LAB) up -i $(LAB_INVENTORY)

.PHONY: lab-down
lab-down: venv ## Power off the hosts of LAB_INVENTORY and remove what the lab made
	$(LAB) down -i $(LAB_INVENTORY)
	$(call assert_lab_gone,$(LAB_INVENTORY))

.PHONY: lab-status
lab-status: venv ## Show what the lab has on this machine
	-$(LAB) status

.PHONY: demo
demo: lab-up ## Boot the example lab, install PostgreSQL and Redis on db1, deploy the demo app
	ansible-playbook -i $(LAB_INVENTORY) molecule/shared/database.yml
	ansible-playbook -i $(LAB_INVENTORY) examples/deploy.yml
	@$(LAB) where -i $(LAB_INVENTORY)
	@echo "  Then: ansible-playbook -i $(LAB_INVENTORY) examples/deploy.yml -e webstack_deploy_server=uvicorn"
	@echo "        ansible-playbook -i $(LAB_INVENTORY) webstack.django.rollback"
	@echo "        ansible-playbook -i $(LAB_INVENTORY) webstack.django.status"

.PHONY: clean
clean: ## Remove build output (not the cached base trees)
	rm -rf build .pytest_cache
