"""``densenas data split-imagenet|list-images|pack-lmdb|info``: the paper's data tools."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from densenas.console import out, print_json

if TYPE_CHECKING:
    from densenas.data.tools import ImageList

data_app = typer.Typer(help="Prepare image data: search split, image lists, LMDB packing.", no_args_is_help=True)


class Split(str, Enum):
    train = "train"
    val = "val"


ImagePathOpt = Annotated[Path, typer.Option("--image-path", help="Root directory of the images.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@data_app.command("split-imagenet")
def split_imagenet(
    image_path: ImagePathOpt,
    out_path: Annotated[Path, typer.Option("--out", help="The list file to write.")],
    classes: Annotated[int, typer.Option(help="How many class folders to choose.")] = 100,
    val_fraction: Annotated[float, typer.Option(help="Fraction of each class's images for val.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Chooses the classes and the split.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """The search set: choose classes of an ImageNet train tree, split each 80/20.

    IMAGE_PATH is the train tree (class folders) or its parent holding train/; list
    paths are relative to it, so pass the same directory to pack-lmdb.
    """
    from densenas.data.tools import split_imagenet as run

    _write(out_path, run(image_path, classes=classes, val_fraction=val_fraction, seed=seed), as_json)


@data_app.command("list-images")
def list_images(
    image_path: ImagePathOpt,
    out_path: Annotated[Path, typer.Option("--out", help="The list file to write.")],
    split: Annotated[
        Split, typer.Option(help="Split for a tree without train/ and val/ folders.")
    ] = Split.train,
    as_json: JsonOpt = False,
) -> None:
    """List every image of a tree (the retraining set).

    The split of an image is its top-level train/ or val/ folder; a tree without them
    is one set of class folders, listed under --split.
    """
    from densenas.data.tools import list_images as run

    _write(out_path, run(image_path, split=split.value), as_json)


@data_app.command("pack-lmdb")
def pack_lmdb(
    image_path: ImagePathOpt,
    list_path: Annotated[Path, typer.Option("--list", help="An image list from split-imagenet or list-images.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Dataset directory; writes OUT/<split>.lmdb.")],
    split: Annotated[Split, typer.Option(help="Which split of the list to pack.")],
    workers: Annotated[int, typer.Option(help="Threads reading and checking images (0: automatic).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Pack the listed images of one split into OUT/<split>.lmdb.

    Records hold the original file bytes (no pickle). Unreadable images are warned
    about and skipped. Pack both splits into one OUT, then pass it as --data.
    """
    from densenas.data.tools import pack_lmdb as run

    result = run(image_path, list_path, out_dir, split=split.value, workers=workers or None)
    if as_json:
        print_json(result.to_json())
        return
    out.print(f"packed {result.written} images into {result.db}; skipped {len(result.skipped)}", markup=False)


@data_app.command("info")
def info(
    data: Annotated[
        str, typer.Option("--data", help="'digits', an image folder or a packed dataset directory.")
    ] = "digits",
    image_size: Annotated[int, typer.Option(help="Image side the loaders produce.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the digits split.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """What --data resolves to: its kind, classes and split sizes."""
    from densenas.data.datasets import describe_data

    d = describe_data(data, image_size=image_size, seed=seed)
    if as_json:
        print_json(d)
        return
    out.print(
        f"{d['name']} ({d['kind']}): {d['num_classes']} classes, {d['train']} train and "
        f"{d['val']} val images at {d['image_size']}x{d['image_size']}",
        markup=False,
    )


def _write(path: Path, image_list: ImageList, as_json: bool) -> None:
    """Write the list file, then report what it holds."""
    from densenas.data.tools import write_image_list

    write_image_list(path, image_list)
    summary = {
        "list": str(path),
        "classes": len(image_list.classes),
        "train": image_list.count("train"),
        "val": image_list.count("val"),
    }
    if as_json:
        print_json(summary)
        return
    out.print(
        f"wrote {path}: {summary['classes']} classes, {summary['train']} train and "
        f"{summary['val']} val images",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
