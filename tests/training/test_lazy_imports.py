"""The web process never imports torch/transformers through the training app."""
import subprocess
import sys

CHECK = """
import sys
{setup}
before = set(sys.modules)
import {modules}
heavy = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('torch', 'transformers', 'trl', 'accelerate', 'deepspeed', 'vllm'))
print(heavy)
assert not heavy, heavy
"""


def _run(setup: str, modules: str) -> None:
    code = CHECK.format(setup=setup, modules=modules)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_pure_launcher_side_imports_no_heavy_library():
    _run("", "training.pipeline.specs, training.pipeline.launcher, training.pipeline.callbacks, training.charts")


def test_django_side_imports_no_heavy_library():
    setup = "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'medstudio.settings'); import django; django.setup()"
    _run(setup, "training.models, training.views, training.urls, training.services, training.handlers, training.selectors, training.forms")
