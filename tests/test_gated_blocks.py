"""The classifier-gated block loss of the post-hoc interpreter (Ψ explains the clip with the blocks of the classes
the classifier detects) and the by-design model's options started from it (``interpreter_init``, ``distill``)."""

from __future__ import annotations

import pytest
import torch

from l2i.dictionary import DictionaryArtifact
from l2i.interpreter.posthoc import PostHocInterpreter, gated_block_loss
from lightning_modules.classifier import ClassifierModule

FE = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, duration_s=1.0)
BLOCKS = torch.tensor([[True, True, False, False, False], [False, False, True, True, False]])  # column 4: noise


#: tiny matrices: torch on one thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread_module")


def test_the_gate_weighs_each_block_by_the_classifiers_decision():
    H = torch.ones(2, 5, 4)
    logits = torch.tensor([[4.0, -4.0], [-1.0, 4.0]])  # clip 0: class 0 detected; clip 1: class 1, class 0 at 0.27
    # hard at 0.2: only class 1's block on clip 0 (2 of 10 components x frames)
    assert float(gated_block_loss(H, BLOCKS, logits, "hard", 0.2)) == pytest.approx(2 / 10)
    # hard at 0.5: class 0 at p = 0.27 is now undetected too
    assert float(gated_block_loss(H, BLOCKS, logits, "hard", 0.5)) == pytest.approx(4 / 10)
    p = logits.sigmoid()
    soft = (2 * (1 - p[0, 0]) + 2 * (1 - p[0, 1]) + 2 * (1 - p[1, 0]) + 2 * (1 - p[1, 1])) / 10
    assert float(gated_block_loss(H, BLOCKS, logits, "soft")) == pytest.approx(float(soft), rel=1e-6)
    only_noise = torch.zeros(2, 5, 4)
    only_noise[:, 4] = 7.0
    assert float(gated_block_loss(only_noise, BLOCKS, logits, "hard", 0.9)) == 0.0  # the noise column is free
    with pytest.raises(ValueError, match="block_gate must be one of soft, hard"):
        gated_block_loss(H, BLOCKS, logits, "sharp")
    with pytest.raises(ValueError, match=r"blocks must be \(C=2, K=5\)"):
        gated_block_loss(H, BLOCKS[:, :4], logits)


def _classifier():
    torch.manual_seed(0)
    return ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 8]}, frontend=FE,
                            num_classes=2, task="multilabel", class_names=["a", "b"]).eval().requires_grad_(False)


def _train(net: PostHocInterpreter, x: torch.Tensor, steps: int, gate_weight: float) -> torch.Tensor:
    opt = torch.optim.Adam(net.trainable_parameters(), lr=1e-2)
    for _ in range(steps):
        losses = net.losses(net(x))
        total = 5.0 * losses["reconstruction"] + gate_weight * losses.get("block_gate", 0.0)
        opt.zero_grad()
        total.backward()
        opt.step()
    return net(x)


def test_the_gated_loss_silences_the_undetected_classes_blocks_in_psis_own_activations():
    clf = _classifier()
    x = torch.randn(4, 8000) * 0.1
    # the classifier's decisions, made clear-cut for the test: class 0 detected on every clip, class 1 on none
    with torch.no_grad():
        clf.backbone.fc.bias.copy_(torch.tensor([6.0, -6.0]))
        clf.backbone.fc.weight.mul_(1e-3)
    W = torch.rand(129, 5, generator=torch.Generator().manual_seed(1)) + 0.01
    share = {}
    for weight in (0.0, 20.0):
        torch.manual_seed(0)
        net = PostHocInterpreter(clf.frontend, clf.backbone, W, num_classes=2, task="multilabel", hidden=8,
                                 evidence=BLOCKS, theta_bias=True, block_gate="hard", block_gate_threshold=0.2).train()
        out = _train(net, x, 40, weight)
        H = out.activations.detach()
        share[weight] = float(H[:, 2:4].sum() / H[:, :4].sum())  # class 1's block's part of the class blocks
    assert share[20.0] < 0.05 < share[0.0], share


def test_block_gate_needs_blocks_and_a_known_gate():
    clf = _classifier()
    W = torch.rand(129, 5) + 0.01
    with pytest.raises(ValueError, match="block_gate needs Θ tied to class blocks"):
        PostHocInterpreter(clf.frontend, clf.backbone, W, num_classes=2, task="multilabel", hidden=8, block_gate="hard")
    with pytest.raises(ValueError, match="block_gate must be one of soft, hard"):
        PostHocInterpreter(clf.frontend, clf.backbone, W, num_classes=2, task="multilabel", hidden=8, evidence=BLOCKS,
                           block_gate="on")
    net = PostHocInterpreter(clf.frontend, clf.backbone, W, num_classes=2, task="multilabel", hidden=8, evidence=BLOCKS)
    assert "block_gate" not in net.losses(net(torch.randn(2, 8000) * 0.1))  # the authors' losses by default


