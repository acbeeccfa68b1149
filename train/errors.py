"""The errors a dataset raises, each naming the run, node, file or line and what was expected."""

from baobab.errors import BaobabError


class DatasetError(BaobabError, ValueError):
    """A dataset cannot be built or read: a run is missing, a file is malformed, an option is wrong."""


class HeldOutError(DatasetError):
    """An item of a held-out split (a benchmark's test set) would enter a dataset; the message names it."""


class TrainError(BaobabError, ValueError):
    """Training cannot start or go on: a bad example (file and line named), option, base model or checkpoint."""
