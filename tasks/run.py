"""One run for every task: `run`, `resume`, `evaluate` and `predict`, what the command line calls, callable from Python.

    from tinyprop.tasks.run import run
    from tinyprop.tasks.mnist import MnistSettings
    summary = run("mnist", MnistSettings(net="mlptop", k=80, epochs=2), "runs/quick")

A run goes settings -> data -> model -> task -> loop -> files. Its folder is claimed with
os.mkdir (of two runs started on one folder, the second is refused) and locked while it
trains; it holds config.json (the settings, the seed used and where the run came from:
tinyprop.tasks.provenance), metrics.jsonl, model.npz (the best dev's model), checkpoint.npz
(the whole state after the last evaluation; removed when the run ends) and, at the end,
summary.json. `resume(folder)` goes on from the checkpoint and ends with the files the run
would have written had it not stopped.
"""
import dataclasses
import errno
import fcntl
import glob
import itertools
import os
import sys
import time
from contextlib import contextmanager, nullcontext

import numpy as np

from tinyprop.meact import MinimalEffortActivation
from tinyprop.mesimp import Simplifier
from tinyprop.tasks import task_class
from tinyprop.tasks.files import DataError, keep_lines, read_json, read_model_file, write_bytes, write_json, write_npz
from tinyprop.tasks.provenance import provenance
from tinyprop.tasks.settings import KERNEL_THREADS, ConfigError, resolve_seed
from tinyprop.tasks.training import (CHECKPOINT, Checkpoint, UpdateSizes, make_optimizer, param_count, train,
                                     write_summary)

