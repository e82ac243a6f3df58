"""The digit CNN's training throughput, measured through the trainer's own epoch (what ``make bench-hpo`` reports).

Random digits rather than a dataset, so the figure is about the machine and the training step, not about
decoding PNGs; everything else is what a real epoch does.
"""

from __future__ import annotations

from expforge.errors import ExpforgeError
from expforge.train.digit_cnn import IMAGE_SIZE, NUM_CLASSES
from expforge.train.torch_config import TorchTrainConfig
from expforge.train.torch_data import Resident
from expforge.train.torch_loop import new_trainer


def measure_throughput(images: int, config: TorchTrainConfig, device: str = "auto") -> float:
    """Training images per second for one epoch over ``images`` random digits (after a short warm-up), with
    everything a real epoch does: gather, augmentation, AMP forward/backward and the optimizer step."""
    import torch

    from expforge.train.device import select_device

    if images < 1:
        raise ExpforgeError(f"images: {images} is not a positive number of images")
    config.validate()
    dev = select_device(device)
    trainer = new_trainer(config, dev, horizon_total=2)
    generator = torch.Generator().manual_seed(config.seed)
    pixels = torch.randint(0, 256, (images, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (images,), generator=generator)
    warmup_rows = min(images, 20 * config.batch_size)
    trainer.train_epoch(Resident(pixels[:warmup_rows].numpy(), labels[:warmup_rows].numpy(), dev), 0)
    data = Resident(pixels.numpy(), labels.numpy(), dev)
    _, _, seconds, _ = trainer.train_epoch(data, 1)
    return images / seconds
