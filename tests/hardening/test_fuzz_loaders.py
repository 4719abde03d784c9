"""Fuzzing the loaders: whatever text or structure arrives, a loader returns a valid object
or raises DensenasError (a one-line user error). Nothing else may escape: no KeyError,
TypeError, ValueError, OverflowError or RecursionError from deep inside.

Two sources of input: random text, and mutations of valid files (keys dropped, values
replaced by other types, NaN, huge and negative numbers, Python expressions, deep nesting).
"""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from densenas.arch import arch_from_dict, parse_net_config, to_net_config
from densenas.arch_params import arch_params_from_dict
from densenas.errors import DensenasError
from densenas.literal import parse_literal
from densenas.signature import known_ops
from densenas.space import SearchSpace
from densenas.space.config import parse_space_config
from tests.hardening.conftest import MICRO, MICRO_NET_CONFIG

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
EXPRESSIONS = ["__import__('os').system('true')", "1+1", "0x10", "1e3", "lambda: 0", "${HOME}", "nan", "'", "[", "{"]
ODD_NUMBERS = [10**400, -10**400, 2**63, -(2**63) - 1, -1, 0, 1e308, -1e-308, 1e400, math.nan, math.inf, -math.inf]

scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.sampled_from(ODD_NUMBERS)
           | st.floats() | st.text(max_size=12) | st.sampled_from(EXPRESSIONS + known_ops()))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                      max_leaves=10)


