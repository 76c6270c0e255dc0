"""A coverage-guided fuzzing target (atheris, libFuzzer) for the path every untrusted image takes:
`fmnist.image_files.open_image` (the byte and header limits, Pillow's decoders, the checks that the
data covered every row) and `fmnist.images.prepare`. Any input must give a 28x28 uint8 input or an
FmnistError; any other exception is a finding, and libFuzzer saves the input that raised it.

    make fuzz                                   # installs atheris, runs this for FUZZ_SECONDS (600)
    .venv/bin/python fuzz/images.py -max_total_time=600 -rss_limit_mb=2048 fuzz/corpus

The corpus starts from small valid images of every format and mode (written by --seed-corpus DIR).
Not run by the tests: the hypothesis properties in tests/hostile/test_fuzz.py are the bounded CI version.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["fmnist"]):
    from fmnist import image_files, images
    from fmnist.errors import FmnistError


def one_input(data: bytes) -> None:
    try:
        decoded = image_files.open_image(data)
        prepared = images.prepare(decoded)
    except FmnistError:
        return
    if prepared.pixels.shape != (28, 28) or prepared.pixels.dtype.name != "uint8":
        raise AssertionError(f"prepared input of shape {prepared.pixels.shape} and type {prepared.pixels.dtype}")


def seed_corpus(directory: Path) -> None:
    """Small valid images of every format and mode fmnist reads, as the fuzzer's starting points."""
    import numpy as np
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    rgb[6:18, 8:24] //= 4
    for mode in ("L", "RGB", "RGBA", "P", "1"):
        image = Image.fromarray(rgb).convert(mode)
        for kind, params in (("PNG", {}), ("JPEG", {"quality": 70}), ("JPEG", {"progressive": True}), ("GIF", {}),
                             ("BMP", {}), ("TIFF", {"compression": "tiff_lzw"}), ("WEBP", {"lossless": True})):
            source = image.convert("RGB") if kind == "JPEG" and mode not in ("L", "RGB") else image
            buffer = io.BytesIO()
            source.save(buffer, format=kind, **params)
            suffix = "-progressive" if params.get("progressive") else ""
            (directory / f"{mode}-{kind.lower()}{suffix}").write_bytes(buffer.getvalue())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--seed-corpus":
        seed_corpus(Path(sys.argv[2]))
        sys.exit(0)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
