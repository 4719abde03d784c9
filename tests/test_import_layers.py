"""The import graph reads one way down: no module imports, at run time, one that imports
it back (directly or through others), and ``profilers/`` never imports the rest of
densenas. Read from the source with ``ast``, imports inside functions included and
``if TYPE_CHECKING:`` blocks (annotations only) left out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# LatencyTable.to_frame/from_frame hand over to densenas.lut.frames, which builds tables:
# a documented convenience on the class, kept so pandas loads only when asked for.
ALLOWED_CYCLES = [{"densenas.lut.store", "densenas.lut.frames"}]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ("densenas", *rel.parts) if rel.parts[0] == "profilers" else rel.parts
    return ".".join(parts).removesuffix(".__init__")


def modules() -> dict[str, Path]:
    files = [*(ROOT / "densenas").rglob("*.py"), *(ROOT / "profilers").rglob("*.py")]
    return {module_name(p): p for p in files}


def runtime_imports(path: Path, known: set[str]) -> set[str]:
    """The densenas modules ``path`` imports when it runs (``from pkg import mod`` counts
    as ``pkg.mod``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    annotations_only = {id(n) for node in ast.walk(tree)
                        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)
                        for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs
            if len(subs) < len(node.names):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found & known


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: runtime_imports(path, known) - {name} for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_no_module_imports_one_that_imports_it_back():
    found = [c for c in cycles(graph()) if c not in ALLOWED_CYCLES]
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def test_the_cycle_finder_finds_a_cycle_through_three_modules():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_profilers_import_nothing_of_densenas_but_themselves():
    edges = graph()
    outside = {(m, d) for m, ds in edges.items() if m.startswith("densenas.profilers")
               for d in ds if not d.startswith("densenas.profilers")}
    assert not outside, sorted(outside)
