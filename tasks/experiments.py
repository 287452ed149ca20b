"""The papers' experiments as files: one TOML file per table or figure, expanded into runs, and run.

A file (experiments/table2.toml) names its table and lists its rows:

    paper = "TKDE 2018"
    table = "Table 2"
    caption = "meProp against the dense baselines"
    deviations = ["UD English EWT in place of the Penn Treebank"]   # how this setting differs from the paper's
    seeds = 5                                      # each row's seeds 1..5, unless the row gives its own

    [[row]]
    label = "MNIST MLP (h=500)"
    task = "mnist"
    settings = { net = "mlp" }                     # the task's settings (tinyprop train's options, as fields)
    paper = { test = 98.20, dev = 98.72 }          # the paper's figures for the row, where it gives them

    [[row]]
    label = "MNIST meProp (k={k})"
    task = "mnist"
    settings = { net = "mlptop", k = [20, 80] }    # a list: one row per value
    paper = { test = [nan, 98.27] }                # then each figure is a list too (nan: none given)
    baseline = "MNIST MLP (h=500)"                 # the row its effect is measured against, seed by seed

A row's seeds are a count (seeds 1..N) or a list. Each run's folder is
RESULTS/EXPERIMENT/ROW/seed-N (RESULTS/quick/... for runs cut short with max_examples or epochs,
which are never mixed with full ones). `reproduce` skips finished runs, resumes interrupted ones
and carries on past failed ones, on this machine's cores or on a Ray cluster. A run identical to a
finished one of another experiment (task, settings, seed) is copied from it, not run again.
"""
import contextlib
import dataclasses
import difflib
import glob
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from importlib import resources

from tinyprop.tasks import TASKS, task_class
from tinyprop.tasks.settings import CORES, KERNEL_THREADS, ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (Python 3.10)
    import tomli as tomllib

FILE_KEYS = {"paper", "table", "caption", "deviations", "seeds", "row"}
ROW_KEYS = {"label", "task", "settings", "seeds", "paper", "baseline"}
FIGURES = {"test": "test score at best dev (%)", "dev": "best dev score (%)", "backprop_s": "backprop time (s)",
           "hidden_sizes": "hidden layer sizes", "epoch": "epoch of the best dev score",
           "active_units": "active hidden units per example (meAct)"}
RUN_SETTINGS = {"seed", "max_examples", "data_dir"}  # the sweep's, not a row's


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table: label, task, settings ({field: value}), seeds, the paper's figures, baseline label.
    family: the label as the file writes it, shared by the rows a grid expands into; grid: (setting, value)."""
    label: str
    task: str
    settings: dict
    seeds: tuple
    paper: dict
    baseline: str = None
    family: str = None
    grid: tuple = None

    @property
    def slug(self):
        return slug(self.label)


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    path: str
    paper: str
    table: str
    caption: str
    deviations: tuple
    rows: tuple

    def row(self, label):
        return next(row for row in self.rows if row.label == label)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its row, seed, folder, and the settings it trains with (a Settings instance)."""
    row: Row
    seed: int
    folder: str
    settings: object

    @property
    def name(self):
        return f"{self.row.slug}/seed-{self.seed}"


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def shipped():
    """The experiment files that come with tinyprop: {name: path}, in the papers' order (table2 before table10)."""
    folder = resources.files("tinyprop.experiments")

    def natural(entry):
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", entry.name)]
    return {entry.name[:-5]: str(entry) for entry in sorted(folder.iterdir(), key=natural)
            if entry.name.endswith(".toml")}


def locate(name):
    """The file of experiment `name`: a path to a .toml file, or the name of one tinyprop ships."""
    if name.endswith(".toml") or os.sep in name:
        if not os.path.isfile(name):
            raise ConfigError(f"{name}: no such experiment file")
        return name
    files = shipped()
    if name not in files:
        raise ConfigError(f"no experiment named {name!r}; tinyprop ships {', '.join(files)} (or give a .toml file)")
    return files[name]