def _paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _apply(doc: Any, path: tuple, op: str, value: Any) -> Any:
    """``doc`` with the node at ``path`` dropped, replaced by ``value``, or nested ``value`` deep."""
    if op == "deepen":
        node = doc
        for key in path:
            node = node[key]
        for _ in range(value):
            node = [node]
        value, op = node, "replace"
    if not path:
        return value if op == "replace" else {}
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if op == "drop":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@st.composite
def mutations(draw: st.DrawFn, base: Any, max_depth: int = 60) -> Any:
    """A valid document with one to three random edits."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(doc))))
        op = draw(st.sampled_from(["drop", "replace", "replace", "deepen"]))
        arg = draw(st.integers(1, max_depth)) if op == "deepen" else draw(values)
        doc = _apply(doc, path, op, arg)
    return doc


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace(parse_space_config(MICRO, source="micro.yaml"), source="micro.yaml")


@pytest.fixture(scope="module")
def valid(micro) -> dict[str, Any]:
    return {name: json.loads(micro[name].read_text()) for name in ("lut", "arch", "arch_params")}


def _refused_or_loaded(fn, *args: Any) -> Any:
    """Run a loader: its result, or None when it refused with DensenasError."""
    try:
        return fn(*args)
    except DensenasError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), repr(exc)
        return None


# -- search-space YAML ---------------------------------------------------------------------------


def _load_space(text: str) -> None:
    def load() -> SearchSpace:
        s = SearchSpace(parse_space_config(text, source="fuzz.yaml"), source="fuzz.yaml")
        s.describe()  # walks every block, edge and op instance
        return s

    s = _refused_or_loaded(load)
    if s is not None:
        assert all(b.out_edges for b in s.blocks[:-1]) and all(b.in_edges for b in s.blocks[1:])


@FUZZ
@given(st.text(max_size=400))
@example("[" * 20000)
@example("{a: " * 5000)
@example("a: &x [*x]\nb: *x\n")
@example("!!python/object/apply:os.system ['true']")
@example("name: \udc80")
@example(MICRO.replace("num_layers: [0, 1, 1]", "num_layers: [0, 1000000000, 1]"))
@example(MICRO.replace("ch: [8, 12, 16]", "ch: [8, 12, " + "9" * 5000 + "]"))
def test_space_yaml_text(text: str) -> None:
    _load_space(text)


@FUZZ
@given(mutations(yaml.safe_load(MICRO), max_depth=40))
def test_space_yaml_mutations(doc: Any) -> None:
    _load_space(yaml.safe_dump(doc, sort_keys=False))


# -- LUT JSON --------------------------------------------------------------------------------------


ONE_ROW_LUT = ('{"schema": "densenas.lut/1", "meta": {"batch": 1}, "rows": [{"op": "conv1_1", "c_in": 8, "c_out": 8, '
               '"stride": 1, "h": 4, "w": 4, "batch": 1, "dtype": "fp32", "median_ms": 1, "mean_ms": 1, "iqr_ms": 0, '
               '"p10_ms": 1, "p90_ms": 1, "samples": 3}]}')


def _check_lut(table) -> None:
    for row in table.rows.values():
        assert math.isfinite(table.latency_ms(row.signature)) and table.latency_ms(row.signature) >= 0
    assert (table.batch, table.precision, table.overhead_ms) is not None


@FUZZ
@given(st.text(max_size=400))
@example("[" * 100000)
@example('{"schema": "densenas.lut/1", "meta": {"batch": ' + "9" * 400 + '}, "rows": []}')
@example('{"schema": "densenas.lut/1", "meta": {"overhead_ms": NaN}, "rows": []}')
@example(ONE_ROW_LUT.replace('"median_ms": 1', '"median_ms": 1' + "0" * 400))
@example(ONE_ROW_LUT.replace('"median_ms": 1', '"median_ms": "__import__(\'os\').getcwd()"'))
def test_lut_text(text: str) -> None:
    from densenas.lut.store import LatencyTable

    table = _refused_or_loaded(LatencyTable.loads, text)
    if table is not None:
        _check_lut(table)


@FUZZ
@given(st.data())
def test_lut_mutations(valid, data) -> None:
    from densenas.lut.store import LatencyTable

    doc = data.draw(mutations(valid["lut"]))
    table = _refused_or_loaded(LatencyTable.from_json_dict, copy.deepcopy(doc))
    if table is not None:
        _check_lut(table)
    text = json.dumps(doc)
    table = _refused_or_loaded(LatencyTable.loads, text)
    if table is not None:
        _check_lut(table)


# -- arch.json and net_config ------------------------------------------------------------------------


@FUZZ
@given(st.data())
def test_arch_dict_mutations(valid, data) -> None:
    doc = data.draw(mutations(valid["arch"]))
    arch = _refused_or_loaded(arch_from_dict, doc)
    if arch is not None:
        assert arch.layers()
        assert arch_from_dict(json.loads(json.dumps(arch.to_dict()))) == arch


_TOKEN = re.compile(r"-?\d+|'[^']*'|.", re.S)


@st.composite
def net_configs(draw: st.DrawFn) -> str:
    """The micro net_config with a few tokens replaced, dropped or repeated."""
    tokens = _TOKEN.findall(MICRO_NET_CONFIG)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(tokens) - 1))
        new = draw(st.sampled_from(["", "(", ")", "[", "]", ",", "|", "'", "-", "0", "-8", "9" * 80, "1e400"])
                   | st.integers(-64, 64).map(str)
                   | st.sampled_from(known_ops() + EXPRESSIONS).map(lambda s: f"'{s}'")
                   | st.just(tokens[i] * 2))
        tokens[i] = new
    return "".join(tokens)


@FUZZ
@given(net_configs() | st.text(max_size=200))
@example("")
@example("[" * 40)
@example("[[8, 8], 'mbconv_k3_t1', [], 0, 1]|" * 300)
def test_net_config_strings(space, text: str) -> None:
    arch = _refused_or_loaded(parse_net_config, text, space)
    if arch is not None:
        assert parse_net_config(to_net_config(arch), space) == arch


# -- arch_params.json ------------------------------------------------------------------------------------


@FUZZ
@given(st.data())
def test_arch_params_mutations(space, valid, data) -> None:
    doc = data.draw(mutations(valid["arch_params"]))
    params = _refused_or_loaded(lambda: arch_params_from_dict(doc).validate(space))
    if params is not None:
        betas, heads, stacks = params.to_tensors()
        assert len(betas) == len(space.blocks) - 1 and len(heads) == len(stacks) == len(space.routing_blocks)


# -- the literal parser --------------------------------------------------------------------------------------


LITERAL_CHARS = "[](),'\" 0123456789.eE+-_abcxyz\n\\"


@FUZZ
@given(st.text(alphabet=LITERAL_CHARS, max_size=200) | st.text(max_size=100))
@example("[" * 100)
@example("1" * 100000)
@example("[1, 2,]")
@example("(1, [2, 'a'])")
def test_parse_literal_text(text: str) -> None:
    value = _refused_or_loaded(parse_literal, text)

    def plain(v: Any) -> bool:
        return isinstance(v, (int, float, str)) or isinstance(v, list) and all(plain(x) for x in v)

    assert value is None or plain(value)


literals = st.recursive(
    st.integers(-(10**30), 10**30) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789 ", max_size=10),
    lambda inner: st.lists(inner, max_size=5), max_leaves=20)


@FUZZ
@given(literals)
def test_parse_literal_reads_back_what_python_writes(value: Any) -> None:
    assert parse_literal(repr(value)) == value
