# Two commands do everything on a fresh machine: `make workbook` and `make test`.
PY      := .venv/bin/python
PROFILE ?= quick
ONLY    ?=
# processes that train the notebooks' runs before the notebooks execute (empty: 1 on a GPU, one per core up to 4)
WORKERS ?=
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup data workbook test lab bench study-gpu clean-notebooks clean-outputs

.venv/.installed: pyproject.toml
	@echo "[setup] creating .venv and installing mtlib with its pinned dependencies (about 2 minutes, once)"
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -e '.[dev,cluster]'  # bytecode on first import: 36 s, not 85
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@
	@echo "[setup] done"

setup: .venv/.installed

data: setup
	$(PY) -m mtlib data fetch

workbook: data
	$(PY) -m mtlib workbook --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(if $(WORKERS),--workers $(WORKERS))

test: data
	$(PY) -m ruff check mtlib tests benchmarks
	$(PY) -m ruff format --check mtlib tests benchmarks
	$(PY) -m pytest -q

# localhost only, Jupyter's token auth (the URL with the token is printed); --allow-root only when root.
# The overrides file turns on ipywidgets' "save widget state", so a saved notebook reopens with its panels.
LAB_IP  ?= 127.0.0.1
LAB_DIR ?= notebooks
LAB_ARGS = --no-browser --ip=$(LAB_IP) --ServerApp.root_dir=$(LAB_DIR) $(if $(filter 0,$(shell id -u)),--allow-root)
lab: data
	@mkdir -p .venv/share/jupyter/lab/settings 2>/dev/null && cp notebooks/.lab-overrides.json \
	  .venv/share/jupyter/lab/settings/overrides.json 2>/dev/null || echo "note: .venv is not writable; widget state is not saved"
	.venv/bin/jupyter lab $(LAB_ARGS)

# JupyterLab autosaves outputs and widget state into the notebooks: strip them before committing
clean-notebooks: setup
	$(PY) -m mtlib.notebook.clean notebooks/*.ipynb

# BENCH_ARGS e.g. "--backbone bert-base --precision fp32,bf16 --steps 2" (python -m mtlib bench --help)
BENCH_ARGS ?= --precision fp32,bf16
bench: data
	$(PY) -m mtlib bench train $(BENCH_ARGS)
	$(PY) -m mtlib bench gradients --profile $(PROFILE)
	$(PY) -m mtlib bench runs

# The decisive study on one GPU: every claim row x the gpu profile's 10 seeds, packed (docs/packed.md).
# STUDY_ARGS e.g. "--shard 1/4" or "--pack 16"; run again to resume.
STUDY_ARGS ?=
study-gpu: data
	$(PY) -m mtlib study --profile gpu $(STUDY_ARGS)
