#!/usr/bin/env python3
"""Regenerates python_goldens.json: tricky inputs run through the *official, unmodified* scoring code.

The scorer tests use it on top of test/fixtures/eval/ to pin the corner cases (normalisers, answer parsers,
Python's round/format/float). Nothing here re-implements a rule: each value is what the official function
returns. Needs Python 3 with numpy, and Python 2.7 (for the VQA v2 evaluator), plus checkouts of:

  --tinyllava  TinyLLaVA/TinyLLaVA_Factory @ 53f12c7  (tinyllava/eval/m4c_evaluator.py, eval_pope.py,
               eval_science_qa.py)
  --vqa        GT-Vision-Lab/VQA @ a013f00             (PythonEvaluationTools/vqaEvaluation/vqaEval.py)
  --vizwiz     OpenGVLab/MM-Interleaved @ ac539d0      (mm_interleaved/utils/vizwiz_metrics_src/vqaEval.py)
  --mmmu       MMMU-Benchmark/MMMU @ bb0b95a           (mmmu/utils/eval_utils.py)
  --mme        a folder holding MME's eval_tool/calculation.py (tools/eval_tool.zip of
               BradyFU/Awesome-Multimodal-Large-Language-Models @ 1c1d69e, branch Evaluation)
  --python2    a Python 2.7 interpreter

  python3 make_goldens.py --tinyllava T --vqa V --vizwiz Z --mmmu M --mme E --python2 python2.7 > python_goldens.json

Floats are written as repr() strings so that NaN/inf and every bit survive JSON.
"""
import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import types

ap = argparse.ArgumentParser()
for a in ("--tinyllava", "--vqa", "--vizwiz", "--mmmu", "--mme", "--python2"):
    ap.add_argument(a, required=True)
args = ap.parse_args()


