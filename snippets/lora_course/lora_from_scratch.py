"""LoRA written out by hand, trained by hand: the rank-trick page's runnable exercise (standard library only).

The page embeds the section ``exercise`` below as a runnable block, so the reader's browser runs exactly this
code in Pyodide (no numpy there); the tests import the same file and call ``train`` with other settings.

The task has a known answer. A frozen 16 x 16 weight W was changed by a hidden update of rank 2 (singular
values 3 and 1.5); the layer sees input/output pairs of the changed weight and must recover the change
with a LoRA adapter, W + (alpha / r) B A, training only A and B. Rank 2 or more can fit it exactly; rank 1
can only find the larger direction, so its loss stops at the share the smaller one carries.
"""
from __future__ import annotations

# --8<-- [start:exercise]
import math
import random

# Change these and press Run (or Ctrl+Enter in the code).
R = 2          # LoRA rank r; the hidden update has rank 2 (try 1, then 8)
ALPHA = 4.0    # lora_alpha; the update is scaled by alpha / r (at R = 8, try 16)
LR = 0.5       # learning rate of plain gradient descent (try 0.05, then 2.0)
STEPS = 120    # gradient steps, each over all 32 training pairs

D = 16                      # W is D x D
HIDDEN = (3.0, 1.5)         # singular values of the hidden update (its rank is 2)
N_PAIRS = 32                # input/output pairs the layer learns from


def matvec(M, x):
    return [sum(m * v for m, v in zip(row, x)) for row in M]


def unit(v):
    n = math.sqrt(sum(t * t for t in v))
    return [t / n for t in v]


def make_task(seed=0):
    """A frozen W, a hidden update U diag(HIDDEN) V^T, and pairs (x, W x, (W + update) x)."""
    rng = random.Random(seed)
    W = [[rng.gauss(0, 1 / math.sqrt(D)) for _ in range(D)] for _ in range(D)]

    def orthonormal(k):  # k random directions, made orthogonal (Gram-Schmidt)
        basis = []
        for _ in range(k):
            v = [rng.gauss(0, 1) for _ in range(D)]
            for b in basis:
                dot = sum(p * q for p, q in zip(v, b))
                v = [p - dot * q for p, q in zip(v, b)]
            basis.append(unit(v))
        return basis

    U, V = orthonormal(len(HIDDEN)), orthonormal(len(HIDDEN))
    update = [[sum(s * U[k][i] * V[k][j] for k, s in enumerate(HIDDEN)) for j in range(D)] for i in range(D)]
    changed = [[w + u for w, u in zip(wr, ur)] for wr, ur in zip(W, update)]
    xs = [[rng.gauss(0, 1) for _ in range(D)] for _ in range(N_PAIRS)]
    # W is frozen, so W x is the same at every step: computed once, as a frozen layer's output could be.
    return W, [(x, matvec(W, x), matvec(changed, x)) for x in xs]


class LoRALinear:
    """y = W x + (alpha / r) B A x. W is frozen; only A (r x d_in) and B (d_out x r) learn."""

    def __init__(self, W, r, alpha, rng):
        d_out, d_in = len(W), len(W[0])
        self.W = W                                    # frozen: no gradient, never updated
        self.scale = alpha / r
        bound = 1 / math.sqrt(d_in)                   # peft's default A: Kaiming-uniform
        self.A = [[rng.uniform(-bound, bound) for _ in range(d_in)] for _ in range(r)]
        self.B = [[0.0] * r for _ in range(d_out)]    # B = 0: at step 0 the layer is exactly W

    def forward(self, x, frozen_out):
        h = matvec(self.A, x)                         # down to r numbers
        lora = matvec(self.B, h)                      # back up to d_out
        return [f + self.scale * t for f, t in zip(frozen_out, lora)], h

    def train_step(self, pairs, lr):
        """One gradient step on the mean squared error; returns the loss before the step."""
        r, d_in, d_out = len(self.A), len(self.A[0]), len(self.B)
        grad_A = [[0.0] * d_in for _ in range(r)]
        grad_B = [[0.0] * r for _ in range(d_out)]
        loss, n = 0.0, len(pairs) * d_out
        for x, frozen_out, target in pairs:
            y, h = self.forward(x, frozen_out)
            g = [2 * (yi - ti) / n for yi, ti in zip(y, target)]   # dLoss/dy
            loss += sum((yi - ti) ** 2 for yi, ti in zip(y, target)) / n
            # y = frozen + s B h, h = A x:  dL/dB = s g h^T,  dL/dA = s (B^T g) x^T
            bg = [self.scale * sum(self.B[i][k] * g[i] for i in range(d_out)) for k in range(r)]
            for i in range(d_out):
                for k in range(r):
                    grad_B[i][k] += self.scale * g[i] * h[k]
            for k in range(r):
                for j in range(d_in):
                    grad_A[k][j] += bg[k] * x[j]
        for M, G in ((self.A, grad_A), (self.B, grad_B)):
            for row, grow in zip(M, G):
                for j, gj in enumerate(grow):
                    row[j] -= lr * gj
        return loss

    def update(self):
        """The learned change (alpha / r) B A, as a d_out x d_in matrix."""
        return [[self.scale * sum(b * a[j] for b, a in zip(brow, self.A)) for j in range(len(self.A[0]))]
                for brow in self.B]


