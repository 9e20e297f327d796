"""Training methods (TRADES, fgsm_rs), mixed precision, the loader defaults, the overfit check.

Tiny models on synthetic 8x8 images (as ``test_train.py``) keep these to a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from contract import catalog
from contract.records import Cancelled
from contract.specs.kinds import TrainSpec
from contract.specs.training import AdversaryConfig, OptimizerConfig, TrainingConfig
from tests.science.test_train import (
    TinyNet,
    assert_same_parameters,
    stop_after,
    synthetic_data,
    tiny_model,
)
from workers.science.checkpoints import load_checkpoint
from workers.science.datasets import ImageTensorDataset
from workers.science.training import CatastrophicOverfitting, TrainHooks, train, training_method
from workers.science.training.common import BatchSetup, standard
from workers.science.training.fgsm_rs import fgsm_rs_examples
from workers.science.training.loader import loader_settings
from workers.science.training.overfit import check_overfitting
from workers.science.training.precision import Precision
from workers.science.training.trades import kl_to, log_probabilities, trades_examples

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def setup_for(adversary: AdversaryConfig, eps: float | None = None) -> BatchSetup:
    eps = adversary.eps if eps is None else eps
    return BatchSetup(adversary=adversary, eps=eps, step_size=adversary.resolved_step_size,
                      autocast=nullcontext)


def one_step(method_name: str | None, adversary: AdversaryConfig) -> nn.Module:
    """One SGD step of ``method_name`` (None: standard training) on one fixed batch."""
    model = tiny_model(3)
    x, y = synthetic_data().tensors
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    torch.manual_seed(11)
    method = standard if method_name is None else training_method(method_name)
    batch = method(model, x[:32], y[:32], setup_for(adversary))
    optimizer.zero_grad()
    batch.loss.backward()
    optimizer.step()
    return model


# --------------------------------------------------------------------------- the registry


def test_the_registry_names_the_methods_the_spec_accepts() -> None:
    assert set(catalog.training_methods()) == {"pgd", "trades", "fgsm_rs"}
    for name in catalog.training_methods():
        assert AdversaryConfig(method=name).method == name
        assert callable(training_method(name))
    with pytest.raises(ValueError, match="method"):
        AdversaryConfig(method="free")
    assert AdversaryConfig().beta == 6.0


# --------------------------------------------------------------------------- TRADES


def test_trades_with_beta_zero_takes_the_same_first_step_as_standard_training() -> None:
    trades = one_step("trades", AdversaryConfig(method="trades", eps=0.2, steps=3, beta=0.0))
    plain = one_step(None, AdversaryConfig())
    for (name, a), b in zip(trades.named_parameters(), plain.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-7), name
    # ... and with beta > 0 the KL term moves the parameters elsewhere
    robust = one_step("trades", AdversaryConfig(method="trades", eps=0.2, steps=3, beta=6.0))
    assert not torch.allclose(robust.fc.weight, plain.fc.weight, atol=1e-4)


def test_trades_inner_maximisation_raises_the_kl_inside_ball_and_box() -> None:
    model = tiny_model(1)
    x, _ = synthetic_data().tensors
    x = x[:40]
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        adversary = AdversaryConfig(method="trades", norm=norm, eps=eps, steps=5)
        with torch.no_grad():
            clean = log_probabilities(model(x))
        no_steps = BatchSetup(adversary=adversary.model_copy(update={"steps": 0}), eps=eps,
                              step_size=0.0, autocast=nullcontext)
        start = trades_examples(model, x, clean, no_steps,
                                generator=torch.Generator().manual_seed(0))
        found = trades_examples(model, x, clean, setup_for(adversary),
                                generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            kl_start, kl_found = kl_to(clean, model(start)), kl_to(clean, model(found))
        assert float(kl_found.mean()) > 10 * float(kl_start.mean())
        assert float(kl_found.mean()) > 1e-4
        delta = (found - x).flatten(1)
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        assert float(size.max()) <= eps + 1e-5
        assert float(found.min()) >= 0 and float(found.max()) <= 1


def test_trades_reports_clean_and_adversarial_accuracy_from_its_own_forwards(
    tmp_path: Path,
) -> None:
    model = tiny_model()
    outcome = train(model, synthetic_data(), TrainingConfig(epochs=1, batch_size=16),
                    AdversaryConfig(method="trades", eps=0.1, steps=2, beta=1.0), device=CPU,
                    checkpoint_dir=tmp_path, seed=0)
    (metrics,) = outcome.history
    assert metrics.accuracy is not None and metrics.adv_accuracy is not None
    # per batch: clean forward, 2 attack steps, forward of x': 4 forwards, all in train mode
    assert len(model.modes) == 5 * 4 and all(model.modes)
    assert int(model.bn.state_dict()["num_batches_tracked"]) == 5 * 2


# --------------------------------------------------------------------------- fgsm_rs


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.8)])
def test_fgsm_rs_stays_inside_the_ball_and_the_box(norm: str, eps: float) -> None:
    model = tiny_model(2)
    x, y = synthetic_data().tensors
    x[:8] = 1.0  # saturated images: the box binds
    x[8:16] = 0.0
    adversary = AdversaryConfig(method="fgsm_rs", norm=norm, eps=eps)
    assert adversary.resolved_step_size == pytest.approx(1.25 * eps)
    x_adv = fgsm_rs_examples(model, x, y, setup_for(adversary))
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert float(size.mean()) > 0.5 * eps  # it moved: the 1.25 * eps step reaches the sphere
    assert not x_adv.requires_grad and all(p.grad is None for p in model.parameters())


def test_fgsm_rs_trains_checks_for_overfitting_and_resumes_exactly(tmp_path: Path) -> None:
    adversary = AdversaryConfig(method="fgsm_rs", eps=0.1, overfit_check_examples=48,
                                overfit_check_steps=3)
    cfg = TrainingConfig(epochs=3, batch_size=16)
    reference = train(tiny_model(), synthetic_data(), cfg, adversary, device=CPU,
                      checkpoint_dir=tmp_path / "ref", seed=4)
    assert all(m.check_accuracy is not None and m.accuracy is None for m in reference.history)
    with pytest.raises(Cancelled):
        train(tiny_model(), synthetic_data(), cfg, adversary, device=CPU,
              checkpoint_dir=tmp_path / "cut", seed=4,
              hooks=TrainHooks(should_stop=stop_after(8)))
    resumed = train(tiny_model(9), synthetic_data(), cfg, adversary, device=CPU,
                    checkpoint_dir=tmp_path / "cut", seed=4)
    assert resumed.resumed_from == 1
    assert_same_parameters(resumed.model, reference.model)
    assert resumed.history == reference.history
    # the check draws from its own generator: without it, training is the same
    unchecked = train(tiny_model(), synthetic_data(), cfg,
                      adversary.model_copy(update={"overfit_check": False}), device=CPU,
                      checkpoint_dir=tmp_path / "unchecked", seed=4)
    assert_same_parameters(unchecked.model, reference.model)


def test_catastrophic_overfitting_stops_with_a_clear_message() -> None:
    adversary = AdversaryConfig(method="fgsm_rs", eps=0.3)
    check_overfitting(0.40, [], epoch=1, adversary=adversary)
    check_overfitting(0.35, [(1, 0.40), (2, 0.50)], epoch=3, adversary=adversary)
    with pytest.raises(CatastrophicOverfitting,
                       match=r"epoch 3: PGD-10 accuracy on 512 training examples fell from "
                             r"50\.0% \(epoch 2\) to 1\.0%"):
        check_overfitting(0.01, [(1, 0.40), (2, 0.50)], epoch=3, adversary=adversary)


# --------------------------------------------------------------------------- AMP


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_amp_trains_and_resumes_exactly_on_the_cpu(tmp_path: Path, amp: str, method: str) -> None:
    cfg = TrainingConfig(epochs=3, batch_size=16, amp=amp,
                         optimizer=OptimizerConfig(name="adam", lr=0.01, weight_decay=0))
    adversary = AdversaryConfig(method=method, eps=0.1, steps=2, beta=1.0)
    reference = train(tiny_model(), synthetic_data(), cfg, adversary, device=CPU,
                      checkpoint_dir=tmp_path / "ref", seed=1)
    assert reference.history[-1].loss < reference.history[0].loss  # it learns
    payload = load_checkpoint(reference.final_checkpoint)
    assert (payload["scaler"] is not None) == (amp == "fp16")
    with pytest.raises(Cancelled):
        train(tiny_model(), synthetic_data(), cfg, adversary, device=CPU,
              checkpoint_dir=tmp_path / "cut", seed=1, hooks=TrainHooks(should_stop=stop_after(12)))
    resumed = train(tiny_model(5), synthetic_data(), cfg, adversary, device=CPU,
                    checkpoint_dir=tmp_path / "cut", seed=1)
    assert resumed.resumed_from == 2
    assert_same_parameters(resumed.model, reference.model)
    assert resumed.history == reference.history


def test_autocast_really_runs_the_forward_in_low_precision() -> None:
    seen: list[torch.dtype] = []
    model = TinyNet()
    model.fc.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    for amp, dtype in (("off", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with Precision(amp, CPU).autocast():
            model(torch.rand(2, 1, 8, 8))
        assert seen[-1] == dtype
    with pytest.raises(ValueError, match="unknown amp"):
        Precision("fp8", CPU)


def test_channels_last_trains_like_the_default_layout(tmp_path: Path) -> None:
    adversary = AdversaryConfig(eps=0.1, steps=2)
    runs = {}
    for layout in (False, True):
        cfg = TrainingConfig(epochs=1, batch_size=16, channels_last=layout)
        runs[layout] = train(tiny_model(), synthetic_data(), cfg, adversary, device=CPU,
                             checkpoint_dir=tmp_path / str(layout), seed=0).model
    assert runs[True].conv.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(runs[True].parameters(), runs[False].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


# --------------------------------------------------------------------------- loader


def test_loader_defaults_depend_on_the_dataset_and_the_device() -> None:
    images = ImageTensorDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4))
    tensors = TensorDataset(torch.zeros(4, 2), torch.zeros(4))

    class Folder(torch.utils.data.Dataset):  # items read one by one, like an ImageFolder
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
            return torch.zeros(2), 0

    cfg = TrainingConfig()
    for data in (images, Subset(images, [0, 1]), tensors):
        settings = loader_settings(cfg, data, CPU)
        assert (settings.num_workers, settings.pin_memory, settings.persistent_workers) == (
            0, False, False)
    folder = loader_settings(cfg, Folder(), torch.device("cuda"))
    assert folder.num_workers >= 1 and folder.pin_memory and folder.persistent_workers
    explicit = loader_settings(TrainingConfig(num_workers=2, persistent_workers=False,
                                              pin_memory=False), images, torch.device("cuda"))
    assert (explicit.num_workers, explicit.pin_memory, explicit.persistent_workers) == (
        2, False, False)


def test_spec_accepts_the_new_training_and_adversary_fields() -> None:
    spec = TrainSpec.model_validate({
        "kind": "train", "name": "t", "dataset": {"name": "mnist"}, "model": {"arch": "mnist_cnn"},
        "adversary": {"method": "trades", "eps": "0.3", "beta": "1e0"},
        "training": {"amp": "bf16", "channels_last": True, "num_workers": 0},
    })
    assert spec.adversary.beta == 1.0 and spec.training.amp == "bf16"
    with pytest.raises(ValueError, match="amp"):
        TrainingConfig(amp="fp8")
    with pytest.raises(ValueError, match="beta"):
        AdversaryConfig(beta=-1)


class NoisyImages(torch.utils.data.Dataset):
    """Synthetic images with a random per-item augmentation (noise from torch's generator)."""

    def __init__(self) -> None:
        self.x, self.y = synthetic_data().tensors

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = 0.05 * torch.rand(self.x[index].shape)
        return (self.x[index] + noise).clamp(0, 1), self.y[index]


def test_loader_workers_without_persistence_resume_exactly(tmp_path: Path) -> None:
    """Workers are seeded from the loader's checkpointed generator at every epoch's start."""
    cfg = TrainingConfig(epochs=2, batch_size=16, num_workers=2, persistent_workers=False)
    adversary = AdversaryConfig(eps=0.1, steps=1)
    reference = train(tiny_model(), NoisyImages(), cfg, adversary, device=CPU,
                      checkpoint_dir=tmp_path / "ref", seed=2)
    with pytest.raises(Cancelled):
        train(tiny_model(), NoisyImages(), cfg, adversary, device=CPU,
              checkpoint_dir=tmp_path / "cut", seed=2, hooks=TrainHooks(should_stop=stop_after(7)))
    resumed = train(tiny_model(5), NoisyImages(), cfg, adversary, device=CPU,
                    checkpoint_dir=tmp_path / "cut", seed=2)
    assert resumed.resumed_from == 1
    assert_same_parameters(resumed.model, reference.model)
