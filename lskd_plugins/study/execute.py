"""Running the grid: data first, then every run whose key has no finished result, at most ``jobs``
at once, with one overall progress line; each run's own output goes to its folder's ``log.txt``.

Backends: ``inline`` (``jobs: 1``: this process), ``pool`` (``jobs: N``: N spawned worker processes,
the CPU cores split between them), ``submitit`` (``launcher: slurm``, one SLURM job per run; or
``submitit-local``, submitit's local executor). All call ``run_task``, which skips a run whose
``result.json`` carries its key, and otherwise resumes it from its own checkpoints.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List

from lskd_plugins.errors import LskdFailure
from lskd_plugins.files import write_text_atomic
from lskd_plugins.locks import DATA_LOCK_NAME, locked, run_lock_path, try_lock
from lskd_plugins.progress import Progress
from lskd_plugins.study import layout, modalities, runners
from lskd_plugins.study.config import substitute
from lskd_plugins.study.eta import Eta, running_text
from lskd_plugins.study.grid import Run
from lskd_plugins.study.keys import tree_hash

RESULT, SETTINGS, LOG = layout.RESULT_JSON, layout.RUN_JSON, layout.LOG_TXT
DATA_LOCK = DATA_LOCK_NAME  # OUTPUT's data are prepared and hashed under it


# ------------------------------------------------------------------------------------ one run
@contextmanager
def redirected(path: Path) -> Iterator[None]:
    """stdout and stderr of this process into ``path``, at the file-descriptor level (fairseq's
    logging and tqdm hold their own references to the streams)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", buffering=1) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def is_done(run: Run, folder: Path) -> bool:
    try:
        return json.loads((folder / RESULT).read_text()).get("key") == run.key
    except (OSError, ValueError):
        return False


def run_task(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    """Train (or resume) one run and write its ``result.json``; a finished run is returned as is."""
    folder = Path(ctx["folders"][run.name])
    if is_done(run, folder):
        return json.loads((folder / RESULT).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    if ctx.get("threads"):
        import torch

        torch.set_num_threads(ctx["threads"])
    settings = {**run.as_dict(), "spec": run.spec, "command": runners.command(run, ctx)}
    write_text_atomic(folder / SETTINGS, json.dumps(settings, indent=1, default=str) + "\n")
    start = time.time()
    with redirected(folder / LOG):
        print(f"study: {run.name} key {run.key}: {shlex.join(settings['command'])}", flush=True)
        out = runners.execute(run, ctx)
    result = {"key": run.key, "name": run.name, **out, "seconds": round(time.time() - start, 2)}
    write_text_atomic(folder / RESULT, json.dumps(result, indent=1) + "\n")
    return result


# --------------------------------------------------------------------------------------- backends
class Inline:
    """``jobs: 1``: each run in this process."""

    def submit(self, run: Run, ctx: Dict[str, Any]) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(run_task(run, ctx))
        except BaseException as exc:  # noqa: BLE001 - handed to the scheduler, which reports it
            if isinstance(exc, KeyboardInterrupt):
                raise
            fut.set_exception(exc)
        return fut

    def close(self, abort: bool = False) -> None:
        pass


def _take_device(devices) -> None:
    """Worker start: one GPU per worker (CUDA_VISIBLE_DEVICES), before torch sees the devices."""
    os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())


class Pool:
    def __init__(self, jobs: int, gpus: int = 0, per_run: int = 1):
        import multiprocessing

        from lskd_plugins.study.devices import gpu_groups

        mp = multiprocessing.get_context("spawn")
        init, initargs = None, ()
        if gpus > 0:
            devices = mp.Queue()
            for i, group in enumerate(gpu_groups(jobs, gpus, per_run)):
                devices.put(i % gpus if per_run == 1 else group)
            init, initargs = _take_device, (devices,)
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp, initializer=init, initargs=initargs)

    def submit(self, run: Run, ctx: Dict[str, Any]) -> Future:
        return self.pool.submit(run_task, run, ctx)

    def close(self, abort: bool = False) -> None:
        """Wait for the workers; on an interrupt stop them at once (their runs resume next time)."""
        if abort:
            for proc in list(getattr(self.pool, "_processes", {}).values()):
                proc.terminate()
        self.pool.shutdown(wait=not abort, cancel_futures=True)