def singular_values(M, k, iters=200):
    """The k largest singular values of M: power iteration on M^T M, removing each direction once found."""
    cols = len(M[0])
    G = [[sum(M[i][a] * M[i][b] for i in range(len(M))) for b in range(cols)] for a in range(cols)]
    rng, found = random.Random(1), []
    for _ in range(k):
        v = unit([rng.gauss(0, 1) for _ in range(cols)])
        lam = 0.0
        for _ in range(iters):
            w = matvec(G, v)
            lam = math.sqrt(sum(t * t for t in w))
            if lam < 1e-12:
                break
            v = [t / lam for t in w]
        found.append(math.sqrt(max(lam, 0.0)))
        G = [[G[a][b] - lam * v[a] * v[b] for b in range(cols)] for a in range(cols)]
    return found


def train(r=R, alpha=ALPHA, lr=LR, steps=STEPS, log=print, seed=0):
    """Train a rank-r adapter on the task; returns the loss at every step and the update's singular values."""
    if not (isinstance(r, int) and 1 <= r <= D):
        log(f"R = {r!r}: the rank must be a whole number from 1 to {D} (the layer is {D} x {D}).")
        return None
    if not (alpha > 0 and lr > 0 and isinstance(steps, int) and steps >= 1):
        log("ALPHA and LR must be positive numbers and STEPS a whole number of at least 1.")
        return None
    W, pairs = make_task(seed)
    layer = LoRALinear(W, r, alpha, random.Random(seed + 1))
    start = max(abs(y - f) for x, frozen, _ in pairs for y, f in zip(layer.forward(x, frozen)[0], frozen))
    log(f"rank {r}, alpha {alpha:g}, scale alpha/r = {layer.scale:g}, learning rate {lr:g}")
    log(f"trains {r * 2 * D} numbers (A {r}x{D}, B {D}x{r}); W's {D * D} stay frozen")
    log(f"step 0: B = 0, so the layer's output equals the frozen W's (largest difference {start:g})")
    losses = []
    for step in range(steps + 1):
        loss = layer.train_step(pairs, lr) if step < steps else layer.train_step(pairs, 0.0)
        losses.append(loss)
        if not loss < 1e6:  # inf, nan or exploding
            log(f"step {step}: the loss diverged ({loss:.3g}); lower LR (or ALPHA) and run again.")
            return {"losses": losses, "singular_values": None, "start_difference": start}
        if step % (max(1, steps // 12)) == 0 or step == steps:
            log(f"step {step:4d}  loss {loss:.6f}")
    found = singular_values(layer.update(), min(r, 4) + (1 if r < len(HIDDEN) else 0))
    log("singular values of the learned update: " + "  ".join(f"{s:.3f}" for s in found))
    log("singular values of the hidden update:  " + "  ".join(f"{s:.3f}" for s in HIDDEN))
    return {"losses": losses, "singular_values": found, "start_difference": start}


if __name__ == "__main__":
    train()
# --8<-- [end:exercise]
