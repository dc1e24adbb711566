#!/usr/bin/env python3
"""A small text-to-text task for switchc's text path (prepare --spm, train, eval, generate --input), generated
deterministically (seeded, no downloads), and a SentencePiece unigram model trained on it with T5's special ids
(pad 0, eos 1, unk 2, no bos). Writes train.jsonl, validation.jsonl, spiece.model into tests/fixtures/text_task/.

The examples are two easy string functions a tiny model learns part of in a short CPU run:
  {"input": "sum: three plus four", "target": "seven"}
  {"input": "reverse: the red cat sat", "target": "sat cat red the"}

Usage: scripts/make_text_task.py [--out DIR] [--train N] [--validation N] [--vocab V] [--seed S]
"""
import argparse
import io
import json
import os
import random

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
           "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"]
WORDS = """the a red blue green small big old new cat dog bird fish tree house car boat sun moon star sat ran saw ate sang
slept jumped on under near with and happy sad fast slow river hill road book apple bread cheese milk water tea coffee
cake honey salt sugar garden forest field meadow mountain valley island ocean lake pond stream bridge tower castle
village city town street market school library museum kitchen window door table chair bed lamp clock mirror
picture letter paper pencil basket bottle bucket candle blanket pillow jacket shirt shoe boot hat glove ring coin
horse cow sheep goat pig duck goose chicken mouse rabbit fox wolf bear deer lion tiger monkey snake frog turtle
whale shark owl eagle crow swan bee ant spider butterfly flower rose lily leaf branch root seed grass stone rock
sand snow rain wind cloud storm thunder morning evening night winter summer spring autumn king queen prince
princess farmer baker sailor doctor teacher student child mother father sister brother friend stranger neighbor
yellow purple orange black white brown grey golden silver bright dark quiet loud warm cold soft hard tall short
young tiny huge clever brave gentle lazy busy hungry sleepy angry proud walked climbed swam flew carried found
lost opened closed painted built watched heard called followed lifted pushed pulled dropped caught threw kicked
cooked baked washed cleaned fixed read wrote drew danced laughed smiled cried waited listened over behind beside
across through into from toward around""".split()


def held_out_sum(a, b):
    return (3 * a + b) % 5 == 0  # 20 of the 100 pairs are asked only in validation


def example(rng, validation):
    if rng.random() < 0.5:
        while True:
            a, b = rng.randrange(10), rng.randrange(10)
            if held_out_sum(a, b) == validation:
                return {"input": f"sum: {NUMBERS[a]} plus {NUMBERS[b]}", "target": NUMBERS[a + b]}
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 5))]
    return {"input": "reverse: " + " ".join(words), "target": " ".join(reversed(words))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "tests", "fixtures", "text_task")))
    ap.add_argument("--train", type=int, default=2400)
    ap.add_argument("--validation", type=int, default=200)
    ap.add_argument("--vocab", type=int, default=300)
    ap.add_argument("--seed", type=int, default=20240611)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    seen, splits = set(), {"train": [], "validation": []}
    # held out by construction: validation sums use pairs training never sees, validation word lists never occur
    # in training
    for name, count in (("validation", args.validation), ("train", args.train)):
        while len(splits[name]) < count:
            ex = example(rng, name == "validation")
            if ex["input"].startswith("reverse:"):
                if name == "train" and ex["input"] in seen:
                    continue
                seen.add(ex["input"])
            splits[name].append(ex)
    os.makedirs(args.out, exist_ok=True)
    for name, rows in splits.items():
        with open(os.path.join(args.out, f"{name}.jsonl"), "w", encoding="utf-8", newline="\n") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    import sentencepiece as spm  # pip install sentencepiece

    sentences = [s for r in splits["train"] for s in (r["input"], r["target"])]
    model = io.BytesIO()
    # identity normalisation keeps the .model small (no NFKC table); one thread keeps training deterministic;
    # the sentence iterator keeps file paths out of the stored trainer spec
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, model_type="unigram",
                                   vocab_size=args.vocab, character_coverage=1.0, normalization_rule_name="identity",
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1, seed_sentencepiece_size=100000,
                                   shuffle_input_sentence=False, minloglevel=2)
    with open(os.path.join(args.out, "spiece.model"), "wb") as f:
        f.write(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    ex = splits["validation"][0]
    print(f"{args.out}: {args.train} train, {args.validation} validation examples; spiece.model {sp.get_piece_size()} pieces, "
          f"{len(model.getvalue())} bytes; e.g. {ex['input']!r} -> {sp.encode(ex['input'], out_type=str)}")


if __name__ == "__main__":
    main()
