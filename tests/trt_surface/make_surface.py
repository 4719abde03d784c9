"""Write the Python API surface of a TensorRT bindings wheel to JSON, with no GPU and no
TensorRT installed: classes (with their bases), every member with its pybind11
signature lines, enum members, module-level functions and values.

    python tests/trt_surface/make_surface.py WHEEL OUT.json

WHEEL is a ``tensorrt-cuXX-bindings`` wheel for this Python (``pip download --no-deps
tensorrt-cu12-bindings==11.4.0.106``). The wheel's pybind11 module links against
libnvinfer, libnvonnxparser and libnvinfer_plugin; they are replaced by stub libraries
(compiled here with ``cc``) that define every entry point the module imports and return
NULL, so the module imports for introspection only: calling anything that reaches
TensorRT fails. Needs ``cc`` and binutils (``readelf``, ``nm``).
"""

from __future__ import annotations

import ctypes
import inspect
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

PACKAGE = "tensorrt_bindings"


def _needed_nvidia_libs(so: Path) -> list[str]:
    """The TensorRT libraries (``libnv*``) the extension module is linked against."""
    out = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True).stdout
    names = [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(NEEDED)" in line]
    return [n for n in names if n.startswith("libnv")]


def _missing_symbols(so: Path) -> list[str]:
    """Undefined, unversioned symbols that this process cannot already resolve: the entry
    points the stubs must provide (Python's C API and libc are left to the real ones)."""
    out = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True, text=True, check=True).stdout
    here = ctypes.CDLL(None)
    names = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U" and "@" not in parts[1] and not hasattr(here, parts[1]):
            names.append(parts[1])
    return sorted(names)


def _build_stubs(so: Path, lib_dir: Path) -> None:
    source = lib_dir / "stub.c"
    # The C signature does not matter to the linker; each stub returns 0 (NULL, false).
    source.write_text("".join(f"long {name}(void) {{ return 0; }}\n" for name in _missing_symbols(so)))
    for lib in _needed_nvidia_libs(so):
        subprocess.run(
            ["cc", "-shared", "-fPIC", "-o", str(lib_dir / lib), str(source), f"-Wl,-soname,{lib}"], check=True
        )


def _signatures(obj: Any) -> list[str]:
    """pybind11 puts the signature on the docstring's first line; an overloaded function
    lists each overload as ``N. name(...) -> ...`` after a header line."""
    lines = [line.strip() for line in (getattr(obj, "__doc__", None) or "").strip().splitlines()]
    if len(lines) > 1 and lines[1] == "Overloaded function.":
        return [line.split(". ", 1)[1] for line in lines if line[:1].isdigit() and ". " in line and "(" in line]
    return lines[:1] if lines and "(" in lines[0] else []


def _member(value: Any) -> dict[str, Any]:
    if isinstance(value, property):
        return {"kind": "property", "settable": value.fset is not None}
    if isinstance(value, staticmethod):
        return {"kind": "staticmethod", "signatures": _signatures(value.__func__)}
    if inspect.isclass(value):
        return {"kind": "class", "name": value.__qualname__}
    if callable(value):
        return {"kind": "method", "signatures": _signatures(value)}
    return {"kind": "value", "type": type(value).__qualname__}


def _class(cls: type) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "bases": [b.__qualname__ for b in cls.__mro__[1:] if b.__module__.startswith(PACKAGE)],
        "members": {},
    }
    for name, value in sorted(vars(cls).items()):
        if name.startswith("__") and name not in ("__init__", "__call__", "__enter__", "__exit__", "__len__",
                                                    "__getitem__", "__iter__", "__buffer__"):
            continue
        entry["members"][name] = _member(value)
    if hasattr(cls, "__members__"):
        entry["enum"] = sorted(cls.__members__)
    return entry


def dump(out: Path) -> None:
    """Runs in a child process that can import the bindings against the stubs."""
    module = __import__(PACKAGE)
    surface: dict[str, Any] = {"version": module.__version__, "classes": {}, "functions": {}, "values": {}}
    todo = [(name, obj) for name, obj in vars(module).items() if not name.startswith("_") and inspect.isclass(obj)]
    while todo:  # nested classes (ILogger.Severity) are recorded under their qualified name
        name, cls = todo.pop()
        qualname = cls.__qualname__
        if qualname in surface["classes"] or not cls.__module__.startswith(PACKAGE):
            continue
        surface["classes"][qualname] = _class(cls)
        todo += [(n, v) for n, v in vars(cls).items() if inspect.isclass(v) and not n.startswith("_")]
        if name != qualname:
            surface["values"].setdefault(name, {"kind": "class", "name": qualname})
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        if inspect.isclass(obj):
            if obj.__qualname__ != name:
                surface["values"][name] = {"kind": "class", "name": obj.__qualname__}
        elif callable(obj):
            surface["functions"][name] = _signatures(obj) or [f"{name}(*args)"]
        else:
            surface["values"][name] = {"kind": "value", "type": type(obj).__qualname__}
    text = json.dumps(surface, indent=1, sort_keys=True) + "\n"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(f"{surface['version']}: {len(surface['classes'])} classes, {len(surface['functions'])} functions -> {out}")


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--dump":  # the child
        sys.path.insert(0, argv[1])
        dump(Path(argv[2]))
        return 0
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    wheel, out = Path(argv[0]), Path(argv[1]).resolve()
    with tempfile.TemporaryDirectory(prefix="trt-surface-") as tmp:
        root = Path(tmp)
        zipfile.ZipFile(wheel).extractall(root / "py")
        so = next((root / "py" / PACKAGE).glob("tensorrt*.so"))
        (root / "lib").mkdir()
        _build_stubs(so, root / "lib")
        env = dict(os.environ, LD_LIBRARY_PATH=str(root / "lib"))
        return subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--dump", str(root / "py"), str(out)], env=env
        ).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
