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


def test_lorakit_train_stays_callable_after_submodule_imports():
    """Importing lorakit.train.<module> rebinds lorakit.train to the package: it must still train."""
    code = (
        "import lorakit; f = lorakit.train.train; import lorakit.train.config, lorakit.train.events; "
        "import lorakit.train.loop as loop; "
        "assert callable(lorakit.train) and type(lorakit.train).__name__ == '_CallablePackage'; "
        "assert lorakit.train.train is loop.train is f; "
        "import inspect; print(inspect.signature(lorakit.train.__call__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_lorakit_train_call_reaches_the_loop(monkeypatch):
    import lorakit.train as package
    import lorakit.train.loop as loop

    calls = []
    monkeypatch.setattr(package, "train", lambda *a, **k: calls.append((a, k)) or "summary")
    assert package("config", sinks=()) == "summary"
    assert calls == [(("config",), {"sinks": ()})]
    assert callable(loop.train)
