"""The `tinyprop` command line: train, resume, evaluate and predict with the papers' tasks, run and report
the papers' experiments, and time the layers.

It imports the tasks (and with them numpy and Numba) only when a command needs them, inside the
handling of Ctrl-C, so that Ctrl-C at any moment ends with one line, not a traceback. SIGTERM
ends a run as Ctrl-C does (tinyprop.__main__ sets that up), with the shell's code for it (143;
Ctrl-C: 130).
"""
import os

from tinyprop.environment import set_thread_defaults

# before NumPy and Numba load (the tasks import them): BLAS on one thread but for large products, and threads
# that wait for work without spinning beside the others' (tinyprop.environment)
set_thread_defaults()

import inspect  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
from difflib import get_close_matches  # noqa: E402

import click  # noqa: E402

from tinyprop import __version__  # noqa: E402
from tinyprop.tasks import TASKS, task_class  # noqa: E402 (the registry; each task loads when asked for)

# the options that go before or after a task's name
COMMON = {"out_dir": "--out", "seed": "--seed", "data_dir": "--data-dir", "config_path": "--config"}


def stop(signum):
    """Raise KeyboardInterrupt on SIGTERM too, remembering which signal stopped the process."""
    stop.signum = signum
    raise KeyboardInterrupt


stop.signum = signal.SIGINT


def stopped(interrupt):
    """The one line a stopped command ends with, and the shell's exit code for the signal. (A stopped run
    is a tinyprop.tasks.run.RunInterrupted; not imported here: Ctrl-C may have come while numpy loaded.)"""
    if getattr(interrupt, "resumable", False):
        click.echo(f"\nstopped: {interrupt.out_dir} holds the run so far; continue it with: tinyprop train --resume "
                   f"{interrupt.out_dir}", err=True)
    else:
        click.echo("\nstopped", err=True)
    raise SystemExit(128 + stop.signum) from None


class Main(click.Group):
    """The top command: Ctrl-C (and SIGTERM, which tinyprop.__main__ turns into one), while the arguments are
    read (and the tasks imported) or a command runs, end with `stopped`."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as interrupt:
            stopped(interrupt)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            stopped(interrupt)


def carry_out(work):
    """Do `work`; input errors, unwritable files and a lack of memory end as one-line messages."""
    from tinyprop.tasks.files import DataError
    from tinyprop.tasks.settings import ConfigError
    from tinyprop.tasks.training import TrainingDiverged
    try:
        return work()
    except (ConfigError, DataError, TrainingDiverged) as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:  # an output folder or file that cannot be created or written
        if error.filename is None:
            raise
        raise click.ClickException(f"{error.filename}: {error.strerror or error}") from error
    except MemoryError as error:
        raise click.ClickException(f"out of memory: {error}; the sizes asked for (--hidden, --batch, ...) are too "
                                   "large for this machine") from error


def not_empty(ctx, param, value):
    """An empty path (an unset shell variable, say) is an error, not the option left out."""
    if value == "":
        raise click.BadParameter("an empty path")
    return value


def input_file(ctx, param, path):
    """predict's FILE: a file, or - ; a folder is most likely a run's, given where --model goes."""
    if path is not None and os.path.isdir(path):
        raise click.BadParameter(f"{path!r} is a folder, not a file: a model or its run's folder goes to --model "
                                 "(tinyprop predict --model RUN_FOLDER FILE)")
    return path


def common_options(task=None):
    """--out, --seed, --data-dir and --config, which go before or after the task's name."""
    seed_help = "Random seed; negative: from the clock (the seed used is recorded)."
    data_help = "Folder with the task's data; else $TINYPROP_DATA."
    if task is not None:
        settings = task.Settings
        seed_help = _with_default(settings, "seed")
        data_help = _with_default(settings, "data_dir")
    out_default = f"runs/{task.name}-NET-TIME" if task is not None else "runs/TASK-NET-TIME"
    options = [
        click.option("--out", "out_dir", type=click.Path(file_okay=False), callback=not_empty,
                     help=f"The run's folder, new (the run makes it).  [default: {out_default}]"),
        click.option("--seed", type=int, help=seed_help),
        click.option("--data-dir", type=click.Path(file_okay=False), callback=not_empty, help=data_help),
        click.option("--config", "config_path", type=click.Path(dir_okay=False), callback=not_empty,
                     help="Settings from a JSON file: an nnmnist config (keys ClipBound ... TrainTop: MNIST) or a "
                          "run's config.json; options override it."),
    ]

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command
    return apply