def load(name):
    """The checked Experiment of a name or path; every row's settings are checked before anything runs."""
    path = locate(name)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    fail = Failing(path)
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        fail(f"unknown key {', '.join(unknown)} (a file has {', '.join(sorted(FILE_KEYS))})")
    for key in ("paper", "table", "caption"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            fail(f"{key} must be given, as text")
    deviations = data.get("deviations", [])
    if not (isinstance(deviations, list) and all(isinstance(item, str) for item in deviations)):
        fail("deviations must be a list of texts")
    if "seeds" in data:  # the file's, which rows without their own take: its error is the file's
        checked_seeds(data["seeds"], fail)
    rows = data.get("row")
    if not (isinstance(rows, list) and rows and all(isinstance(row, dict) for row in rows)):
        fail("no rows: give each as a [[row]] table")
    expanded = []
    for number, row in enumerate(rows, 1):
        expanded += expand(row, data.get("seeds"), Failing(path, row_name(row, number)))
    labels = [row.label for row in expanded]
    folders = {}
    for row in expanded:
        if labels.count(row.label) > 1:
            fail(f"two rows are labelled {row.label!r}; labels name the runs' folders, so they must differ")
        if not row.slug:
            Failing(path, f"row {row.label!r}")("the label needs a letter or digit: it names the runs' folder")
        if folders.setdefault(row.slug, row.label) != row.label:
            fail(f"rows {folders[row.slug]!r} and {row.label!r} would share the runs' folder {row.slug!r} (labels "
                 "name it by their letters and digits): make them differ in those")
        if row.baseline is not None and row.baseline not in labels:
            Failing(path, f"row {row.label!r}")(f"baseline {row.baseline!r} is not the label of a row")
    name = os.path.basename(path)[:-5] if path.endswith(".toml") else os.path.basename(path)
    return Experiment(name, path, data["paper"], data["table"], data["caption"], tuple(deviations), tuple(expanded))


class Failing:
    """Raises the ConfigError of a file, or of one of its rows: 'FILE: row 2 (LABEL): what is wrong'."""

    def __init__(self, path, where=None):
        self.where = path if where is None else f"{path}: {where}"

    def __call__(self, problem):
        raise ConfigError(f"{self.where}: {problem}")


def row_name(row, number):
    return f"row {number}" + (f" ({row['label']})" if isinstance(row.get("label"), str) else "")


def expand(row, file_seeds, fail):
    """The Rows of one [[row]] table: one, or one per value of its one list-valued setting."""
    unknown = sorted(set(row) - ROW_KEYS)
    if unknown:
        fail(f"unknown key {', '.join(unknown)} (a row has {', '.join(sorted(ROW_KEYS))})")
    label = row.get("label")
    if not isinstance(label, str) or not label.strip():
        fail("label must be given, as text")
    if row.get("task") not in TASKS:
        fail(f"task {row.get('task')!r} is not one of tinyprop's tasks ({', '.join(TASKS)})")
    settings = row.get("settings", {})
    if not isinstance(settings, dict):
        fail("settings must be a table, { name = value, ... }")
    seeds = checked_seeds(row.get("seeds", file_seeds), fail)
    paper = row.get("paper", {})
    if not isinstance(paper, dict) or set(paper) - set(FIGURES):
        fail(f"paper must be a table of the paper's figures ({', '.join(FIGURES)})")
    baseline = row.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        fail("baseline must be the label of another row")
    grids = [name for name, value in settings.items() if isinstance(value, list)]
    if len(grids) > 1:
        fail(f"settings {', '.join(grids)} are lists; a row may vary one setting (make a row for each other)")
    if not grids:
        check_settings(row["task"], settings, fail)
        return [Row(label, row["task"], settings, seeds, paper, baseline, label)]
    name, values = grids[0], settings[grids[0]]
    if not values or len(set(map(repr, values))) < len(values):
        fail(f"{name} = {values!r}: a grid needs one or more different values")
    for figure, given in paper.items():
        if not (isinstance(given, list) and len(given) == len(values)):
            fail(f"paper's {figure} must be a list of {len(values)} figures, one for each {name} (nan: none)")
    rows = []
    for i, value in enumerate(values):
        one = dict(settings, **{name: value})
        check_settings(row["task"], one, fail)
        rows.append(Row(grid_label(label, name, value), row["task"], one, seeds,
                        {figure: given[i] for figure, given in paper.items()},
                        baseline and baseline.replace(f"{{{name}}}", str(value)), label, (name, value)))
    return rows


def grid_label(label, name, value):
    return label.replace(f"{{{name}}}", str(value)) if f"{{{name}}}" in label else f"{label} {name}={value}"


def checked_seeds(seeds, fail):
    if seeds is None:
        fail("no seeds: give the row (or the file) seeds = N (seeds 1..N) or a list")
    if type(seeds) is int and seeds >= 1:
        return tuple(range(1, seeds + 1))
    if (isinstance(seeds, list) and seeds and all(type(seed) is int and seed >= 0 for seed in seeds)
            and len(set(seeds)) == len(seeds)):
        return tuple(seeds)
    fail(f"seeds = {seeds!r}: give a count >= 1 or a list of different whole numbers >= 0")


def check_settings(task, values, fail):
    """The task's Settings of a row (checked: unknown names, ranges, a setting the net does not use)."""
    cls = task_class(task).Settings
    fields = {f.name for f in cls.fields()}
    for name in values:
        if name in RUN_SETTINGS:
            fail(f"settings: {name} is the sweep's (reproduce's --seeds, --max-examples, --data-dir), not a row's")
        if name not in fields:
            near = difflib.get_close_matches(name, fields - RUN_SETTINGS, n=1)
            fail(f"settings: {name} is not a setting of the {task} task" + (
                f"; did you mean {near[0]}?" if near else f" ({', '.join(sorted(fields - RUN_SETTINGS))})"))
    try:
        return cls(**values).checked(given=set(values), naming=str)
    except ConfigError as error:
        fail(f"settings: {error}")


def run_specs(experiment, results="results", seeds=None, max_examples=None, epochs=None, data_dir=None,
              threads=None):
    """The runs of an experiment: each row with each of its seeds (the first `seeds` of them, if given), on
    `threads` threads where the row does not set them (None: the settings' default)."""
    root = os.path.abspath(results)
    if max_examples is not None or epochs is not None:
        quick = "-".join(part for part in (max_examples and f"max{max_examples}", epochs and f"epochs{epochs}")
                         if part)
        root = os.path.join(root, "quick", f"{experiment.name}-{quick}")
    else:
        root = os.path.join(root, experiment.name)
    chosen = {row.label: row.seeds if seeds is None else tuple(range(1, seeds + 1)) for row in experiment.rows}
    # every row's first seed before any row's second: a sweep cut short has every row, with seeds that pair
    order = sorted((i, r) for r, row in enumerate(experiment.rows) for i in range(len(chosen[row.label])))
    specs = []
    for i, r in order:
        row = experiment.rows[r]
        seed = chosen[row.label][i]
        values = dict(row.settings, seed=seed, max_examples=max_examples,
                      data_dir=data_dir and os.path.abspath(data_dir))
        if epochs is not None:
            values["epochs"] = epochs
        if threads is not None:
            values.setdefault("threads", threads)
        settings = task_class(row.task).Settings(**values).checked(given=set(values) - {"max_examples", "data_dir"})
        specs.append(RunSpec(row, seed, os.path.join(root, row.slug, f"seed-{seed}"), settings))
    return specs


def state(folder):
    """'done' (summary.json), 'stopped' (config.json: to resume) or 'new'."""
    if os.path.isfile(os.path.join(folder, "summary.json")):
        return "done"
    return "stopped" if os.path.isfile(os.path.join(folder, "config.json")) else "new"


def same_settings(spec):
    """Whether the run in spec's folder was made with spec's settings (wherever its data was)."""
    config = run_config(spec.folder)
    return run_key(config["task"], config["settings"]) == run_key(spec.row.task, dataclasses.asdict(spec.settings))


def run_config(folder):
    """The config.json of the run in `folder`, with the task and settings it was made with."""
    from tinyprop.tasks.files import read_json
    path = os.path.join(folder, "config.json")
    config = read_json(path)
    if not (isinstance(config, dict) and isinstance(config.get("settings"), dict) and config.get("task") in TASKS):
        raise ConfigError(f"{path}: not a run's config.json (no task of tinyprop's, or no settings); move its "
                          "folder away")
    return config


def refuse_changed(specs, experiment):
    """ConfigError if a folder of `specs` holds a run (finished or stopped) made with other settings than the
    file gives now: a sweep would not resume it, and a report would show it under the wrong row."""
    changed = [spec.folder for spec in specs if state(spec.folder) != "new" and not same_settings(spec)]
    if changed:
        which = (f"{changed[0]} holds a run" if len(changed) == 1 else
                 f"{len(changed)} run folders (the first: {changed[0]}) hold runs")
        raise ConfigError(f"{which} made with other settings than {experiment.path} now gives; move "
                          f"{'it' if len(changed) == 1 else 'them'} away, or put the file back")


def run_key(task, settings):
    """What makes two runs the same: the task and every setting (the seed too), wherever the data was and on
    however many threads (a stopped run resumes on its own count). A setting added since a run was made (what
    the code did before it), or one its net does not use (None), counts as its default."""
    defaults = dataclasses.asdict(task_class(task).Settings())
    every = {name: defaults.get(name) if value is None else value for name, value in dict(defaults, **settings).items()}
    return task, json.dumps(dict(every, data_dir=None, threads=None), sort_keys=True)


def copy_identical_runs(specs, root):
    """Give each of `specs` a copy of an identical finished run of another experiment under `root` (Table 10's
    dense rows are Table 2's), if there is one; returns how many were copied."""
    finished = {}
    for summary in sorted(glob.glob(os.path.join(root, "*", "*", "seed-*", "summary.json"))):
        config = run_config(os.path.dirname(summary))
        finished.setdefault(run_key(config["task"], config["settings"]), os.path.dirname(summary))
    copied = 0
    for spec in specs:
        source = finished.get(run_key(spec.row.task, dataclasses.asdict(spec.settings)))
        if source is None:
            continue
        os.makedirs(os.path.dirname(spec.folder), exist_ok=True)
        temporary = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(spec.folder))
        for name in ("config.json", "metrics.jsonl", "summary.json", "model.npz"):
            if os.path.exists(os.path.join(source, name)):
                shutil.copy2(os.path.join(source, name), temporary)
        with open(os.path.join(temporary, "log.txt"), "w") as handle:
            handle.write(f"copied from {source}, a finished run with the same task, settings and seed\n")
        os.rename(temporary, spec.folder)  # whole, or not at all
        copied += 1
    return copied


