"""Raw files -> records -> uint8 cache. No torch.

Reads image collections in place (folders, zip and tar archives, several merged into one),
decides what each path is (:mod:`.layouts`), decodes, validates and preprocesses images
(:mod:`.imaging`, :mod:`.frame_crop`), builds the row-aligned records and pixel cache
(:mod:`.scan`, :mod:`.spool`, :mod:`.shards`), assigns splits (:mod:`.splits`), records how
the cache was made (:mod:`.provenance`) and downloads public archives (:mod:`.download`).
"""
