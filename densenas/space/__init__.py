"""Search spaces: YAML config, validated, and the pure graph built from it."""

from densenas.space.config import SpaceConfig, load_space_config, shipped_spaces
from densenas.space.graph import Block, OpInstance, SearchSpace

__all__ = ["Block", "OpInstance", "SearchSpace", "SpaceConfig", "load_space_config", "shipped_spaces"]
