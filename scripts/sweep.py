#!/usr/bin/env python3
"""Research ablations in one command: run a grid of `switchc train` runs, one after another, resume a half-done
sweep without redoing finished points, tabulate every point, and plot.

  python3 scripts/sweep.py --grid configs/sweeps/capacity_experts.json --out runs/sweep
  python3 scripts/sweep.py --grid G.json --out runs/sweep --plots-only      # tables and plots from finished runs

A grid file is JSON:
  {
    "base_config": null,                      # a run config for every point (or null: the built-in default)
    "set": ["train.steps=600", ...],          # --set overrides for every point
    "axes": {                                 # each axis is swept alone around "center" (mode "axes"),
      "capacity_factor": {"keys": ["model.switchc.train_capacity_factor"], "values": [0.5, 1.0, 1.25, 2.0, 0],
                          "labels": ["0.5", "1.0", "1.25", "2.0", "dropless"], "center": 1.25},
      "experts": {"keys": ["model.num_experts"], "values": [1, 2, 4, 8, 16], "center": 4}
    },
    "mode": "axes" | "product",               # or the full cross product
    "seeds": [1234, 1235, 1236]               # optional: every point once per seed; rows report mean and std
  }

Per point it runs `switchc train --set ... --set train.out_dir=OUT/<point> --resume` (so an interrupted point
continues from its last checkpoint) and skips points whose OUT/<point>/summary.json reports the configured steps.
Rows go to OUT/results.jsonl and OUT/results.csv: final and best eval loss, exact match, tokens/s, peak memory,
dropped fraction, expert load imbalance (max/mean, coefficient of variation), parameters, FLOPs per token.
Plots (PNG, matplotlib) go to OUT/plots/ (or --plots DIR).
"""
import argparse
import csv
import itertools
import json
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def points_of(grid):
    axes = grid["axes"]
    names = list(axes)
    pts = []
    if grid.get("mode", "axes") == "product":
        for combo in itertools.product(*[range(len(axes[n]["values"])) for n in names]):
            pts.append({n: i for n, i in zip(names, combo)})
    else:
        center = {n: axes[n]["values"].index(axes[n]["center"]) for n in names}
        seen = set()
        for n in names:
            for i in range(len(axes[n]["values"])):
                p = dict(center)
                p[n] = i
                key = tuple(sorted(p.items()))
                if key not in seen:
                    seen.add(key)
                    pts.append(p)
    return pts


def label(axis, i):
    return str(axis.get("labels", axis["values"])[i])


def point_name(grid, p):
    return "__".join(f"{n}={label(grid['axes'][n], i)}" for n, i in sorted(p.items()))


def run_point(args, grid, p, out_dir, seed=None):
    steps = None
    cmd = [args.switchc, "train"]
    if seed is not None:
        cmd += ["--set", f"train.seed={seed}"]
    if grid.get("base_config"):
        cmd += ["--config", os.path.join(ROOT, grid["base_config"])]
    for s in grid.get("set", []):
        cmd += ["--set", s]
        if s.startswith("train.steps="):
            steps = int(s.split("=", 1)[1])
    for n, i in sorted(p.items()):
        axis = grid["axes"][n]
        for k in axis["keys"]:
            cmd += ["--set", f"{k}={json.dumps(axis['values'][i])}"]
    cmd += ["--set", f"train.out_dir={out_dir}", "--resume"]
    summary = os.path.join(out_dir, "summary.json")
    if os.path.exists(summary):
        done = json.load(open(summary))
        if steps is None or done.get("steps") == steps:
            print(f"sweep: {os.path.basename(out_dir)}: finished earlier, skipped")
            return done
    print(f"sweep: {os.path.basename(out_dir)}: running: {' '.join(cmd[1:])}", flush=True)
    t0 = time.time()
    with open(os.path.join(os.path.dirname(out_dir), os.path.basename(out_dir) + ".log"), "w") as log:
        r = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        print(f"sweep: {os.path.basename(out_dir)}: FAILED (exit {r.returncode}); see its .log", file=sys.stderr)
        return None
    done = json.load(open(summary))
    print(f"sweep: {os.path.basename(out_dir)}: done in {time.time() - t0:.0f}s: eval loss {done.get('final_eval_loss', float('nan')):.4f}, "
          f"exact match {done.get('exact_match', float('nan')):.3f}, dropped {100 * done['dropped_frac']:.1f}%")
    return done


