#!/usr/bin/env python3
"""Independent reader check of a promptgate Parquet file (pyarrow, not Rust).

Asserts the Arrow schema (typed columns, not one JSON blob), the compression
of every column chunk, the row count and, optionally, key-value metadata.
Prints one line `OK ...` and exits 0, or prints every mismatch and exits 1.
Exit 2: the file could not be read or the arguments are wrong.

    pip install pyarrow
    scripts/check_parquet.py datasets/capitals/snapshots/v1.parquet \\
        --expect-columns id:string,country:string,expected:string \\
        --expect-rows 12 --expect-meta promptgate.dataset=capitals

Column types are pyarrow type names: string, int64, double, bool, ...
Append `?` to a type to require a nullable column, `!` for non-nullable
(e.g. `id:string!,note:string?`); without either, nullability is not checked.
"""

import argparse
import sys


def parse_columns(spec):
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if ":" not in item:
            raise SystemExit(f"--expect-columns: `{item}` is not name:type")
        name, typ = item.split(":", 1)
        nullable = None
        if typ.endswith("?"):
            typ, nullable = typ[:-1], True
        elif typ.endswith("!"):
            typ, nullable = typ[:-1], False
        out.append((name, typ, nullable))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--expect-columns", help="name:type,... in file order")
    ap.add_argument("--expect-rows", type=int)
    ap.add_argument("--expect-compression", default="zstd")
    ap.add_argument(
        "--expect-meta", action="append", default=[], help="key=value (repeatable)"
    )
    args = ap.parse_args()

    try:
        import pyarrow.parquet as pq
    except ImportError:
        print("check_parquet: pyarrow is not installed (pip install pyarrow)", file=sys.stderr)
        return 2
    try:
        pf = pq.ParquetFile(args.path)
        table = pf.read()
    except Exception as e:  # noqa: BLE001 - any reader failure is a failed check
        print(f"check_parquet: {args.path}: cannot read: {e}", file=sys.stderr)
        return 2

    errors = []
    schema = table.schema
    if args.expect_columns:
        want = parse_columns(args.expect_columns)
        got = [(f.name, str(f.type), f.nullable) for f in schema]
        if [w[0] for w in want] != [g[0] for g in got]:
            errors.append(f"columns {[g[0] for g in got]}, expected {[w[0] for w in want]}")
        for (name, typ, nullable), (gname, gtyp, gnull) in zip(want, got):
            if name != gname:
                continue
            if typ != gtyp:
                errors.append(f"column `{name}` is {gtyp}, expected {typ}")
            if nullable is not None and nullable != gnull:
                errors.append(
                    f"column `{name}` is {'nullable' if gnull else 'non-nullable'}, "
                    f"expected {'nullable' if nullable else 'non-nullable'}"
                )

    if args.expect_rows is not None and table.num_rows != args.expect_rows:
        errors.append(f"{table.num_rows} rows, expected {args.expect_rows}")

    want_codec = args.expect_compression.upper()
    md = pf.metadata
    for rg in range(md.num_row_groups):
        for c in range(md.num_columns):
            col = md.row_group(rg).column(c)
            if col.compression.upper() != want_codec:
                errors.append(
                    f"row group {rg} column `{col.path_in_schema}` is {col.compression}, "
                    f"expected {want_codec}"
                )

    kv = {k.decode(): v.decode() for k, v in (md.metadata or {}).items()}
    for item in args.expect_meta:
        key, _, value = item.partition("=")
        if kv.get(key) != value:
            errors.append(f"metadata `{key}` is {kv.get(key)!r}, expected {value!r}")

    if errors:
        for e in errors:
            print(f"check_parquet: {args.path}: {e}", file=sys.stderr)
        return 1
    cols = ",".join(f"{f.name}:{f.type}" for f in schema)
    print(f"OK {args.path}: {table.num_rows} rows, {want_codec.lower()}, columns {cols}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
