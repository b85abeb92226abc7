"""Which file names are images (no Pillow needed: ``nnlite run`` decides with it before
importing ``nnlite.vision``)."""
import os

#: File name endings treated as images by ``nnlite run --input`` and ``nnlite predict``.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm", ".pnm")


def is_image_path(path):
    """True when ``path`` ends in one of ``IMAGE_EXTENSIONS`` (case-insensitive)."""
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)
