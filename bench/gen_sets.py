#!/usr/bin/env python3
"""Deterministic generators of the scale benchmark's two data sets.

    gen_sets.py many-files DIR [--files N] [--seed S]
        N small files (default 1,000,000; 40 B to 4 KiB, about 1 KiB on average, text with a
        few words in common, like configuration and metadata files) in folders of 100, two
        levels deep, like a DSS instance's project and job folders. Measures what grows with
        the number of files: memory, time per file, the first file written by a restore.

    gen_sets.py large-file DIR [--size-mib M] [--seed S]
        One large compressible file (default 2048 MiB of SQL-dump-like text, rows with
        repeated words and changing numbers: what a streamed pg_dump looks like) and one
        incompressible file of an eighth of that size. Measures whether one file keeps every
        core busy.

Python 3.9+ standard library only; same arguments, same bytes, names and mtimes.
"""

import argparse
import os
import random
import sys

KiB = 1 << 10
MiB = 1 << 20
BASE_EPOCH = 1_714_000_000

WORDS = (
    "customer order product sales revenue forecast churn score model train test split feature "
    "target label region country city store channel campaign click session user account "
    "invoice payment refund shipment warehouse supplier inventory price discount margin cost "
    "dataset recipe scenario trigger step job activity flow zone pipeline notebook insight"
).split()


def fresh_dir(path):
    if os.path.exists(path) and os.listdir(path):
        sys.exit(f"{path} exists and is not empty")
    os.makedirs(path, exist_ok=True)


def text_pool(rng, size):
    """size bytes of words and numbers, to slice file contents from."""
    out = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        line += f" {rng.randint(0, 10**9)}\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def many_files(root, files, seed):
    rng = random.Random(seed)
    fresh_dir(root)
    pool = text_pool(rng, 8 * MiB)
    per_dir = 100
    dirs = (files + per_dir - 1) // per_dir
    per_top = 100
    written = 0
    total = 0
    for d in range(dirs):
        top = os.path.join(root, f"project-{d // per_top:04d}")
        sub = os.path.join(top, f"job-{d % per_top:03d}")
        os.makedirs(sub, exist_ok=True)
        for f in range(min(per_dir, files - written)):
            # Sizes: mostly small, a few of a few KiB (a log-normal-ish mix).
            size = min(4 * KiB, int(rng.expovariate(1 / 900)) + 40)
            start = rng.randrange(0, len(pool) - size)
            path = os.path.join(sub, f"file-{f:03d}.json")
            with open(path, "wb") as fh:
                fh.write(pool[start:start + size])
            t = BASE_EPOCH - rng.randrange(0, 180 * 86400)
            os.utime(path, (t, t))
            written += 1
            total += size
    print(f"many-files: {written} files in {dirs} folders, {total / MiB:.1f} MiB, under {root}")


def large_file(root, size_mib, seed):
    rng = random.Random(seed)
    fresh_dir(root)
    # Text: a pool of rows, repeated with a changing row number, so that it compresses about
    # as well as a real dump (3-5x with zstd) without being one repeated block.
    pool = text_pool(rng, 4 * MiB)
    path = os.path.join(root, "database.sql")
    with open(path, "wb") as fh:
        written = 0
        block = 0
        while written < size_mib * MiB:
            n = min(MiB, size_mib * MiB - written)
            start = rng.randrange(0, len(pool) - MiB)
            header = f"-- block {block}\n".encode()
            data = (header + pool[start:start + n])[:n]
            fh.write(data)
            written += n
            block += 1
    binary = os.path.join(root, "model.bin")
    brng = random.Random(seed + 1)
    with open(binary, "wb") as fh:
        for _ in range(max(1, size_mib // 8)):
            fh.write(brng.randbytes(MiB))
    for p in (path, binary):
        os.utime(p, (BASE_EPOCH, BASE_EPOCH))
    print(f"large-file: {size_mib} MiB of text in {path}, {max(1, size_mib // 8)} MiB random in {binary}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set", choices=["many-files", "large-file"])
    ap.add_argument("dir")
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    if a.set == "many-files":
        many_files(a.dir, a.files, a.seed)
    else:
        large_file(a.dir, a.size_mib, a.seed)


if __name__ == "__main__":
    main()
