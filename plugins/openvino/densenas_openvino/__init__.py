"""OpenVINO on the CPU as a densenas profiler backend, registered through the
``densenas.profilers`` entry point group. Importing this package does not import
OpenVINO: the backend reports itself unavailable, with the fix, when it is missing."""

from densenas_openvino.profiler import OpenVINOProfiler

__all__ = ["OpenVINOProfiler"]
