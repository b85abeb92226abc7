"""Detection ops with torchvision's names: ``roi_pool``, ``roi_align``, ``RoIPool``, ``RoIAlign``."""
from .roi import *  # noqa: F401,F403
