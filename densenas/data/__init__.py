"""Data for search, retraining and evaluation, and the paper's data tools.

Names load lazily so that ``densenas.data.tools`` (the CLI's list and pack commands)
runs without importing torch.
"""

from densenas.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "datasets": "DataBundle EvalData EpochSampler build_loaders build_eval_loader describe_data epoch_order",
    "digits": "digits_arrays digits_split digits_splits",
    "lmdb_store": "LmdbImageDataset ImageRecord read_meta",
    "tools": "ImageEntry ImageList PackResult split_imagenet list_images pack_lmdb read_image_list write_image_list",
})
