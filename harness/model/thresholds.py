"""Per-layer threshold token pruning on attention received (LTP's policy).

Why in the core: two methods run it. `ltp` learns the thresholds (soft stage,
then hard stage), `ltp_manual` fixes them at theta_l = theta_final * l / L,
and `magic_pyramid` prunes with `ltp`'s trained thresholds under its exits.
The policy, its token score and the rising initial thresholds are therefore
one definition here; the training steps the threshold methods share are in
`harness.plugin.threshold_training`.

Score: after the attention sublayer of layer l, token i's importance is the
attention it receives, averaged over heads and over the real query rows
present: s_l(i) = 1/(H n_l) sum_h sum_q P_h[q, i]. Token i is pruned when
s_l(i) < theta_l (no top-k, so the number of kept tokens adapts to every
input); pruned tokens are physically removed before the FFN of that layer.

Models saved before this module existed pickled the policy as
`methods.ltp.LTPPolicy`; `methods/ltp.py` still binds that name to this class,
so their work folders load unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from harness.model.policy import EncoderState, Policy, select_tokens
from harness.model.selection import attention_received, mean_kept_fraction, threshold_keep


# ---- scoring -------------------------------------------------------------------
def per_real_row(received: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """Summed attention received -> mean over heads and real query rows."""
    return received / heads / mask.to(received.dtype).sum(1, keepdim=True).clamp(min=1.0)


def token_scores(state: EncoderState) -> torch.Tensor:
    """LTP's score [b, n] of the tokens present: attention received, mean over heads and real
    query rows. Its MACs are recorded in the trace (as `attention_received` does), so a policy
    calls it once per layer; to look at the scores without counting them, use
    `per_real_row(received_sum(probs, mask), heads, mask)`."""
    return per_real_row(attention_received(state), state.attn_probs.shape[1], state.mask)


def rising_thresholds(theta_final: float, num_layers: int) -> list[float]:
    """theta_l = theta_final * l / L for l = 1..L (the last layer gets theta_final)."""
    return [float(theta_final) * (i + 1) / num_layers for i in range(num_layers)]


# ---- the policy ------------------------------------------------------------------
class LTPPolicy(Policy):
    """Per-layer threshold token pruning after the attention sublayer.

    Thresholds are theta = base + lr_scale * delta (delta learned in the soft
    stage). In training with `soft` set, tokens are not removed: the soft mask
    multiplies each token's layer output and `extra_loss` adds lambda times the
    mean mask. Otherwise (hard-stage training, inference) tokens below the
    threshold are physically removed.
    """

    def __init__(self, num_layers: int, theta_final: float, temperature: float = 2e-3, lam: float = 0.0,
                 soft: bool = False, lr_scale: float = 1.0, learnable: bool = False, cumulative: bool = False):
        super().__init__()
        self.num_layers = int(num_layers)
        self.theta_final = float(theta_final)
        self.temperature = float(temperature)
        self.lam = float(lam)
        self.soft = bool(soft)
        self.lr_scale = float(lr_scale)
        self.cumulative = bool(cumulative)
        self.learned = bool(learnable)  # thresholds learned (ltp) or fixed (ltp_manual)
        self.register_buffer("base", torch.tensor(rising_thresholds(theta_final, num_layers), dtype=torch.float32))
        self.delta = nn.Parameter(torch.zeros(self.num_layers), requires_grad=learnable)

    @property
    def thresholds(self) -> torch.Tensor:
        return self.base + self.lr_scale * self.delta

    def freeze(self) -> None:
        """Fold the learned offsets into the base, stop learning thresholds, switch to hard masks."""
        with torch.no_grad():
            self.base.copy_(self.thresholds)
            self.delta.zero_()
        self.delta.requires_grad_(False)
        self.soft = False

    def _soft_active(self) -> bool:
        return self.training and self.soft

    def needs_attention_probs(self, layer: int) -> bool:
        if self._soft_active():
            return True
        # s >= 0, so a threshold <= 0 can prune nothing: keep the fast attention path
        return self.host_thresholds()[layer] > 0

    def host_thresholds(self) -> list[float]:
        """The thresholds as Python floats, read back once per change (not per layer)."""
        return self.host_copy("thresholds", (self.base, self.delta), lambda: self.thresholds.detach().tolist())

    def after_attention(self, layer: int, state: EncoderState) -> None:
        if state.attn_probs is None:
            return
        theta = self.thresholds[layer]
        scores = token_scores(state)
        if self._soft_active():
            m = torch.sigmoid((scores - theta) / self.temperature)
            first = torch.arange(m.shape[1], device=m.device).unsqueeze(0) == 0
            m = torch.where(first, torch.ones_like(m), m) * state.mask.to(m.dtype)
            if self.cumulative and "ltp_prev" in state.scratch:
                m = m * state.scratch["ltp_prev"]
            state.scratch["ltp_prev"] = m
            state.scratch["ltp_mask"] = m
            state.scratch.setdefault("ltp_masks", []).append((m, state.mask))
            return
        # a Python threshold: no device read; select_tokens checks whether anything goes
        keep = threshold_keep(scores.detach(), state.mask, self.host_thresholds()[layer])
        select_tokens(state, keep)

    def after_layer(self, layer: int, state: EncoderState):
        m = state.scratch.pop("ltp_mask", None)
        if m is not None:
            state.hidden = state.hidden * m.unsqueeze(-1).to(state.hidden.dtype)
        return None

    def mask_mean(self, state: EncoderState) -> torch.Tensor | None:
        """Mean over layers of the mean soft mask over real tokens (token-weighted)."""
        masks = state.scratch.get("ltp_masks")
        if not masks:
            return None
        return mean_kept_fraction(masks)

    def extra_loss(self, state: EncoderState) -> torch.Tensor | None:
        if not self._soft_active() or self.lam == 0.0:
            return None
        mean = self.mask_mean(state)
        return None if mean is None else self.lam * mean

    def describe(self) -> dict:
        return {
            "kind": "ltp_threshold",
            "thresholds_learned": self.learned,
            "thresholds": [round(float(t), 8) for t in self.thresholds.detach().cpu()],
            "theta_final_init": self.theta_final,
            "temperature": self.temperature,
            "lambda": self.lam,
            "score": "attention received, mean over heads and real query rows of the tokens present",
            "cls_kept": True,
            "soft_cumulative": self.cumulative,
        }
