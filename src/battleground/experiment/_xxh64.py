"""The seed-era path of the vectorised XXH64 (it lives in :mod:`battleground._xxh64`, below storage and
experiment alike, since both hash)."""

from battleground._xxh64 import *  # noqa: F403
from battleground._xxh64 import __all__  # noqa: F401