def stub(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


# modules the official files import but the functions used here do not need
stub("tqdm", tqdm=lambda x, *a, **k: x)
stub("sklearn")
stub("sklearn.metrics", average_precision_score=None, f1_score=None, accuracy_score=None, precision_score=None,
     recall_score=None, confusion_matrix=None)
for n in ("pycocoevalcap", "pycocoevalcap.tokenizer", "pycocoevalcap.bleu", "pycocoevalcap.meteor",
          "pycocoevalcap.rouge", "pycocoevalcap.cider"):
    stub(n)
stub("pycocoevalcap.tokenizer.ptbtokenizer", PTBTokenizer=None)
stub("pycocoevalcap.bleu.bleu", Bleu=None)
stub("pycocoevalcap.meteor.meteor", Meteor=None)
stub("pycocoevalcap.rouge.rouge", Rouge=None)
stub("pycocoevalcap.cider.cider", Cider=None)


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


m4c = load("m4c", os.path.join(args.tinyllava, "tinyllava/eval/m4c_evaluator.py"))
pope = load("eval_pope", os.path.join(args.tinyllava, "tinyllava/eval/eval_pope.py"))
viz = load("vizwiz_eval", os.path.join(args.vizwiz, "mm_interleaved/utils/vizwiz_metrics_src/vqaEval.py"))
mmmu = load("mmmu_eval_utils", os.path.join(args.mmmu, "mmmu/utils/eval_utils.py"))
mme = load("mme_calculation", os.path.join(args.mme, "eval_tool/calculation.py"))

ANSWERS = [
    "Yes.", "A pizza", "two", "The Hobbit", "www.example.com", "1,000", "3.14", "3.", "a.b.c", "...",
    "." * 40 + "x", "x" + ". " * 35, "dont", "Don't", "it's", "What's", "don't", "couldn'tve", "yall", "y'all",
    "hello, world", "5-6", "5 - 6", "(yes)", "yes!", "no?", "   spaced\tout\nnow  ", "ten", "none", "zero",
    "an apple", "the end", "A", "The", "İstanbul", "ΣΑΣ ΟΔΟΣ", "café", "½", "１２３", "٣.٥", "1,2", "a;b", "a ;b",
    "x/y", "x / y", "12:30", "e.g.", "U.S.A.", "Mr. Smith's dog", "\u00a0nbsp\u00a0", "\u180emongol\u180e",
    "a\u2028b", "tab\there", "#hashtag", "50%", "$5", "a&b", "it'll", "hes", "whats up", "shes", "she's", "I'm",
    "Im", "ive", "wont", "won't", 'say "hi"', "back\\slash", "under_score", "a+b=c", "<b>bold</b>", "@user",
    "`code`", "{json}", "[list]", "100.", "1.5.6", "0.5", ".5", "5.5.", "twenty", "One", "TWO", "Three Four",
    "a-b-c", "1-800-flowers", "'s", "mom's", "it 's", "1, 2, 3", "1 , 2", "1,000,000", "3,", ",3", "", " ",
    "Unanswerable", "unsuitable image", "the the the", "a an the cat", "10.5.", "No, it is not.", "nope",
    "wheres", "whove", "weve", "couldnt’ve", "it’dve", "1,,2", "٣,٥", "?!", "-5", "- 5", "5 -", "non-stop!",
]


def evalai():
    p = m4c.EvalAIAnswerProcessor()
    return [[a, p(a)] for a in ANSWERS]


def vizwiz():
    class Dummy:
        def getImgs(self):
            return []

    ev = viz.VQAEval(Dummy(), Dummy())
    out = []
    for a in ANSWERS:
        r = a.replace("\n", " ").replace("\t", " ").strip()
        out.append([a, ev.processDigitArticle(ev.processPunctuation(r))])
    return out


VQA2_SCRIPT = r"""
import sys, json, io
sys.path.insert(0, sys.argv[1])
from vqaEval import VQAEval
class D(object):
    def getQuesIds(self):
        return []
ev = VQAEval(D(), D())
ans = json.load(io.open(sys.argv[2], encoding="utf-8"))
out = []
for a in ans:
    c = a.replace(u'\n', u' ').replace(u'\t', u' ').strip()
    out.append([a, c, ev.processDigitArticle(ev.processPunctuation(c))])
sys.stdout.write(json.dumps(out))
"""


def vqav2_py2():
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "run.py")
        with open(src, "w") as f:
            f.write(VQA2_SCRIPT)
        inp = os.path.join(d, "in.json")
        with open(inp, "w", encoding="utf-8") as f:
            json.dump(ANSWERS, f)
        res = subprocess.run([args.python2, src, os.path.join(args.vqa, "PythonEvaluationTools/vqaEvaluation"), inp],
                             capture_output=True, check=True)
        return json.loads(res.stdout.decode("utf-8"))


OPEN = [
    "The answer is 12.97", "2.83 V", "1/4", "Transformation", "so the answer is 5.", "x = 3\ny = 4",
    "It is 1,234.5 dollars", "1e-3", "The result is -2.5e10", "Therefore, the final answer is (B).", "0.125",
    "0.375", "2.675", "1.005", "answer: yes", "is ", "The answer is .", "Answer is 3 or 4", "５", "٣",
    "value is ١٢٣", "the value could be 7 so 8", "A", "x", "10,000 people", "1,23", "12,345,678.9", "3.14159",
    "-.5", "Final answer = 42", "nan", "inf", "1_000", "The answer is 1_000", " 3 ", "Thus 2.5%.", "ratio is 3:4",
    "é", "Σ", "x=y=z", "line one. Line two is 5", "\n\n", "", "....", "so so so", "The answer is 7!",
    "It is 5. So it is 6", "the speed is 3 m/s\nso the time is 4 s", "is is", "1.995", "0.005", "-0.005",
    "1,000", "1,0000", "12.345e2", "The answer is approximately 3.", "result is 1.5 and 2.5", "ans=1e5",
]
GOLDS = ["12.97", "2.83", "0.25", "transformation", "5", "x", "1234.5", "0.001", "b", "0.12", "2.67", "1.0",
         "yes", "3", "7", ["3", "4"], "10000", "42", ["a", "b"], "8", "1.99", "0.01"]


