"""Cut the small samples under tests/data/ from the full public data (``../shared/data``).

    python tests/data/make_samples.py [SHARED_DATA [OUT]]    # default: ../shared/data tests/data

Deterministic: the same full data gives the same bytes. The samples keep the upstream paths and
file formats, so the real loaders read them; what is cut is described in each SOURCE.md.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# RouteLLM: the rows cut from each file. Each sample keeps some contaminated prompts, so the
# exclusion is exercised too (mmlu_machine_learning row 0, mmlu_college_chemistry row 37, GSM8K
# rows 0, 1, 2 and 18, MT-Bench questions 81, 88, 91 and 92).
MMLU_SUBJECTS = ("college_chemistry", "machine_learning")
MMLU_ROWS = 40
GSM8K_ROWS = 40
MT_BENCH_QUESTIONS = range(81, 101)
TEXT_CHARS = 160  # the judge's prompt and free text are cut (the loader reads only the score)
FRUGAL_FILES = ("summary_HEADLINES_e8_full_2024.csv", "summary_SCIQ_e8_full_2024.csv")


def _head_csv(src: Path, dst: Path, rows: int) -> None:
    with src.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        kept = [next(reader) for _ in range(rows + 1)]  # the header and `rows` rows
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(kept)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(out.getvalue(), encoding="utf-8")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def routellm(full: Path, sample: Path) -> None:
    src, dst = full / "routellm" / "evals", sample / "routellm" / "evals"
    for name in MMLU_SUBJECTS:
        rel = f"mmlu/responses/mmlu_{name}.csv"
        _head_csv(src / rel, dst / rel, MMLU_ROWS)
    _head_csv(src / "gsm8k/gsm8k_responses.csv", dst / "gsm8k/gsm8k_responses.csv", GSM8K_ROWS)
    for bench in ("mmlu", "gsm8k", "mt_bench"):  # a few KB each: whole
        rel = f"{bench}/contaminated_prompts.jsonl"
        _copy(src / rel, dst / rel)
    questions = [
        line
        for line in (src / "mt_bench/question.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line)["question_id"] in MT_BENCH_QUESTIONS
    ]
    (dst / "mt_bench/question.jsonl").write_text("\n".join(questions) + "\n", encoding="utf-8")
    judgements = []
    for line in (src / "mt_bench/judgements.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row["question_id"] in MT_BENCH_QUESTIONS:
            for field in ("user_prompt", "judgment"):
                if len(row[field]) > TEXT_CHARS:
                    row[field] = row[field][:TEXT_CHARS] + " [cut]"
            judgements.append(json.dumps(row, ensure_ascii=False))
    (dst / "mt_bench/judgements.jsonl").write_text("\n".join(judgements) + "\n", encoding="utf-8")


def frugal(full: Path, sample: Path) -> None:
    for name in FRUGAL_FILES:  # whole: each is a few KB
        _copy(full / "summary" / name, sample / "summary" / name)


def main(argv: list[str]) -> int:
    full = Path(argv[1]) if len(argv) > 1 else HERE.parents[1].parent / "shared" / "data"
    out = Path(argv[2]) if len(argv) > 2 else HERE
    routellm(full / "routellm", out / "routellm")
    frugal(full / "frugalgpt-summary", out / "frugalgpt-summary")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