def run_one(task, settings, folder):
    """Train one run of a sweep into `folder`, or resume it if it stopped; its log goes to folder/log.txt.
    Returns (summary, None, log) or (None, the error in a line, log)."""
    from tinyprop.tasks.run import resume, run
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    resuming = state(folder) == "stopped"
    log_path = folder + ".log"  # beside the folder, which run() makes itself
    with open(log_path, "a") as handle:
        def log(line):
            handle.write(line + "\n")
            handle.flush()
        try:
            summary, error = resume(folder, log) if resuming else run(task, settings, folder, log), None
        except Exception as failure:  # reported by the sweep, which goes on with the others
            handle.write(traceback.format_exc())
            summary, error = None, f"{type(failure).__name__}: {failure}"
    if os.path.isdir(folder):
        with open(log_path) as source, open(os.path.join(folder, "log.txt"), "a") as kept:
            kept.write(source.read())
        os.unlink(log_path)
        log_path = os.path.join(folder, "log.txt")
    return summary, error, log_path


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _child(spec, connection):
    """A local run's process: SIGTERM stops it as Ctrl-C does, so that its checkpoint stays resumable."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        connection.send(run_one(spec.row.task, spec.settings, spec.folder))
    except KeyboardInterrupt:
        connection.send((None, "stopped", None))


def local_runs(specs, jobs, events):
    """Run `specs` in processes of their own, `jobs` at a time; yields (spec, summary, error) as each ends.
    The processes come from a fork server that has imported the tasks once, so each starts in milliseconds."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tinyprop.tasks.run", "tinyprop.tasks.mnist", "tinyprop.tasks.pos",
                                    "tinyprop.tasks.parse"])
    waiting, running = list(specs), {}

    def start_runs():
        while waiting and len(running) < jobs:
            spec = waiting.pop(0)
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(spec, send), daemon=True)
            process.start()
            send.close()
            running[process.sentinel] = (spec, process, receive)
            events.started(spec)
    try:
        start_runs()
        while running:
            for sentinel in multiprocessing.connection.wait(list(running)):
                spec, process, receive = running.pop(sentinel)
                process.join()
                try:
                    outcome = receive.recv()
                except EOFError:
                    outcome = None, f"its process ended with exit code {process.exitcode}", None
                start_runs()  # before the ended run's line, which then counts its successor as running
                yield (spec, *outcome)
    finally:  # Ctrl-C, or an error here: stop the runs, which leave their checkpoints
        for spec, process, receive in running.values():
            process.terminate()
        for spec, process, receive in running.values():
            process.join()


