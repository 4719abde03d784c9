"""Host facts: the CPU name override, and that a fingerprint taken under it says so."""

from __future__ import annotations

import pytest

from densenas.profilers import hostinfo
from densenas.profilers.torch_cpu import TorchCPUProfiler

OTHER_CPU = "Intel(R) Xeon(R) Platinum 8375C"


def test_without_the_override_the_detected_name_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hostinfo.ENV_CPU_NAME, raising=False)
    assert hostinfo.cpu_model() == hostinfo.detected_cpu_model() != ""
    facts = hostinfo.host_facts()
    assert facts["cpu"] == hostinfo.detected_cpu_model()
    assert "cpu_name_override" not in facts and "cpu_detected" not in facts


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_override_is_no_override(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    monkeypatch.setenv(hostinfo.ENV_CPU_NAME, blank)
    assert hostinfo.cpu_model() == hostinfo.detected_cpu_model()
    assert "cpu_name_override" not in hostinfo.host_facts()


def test_the_override_names_the_cpu_and_the_fingerprint_records_it_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    real = hostinfo.detected_cpu_model()
    monkeypatch.setenv(hostinfo.ENV_CPU_NAME, f" {OTHER_CPU} ")
    assert hostinfo.cpu_model() == OTHER_CPU
    fp = TorchCPUProfiler(threads=1).fingerprint()
    assert fp["device"] == fp["cpu"] == OTHER_CPU
    assert fp["cpu_name_override"] == "DENSENAS_CPU_NAME" and fp["cpu_detected"] == real
