"""The DenseNAS search engine: supernet + data + LUT -> arch_params.json and arch.json.

``run_search(SearchOptions(...))`` runs a search on one process, or on every rank of a
torchrun launch; ``check`` validates options, LUT and data before anything trains.
"""

from densenas.search.engine import RunFiles, SearchEngine, SearchResult, check, run_search
from densenas.search.settings import RunSettings, SearchOptions

__all__ = ["RunFiles", "RunSettings", "SearchEngine", "SearchOptions", "SearchResult", "check", "run_search"]
