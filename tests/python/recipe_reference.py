"""The recipe's definitions as PyTorch computes them, for
tests/e2e/recipe.rs: learning rates of the schedules at every step,
two steps of AdamW and of SGD with Nesterov momentum on fixed gradients,
and the label-smoothed cross-entropy with its gradient. Prints JSON."""
import json

import torch

torch.set_default_dtype(torch.float32)


def rates(make, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.01)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def epoch_rates(make, epochs, batches):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make(opt)
    out = []
    for _ in range(epochs):
        for _ in range(batches):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
        sched.step()
    return out


out = {}
# Cosine with one warmup epoch of 10 steps, 4 epochs in all, min 1e-4.
out["cosine"] = rates(lambda o: torch.optim.lr_scheduler.SequentialLR(
    o,
    [torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=9),
     torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30, eta_min=1e-4)],
    milestones=[10]), 40)
out["onecycle"] = rates(lambda o: torch.optim.lr_scheduler.OneCycleLR(
    o, max_lr=0.1, total_steps=100, pct_start=0.25, div_factor=10.0,
    final_div_factor=100.0, anneal_strategy="cos", cycle_momentum=False), 100)
out["step"] = epoch_rates(lambda o: torch.optim.lr_scheduler.MultiStepLR(
    o, milestones=[2, 3], gamma=0.1), 4, 10)

grads = [torch.tensor([0.5, -1.0]), torch.tensor([0.25, 2.0])]


def two_steps(make):
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = make([p])
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach().tolist()


out["adamw"] = two_steps(lambda ps: torch.optim.AdamW(ps, lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1))
out["sgd_nesterov"] = two_steps(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))
out["adam_l2"] = two_steps(lambda ps: torch.optim.Adam(ps, lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1))

logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, -0.5]], requires_grad=True)
loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, torch.tensor([2, 0]))
loss.backward()
out["smoothed_loss"] = loss.item()
out["smoothed_grad"] = logits.grad.flatten().tolist()
out["torch"] = torch.__version__
print(json.dumps(out))
