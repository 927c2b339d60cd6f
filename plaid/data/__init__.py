"""Dataset builders: structure sources -> prompt/completion ``DatasetDict`` with a dataset card."""

from .build import BuildReport, build_dataset, encode_frame, encode_record, load_built
from .sources import NAMED_DATASETS, download, load_source, resolve_named
from .tasks import DEFAULT_TASK_MIX, TASKS, make_example, parse_task_mix

__all__ = [
    "BuildReport",
    "DEFAULT_TASK_MIX",
    "NAMED_DATASETS",
    "TASKS",
    "build_dataset",
    "download",
    "encode_frame",
    "encode_record",
    "load_built",
    "load_source",
    "make_example",
    "parse_task_mix",
    "resolve_named",
]
