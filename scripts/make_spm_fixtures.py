#!/usr/bin/env python3
"""Parity fixtures for the native SentencePiece tokenizer (data/spm.c): small models trained here with the
sentencepiece Python package (0.2.x), and held-out lines with the ids and decoded text the library produces.

  python3 scripts/make_spm_fixtures.py [--out tests/fixtures/spm]

Writes into tests/fixtures/spm/:
  <name>.model   unigram models (see MODELS below) and bpe.model (a tiny BPE model: loading it must fail)
  <name>.txt     one held-out line per record, tab-separated:  TEXT <TAB> IDS <TAB> DECODED
                 TEXT and DECODED escape backslash, tab, CR, LF, the other C0 controls, DEL and the bytes of
                 malformed UTF-8 as \\, \\t, \\r, \\n, \\xHH; IDS are decimal, space-separated; DECODED is "="
                 when it equals TEXT (a decoded "=" is written \\=). Every 25th line carries malformed UTF-8
                 (sentencepiece encodes bytes too).
  rules.model    a small model normalized by a 4-rule TSV (a charsmap of a few hundred bytes), and rules.txt.
  denorm.model   m3 with rules.model's charsmap as its denormalizer_spec, and denorm.txt, to cover the decode-side
                 normalizer.

Everything is synthesized from word lists in this file with a seeded generator, so a rerun gives the same text;
training runs single-threaded so the models are reproducible too. Nothing is downloaded. scripts/bench_spm.py
imports gen_lines() from here for its benchmark text.
"""
import argparse
import os
import random
import sys
import tempfile

# ---- word lists -----------------------------------------------------------------------------------------------------
WORDS = {
    "en": "the of and to in is was that for on with as by at from his her they this which have had not are but be "
          "or one all were there when an their said who will would what about more can out other into time people "
          "year know make like just over think also back after work first well way even new want because any these "
          "give day most us weather tokenizer model training switch transformer expert router capacity layer batch "
          "sentence piece unigram language corpus token vocabulary encoder decoder attention gradient optimizer "
          "mountain river village kitchen window garden library question answer morning evening yesterday tomorrow "
          "beautiful wonderful terrible quickly slowly carefully happily although however therefore meanwhile".split(),
    "fr": "le la les un une des et est dans pour que qui pas sur avec très été être avoir fait comme où aussi "
          "déjà été château forêt élève garçon fenêtre hôpital naïve noël cœur sœur œuvre français ça déçu "
          "rivière lumière première bibliothèque événement côté âge même août théâtre crème brûlée".split(),
    "de": "der die das und ist nicht mit sich des auf für im dem den ein eine als auch es an werden aus er "
          "straße grüße mädchen größe übermorgen schön müde fußball käse tür über öffnen ähnlich äpfel "
          "Donaudampfschifffahrt Geschwindigkeitsbegrenzung Frühstück Weißwurst Bäckerei".split(),
    "es": "el la de que y en un ser se no haber por con su para como estar tener le lo todo pero más hacer "
          "niño año mañana señor corazón canción información está también aquí allí después árbol pingüino "
          "¿qué ¡hola España jamón cumpleaños".split(),
    "pt": "não são você coração ação informação também já avó avô pão mãe irmã lição órgão português".split(),
    "pl": "zażółć gęślą jaźń łódź źdźbło świat ćma żółw wąż mężczyzna dziękuję proszę cześć".split(),
    "cs": "příliš žluťoučký kůň úpěl ďábelské ódy řeka čeština dobrý den".split(),
    "tr": "ışık İstanbul çiçek ğüzel şehir öğrenci ılık iğne kırmızı teşekkür".split(),
    "vi": "Tiếng Việt người nước những được không đường thuyền chúng tôi học sinh phở bánh mì".split(),
    "ru": "и в не на я быть он с что а по это она этот к но они мы как из у который то за свой весь год от "
          "так о для ты же все тот мочь вы человек такой его сказать только или ещё бы себя один как уже до "
          "время если сам когда другой вот говорить наш мой знать стать при чтобы дело жизнь кто первый очень "
          "Москва Санкт-Петербург ёлка объявление подъезд щука".split(),
    "uk": "їжак ґанок європа привіт дякую будь ласка".split(),
    "el": "και το να του η της με που την από είναι για τα των δεν θα στο ο ένα σε Αθήνα θάλασσα ουρανός "
          "ευχαριστώ καλημέρα ψυχή ζωή ΑΒΓΔ ελληνικά".split(),
    "zh": "的 一 是 不 了 在 人 有 我 他 这 个 们 中 来 上 大 为 和 国 地 到 以 说 时 要 就 出 会 可 也 你 对 生 能 而 子 那 得 "
          "于 着 下 自 之 年 过 发 后 作 里 用 道 行 所 然 家 种 事 成 方 多 经 么 去 法 学 如 都 同 现 当 没 动 面 起 看 定 天 分 "
          "还 进 好 小 部 其 些 主 样 理 心 她 本 前 开 但 因 只 从 想 实 北京 上海 中华人民共和国 机器学习 自然语言处理 "
          "分词器 模型 训练".split(),
    "ja": "これは 日本語 の テスト です ひらがな カタカナ 東京 大阪 ありがとう ございます こんにちは 世界 "
          "トークナイザー 機械学習 ｶﾀｶﾅ ﾃｽﾄ".split(),
    "ko": "안녕하세요 한국어 감사합니다 서울 대한민국 사랑해요 컴퓨터 학교 친구".split(),
    "ar": "في من على إلى أن هذا التي الذي مع كان عن ما هو هي اللغة العربية مرحبا شكرا السلام عليكم كتاب مدرسة".split(),
    "he": "שלום עולם תודה רבה עברית ספר בית".split(),
    "hi": "के है में की और को से का एक यह पर हैं भी नहीं था लिए कर हिन्दी भाषा नमस्ते धन्यवाद भारत दिल्ली".split(),
    "th": "สวัสดี ครับ ภาษาไทย ขอบคุณ กรุงเทพ".split(),
}
EMOJI = ["😀", "😂", "🥲", "❤️", "👍", "👍🏽", "🎉", "🚀", "🔥", "🇩🇪", "🇯🇵", "👨‍👩‍👧", "🤖", "☕", "⭐", "✅", "🏳️‍🌈"]
PUNCT = [".", ",", "!", "?", ";", ":", "…", "—", "–", "(", ")", "\"", "'", "«", "»", "„", "“", "”", "‘", "’",
         "[", "]", "{", "}", "/", "\\", "@", "#", "%", "&", "*", "+", "=", "<", ">", "|", "~", "^", "`", "$", "€", "£",
         "¥", "§", "°", "±", "×", "÷"]
