"""The planted bugs: each a short, exact snippet of the code and what it becomes, with the
tests that claim to catch it.

The old text must occur once in its file; when it does not (the code has moved on), the
mutant is reported as "could not plant", never as survived: update its snippet.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


T = "tests/"
CHECK_GRADIENTS = (T + "test_training.py", T + "test_model.py", "-k", "check_gradients")
CHECKPOINTS = (T + "test_checkpoints.py",)
REPLAY = (T + "test_training.py", "-k", "default_chunk or every_100")
MODEL = "mlp_digits/lightning/model.py"
SAVE = "mlp_digits/lightning/checkpoint.py"
BP = "mlp_digits/backprop.py"
STACK = "mlp_digits/sweep/stack.py"
PAGE = "mlp_digits/page/draw_page.js"
# Every network of a stack against its own train.py run, on the shared 5,000 real images.
STACK_EXACT = (T + "test_sweep_exact.py", "-k", "every_network and manual")
PAGE_TESTS = (T + "test_draw.py", "-k", "runs_the_network or bias_change")

MUTANTS = [
    # --- the bugs of issue 17 that no test caught -----------------------------------------
    Mutant("grad check: weight and bias tags swapped", MODEL,
           'zip(("weight", "bias"), manual, auto)', 'zip(("bias", "weight"), manual, auto)',
           CHECK_GRADIENTS),
    Mutant("grad check: absolute, not relative, error", MODEL,
           "(m - g).norm() / g.norm().clamp_min(torch.finfo(g.dtype).tiny)", "(m - g).norm()",
           CHECK_GRADIENTS),
    Mutant("grad check: autograd against autograd", MODEL,
           'sgd.gradients(self.weights, self.biases, x, y, "manual", self.activation)',
           'sgd.gradients(self.weights, self.biases, x, y, "autograd", self.activation)',
           CHECK_GRADIENTS),
    Mutant("best checkpoint: the lowest accuracy (mode=min)", SAVE,
           "score > self.best_score", "score < self.best_score", CHECKPOINTS),
    Mutant("best checkpoint: a tie replaces the earlier best", SAVE,
           "score > self.best_score", "score >= self.best_score", CHECKPOINTS),
    Mutant("best checkpoint: a resumed run forgets the best", SAVE,
           'self.best_score = state["best_score"]', "self.best_score = None", CHECKPOINTS),
    Mutant("epoch order ignores the seed", "mlp_digits/sgd.py",
           "generator.manual_seed(epoch_seed(self.seed, self.epoch))",
           "generator.manual_seed(epoch_seed(0, self.epoch))", REPLAY),
    # --- more of the same kind ------------------------------------------------------------
    Mutant("best checkpoint: the earlier best file kept", SAVE,
           "Path(previous).unlink(missing_ok=True)", "Path(previous).exists()", CHECKPOINTS),
    Mutant("train.py tests the last checkpoint", "mlp_digits/lightning/training.py",
           "best = run.checkpoints.best_model_path or None",
           "best = str(run.checkpoints.last_path)", CHECKPOINTS),
    Mutant("epoch order the same every epoch", "mlp_digits/sgd.py",
           "np.random.SeedSequence([seed, epoch])", "np.random.SeedSequence([seed, 0])", REPLAY),
    Mutant("BP1 with the sign of the error reversed", BP,
           "delta = (a - y).mul_(activation_prime(a))", "delta = (y - a).mul_(activation_prime(a))",
           (T + "test_backprop.py",)),
    Mutant("BP2 with σ instead of σ'", BP,
           "delta = (delta @ weights[l]).mul_(activation_prime(a_in, activation))",
           "delta = (delta @ weights[l]).mul_(a_in)", (T + "test_backprop.py",)),
    Mutant("BP3 summed, not averaged, over the batch", BP,
           "nabla_b[l] = share.sum(dim=-2)", "nabla_b[l] = delta.sum(dim=-2)",
           (T + "test_backprop.py",)),
    Mutant("BP4 not divided by m", BP, "nabla_w[l] = share.mT @ a_in",
           "nabla_w[l] = delta.mT @ a_in", (T + "test_backprop.py",)),
    Mutant("ReLU' taken as σ' in BP2", BP, 'if activation == "relu":\n        return (a > 0)',
           'if activation == "tanh":\n        return (a > 0)', (T + "test_relu.py",)),
    Mutant("ReLU hidden layers run as σ", BP, 'hidden = relu if activation == "relu" else sigmoid',
           "hidden = sigmoid", (T + "test_relu.py",)),
    Mutant("ReLU: the output layer ReLU too", BP,
           "activations.append(sigmoid(z) if l == len(weights) - 1 else hidden(z))",
           "activations.append(hidden(z))", (T + "test_relu.py",)),
    Mutant("a step's cost taken after the step", "mlp_digits/sgd.py",
           "return Step(output, nabla_w, nabla_b)",
           "return Step(bp.feedforward(weights, biases, x, activation)[0][-1], nabla_w, nabla_b)",
           (T + "test_model.py", "-k", "output_before")),
    Mutant("a mid-epoch resume forgets the epoch's costs", "mlp_digits/lightning/chunked.py",
           'self.epoch_costs = list(saved.get("epoch", []))', "self.epoch_costs = []",
           (T + "test_chunked.py",)),
    Mutant("a stack starts every network from network 0's init", "mlp_digits/network.py",
           "ws, bs = initial_parameters(sizes, network_init, seed)",
           "ws, bs = initial_parameters(sizes, inits[0], seed)",
           (T + "test_sweep_exact.py", "-k", "different_inits")),
    Mutant("SGD steps up the gradient", "mlp_digits/sgd.py",
           "p.sub_(nabla, alpha=eta)", "p.add_(nabla, alpha=eta)",
           (T + "test_model.py", "-k", "sgd_step")),
    Mutant("SGD leaves the biases alone", "mlp_digits/sgd.py",
           "zip([*weights, *biases], [*nabla_w, *nabla_b])", "zip(weights, nabla_w)",
           (T + "test_model.py", "-k", "sgd_step")),
    Mutant("the short last mini-batch dropped", "mlp_digits/lightning/datamodule.py",
           "if n > n_full * self.batch_size and skip <= n_full:",
           "if False:", (T + "test_training.py", "-k", "default_chunk")),
    Mutant("DDP gradients summed, not averaged", "mlp_digits/lightning/chunked.py",
           "return tensor.div_(dist.get_world_size())", "return tensor",
           (T + "test_training.py", "-k", "ddp_two and manual and 100")),
    Mutant("a resumed epoch starts again from its first mini-batch",
           "mlp_digits/lightning/datamodule.py", 'skip = self.resume_at["steps_done"]', "skip = 0",
           (T + "test_reliability.py", "-k", "sigterm_to_the_first")),
    Mutant("train cost curve: the sum, not the mean", "mlp_digits/lightning/chunked.py",
           "cost = torch.cat(self.recent_costs).mean(dim=0)",
           "cost = torch.cat(self.recent_costs).sum(dim=0)",
           (T + "test_training.py", "-k", "every_100")),
    Mutant("validation split one image off", "mlp_digits/data.py",
           "torch.arange(n - n_val, n, device=cpu)",
           "torch.arange(n - n_val - 1, n - 1, device=cpu)",
           (T + "test_data.py", "-k", "split or validation")),
    Mutant("stack: first layer without its bias", STACK,
           "z = z.view(len(x), n_nets, n_out).transpose(0, 1) + b0.unsqueeze(1)",
           "z = z.view(len(x), n_nets, n_out).transpose(0, 1)", STACK_EXACT),
    Mutant("stack: every network takes network 0's order", STACK,
           "orders[k] = sampler.cpu_permutation()",
           "orders[k] = self.samplers[0].cpu_permutation()",
           STACK_EXACT),
    Mutant("stack: a tie replaces a network's best epoch", STACK,
           'better = (self.counts["val"] > self.best_val_correct)',
           'better = (self.counts["val"] >= self.best_val_correct)',
           (T + "test_sweep_best.py",)),
    Mutant("predict.py keeps the paper's grey", "mlp_digits/page/predict.py",
           "return np.clip((gray - background) / (peak - background), 0.0, 1.0)",
           "return np.clip(gray / peak, 0.0, 1.0)", (T + "test_predict.py", "-k", "grey_paper")),
    Mutant("predict.py ignores the photo's EXIF orientation", "mlp_digits/page/predict.py",
           "image = ImageOps.exif_transpose(image)", "image = image",
           (T + "test_predict.py", "-k", "exif")),
    Mutant("sweep figure: validation accuracy per epoch", "mlp_digits/sweep/report.py",
           "ax.plot(epochs, r.test_accuracy[: r.good_epochs], color=colour",
           "ax.plot(epochs, r.val_accuracy[: r.good_epochs], color=colour",
           (T + "test_sweep.py", "-k", "accuracy_per_epoch_lines")),
    Mutant("sweep figure: the spread of the final epoch", "mlp_digits/sweep/report.py",
           "values = [r.test_at_best for r in group if not r.diverged]",
           "values = [r.test_accuracy[-1] for r in group if not r.diverged]",
           (T + "test_sweep_best.py",)),
    Mutant("page: the bias subtracted", PAGE,
           "z[j] = sum + biases[l][j];", "z[j] = sum - biases[l][j];", PAGE_TESTS),
    Mutant("page: σ(−z) for σ(z)", PAGE,
           "const sigmoid = (z) => 1 / (1 + Math.exp(-z));",
           "const sigmoid = (z) => 1 / (1 + Math.exp(z));", PAGE_TESTS),
    Mutant("book format: the biases written as one row", "mlp_digits/book_format.py",
           '"biases": [b.reshape(-1, 1).tolist() for b in biases]',
           '"biases": [b.reshape(1, -1).tolist() for b in biases]',
           (T + "test_export.py", "-k", "same_count or exactly")),
    Mutant("page save: a turned-off neuron's weights kept", "mlp_digits/page/draw_page_network2.js",
           "for (const row of rows[l + 1]) row[j] = 0;",
           "for (const row of rows[l + 1]) row[j] += 0;",
           (T + "test_draw.py", "-k", "saved_from_the_page")),
    Mutant("checker: a hidden layer's δ blamed on BP1", "mlp_digits/exercise/layers.py",
           'return "BP1" if k == ref.n_layers - 1 else "BP2"', 'return "BP1"',
           (T + "test_exercise.py", "-k", "named_at_the_first or says_which")),
    Mutant("an epoch's order drawn on the device", "mlp_digits/sgd.py",
           'return torch.randperm(self.n, generator=generator, device="cpu")',
           "return torch.randperm(self.n, generator=generator, device=self.device)",
           (T + "test_fake_device.py", "-k", "order")),
    Mutant("pixels divided on the device", "mlp_digits/data.py",
           'if x.device.type == "cpu":', "if True:",
           (T + "test_fake_device.py", "-k", "looked_up")),
]  # fmt: skip