def _with_default(settings, name):
    from tinyprop.tasks.settings import about
    default = settings.defaults_for(name)
    return about(settings, name).help + (f"  [default: {default}]" if default else "")


def setting_options(settings):
    """A task's options, as its settings class describes them (help, type, choices, default)."""
    from tinyprop.tasks.settings import about, value_type
    options = []
    for field in settings.fields():
        description = about(settings, field.name)
        if not description.option or field.name in ("seed", "data_dir"):
            continue
        name, help = "--" + field.name.replace("_", "-"), _with_default(settings, field.name)
        kind = value_type(field)
        if kind is bool:
            options.append(click.option(name, is_flag=True, default=None, help=help))
        else:
            options.append(click.option(name, type=click.Choice(description.choices) if description.choices
                                        else kind, help=help))
    return options


class TrainCommands(click.Group):
    """`tinyprop train`'s tasks, made from their settings classes when first asked for."""

    def list_commands(self, ctx):
        return list(TASKS)

    def resolve_command(self, ctx, args):
        if args and args[0] not in TASKS and not args[0].startswith("-"):
            near = get_close_matches(args[0], TASKS, n=1)
            ctx.fail(f"no task {args[0]!r}; the tasks are {', '.join(TASKS)}"
                     + (f" (did you mean {near[0]}?)" if near else ""))
        return super().resolve_command(ctx, args)

    def get_command(self, ctx, name):
        if name not in TASKS:
            return None
        task = task_class(name)

        @click.pass_context
        def train_task(ctx, **options):
            train_with(ctx, name, options)
        for option in reversed(setting_options(task.Settings)):
            train_task = option(train_task)
        train_task = common_options(task)(train_task)
        summary = inspect.cleandoc(task.__doc__).split("\n\n")[0]
        defaults = inspect.cleandoc(task.Settings.__doc__).split("\n\n")[0]
        return click.command(name, short_help=summary, help=(
            f"{summary}\n\nDefaults: {defaults}\n\nWrites config.json (the settings, the seed used, where the run came "
            "from), metrics.jsonl, model.npz (the best dev's), checkpoint.npz after each evaluation (tinyprop train "
            "--resume DIR goes on from it) and, at the end, summary.json to --out."))(train_task)

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as error:
            if any(error.option_name in param.opts for name in TASKS
                   for param in self.get_command(ctx, name).params):
                error.message = (f"{error.message.rstrip('.')} (a task's options go after its name: tinyprop train "
                                 f"mnist {error.option_name} ...)")
            raise


def train_with(ctx, name, options):
    """Settings from the defaults, --config and the options, then the run."""
    from tinyprop.tasks.run import run
    from tinyprop.tasks.settings import make_settings
    common = dict(ctx.obj or {})
    for key in COMMON:
        if options.get(key) is not None:
            if common.get(key) is not None:
                raise click.UsageError(f"{COMMON[key]} given twice, before and after the task's name; give it once")
            common[key] = options[key]
    options = {key: value for key, value in options.items() if key not in COMMON}
    options.update(seed=common.get("seed"), data_dir=common.get("data_dir"))

    def train():
        cls = task_class(name)
        config = read_config(cls, common["config_path"]) if common.get("config_path") else None
        settings = make_settings(cls.Settings, config, options)
        return run(name, settings, common.get("out_dir"), log=click.echo)
    carry_out(train)


def read_config(cls, path):
    """(path, {field: value}, defaults of the fields it leaves out) of --config: a run's config.json (its
    task must be this one; its seed is the seed the run used) or an nnmnist file."""
    from tinyprop.tasks.settings import ConfigError, read_nnmnist_config
    saved = config_task(path)
    if saved is not None:
        task, settings, seed = saved
        if task != cls.name:
            raise ConfigError(f"{path}: the config of a {task} run, not of a {cls.name} run")
        values = {name: value for name, value in settings.items() if value is not None}
        return path, dict(values, **({"seed": seed} if seed is not None else {})), {}
    if not cls.Settings.nnmnist:
        raise ConfigError(f"{path}: nnmnist configs are MNIST's; the {cls.name} task takes its settings as options "
                          "or from a run's config.json")
    return read_nnmnist_config(cls.Settings, path)


