"""Where a PushCube classifier errs: its held-out frame errors binned by the cube's distance
from the goal's rim, read from the task's state vector that the bags record.

    python bench/rim_distance.py --bags runs/demo/bags/eval --predictions runs/demo/eval/predictions.jsonl \
        [--threshold 0.11]   # default: the threshold in the predictions' metrics.json

PushCube-v1 succeeds while the cube's centre is within the goal radius (0.1 m) of the goal's
centre, so the label flips at the rim. For every frame of `predictions.jsonl` (what
`reward-model evaluate` writes) this finds the bag's `state` message with the frame's stamp,
computes the signed distance of the cube's centre from the rim (negative inside), and
prints, per distance band, the frames and the errors at the threshold, then every error
episode by episode (mode, frames, probability range, distance). Frames of episodes whose
bags hold no state message are counted as "no state" and left out of the bands.

    python bench/rim_distance.py --endings push_short success [--seeds 0-29 100000-100029]

instead plays the scripted modes on a state-only PushCube-v1 (no camera, no ROS) and prints
where each mode's cube comes to rest, as signed distance from the rim (the demo trains on
seeds from 0 and holds out seeds from 100000).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from reward_model_ros.core.stamps import stamp_ns
from reward_model_ros.data.bags import open_checked

BANDS_CM = (0.5, 1.0, 2.0, 5.0)  # |distance| upper edges; the last band is everything further


def rim_cm(state) -> tuple[float, float]:
    """PushCube-v1's state vector -> (cube centre's distance from the goal's rim, its x from the
    goal's centre), cm."""
    from reward_model_sim.push import GOAL_RADIUS, positions

    _tcp, goal, cube = positions(np.asarray(state.cpu() if hasattr(state, "cpu") else state))
    rim = float(np.linalg.norm(cube[:2] - goal[:2])) - GOAL_RADIUS
    return 100 * rim, 100 * float(cube[0] - goal[0])


