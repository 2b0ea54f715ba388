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