RUN_FILES = ("config.json", "metrics.jsonl", "model.npz", CHECKPOINT, "summary.json")


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (or SIGTERM, which the command line turns into one). out_dir: its folder,
    or None if it stopped before it had one; resumable: whether the folder holds a run to resume."""

    def __init__(self, out_dir, resumable):
        super().__init__(out_dir)
        self.out_dir, self.resumable = out_dir, resumable


def run(task_name, settings, out_dir=None, log=print):
    """Train task `task_name` with `settings` (its Settings class) into the new folder `out_dir` (default:
    runs/TASK-NET-TIME); returns the summary."""
    cls = task_class(task_name)
    if not isinstance(settings, cls.Settings):
        raise ConfigError(f"the {task_name} task takes {cls.Settings.__name__}, got {type(settings).__name__}")
    settings = settings.checked()
    if settings.data_dir:  # so that the run's config.json serves from any folder
        settings = dataclasses.replace(settings, data_dir=os.path.abspath(settings.data_dir))
    made = claim_folder(out_dir or default_folder(task_name, settings.net), default=out_dir is None)
    out_dir = made[-1]
    config_path = os.path.join(out_dir, "config.json")
    training = False
    try:
        with locked(out_dir), using_threads(settings.threads):
            seed = resolve_seed(settings.seed)
            config = dict(task=task_name, settings=dataclasses.asdict(settings), seed_used=seed)
            write_json(config_path, config)  # first: a run killed from here on can be resumed
            paths = cls.locate(settings)
            write_json(config_path, dict(config, provenance=provenance(paths)))
            data = cls.load(paths, settings.max_examples)
            check_data(cls, settings, data)
            task = build_task(cls, settings, data, cls.describe(settings, data), seed)
            training = True
            log(f"{task_name} {task.describe_run(settings)}, seed {seed}; writing to {out_dir}")
            return finish(task, settings, seed, out_dir, train(task, settings, seed, out_dir, log), log)
    except KeyboardInterrupt as interrupt:
        resumable = os.path.exists(config_path)
        raise RunInterrupted(out_dir if resumable else None, resumable) from interrupt
    except BaseException:
        if not training and os.path.exists(config_path):  # refused before it trained: no run to resume
            os.unlink(config_path)
        raise
    finally:
        for folder in reversed(made):  # the folders made for a run that stopped before writing anything go again
            if not os.path.isdir(folder) or os.listdir(folder):
                break
            os.rmdir(folder)


def resume(out_dir, log=print):
    """Go on with the run in `out_dir` from its last checkpoint (from the start, if it has none: it stopped
    before its first was written, or it was removed); returns the summary. The data must be the files the run
    started with; the settings, those it started with. config.json records each resume's own provenance."""
    config_path = os.path.join(out_dir, "config.json")
    if not os.path.isfile(config_path):
        raise ConfigError(f"--resume {out_dir}: holds no config.json; give the folder of a run (tinyprop train's "
                          "--out)")
    if os.path.exists(os.path.join(out_dir, "summary.json")):
        raise ConfigError(f"--resume {out_dir}: the run has finished (summary.json); there is nothing to resume")
    cls, settings, config = read_run_config(config_path)
    seed = config["seed_used"]
    import numba
    threads = min(settings.threads, numba.config.NUMBA_NUM_THREADS)
    if threads < settings.threads:  # moved to a smaller machine: better on fewer threads than not at all
        log(f"note: the run was made on {settings.threads} threads and Numba runs at most {threads} here; it goes on "
            f"with {threads} (tinyprop's kernels give the same bits on any count, BLAS's large products may not)")
    try:
        with locked(out_dir), using_threads(threads):
            for temporary in glob.glob(os.path.join(out_dir, ".tmp-*")):  # a write that a kill interrupted
                os.unlink(temporary)
            started = config.get("provenance")
            if started:  # the files it started with, unchanged
                here = provenance_of_data({key: record["path"] for key, record in started["data_files"].items()},
                                          config_path)
                check_same_data(started["data_files"], here["data_files"])
            else:  # killed before it had located its data
                here = config["provenance"] = provenance(cls.locate(settings))
            paths = {key: record["path"] for key, record in here["data_files"].items()}
            for note in environment_changes(config["provenance"], here):
                log(f"note: {note}; a resumed run repeats the run left alone only in the same environment")
            saved = Checkpoint.read(out_dir)
            if saved and not same_settings(cls, saved[0].get("settings"), settings, out_dir):
                raise DataError(f"{config_path}: its settings differ from those of the run's checkpoint; resume "
                                "goes on with the run as it started: put them back")
            write_json(config_path, dict(config, resumes=config.get("resumes", []) + [here]))
            meta = saved[0]["meta"] if saved else None
            data = cls.load(paths, settings.max_examples, meta=meta)
            task = build_task(cls, settings, data, meta or cls.describe(settings, data), seed)
            resumed = None
            if saved:
                resumed = Checkpoint.restore(os.path.join(out_dir, CHECKPOINT), task, *saved)
                write_npz(os.path.join(out_dir, "model.npz"), resumed[1])  # the first evaluation always saves one
                keep_lines(os.path.join(out_dir, "metrics.jsonl"), resumed[0].metrics_lines)
                log(f"resuming {out_dir} after epoch {resumed[0].epoch} part {resumed[0].parts_done}/"
                    f"{settings.iter_per_epoch}")
            else:
                if os.path.exists(os.path.join(out_dir, "model.npz")):
                    os.unlink(os.path.join(out_dir, "model.npz"))
                metrics = os.path.join(out_dir, "metrics.jsonl")
                if os.path.exists(metrics) and os.path.getsize(metrics):  # results/ keeps no checkpoints (.gitignore)
                    log(f"resuming {out_dir} from the start: it evaluated, but has no {CHECKPOINT} (killed before "
                        "its first was written, or removed, as in a copy of results/); its metrics.jsonl starts again")
                else:
                    log(f"resuming {out_dir} from the start: it stopped before its first evaluation")
            return finish(task, settings, seed, out_dir, train(task, settings, seed, out_dir, log, resumed), log)
    except KeyboardInterrupt as interrupt:
        raise RunInterrupted(out_dir, True) from interrupt


