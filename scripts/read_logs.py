#!/usr/bin/env python3
"""Independent reader of promptgate's Parquet logs (pyarrow).

Opens every `*.parquet` file under DIR (skipping hidden temporaries `.tmp-*`
and `quarantine/`), reads it completely, and prints one JSON object:

  {"files": N, "rows": R, "live_rows": L, "unreadable": [...]}

`rows` counts every file; `live_rows` leaves out files superseded by a
compaction output (named in the `promptgate.compacted_from` key-value
metadata of a `merged-*` file in the same folder), i.e. what promptgate's
readers return. Exits 1 if any file cannot be read.

Usage: read_logs.py DIR [--include-hidden]
"""

import json
import os
import sys

import pyarrow.parquet as pq


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    include_hidden = "--include-hidden" in sys.argv[1:]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = args[0]
    files = rows = live_rows = 0
    unreadable = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "quarantine" and (include_hidden or not d.startswith(".")))
        counts = {}
        superseded = set()
        for name in sorted(names):
            if not name.endswith(".parquet") or (name.startswith(".") and not include_hidden):
                continue
            path = os.path.join(folder, name)
            try:
                pf = pq.ParquetFile(path)
                table = pf.read()
                meta = pf.metadata.metadata or {}
            except Exception as e:  # noqa: BLE001 - report every failure
                unreadable.append(f"{path}: {e}")
                continue
            files += 1
            counts[name] = table.num_rows
            listed = meta.get(b"promptgate.compacted_from")
            if name.startswith("merged-") and listed:
                superseded.update(n for n in json.loads(listed) if n != name)
        rows += sum(counts.values())
        live_rows += sum(n for name, n in counts.items() if name not in superseded)
    print(json.dumps({"files": files, "rows": rows, "live_rows": live_rows, "unreadable": unreadable}))
    return 1 if unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
