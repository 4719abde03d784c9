"""onnxruntime runs on the provider it was asked for, or refuses: a session that fell back
to the CPU is never timed and labelled as CUDA; the provider actually used is recorded."""

from __future__ import annotations

import pytest

from densenas.profilers import ProfilerError
from densenas.profilers.ort import CPU, CUDA, OnnxRuntimeProfiler, check_session_providers


def test_a_silent_fallback_to_the_cpu_is_refused_in_one_line() -> None:
    with pytest.raises(ProfilerError) as info:
        check_session_providers(CUDA, [CPU])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"onnxruntime: asked for {CUDA} but the session runs on {CPU}")
    assert "onnxruntime-gpu" in message
    assert check_session_providers(CUDA, [CUDA, CPU]) == [CUDA, CPU]


def test_the_fingerprint_records_the_providers_a_real_session_got() -> None:
    profiler = OnnxRuntimeProfiler(providers=[CPU], threads=1)
    facts = profiler.fingerprint()
    assert facts["provider"] == CPU and facts["session_providers"] == [CPU]