def pred_list(preds):
    nums = sorted(repr(p) for p in preds if not isinstance(p, str))
    strs = sorted(p for p in preds if isinstance(p, str))
    return {"numbers": nums, "strings": strs}


def mmmu_open():
    out = []
    for r in OPEN:
        preds = mmmu.parse_open_response(r)
        out.append({
            "response": r,
            "parsed": pred_list(preds),
            "extract_numbers": mmmu.extract_numbers(r),
            "eval_open": [[g, mmmu.eval_open(g, preds)] for g in GOLDS],
        })
    return out


MC = [
    ("A", "ABCD"), ("(B)", "ABCD"), ("The answer is C.", "ABC"), ("(B) 2 s", "ABCD"), ("B.", "ABCD"),
    ("Answer: (A) or (C)", "ABCD"), ("I think it is A or maybe D", "ABCD"), ("A B", "ABCD"), ("(C) (A)", "ABCD"),
    ("The painting is by Picasso without a doubt", "ABCD"), ("Picasso", "ABCD"),
    ("It could be Monet or Picasso, I would say Monet here", "ABCD"), ("none of these apply to me at all", "ABCD"),
    ("''A''", "ABCD"), (",.A.,", "ABCD"), ("E", "ABCD"), ("a", "ABCD"), ("(d)", "ABCD"),
    ("The correct option must be Cubism for this painting", "ABCD"), ("(A)(B)", "ABCD"), ("A) B)", "ABCD"),
]
ANS = {"A": "Monet", "B": "Picasso", "C": "Cubism", "D": "Baroque"}


def mmmu_mc():
    sentinel = "<random>"
    saved = random.choice
    mmmu.random.choice = lambda seq: sentinel
    try:
        out = []
        for resp, letters in MC:
            choices = list(letters)
            idx = {k: v for k, v in ANS.items() if k in choices}
            got = mmmu.parse_multi_choice_response(resp, choices, idx)
            out.append({"response": resp, "all_choices": choices, "index2ans": list(idx.items()),
                        "parsed": None if got == sentinel else got})
        return out
    finally:
        mmmu.random.choice = saved


def mme_parse():
    cal = mme.calculate_metrics()
    raw = ["Yes\n", "No\n", "yes", "no", "Yes, it is.\n", "Not sure\n", "Known\n", "none\n", "Yesterday\n",
           "I don't know\n", "Answer: Yes\n", "\n", "n\n", "nO\n", "Y es\n", "Noo\n", "ano\n", "abcno\n", "İyes\n"]
    return [[r.lower(), cal.parse_pred_ans(r.lower())] for r in raw]


POPE_TEXTS = ["Yes", "No", "yes", "no", "NO", "None", "Not", "Nope", "", "Yes, there is a cup.", "No, there is not.",
              "There is no bench.", "I do not see it.", "no.", "Yes. No.", "not", "No\nthere", "a,no", "a, no",
              "The answer is no", "no-one", "Nothing", "no, no", "Yes.no"]


def pope_parse():
    answers = [{"text": t} for t in POPE_TEXTS]
    with tempfile.TemporaryDirectory() as d:
        label = os.path.join(d, "coco_pope_x.json")
        with open(label, "w") as f:
            for _ in POPE_TEXTS:
                f.write(json.dumps({"label": "yes"}) + "\n")
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            pope.eval_pope(answers, label)
    return [[t, a["text"]] for t, a in zip(POPE_TEXTS, answers)]


SQA_TEXTS = ["A", "B", "E", "F", "A. cat", "B.cat", "C. ", "AB", "The answer is C.", "The answer is BC",
             "The answer is A", "The answer is A.\nThe answer is B.", "The answer is D!", "The answer is E.",
             "The answer is a.", "the answer is B.", "The answer is A\n.", "", "FAILED", "D. The answer is A.",
             "I think The answer is B. or The answer is C.", "Z", "The answer is Z."]


