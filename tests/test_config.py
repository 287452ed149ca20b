"""Settings that describe themselves, and nnmnist JSON configs: keys, types, impossible values, overrides."""
import json
import re

import pytest

from tinyprop.tasks.mnist import MnistSettings
from tinyprop.tasks.parse import ParseSettings
from tinyprop.tasks.pos import PosSettings
from tinyprop.tasks.settings import ConfigError, make_settings, nnmnist_keys, read_nnmnist_config, resolve_seed

NNMNIST_DEFAULT_JSON = {  # default.json shipped with the authors' C# nnmnist
    "ClipBound": 5.0, "DecayRate": 0.09, "Eps": 1e-06, "HiddenSize": 500, "IterPerEpoch": 8, "L2RegFactor": 0.0,
    "LabelCount": 10, "Layers": 3, "LearningRate": 0.001, "MaxEpoch": 20, "MinibatchSize": 100, "NetType": "mlp",
    "OptType": "adam", "Prune": 0.1, "RandomSeed": -1, "TestFile": "t10k-images.idx3-ubyte",
    "TestLabelFile": "t10k-labels.idx1-ubyte", "TrainCycle": 5, "TrainFile": "train-images.idx3-ubyte",
    "TrainLabelFile": "train-labels.idx1-ubyte", "TrainTop": 160,
}


def config_file(tmp_path, **values):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    return str(path)


def mnist(config=None, **options):
    """MNIST settings from an nnmnist file (its path) and options, as `tinyprop train` makes them."""
    return make_settings(MnistSettings, read_nnmnist_config(MnistSettings, config) if config else None, options)


def read(path):
    return read_nnmnist_config(MnistSettings, path)[1]


def test_nnmnist_default_json_is_understood(tmp_path):
    path = config_file(tmp_path, **NNMNIST_DEFAULT_JSON)
    settings = mnist(path)
    assert (settings.net, settings.batch, settings.k, settings.hidden, settings.epochs) == ("mlp", 100, None, 500, 20)
    assert settings.train_file == "train-images.idx3-ubyte"  # not beside the config: looked up in the data dir
    meact_keys = {"ActAfter", "ActMask", "ActThreshold"}  # tinyprop's: nnmnist has no meAct
    assert set(nnmnist_keys(MnistSettings)) - meact_keys == set(NNMNIST_DEFAULT_JSON)


def test_missing_keys_take_nnmnist_defaults_and_options_override(tmp_path):
    path = config_file(tmp_path, NetType="mlptop")
    assert mnist(path).batch == 100 and mnist(path).k == 160
    settings = mnist(path, k=40, batch=None, epochs=3)
    assert (settings.k, settings.batch, settings.epochs) == (40, 100, 3)
    assert mnist(net="mlptop").batch == 10 and mnist(net="mlptop").k == 80  # the papers' setting
    assert mnist().k is None  # the dense mlp has no k


def test_each_nnmnist_key_sets_its_own_setting(tmp_path):
    path = config_file(tmp_path, ClipBound=1.5, DecayRate=0.5, Eps=1e-5, HiddenSize=123, IterPerEpoch=4,
                       L2RegFactor=0.01, LabelCount=10, Layers=4, LearningRate=0.002, MaxEpoch=7, MinibatchSize=32,
                       NetType="mlpvar", OptType="adagrad", Prune=0.2, RandomSeed=9, TrainCycle=3, TrainTop=60)
    s = mnist(path)
    assert (s.clip_bound, s.decay_rate, s.eps, s.hidden, s.iter_per_epoch, s.l2, s.label_count, s.layers, s.lr,
            s.epochs, s.batch, s.net, s.optim, s.prune, s.seed, s.train_cycle, s.k) == (
        1.5, None, 1e-5, 123, 4, 0.01, 10, 4, 0.002, 7, 32, "mlpvar", "adagrad", 0.2, 9, 3, 60)  # adagrad: no decay


def test_relative_data_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    values = read(config_file(tmp_path, TrainFile="train-images-idx3-ubyte"))
    assert values["train_file"] == str(tmp_path / "train-images-idx3-ubyte")


@pytest.mark.parametrize("values,message", [
    ({"TrainTopp": 10}, "unknown key 'TrainTopp'; did you mean TrainTop"),
    ({"Colour": 1}, "unknown key 'Colour'; the keys are ActAfter, ActMask, ActThreshold, ClipBound"),
    ({"HiddenSize": "500"}, r"HiddenSize \(--hidden\): must be a whole number"),
    ({"HiddenSize": 2.5}, r"HiddenSize \(--hidden\): must be a whole number"),
    ({"LearningRate": True}, r"LearningRate \(--lr\): must be a number"),
    ({"NetType": 3}, r"NetType \(--net\): must be a string"),
    ({"TrainFile": 7}, "TrainFile must be a file path"),
])
def test_bad_keys_and_types_name_the_key(tmp_path, values, message):
    with pytest.raises(ConfigError, match=message):
        mnist(config_file(tmp_path, **values))


