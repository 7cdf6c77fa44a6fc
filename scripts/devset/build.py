#!/usr/bin/env python3
"""Builds tests/data/llm_routing/{val,test}.jsonl from the hand-written prompts in this folder.

The prompts were written from scratch for the shipped routes.yaml (no public data set was copied) and were
not adjusted after looking at any model's scores. Each prompt carries tags:

- language: en, es, fr, de (exactly one);
- length: long (60-250 words, counted here) or short (under 60 words); tagged automatically;
- optional: typo (misspellings / no punctuation), multi (several sentences or requests),
  hard (an out-of-scope prompt that borrows a route's vocabulary, or an in-scope prompt that borrows
  another route's vocabulary);
- conversations (p_conv.py): `conv` and `followup` (the last turn leans on the earlier ones) or `switch`
  (it changes the topic); their `context` holds the earlier user turns, oldest first.

The split is deterministic: within each (label, language, length) group, prompts alternate val / test in
the order written (starting with val and test in turn from group to group), so both halves have the same mix.

Run from the repository root:  python3 scripts/devset/build.py
"""
import collections
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import p_code, p_text, p_service, p_data_legal, p_long, p_oos, p_conv  # noqa: E402

LANGS = {"en", "es", "fr", "de"}
EXTRA = {"typo", "multi", "hard"}


def words(text):
    return len(re.findall(r"\S+", text))


def main():
    items = []
    for mod in (p_code, p_text, p_service, p_data_legal, p_long, p_oos):
        items.extend(mod.ITEMS)
    seen = set()
    out = []
    for label, tags, text in items:
        text = text.strip("\n")
        if text in seen:
            sys.exit(f"duplicate prompt: {text[:60]!r}")
        seen.add(text)
        tags = tags.split() if tags else []
        lang = [t for t in tags if t in LANGS] or ["en"]
        extra = [t for t in tags if t in EXTRA]
        bad = [t for t in tags if t not in LANGS | EXTRA]
        if bad or len(lang) != 1:
            sys.exit(f"bad tags {tags} on {text[:60]!r}")
        n = words(text)
        if n > 250:
            sys.exit(f"{n} words (> 250): {text[:60]!r}")
        length = "long" if n >= 60 else "short"
        out.append({"text": text, "label": label, "tags": lang + [length] + sorted(extra)})
    groups = collections.defaultdict(list)
    for s in out:
        groups[(s["label"], s["tags"][0], s["tags"][1])].append(s)
    val, test = [], []
    # Groups of odd size give their extra prompt to val and test in turn, so the halves stay even.
    for j, g in enumerate(groups.values()):
        for i, s in enumerate(g):
            (val if (i + j) % 2 == 0 else test).append(s)
    # Conversations (p_conv) split on their own, alternating within each (label, kind) group, after the
    # single prompts: adding them left the single prompts' split as it was.
    conv_groups = collections.defaultdict(list)
    for label, kind, context, text in p_conv.ITEMS:
        if text in seen:
            sys.exit(f"duplicate prompt: {text[:60]!r}")
        seen.add(text)
        s = {"text": text, "label": label, "tags": ["en", "short", "conv", kind], "context": context}
        out.append(s)
        conv_groups[(label, kind)].append(s)
    for j, g in enumerate(conv_groups.values()):
        for i, s in enumerate(g):
            (val if (i + j) % 2 == 0 else test).append(s)
    key = {id(s): i for i, s in enumerate(out)}
    val.sort(key=lambda s: key[id(s)])
    test.sort(key=lambda s: key[id(s)])
    d = os.path.join("tests", "data", "llm_routing")
    os.makedirs(d, exist_ok=True)
    for name, part in (("val.jsonl", val), ("test.jsonl", test)):
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            for s in part:
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
    # A summary, so the composition is checked whenever the files are rebuilt.
    c = collections.Counter()
    for s in out:
        scope = "in" if s["label"] else "oos"
        c[scope] += 1
        for t in s["tags"]:
            c[(scope, t)] += 1
    total = len(out)
    print(f"{total} prompts: {c['in']} in scope, {c['oos']} out of scope; val {len(val)}, test {len(test)}")
    for t in ["en", "es", "fr", "de", "long", "short", "typo", "multi", "hard", "conv", "followup", "switch"]:
        a, b = c[("in", t)], c[("oos", t)]
        print(f"  {t:6} in {a:4}  oos {b:4}  ({(a + b) / total:.1%})")
    per = collections.Counter(s["label"] for s in out)
    print("  per route:", dict(sorted((k or "<oos>", v) for k, v in per.items())))


if __name__ == "__main__":
    main()
