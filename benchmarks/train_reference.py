#!/usr/bin/env python3
"""Training digits on the fabric's numerics (the numpy reference of the training step,
``docs/training.md``): test accuracy per epoch in bf16 and fp16 (with loss scaling), beside the
FP32 numpy baseline of the same chain, mask, batches and optimizer (issue 18's workload).

The chain 64-128-64-10 with ReLU starts from ``wafertile.trainer.random_network`` (a fixed
random mask keeping 20% of the weights, seed 0), Adam at ``lr`` 0.003, batch 32, ten epochs of
the 1347 training images (430 steps); accuracy on the 450 test images with the fabric's
forward pass (the weights rounded to the format) after each epoch.

    python benchmarks/train_reference.py --json benchmarks/results-train-reference.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from wafertile import Config
from wafertile.train import ParameterStore, TrainConfig
from wafertile.trainer import (
    accuracy,
    digits_data,
    fp32_forward,
    random_network,
    train,
    train_fp32,
)

SIZES = (64, 128, 64, 10)
DENSITY = 0.2
LR = 0.003
BATCH = 32
EPOCHS = 10
SEED = 0


def run(dtype: str) -> dict:
    config = Config(dtype=dtype)
    x_train, x_test, y_train, y_test = digits_data(dtype)
    w, b, m = random_network(SIZES, DENSITY, SEED)
    store = ParameterStore(w, b, m, TrainConfig(dtype=dtype, lr=LR))
    baseline = ParameterStore(w, b, m, TrainConfig(dtype=dtype, lr=LR, loss_scaling=False))
    per_epoch = math.ceil(len(x_train) / BATCH)
    steps = per_epoch * EPOCHS
    start = time.perf_counter()
    run_ = train(config, store, x_train, y_train, steps=steps, batch=BATCH, seed=SEED)
    seconds = time.perf_counter() - start
    fp32 = train_fp32(baseline, x_train, y_train, steps=steps, batch=BATCH, seed=SEED)
    fp32_w = fp32.store.weights
    fp32_acc = float(np.mean(np.argmax(fp32_forward(fp32_w, fp32.store.biases, x_test)[-1],
                                       axis=1) == y_test))
    losses = run_.losses
    curve = []
    for epoch in range(EPOCHS):
        chunk = losses[epoch * per_epoch:(epoch + 1) * per_epoch]
        curve.append(float(np.mean(chunk)))
    return {
        "dtype": dtype, "steps": steps, "batch": BATCH, "nnz": int(sum(x.sum() for x in m)),
        "accuracy": accuracy(config, store.stream_weights(), store.biases, x_test, y_test),
        "fp32_accuracy": fp32_acc, "skipped": store.skipped, "final_scale": float(store.scale),
        "epoch_mean_loss": curve, "seconds": round(seconds, 2),
        "ms_per_step": round(1000 * seconds / steps, 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    results = [run(dtype) for dtype in ("bf16", "fp16")]
    for r in results:
        print(f"{r['dtype']}: test accuracy {r['accuracy']:.4f} (FP32 numpy "
              f"{r['fp32_accuracy']:.4f}), {r['steps']} steps of {r['batch']}, "
              f"{r['nnz']} weights in the mask, {r['skipped']} skipped, loss scale "
              f"{r['final_scale']:g}, {r['ms_per_step']} ms a step")
        print("  mean loss per epoch: " + " ".join(f"{v:.3f}" for v in r["epoch_mean_loss"]))
    if args.json:
        args.json.write_text(json.dumps({"runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