class Submitit:
    """One submitit job per run (SLURM, or submitit's local executor), same keys and resume rules."""

    def __init__(self, cfg: Dict[str, Any], out: Path):
        import submitit

        folder = out / "submitit" / "%j"
        if cfg["launcher"] == "submitit-local":
            self.executor = submitit.LocalExecutor(folder=folder)
            self.executor.update_parameters(timeout_min=int(cfg["slurm"].get("timeout_min", 60)))
        else:
            from lskd_plugins.study.devices import per_run, slurm_parameters

            self.executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
            self.executor.update_parameters(**slurm_parameters(cfg["slurm"], per_run(cfg)))

    def submit(self, run: Run, ctx: Dict[str, Any]):
        return self.executor.submit(run_task, run, ctx)

    def close(self, abort: bool = False) -> None:
        pass


def backend(cfg: Dict[str, Any], out: Path):
    if cfg["launcher"] != "local":
        return Submitit(cfg, out)
    n = int(cfg.get("devices_per_run") or 1)
    if cfg["jobs"] == 1 and n == 1:
        return Inline()
    return Pool(cfg["jobs"], 0 if cfg["device"] == "cpu" else visible_gpus(), n)


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def threads_per_job(cfg: Dict[str, Any]) -> int:
    return cfg["threads_per_job"] or max(1, (os.cpu_count() or 1) // cfg["jobs"])


# -------------------------------------------------------------------------------------- scheduling
def _ready(pending: Dict[str, Run], done: set) -> List[Run]:
    return [r for r in pending.values() if all(d in done for d in r.deps)]


def _finished(running: Dict[str, Any]) -> List[str]:
    while True:
        names = [n for n, job in running.items() if job.done()]
        if names:
            return names
        time.sleep(0.2)


def take(run: Run, ctx: Dict[str, Any], locks: Dict[str, Any], results: Dict[str, Any]) -> bool:
    """Lock ``run``'s folder for this study (``locks``); False when another ``lskd study`` on this
    output holds it (it is training that run now). A run that the other study finished meanwhile is
    reused: its result goes to ``results`` and no lock is kept."""
    folder = Path(ctx["folders"][run.name])
    lock = try_lock(run_lock_path(folder))
    if lock is None:
        return False
    if is_done(run, folder):
        results[run.name] = json.loads((folder / RESULT).read_text())
        lock.release()
    else:
        locks[run.name] = lock
    return True


def start_ready(pending, running, results, locks, be, ctx: Dict[str, Any], bar) -> List[str]:
    """Submit the ready runs (at most ``jobs`` running), each under its lock; returns the ready runs
    another study holds. Runs it finished are taken from ``pending`` into ``results``."""
    busy = []
    for run in _ready(pending, set(results)):
        if len(running) >= ctx["cfg"]["jobs"]:
            break
        if not take(run, ctx, locks, results):
            busy.append(run.name)
            continue
        pending.pop(run.name)
        if run.name in results:
            bar.update(1)
        else:
            running[run.name] = be.submit(run, ctx)
    return busy


def failure(exc: BaseException) -> bool:
    """Whether a rerun can fix a run's failure: an interrupted or crashed run resumes; an lskd error
    (a wrong input or setting, a result that cannot be trusted) stays until its cause is fixed."""
    from lskd_plugins.errors import LskdError

    return not isinstance(exc, LskdError)


def time_left(eta: Eta, pending, running, started, runs: List[Run]) -> float:
    """Seconds left, each run weighed by the mean duration of its sort (``eta``)."""
    by = {r.name: r for r in runs}
    now = time.monotonic()
    return eta.left(
        [(r.modality, r.role) for r in pending.values()],
        [((by[n].modality, by[n].role), now - started.get(n, now)) for n in running],
    )


def finished_run(eta: Eta, runs: List[Run], name: str, result, start: float | None) -> None:
    """A finished run's duration into ``eta``: its own ``seconds`` (as run_task measured it)."""
    run = next(r for r in runs if r.name == name)
    seconds = (result or {}).get("seconds")
    if seconds is None and start is not None:
        seconds = time.monotonic() - start
    if seconds is not None and result is not None:
        eta.finished((run.modality, run.role), seconds)


def study_progress(cfg, runs: List[Run], done: int, eta: Eta, pending, running, started) -> Progress:
    """The overall progress line: time left weighed by each run's sort, and the runs in progress."""
    return Progress(
        len(runs),
        "study",
        unit="run",
        enabled=cfg["progress"],
        initial=done,
        interval=0,
        left=lambda: time_left(eta, pending, running, started, runs),
        note=lambda: running_text({n: time.monotonic() - started.get(n, time.monotonic()) for n in running}),
    )


def schedule(runs: List[Run], ctx: Dict[str, Any], log=print) -> Dict[str, Dict[str, Any]]:
    """Run every unfinished run once its dependencies are done; returns {name: result}. Each run is
    locked while this study runs it: another study on this output moves on to other runs, waits
    when only locked ones are left, and reuses what the other one finished."""
    cfg, out = ctx["cfg"], Path(ctx["out"])
    results = {r.name: run_task(r, ctx) for r in runs if is_done(r, Path(ctx["folders"][r.name]))}
    pending = {r.name: r for r in runs if r.name not in results}
    log(
        f"study: {len(runs)} runs, {len(results)} finished earlier (reused: their keys match), "
        f"{len(pending)} to run, {cfg['jobs']} at once"
    )
    be, running, failed, locks, told = backend(cfg, out), {}, [], {}, set()
    eta, started = Eta(cfg["jobs"]), {}
    bar = study_progress(cfg, runs, len(results), eta, pending, running, started)
    try:
        while pending or running:
            before = len(results)
            busy = [] if failed else start_ready(pending, running, results, locks, be, ctx, bar)
            started.update({n: time.monotonic() for n in running if n not in started})
            if busy and not set(busy) <= told:
                log(f"study: {len(busy)} run(s) in progress in another lskd study on {out}; waiting for them")
                told |= set(busy)
            if not running:
                if busy:
                    time.sleep(1.0)
                if busy or len(results) > before:
                    continue
                break
            for name in _finished(running):
                job = running.pop(name)
                try:
                    results[name] = job.result()
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - LskdError is a SystemExit
                    text = (getattr(exc, "message", None) or str(exc)).replace("lskd: error: ", "")
                    failed.append((f"{name}: {text[:300]} (log: {ctx['folders'][name]}/{LOG})", failure(exc)))
                locks.pop(name).release()
                finished_run(eta, runs, name, results.get(name), started.pop(name, None))
                bar.update(1)
    except BaseException:
        be.close(abort=True)
        raise
    finally:
        bar.close()
        for lock in locks.values():
            lock.release()
    be.close()
    if failed or pending:
        what = failed[0][0] if failed else f"{len(pending)} runs never became ready"
        hint = (
            "rerun to resume (finished runs are reused)"
            if all(fixable for _, fixable in failed)
            else "fix that, then run the same command again (finished runs are reused)"
        )
        raise LskdFailure(f"study: {len(failed)} run(s) failed, first: {what}; {hint}")
    return results


def context(cfg: Dict[str, Any], out: Path, data: Dict[str, str], runs: List[Run]) -> Dict[str, Any]:
    return {
        "cfg": cfg,
        "out": str(out),
        "data": data,
        "threads": threads_per_job(cfg),
        "folders": {r.name: str(out / r.folder) for r in runs},
    }


def plan(cfg: Dict[str, Any], dry_run: bool) -> tuple:
    """(output folder, data paths, data hashes): each modality's data prepared and hashed unless
    ``dry_run``."""
    out = Path(cfg["output"]).resolve()
    data, hashes = {}, {}
    for mod in modalities.present(cfg):
        name = mod.name
        if dry_run:
            given = cfg[name]["data"]
            data[name] = substitute(given, cfg) if given != mod.embedded else mod.dry_run_data(out)
            hashes[name] = "not hashed (dry run)"
            continue
        with locked(out / DATA_LOCK):  # a second study on this output waits while the data are made
            data[name] = mod.prepare(cfg, out)
            if cfg[name]["data"] != mod.embedded:  # what a prepare step made: checked before any training
                mod.check_data(data[name])
            hashes[name] = tree_hash(data[name], out / "cache" / f"{name}_data_manifest.json")
    return out, data, hashes


def dry_run_text(runs: List[Run], ctx: Dict[str, Any]) -> str:
    """The grid and, indented, the shell lines of each run (``dryrun``): the data's preparation
    first, then every run after the runs it reads."""
    from lskd_plugins.study import dryrun

    lines = [f"study (dry run): {len(runs)} runs in {ctx['out']}; nothing is read or written"]
    prepare = dryrun.prepare_lines(ctx["cfg"], ctx["data"])
    lines += ["data (prepared first when missing):", *[f"    {line}" for line in prepare]] if prepare else []
    for r in runs:
        lines.append(f"{r.name}  key {r.key}  after: {', '.join(r.deps) or '-'}")
        lines += [f"    {line}" for line in dryrun.run_lines(r, ctx)]
    return "\n".join(lines)
