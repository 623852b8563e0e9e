"""The report of ``benchmarks/gpu_check.py``: the lines for results/performance.md and
``summary.md``, from its ``results.json`` (what each step measured, or why it did not).

Targets (reported, never asserted): full protocol <= 30 min on the fast path and >= 10x the
stock pipeline; SeMi's step <= 1.02x ACR's; no host-device synchronisation added by SeMi's
parts; each memory-bank operation <= 0.2 ms at C = 100.
"""
from __future__ import annotations

PROTOCOL_MIN = 30.0
SPEEDUP = 10.0
STEP_RATIO = 1.02
BANK_MS = 0.2
BANK_OPS = ("push", "decay", "prototypes", "q")


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def _f(v, spec: str = ".2f", none: str = "n/a") -> str:
    return none if v is None else format(v, spec)


def _status(res: dict, name: str) -> str:
    return res.get("steps", {}).get(name, {}).get("status", "not run")


def _not_ok(res: dict, name: str) -> str | None:
    """Why a step has no results ('timed out after 75 s', ...), or None if it ran."""
    rec = res.get("steps", {}).get(name)
    if rec is None:
        return "not run"
    if rec["status"] == "ok":
        return None
    limit = f" after {rec['limit_s']:.0f} s" if rec.get("limit_s") and rec["status"] == "timed out" else ""
    return rec["status"] + limit


def hardware_line(res: dict) -> str:
    e = res.get("env", {})
    dev = e.get("gpu") or "CPU only"
    smi = f" ({e['nvidia_smi']})" if e.get("nvidia_smi") else ""
    return (f"- hardware: {dev}{smi}; {e.get('cpus', '?')} CPU cores ({e.get('cpu_model') or '?'}); torch {e.get('torch')}"
            f" (CUDA {e.get('cuda')}, cuDNN {e.get('cudnn')}), Python {e.get('python')}, semilearn {e.get('semilearn')},"
            f" torchvision {e.get('torchvision')}, Pillow {e.get('pillow')}, semi_usb {e.get('semi_usb')} (source"
            f" {e.get('source')}); {res.get('elapsed_s', 0):.0f} s of a {res.get('budget_s', 0):.0f} s budget")


def protocol_lines(res: dict) -> list:
    recs = {(r["method"], r["pipeline"]): r for r in res.get("pipeline", [])}
    if not recs:
        return [f"- full protocol time: not measured (pipeline step: {_not_ok(res, 'pipeline') or 'no records'})"]
    out = []
    for m in dict.fromkeys(r["method"] for r in res["pipeline"]):
        fast, usb, gpu = recs.get((m, "fast")), recs.get((m, "usb")), recs.get((m, "gpu"))
        parts = []
        total = None
        if fast:
            ev = fast.get("extrapolated_eval_min") or 0.0
            total = fast["extrapolated_train_min"] + ev
            parts.append(f"fast path (data_pipeline gpu + bf16 + channels_last) {fast['it_s']:.1f} it/s ->"
                         f" {fast['extrapolated_train_min']:.1f} min + {ev:.1f} min evaluation = **{total:.1f} min**"
                         f" (target <= {PROTOCOL_MIN:.0f} min: {_met(total <= PROTOCOL_MIN)})")
        if gpu:
            parts.append(f"data_pipeline gpu alone (fp32) {gpu['it_s']:.1f} it/s")
        if usb:
            ev = usb.get("extrapolated_eval_min") or 0.0
            parts.append(f"stock (USB loaders, {usb['num_workers']} worker(s), fp32) {usb['it_s']:.2f} it/s ->"
                         f" {(usb['extrapolated_train_min'] + ev) / 60:.1f} h")
        if fast and usb:
            x = fast["it_s"] / usb["it_s"]
            parts.append(f"speed-up **{x:.1f}x** (target >= {SPEEDUP:.0f}x: {_met(x >= SPEEDUP)})")
        r0 = fast or usb or gpu
        out.append(f"- full protocol ({r0['protocol_iters']:,} iterations) of {'fixmatch+' + m if m != 'fixmatch' else m}"
                   f" on {r0['net']} ({r0['batch_size']} + 2 x {r0['batch_size'] * r0['uratio']}): " + "; ".join(parts))
    missing = _not_ok(res, "pipeline")
    if missing:
        out.append(f"- pipeline step {missing}: the combinations without a row above were not measured")
    return out