# Characters nfkc changes (full-width, ligatures, compatibility forms, superscripts, circled, roman numerals, units,
# half-width katakana) and combining marks: where the charsmap does the work.
NFKC_BAIT = ["ＡＢＣ", "ｈｅｌｌｏ", "１２３", "！", "？", "ﬁ", "ﬂ", "ﬃ", "ﬀ", "x²", "H₂O", "①", "②", "Ⅻ", "ⅷ", "㎏", "㎞",
             "㍻", "™", "℃", "½", "¼", "…", "ｶﾞ", "ﾊﾟ", "e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323",
             "\u00a0", "\u3000", "\u2002", "\u2009", "\u200b", "\ufeff", "ℌ", "𝐀𝐁", "𝟙𝟚", "ǅ", "Ǆ", "ﷺ", "ﷲ", "Å", "Ω",
             "K", "ſ", "ẛ", "ﹰ", "ﻻ", "︵", "〔", "〕", "゛", "ㄱ", "ᄀ", "\u00ad", "\u2028", "\u0085", "\u1680"]
# Characters unlikely to be in any small vocabulary: unknown pieces or byte fallback.
RARE = ["Ꭰ", "ᎣᏏᏲ", "ሰላም", "ⴰⵣⵓⵍ", "ꦲꦏ꧀ꦱꦫ", "ᠮᠣᠩᠭᠣᠯ", "ཀ", "ᚠᚢᚦ", "𐌰𐌱", "𓀀", "𝄞", "🜁", "\ue000", "\uf8ff",
        "\U000f0000", "\U0010fffd", "\ufffd", "\ufffe", "龘", "靐", "齉", "ꙮ", "Ⰰ", "ⱥ", "ꝏ", "ஆ", "தமிழ்", "ქართული",
        "Հայերեն", "ᜀ", "ꤰ", "ꯀ", "ߊ", "ࠀ", "ހ", "ܐ", "\x01", "\x7f", "\x1b", "\x00"]
