"""densenas: hardware-aware latency profiling and DenseNAS architecture search."""

__version__ = "0.1.0"