def same_settings(cls, saved, settings, out_dir):
    """Whether a checkpoint's settings are `settings`, read as config.json's are: a setting added to tinyprop
    since the checkpoint was written counts as its default, as in a run that started before it existed."""
    if not isinstance(saved, dict) or set(saved) - {field.name for field in cls.Settings.fields()}:
        return False
    try:
        return cls.Settings(**saved).checked(source={name: out_dir for name in saved}) == settings
    except ConfigError:
        return False


def read_run_config(path):
    """(task class, settings, config) of a run's config.json, each part checked."""
    config = read_json(path)
    if not (isinstance(config, dict) and isinstance(config.get("task"), str)
            and isinstance(config.get("settings"), dict) and type(config.get("seed_used")) is int
            and config["seed_used"] >= 0):
        raise DataError(f"{path}: not the config.json of a tinyprop run (it needs task, settings, and seed_used "
                        "a whole number >= 0)")
    files = config.get("provenance", {"data_files": {}}).get("data_files")
    if not (isinstance(files, dict) and all(isinstance(record, dict) and isinstance(record.get("path"), str)
                                            and isinstance(record.get("sha256"), str) for record in files.values())):
        raise DataError(f"{path}: its provenance's data_files are not {{key: {{path, size, sha256}}}}")
    cls = task_class(config["task"], f"{path}: ")
    unknown = sorted(set(config["settings"]) - {f.name for f in cls.Settings.fields()})
    if unknown:
        raise DataError(f"{path}: settings {', '.join(unknown)} are not the {cls.name} task's; was the run "
                        "made by another tinyprop?")
    settings = cls.Settings(**config["settings"]).checked(source={name: path for name in config["settings"]})
    return cls, settings, config


ENVIRONMENT = ("tinyprop_version", "python", "numpy", "numba", "scipy", "processor", "numba_cpu", "blas",
               "numba_threads")


def environment_changes(before, now):
    """What differs, of what decides float32 rounding, between the provenance of a run's start and now (the
    BLAS libraries in any order: the order they loaded in does not matter); what a run's start did not record
    (an older tinyprop's) is not compared."""
    def shown(name, value):
        if name == "blas" and isinstance(value, list):
            return sorted(" ".join(str(library.get(key)) for key in ("file", "version", "architecture", "num_threads"))
                          for library in value)
        return value
    return [f"{name} was {shown(name, before[name])}, now {shown(name, now.get(name))}" for name in ENVIRONMENT
            if name in before and shown(name, before[name]) != shown(name, now.get(name))]


@contextmanager
def using_threads(count):
    """`count` threads for tinyprop's Numba kernels inside the block, and one for BLAS (threadpoolctl), but for
    the products large enough to share out on `count` (tinyprop.threads). SciPy's BLAS (Numba's np.dot) is
    loaded first, so that it is set too. OpenBLAS makes the threads it lacks: one started with
    OPENBLAS_NUM_THREADS=1 (cli.py) runs more for those products."""
    import numba
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import threadpool_limits
    most = numba.config.NUMBA_NUM_THREADS
    if count > most:
        raise ConfigError(f"--threads {count}: Numba runs at most {most} threads in this process (the cores it may "
                          "use, or NUMBA_NUM_THREADS); give at most that")
    before = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(before)


def build_task(cls, settings, data, meta, seed):
    """The model a description names, with its random stream, optimizer, (meSimp) simplifier, (meAct) activator
    and, where the settings ask or meAct runs, the update sizes' measure, as a task."""
    rng = np.random.default_rng(seed)
    task = cls(data, cls.build_model(meta, rng, settings.dropout or 0.0), meta)
    task.rng = rng
    task.optimizer = make_optimizer(settings, task.model.params(), task.train_size)
    if settings.net in settings.simplified_nets:
        task.simplifier = Simplifier(cls.simplified_pairs(task.model), settings.prune)
    if settings.net in settings.activated_nets:
        task.activator = MinimalEffortActivation(cls.activated_layers(task.model), task.train_size, settings.act_after,
                                                 settings.act_threshold, settings.act_mask)
    if task.activator is not None or getattr(settings, "update_sizes", False):
        task.update_sizes = UpdateSizes(task.model.params())
    return task


