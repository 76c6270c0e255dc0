"""Every limit fmnist puts on what it reads, in one place: a file from anywhere (a download, an upload, a
folder someone else filled) may be built to exhaust memory or time, and each limit below turns such a
file into one line saying which limit it passed, before the memory is allocated.

Each limit is far above what a real MNIST-like data set or a photo needs; README's reliability
section lists them with what a bad input gets.
"""

from __future__ import annotations

# The content of one data file (IDX or Kaggle CSV, raw or after gunzip), in bytes. The official
# training images are 47 MB as IDX and 133 MB as CSV; EMNIST ByClass, the largest MNIST-like IDX set
# we know, is 547 MB. 1 GiB holds 1.3 million 28x28 images, more than a 28x28 workbench loads into
# memory on an ordinary machine. An IDX header that declares more is refused from its 16 bytes (a
# 3 MB .gz can declare, and hold, 6 GB); a CSV or other stream is refused once it passes the limit.
MAX_DATA_BYTES = 1 << 30
# One line of a Kaggle CSV: a row is at most ~3.2 KB (785 values of up to 3 digits, and commas);
# 64 KiB leaves room for spaces and quotes and stops a file that is one endless line.
MAX_CSV_LINE = 64 << 10
# A classes.txt: a few hundred bytes for ten names.
MAX_CLASSES_BYTES = 1 << 20

# An image file, standard input or encoded bytes given to predict. A 50-megapixel JPEG is 10-30 MB;
# a regular file is refused from its size before it is read, a stream once it passes the limit.
MAX_IMAGE_BYTES = 64 << 20
# Pixels declared by an image header: a 28x28 classifier has no use for more, and a small file can
# declare billions (a decompression bomb). Refused from the header, before decoding.
MAX_IMAGE_PIXELS = 50_000_000
# Memory for decoding the first frame: width x height x the bytes Pillow stores per pixel of its mode
# (1 for L/P/1, 2 for 16-bit grey, 4 for everything else: RGB is stored as 4 bytes) x the copies the
# decoder holds at once (3 for WebP), after JPEG's reduced-scale decoding. 50 megapixels of RGB
# (200 MB) pass, and so does a 381 KB PNG that declares 7,000 x 7,000 16-bit RGBA pixels (196 MB).
# Decoding is the only full-size allocation: a big frame is shrunk to WORKING_SIZE a band of rows at
# a time (fmnist.image_files), so that PNG is predicted in 550 MB of address space, interpreter,
# numpy, Pillow and onnxruntime included. Refused from the header.
MAX_DECODE_BYTES = 256 << 20
# Frames of an animation or pages of a TIFF: only the first is used, but counting them (the record
# says how many there are) walks the file; a 64 MB GIF can hold three million 1-pixel frames.
MAX_FRAMES = 1_000


def bytes_text(count: int) -> str:
    """`64 MiB`, `1 GiB`, `1,536 bytes`: a limit or size as a person reads it."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift and count % (1 << shift) == 0:
            return f"{count >> shift:,} {unit}"
    return f"{count:,} bytes"