def config_task(path):
    """(task, settings, seed used) if `path` is a run's config.json (it has "task" and "settings"), else None."""
    try:
        with open(path, encoding="utf-8-sig") as stream:
            raw = json.load(stream)
    except (OSError, ValueError):
        return None  # read_nnmnist_config says what is wrong with it
    if isinstance(raw, dict) and isinstance(raw.get("settings"), dict) and isinstance(raw.get("task"), str):
        return raw["task"], raw["settings"], raw.get("seed_used")
    return None


@click.group(cls=Main, context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(__version__, prog_name="tinyprop")
def main():
    """tinyprop: minimal-effort backpropagation (meProp) on the CPU.

    \b
    tinyprop train mnist --net mlptop --k 80     train the papers' MNIST MLP with meProp
    tinyprop train --config FILE.json            train from an nnmnist JSON config (or a run's config.json)
    tinyprop train --resume runs/X               continue an interrupted run from its last checkpoint
    tinyprop train parse --net mlptop --k 20     train the dependency parser with meProp
    tinyprop train pos --net lstmtop --k 10      train the BiLSTM part-of-speech tagger with meProp
    tinyprop evaluate --model runs/X             re-evaluate a saved model
    tinyprop predict --model runs/X FILE         tag, parse or classify new input with a saved model
    tinyprop reproduce table2                    run a paper's table: its rows x seeds, all cores
    tinyprop report table2                       its table from the runs, beside the paper's figures
    tinyprop bench                               time dense and meProp backward passes
    """


@main.group(cls=TrainCommands, invoke_without_command=True)
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, exists=True), callback=not_empty,
              help="Continue the interrupted run in this folder from its last checkpoint (no other options: its "
                   "config.json has them).")
@common_options()
@click.pass_context
def train(ctx, resume_dir, **common):
    """Train a model on a task, or resume a run. Without a task name, --config trains what its NetType (or a
    run's config.json) says.

    --out, --seed, --data-dir and --config go before or after the task's name.
    """
    ctx.obj = common
    if resume_dir is not None:
        if ctx.invoked_subcommand is not None or any(value is not None for value in common.values()):
            raise click.UsageError("--resume takes no other options: the run's config.json has them")
        from tinyprop.tasks.run import resume
        carry_out(lambda: resume(resume_dir, log=click.echo))
    elif ctx.invoked_subcommand is None:
        if not common.get("config_path"):
            raise click.UsageError("name a task (tinyprop train mnist ...), or give --config FILE.json or --resume "
                                   "DIR")
        saved = config_task(common["config_path"])
        name = saved[0] if saved and saved[0] in TASKS else next(
            name for name in TASKS if task_class(name).Settings.nnmnist)  # the task that reads nnmnist files
        ctx.invoke(train.get_command(ctx, name))


@main.command()
@click.option("--model", "model_path", required=True, type=click.Path(exists=True),
              help="A model.npz written by tinyprop train, or the run's folder that holds it.")
@click.option("--data-dir", type=click.Path(file_okay=False), callback=not_empty,
              help="Folder with the task's data.")
@click.option("--output", type=click.Path(dir_okay=False), callback=not_empty,
              help="Parser models: write the parsed test set (as evaluated) to this CoNLL-U file.")
@click.option("--all-examples", is_flag=True,
              help="Score every example of dev and test, also for a model trained with --max-examples.")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads of tinyprop's kernels (and of BLAS for large products).  [default: the cores this "
                   "process may use, at most NUMBA_NUM_THREADS]")
