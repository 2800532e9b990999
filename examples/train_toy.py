"""A small training loop in pure Python (no numpy): logistic regression by minibatch
SGD on a synthetic two-class problem. Logs its params, the training loss every step,
validation loss and accuracy every epoch, a checkpoint artifact per epoch and the
final model, then finishes.

    pip install ./sdk/python
    export SEXTANT_URL=http://127.0.0.1:8080 SEXTANT_API_KEY=sxt_key_...
    python examples/train_toy.py --epochs 5 --lr 0.1
"""

import argparse
import json
import math
import os
import random
import sys
import tempfile
from typing import List, Tuple

import sextant

Example = Tuple[List[float], int]


def make_data(n: int, features: int, rng: random.Random) -> List[Example]:
    """Points around two centres, labelled by which one."""
    true_w = [rng.gauss(0, 1) for _ in range(features)]
    data = []
    for _ in range(n):
        x = [rng.gauss(0, 1) for _ in range(features)]
        margin = sum(w * v for w, v in zip(true_w, x)) + rng.gauss(0, 0.5)
        data.append((x, 1 if margin > 0 else 0))
    return data


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def predict(w: List[float], b: float, x: List[float]) -> float:
    return sigmoid(sum(wi * xi for wi, xi in zip(w, x)) + b)


def loss_and_accuracy(w: List[float], b: float, data: List[Example]) -> Tuple[float, float]:
    loss, correct = 0.0, 0
    for x, y in data:
        p = min(max(predict(w, b, x), 1e-12), 1 - 1e-12)
        loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
        correct += (p > 0.5) == bool(y)
    return loss / len(data), correct / len(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", default=os.environ.get("SEXTANT_PROJECT", "examples"))
    parser.add_argument("--name", default="toy-logreg")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    data = make_data(args.samples, args.features, rng)
    split = int(0.8 * len(data))
    train, val = data[:split], data[split:]
    params = {
        "lr": args.lr,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "model": {"kind": "logistic_regression", "features": args.features},
        "data": {"train": len(train), "val": len(val)},
    }
    scratch = tempfile.TemporaryDirectory(prefix="sextant-toy-")
    checkpoints = scratch.name

    run = sextant.init(project=args.project, name=args.name, tags=["example", "toy"], params=params)
    with scratch, run:
        print("run {}: training".format(run.id))
        w, b = [0.0] * args.features, 0.0
        step = 0
        for epoch in range(args.epochs):
            rng.shuffle(train)
            for start in range(0, len(train), args.batch_size):
                batch = train[start : start + args.batch_size]
                grad_w, grad_b, loss = [0.0] * args.features, 0.0, 0.0
                for x, y in batch:
                    p = predict(w, b, x)
                    loss -= y * math.log(max(p, 1e-12)) + (1 - y) * math.log(max(1 - p, 1e-12))
                    for i, xi in enumerate(x):
                        grad_w[i] += (p - y) * xi
                    grad_b += p - y
                w = [wi - args.lr * g / len(batch) for wi, g in zip(w, grad_w)]
                b -= args.lr * grad_b / len(batch)
                run.log({"train/loss": loss / len(batch), "train/lr": args.lr}, step=step)
                step += 1
            val_loss, val_acc = loss_and_accuracy(w, b, val)
            run.log({"val/loss": val_loss, "val/acc": val_acc, "epoch": epoch}, step=step)
            print("epoch {}: val loss {:.4f}, val acc {:.3f}".format(epoch, val_loss, val_acc))
            path = os.path.join(checkpoints, "last.json")
            with open(path, "w") as file:
                json.dump({"epoch": epoch, "step": step, "w": w, "b": b}, file)
            # Copied into the spool at once, so the next epoch may overwrite it.
            run.upload(path, name="checkpoints/epoch-{}.json".format(epoch), kind="checkpoint", step=step)
        run.upload(path, name="model/final.json", kind="model", step=step, wait=True)
        run.log_text("notes", "final val acc {:.3f}".format(val_acc))
    print("run {} finished".format(run.id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