def read_metrics(run_dir):
    rows = []
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                rows.append(json.loads(line))
    return rows


def plots(grid, results, out, plot_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(plot_dir, exist_ok=True)
    axes = grid["axes"]
    written = []

    # 1. quality against steps, every point
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        per_step = {}
        for rd in r["run_dirs"]:
            for x in read_metrics(rd):
                if "eval/loss" in x:
                    per_step.setdefault(x["step"], []).append(x["eval/loss"])
        if per_step:
            st = sorted(per_step)
            ax.plot(st, [sum(per_step[k]) / len(per_step[k]) for k in st], marker="o", ms=3, label=r["point"])
    ax.set_xlabel("step")
    ax.set_ylabel("held-out loss")
    ax.set_yscale("log")
    ax.set_title("Quality against steps")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(plot_dir, "quality_vs_steps.png"), dpi=110)
    written.append("quality_vs_steps.png")
    plt.close(fig)

    def along(axis_name):
        """results that vary only along axis_name (others at their center), in axis order"""
        ax_def = axes[axis_name]
        center = {n: axes[n]["values"].index(axes[n]["center"]) for n in axes if "center" in axes[n]}
        sel = []
        for i in range(len(ax_def["values"])):
            want = dict(center)
            want[axis_name] = i
            for r in results:
                if r["idx"] == want:
                    sel.append((i, r))
        return sel

    if "capacity_factor" in axes:
        sel = along("capacity_factor")
        if sel:
            labels = [label(axes["capacity_factor"], i) for i, _ in sel]
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
            a1.errorbar(labels, [r["final_eval_loss"] for _, r in sel], yerr=[r.get("final_eval_loss_std", 0) for _, r in sel], marker="o",
                         capsize=3, label="final (mean, std over seeds)")
            a1.plot(labels, [r["best_eval_loss"] for _, r in sel], marker="s", label="best")
            a1.set_xlabel("train capacity factor")
            a1.set_ylabel("held-out loss")
            a1.set_title("Quality against capacity factor")
            a1.legend()
            a2.bar(labels, [100 * r["dropped_frac"] for _, r in sel], color="tab:red", alpha=0.6)
            a2.set_ylabel("tokens dropped in training (%)", color="tab:red")
            a3 = a2.twinx()
            a3.plot(labels, [r["tokens_per_s"] for _, r in sel], marker="o", color="tab:blue")
            a3.set_ylabel("training tokens/s", color="tab:blue")
            a2.set_xlabel("train capacity factor")
            a2.set_title("Dropped tokens and speed")
            fig.tight_layout()
            fig.savefig(os.path.join(plot_dir, "capacity_factor.png"), dpi=110)
            written.append("capacity_factor.png")
            plt.close(fig)
    if "experts" in axes:
        sel = along("experts")
        if sel:
            fig, ax = plt.subplots(figsize=(6, 4))
            xs = [axes["experts"]["values"][i] for i, _ in sel]
            ax.errorbar(xs, [r["final_eval_loss"] for _, r in sel], yerr=[r.get("final_eval_loss_std", 0) for _, r in sel], marker="o",
                        capsize=3, label="final held-out loss (mean, std over seeds)")
            ax.plot(xs, [r["best_eval_loss"] for _, r in sel], marker="s", label="best held-out loss")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("experts per Switch layer (FLOPs per token constant)")
            ax.set_ylabel("held-out loss")
            flops = {r["flops_per_token"] for _, r in sel}
            ax.set_title(f"Quality against experts at {'equal' if len(flops) == 1 else 'varying'} FLOPs per token")
            ax.legend()
            fig.tight_layout()
            fig.savefig(os.path.join(plot_dir, "experts.png"), dpi=110)
            written.append("experts.png")
            plt.close(fig)
            # heat map of tokens per expert per layer over training, for the largest expert count
            big = sel[-1][1]
            rows = [x for x in read_metrics(big["run_dir"]) if any(k.startswith("routing/") for k in x)]
            by_step = {}
            for x in rows:
                for k, v in x.items():
                    if k.startswith("routing/") and k.endswith("_share"):
                        by_step.setdefault(x["step"], {})[k[len("routing/"):-len("_share")]] = v
            if by_step:
                steps = sorted(by_step)
                cols = sorted(by_step[steps[-1]])
                import numpy as np
                mat = np.array([[by_step[s].get(c, np.nan) for c in cols] for s in steps])
                fig, ax = plt.subplots(figsize=(max(6, len(cols) * 0.35), 3 + 0.25 * len(steps)))
                im = ax.imshow(mat, aspect="auto", cmap="viridis")
                ax.set_yticks(range(len(steps)), [str(s) for s in steps])
                ax.set_xticks(range(len(cols)), [c.replace("/expert_", " e") for c in cols], rotation=90, fontsize=7)
                ax.set_ylabel("step")
                ax.set_title(f"Share of held-out tokens per expert and layer ({big['point']})")
                fig.colorbar(im, ax=ax)
                fig.tight_layout()
                fig.savefig(os.path.join(plot_dir, "expert_heatmap.png"), dpi=110)
                written.append("expert_heatmap.png")
                plt.close(fig)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--switchc", default=os.path.join(ROOT, "build", "switchc"))
    ap.add_argument("--plots", default=None, help="plot directory (default OUT/plots)")
    ap.add_argument("--plots-only", action="store_true")
    args = ap.parse_args()
    try:
        grid = json.load(open(args.grid))
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"sweep: {args.grid}: {e}")
    for n, a in grid.get("axes", {}).items():
        if not a.get("keys") or not a.get("values"):
            sys.exit(f"sweep: {args.grid}: axis '{n}' needs 'keys' and 'values'")
        if grid.get("mode", "axes") == "axes" and a.get("center") not in a["values"]:
            sys.exit(f"sweep: {args.grid}: axis '{n}': 'center' must be one of its values")
    if not args.plots_only and not os.path.exists(args.switchc):
        sys.exit(f"sweep: {args.switchc} does not exist: build first (cmake --build build) or pass --switchc")
    try:  # the plots come last: a missing matplotlib must not cost a whole sweep first
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("sweep: matplotlib is not installed (the plots need it): pip install -r scripts/requirements.txt")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    results = []
    seeds = grid.get("seeds") or [None]
    numeric = ["final_eval_loss", "best_eval_loss", "exact_match", "token_accuracy", "tokens_per_s", "peak_rss_mb", "dropped_frac",
               "expert_load_max_over_mean", "expert_load_cv"]
    pts = points_of(grid)
    total, k_run, t_start, ran = len(pts) * len(seeds), 0, time.time(), 0
    for p in pts:
        name = point_name(grid, p)
        runs = []
        for seed in seeds:
            rd = os.path.join(out, name if seed is None else f"{name}__seed={seed}")
            k_run += 1
            if not args.plots_only:
                el = time.time() - t_start
                eta = f", ETA {el / ran * (total - k_run + 1) / 60:.1f} min" if ran else ""
                print(f"sweep: [{k_run}/{total}] {os.path.basename(rd)} (elapsed {el / 60:.1f} min{eta})", flush=True)
            if args.plots_only:
                s = os.path.join(rd, "summary.json")
                done = json.load(open(s)) if os.path.exists(s) else None
            else:
                t_point = time.time()
                done = run_point(args, grid, p, rd, seed)
                ran += time.time() - t_point > 2  # points run now (not skipped) set the ETA
            if done is not None:
                runs.append((rd, done))
        if not runs:
            continue
        row = {"point": name, "idx": p, "run_dir": runs[0][0], "run_dirs": [r for r, _ in runs], "seeds": len(runs)}
        row.update({n: grid["axes"][n]["values"][i] for n, i in p.items()})
        row.update(runs[0][1])
        for k in numeric:  # mean over seeds, with the spread beside it
            vals = [d[k] for _, d in runs if k in d]
            if vals:
                mean = sum(vals) / len(vals)
                row[k] = mean
                row[k + "_std"] = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5
        results.append(row)
    with open(os.path.join(out, "results.jsonl"), "w") as f:
        for r in results:
            f.write(json.dumps({k: v for k, v in r.items() if k not in ("idx",)}) + "\n")
    cols = ["point"] + list(grid["axes"]) + ["seeds", "steps", "final_eval_loss", "final_eval_loss_std", "best_eval_loss", "exact_match",
                                              "exact_match_std", "token_accuracy", "tokens_per_s",
                                               "peak_rss_mb", "dropped_frac", "expert_load_max_over_mean", "expert_load_cv", "params",
                                               "active_params", "flops_per_token"]
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in results:
            w.writerow(r)
    written = plots(grid, results, out, args.plots or os.path.join(out, "plots"))
    print(f"sweep: {len(results)} points in {out}/results.csv; plots: {', '.join(written)}")


if __name__ == "__main__":
    main()