def evaluate(model_path, data_dir, output, all_examples, threads):
    """Re-evaluate a saved model on the dev and test sets.

    Without --data-dir, on the files the model was trained on (model.npz records them); if they
    have moved, on the data found as training finds it. A run with --max-examples is re-scored
    on the same first N of each split, unless --all-examples.
    """
    from tinyprop.tasks.files import check_writable
    from tinyprop.tasks.run import evaluate as evaluate_model

    def work():
        if output:
            check_writable(output)
        evaluate_model(model_path, data_dir, all_examples, output, log=click.echo,
                       **({} if threads is None else dict(threads=threads)))
    carry_out(work)


@main.command(short_help="Tag, parse or classify new input with a saved model.")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True), callback=not_empty,
              help="A model.npz written by tinyprop train, or the run's folder that holds it.")
@click.argument("input_path", metavar="[FILE]", required=False, type=click.Path(exists=True, allow_dash=True),
                callback=input_file)
@click.option("--output", type=click.Path(dir_okay=False), callback=not_empty,
              help="Write the predictions to this file instead of standard output.")
@click.option("--tagger", "tagger_path", type=click.Path(exists=True), callback=not_empty,
              help="Parser models: tag the words with this tagger (a model of tinyprop train pos, or its run's "
                   "folder) instead of reading the input's XPOS.")
def predict(model_path, input_path, output, tagger_path):
    """Predict with a saved model: read FILE (default, or -: standard input), write to standard output.

    \b
    pos (tagger) models read plain UTF-8 text, one sentence a line, its words
      separated by whitespace, and write each sentence as word/TAG word/TAG ...
      (the tag follows the last /). An empty line gives an empty line, so that
      output line N is input line N.
    parse models read CoNLL-U (HEAD and DEPREL may be _) and write it with HEAD
      and DEPREL filled and DEPS cleared. The parser reads the XPOS column (every
      word needs a tag), or, with --tagger, the tagger's tags, which the output's
      XPOS column then holds.
    mnist models read an IDX image file (MNIST's format, .gz or not) or a .npy
      array of shape (n, 28, 28) or (n, 784), pixels uint8 0-255 or floats 0-1
      (training scales uint8 / 255), and write one digit a line.

    A word the model has no embedding for (seen fewer than twice in training) gets the shared
    UNKNOWN embedding, as in training and evaluation: the tagger also reads its last three
    letters and its shape, the parser its tag (a tag it was not trained on is UNKNOWN too).
    A count of them goes to standard error.
    """
    from tinyprop.tasks.files import check_writable
    from tinyprop.tasks.run import predict as predict_with

    def work():
        if output:
            check_writable(output)
        predict_with(model_path, input_path, output, tagger_path, log=lambda message: click.echo(message, err=True))
    try:
        carry_out(work)
    except BrokenPipeError:  # the reader of standard output left (| head): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the interpreter's last flush would fail again
        raise SystemExit(1) from None


def experiment_names():
    from tinyprop.tasks.experiments import shipped
    return ", ".join(shipped())


class ExperimentCommand(click.Command):
    """A command whose help lists the experiment files tinyprop ships (read only when help is asked for)."""

    def format_help_text(self, ctx, formatter):
        super().format_help_text(ctx, formatter)
        with formatter.indentation():
            formatter.write_text(f"Experiments: {experiment_names()}.")


@main.command(cls=ExperimentCommand)
@click.argument("experiment")
@click.option("--seeds", type=click.IntRange(min=1), help="Run seeds 1..N of every row (default: each row's).")
@click.option("--jobs", type=click.IntRange(min=1),
              help="Runs at a time on this machine.  [default: the cores this process may use]")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads of each run that its row does not set.  [default: its share of the cores, cores // "
                   "jobs, at most NUMBA_NUM_THREADS; on Ray, 1]")
@click.option("--ray", "ray_address", callback=not_empty,
              help="Run on a Ray cluster instead: its address (HOST:PORT), or 'auto' for the one this machine "
                   "belongs to. Needs tinyprop[cluster].")
@click.option("--results", default="results", show_default=True, type=click.Path(file_okay=False),
              callback=not_empty, help="Folder of the runs' folders (RESULTS/EXPERIMENT/ROW/seed-N).")
@click.option("--max-examples", type=click.IntRange(min=1),
              help="A quick look: the first N examples of each split (runs go to RESULTS/quick/).")
