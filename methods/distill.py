"""Distilled students: the static smaller models every dynamic method must beat at equal cost.

DistilBERT (Sanh et al. 2019, arXiv:1910.01108): a student with fewer layers, initialised from the
teacher by taking one layer in two (its extraction script keeps layers 0, 2, 4, 7, 9, 11 of
BERT-base). TinyBERT (Jiao et al., Findings of EMNLP 2020, arXiv:1909.10351): TinyBERT-4 is 4
layers, hidden 312, FFN 1,200, 12 heads (13% of BERT-base's parameters), trained by general
distillation on a corpus and then task-specific distillation in two stages: intermediate layers
(each student layer's hidden states through a learned map W_h, and its attention maps, against
the teacher layer g(m) = m N / M; the embeddings against the embeddings), then the prediction
layer (soft cross-entropy against the teacher's logits at temperature T).

Here one plugin, one point per student shape (`layers=<M>` at full width, `layers=<M>_width=<w>`
narrow), each trained independently from the fine-tuned dense model, which is also the teacher:

* **Layers.** Student layer i starts as teacher layer floor(i (N - 1) / (M - 1) + 1/2) (N teacher
  layers; layers 0 and N - 1 always kept; one layer: layer 0): DistilBERT's choice for 12 -> 6,
  the same spread for any N and M.
* **Width** (a narrow student, TinyBERT-4's shape): whole attention heads, FFN dims and hidden
  dims are kept by magnitude, a fraction `narrow_width` of each (at least one): a head by
  ||its W_V rows|| x ||its W_O columns||, an FFN dim by ||its W_in row|| x ||its W_out column||,
  a hidden dim by the summed magnitude of every LayerNorm gain on it. The student is the
  teacher sliced (`harness.model.structure`), a smaller dense model. TinyBERT-4's own start is
  its general distillation, which needs a pre-training corpus (none offline): its rows say
  "w/o GD".
* **Stage 1, intermediate distillation** (`intermediate_epochs`): the mean squared error, per
  element over real tokens, of W_h h_s against h_t for the embeddings and for every student layer
  against the teacher layer it starts as, W_h a learned linear map from the student's width to the
  teacher's initialised to the slicing's inverse (identity at full width), plus the attention maps'
  mean squared error as log-probabilities over real query rows and keys, each student head against
  the teacher head it was sliced from.
* **Stage 2, prediction distillation** (`prediction_epochs`): KL of the logits at temperature
  `temperature` (TinyBERT: 1) times T^2, plus `label_weight` x the task loss; the checkpoint kept
  is the best on the held-out validation split.

Records carry the parameters kept (`structure`, as CoFi's), so the tables compare a dynamic method
with the student of equal FLOPs. Departures: `Distill.deviations`.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from harness.plugin import (EncoderState, HarnessError, MethodPlugin, MethodSettings, OperatingPoint, Policy,
                            distillation_loss, format_knob, prune_ffn, prune_heads, prune_hidden, register_method,
                            structure_summary, task_loss)


@dataclass(frozen=True)
class Settings(MethodSettings):
    depths: tuple[int, ...] = (4, 3, 2)  # full-width students (DistilBERT's shape: fewer layers)
    narrow_depths: tuple[int, ...] = (4,)  # narrow students (TinyBERT-4's shape)
    narrow_width: float = 0.5  # of heads, FFN dims and hidden dims a narrow student keeps (TinyBERT-4: 312/768)
    intermediate_epochs: float = 1.0  # stage 1: hidden states and attention maps
    prediction_epochs: float = 1.0  # stage 2: logits (and labels)
    lr: float | None = None  # both stages (None: the profile's)
    temperature: float = 1.0  # stage 2's softmax temperature (TinyBERT's T = 1)
    hidden_weight: float = 1.0
    attention_weight: float = 1.0
    label_weight: float = 1.0  # the task loss beside the soft logits in stage 2 (TinyBERT: 0)


# ---- the student's shape -------------------------------------------------------------------
def initial_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """The teacher layers a student starts from (DistilBERT's one-in-two spread, any depths)."""
    if student_layers == 1:
        return [0]
    return [math.floor(i * (teacher_layers - 1) / (student_layers - 1) + 0.5) for i in range(student_layers)]


def _top(scores: torch.Tensor, fraction: float) -> list[int]:
    n = max(1, int(round(fraction * len(scores))))
    return sorted(torch.argsort(scores, descending=True, stable=True)[:n].tolist())


def head_strength(layer) -> torch.Tensor:
    """Per head: ||its rows of W_V|| x ||its columns of W_O|| (what the head can write into the residual)."""
    h, dh = layer.num_heads, layer.head_dim
    v = layer.value.weight.detach().view(h, dh, -1).flatten(1).norm(dim=1)
    o = layer.attn_out.weight.detach().view(-1, h, dh).transpose(0, 1).flatten(1).norm(dim=1)
    return v * o


def build_student(teacher, layers: int, width: float = 1.0) -> tuple[nn.Module, dict]:
    """(a student sliced from `teacher`, how: the teacher layers kept, each kept head's teacher index per
    layer, the teacher hidden dims kept)."""
    n = len(teacher.layers)
    if not 1 <= layers <= n:
        raise HarnessError(f"a distilled student needs 1 to {n} layers (got {layers})",
                           f"set methods_config.distill.depths to values from 1 to {n}")
    student = copy.deepcopy(teacher)
    kept = initial_layers(n, layers)
    student.layers = nn.ModuleList(student.layers[i] for i in kept)
    student.shape = dataclasses.replace(student.shape, num_hidden_layers=layers)
    heads = [list(range(layer.num_heads)) for layer in student.layers]
    hidden = list(range(student.arch().hidden))
    if width < 1.0:
        for i, layer in enumerate(student.layers):
            heads[i] = _top(head_strength(layer), width)
            prune_heads(layer, heads[i])
            ffn = layer.ffn_in.weight.detach().norm(dim=1) * layer.ffn_out.weight.detach().norm(dim=0)
            prune_ffn(layer, _top(ffn, width))
        gains = student.embeddings.LayerNorm.weight.detach().abs().clone()
        for layer in student.layers:
            gains += layer.attn_norm.weight.detach().abs() + layer.ffn_norm.weight.detach().abs()
        hidden = _top(gains, width)
        prune_hidden(student, hidden)
    return student, {"teacher_layers": kept, "teacher_heads": heads, "teacher_hidden": hidden}


# ---- policies --------------------------------------------------------------------------------
class Recorder(Policy):
    """Keeps the embeddings' output, every layer's attention probabilities and output in training (or
    always, the teacher's), for intermediate distillation. Probabilities need explicit attention."""

    def __init__(self, always: bool = False):
        super().__init__()
        self.always = always

    def _on(self) -> bool:
        return self.training or self.always

    def needs_attention_probs(self, layer: int) -> bool:
        return self._on()

    def before_layer(self, layer: int, state: EncoderState) -> None:
        if layer == 0 and self._on():
            state.scratch["embeddings"] = state.hidden

    def after_attention(self, layer: int, state: EncoderState) -> None:
        if self._on():
            state.scratch.setdefault("attention", []).append(state.attn_probs)

    def after_layer(self, layer: int, state: EncoderState):
        if self._on():
            state.scratch.setdefault("layers", []).append(state.hidden)
        return None


class StudentShape(Policy):
    """A trained student at inference: no policy, only its shape for the records."""

    def __init__(self, summary: dict):
        super().__init__()
        self.summary = dict(summary)

    def describe(self) -> dict:
        return {"kind": "distilled_student", **self.summary}


class Intermediate(nn.Module):
    """Stage 1's loss: hidden states through W_h and attention maps, against the teacher's."""

    def __init__(self, teacher, student, how: dict, s: Settings):
        super().__init__()
        self.teacher = [teacher]  # a list: not a submodule (not trained, not saved)
        self.s = s
        d_t, d_s = teacher.arch().hidden, student.arch().hidden
        self.map = nn.Linear(d_s, d_t, bias=False)
        with torch.no_grad():
            self.map.weight.zero_()
            self.map.weight[torch.tensor(how["teacher_hidden"]), torch.arange(d_s)] = 1.0
        self.targets = how["teacher_layers"]  # each student layer learns the teacher layer it starts as
        self.heads = how["teacher_heads"]

    def forward(self, out, batch) -> torch.Tensor:
        with torch.no_grad():
            t = self.teacher[0](*batch.inputs, trace=False).state.scratch
        s = out.state.scratch
        real = batch.attention_mask.bool()
        pairs = [(s["embeddings"], t["embeddings"])] + [(s["layers"][m], t["layers"][g])
                                                         for m, g in enumerate(self.targets)]
        # TinyBERT's MSE: per element (hidden dims and tokens), then over the layers
        hidden = sum(((self.map(hs).float() - ht.float()) ** 2).mean(-1)[real].mean() for hs, ht in pairs) / len(pairs)
        keys = real[:, None, None, :] & real[:, None, :, None]  # real query rows x real keys
        attn = []
        for m, g in enumerate(self.targets):
            ps, pt = s["attention"][m], t["attention"][g]
            if ps is None or pt is None:
                continue
            pt = pt[:, self.heads[m]]
            # log-probabilities: TinyBERT's unnormalised scores up to a shift per query row (the encoder
            # exposes the softmax's output); on the probabilities themselves (~1/n) the loss would vanish
            diff = (ps.float().clamp(min=1e-6).log() - pt.float().clamp(min=1e-6).log()) ** 2
            attn.append(diff.masked_select(keys.expand_as(diff)).mean())
        attention = sum(attn) / len(attn) if attn else hidden.new_zeros(())
        return self.s.hidden_weight * hidden + self.s.attention_weight * attention


# ---- the plugin --------------------------------------------------------------------------------
def point_name(layers: int, width: float) -> str:
    return f"layers={layers}" if width >= 1.0 else f"layers={layers}_width={format_knob(width)}"


@register_method("distill")
class Distill(MethodPlugin):
    summary = "task-specific distillation into static students: DistilBERT's fewer layers, TinyBERT-4's narrower"
    Settings = Settings
    requires = ("dense",)
    deviations = (
        "students start from the harness's fine-tuned dense model, which is also the teacher: DistilBERT starts "
        "from the pre-trained BERT and distils during pre-training; TinyBERT-4 starts from its general "
        "distillation on a corpus (not available offline), so its rows are TinyBERT-4 without general "
        "distillation, initialised by slicing the teacher by magnitude (heads, FFN dims, hidden dims)",
        "a narrow student keeps whole heads of the teacher's head size (TinyBERT-4 keeps 12 heads of size 26): "
        "narrow_width of the heads, FFN dims and hidden dims, 0.5 by default (TinyBERT-4: 312/768 = 0.41, "
        "1,200/3,072 = 0.39)",
        "one recipe for every student, TinyBERT's task-specific stages: intermediate distillation (embeddings, "
        "hidden states through W_h, attention maps), then prediction distillation; DistilBERT fine-tunes its "
        "student on GLUE without distillation",
        "attention maps are compared as log-probabilities, TinyBERT's unnormalised scores up to a shift per query "
        "row (the encoder exposes the softmax's output), over real query rows and keys",
        "each student layer is distilled from the teacher layer it starts as (DistilBERT's spread: 12 -> 4 keeps "
        "layers 0, 4, 7, 11), so a narrow student's heads meet the teacher heads they were sliced from; "
        "TinyBERT maps student layer m to teacher layer m N / M (2, 5, 8, 11); the two agree on the last layer",
        "no data augmentation (TinyBERT augments the task data 20x with BERT and GloVe replacements)",
        "stage budgets of intermediate_epochs and prediction_epochs on the profile's training split (TinyBERT: 10-20 "
        "epochs of stage 1 on the augmented data, 3 of stage 2)",
        "stage 2 adds label_weight (default 1) x the task loss to the soft logits (TinyBERT uses the soft logits "
        "alone)",
    )

    def check(self, name: str, settings, settings_of) -> None:
        if not (settings.depths or settings.narrow_depths):
            raise HarnessError(f"{name} has no student shapes", f"set methods_config.{name}.depths, e.g. [4, 3, 2]")
        if any(int(m) < 1 for m in (*settings.depths, *settings.narrow_depths)):
            raise HarnessError(f"{name} depths must be at least 1 layer",
                               f"set methods_config.{name}.depths to layer counts such as [4, 3, 2]")
        if not 0.0 < settings.narrow_width < 1.0:
            raise HarnessError(f"{name} narrow_width must lie strictly between 0 and 1 (got {settings.narrow_width})",
                               f"set methods_config.{name}.narrow_width to a fraction such as 0.5")

    def train_points(self, settings, task) -> dict:
        shapes = [(int(m), 1.0) for m in settings.depths] + [(int(m), float(settings.narrow_width))
                                                             for m in settings.narrow_depths]
        return {point_name(m, w): (m, w) for m, w in shapes}

    def train_point(self, ctx, name: str, knob) -> tuple[list[dict], dict]:
        layers, width = knob
        s = ctx.settings
        lr = float(s.lr if s.lr is not None else ctx.train_setting("lr"))
        teacher = ctx.load_model(method="dense").to(ctx.device).eval()
        t0 = time.time()
        student, how = build_student(teacher, int(layers), float(width))
        structure = structure_summary(student.arch(), teacher.arch())
        log = {"shape": {**how, **structure}, "start_validation": ctx.validation_summary(student.eval())["score"]}
        teacher.policy = Recorder(always=True)
        student.policy = Recorder()
        if s.intermediate_epochs > 0:
            loss = Intermediate(teacher, student, how, s).to(ctx.device)
            stage = ctx.finetune(student, cfg=ctx.train_config(epochs=s.intermediate_epochs, lr=lr),
                                 loss_fn=lambda m, out, batch: loss(out, batch), checkpoint="last",
                                 parameters=list(student.parameters()) + list(loss.map.parameters()),
                                 desc=f"{ctx.task.name}/{ctx.method} intermediate {name}")
            log["intermediate"] = {"steps": stage["steps"]}
        student.policy = Policy()
        teacher.policy = Policy()

        def predict(model, out, batch):
            with torch.no_grad():
                soft = teacher(*batch.inputs, trace=False).logits
            value = distillation_loss(ctx.task, out.logits, soft, s.temperature)
            return value + s.label_weight * task_loss(ctx.task, out.logits, batch.labels) if s.label_weight else value

        if s.prediction_epochs > 0:
            stage = ctx.finetune(student, cfg=ctx.train_config(epochs=s.prediction_epochs, lr=lr), loss_fn=predict,
                                 checkpoint="best", desc=f"{ctx.task.name}/{ctx.method} prediction {name}")
            log["prediction"] = {k: stage[k] for k in ("steps", "best_validation")}
        knobs = {"layers": int(layers), "width": float(width)}
        student.policy = StudentShape({**knobs, "teacher_layers": how["teacher_layers"]})
        ctx.save_model(student.eval(), f"{name}.pt")
        log["seconds"] = round(time.time() - t0, 2)
        return [{"name": name, "file": f"{name}.pt", **knobs, **structure}], log

    def operating_points(self, ctx):
        for entry in ctx.points():
            yield OperatingPoint(entry["name"], {"layers": entry["layers"], "width": entry["width"]},
                                 ctx.load_model(entry["file"]).eval(),
                                 notes={"kept_fraction": entry["kept_fraction"]})

    def demo_model(self, model):
        """A narrow student with one layer fewer than `model` (at least one), untrained."""
        student, how = build_student(model, max(1, len(model.layers) - 1), 0.5)
        student.policy = StudentShape({"layers": len(student.layers), "width": 0.5,
                                       "teacher_layers": how["teacher_layers"]})
        return student.eval()
