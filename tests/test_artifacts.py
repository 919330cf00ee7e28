"""The shared glue: one loader for every artifact (``load_artifact`` dispatches on what the file stores), one base
for the LightningModules (a batch that mixes sample rates is refused by every module), one ``Classifier``
protocol (the by-design model's prediction through it is the model's own, to the bit), and one config reader
(``instantiate``: interpolation, overrides and type checks as ``l2i fit``, only the asked sections built)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from datamodules import SyntheticDataModule
from l2i.checkpoints import CheckpointKindError
from l2i.classifier import Classifier
from l2i.dictionary import DictionaryArtifact
from l2i.frontend import AudioFrontEnd, FrontEndConfig
from lightning_modules import ByDesignModule, ClassifierModule, LMACModule, PostHocInterpreterModule
from lightning_modules.artifacts import load_artifact

FE = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32)
SMALL = {"channels": [4, 8, 8, 8]}


def _save(module, path, stored_class: bool = True) -> str:
    """A Lightning checkpoint; ``stored_class``: as LightningCLI saves it, the class in the hyper-parameters (else
    the kind is told from the weights' names)."""
    hp = {**dict(module.hparams), **({"_class_path": f"lightning_modules.{type(module).__name__}"} if stored_class else {})}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp, "pytorch-lightning_version": L.__version__}, path)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    torch.manual_seed(0)
    clf = ClassifierModule(backbone_kwargs=SMALL, frontend=FE, num_classes=4)
    clf_path = _save(clf, root / "classifier.ckpt")
    W = torch.rand(FE["n_fft"] // 2 + 1, 6)
    art = DictionaryArtifact(W=W / W.norm(dim=0), frontend=AudioFrontEnd(FrontEndConfig(**FE)).config.spectral_params(), meta={})
    dict_path = str(art.save(root / "dictionary.pt"))
    posthoc = PostHocInterpreterModule(classifier_checkpoint=clf_path, dictionary_path=dict_path, hidden=8, attention_dim=8)
    bydesign = ByDesignModule(dictionary_path=dict_path, backbone_kwargs=SMALL, frontend=FE, num_classes=4, hidden=8,
                              attention_dim=8)
    lmac = LMACModule(classifier_checkpoint=clf_path, hidden=8, loss_weights={"in": {0: 1.0, 2: 3.0}})
    return {"classifier": clf_path, "dictionary": dict_path, "posthoc": _save(posthoc, root / "posthoc.ckpt"),
            "bydesign": _save(bydesign, root / "bydesign.ckpt"), "lmac": _save(lmac, root / "lmac.ckpt", stored_class=False),
            "modules": {"posthoc": posthoc, "bydesign": bydesign, "lmac": lmac}}


def test_load_artifact_builds_each_file_as_the_class_it_stores(files):
    want = {"classifier": ClassifierModule, "dictionary": DictionaryArtifact, "posthoc": PostHocInterpreterModule,
            "bydesign": ByDesignModule, "lmac": LMACModule}
    x = torch.randn(2, 8000) * 0.1
    for kind, cls in want.items():
        got = load_artifact(files[kind])
        assert type(got) is cls, kind
        if kind in files["modules"]:
            assert not got.training
            assert torch.equal(got.interpret(x).relevance, files["modules"][kind].eval().interpret(x).relevance), kind
    # L-MAC's weights: the interpreters' schedule shape, a loss not named keeps the recipe's weight
    lmac = load_artifact(files["lmac"], "lmac")
    assert lmac.hparams.loss_weights == {"in": {0: 1.0, 2: 3.0}, "out": {0: 0.2}, "l1": {0: 0.4}, "tv": {0: 0.0}}
    assert lmac.loss_weights() == {"in": 1.0, "out": 0.2, "l1": 0.4, "tv": 0.0}
    with pytest.raises(CheckpointKindError, match="this is a ClassifierModule checkpoint; the test needs a by-design"):
        load_artifact(files["classifier"], "bydesign", verb="the test")


def test_every_module_refuses_a_batch_that_mixes_sample_rates(files):
    """The post-hoc, by-design and L-MAC modules used to take the first clip's rate (L-MAC: none) for the whole
    batch."""
    batch = {"waveform": torch.randn(2, 8000) * 0.1, "sample_rate": torch.tensor([8000, 16000]),
             "target": torch.tensor([0, 1])}
    modules = [load_artifact(files["classifier"]), *files["modules"].values()]
    for module in modules:  # classifier, post-hoc, by-design, L-MAC
        with pytest.raises(ValueError, match=r"a batch mixes sample rates \[8000, 16000\]"):
            module.training_step(batch, 0)
    same = {**batch, "sample_rate": torch.tensor([8000, 8000])}
    assert torch.isfinite(files["modules"]["posthoc"].training_step(same, 0))
    assert torch.isfinite(files["modules"]["lmac"].training_step(same, 0))


def test_an_lmac_checkpoint_of_the_old_layout_still_loads(files, tmp_path):
    """L-MAC's decoder holds f as ``interpreter.classifier`` (the one adapter); a checkpoint that stored it as
    ``interpreter.frontend`` / ``interpreter.backbone`` loads to the same interpretations."""
    state = torch.load(files["lmac"], weights_only=True)
    old = {k.replace("interpreter.classifier.", "interpreter.", 1): v for k, v in state["state_dict"].items()}
    assert any(k.startswith("interpreter.backbone.") for k in old)
    state["state_dict"] = old
    torch.save(state, tmp_path / "old.ckpt")
    x = torch.randn(2, 8000) * 0.1
    got, ref = load_artifact(str(tmp_path / "old.ckpt")), load_artifact(files["lmac"])
    assert torch.equal(got.interpret(x).mask, ref.interpret(x).mask)


def test_the_classifier_protocol_and_the_by_design_prediction(files):
    bydesign = files["modules"]["bydesign"].eval()
    clf = bydesign.as_classifier()
    assert isinstance(clf, Classifier) and isinstance(load_artifact(files["classifier"]), Classifier)
    assert clf.num_classes == 4 and clf.task == "multiclass" and clf.class_names == ["0", "1", "2", "3"]
    x = torch.randn(3, 8000) * 0.1
    with torch.no_grad():
        assert torch.equal(clf(x), bydesign(x).classifier_logits)  # Θ(H) of the model's own forward pass


def test_instantiate_reads_a_config_as_fit_does(tmp_path):
    from experiments.cli import instantiate

    data = {"class_path": "datamodules.SyntheticDataModule",
            "init_args": {"num_classes": 4, "num_test": "${data.init_args.num_classes}", "sample_rate": 8000}}
    model = {"class_path": "lightning_modules.PostHocInterpreterModule",
             "init_args": {"classifier_checkpoint": str(tmp_path / "not-here.ckpt"), "threshold": 0.3}}
    read = instantiate([{"data": data, "model": model}], [("data.init_args.batch_size", "3")])
    assert isinstance(read.data, SyntheticDataModule) and read.model is None  # the model is read, not built
    assert read.data.hparams.batch_size == 3 and read.config["data"]["init_args"]["num_test"] == 4
    assert read.init_args("model")["hidden"] == 128 and "hidden" not in read.init_args("model", given=True)
    assert read.init_args("model", given=True)["threshold"] == 0.3
    with pytest.raises(ValueError, match=r"data.init_args.batch_size: Expected a <class 'int'>. Got value: many"):
        instantiate({"data": data}, {"data.init_args.batch_size": "many"})


def test_instantiate_reads_a_config_given_inline_longer_than_a_file_name():
    """A config dict is passed to the parser as YAML text; text longer than a file name (255 bytes) must not be
    taken for a path (``is_file`` raises ENAMETOOLONG there): the benchmark's own data section is such a dict."""
    from experiments.cli import instantiate

    init = {"mode": "multiclass", "num_classes": 8, "num_train": 2000, "num_val": 200, "num_test": 500,
            "sample_rate": 16000, "duration_s": 2.0, "distractor_prob": 0.5, "seed": 0, "batch_size": 32}
    config = {"data": {"class_path": "datamodules.SyntheticDataModule", "init_args": init}}
    import yaml

    assert len(yaml.safe_dump(config)) > 255
    read = instantiate([config], sections=("data",))
    assert type(read.data).__name__ == "SyntheticDataModule"
    assert read.config["data"]["init_args"]["num_train"] == 2000
