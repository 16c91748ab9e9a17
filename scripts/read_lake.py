#!/usr/bin/env python3
"""Independent reader of promptgate's log lake on S3-compatible storage (pyarrow).

Lists every object under s3://BUCKET/PREFIX/requests/ with pyarrow's
S3FileSystem (endpoint_override: works offline against moto or MinIO),
reads each one completely as Parquet, and prints one JSON object:

  {"files": N, "rows": R, "request_ids": [...], "unreadable": [...],
   "replicas": {"<object name prefix>": files}}

With --download DEST it also writes every object (requests/ and feedback/)
under DEST with the same relative paths, a local log root.
Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment.
Exits 1 if an object cannot be read.

Usage: read_lake.py ENDPOINT BUCKET/PREFIX [--download DEST]
"""

import json
import os
import sys

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def main() -> int:
    args = sys.argv[1:]
    if len(args) not in (2, 4):
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, base = args[0], args[1].strip("/")
    dest = args[3] if len(args) == 4 and args[2] == "--download" else None
    scheme, _, host = endpoint.partition("://")
    fs = pafs.S3FileSystem(
        endpoint_override=host,
        scheme=scheme,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region=os.environ.get("AWS_REGION", "us-east-1"),
        allow_bucket_creation=False,
    )
    out = {"files": 0, "rows": 0, "request_ids": [], "unreadable": [], "replicas": {}}
    for kind in ("requests", "feedback"):
        sel = pafs.FileSelector(f"{base}/{kind}", recursive=True, allow_not_found=True)
        for info in fs.get_file_info(sel):
            if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet"):
                continue
            try:
                with fs.open_input_file(info.path) as f:
                    data = f.read()
                table = pq.read_table(pa.BufferReader(data))
            except Exception as e:  # noqa: BLE001 - reported, exit 1
                out["unreadable"].append(f"{info.path}: {e}")
                continue
            if dest is not None:
                rel = info.path[len(base) + 1 :]
                path = os.path.join(dest, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as w:
                    w.write(data)
            if kind != "requests":
                continue
            out["files"] += 1
            out["rows"] += table.num_rows
            out["request_ids"].extend(table.column("request_id").to_pylist())
            replica = info.base_name.split("-part-")[0]
            out["replicas"][replica] = out["replicas"].get(replica, 0) + 1
    print(json.dumps(out))
    return 1 if out["unreadable"] else 0


if __name__ == "__main__":
    sys.exit(main())