@click.option("--epochs", type=click.IntRange(min=1), help="A quick look: N epochs (runs go to RESULTS/quick/).")
@click.option("--data-dir", type=click.Path(file_okay=False), callback=not_empty,
              help="Folder with the tasks' data (mnist/, ud-english-ewt/); else $TINYPROP_DATA, else MNIST "
                   "alone from ~/.cache/tinyprop (downloaded).")
def reproduce(experiment, seeds, jobs, threads, ray_address, results, max_examples, epochs, data_dir):
    """Run an experiment: every row of a paper's table with each of its seeds, each run in a process of
    its own.

    EXPERIMENT is the name of one of tinyprop's experiment files or the path of a .toml file.
    Finished runs are skipped, interrupted ones resumed from their checkpoints; a run that fails
    is reported and the others go on. Each run's log is in its folder's log.txt. Then: tinyprop
    report EXPERIMENT.
    """
    from tinyprop.tasks.experiments import reproduce as reproduce_experiment
    if jobs is not None and ray_address is not None:
        raise click.UsageError("--jobs runs on this machine, --ray on a cluster: give one of them")

    def work():
        try:
            return reproduce_experiment(experiment, results, seeds, jobs, ray_address, max_examples, epochs,
                                        data_dir, log=click.echo, threads=threads)
        except KeyboardInterrupt:
            click.echo("\nstopped: the same command goes on (finished runs are kept, the others resume from their "
                       "checkpoints)", err=True)
            raise SystemExit(128 + stop.signum) from None
    sweep = carry_out(work)
    if sweep.failed:
        raise click.ClickException(f"{len(sweep.failed)} runs failed: " + "; ".join(
            f"{spec.name}: {error}" for spec, error in sweep.failed))


@main.command(cls=ExperimentCommand)
@click.argument("experiment", required=False)
@click.option("--results", default="results", show_default=True, type=click.Path(file_okay=False),
              callback=not_empty, help="Folder of the runs' folders, as reproduce's --results.")
@click.option("--format", "form", type=click.Choice(["md", "csv"]), default="md", show_default=True,
              help="Markdown tables, or one CSV line per row with the figures unrounded.")
@click.option("--output", type=click.Path(dir_okay=False), callback=not_empty, help="Write to this file.")
@click.option("--plots", type=click.Path(file_okay=False), callback=not_empty,
              help="Also draw the figures (PNG and SVG) into this folder. Needs tinyprop[plot].")
@click.option("--max-examples", type=click.IntRange(min=1), help="Report the quick runs made with --max-examples N.")
@click.option("--epochs", type=click.IntRange(min=1), help="Report the quick runs made with --epochs N.")
@click.option("--update-docs", is_flag=True,
              help="Instead, rewrite RESULTS.md and README.md's results table (in this folder) from the runs.")
def report(experiment, results, form, output, plots, max_examples, epochs, update_docs):
    """Make an experiment's table from its finished runs: for each row, its seeds' test and dev scores
    (mean, standard deviation, lowest, highest), backprop time and sizes, the paper's figures beside
    them, and the per-seed difference to the row's baseline; then whether the paper's direction of effect
    holds, from the 95% interval of that difference (or is not settled by the seeds).

    EXPERIMENT is the name of one of tinyprop's experiment files or the path of a .toml file.
    """
    from tinyprop.tasks import report as reports
    from tinyprop.tasks.files import write_bytes
    if update_docs == (experiment is not None):
        raise click.UsageError("name an EXPERIMENT, or give --update-docs (which reports them all)")
    ignored = [name for name, given in (("--format", form != "md"), ("--output", output), ("--plots", plots),
                                        ("--max-examples", max_examples), ("--epochs", epochs)) if given]
    if update_docs and ignored:
        raise click.UsageError(f"--update-docs rewrites RESULTS.md and README.md in this folder from the full runs; "
                               f"it takes no {', '.join(ignored)}")

    def work():
        if update_docs:
            for path, text in reports.documents(results).items():
                write_bytes(path, text.encode())
                click.echo(f"wrote {path}")
            return
        result = reports.collect(experiment, results, max_examples, epochs)
        text = reports.markdown(result) if form == "md" else reports.csv_text(result)
        if output:
            write_bytes(output, text.encode())
            click.echo(f"wrote {output}")
        else:
            click.echo(text, nl=False)
        drawn = reports.plots(result, plots) if plots else []
        if plots and not drawn:
            click.echo("no finished runs: no figures drawn", err=True)
        for path in drawn:
            for made in (path, os.path.splitext(path)[0] + ".svg"):
                click.echo(f"wrote {made}", err=True)  # standard output may hold the table
    carry_out(work)