def rim_distances(bags: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """(episode key as the dataset names it, stamp ns) -> (cube centre's distance from the rim,
    its x from the goal's centre), cm. Pushes run along +x: negative x is the side the cube
    enters from (the far side from the demo's front camera), positive the side it leaves by."""
    out: dict[tuple[str, int], tuple[float, float]] = {}
    for bag in sorted(p for p in bags.glob("*/episode_*") if p.is_dir()):
        key = f"{bag.parent.name}_{bag.name}"  # the dataset's key: <outcome dir>_<episode dir>
        with open_checked(bag, None) as (reader, _check):
            conns = [c for c in reader.connections if c.topic.rsplit("/", 1)[-1] == "state"]
            for conn, _t, raw in reader.messages(connections=conns):
                msg = reader.deserialize(raw, conn.msgtype)
                out[(key, stamp_ns(msg.header.stamp))] = rim_cm(msg.data)
    return out


def band(d: float) -> int:
    """Index of |d|'s band: 0 below BANDS_CM[0], ..., len(BANDS_CM) beyond the last edge."""
    return int(np.searchsorted(BANDS_CM, abs(d), side="right"))


def band_label(inside: bool, i: int) -> str:
    edges = (0.0, *BANDS_CM)
    span = f">= {edges[-1]:.1f}" if i == len(BANDS_CM) else f"{edges[i]:.1f}-{edges[i + 1]:.1f}"
    return f"{'inside' if inside else 'outside'} {span} cm"


def seed_ranges(texts: list[str]) -> list[int]:
    out = []
    for t in texts:
        lo, _, hi = t.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def endings(modes: list[str], seeds: list[int]) -> None:
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401  (registers the tasks)

    from reward_model_sim.push import CONTROL_MODE, run_push_episode

    env = gym.make("PushCube-v1", obs_mode="state", control_mode=CONTROL_MODE, num_envs=1)
    print(
        "| mode | episodes | ended inside (success) | rest within 1 cm outside "
        "| min / median / max cm from the rim |"
    )
    print("|---|---|---|---|---|")
    last: dict = {}

    def keep(obs, _info, _action) -> None:
        last["state"] = obs[0]  # the only sub-env's state

    for mode in modes:
        d = []
        for seed in seeds:
            run_push_episode(env, mode, seed, keep)
            d.append(rim_cm(last["state"])[0])
        d = np.array(d)
        print(
            f"| {mode} | {len(d)} | {(d < 0).sum()} | {((d >= 0) & (d < 1)).sum()} | "
            f"{d.min():+.2f} / {np.median(d):+.2f} / {d.max():+.2f} |"
        )
    env.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bags", type=Path, help="the held-out episodes' bags (e.g. runs/demo/bags/eval)")
    ap.add_argument("--predictions", type=Path, help="reward-model evaluate's predictions.jsonl")
    ap.add_argument("--threshold", type=float, default=None, help="default: metrics.json's")
    ap.add_argument("--endings", nargs="+", metavar="MODE", help="scripted modes to play instead (no bags)")
    ap.add_argument(
        "--seeds", nargs="+", default=["0-29", "100000-100029"], help="with --endings: seeds, a-b ranges"
    )
    args = ap.parse_args()
    if args.endings:
        endings(args.endings, seed_ranges(args.seeds))
        return
    if args.bags is None or args.predictions is None:
        raise SystemExit("give --bags and --predictions (or --endings MODE ...)")
    threshold = args.threshold
    if threshold is None:
        metrics = args.predictions.parent / "metrics.json"
        if not metrics.exists():
            raise SystemExit(f"{metrics} not found: give --threshold")
        threshold = float(json.loads(metrics.read_text())["threshold"])
    rows = [json.loads(line) for line in args.predictions.open()]
    dist = rim_distances(args.bags)
    if not dist:
        raise SystemExit(f"{args.bags}: no */episode_* bag with a state topic (record the bridge's `state`)")
    bands: dict[tuple[bool, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # frames, errors, FP, FN
    errors: dict[str, list[tuple[int, float, float, float]]] = defaultdict(list)
    modes, missing = {}, 0
    for r in rows:
        found = dist.get((r["episode"], r["stamp_ns"]))
        if found is None:
            missing += 1
            continue
        d, dx = found
        judged, label = r["probability"] >= threshold, bool(r["label"])
        b = bands[(d < 0, band(d))]
        b[0] += 1
        if judged != label:
            b[1] += 1
            b[2 if judged else 3] += 1
            errors[r["episode"]].append((r["frame"], r["probability"], d, dx))
            modes[r["episode"]] = r.get("mode", "")
    total = sum(b[0] for b in bands.values())
    wrong = sum(b[1] for b in bands.values())
    accuracy = 1 - wrong / max(total, 1)
    print(f"threshold {threshold:.3f}: {wrong} errors in {total} frames ({accuracy:.2%}); no state {missing}")
    print("| cube centre from the rim | frames | errors | false positives | false negatives |")
    print("|---|---|---|---|---|")
    # from deep inside the goal, across the rim, to far outside it
    for inside, i in sorted(bands, key=lambda k: -k[1] if k[0] else 100 + k[1]):
        f, e, fp, fn = bands[(inside, i)]
        print(f"| {band_label(inside, i)} | {f} | {e} | {fp} | {fn} |")
    print("\nerrors by episode:")
    for ep, es in sorted(errors.items(), key=lambda kv: -len(kv[1])):
        p = [e[1] for e in es]
        d = [e[2] for e in es]
        sides = {"entry" if e[3] < 0 else "exit" for e in es}
        print(
            f"  {ep} ({modes[ep]}): {len(es)} frames {min(e[0] for e in es)}-{max(e[0] for e in es)}, "
            f"p {min(p):.2f}-{max(p):.2f}, cube {min(d):+.2f} to {max(d):+.2f} cm from the rim, "
            f"{' and '.join(sorted(sides))} side"
        )


if __name__ == "__main__":
    main()
