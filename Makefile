# shopguard — set-up is two commands: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test lint bench clean venv

venv: $(STAMP)

# Create .venv with the first Python >= 3.12 found (pyenv's .python-version picks 3.12 where present).
$(PY):
	@found=""; tried=""; \
	for c in python3 python3.14 python3.13 python3.12 python; do \
	  p=$$(command -v $$c 2>/dev/null) || continue; \
	  v=$$($$p -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue; \
	  tried="$$tried $$c=$$v"; \
	  if $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then found=$$p; break; fi; \
	done; \
	if [ -z "$$found" ]; then \
	  echo "shopguard needs Python >= 3.12; found:$${tried:- no python at all}." >&2; \
	  echo "Install one (pyenv install 3.12, or your distribution's python3.12 package) and retry." >&2; \
	  exit 2; \
	fi; \
	echo "creating $(VENV) with $$found ($$($$found --version))"; \
	$$found -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/shopguard run $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check addons tests $(wildcard bench)
	$(VENV)/bin/ruff format --check addons tests $(wildcard bench)
	@mkdir -p .lint && ln -sfn ../addons .lint/shopguard
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .lint

# Benchmarks print figures and assert nothing. `bench`: the engine, a short proxy comparison and
# `report` over a large log; `bench-proxy`: the full proxy comparison (under 10 minutes on 2
# cores); `bench-soak`: 50,000 flows, memory and descriptors. wrk is used where installed.
bench: $(STAMP)
	$(PY) bench/run.py
	$(PY) bench/proxy_full.py --quick
	$(PY) bench/report.py

.PHONY: bench-proxy bench-soak
bench-proxy: $(STAMP)
	$(PY) bench/proxy_full.py $(ARGS)

bench-soak: $(STAMP)
	$(PY) bench/soak.py
