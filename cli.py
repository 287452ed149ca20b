"""The `tinyprop` command line."""
import os

# One BLAS thread unless the user says otherwise: at the papers' mini-batch sizes the
# products are too small to split, and idle BLAS threads spinning on the second core
# slowed the Numba kernels (MNIST batch 10: dense epoch 21.3 s with two threads, 10.7 s
# with one). Set before numpy is imported, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import itertools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import click  # noqa: E402

from tinyprop.tasks import mnist, parse, pos  # noqa: E402
from tinyprop.tasks.config import (LSTM_NETS, MNIST_NETS, OPTIMIZERS, OPTION_NAMES, PARSE_DEFAULTS, POS_DEFAULTS,  # noqa: E402
                          ConfigError, Settings, make_settings, read_nnmnist_config)
from tinyprop.tasks.files import DataError, check_writable, read_model_file  # noqa: E402
from tinyprop.tasks.training import TrainingDiverged  # noqa: E402
from tinyprop import __version__  # noqa: E402

USER_ERRORS = (ConfigError, DataError, TrainingDiverged)


def new_run_dir(name, net):
    """Create and return runs/NAME-NET-TIME, or runs/NAME-NET-TIME-2 ... if a run started in the same
    second (a seed sweep in parallel, say) took that name: creating the folder is what claims it."""
    stem = os.path.join("runs", f"{name}-{net}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs("runs", exist_ok=True)
    for attempt in itertools.count(1):
        path = stem if attempt == 1 else f"{stem}-{attempt}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def not_empty(ctx, param, value):
    """An empty path (an unset shell variable, say) is an error, not the option left out."""
    if value == "":
        raise click.BadParameter("an empty path")
    return value


RUN_FILES = ("config.json", "metrics.jsonl", "model.npz", "summary.json")


def missing_folders(path):
    """The folders that creating `path` would make: path and its missing parents, outermost first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.isdir(path):
        missing.insert(0, path)
        path = os.path.dirname(path)
    return missing


def claim_out_dir(out_dir):
    """Create --out (or accept an existing folder that holds no run's files); returns the folders made."""
    previous = [name for name in RUN_FILES if os.path.exists(os.path.join(out_dir, name))]
    if previous:
        raise ConfigError(f"--out {out_dir}: already holds a run ({', '.join(previous)}); give another folder, "
                          "or remove those files to train into it again")
    made = missing_folders(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    return made


def config_goes_first(ctx, param, value):
    if value is not None:
        raise click.UsageError("--config goes before the task name: tinyprop train --config FILE.json [mnist OPTIONS]")


def run_task(name, run, out_dir, settings_from_inputs):
    """Check the settings and the output folder, then train (into a new runs/NAME-NET-TIME unless --out);
    input errors and unwritable folders end as one-line messages, not tracebacks."""
    made = []  # the folders this run created, outermost first
    claimed = None  # the run's folder, once it has one
    try:
        settings = settings_from_inputs()
        if out_dir is None:
            made = missing_folders("runs")
            claimed = new_run_dir(name, settings.net)
            made.append(claimed)
        else:
            out_dir = os.path.normpath(out_dir)  # x/y/../z makes x/y too, which missing_folders would not see
            made = claim_out_dir(out_dir)
            claimed = out_dir
        run(settings, claimed, log=click.echo)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:  # an output folder or file that cannot be created or written
        raise file_error(error) from error
    except MemoryError as error:
        raise click.ClickException(f"out of memory: {error}; the sizes asked for (--hidden, --batch, ...) are too "
                                   "large for this machine") from error
    except KeyboardInterrupt:
        written = [name for name in RUN_FILES if claimed and os.path.exists(os.path.join(claimed, name))]
        if written:
            kept = ", ".join(name + (" (the best dev's until now)" if name == "model.npz" else "") for name in written)
            click.echo(f"\nstopped: {claimed} holds the run so far ({kept}) and no summary.json; to train into it "
                       "again, remove those files", err=True)
        else:
            click.echo("\nstopped", err=True)
        raise SystemExit(130) from None  # the shell's code for a Ctrl-C
    finally:
        # the folders made for a run stopped before it wrote anything (refused data, Ctrl-C) go again
        for folder in reversed(made):
            if not os.path.isdir(folder) or os.listdir(folder):
                break
            os.rmdir(folder)


def file_error(error):
    """A one-line message for a file that cannot be written (or read); other OS errors (a closed pipe,
    say) go on as they are."""
    if error.filename is None:
        raise error
    return click.ClickException(f"{error.filename}: {error.strerror or error}")


@click.group(context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(__version__, prog_name="tinyprop")
def main():
    """tinyprop: minimal-effort backpropagation (meProp) on the CPU.

    \b
    tinyprop train mnist --net mlptop --k 80     train the papers' MNIST MLP with meProp
    tinyprop train --config FILE.json            train from an nnmnist JSON config
    tinyprop train parse --net mlptop --k 20     train the dependency parser with meProp
    tinyprop train pos --net lstmtop --k 10      train the BiLSTM part-of-speech tagger with meProp
    tinyprop evaluate --model runs/X/model.npz   re-evaluate a saved model
    tinyprop bench                               time dense and meProp backward passes
    """


class TrainCommands(click.Group):
    """`tinyprop train`'s own option is --config; a task's options go after the task's name."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as error:
            if any(error.option_name in param.opts for command in self.commands.values() for param in command.params):
                error.message = (f"{error.message.rstrip('.')} (a task's options go after its name: tinyprop train "
                                 f"--config FILE.json mnist {error.option_name} ...)")
            raise


@main.group(cls=TrainCommands, invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), callback=not_empty,
              help="An nnmnist JSON config (keys ClipBound ... TrainTop); options after the task name override it.")
@click.pass_context
def train(ctx, config_path):
    """Train a model on a task. Without a task name, --config trains what its NetType says."""
    ctx.obj = dict(config_path=config_path)
    if ctx.invoked_subcommand is None:
        if not config_path:
            raise click.UsageError("name a task (tinyprop train mnist ...) or give --config FILE.json")
        ctx.invoke(train_mnist)


def training_options(task, batch_unit, example_unit, data_help, defaults=None):
    """The options every task has, with the task's defaults (those that differ from Settings') in their help.
    A mini-batch counts `batch_unit`, --max-examples `example_unit` (a parser's mini-batch is of transitions,
    its splits of sentences)."""
    def default(field):
        return (defaults or {}).get(field, getattr(Settings, field))
    options = [
        click.option("--batch", type=int, help=f"{batch_unit} per mini-batch.  [default: {default('batch')}]"),
        click.option("--epochs", type=int, help=f"Epochs.  [default: {default('epochs')}]"),
        click.option("--iter-per-epoch", type=int,
                     help=f"Parts per epoch; dev is scored after each.  [default: {default('iter_per_epoch')}]"),
        click.option("--optim", type=click.Choice(OPTIMIZERS), help=f"Optimizer.  [default: {default('optim')}]"),
        click.option("--lr", type=float, help=f"Learning rate.  [default: {default('lr')}]"),
        click.option("--seed", type=int,
                     help=f"Random seed; negative: from the clock (recorded).  [default: {default('seed')}]"),
        click.option("--dense-updates", is_flag=True, default=None,
                     help="Update every row every step (as the authors' Adam does), not only rows that received "
                          "gradient: meProp's unselected rows and unused embedding rows then move on their "
                          "momentum (MNIST's dense mlp and cnn update every row anyway and refuse it)."),
        click.option("--clip-bound", type=float,
                     help=f"Clip each gradient entry to [-c, c]; 0: off.  [default: {default('clip_bound')}]"),
        click.option("--train-cycle", type=int,
                     help="meSimp: epochs per cycle; cycles 0, 2, ... prune, 1, 3, ... do not "
                          "(with 5: epochs 1-5, 11-15 prune).  "
                          f"[default: {default('train_cycle')}]"),
        click.option("--max-examples", type=int, help=f"Use at most N {example_unit} of each split (quick runs)."),
        click.option("--data-dir", type=click.Path(file_okay=False), callback=not_empty, help=data_help),
        click.option("--out", "out_dir", type=click.Path(file_okay=False), callback=not_empty,
                     help=f"Output folder.  [default: runs/{task}-NET-TIME]"),
    ]

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command
    return apply


@train.command("mnist")
@click.option("--net", type=click.Choice(MNIST_NETS),
              help="mlp: dense MLP; mlptop: meProp top-k; mlprand: random k; mlpvar: meSimp; cnn: dense CNN; "
                   "cnntop: CNN with spatial top-k.  [default: mlp]")
@click.option("--k", type=int, help="Rows kept per example (with --unified, per mini-batch) in the hidden (fully "
                                    "connected) layers' backward.  [default: 80]")
@click.option("--k-ratio", type=float, help="cnntop: share of each feature map's positions kept by the "
                                          "convolutions' spatial top-k.  [default: 0.05]")
@click.option("--unified", is_flag=True, default=None, help="mlptop with one top-k set per mini-batch.")
@click.option("--hidden", type=int, help="MLP: hidden layer size.  [default: 500]")
@click.option("--layers", type=int, help="MLP: linear layers, counting the output layer.  [default: 3]")
@click.option("--dropout", type=float, help="Dropout rate after each hidden layer.  [default: 0]")
@click.option("--l2", type=float, help="L2 regularisation factor.  [default: 0]")
@click.option("--decay-rate", type=float, help="SGD learning-rate decay (nnmnist's DecayRate).  [default: 0.09]")
@click.option("--eps", type=float, help="AdaGrad epsilon.  [default: 1e-6]")
@click.option("--prune", type=float, help="mlpvar: prune rate; a unit is removed when fewer than this share of "
                                        "the examples since the last pruning had it in their top-k.  [default: 0.1]")
@training_options("mnist", "Examples", "examples",
                  "Folder with the MNIST files; else $TINYPROP_DATA, else ~/.cache/tinyprop (downloaded).")
@click.option("--config", hidden=True, expose_value=False, callback=config_goes_first)
@click.pass_context
def train_mnist(ctx, out_dir, **options):
    """Train the papers' MNIST MLP (784-500-500-10, ReLU, Adam, batch 10) or CNN.

    Writes config.json, metrics.jsonl, model.npz (at the best dev) and summary.json to --out.
    With --config, the settings the file leaves out take nnmnist's defaults, not those shown here.
    """
    config_path = (ctx.obj or {}).get("config_path")
    run_task("mnist", mnist.run, out_dir,
             lambda: make_settings(read_nnmnist_config(config_path) if config_path else {}, options,
                                   config_path=config_path))


EWT_HELP = "Folder with ud-english-ewt/en_ewt-ud-{train,dev,test}.conllu; else $TINYPROP_DATA."


def no_config_file(ctx, task):
    if (ctx.obj or {}).get("config_path"):
        raise click.UsageError(f"--config reads nnmnist (MNIST) configs; the {task} takes its settings as options")


@train.command("parse")
@click.option("--net", type=click.Choice(("mlp", "mlptop", "mlpvar")),
              help="mlp: dense; mlptop: meProp on the hidden and output layers; mlpvar: meSimp.  [default: mlp]")
@click.option("--k", type=int,
              help="Top-k of the hidden layer (and of the output layer, unless --k-out).  [default: 20]")
@click.option("--k-out", type=int, help="Top-k of the output layer.  [default: --k]")
@click.option("--hidden", type=int, help="Hidden layer size.  [default: 500]")
@click.option("--prune", type=float, help="mlpvar: prune rate; a unit is removed when fewer than this share of "
                                        "the transitions since the last pruning had it in their top-k.  [default: 0.1]")
@click.option("--dropout", type=float,
              help="Dropout rate on the hidden layer, as Chen and Manning; 0: none, the papers' Table 2.  "
                   "[default: 0.5]")
@training_options("parse", "Transitions", "sentences", EWT_HELP, PARSE_DEFAULTS)
@click.pass_context
def train_parse(ctx, out_dir, **options):
    """Train Chen and Manning's transition parser (48 features, hidden 500, cube) on UD English EWT.

    Writes config.json, metrics.jsonl, model.npz (at the best dev UAS) and summary.json to --out.
    """
    no_config_file(ctx, "parser")
    run_task("parse", parse.run, out_dir, lambda: make_settings({}, options, defaults=PARSE_DEFAULTS,
                                                                  names=OPTION_NAMES))


@train.command("pos")
@click.option("--net", type=click.Choice(LSTM_NETS),
              help="lstm: dense BiLSTM; lstmtop: meProp top-k on every gate; lstmvar: meSimp.  [default: lstm]")
@click.option("--k", type=int, help="Top-k of each gate's gradient, per time step.  [default: 10]")
@click.option("--hidden", type=int, help="LSTM units per direction.  [default: 500]")
@click.option("--prune", type=float, help="lstmvar: prune rate; a unit is removed when fewer than this share of "
                                        "the time steps since the last pruning had it in some gate's top-k.  "
                                        "[default: 0.08]")
@click.option("--dropout", type=float,
              help="Dropout rate on the BiLSTM's output, as the papers' Table 4; 0: none, their Table 2.  "
                   "[default: 0.5]")
@training_options("pos", "Sentences", "sentences", EWT_HELP, POS_DEFAULTS)
@click.pass_context
def train_pos(ctx, out_dir, **options):
    """Train the papers' tagger (BiLSTM, 500 units per direction, one sentence per mini-batch) on the
    XPOS (Penn Treebank) tags of UD English EWT.

    Writes config.json, metrics.jsonl, model.npz (at the best dev accuracy) and summary.json to --out.
    """
    no_config_file(ctx, "tagger")
    run_task("pos", pos.run, out_dir, lambda: make_settings({}, options, defaults=POS_DEFAULTS, nets=LSTM_NETS,
                                                              names=OPTION_NAMES))


@main.command()
@click.option("--model", "model_path", required=True, type=click.Path(exists=True),
              help="A model.npz written by tinyprop train, or the run's folder that holds it.")
@click.option("--data-dir", type=click.Path(file_okay=False), callback=not_empty,
              help="Folder with the task's data.")
@click.option("--output", type=click.Path(dir_okay=False), callback=not_empty,
              help="Parser models: write the parsed test set (as evaluated) to this CoNLL-U file.")
@click.option("--all-examples", is_flag=True,
              help="Score every example of dev and test, also for a model trained with --max-examples.")
def evaluate(model_path, data_dir, output, all_examples):
    """Re-evaluate a saved model on the dev and test sets.

    Without --data-dir, on the files the model was trained on (model.npz records them); if they
    have moved, on the data found as training finds it. A run with --max-examples is re-scored
    on the same first N of each split, unless --all-examples.
    """
    if os.path.isdir(model_path):
        if not os.path.isfile(os.path.join(model_path, "model.npz")):
            raise click.BadParameter(f"the folder {model_path} holds no model.npz; give a run's folder (tinyprop "
                                     "train's --out) or a model file", param_hint="'--model'")
        model_path = os.path.join(model_path, "model.npz")
    try:
        task_name = read_model_file(model_path)[0].get("task")
        if output and task_name != "parse":
            raise click.UsageError("--output writes parsed trees; it is for parser models")
        if output:
            check_writable(output)
        if task_name == "parse":
            parse.evaluate_saved(model_path, data_dir, output, click.echo, all_examples)
        elif task_name == "pos":
            pos.evaluate_saved(model_path, data_dir, click.echo, all_examples)
        else:
            mnist.evaluate_saved(model_path, data_dir, click.echo, all_examples)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:  # --output cannot be written
        raise file_error(error) from error


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
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench(n_in, n_out, batch, k, rounds, calls, conv, parser, lstm, as_json):
    """Time the backward of single layers: dense (BLAS and loops) against meProp (top, unified, rand).

    The papers' shapes always run (MNIST: linear 784->500 and 500->500 and the CNN's two
    convolutions; the parser's two layers; the tagger's LSTM); --in/--out add a linear layer
    of your choice.
    """
    from tinyprop.bench import (PAPER_CONV_SHAPES, PAPER_SHAPES, PARSER_BATCH, PARSER_K, PARSER_SHAPES, TAGGER_SHAPE,
                                bench_conv, bench_layer, bench_lstm, format_report)
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
    for run in runs:
        results.append(run())
        if not as_json:
            click.echo(format_report(results[-1]))
    if as_json:
        click.echo(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