def check_data(cls, settings, data):
    """What only the data can tell, in one place, before the model is built."""
    if settings.iter_per_epoch > data.train_size:
        raise ConfigError(f"{settings.name_of('iter_per_epoch')}: {settings.iter_per_epoch} parts of an epoch, but "
                          f"the training set has only {data.train_size} examples to cut into them")
    cls.check(settings, data)


def finish(task, settings, seed, out_dir, training, log):
    """summary.json from the loop's figures and the task's; the checkpoint goes once it is written."""
    summary = dict(task=task.name, net=settings.net, seed=seed, epochs=settings.epochs, **task.summary_fields(settings))
    summary.update(training)
    summary.update(param_count=param_count(task.model.params()), hidden_sizes=task.hidden_sizes())
    if task.simplifier is not None:
        summary.update(original_hidden_sizes=task.simplifier.original_sizes, prune=settings.prune,
                       train_cycle=settings.train_cycle)
        log(f"final sizes {task.simplifier.describe()}; the saved model's (best dev) {summary['saved_hidden_sizes']}")
        summary.update(task.simplified_fields(lambda: load_model(os.path.join(out_dir, "model.npz"))[2], log))
    if task.activator is not None:
        summary.update(task.activator.summary_fields())
    write_summary(out_dir, summary)
    os.unlink(os.path.join(out_dir, CHECKPOINT))
    names = [key[len("best_dev_"):] for key in summary if key.startswith("best_dev_")]
    scores, tests = (" ".join(f"{task.score_name if name == 'acc' else name} {summary[f'{split}_{name}']:.2f}"
                              for name in names) for split in ("best_dev", "test"))
    log(f"best dev {scores} (epoch {summary['best_epoch']} part {summary['best_part']}), test {tests}; train "
        f"{summary['train_time_s']:.1f}s, backward of {task.product_layers_text()} "
        f"{summary['linear_backward_time_s']:.1f}s, peak memory {summary['peak_memory_mb']:.0f} MB")
    return summary


def evaluate(model_path, data_dir=None, all_examples=False, output=None, log=print, threads=KERNEL_THREADS):
    """Score a saved model (a model.npz, or the run folder that holds it) on dev and test: on the files it
    was trained on, unless `data_dir` names others or they have moved, and on the run's --max-examples
    unless `all_examples`, with `threads` threads (using_threads). `output`: a file for the task's predictions
    on test (the parser's CoNLL-U). Returns {split: (loss, score, {other: value})}."""
    model_path = model_file(model_path)
    meta, arrays = read_model_file(model_path)
    if output and not hasattr(task_class(meta.get("task"), f"{model_path}: "), "write_output"):
        raise ConfigError(f"--output writes the parser's parsed test set (CoNLL-U); {meta['task']} models have no "
                          "such output")
    cls, meta, model = build_saved(model_path, *checked_description(model_path, meta, arrays))
    paths, limit = evaluation_data(cls, meta, data_dir, log, all_examples)
    data = cls.load(paths, limit, ("dev", "test"), meta=meta)
    cls.check_saved(meta, data)
    task = cls(data, model, meta)
    scores = {}
    for split in ("dev", "test"):
        with using_threads(threads):
            scores[split] = task.evaluate(split)
        loss, score, others = scores[split]
        title = "accuracy" if cls.score_name == "acc" else cls.score_name.upper()
        shown = "  ".join([f"{title} {score:.2f}%"] + [f"{name.upper()} {value:.2f}%" for name, value in others.items()]
                          + ([f"loss {loss:.4f}"] if not np.isnan(loss) else []))
        log(f"{split}: {shown}  ({data.count_text(split)})")
    if output:
        task.write_output(output)
        log(f"wrote {output}")
    return scores