def ray_runs(specs, address, events):
    """Run `specs` as Ray tasks of one CPU each (a worker process per run) on the cluster at `address`."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'tinyprop[cluster]'") from None
    environment = {name: os.environ[name] for name in ("TINYPROP_DATA",) if name in os.environ}
    ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": environment}, logging_level="ERROR")
    pending = {}
    try:
        events.jobs = int(ray.cluster_resources().get("CPU", 1))
        remote = ray.remote(num_cpus=1, max_calls=1)(run_one)
        for spec in specs:
            pending[remote.remote(spec.row.task, spec.settings, spec.folder)] = spec
            events.started(spec)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except ray.exceptions.RayError as failure:
                outcome = None, f"Ray: {failure}", None
            yield (spec, *outcome)
    finally:
        for reference in pending:
            ray.cancel(reference, force=True)
        ray.shutdown()


class Sweep:
    """The progress of a sweep over its runs: done, running, failed and left, and the time left (from the
    durations of the runs of each task started and finished in this sweep: a resumed run's is only its rest)."""

    def __init__(self, total, done, todo, jobs, log):
        self.total, self.done, self.jobs, self.log = total, done, jobs, log
        self.waiting = {spec.folder: spec.row.task for spec in todo}
        self.resumed = {spec.folder for spec in todo if state(spec.folder) == "stopped"}
        self.failed, self.durations, self.starts = [], {}, {}
        self.start = time.monotonic()

    def started(self, spec):
        self.starts[spec.folder] = time.monotonic()

    def ended(self, spec, summary, error, log_path):
        seconds = time.monotonic() - self.starts.pop(spec.folder)
        del self.waiting[spec.folder]
        if error is None:
            self.done += 1
            if spec.folder not in self.resumed:
                self.durations.setdefault(spec.row.task, []).append(seconds)
            outcome = f"test {summary['test_acc']:.2f}, best dev {summary['best_dev_acc']:.2f} ({seconds:.0f} s)"
        else:
            self.failed.append((spec, error))
            outcome = f"FAILED: {error}" + (f" (its log: {log_path})" if log_path else "")
        self.log(f"[{self.status()}] {spec.name}: {outcome}")

    def status(self):
        running = len(self.starts)
        text = (f"{self.done}/{self.total} done, {running} running, {len(self.failed)} failed, "
                f"{len(self.waiting) - running} left")
        if self.durations and self.waiting:
            every = [seconds for durations in self.durations.values() for seconds in durations]
            mean = {task: statistics.fmean(durations) for task, durations in self.durations.items()}
            left = math.fsum(mean.get(task, statistics.fmean(every)) for task in self.waiting.values())
            text += f", about {format_duration(left / self.jobs)} to go"
        return text


def format_duration(seconds):
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def plural(count, noun):
    return f"{count} {noun}{'' if count == 1 else 's'}"


def reproduce(experiment, results="results", seeds=None, jobs=None, ray_address=None, max_examples=None,
              epochs=None, data_dir=None, log=print, threads=None):
    """Run every run of `experiment` (a name or a .toml path) that has not finished, each on `threads` threads
    where its row does not set them (default: its share of the cores, cores // jobs, at most NUMBA_NUM_THREADS,
    or one on Ray, whose tasks take one CPU each); returns the Sweep (its `failed`: [(spec, error)])."""
    if not isinstance(experiment, Experiment):
        experiment = load(experiment)
    jobs = jobs or CORES
    if threads is None:
        threads = 1 if ray_address else max(1, min(KERNEL_THREADS, CORES // jobs))
    specs = run_specs(experiment, results, seeds, max_examples, epochs, data_dir, threads)
    refuse_changed(specs, experiment)
    experiment_folder = os.path.dirname(os.path.dirname(specs[0].folder))
    copied = copy_identical_runs([spec for spec in specs if state(spec.folder) == "new"],
                                 os.path.dirname(experiment_folder))
    if copied:
        log(f"{plural(copied, 'run')} copied from the identical finished runs (same task, settings and seed) of other "
            "experiments")
    todo = [spec for spec in specs if state(spec.folder) != "done"]
    sweep = Sweep(len(specs), len(specs) - len(todo), todo, 1 if ray_address else jobs, log)
    resuming = len(sweep.resumed)
    where = f"on the Ray cluster at {ray_address}" if ray_address else f"{jobs} at a time"
    log(f"{experiment.table} ({experiment.name}): {plural(len(specs), 'run')}, {len(specs) - len(todo)} finished "
        f"before, {resuming} to resume, {len(todo) - resuming} to start; {where}; folders under {experiment_folder}")
    if todo:
        runs = ray_runs(todo, ray_address, sweep) if ray_address else local_runs(todo, jobs, sweep)
        with contextlib.closing(runs):  # an error here stops the runs started at once, not when runs is collected
            for spec, *outcome in runs:
                sweep.ended(spec, *outcome)
    log(f"{experiment.name}: {sweep.status()}; took {format_duration(time.monotonic() - sweep.start)}")
    return sweep
