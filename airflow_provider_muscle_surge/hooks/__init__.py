"""Hooks: the sync :class:`SegmindHook` for workers and :class:`SegmindAsyncHook` for triggers."""
