"""Modality Worklist items in the catalog: storage, files, and the C-FIND query (PS3.4 K).

Blocking functions throughout; an actor runs them in a worker thread.
"""

from xvactor.worklist.files import WorklistFileError, expand_paths, read_worklist_file
from xvactor.worklist.items import WorklistItemError
from xvactor.worklist.query import find_worklist
from xvactor.worklist.store import (
    WorklistSummary,
    add_items,
    create_worklist_schema,
    list_items,
    open_worklist,
    remove_item,
)

__all__ = [
    "WorklistFileError",
    "WorklistItemError",
    "WorklistSummary",
    "add_items",
    "create_worklist_schema",
    "expand_paths",
    "find_worklist",
    "list_items",
    "open_worklist",
    "read_worklist_file",
    "remove_item",
]