def step_lines(res: dict) -> list:
    steps = res.get("steps_bench", [])
    out = []
    if steps:
        ratios = ", ".join(f"{r['variant']} **{r['ratio_semi_acr']:.3f}** ({_met(r['ratio_semi_acr'] <= STEP_RATIO)})"
                           for r in steps)
        semi = ", ".join(f"{r['variant']} {r['methods']['semi']['median_ms']:.1f} ms ({r['methods']['semi']['it_s']:.0f} it/s)"
                         for r in steps)
        out.append(f"- step time, batches on the device, semi/acr (target <= {STEP_RATIO}): {ratios}; semi's step: {semi}")
        busy = ", ".join(f"{r['variant']} " + "/".join(_f(r["methods"][m]["gpu_busy"], ".0%") for m in ("fixmatch", "acr", "semi"))
                         for r in steps)
        peak = ", ".join(f"{r['variant']} {_f(r['methods']['semi']['peak_mib'], '.0f')} MiB" for r in steps)
        out.append(f"- GPU busy (fixmatch/acr/semi): {busy}; peak memory of semi's steps: {peak}")
    else:
        out.append(f"- step time: not measured (steps step: {_not_ok(res, 'steps') or 'no records'})")
    comp = res.get("compile", [])
    if comp:
        r = comp[0]
        out.append(f"- torch.compile ({r['compile_backend']}, of the net's forward, by the benchmark: no config key;"
                   f" variant {r['variant']}): semi/acr **{r['ratio_semi_acr']:.3f}**, semi's step"
                   f" {r['methods']['semi']['median_ms']:.1f} ms ({r['methods']['semi']['it_s']:.0f} it/s), first step"
                   f" (compilation) {r['methods']['fixmatch']['first_step_s']:.0f} s")
    else:
        why = _not_ok(res, "steps")
        out.append("- torch.compile: not measured (" + (f"the steps step {why}: it did not compile in time" if why
                   else "no record") + ")")
    return out


def sync_lines(res: dict) -> list:
    out = []
    for r in res.get("steps_bench", []) + res.get("compile", []):
        if r["device"] != "cuda":
            continue
        m = r["methods"]
        counts = ", ".join(f"{k} {_f(m[k]['syncs_per_step'], '.1f')} / {_f(m[k]['sync_calls_per_step'], '.1f')}"
                           for k in ("fixmatch", "acr", "semi"))
        added = [m["semi"][k] - m["acr"][k] for k in ("syncs_per_step", "sync_calls_per_step")
                 if m["semi"][k] is not None and m["acr"][k] is not None]
        ok = all(a <= 0 for a in added) if added else None
        out.append(f"- host-device syncs per step ({r['variant']}; sync debug mode / cuda*Synchronize in a trace):"
                   f" {counts}; added by SeMi's parts (semi - acr): {', '.join(f'{a:+.1f}' for a in added) or 'n/a'}"
                   f" (target 0: {_met(ok)})")
    if not out:
        out.append("- host-device syncs per step: not measured" +
                   (" (CPU: CUDA's sync debug mode needs a GPU)" if res.get("mode") != "gpu" else ""))
    return out


def bank_lines(res: dict) -> list:
    rows = res.get("bank", [])
    if not rows:
        return [f"- memory bank: not measured ({_not_ok(res, 'bank') or 'no records'})"]
    dev = rows[0]["device"]
    K = min(r["K"] for r in rows)
    parts = []
    ok = None
    for C in sorted({r["C"] for r in rows}):
        ms = {r["op"]: r["vec_ms"] for r in rows if r["C"] == C and r["K"] == K and r["device"] == dev}
        text = f"C={C}: " + " / ".join(_f(ms.get(op), ".3f") for op in BANK_OPS)
        if C == 100 and len(ms) == len(BANK_OPS):
            ok = max(ms.values()) <= BANK_MS
            text += f" (target <= {BANK_MS} ms each: {_met(ok)})"
        parts.append(text)
    sync = sorted({r["no_sync"] for r in rows if r["device"] == dev})
    match = "yes" if all(r["match"] == "yes" for r in rows) else "NO"
    return [f"- memory bank on {dev} (K={K}, d={rows[0]['dim']}, N={rows[0]['n']}; push / decay / prototypes / q, ms):"
            f" {'; '.join(parts)}; agrees with the per-sample reference: {match}; sync check: {', '.join(sync)}"]


