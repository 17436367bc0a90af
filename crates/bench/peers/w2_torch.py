"""W2 in PyTorch eager, for comparison with `retrograd-bench w2` in the same window.

The 784-512-512-10 ReLU MLP, batch 128, f32, cross-entropy, plain SGD: one training step
(zero_grad, forward, backward, step), timed as the median over 21 samples of 20 steps
after 50 warm-up steps. Prints one `name value unit` line, like the bench binary.

    python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch
    /tmp/torch-venv/bin/python crates/bench/peers/w2_torch.py [THREADS]   # default 2
"""

import statistics
import sys
import time

import torch

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Linear(784, 512),
    torch.nn.ReLU(),
    torch.nn.Linear(512, 512),
    torch.nn.ReLU(),
    torch.nn.Linear(512, 10),
)
optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(128, 784)
labels = torch.randint(0, 10, (128,))


def step():
    optimiser.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    optimiser.step()


for _ in range(50):
    step()
samples = []
for _ in range(21):
    start = time.perf_counter()
    for _ in range(20):
        step()
    samples.append((time.perf_counter() - start) / 20 * 1e3)
print(f"w2.torch_{threads}t.ms {statistics.median(samples):.3f} ms")
