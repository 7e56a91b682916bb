"""Runtime tasks (semantic, instance), chosen by ``ArtifactMetadata.task`` (see base.py)."""

from __future__ import annotations

from segedge.runtime.tasks.base import (
    DecodeOptions,
    FrameDrawer,
    FrameResult,
    FrameStats,
    RuntimeTask,
    get_task,
    register_task,
    task_names,
)

__all__ = ["DecodeOptions", "FrameDrawer", "FrameResult", "FrameStats", "RuntimeTask",
           "get_task", "register_task", "task_names"]