def train_lines(res: dict) -> list:
    runs = res.get("train")
    if not runs:
        return [f"- short training: not run ({_not_ok(res, 'train') or 'no records'})"]
    out = []
    for m, r in runs.items():
        s, e = r.get("summary"), r.get("eval", {})
        done = f"{s['iterations_done']:,} of {r['iterations_planned']:,} iterations in {_f(s.get('wall_time_s'), '.0f')} s:" \
               f" top-1 {100 * s['top1']:.2f}%, balanced {100 * s['balanced_acc']:.2f}% ({s['head']} head)" if s else \
               f"{r['iterations_planned']:,} iterations planned, run {r['train']['status']}, no summary"
        ev = f"; semilearn eval of latest_model.pth (it {e['it']}): top-1 {100 * e['top1']:.2f}%, balanced" \
             f" {100 * e['balanced_acc']:.2f}%" if "top1" in e else f"; eval: {e.get('status', 'not run')}"
        out.append(f"- short training, {m} (`{r['config']}`, fast path, both runs at once; iterations from {r['basis']}):"
                   f" {done}{ev}")
    return out


def tests_line(res: dict) -> str:
    rec = res.get("steps", {}).get("tests")
    if not rec:
        return "- CUDA tests: not run"
    counts = ", ".join(f"{n} {k}" for k, n in rec.get("counts", {}).items()) or rec["status"]
    note = " (no CUDA: the CUDA-only tests skip)" if res.get("mode") != "gpu" else ""
    return f"- CUDA-only tests (tests/test_gpu_augment.py -k cuda): {counts}{note}; step {rec['status']}"


def performance_lines(res: dict) -> list:
    tiny = res.get("mode") != "gpu"
    head = (f"### GPU check ({res.get('started', '?')[:10]}, `benchmarks/gpu_check.sh`"
            + (" --cpu --tiny: CPU REHEARSAL of the steps, not a measurement)" if tiny else ")"))
    lines = [head, "", hardware_line(res), *protocol_lines(res), *step_lines(res), *sync_lines(res),
             *bank_lines(res), *train_lines(res), tests_line(res),
             "- not measured: USB's stock loaders with bf16 / channels_last (the stock step waits for its loader);"
             " torch.compile as a config key (there is none: the compile row is the benchmark's own)"]
    errors = [f"{r['bench']} {r.get('variant') or r.get('method', '') + '/' + r.get('pipeline', '')}: {r['error']}"
              for r in res.get("errors", [])]
    errors += [f"steps {r['variant']} {m}: {e}" for r in res.get("steps_bench", []) + res.get("compile", [])
               for m, x in r["methods"].items() for e in x.get("errors", [])]
    if errors:
        lines.append("- errors (see log.txt): " + "; ".join(errors))
    if res.get("stopped"):
        lines.append(f"- {res['stopped']}")
    return lines


def summary_markdown(res: dict, lines: list, sections: dict) -> str:
    out = [f"# GPU check: {res.get('mode')} ({res.get('started')})", "", *lines, "", "## Steps", "",
           "| step | status | seconds | limit (s) |", "|---|---|---:|---:|"]
    for name, rec in res.get("steps", {}).items():
        out.append(f"| {name} | {rec['status']} | {rec.get('seconds', 0):.1f} | {_f(rec.get('limit_s'), '.0f', '-')} |")
    out.append("")
    if res.get("wheels"):
        out += [f"Wheels: {res['wheels']}", ""]
    for name, text in sections.items():
        out += [f"## {name}", "", text.strip(), ""]
    return "\n".join(out) + "\n"
