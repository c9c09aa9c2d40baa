"""Build the ~1 GB CSV benchmark input from the flights Parquet file.

    python make_csv.py SRC.parquet OUT.csv [--target-bytes N]

Writes the Parquet rows as CSV (header once) and repeats them, whole copies
only, until the file reaches at least N bytes (default 1e9: 10 copies of the
3M-row flights file, 30M rows). Streams record batches through pyarrow's CSV
writer, so memory stays at a few batches whatever the output size.

Timestamps are written as 'YYYY-MM-DD HH:MM:SS' (the source is whole minutes;
the cast is checked, so sub-second data would fail rather than be truncated)
and strings unquoted (pyarrow fails if a value would need quoting), which is
what a CSV exported by most tools looks like.

The output appears atomically (temp file + rename) next to a stamp file that
records the source hash and target size; a matching stamp means the CSV is
reused.
"""

import argparse
import hashlib
import json
import math
import os
import sys

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

VERSION = 1  # bump when the output format changes


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def csv_batches(pf):
    for batch in pf.iter_batches(batch_size=64 * 1024):
        cols = []
        for col in batch.columns:
            if pa.types.is_timestamp(col.type):
                col = col.cast(pa.timestamp("s", col.type.tz), safe=True)
            cols.append(col)
        yield pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--target-bytes", type=int, default=1_000_000_000)
    args = ap.parse_args()

    stamp_path = args.out + ".stamp"
    stamp = {"version": VERSION, "src_sha256": sha256(args.src), "target_bytes": args.target_bytes}
    if os.path.exists(args.out) and os.path.exists(stamp_path):
        with open(stamp_path) as f:
            old = json.load(f)
        if all(old.get(k) == v for k, v in stamp.items()):
            print(f"{args.out} up to date ({old['rows']} rows, {os.path.getsize(args.out)} bytes)", file=sys.stderr)
            return

    pf = pq.ParquetFile(args.src)
    tmp = args.out + ".tmp"
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    rows = 0
    with open(tmp, "wb") as sink:
        # Plain header line (pyarrow would quote the names).
        sink.write((",".join(pf.schema_arrow.names) + "\n").encode())
        writer = None
        copies = 1
        copy = 0
        while copy < copies:
            for batch in csv_batches(pf):
                if writer is None:
                    writer = pacsv.CSVWriter(sink, batch.schema, write_options=options)
                writer.write_batch(batch)
                rows += batch.num_rows
            copy += 1
            if copy == 1:
                sink.flush()
                one = sink.tell()
                copies = max(1, math.ceil(args.target_bytes / one))
                print(f"one copy = {one} bytes, {rows} rows; writing {copies} copies", file=sys.stderr)
        writer.close()
    os.replace(tmp, args.out)
    stamp["rows"] = rows
    with open(stamp_path, "w") as f:
        json.dump(stamp, f)
    print(f"wrote {args.out}: {rows} rows, {os.path.getsize(args.out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
