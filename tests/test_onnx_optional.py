"""nnlite.onnx without the optional ``onnx`` package: import works, load names the extra."""
import subprocess
import sys

import nnlite.onnx as nxo


def test_support_summary_matches_installation():
    text = nxo.support_summary()
    try:
        import onnx
    except ImportError:
        assert text == "not installed (pip install nnlite[onnx])"
    else:
        assert text == f"available (onnx {onnx.__version__}), {len(nxo.SUPPORTED)} ops"
    from nnlite.onnx.ops import OPS

    assert nxo.supported_ops() == sorted(nxo.SUPPORTED) and "Conv" in nxo.supported_ops()
    missing = [op for op in nxo.SUPPORTED if op != "Constant" and op not in OPS]
    assert not missing, f"ops accepted at import without an implementation: {missing}"


def test_import_and_error_without_onnx():
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import nnlite.onnx as o\n"
            "print(o.support_summary())\n"
            "try:\n    o.load('m.onnx')\nexcept ImportError as e:\n    print('ERR', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "not installed (pip install nnlite[onnx])" in r.stdout
    assert "ERR nnlite.onnx.load needs the 'onnx' package" in r.stdout
    assert "pip install nnlite[onnx]" in r.stdout.split("ERR")[1]
