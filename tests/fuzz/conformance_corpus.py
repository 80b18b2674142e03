#!/usr/bin/env python3
"""Writes each DTDL conformance case's `input` (a batch of documents) as one fuzz input.

Usage: conformance_corpus.py <conformance-v3 dir> <corpus dir>
"""
import json
import os
import sys

src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
n = 0
for name in sorted(os.listdir(src)):
    if not name.endswith(".json"):
        continue
    with open(os.path.join(src, name), encoding="utf-8-sig") as f:
        cases = json.load(f)
    for i, case in enumerate(cases):
        with open(os.path.join(dst, f"{name[:-5]}-{i}.json"), "w") as out:
            json.dump(case["input"], out)
        n += 1
print(f"{n} inputs written to {dst}")