def to_stderr(message):
    """predict's log: standard output may hold the predictions."""
    print(message, file=sys.stderr)


def predict(model_path, input=None, output=None, tagger=None, log=to_stderr):
    """A saved model's predictions (a model.npz, or the run folder that holds it; each task's `predict` says
    what it reads and writes) on the file `input` (None or "-": standard input), written to the file
    `output` (atomically; None: standard output). `tagger`: for a parser, a tagger's model.npz or run folder,
    whose tags the parser reads instead of the input's XPOS. Returns the text written."""
    cls, meta, model = load_model(model_file(model_path))
    options = {}
    if tagger is not None:
        if cls.name != "parse":
            raise ConfigError(f"--tagger: only parser models take a tagger; --model {model_path} is a {cls.name} model")
        options["tagger"] = load_model(model_file(tagger, "--tagger"))
        if options["tagger"][0].name != "pos":
            raise ConfigError(f"--tagger {tagger}: a {options['tagger'][0].name} model, not a tagger; give a model "
                              "of tinyprop train pos (its run folder or model.npz)")
    from_stdin = input in (None, "-")
    name = "<stdin>" if from_stdin else input
    try:
        stream = nullcontext(sys.stdin.buffer) if from_stdin else open(input, "rb")
    except OSError as error:
        raise DataError(f"{input}: cannot read it ({error.strerror})") from error
    with stream as opened:
        text = cls.predict(model, meta, opened, name, log=log, **options)
    if output:
        write_bytes(output, text.encode("utf-8"))
        log(f"wrote {output}")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return text


def model_file(path, option="--model"):
    """The model.npz that `path` names: the file itself, or the one in a run's folder."""
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "model.npz")):
            raise ConfigError(f"{option} {path}: the folder holds no model.npz; give a run's folder (tinyprop train's "
                              "--out) or a model file")
        return os.path.join(path, "model.npz")
    if not os.path.exists(path):
        raise ConfigError(f"{option} {path}: no such file or folder; give a run's folder (tinyprop train's --out) or "
                          "its model.npz")
    return path


def load_model(path):
    """(task class, meta, model) of a model.npz: its description checked, its arrays put in."""
    return build_saved(path, *read_saved(path))


def read_saved(path):
    """(task class, meta, arrays) of a model.npz, the description checked against the arrays."""
    return checked_description(path, *read_model_file(path))


def checked_description(path, meta, arrays):
    """(task class, meta, arrays), once the task and net are known, the arrays finite, the sizes as they say."""
    cls = task_class(meta.get("task"), f"{path}: ")
    net = meta.get("net")
    nets = cls.Settings.__dataclass_fields__["net"].metadata["about"].choices
    if net not in nets:
        raise DataError(f"{path}: net {net!r} is not a {cls.name} net ({', '.join(nets)}); the file is damaged or "
                        "from another program")
    for name, array in arrays.items():
        if array.dtype.kind != "f":
            raise DataError(f"{path}: {name} holds {array.dtype} values, not floats; the file is damaged or from "
                            "another program")
        if not np.isfinite(array).all():
            raise DataError(f"{path}: {name} holds values that are not finite (NaN or infinite); the model is "
                            "unusable: train it again")
    files = meta.get("data_files", {})
    if not (isinstance(files, dict) and all(isinstance(file, str) for file in files.values())):
        raise DataError(f"{path}: data_files {files!r} is not {{key: path}}")
    limit = meta.get("max_examples")
    if limit is not None and not (type(limit) is int and limit > 0):
        raise DataError(f"{path}: max_examples {limit!r} is neither null nor a positive whole number")
    cls.check_description(path, meta, arrays)
    return cls, meta, arrays


