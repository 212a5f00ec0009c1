"""Break each behaviour on purpose, run the tests that name it, restore the file; print a table.

Each case replaces one snippet of the framework (or a config) by a broken version, runs the
named tests (slow ones included) and puts the file back, whatever happens. A test that still
passes with its behaviour broken cannot fail, and is listed as such.

    python experiments/test_strength/break_and_test.py            # ~5 minutes on 2 cores
    python experiments/test_strength/break_and_test.py --tests-each   # every named test alone
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
EACH = "--tests-each" in sys.argv
CASES = [
    (
        "steady allocator off",
        "nas/_latency/rounds.py",
        "    global _allocator_steadied\n",
        "    return False\n    global _allocator_steadied\n",
        "tests/test_latency.py::test_after_a_measurement_inference_pays_no_page_faults",
    ),
    (
        "mnas pruner never prunes",
        "nas/_search/objective.py",
        "            if trial.should_prune():",
        "            if False and trial.should_prune():",
        "tests/test_search.py::test_the_mnas_pruner_stops_a_trial_below_the_median",
    ),
    (
        "sampler= ignored",
        "nas/_search/samplers.py",
        '    options = dict(options)\n    name = options.pop("name", None)\n',
        '    options = {}\n    name = "random"\n',
        "tests/test_search.py::test_every_sampler_runs",
    ),
    (
        "early stop: slower trials count",
        "nas/_search/early_stop.py",
        "faster = [r for r in done if r.latency_ms <= latency_ms]",
        "faster = list(done)",
        "tests/test_search.py::test_the_dominance_rule_counts_only_faster_trials_better_by_the_margin tests/test_search.py::test_dominated_trials_are_stopped_and_recorded_as_pruned",
    ),
    (
        "early stop: margin ignored",
        "nas/_search/early_stop.py",
        ">= accuracy + cfg.margin",
        ">= accuracy",
        "tests/test_search.py::test_the_dominance_rule_counts_only_faster_trials_better_by_the_margin tests/test_search.py::test_dominated_trials_are_stopped_and_recorded_as_pruned",
    ),
    (
        "MACs limit ignored",
        "nas/_search/objective.py",
        '                ("macs", prof.macs, c.max_macs),\n',
        "",
        "tests/test_search.py::test_latency_and_macs_limits_make_trials_infeasible_and_untrained",
    ),
    (
        "latency limit ignored",
        "nas/_search/objective.py",
        "record.constraints[0] = excess(lat.median_ms, c.max_latency_ms)",
        "record.constraints[0] = 0.0",
        "tests/test_search.py::test_latency_and_macs_limits_make_trials_infeasible_and_untrained",
    ),
    (
        "search.timeout ignored",
        "nas/_storage/workers.py",
        "    while timeout is None or time.monotonic() - start < timeout:",
        "    while True:",
        "tests/test_search.py::test_timeout_stops_the_search_and_writes_results",
    ),
    (
        "no retry cap",
        "nas/_storage/recovery.py",
        "retry = bool(t.params) and retries < MAX_RETRIES",
        "retry = bool(t.params)",
        "tests/test_crash.py::test_a_network_that_keeps_killing_its_worker_is_retried_at_most_twice",
    ),
    (
        "SIGTERM not handled",
        "nas/_storage/workers.py",
        "for sig in (signal.SIGINT, signal.SIGTERM)}",
        "for sig in (signal.SIGINT,)}",
        "tests/test_crash.py::test_sigterm_fails_and_requeues_the_running_trial_and_exits_130",
    ),
    (
        "BN recalibration a no-op",
        "nas/_accuracy/proxy.py",
        "    norms = [\n        m\n        for m in model.modules()",
        "    return\n    norms = [\n        m\n        for m in model.modules()",
        "tests/test_proxy.py::test_bn_recalibration_sets_running_statistics_to_the_batches_exact_average",
    ),
    (
        "BN recalibration never called",
        "nas/_accuracy/proxy.py",
        "            if self.bn_recalibration:",
        "            if False:",
        "tests/test_proxy.py::test_the_proxy_recalibrates_before_every_validation",
    ),
    (
        "optimizer=adamw ignored",
        "nas/_accuracy/proxy.py",
        '        if self.optimizer == "adamw":',
        "        if False:",
        "tests/test_proxy.py::test_adamw_is_the_optimizer_it_says_and_learns",
    ),
    (
        "SQLite without a gate",
        "nas/_storage/gate.py",
        '    if url.startswith("sqlite:///"):\n        return _FileGate(',
        '    if url.startswith("sqlite:///"):\n        return _no_gate\n        return _FileGate(',
        "tests/test_distributed.py::test_sqlite_gate_is_a_file_lock_that_excludes_other_holders tests/test_distributed.py::test_four_processes_at_once_use_the_budget_exactly",
    ),
    (
        "--help header lost",
        "conf/config.yaml",
        "    header: |-",
        "    header_gone: |-",
        "tests/test_cli.py::test_help_prints_hydras_help_with_the_apps_header",
    ),
    (
        "dashboard serves another storage",
        "nas/_report/show.py",
        '    journal = path / "study.journal" if path.is_dir() else path',
        '    journal = path / "missing.journal" if path.is_dir() else path',
        "tests/test_cli.py::test_dashboard_serves_the_runs_study",
    ),
    (
        "Tukey fences off",
        "nas/_latency/rounds.py",
        "    if values.size < 4:\n        return np.ones",
        "    if True:\n        return np.ones",
        "tests/test_latency.py::test_outliers_outside_tukeys_fences_are_dropped",
    ),
    (
        "CI of the median too narrow",
        "nas/_latency/rounds.py",
        "_Z95 = 1.96",
        "_Z95 = 1.0",
        "tests/test_latency.py::test_the_confidence_interval_of_the_median_is_the_binomial_order_statistics",
    ),
    (
        "reference not interpolated",
        "nas/_latency/rounds.py",
        "    w = (position + 1) / (count + 1)",
        "    w = 0.0",
        "tests/test_latency.py::test_ratios_divide_by_the_reference_interpolated_within_the_round",
    ),
    (
        "stopping rule always converged",
        "nas/_latency/rounds.py",
        "        if median_rel_ci(ratios if ratios is not None else ms_kept) > target_rel_spread:\n            return False",
        "        pass",
        "tests/test_latency.py::test_the_stopping_rule tests/test_latency.py::test_rounds_stop_at_convergence_the_round_limit_or_the_budget",
    ),
    (
        "PNG written 0600 (old behaviour)",
        "nas/_io.py",
        '    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")\n    try:\n        with open(tmp, "xb" if binary else "x") as fh:',
        '    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")\n    try:\n        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))\n        with open(tmp, "wb" if binary else "w") as fh:',
        "tests/test_search.py::test_results_are_strict_json_and_files_readable_by_others",
    ),
    (
        "bias ignored (old behaviour)",
        "nas/_models/blocks.py",
        "nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)",
        "nn.Conv2d(cin, cout, k, padding=k // 2)",
        "tests/test_blocks.py::test_inception_module_reproduces_worked_example",
    ),
]
rows = []
for name, path, old, new, tests in CASES:
    file = Path(ROOT) / path
    src = file.read_text()
    if old not in src:
        rows.append((name, tests, "PATCH NOT APPLIED"))
        continue
    file.write_text(src.replace(old, new, 1))
    try:
        for group in [[t] for t in tests.split()] if EACH else [tests.split()]:
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "-m",
                    "slow or not slow",
                    "-x",
                    *group,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=900,
            )
            last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
            verdict = "FAILS as it should" if r.returncode != 0 else "STILL PASSES"
            rows.append((name, " ".join(group), f"{verdict} ({last})"))
            print(rows[-1], flush=True)
    finally:
        file.write_text(src)
print("\n| broken on purpose | test | outcome |\n|---|---|---|")
for name, tests, outcome in rows:
    print(f"| {name} | {' '.join(t.split('::')[1] for t in tests.split())} | {outcome} |")