def scienceqa_parse():
    with tempfile.TemporaryDirectory() as d:
        pids = [str(i) for i in range(len(SQA_TEXTS))]
        problems = {p: {"question": "q", "choices": ["a", "b", "c", "d"], "answer": 0, "hint": "", "image": None}
                    for p in pids}
        json.dump(problems, open(os.path.join(d, "problems.json"), "w"))
        json.dump({"test": pids}, open(os.path.join(d, "pid_splits.json"), "w"))
        with open(os.path.join(d, "answers.jsonl"), "w") as f:
            for p, t in zip(pids, SQA_TEXTS):
                f.write(json.dumps({"question_id": p, "prompt": "<image>\nq", "text": t}) + "\n")
        subprocess.run([sys.executable, os.path.join(args.tinyllava, "tinyllava/eval/eval_science_qa.py"),
                        "--base-dir", d, "--result-file", os.path.join(d, "answers.jsonl"),
                        "--output-file", os.path.join(d, "out.json"), "--output-result", os.path.join(d, "res.json")],
                       capture_output=True, check=True)
        out = json.load(open(os.path.join(d, "out.json")))
        res = json.load(open(os.path.join(d, "res.json")))
        parsed = {x["question_id"]: x["parsed_ans"] for x in out["correct"] + out["incorrect"]}
        return [[t, parsed[p], res["results"][p]] for p, t in zip(pids, SQA_TEXTS)]


FLOATS = [0.125, 0.375, 2.675, 1.005, 0.285, 2.5, -2.5, 0.5, 1.5, 84.0, 76.92307692307693, 0.6000000000000001,
          0.5999999999999999, 1e-06, 1e16, 1e15, 123456789.125, 0.0001, 0.00001, -0.0, 1 / 3, 2 / 3, 85.445,
          99.995, 0.045, 1e22, 5e-324, 33.333333333333336, 66.66666666666667, 0.7999993400003444, 2.0 ** 60]


def builtins_py3():
    return {
        "round": [[repr(x), n, repr(round(x, n))] for x in FLOATS for n in (0, 1, 2, 3)],
        "format": [[repr(x), n, ("%." + str(n) + "f") % x] for x in FLOATS for n in (0, 1, 2, 3)],
        "repr": [[repr(x), repr(x)] for x in FLOATS],
        "float": [[s, repr(float(s)) if ok(s) else None] for s in
                  ["1", " 1.5 ", "1_000", "1__0", "_1", "1_", "1e5", "1E-5", ".5", "5.", ".", "", "inf", "-Infinity",
                   "NaN", "nan ", "+3", "--3", "1,000", "１２", "٣.٥", "0x10", "1e", "e5", "1.e5", "\u00a03\u00a0",
                   "3 4", "½", "1e1_0", "1.5_5", "١_٢"]],
        "numpy_round": [[repr(x), n, repr(float(__import__("numpy").round(x, n)))] for x in FLOATS for n in (1, 2)],
    }


def ok(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


ROUND2 = r"""
import sys, json
xs = json.loads(sys.argv[1])
sys.stdout.write(json.dumps([[x, n, repr(round(float(x), n))] for x in xs for n in (0, 1, 2, 3)]))
"""


def builtins_py2():
    res = subprocess.run([args.python2, "-c", ROUND2, json.dumps([repr(x) for x in FLOATS])], capture_output=True,
                         check=True)
    return json.loads(res.stdout)


print(json.dumps({
    "evalai": evalai(),
    "vizwiz": vizwiz(),
    "vqav2_py2": vqav2_py2(),
    "mmmu_open": mmmu_open(),
    "mmmu_mc": mmmu_mc(),
    "mme_parse": mme_parse(),
    "pope_parse": pope_parse(),
    "scienceqa_parse": scienceqa_parse(),
    "py3": builtins_py3(),
    "py2_round": builtins_py2(),
}, ensure_ascii=True))
