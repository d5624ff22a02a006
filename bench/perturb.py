#!/usr/bin/env python3
"""Build a 1,000,000-row CSV by repeating and perturbing it_service_tickets.

Each source row appears once unchanged, then as perturbed copies: a word
dropped, two neighbours swapped, a word repeated, or a character typo. Seeded,
so every run writes the same file.
"""
import csv
import random
import sys

src, dst, total = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
rng = random.Random(1234)
with open(src, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
header, rows = rows[0], rows[1:]


def perturb(text):
    words = text.split()
    if len(words) < 3:
        return text + " " + rng.choice(["thanks", "please", "asap", "regards"])
    op = rng.randrange(4)
    i = rng.randrange(len(words))
    if op == 0:
        del words[i]
    elif op == 1 and i + 1 < len(words):
        words[i], words[i + 1] = words[i + 1], words[i]
    elif op == 2:
        words.insert(i, words[i])
    else:
        w = words[i]
        j = rng.randrange(len(w))
        words[i] = w[:j] + rng.choice("abcdefghijklmnopqrstuvwxyz") + w[j + 1:]
    return " ".join(words)


with open(dst, "w", newline="", encoding="utf-8") as f:
    out = csv.writer(f)
    out.writerow(header)
    n = 0
    while n < total:
        for text, label in rows:
            if n >= total:
                break
            out.writerow([text if n < len(rows) else perturb(text), label])
            n += 1
print(f"wrote {n} rows to {dst}", file=sys.stderr)
