# `make demo`: install, generate the synthetic dataset, train the compact model, serve the Space.
# `make test`: install, run every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA := data/synthetic
RUN := runs/demo
# Extra `train` options for the demo (none: it shows the defaults).
DEMO_TRAIN_FLAGS ?=
export GRADIO_ANALYTICS_ENABLED := False
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install browser legacy data train demo test clean

# The pinned requirements, then this project itself, editable: the `defect-classifier` command.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Browser tests drive Debian's chromium (Playwright's own browser download cannot work offline).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# The legacy loader (huggingface_hub<1.0 `from_pretrained_keras`, with tf-keras) lives in its own
# folder, put first on PYTHONPATH by the test that uses it, so the main venv keeps huggingface_hub 2.x.
LEGACY := .venv-legacy
$(LEGACY)/.installed: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps --target $(LEGACY) huggingface_hub==0.36.2
	touch $@

legacy: $(LEGACY)/.installed

$(DATA)/train/metadata.csv: $(VENV)/.installed training/synthetic.py
	rm -rf $(DATA)
	$(VENV)/bin/defect-classifier generate --out $(DATA)

data: $(DATA)/train/metadata.csv

$(RUN)/model/defect_config.json: $(DATA)/train/metadata.csv
	$(VENV)/bin/defect-classifier train --data $(DATA) --out $(RUN) --backbone compact $(DEMO_TRAIN_FLAGS)

train: $(RUN)/model/defect_config.json

demo: train
	@echo "Serving the Space at http://127.0.0.1:$${GRADIO_SERVER_PORT:-7860} (Ctrl+C stops it)"
	MODEL_ID=$(RUN)/model $(PY) space/app.py

test: install browser legacy
	$(PY) -m pytest tests

clean:
	rm -rf $(DATA) runs
