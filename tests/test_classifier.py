"""ClassifierModule: learns the synthetic task, exposes hidden maps, multiclass and multilabel."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from datamodules import SyntheticDataModule
from lightning_modules import ClassifierModule

FRONTEND = {"sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 32}


def _fit(mode: str, epochs: int, tmp_path, **data):
    L.seed_everything(0, workers=True)
    dm = SyntheticDataModule(mode=mode, num_classes=4, duration_s=1.0, num_train=320, num_val=64, num_test=128,
                             batch_size=32, distractor_prob=0.3, max_labels=2, **data)
    model = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [8, 16, 32, 32]}, frontend=FRONTEND,
                             task=mode, num_classes=dm.num_classes, class_names=dm.class_names, lr=3e-3)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    return trainer, model, dm, trainer.test(model, datamodule=dm, verbose=False)[0]


@pytest.mark.slow
def test_tiny_multiclass_classifier_beats_chance_clearly(tmp_path):
    _, _, _, results = _fit("multiclass", 3, tmp_path)
    assert results["test/accuracy"] >= 0.75  # chance is 0.25


@pytest.mark.slow
def test_tiny_multilabel_classifier_beats_prevalence(tmp_path):
    _, _, dm, results = _fit("multilabel", 3, tmp_path)
    assert results["test/map"] >= 0.7  # a random scorer's AP is the prevalence, about 0.4 here
    assert results["test/auroc"] >= 0.8  # random: 0.5


def test_hidden_maps_by_layer_name_and_checkpoint_round_trip(tmp_path):
    model = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 8]}, frontend=FRONTEND,
                             num_classes=3)
    assert model.layer_names == ("block1", "block2", "block3", "block4")
    x = torch.randn(2, 16000) * 0.1
    model.eval()
    feats = model.features(x)
    logits, maps = model.hidden(feats.logmel, ["block2", "block4"])
    assert logits.shape == (2, 3)
    frames = feats.logmel.shape[-1]
    assert maps["block2"].shape == (2, 8, 32 // 4, frames // 4)
    assert maps["block4"].shape == (2, 8, 32 // 16, frames // 16)
    with pytest.raises(KeyError, match="tappable layers"):
        model.hidden(feats.logmel, ["block9"])
    trainer = L.Trainer(accelerator="cpu", logger=False, max_epochs=0, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(model)
    path = tmp_path / "c.ckpt"
    trainer.save_checkpoint(path)
    loaded = ClassifierModule.load_frozen(str(path))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert torch.allclose(loaded(x), model(x), atol=1e-6)
    assert loaded.hparams["frontend"]["n_mels"] == 32


def test_silent_batch_gives_finite_loss():
    model = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 8]}, frontend=FRONTEND,
                             num_classes=3)
    logits = model(torch.zeros(4, 16000))
    loss = model.loss(logits, torch.tensor([0, 1, 2, 0]))
    assert torch.isfinite(logits).all() and torch.isfinite(loss)


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="pos_weight"):
        ClassifierModule(num_classes=3, task="multilabel", pos_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="unknown backbone"):
        ClassifierModule(backbone="resnet999")
    with pytest.raises(ValueError, match="task"):
        ClassifierModule(task="regression")


def test_pretrained_file_and_head_only_finetuning(tmp_path):
    """`pretrained` loads the backbone by name; `finetune: head` trains the head only, frozen BN stats stay."""
    source = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 8]}, frontend=FRONTEND,
                              num_classes=5)
    with torch.no_grad():
        for p in source.backbone.parameters():
            p.add_(torch.randn_like(p))
        source.backbone.block1.bn1.running_mean.add_(1.0)
    path = tmp_path / "pretrained.pth"
    torch.save({"model": source.backbone.state_dict()}, path)

    model = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 8]}, frontend=FRONTEND,
                             num_classes=3, pretrained=str(path), finetune="head", lr=1e-2)
    block_before = {k: v.clone() for k, v in model.backbone.state_dict().items() if not k.startswith("fc.")}
    assert torch.equal(block_before["block1.conv1.weight"], source.backbone.block1.conv1.weight)
    assert torch.equal(block_before["block1.bn1.running_mean"], source.backbone.block1.bn1.running_mean)
    head_before = model.backbone.fc.weight.clone()

    dm = SyntheticDataModule(num_classes=3, duration_s=1.0, num_train=32, num_val=8, num_test=8, batch_size=16)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    optimizer = trainer.optimizers[0]
    assert [g["name"] for g in optimizer.param_groups] == ["head"]
    after = model.backbone.state_dict()
    for key, value in block_before.items():
        assert torch.equal(after[key], value), f"{key} moved although only the head trains"
    assert not torch.equal(model.backbone.fc.weight, head_before)


def test_last_blocks_policy_scales_the_pretrained_learning_rate():
    model = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 8]}, frontend=FRONTEND,
                             num_classes=3, finetune="last_blocks", last_blocks=1, pretrained_lr_scale=0.1, lr=1e-3)
    groups = {g["name"]: g for g in model._param_groups}
    assert groups["head"]["lr"] == pytest.approx(1e-3) and groups["pretrained"]["lr"] == pytest.approx(1e-4)
    assert all(p.requires_grad for p in model.backbone.block4.parameters())
    assert not any(p.requires_grad for p in model.backbone.block1.parameters())
    with pytest.raises(ValueError, match="finetune"):
        ClassifierModule(finetune="some")


def test_official_dataset_metrics_are_logged_at_test(tmp_path):
    """clip_tagging averages chunk predictions per clip; sonyc_ust_coarse gives the DCASE figures."""
    from torch.utils.data import DataLoader

    def batches(num_classes, clip_index):
        g = torch.Generator().manual_seed(0)
        out = []
        for i in range(4):
            out.append({"waveform": torch.randn(4, 8000, generator=g) * 0.1,
                        "target": (torch.rand(4, num_classes, generator=g) > 0.5).float(),
                        "sample_rate": torch.full((4,), 16000)})
            if clip_index:
                out[-1]["clip_index"] = torch.tensor([i, i, i, i])  # 4 chunks of clip i
                out[-1]["target"] = out[-1]["target"][:1].expand(4, -1).clone()
        return out

    for name, num_classes, keys in (("clip_tagging", 5, ("test/roc_auc", "test/pr_auc")),
                                    ("sonyc_ust_coarse", 8, ("test/micro_auprc", "test/macro_auprc", "test/micro_f1"))):
        model = ClassifierModule(backbone_kwargs={"channels": [4, 4, 4, 4]}, frontend=FRONTEND, task="multilabel",
                                 num_classes=num_classes, dataset_metric=name)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=tmp_path)
        loader = DataLoader(batches(num_classes, name == "clip_tagging"), batch_size=None)
        results = trainer.test(model, dataloaders=loader, verbose=False)[0]
        for key in keys:
            assert 0.0 <= results[key] <= 1.0, (name, key, results)
    with pytest.raises(ValueError, match="dataset_metric"):
        ClassifierModule(dataset_metric="official")


def test_empty_batch_is_skipped():
    model = ClassifierModule(backbone_kwargs={"channels": [4, 4, 4, 4]}, frontend=FRONTEND, num_classes=3)
    assert model.training_step({}, 0) is None