@pytest.mark.parametrize("values,message", [
    ({"NetType": "mlptop", "TrainTop": 0}, r"TrainTop \(--k\): must be at least 1, got 0"),
    ({"NetType": "mlptop", "TrainTop": 500}, r"TrainTop \(--k\): .*got 500"),
    ({"NetType": "mlprand", "TrainTop": -3}, r"TrainTop \(--k\)"),
    ({"Layers": 0}, r"Layers \(--layers\): must be at least 1"),
    ({"NetType": "mlptop", "Layers": 1}, r"Layers \(--layers\): mlptop applies meProp to hidden layers"),
    ({"NetType": "mlps"}, r"NetType \(--net\): 'mlps' is not one of mlp, mlptop"),
    ({"OptType": "rmsprop"}, r"OptType \(--optim\): 'rmsprop' is not one of sgd, adagrad, adam"),
    ({"MinibatchSize": 0}, r"MinibatchSize \(--batch\): must be at least 1"),
    ({"LearningRate": -1}, r"LearningRate \(--lr\): must be above 0, got -1"),
    ({"LabelCount": 1}, "LabelCount: must be at least 2"),
    ({"OptType": "sgd", "DecayRate": 0}, r"DecayRate \(--decay-rate\): must be above 0"),
    ({"NetType": "mlpvar", "Prune": 1.5}, r"Prune \(--prune\): must be at most 1, got 1.5"),
    ({"NetType": "mlpvar", "TrainCycle": 0}, r"TrainCycle \(--train-cycle\): must be at least 1"),
])
def test_impossible_values_name_the_key_and_the_file(tmp_path, values, message):
    path = config_file(tmp_path, **values)
    with pytest.raises(ConfigError, match=re.escape(path) + ": " + message):
        mnist(path)


def test_options_without_a_config_key_are_checked_too():
    with pytest.raises(ConfigError, match=r"^--dropout: must be below 1, got 1.0"):
        mnist(dropout=1.0)
    with pytest.raises(ConfigError, match="^--max-examples: must be at least 1, got 0"):
        mnist(max_examples=0)


def test_a_bad_value_from_the_file_names_the_file_and_one_from_the_command_line_does_not(tmp_path):
    path = config_file(tmp_path, NetType="mlptop", TrainTop=-5)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: TrainTop (--k): ") + ".*got -5"):
        mnist(path)
    with pytest.raises(ConfigError, match=r"^--k \(TrainTop\): .*got 600"):
        mnist(path, k=600)


def test_the_tasks_without_config_files_name_settings_by_option_only():
    with pytest.raises(ConfigError, match=r"^--k: --net lstm does not use it"):
        make_settings(PosSettings, None, dict(net="lstm", k=5))
    with pytest.raises(ConfigError, match=r"^--k: must be smaller than the hidden size 500, got 600"):
        make_settings(ParseSettings, None, dict(net="mlptop", k=600))


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(dict(NetType="mlptop", TrainTop=40)).encode())
    assert mnist(str(path)).k == 40


def test_a_value_the_file_does_not_set_is_not_blamed_on_it(tmp_path):
    path = config_file(tmp_path, NetType="mlptop")
    with pytest.raises(ConfigError, match=r"^--k \(TrainTop\): .*hidden size 100, got 160"):  # nnmnist's default k
        mnist(path, hidden=100)


def test_unified_needs_mlptop():
    with pytest.raises(ConfigError, match="--unified: --net mlprand does not use it"):
        mnist(net="mlprand", unified=True)


