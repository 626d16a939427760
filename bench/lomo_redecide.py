"""Judge a finished `reward-model lomo` run again with today's decision rule, without retraining.

    python bench/lomo_redecide.py --run runs/lomo_pick

When the rule that chooses threshold and debounce changes (e.g. MIN_DEBOUNCE), the protocol's
models need not be trained again: their decisions are made on their validation episodes. For
each model under --run (lomo.json names them): the validation split of the training dataset,
without the modes that model left out, is scored as reward_node scores it (score_rows: the
checkpoint's precision, temperature and the default fusion), metrics.validation_decision with
DECISION_DEBOUNCES picks threshold and debounce, and the model's heldout_predictions.jsonl are
judged at them. Prints the table `reward-model lomo` prints, and writes --run/lomo_redecided_<rule>.json.
--rule R judges them as `runner.threshold_rule=R` would have decided.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from reward_model_ros.training.evaluate import DECISION_DEBOUNCES


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a `reward-model lomo --out` directory")
    ap.add_argument(
        "--rule",
        default="half",
        help="metrics.THRESHOLD_RULES: half (train's default), balanced or half_floor",
    )
    args = ap.parse_args()

    from reward_model_ros.core.checkpoint import load_checkpoint
    from reward_model_ros.data.dataset import read_manifest
    from reward_model_ros.training import metrics as M
    from reward_model_ros.training.data import exclude_modes
    from reward_model_ros.training.evaluate import score_rows
    from reward_model_ros.training.protocols import REFERENCE, _dir_name, _of_mode, figures, format_table

    report = json.loads((args.run / "lomo.json").read_text())
    if len(report["train_data"]) != 1:
        raise SystemExit(
            f"{args.run}: trained on {len(report['train_data'])} datasets; this script takes one"
        )
    data = Path(report["train_data"][0])
    manifest = read_manifest(data)
    decided: dict[str, tuple[float, int, str]] = {}
    for name, model in report["models"].items():
        kept = exclude_modes(manifest, model["exclude_modes"], data)  # as train: every split, then val
        val = sorted((r for r in kept if r["split"] == "val"), key=lambda r: (r["episode"], r["frame"]))
        ckpt = load_checkpoint(Path(model["checkpoint"]))
        probs, _ = score_rows(ckpt, val, data)
        labels = np.array([r["label"] for r in val], int)
        decided[name] = M.validation_decision(
            labels, probs, M.episodes_of(val, labels, probs), DECISION_DEBOUNCES, args.rule
        )
        t, d, _ = decided[name]
        print(f"{name}: threshold {t:.2f}, debounce {d} (was {model['threshold']:.2f}, {model['debounce']})")

    def judged(name: str, keep: list[int] | None = None) -> dict:
        rows = _jsonl(args.run / name / "heldout_predictions.jsonl")
        if keep is not None:
            rows = [rows[i] for i in keep]
        t, d, _ = decided[name]
        probs = np.array([r["probability"] for r in rows], float)
        return figures(rows, probs, t, d, report["delay_bar"])

    reference = _jsonl(args.run / REFERENCE / "heldout_predictions.jsonl")
    rows_out = [{"mode": "all", "model": REFERENCE, **judged(REFERENCE)}]
    for mode in report["modes"]:
        name = _dir_name(mode)
        rows_out.append({"mode": mode, "model": name, **judged(name)})
        rows_out.append({"mode": mode, "model": REFERENCE, **judged(REFERENCE, _of_mode(reference, mode))})
    out = {
        **report,
        "rule": args.rule,
        "rows": rows_out,
        "redecided": {
            n: {"threshold": t, "debounce": d, "reason": why} for n, (t, d, why) in decided.items()
        },
    }
    (args.run / f"lomo_redecided_{args.rule}.json").write_text(
        json.dumps(out, indent=2, default=float) + "\n"
    )
    print(format_table(out))


if __name__ == "__main__":
    main()