@main.command()
@click.option("--in", "n_in", type=int, help="Input size of an extra linear layer to time.")
@click.option("--out", "n_out", type=int, help="Output size of an extra linear layer to time.")
@click.option("--batch", type=int, default=10, show_default=True, help="Mini-batch size.")
@click.option("--k", type=int, default=80, show_default=True, help="k of the linear meProp variants.")
@click.option("--rounds", type=int, default=30, show_default=True, help="Alternating rounds; medians are over these.")
@click.option("--calls", type=int, default=20, show_default=True, help="Backward calls timed together per round.")
@click.option("--conv/--no-conv", default=True, show_default=True,
              help="Also time the CNN's convolutions, dense against spatial top-k (ratios 0.01-0.10).")
@click.option("--parser/--no-parser", default=True, show_default=True,
              help="Also time the parser's layers (2400->500 and 500->103, batch 10,000, k 20).")
@click.option("--lstm/--no-lstm", default=True, show_default=True,
              help="Also time the tagger's LSTM backward through time (140->500, 16 steps, k 10 per gate).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Also time each layer on this many threads (BLAS's and the kernels'), after one thread, with "
                   "each variant's speed-up.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench(n_in, n_out, batch, k, rounds, calls, conv, parser, lstm, threads, as_json):
    """Time the backward of single layers: dense (BLAS and loops) against meProp (top, unified, rand).

    The papers' shapes always run (MNIST: linear 784->500 and 500->500 and the CNN's two
    convolutions; the parser's two layers; the tagger's LSTM); --in/--out add a linear layer
    of your choice.
    """
    from tinyprop.bench import (PAPER_CONV_SHAPES, PAPER_SHAPES, PARSER_BATCH, PARSER_K, PARSER_SHAPES, TAGGER_SHAPE,
                                bench_conv, bench_layer, bench_lstm, format_report)
    from tinyprop.tasks.run import using_threads
    if (n_in is None) != (n_out is None):
        raise click.UsageError("give both --in and --out, or neither")
    shapes = list(PAPER_SHAPES) + ([(n_in, n_out)] if n_in is not None else [])
    for shape_in, shape_out in shapes:
        if not 1 <= k <= shape_out or batch < 1 or shape_in < 1 or rounds < 1 or calls < 1:
            raise click.UsageError(f"need 1 <= k <= out and positive sizes, rounds and calls; got in {shape_in}, "
                                   f"out {shape_out}, batch {batch}, k {k}, rounds {rounds}, calls {calls}")
    runs = [lambda shape=shape: bench_layer(*shape, batch, k, rounds=rounds, calls=calls) for shape in shapes]
    if conv:
        runs += [lambda shape=shape: bench_conv(*shape, batch, rounds=max(1, rounds // 3), calls=max(1, calls // 4))
                 for shape in PAPER_CONV_SHAPES]
    if parser:
        runs += [lambda shape=shape: bench_layer(*shape, PARSER_BATCH, PARSER_K, rounds=max(1, rounds // 3), calls=1,
                                                 pool=4) for shape in PARSER_SHAPES]
    if lstm:
        runs.append(lambda: bench_lstm(**TAGGER_SHAPE, rounds=max(1, rounds * 2 // 3), calls=max(1, calls // 2)))
    results = []

    def timed(run, count):
        with using_threads(count):
            return run()
    for run in runs:
        for count in sorted({1, threads}):  # the papers' comparison is on one thread
            results.append(carry_out(lambda: timed(run, count)))
            if not as_json:
                click.echo(format_report(results[-1], single=results[-2] if count > 1 else None))
    if as_json:
        click.echo(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
