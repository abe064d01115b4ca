"""The bench's report: each target with its measured figure (reported, never asserted), the table printed,
results.json and results.png."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness import say
from sections import PAGE_CASES

TARGETS = {"throughput_ratio": 10.0, "scaling_efficiency": 0.95, "startup_seconds": 6.0, "large_rss_mb": 400.0,
           "idle_cpu_percent": 1.0, "page_slowdown_percent": 5.0}


def verdicts(res: dict) -> list[dict]:
    """Every target with its measured figure, for the sections that ran."""
    rows = []
    if "throughput" in res:
        t = res["throughput"]
        rows.append({"target": "throughput: mpcluster / lesson loop at 4 workers >= 10x", "figure": f"{t['ratio_4']}x",
                     "met": t["ratio_4"] >= TARGETS["throughput_ratio"]})
        rows.append({"target": "throughput stretch: >= 100,000 tasks/s", "figure":
                     f"{t['mpcluster']['4']['rate']:,.0f}/s", "met": t["mpcluster"]["4"]["rate"] >= 100_000})
    if "scaling" in res:
        pts = res["scaling"]["points"]
        worst = min(v["efficiency"] for v in pts.values())
        rows.append({"target": "scaling: efficiency >= 0.95 at every point", "figure": ", ".join(
            f"{w}: {v['efficiency']:.3f}" for w, v in pts.items()), "met": worst >= TARGETS["scaling_efficiency"]})
    if "startup" in res:
        m = res["startup"]["median"]
        rows.append({"target": "start-up: make up until the demo is done <= 6 s", "figure":
                     f"demo done {m.get('demo_done')} s, make up returned {m.get('make_up_seconds')} s (median)",
                     "met": m.get("make_up_seconds", 99) <= TARGETS["startup_seconds"]})
    if "large" in res:
        g = res["large"]
        rows.append({"target": f"large job: {g['tasks']:,} tasks complete, master peak RSS <= 400 MB", "figure":
                     f"{g['results']:,}/{g['tasks']:,} in {g['seconds']:.1f} s, peak RSS {g['peak_rss_mb']} MB",
                     "met": g["results"] == g["tasks"] and g["peak_rss_mb"] <= TARGETS["large_rss_mb"]})
    if "idle" in res:
        i = res["idle"]
        rows.append({"target": f"idle: master CPU with {i['workers']} idle workers < 1%",
                     "figure": f"{i['mean_percent']}% over {i['span_s']} s (docker stats samples: mean "
                               f"{i['samples_mean_percent']}%, max {i['max_percent']}%)",
                     "met": i["mean_percent"] < TARGETS["idle_cpu_percent"]})
    if "page" in res:
        g = res["page"]
        seen = f", a browser on this machine {g['browser_slowdown_percent']}%" if "browser_slowdown_percent" in g else ""
        rows.append({"target": "page: throughput within 5% with the page's requests (the master's part)",
                     "figure": f"its requests {g['requests_slowdown_percent']}% slower{seen} (median of {g['rounds']})",
                     "met": g["requests_slowdown_percent"] <= TARGETS["page_slowdown_percent"]})
    return rows


def table(res: dict) -> str:
    lines = []
    m = res["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}; Docker {m['docker']}, "
                 f"Compose {m['compose']}; Python {m['python_containers']} in the containers ({m['base_image']}), "
                 f"{m['python_host']} on the host")
    lines.append(f"mode: {'quick (smoke sizes: not a measurement)' if res['quick'] else 'full'}")
    lines.append("")
    lines.append(f"{'section':<12} {'case':<40} {'tasks':>9} {'seconds':>9} {'figure':>22}")
    lines.append("-" * 96)

    def row(section, case, tasks, seconds, figure):
        lines.append(f"{section:<12} {case:<40} {tasks:>9,} {seconds:>9.2f} {figure:>22}")

    if "throughput" in res:
        t = res["throughput"]
        for impl in ("lesson", "mpcluster"):
            for w in ("1", "4"):
                r = t[impl][w]
                name = "lesson loop (get/put per item)" if impl == "lesson" else "mpcluster (leases, batches)"
                row("throughput", f"{name}, {w} worker{'s' if w != '1' else ''}", r["tasks"], r["seconds"],
                    f"{r['rate']:,.0f} tasks/s")
        lines.append(f"{'':<12} mpcluster / lesson: {t['ratio_1']}x with 1 worker, {t['ratio_4']}x with 4")
    if "scaling" in res:
        for w, r in res["scaling"]["points"].items():
            row("scaling", f"sleep {res['scaling']['task_seconds']} s, {w} worker{'s' if w != '1' else ''}",
                r["tasks"], r["seconds"], f"efficiency {r['efficiency']:.3f}")
    if "compute" in res:
        c = res["compute"]
        for kind in ("primes", "sleep"):
            for label, r in c[kind].items():
                what = f"primes n={c['primes_n']:,}" if kind == "primes" else f"sleep {c['sleep_seconds']} s"
                row("compute", f"{what}, {label}", r["tasks"], r["seconds"], f"speed-up {r['speedup']:.2f}x")
    if "startup" in res:
        md = res["startup"]["median"]
        n = len(res["startup"]["runs"])
        for k, label in (("master_listening", "master listening"), ("first_worker_joined", "first worker joined"),
                         ("first_result", "first demo result"), ("demo_done", "demo job done"),
                         ("make_up_seconds", "make up returned")):
            if k in md:
                row("startup", f"{label} (median of {n})", res["startup"]["runs"][0]["demo_tasks"], md[k],
                    "s after make up")
    if "large" in res:
        g = res["large"]
        row("large", "no-op tasks, 4 workers", g["tasks"], g["seconds"], f"{g['rate']:,.0f} tasks/s")
        row("large", "master peak RSS (VmHWM)", g["tasks"], g["seconds"], f"{g['peak_rss_mb']} MB")
    if "idle" in res:
        i = res["idle"]
        row("idle", f"master CPU, {i['workers']} idle workers", 0, 0.0, f"{i['mean_percent']}% CPU")
    if "page" in res:
        g = res["page"]
        for case, label in PAGE_CASES.items():
            if g["runs"][case]:
                row("page", f"{label}, 4 workers (median of {g['rounds']})", g["tasks"],
                    statistics.median(j["seconds"] for j in g["runs"][case]), f"{g[case + '_median_rate']:,} tasks/s")
    lines.append("")
    lines.append("targets (reported, never asserted):")
    for v in res["targets"]:
        lines.append(f"  [{'met' if v['met'] else 'NOT met'}] {v['target']}: {v['figure']}")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(20, 8.5))
    ax = axes[0][0]
    if "throughput" in res:
        t = res["throughput"]
        labels = ["1 worker", "4 workers"]
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], [t["lesson"][w]["rate"] for w in ("1", "4")], 0.4, label="lesson loop")
        ax.bar([i + 0.2 for i in x], [t["mpcluster"][w]["rate"] for w in ("1", "4")], 0.4, label="mpcluster")
        ax.set_xticks(list(x), labels)
        ax.set_ylabel("no-op tasks / s")
        ax.set_title(f"throughput (mpcluster {t['ratio_4']}x the lesson at 4 workers)")
        ax.legend()
    ax = axes[0][1]
    if "scaling" in res:
        pts = res["scaling"]["points"]
        ws = [int(w) for w in pts]
        ax.plot(ws, [pts[str(w)]["seconds"] for w in ws], "o-", label="measured")
        ax.plot(ws, [pts[str(w)]["ideal_seconds"] for w in ws], "--", label="ideal")
        for w in ws:
            ax.annotate(f"{pts[str(w)]['efficiency']:.2f}", (w, pts[str(w)]["seconds"]), textcoords="offset points",
                        xytext=(4, 6))
        ax.set_xscale("log", base=2)
        ax.set_xticks(ws, [str(w) for w in ws])
        ax.set_xlabel("workers")
        ax.set_ylabel("seconds")
        ax.set_title(f"scaling: {res['scaling']['tasks']} x sleep {res['scaling']['task_seconds']} s (efficiency)")
        ax.legend()
    ax = axes[0][2]
    if "compute" in res:
        c = res["compute"]
        labels = [f"primes\n{k}" for k in c["primes"]] + [f"sleep\n{k}" for k in c["sleep"]]
        vals = [r["seconds"] for r in c["primes"].values()] + [r["seconds"] for r in c["sleep"].values()]
        colors = ["tab:red"] * len(c["primes"]) + ["tab:green"] * len(c["sleep"])
        ax.barh(range(len(vals)), vals, color=colors)
        ax.set_yticks(range(len(vals)), [x.replace(", ", ",\n") for x in labels], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("seconds for the job")
        ax.set_title("compute (primes) vs I/O (sleep)")
    ax = axes[1][0]
    if "startup" in res:
        md = res["startup"]["median"]
        keys = [("master_started", "master started"), ("master_listening", "master listening"),
                ("first_worker_started", "first worker started"), ("first_worker_joined", "first worker joined"),
                ("first_result", "first result"), ("demo_done", "demo done"), ("make_up_seconds", "make up returned")]
        keys = [(k, lbl) for k, lbl in keys if md.get(k) is not None]
        ax.barh(range(len(keys)), [md[k] for k, _ in keys], color="tab:purple")
        ax.set_yticks(range(len(keys)), [lbl for _, lbl in keys])
        ax.invert_yaxis()
        ax.axvline(TARGETS["startup_seconds"], color="grey", ls="--", label="target 6 s")
        ax.set_xlabel("seconds after `make up` started (median)")
        ax.set_title("start-up")
        ax.legend()
    ax = axes[1][1]
    if "large" in res:
        g = res["large"]
        ax.bar(["master peak RSS"], [g["peak_rss_mb"]], color="tab:orange")
        ax.axhline(TARGETS["large_rss_mb"], color="grey", ls="--", label="target 400 MB")
        ax.set_ylabel("MB")
        ax.set_title(f"large job: {g['tasks']:,} tasks in {g['seconds']:.0f} s on 4 workers")
        ax.legend()
    ax = axes[1][2]
    if "idle" in res:
        i = res["idle"]
        ax.plot(range(1, len(i["samples_percent"]) + 1), i["samples_percent"], "o-")
        ax.axhline(TARGETS["idle_cpu_percent"], color="grey", ls="--", label="target 1%")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("docker stats sample")
        ax.set_ylabel("master CPU %")
        ax.set_title(f"idle: master CPU, {i['workers']} idle workers (mean {i['mean_percent']}%)")
        ax.legend()
    ax = axes[0][3]
    if "page" in res:
        g = res["page"]
        cases = [(c, lbl.replace(" ", "\n", 1)) for c, lbl in PAGE_CASES.items() if g["runs"][c]]
        ax.bar([lbl for _, lbl in cases], [g[c + "_median_rate"] for c, _ in cases], color="tab:cyan")
        ax.set_ylabel("no-op tasks / s (median)")
        ax.set_title("status page open vs not (4 workers)")
    axes[1][3].axis("off")
    m = res["machine"]
    fig.suptitle(f"mpcluster bench{' (QUICK: smoke sizes)' if res['quick'] else ''} - {m['cpu']}, {m['cores']} cores, "
                 f"Docker {m['docker']}, Python {m['python_containers']} - {res['finished'][:16]}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)



def write(res: dict, out_dir: Path) -> None:
    """results.json first, so that the figures are kept even if the table or the plot fails."""
    res["targets"] = verdicts(res)
    (out_dir / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    say("")
    say(table(res))
    plot(res, out_dir / "results.png")
    say(f"\nwrote {out_dir / 'results.json'} and {out_dir / 'results.png'}")