def test_bydesign_starts_from_the_interpreter_and_distils_from_a_frozen_black_box(tmp_path):
    import lightning as L

    from lightning_modules import ByDesignModule
    from lightning_modules.posthoc import PostHocInterpreterModule

    clf = _classifier()
    trainer = L.Trainer(max_epochs=0, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(clf)
    trainer.save_checkpoint(tmp_path / "clf.ckpt")
    art = DictionaryArtifact(W=torch.rand(129, 5) + 0.01, frontend=clf.frontend.config.spectral_params(),
                             meta={"labels": ["a", "a", "b", "b", "noise"]})
    torch.manual_seed(3)
    post = PostHocInterpreterModule(classifier=clf, dictionary=art, hidden=8, pooling="max", block_evidence=True,
                                    theta_bias=True, class_names=["a", "b"])
    torch.save(post.state_dict(), tmp_path / "posthoc.pt")
    kw = dict(dictionary=art, classifier_checkpoint=str(tmp_path / "clf.ckpt"), num_classes=2, task="multilabel",
              class_names=["a", "b"], hidden=8, pooling="max", block_evidence=True, theta_bias=True)
    model = ByDesignModule(**kw, distill=True, interpreter_init=str(tmp_path / "posthoc.pt"),
                           loss_weights={"reconstruction": 1.0, "distillation": 1.0})
    for part in ("psi", "theta"):
        mine, theirs = getattr(model.model, part).state_dict(), getattr(post.interpreter, part).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    batch = {"waveform": torch.randn(4, 8000) * 0.1, "target": torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])}
    model.train()
    loss = model._step(batch, "train")
    loss.backward()
    torch.optim.SGD(model.model.trainable_parameters(), lr=1.0).step()
    assert not model.teacher.training and all(torch.equal(before[k], v) for k, v in model.teacher.state_dict().items())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    from l2i.interpreter.bydesign import bydesign_losses

    out = model(batch["waveform"])
    teacher = model.teacher(batch["waveform"])
    losses = bydesign_losses(out, batch["target"], "multilabel", "bottleneck", teacher_logits=teacher)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, teacher.sigmoid())
    assert float(losses["distillation"]) == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="distill needs classifier_checkpoint"):
        ByDesignModule(dictionary=art, num_classes=2, task="multilabel", hidden=8, distill=True)
    with pytest.raises(ValueError, match="interpreter_init: .* does not fit this model"):
        ByDesignModule(**{**kw, "hidden": 16}, interpreter_init=str(tmp_path / "posthoc.pt"))


def test_a_loss_weight_without_its_loss_is_named():
    from lightning_modules import ByDesignModule
    from lightning_modules.posthoc import PostHocInterpreterModule

    clf = _classifier()
    art = DictionaryArtifact(W=torch.rand(129, 5) + 0.01, frontend=clf.frontend.config.spectral_params(),
                             meta={"labels": ["a", "a", "b", "b", "noise"]})
    kw = dict(classifier=clf, dictionary=art, hidden=8, pooling="max", block_evidence=True, theta_bias=True)
    with pytest.raises(ValueError, match="loss_weights.block_gate needs model.init_args.block_gate"):
        PostHocInterpreterModule(**kw, loss_weights={"reconstruction": 1.0, "block_gate": 2.0})
    with pytest.raises(ValueError, match="loss_weights.distillation is a loss of the by-design model"):
        PostHocInterpreterModule(**kw, loss_weights={"reconstruction": 1.0, "distillation": 1.0})
    with pytest.raises(ValueError, match="loss_weights.distillation needs model.init_args.distill: true"):
        ByDesignModule(dictionary=art, frontend=FE, num_classes=2, task="multilabel", class_names=["a", "b"], hidden=8,
                       loss_weights={"distillation": 1.0})
    with pytest.raises(ValueError, match="loss_weights.block_gate is a loss of the post-hoc interpreter"):
        ByDesignModule(dictionary=art, frontend=FE, num_classes=2, task="multilabel", class_names=["a", "b"], hidden=8,
                       loss_weights={"block_gate": 1.0})
    gated = PostHocInterpreterModule(**kw, block_gate="hard", loss_weights={"reconstruction": 1.0, "block_gate": 2.0})
    assert gated.loss_weights()["block_gate"] == 2.0