SPACES = [" ", " ", " ", " ", "  ", "   ", "\t", " \t ", "\u00a0", "\u3000", "\n", "\r\n"]


def word(rng, lang):
    w = rng.choice(WORDS[lang])
    r = rng.random()
    if r < 0.08:
        w = w.capitalize()
    elif r < 0.1:
        w = w.upper()
    return w


def number(rng):
    k = rng.random()
    if k < 0.3:
        return str(rng.randint(0, 100))
    if k < 0.5:
        return f"{rng.randint(1000, 9999999):,}"
    if k < 0.65:
        return f"{rng.uniform(-1000, 1000):.{rng.randint(1, 4)}f}"
    if k < 0.75:
        return f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if k < 0.85:
        return f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000000, 9999999)}"
    return f"{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}"


def sentence(rng, lang, n):
    parts = []
    for _ in range(n):
        r = rng.random()
        if r < 0.82:
            parts.append(word(rng, lang))
        elif r < 0.88:
            parts.append(number(rng))
        elif r < 0.93:
            parts.append(rng.choice(PUNCT))
        elif r < 0.96:
            parts.append(rng.choice(EMOJI))
        else:
            parts.append(word(rng, rng.choice(list(WORDS))))
    sep = "" if lang in ("zh", "ja", "th") and rng.random() < 0.6 else " "
    s = sep.join(parts)
    if rng.random() < 0.7:
        s += rng.choice([".", "!", "?", "。", "؟", "।", "…"])
    return s


def nasty(rng):
    """Lines built to hit the normalizer's and encoder's corners."""
    k = rng.randrange(14)
    if k == 0:
        return ""
    # k: (separator, pool, fewest, most): that many picks from the pool, joined
    joined = {1: ("", SPACES[:9], 1, 6), 4: (" ", RARE, 2, 5), 5: ("", RARE, 2, 6), 6: (" ", NFKC_BAIT, 1, 8),
              7: ("", NFKC_BAIT, 1, 8), 8: ("", EMOJI, 1, 6), 9: ("", PUNCT, 1, 10)}
    if k in joined:
        sep, pool, lo, hi = joined[k]
        return sep.join(rng.choice(pool) for _ in range(rng.randint(lo, hi)))
    if k == 2:
        return rng.choice(SPACES[:9]) + sentence(rng, rng.choice(list(WORDS)), rng.randint(1, 6)) + rng.choice(SPACES[:9])
    if k == 3:
        return rng.choice(RARE)
    if k == 10:  # odd whitespace inside a sentence
        words = sentence(rng, rng.choice(list(WORDS)), rng.randint(2, 8)).split(" ")
        return "".join(w + rng.choice(SPACES) for w in words)
    if k == 11:  # user-defined-symbol and control-symbol look-alikes, sentinels
        bits = ["<sep>", "<cls>", "[MASK]", "<ctl>", "<s>", "</s>", "<unk>", "<pad>", "<extra_id_0>", "▁", "▁▁",
                "_", "http://", "™", "<0x41>", "<0xZZ>", "<<sep>>", "<se", "p>"]
        return " ".join(rng.choice(bits + [word(rng, "en")]) for _ in range(rng.randint(1, 7)))
    if k == 12:  # a long run of one character
        return rng.choice(["a", "x", "0", "の", "ы", " ", "▁", "-", "=", "😀"]) * rng.randint(2, 60)
    # digits and mixed scripts without spaces
    return "".join(rng.choice([number(rng), word(rng, rng.choice(list(WORDS))), rng.choice(EMOJI)]) for _ in range(rng.randint(2, 6)))


# Lines where an earlier version of data/spm.c disagreed with sentencepiece, found by comparing both on random
# text: each model's held-out set starts with them. The first needs max_score = the largest NORMAL score for the
# user-defined "▁the" (m3); the second separates float from double path scores.
REGRESSION_LINES = ["these year were for +16 111 5797429 into garden year \u2615 who Encoder #", "\u306e" * 47,
                    "these year were for +16 111"]


def gen_lines(seed, n, nasty_share=0.15):
    """n lines of text, deterministic for a given seed."""
    rng = random.Random(seed)
    langs = list(WORDS)
    weights = [12 if l in ("en", "ru", "zh") else 4 for l in langs]
    out = []
    for _ in range(n):
        if rng.random() < nasty_share:
            out.append(nasty(rng))
        else:
            lang = rng.choices(langs, weights)[0]
            out.append(sentence(rng, lang, rng.randint(2, 12)))
    return out