def build_saved(path, cls, meta, arrays):
    """The model of a checked description, with the saved arrays put in."""
    try:
        model = cls.build_model(meta, np.random.default_rng(0))
    except MemoryError as error:
        raise DataError(f"{path}: the model it describes does not fit in this machine's memory") from error
    except (KeyError, TypeError, ValueError) as error:  # a description edited or damaged past the checks above
        raise DataError(f"{path}: its model description cannot be built ({error!r}); the file is damaged") from error
    for param in model.params():
        if param.name not in arrays:
            raise DataError(f"{path}: no array for {param.name}; the file does not match its model description")
        if arrays[param.name].shape != param.shape:
            raise DataError(f"{path}: {param.name} has shape {arrays[param.name].shape}, "
                            f"the model description says {param.shape}")
        param.value[...] = arrays[param.name]
    return cls, meta, model


def evaluation_data(cls, meta, data_dir, log, all_examples=False):
    """The data files to score a saved model on, and how many examples of each split to take, logged.

    The files: those found in `data_dir` if it is given, else the files the model was trained on while
    they are all in place, else those found as training finds them. The count: the run's --max-examples
    (None: all), unless `all_examples`."""
    recorded = meta.get("data_files") or {}
    missing = [path for path in recorded.values() if not os.path.isfile(path)]
    if data_dir is None and recorded and not missing:
        paths = recorded
    else:
        if data_dir is None and missing:
            log(f"the model's training data is not all in place ({', '.join(missing)} missing); looking for the "
                "data as training does")
        paths = cls.locate(cls.Settings(data_dir=data_dir))
    folders = sorted({os.path.dirname(os.path.abspath(path)) for path in paths.values()})
    limit = None if all_examples else meta.get("max_examples")
    sliced = f"; only the first {limit} of each split, as in training" if limit else ""
    log(f"data: {', '.join(folders)}{sliced}")
    return paths, limit


def provenance_of_data(paths, config_path):
    """The resuming process's provenance; a data file it cannot read is a DataError."""
    try:
        return provenance(paths)
    except OSError as error:
        raise DataError(f"{error.filename}: the run read it ({config_path}) and it cannot be read now "
                        f"({error.strerror}); resuming needs the same data") from error


def check_same_data(before, now):
    """The data files a run started with must be the same (sha256) when it resumes."""
    for key, record in before.items():
        if now[key]["sha256"] != record["sha256"]:
            raise DataError(f"{record['path']}: changed since the run started (sha256 {now[key]['sha256'][:12]}..., "
                            f"was {record['sha256'][:12]}...); resuming needs the same data")


def default_folder(task_name, net):
    return os.path.join("runs", f"{task_name}-{net}-{time.strftime('%Y%m%d-%H%M%S')}")


def claim_folder(path, default=False):
    """Make the run's folder with os.mkdir, so that of two runs started on one folder the second is refused;
    a default name taken by a run started in the same second gets -2, -3, ... Returns the folders made,
    outermost first (the missing parents, then the run's)."""
    path = os.path.normpath(path)  # x/y/../z makes x/y too, which the parents' list would not see
    made = []
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(parent):
        if os.path.exists(parent):
            raise NotADirectoryError(errno.ENOTDIR, f"{parent} is a file, not a folder", path)
        made.insert(0, parent)
        parent = os.path.dirname(parent)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    for attempt in itertools.count(1):
        candidate = path if attempt == 1 else f"{path}-{attempt}"
        try:
            os.mkdir(candidate)
            return made + [candidate]
        except FileExistsError:
            if default:
                continue
            held = [name for name in RUN_FILES if os.path.exists(os.path.join(candidate, name))]
            what = f"holds a run ({', '.join(held)})" if held else "exists"
            advice = f"; continue it with: tinyprop train --resume {candidate}" \
                if "config.json" in held and "summary.json" not in held else ""
            raise ConfigError(f"--out {candidate}: {what}; give a new folder (the run makes it){advice}") from None


@contextmanager
def locked(out_dir):
    """Hold an exclusive lock on the run's folder: a second process resuming it is refused at once."""
    handle = os.open(out_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{out_dir}: another process is training into it") from None
        yield
    finally:
        os.close(handle)

