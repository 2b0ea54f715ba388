"""The package surface: light to import, every public name resolvable."""

import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, lorakit; "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'bitsandbytes', 'matplotlib', 'ipywidgets') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lorakit_train_is_the_function_whatever_was_imported():
    """lorakit.train is launch's train(); the package is lorakit.training, so importing it changes nothing."""
    code = (
        "import lorakit; import lorakit.training.config, lorakit.training.events; "
        "import lorakit.training.loop, lorakit.training.launch as launch; "
        "assert lorakit.train is launch.train is lorakit.training.train; "
        "import inspect; assert inspect.isfunction(lorakit.train); print(inspect.signature(lorakit.train))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "config" in out.stdout
