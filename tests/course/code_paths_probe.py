"""A short training run that touches every library whose kernels depend on the CPU: ATen's own
(elementwise ops, reductions, Adam), oneMKL's (matrix products, the LU inside ``slogdet``) and
oneDNN's (convolutions). Run as a script by ``test_determinism.py``; prints ATen's CPU capability
and the SHA-256 of the trained parameters' bytes.
"""

import hashlib

import torch
import torch.nn.functional as F


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dense = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 2))
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(16, 1, 3, padding=1))
    w = torch.nn.Parameter(torch.eye(8) + 0.1 * torch.randn(8, 8))
    params = [*dense.parameters(), *conv.parameters(), w]
    opt = torch.optim.Adam(params, 1e-3)
    x, img = torch.randn(256, 2), (torch.rand(32, 1, 8, 8) > 0.5).float()
    for _ in range(100):
        loss = (F.softplus(dense(x)).logsumexp(0).sum() + F.binary_cross_entropy_with_logits(conv(img), img)
                - torch.linalg.slogdet(w).logabsdet + (torch.randn(64, 8) @ w).pow(2).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in params)).hexdigest()
    print(torch.backends.cpu.get_cpu_capability(), digest)


if __name__ == "__main__":
    main()