# ---- models ---------------------------------------------------------------------------------------------------------
# (name, sentencepiece trainer arguments, held-out lines)
MODELS = [
    # T5's conventions (pad 0, eos 1, unk 2, no bos), the default nmt_nfkc normalizer; unknown characters become <unk>.
    ("m1_nmt_nfkc", dict(vocab_size=2000, character_coverage=0.995, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                         control_symbols=["<ctl>"]), 2000),
    # byte fallback with nfkc_cf (case folding) and split digits: unknown characters become <0xXX> pieces; user-defined
    # symbols that the charsmap would rewrite (they must pass through unnormalized).
    ("m2_byte_fallback", dict(vocab_size=2000, character_coverage=0.98, byte_fallback=True,
                              normalization_rule_name="nfkc_cf", split_digits=True,
                              user_defined_symbols=["ＡＢＣ", "ﬁ", "x²", "①②", "<sep>", "Hello"]), 2000),
    # identity normalizer, user-defined symbols, extra whitespace kept.
    ("m3_identity_user", dict(vocab_size=1600, character_coverage=0.995, normalization_rule_name="identity",
                              user_defined_symbols=["<sep>", "<cls>", "[MASK]", "▁the", "http://", "™", "ab", "ing"],
                              remove_extra_whitespaces=False), 2000),
    # identity, no dummy prefix, whitespace as a suffix, byte fallback; escape_whitespaces is switched off after
    # training (the unigram trainer insists on it), so spaces reach the encoder as spaces and fall back to <0x20>.
    ("m4_suffix_noprefix", dict(vocab_size=1600, character_coverage=0.99, normalization_rule_name="identity",
                                add_dummy_prefix=False, treat_whitespace_as_suffix=True, byte_fallback=True), 2000),
]
COMMON = dict(model_type="unigram", num_threads=1, shuffle_input_sentence=False, input_sentence_size=0,
              max_sentencepiece_length=16, train_extremely_large_corpus=False, minloglevel=2)


def escape(s):
    """s: str, or bytes that may hold invalid UTF-8 (those bytes are written as \\xHH)."""
    if isinstance(s, bytes):
        s = s.decode("utf-8", errors="surrogateescape")
    b = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            b.append("\\\\")
        elif ch == "\t":
            b.append("\\t")
        elif ch == "\n":
            b.append("\\n")
        elif ch == "\r":
            b.append("\\r")
        elif o < 0x20 or o == 0x7F or 0xDC80 <= o <= 0xDCFF:
            b.append(f"\\x{o & 0xFF:02x}")
        else:
            b.append(ch)
    out = "".join(b)
    return "\\=" if out == "=" else out  # a lone "=" is the "same as TEXT" marker


# Malformed UTF-8 for the byte-level lines: lone continuation bytes, truncated sequences, overlong forms,
# surrogates, code points past U+10FFFF, bytes that never occur in UTF-8.
BAD_UTF8 = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
            b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff", b"\xe3\x81",
            b"\xf0\x9f\x98", b"\xc3", b"\xe2\x96", b"\xc3\xa9\xa9"]


def corrupt(rng, line):
    """The line as bytes with malformed UTF-8 spliced in at character boundaries."""
    b = line.encode("utf-8")
    for _ in range(rng.randint(1, 3)):
        cuts = [i for i in range(len(b) + 1) if i == len(b) or (b[i] & 0xC0) != 0x80]
        i = rng.choice(cuts)
        b = b[:i] + rng.choice(BAD_UTF8) + b[i:]
    return b


def train(name, lines, args):
    import io

    import sentencepiece as spm
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, **COMMON, **args)
    if not name.startswith("m4"):
        return buf.getvalue()
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    m.ParseFromString(buf.getvalue())
    m.normalizer_spec.escape_whitespaces = False
    return m.SerializeToString()


