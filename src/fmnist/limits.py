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

# A model file, either format (safetensors or ONNX): the largest model fmnist builds (MAX_PARAMETERS,
# 50 M) is 200 MB of float32 weights, and a resume checkpoint adds up to twice that in optimizer state.
MAX_FILE_BYTES = 1 << 30
# safetensors' JSON header (tensor names, shapes, the metadata), read before anything else: a model
# fmnist writes has a few KB of it, a long run's resume checkpoint some 100 KB.
MAX_HEADER_BYTES = 16 << 20
# One metadata field's JSON text in a model file. The largest fmnist writes is a resume checkpoint's
# training history, about 300 bytes an epoch (13 KB for 40 epochs); a spec of 100 blocks is under 20 KB.
MAX_FIELD_BYTES = 4 << 20

# A model spec (a file, a model file's architecture or `--model-options`). Wide headroom above every
# model fmnist ships: the largest, fmnistcnn (002's default spec), has 3,467,402 parameters and
# 1.6 MiB of activations per image.
MAX_PARAMETERS = 50_000_000  # 14x fmnistcnn: 200 MB of float32 weights, as much again per optimizer buffer
MAX_ACTIVATION_BYTES = 32 << 20  # each layer's float32 output for one image, all kept for backward: 20x fmnistcnn
MAX_BLOCKS = 100  # conv and fc blocks together: 002's dictionary has 6
MAX_INTEGER = 2**31 - 1  # any size in a block: torch's kernels index with 32-bit integers
MAX_SPEC_BYTES = 1 << 20  # a spec file: 100 blocks in the long form take under 20 KB

# A --config file: fmnist's own are under 1 kB.
MAX_CONFIG_BYTES = 1 << 20
# A JSON file of a run folder (metrics.json, cv.json, evaluation.json, ...): far above any file fmnist
# writes (a 5-fold cv.json of 100 epochs: ~200 kB).
MAX_JSON_BYTES = 64 << 20
# Nesting of any JSON or YAML document fmnist reads. Its own documents nest 4 deep at most (a model
# file's `architecture`: {"spec": {"conv0": {...}}}; a config's model_options); 32 leaves headroom
# and stays far below Python's recursion limit (1,000), which a recursive parser must never reach.
MAX_DEPTH = 32
# A seed: numpy's and torch's generators take any 32-bit value; the fold seeds (seed + fold - 1) stay in range.
MAX_SEED = 2**31 - 1
# --threads: a config names at most this many; the machine's own core count is checked when training starts.
MAX_THREADS = 1024


def bytes_text(count: int) -> str:
    """`64 MiB`, `1 GiB`, `1,536 bytes`: a limit or size as a person reads it."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift and count % (1 << shift) == 0:
            return f"{count >> shift:,} {unit}"
    return f"{count:,} bytes"
