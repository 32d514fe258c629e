"""One package per runnable pipeline name (see docs/concepts.md)."""