def write_records(path, sp, lines, seed=0):
    """One record per line; every 25th line goes in as bytes with malformed UTF-8 (sentencepiece accepts bytes)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for k, line in enumerate(lines):
            if k % 25 == 24:
                line = corrupt(rng, line)
            ids = sp.encode(line)
            dec = sp.decode(ids)
            same = dec == (line.decode("utf-8", errors="surrogateescape") if isinstance(line, bytes) else line)
            f.write(f"{escape(line)}\t{' '.join(map(str, ids))}\t{'=' if same else escape(dec)}\n")


def rules_model(tmpdir):
    """A small unigram model whose normalizer is a 4-rule TSV ("ab" -> "AB", "ing" -> "ING", "™" -> "(TM)",
    "q" -> ""): a charsmap of a few hundred bytes, kept as rules.model (a quick seed for the fuzzer, and a parity
    fixture of its own); its charsmap also serves denorm.model."""
    import sentencepiece as spm
    tsv = os.path.join(tmpdir, "rules.tsv")
    with open(tsv, "w", encoding="utf-8") as f:
        rules = [("ab", "AB"), ("ing", "ING"), ("™", "(TM)"), ("q", "")]
        for src, dst in rules:
            f.write(" ".join(f"{ord(c):X}" for c in src) + "\t" + " ".join(f"{ord(c):X}" for c in dst) + "\n")
    import io
    buf = io.BytesIO()
    en = WORDS["en"]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(" ".join(en[i:i + 9]) for i in range(len(en))),
                                   model_writer=buf, vocab_size=100,
                                   normalization_rule_tsv=tsv, **COMMON)
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    m.ParseFromString(buf.getvalue())
    m.normalizer_spec.ClearField("normalization_rule_tsv")  # the temporary TSV's path: keep the file reproducible
    return m.SerializeToString()


def add_denormalizer(model_bytes, rules):
    """m3 plus a denormalizer_spec holding the charsmap of rules_model(), applied to decoded text."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    rule = pb.ModelProto()
    rule.ParseFromString(rules)
    m = pb.ModelProto()
    m.ParseFromString(model_bytes)
    m.denormalizer_spec.name = "user_defined"
    m.denormalizer_spec.precompiled_charsmap = rule.normalizer_spec.precompiled_charsmap
    m.denormalizer_spec.add_dummy_prefix = False
    m.denormalizer_spec.remove_extra_whitespaces = False
    m.denormalizer_spec.escape_whitespaces = False
    return m.SerializeToString()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "spm"))
    a = ap.parse_args()
    import sentencepiece as spm
    os.makedirs(a.out, exist_ok=True)
    train_lines = gen_lines(1234, 30000)
    for i, (name, args, n_test) in enumerate(MODELS):
        model = train(name, train_lines, args)
        with open(os.path.join(a.out, name + ".model"), "wb") as f:
            f.write(model)
        sp = spm.SentencePieceProcessor(model_proto=model)
        write_records(os.path.join(a.out, name + ".txt"), sp,
                      REGRESSION_LINES + gen_lines(5000 + i, n_test, nasty_share=0.3), seed=i)
        print(f"{name}: {len(model)} bytes, {sp.get_piece_size()} pieces, {n_test} lines")
        if name.startswith("m3"):
            with tempfile.TemporaryDirectory() as tmp:
                rules = rules_model(tmp)
            with open(os.path.join(a.out, "rules.model"), "wb") as f:
                f.write(rules)
            sp = spm.SentencePieceProcessor(model_proto=rules)
            write_records(os.path.join(a.out, "rules.txt"), sp, gen_lines(6001, 300, nasty_share=0.3))
            print(f"rules: {len(rules)} bytes, 300 lines")
            dm = add_denormalizer(model, rules)
            with open(os.path.join(a.out, "denorm.model"), "wb") as f:
                f.write(dm)
            sp = spm.SentencePieceProcessor(model_proto=dm)
            write_records(os.path.join(a.out, "denorm.txt"), sp, gen_lines(6000, 300, nasty_share=0.3))
            print(f"denorm: {len(dm)} bytes, 300 lines")
    bpe = spm.SentencePieceTrainer
    import io
    buf = io.BytesIO()
    en = WORDS["en"]
    bpe.train(sentence_iterator=iter(" ".join(en[i:i + 9]) for i in range(len(en))), model_writer=buf, vocab_size=150,
              normalization_rule_name="identity", **{**COMMON, "model_type": "bpe"})
    with open(os.path.join(a.out, "bpe.model"), "wb") as f:
        f.write(buf.getvalue())
    print(f"bpe: {len(buf.getvalue())} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
