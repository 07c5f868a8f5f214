# k8router.edge: `make lab` brings up the local lab, `make test` runs every check.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# The Python the venv is made from: PYTHON_BASE=... if given, else the first on PATH that the pinned ansible-core
# supports (3.12 or newer; pyenv's shims count), else pyenv's own 3.12 or newer.
PYTHON_SUPPORTED := import sys; sys.exit(sys.version_info < (3, 12))
ifeq ($(origin PYTHON_BASE),undefined)
PYTHON_BASE := $(firstword $(foreach p,$(foreach v,3.12 3.13 3.14 3,$(shell command -v python$(v) 2>/dev/null)) \
  $(wildcard $(HOME)/.pyenv/versions/3.1[2-9]*/bin/python3),$(shell $(p) -c '$(PYTHON_SUPPORTED)' 2>/dev/null && echo $(p))))
endif
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export K8ROUTER_CACHE ?= $(HOME)/.cache/k8router-lab
# The venv's Python version (e.g. 3.12), once the venv exists.
VENV_PY = $(shell $(VENV)/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
COLLECTION_LINK := .collections/ansible_collections/k8router/edge
SANITY_ROOT := $(K8ROUTER_CACHE)/sanity/ansible_collections/k8router/edge
SCENARIOS := $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))

.PHONY: help
help:
	@echo "make lab        bring up the local lab and converge it"
	@echo "make lab-down   remove the lab (caches stay)"
	@echo "make test       everything: lint, sanity, the built package, unit, integration, molecule, a lab smoke run"
	@echo "make bench      every benchmark, with a table of the figures (the lab ones need make lab)"
	@echo "make lint | sanity | package | unit | integration | molecule | lab-smoke | images | k8s-bins | venv"

$(VENV)/.stamp: requirements.txt
	@test -n "$(PYTHON_BASE)" && $(PYTHON_BASE) -c '$(PYTHON_SUPPORTED)' || \
	  { echo "need Python 3.12 or newer (none on PATH; '$(PYTHON_BASE)' is not one): apt install python3 python3-venv on Debian 13, or set PYTHON_BASE=..."; exit 1; }
	test -d $(VENV) || $(PYTHON_BASE) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../.. $@

.PHONY: venv
venv: $(VENV)/.stamp $(COLLECTION_LINK)

.PHONY: host-packages
host-packages:
	@tools/host-packages.sh

.PHONY: images
images: host-packages
	tools/image.sh router router-trixie router-trixie-bare worker client

.PHONY: k8s-bins
k8s-bins:
	tools/k8s-build.sh

.PHONY: lint
lint: venv
	ruff check .
	ruff format --check .
	# The plugins as Ansible imports them (ansible_collections.k8router.edge...); the tests, the lab and the benches
	# as they import one another (tests.fixtures, lab), with the collection through the same link.
	cd .collections && mypy --config-file ../pyproject.toml ansible_collections/k8router/edge/plugins
	MYPYPATH=.collections mypy --config-file pyproject.toml $(wildcard tests lab bench tools)
	yamllint --strict .
	ansible-lint --offline

# ansible-test bootstraps pip in its venvs from a download host these machines cannot reach;
# tools/ansible-test-get-pip.py stands in for the script it would download (evaluated after `venv`).
GET_PIP_CACHE = $(HOME)/.ansible/test/cache/get_pip_$(subst .,_,$(shell grep -ho "pip='[0-9.]*'" $(VENV)/lib/python$(VENV_PY)/site-packages/ansible_test/_internal/python_requirements.py | cut -d"'" -f2)).py

.PHONY: sanity
sanity: venv
	mkdir -p $(dir $(GET_PIP_CACHE)) && cp tools/ansible-test-get-pip.py $(GET_PIP_CACHE)
	rm -rf $(SANITY_ROOT) && mkdir -p $(SANITY_ROOT)
	git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -C $(SANITY_ROOT) -xf -
	cd $(SANITY_ROOT) && ansible-test sanity --local --python $(VENV_PY) --color no

# The built collection installed offline, as a user would, beside only ansible-core and the dependencies galaxy.yml
# declares (copied from the ansible package, no Galaxy); ansible-doc and --syntax-check there (tests/packaging/check.sh).
.PHONY: package
package: venv
	PYTHON_BASE=$(PYTHON_BASE) tests/packaging/check.sh $(VENV)/lib/python$(VENV_PY)/site-packages/ansible_collections

# The unit tests need the venv and the host's haproxy (the orchestrator's run with its real drivers), no images;
# what the other daemons' validators say is integration.
.PHONY: unit
unit: venv host-packages
	pytest -q tests/unit

.PHONY: integration
integration: venv host-packages k8s-bins
	pytest -q tests/integration

# The scenarios run side by side (own networks, containers and API servers); what they share is built first.
# Each one's output is printed when it ends.
.PHONY: molecule
molecule: venv images k8s-bins
	python lab/lab.py wheelhouse >/dev/null
	logs=$$(mktemp -d); pids=""; for s in $(SCENARIOS); do molecule/run.sh $$s >"$$logs/$$s.log" 2>&1 & pids="$$pids $$!"; done; \
	rc=0; for p in $$pids; do wait $$p || rc=1; done; \
	for s in $(SCENARIOS); do echo "===== molecule scenario $$s"; cat "$$logs/$$s.log"; done; \
	grep -h '^molecule/.*: passed in' "$$logs"/*.log || true; rm -rf "$$logs"; exit $$rc

# Up from scratch, one request through each path, the day-2 scenarios that need the lab, down. A lab that was
# already up (make lab) is converged and checked the same way, and left up.
LAB_SMOKE_SCENARIOS := stop-api rollout ingress-change
.PHONY: lab-smoke
lab-smoke: venv images k8s-bins
	if python lab/lab.py status >/dev/null; then python lab/lab.py up && $(MAKE) -s lab-scenarios; else \
	  { python lab/lab.py up && $(MAKE) -s lab-scenarios; } || { python lab/lab.py down; exit 1; }; \
	  python lab/lab.py down; fi

.PHONY: lab-scenarios
lab-scenarios:
	for s in $(LAB_SMOKE_SCENARIOS); do echo "lab scenario $$s:"; python lab/lab.py scenario $$s; done

.PHONY: test
test: lint sanity package unit integration molecule lab-smoke
	@echo "make test: all checks passed"

.PHONY: lab
lab: venv images k8s-bins
	python lab/lab.py up

.PHONY: lab-down
lab-down: venv
	python lab/lab.py down

.PHONY: bench
bench: venv host-packages k8s-bins
	python bench/run.py $(BENCH_ARGS)