@pytest.mark.parametrize("options, message", [
    (dict(net="cnn", hidden=100), "--hidden (HiddenSize): --net cnn does not use it"),
    (dict(net="cnntop", layers=5), "--layers (Layers): --net cnntop does not use it"),
    (dict(net="mlp", k=80), "--k (TrainTop): --net mlp does not use it"),
    (dict(net="mlptop", k_ratio=0.5), "--k-ratio: --net mlptop does not use it"),
    (dict(net="mlptop", prune=0.3), "--prune (Prune): --net mlptop does not use it"),
    (dict(net="mlp", layers=1, hidden=100), "--hidden (HiddenSize): a single linear layer does not use it"),
    (dict(net="mlp", layers=1, dropout=0.5), "--dropout: a single linear layer does not use it"),
    (dict(eps=0.1), "--eps (Eps): --optim adam does not use it"),
    (dict(optim="adagrad", decay_rate=0.5), "--decay-rate (DecayRate): --optim adagrad does not use it"),
])
def test_options_the_net_would_ignore_are_refused(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        mnist(**options)
    with pytest.raises(ConfigError, match=re.escape("--k-out: --net mlp does not use it")):
        make_settings(ParseSettings, None, dict(net="mlp", k_out=5))


def test_config_file_keys_the_net_does_not_use_are_accepted(tmp_path):
    settings = mnist(config_file(tmp_path, NetType="mlp", TrainTop=80, Prune=0.1, TrainCycle=5))
    assert settings.k is None and settings.prune is None  # nnmnist's files carry every key; the mlp uses neither


def test_unreadable_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"HiddenSize": 500,\n "Layers": }')
    with pytest.raises(ConfigError, match="bad.json: line 2, column 12: not valid JSON"):
        read(str(bad))
    with pytest.raises(ConfigError, match="cannot read it"):
        read(str(tmp_path / "absent.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        read(str(tmp_path / "list.json"))
    (tmp_path / "twice.json").write_text('{"TrainTop": 80, "Layers": 3, "TrainTop": 40}')
    with pytest.raises(ConfigError, match="twice.json: TrainTop given twice; keep one"):
        read(str(tmp_path / "twice.json"))
    (tmp_path / "empty.json").write_text('{"TestFile": ""}')
    with pytest.raises(ConfigError, match="empty.json: TestFile must be a file path"):
        read(str(tmp_path / "empty.json"))


def test_non_finite_numbers_and_binary_files(tmp_path):
    path = tmp_path / "inf.json"
    path.write_text('{"MaxEpoch": Infinity}')
    with pytest.raises(ConfigError, match=r"MaxEpoch \(--epochs\): must be a whole number, got inf"):
        mnist(str(path))
    for key, option in (("LearningRate", "lr"), ("ClipBound", "clip-bound"), ("L2RegFactor", "l2"), ("Prune", "prune")):
        for value in ("NaN", "Infinity", "-Infinity"):
            path.write_text(f'{{"NetType": "mlpvar", "{key}": {value}}}')
            with pytest.raises(ConfigError, match=re.escape(f"{path}: {key} (--{option}): must be a finite number")):
                mnist(str(path))
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read(str(path))


@pytest.mark.parametrize("settings, option", [(MnistSettings, "lr"), (MnistSettings, "dropout"),
                                              (MnistSettings, "k_ratio"), (PosSettings, "prune"),
                                              (ParseSettings, "clip_bound"), (ParseSettings, "l2")])
def test_every_float_option_refuses_nan_and_infinities_by_name(settings, option):
    net = {"k_ratio": "cnntop", "prune": "lstmvar"}.get(option)
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ConfigError, match=re.escape(settings.name_of(option)) + ": must be a finite number"):
            make_settings(settings, None, dict({option: value}, **({"net": net} if net else {})))


def test_negative_seed_comes_from_the_clock():
    assert resolve_seed(7) == 7
    assert 0 <= resolve_seed(-1) < 2 ** 31


def test_remaining_bounds():
    with pytest.raises(ConfigError, match=r"--eps \(Eps\): must be above 0, got 0"):
        mnist(optim="adagrad", eps=0.0)
    with pytest.raises(ConfigError, match=r"--l2 \(L2RegFactor\): must be at least 0"):
        mnist(l2=-0.1)
    assert mnist(net="cnntop", k_ratio=1.0).k_ratio == 1.0  # every position: allowed


def test_train_cycle_applies_to_lstmvar():
    settings = make_settings(PosSettings, None, dict(net="lstmvar", train_cycle=2))
    assert settings.train_cycle == 2 and settings.prune == 0.08


def test_seed_zero_is_a_seed():
    assert resolve_seed(0) == 0


def test_settings_describe_their_defaults_per_net_and_check_themselves_from_python():
    assert MnistSettings.defaults_for("k") == "80 with --net mlptop, mlprand, mlpvar, cnntop"
    assert MnistSettings.defaults_for("batch") == "10" and PosSettings.defaults_for("batch") == "1"
    assert ParseSettings.defaults_for("k_out") == "--k" and ParseSettings.defaults_for("dropout") == "0.5"
    settings = MnistSettings(net="mlptop", k=40).checked()
    assert (settings.k, settings.prune, settings.eps) == (40, None, None)  # what mlptop and Adam do not use: None
    with pytest.raises(ConfigError, match=r"^--k \(TrainTop\): --net mlp does not use it"):
        MnistSettings(k=40).checked()  # a value other than the default, for a net that ignores it
    with pytest.raises(ConfigError, match=r"--hidden \(HiddenSize\): must be a whole number, got '500'"):
        MnistSettings(hidden="500").checked()
